package recorder_test

import (
	"context"
	"encoding/binary"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/net/daemon"
	"github.com/miyamotohq/miyamoto/net/recorder"
)

// startDurableRecordedNode starts a node alone with its log in dir/data and its
// recording in dir/rec, and returns its API base once it takes tasks; it shuts
// down when t ends.
func startDurableRecordedNode(t *testing.T, dir string) string {
	t.Helper()
	d, err := daemon.Start(daemon.Config{HTTPAddr: "127.0.0.1:0", DataDir: filepath.Join(dir, "data"),
		RecordDir: filepath.Join(dir, "rec"), RecordSize: 64 << 20})
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, d.Shutdown(ctx))
	})
	base := "http://" + d.HTTPAddr()
	waitHealthy(t, base, 10*time.Second)
	return base
}

// frameSizes returns the payload size of every group frame of a recording file
// (the format in format.go: magic, then frames of uvarint length, CRC-32C,
// payload; the first frame is the header) and the kind byte of each.
func frameSizes(t *testing.T, path string) (sizes []int, kinds []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	b = b[len("MIYAREC1"):]
	for first := true; len(b) > 0; first = false {
		size, k := binary.Uvarint(b)
		require.Positive(t, k)
		payload := b[k+4 : k+4+int(size)]
		b = b[k+4+int(size):]
		if !first {
			sizes = append(sizes, len(payload))
			kinds = append(kinds, payload[0])
		}
	}
	return sizes, kinds
}

// A node started with --record streams its log at a restart as one without does:
// the recorder's storage is a node.RecordStreamer, and it writes the start's
// group in parts as the records go by, so that no frame (nor the recorder's
// buffer) holds the whole log. Both runs replay, the second with a storage that
// streams as the recorded one did: it would differ had the node called Load.
func TestReplayOfARestartThatStreamedItsLog(t *testing.T) {
	dir := t.TempDir()
	pad := strings.Repeat("p", 2000)
	ran := t.Run("first", func(t *testing.T) {
		base := startDurableRecordedNode(t, dir)
		for range 400 { // about 800 KB of log, due in an hour: all kept
			resp, err := http.PostForm(base+"/queue", url.Values{"task.url": {"http://127.0.0.1:1/w"}, "task.countdown": {"3600"},
				"pad": {pad}})
			require.NoError(t, err)
			resp.Body.Close()
			require.Less(t, resp.StatusCode, 300)
		}
	})
	require.True(t, ran)
	ran = t.Run("restart", func(t *testing.T) {
		load(t, map[string]string{"n1": startDurableRecordedNode(t, dir)}, 5)
	})
	require.True(t, ran)

	runs, err := recorder.ReadDir(filepath.Join(dir, "rec"))
	require.NoError(t, err)
	require.Len(t, runs, 2)
	for _, r := range runs {
		require.True(t, r.Header.StreamedLoad)
		res := recorder.ReplayRun(r)
		require.Nil(t, res.Diff, "run %d: %v", r.Header.Run, res.Diff)
		require.Empty(t, res.Gap)
	}
	restart := runs[1]
	require.Greater(t, len(restart.Groups[1]), 800_000, "the restart's start should hold the whole log loaded")
	const inPart = 11 // the kind of a part of a group (format.go)
	sizes, kinds := frameSizes(t, filepath.Join(dir, "rec", restart.Files[0]))
	parts := 0
	for i, size := range sizes {
		require.Less(t, size, 300_000, "frame %d (kind %d) holds more than a part", i, kinds[i])
		if kinds[i] == inPart {
			parts++
		}
	}
	require.GreaterOrEqual(t, parts, 3, "the start's load should be written in parts")
}
