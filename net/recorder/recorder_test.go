package recorder_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/net/daemon"
	"github.com/miyamotohq/miyamoto/net/recorder"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// cluster starts n recorded nodes on loopback, each with its log and recording in
// dir/<id>, and returns their API bases; they shut down when the test ends.
func cluster(t *testing.T, dir string, n int, recordSize int64) map[string]string {
	t.Helper()
	peers := map[string]string{}
	for i := 1; i <= n; i++ {
		peers[fmt.Sprintf("n%d", i)] = freeAddr(t)
	}
	bases := map[string]string{}
	for id := range peers {
		cfg := daemon.Config{NodeID: id, HTTPAddr: "127.0.0.1:0", PeerAddr: peers[id], Peers: peers,
			DataDir: filepath.Join(dir, id, "data"), RecordDir: filepath.Join(dir, id, "rec"), RecordSize: recordSize,
			Lease: 3 * time.Second, MaxClockDrift: 100 * time.Millisecond, ReplicaOffset: 200 * time.Millisecond}
		if n == 1 {
			cfg.Peers = nil
		}
		d, err := daemon.Start(cfg)
		require.NoError(t, err)
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			require.NoError(t, d.Shutdown(ctx))
		})
		bases[id] = "http://" + d.HTTPAddr()
	}
	for _, base := range bases {
		waitHealthy(t, base, 10*time.Second)
	}
	return bases
}

// waitHealthy waits (within at most) until the daemon at base answers /healthz 200.
func waitHealthy(t *testing.T, base string, within time.Duration) {
	t.Helper()
	require.Eventually(t, func() bool {
		resp, err := http.Get(base + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, within, 20*time.Millisecond, "%s never answered /healthz 200", base)
}

// load enqueues count tasks through the nodes in turn and waits until the worker
// got them all.
func load(t *testing.T, bases map[string]string, count int) {
	t.Helper()
	var got atomic.Int32
	worker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Add(1)
		if r.URL.Query().Get("fail") == "1" && got.Load()%3 == 0 {
			w.WriteHeader(500) // some retries, so that backoff and results are recorded
			return
		}
		w.WriteHeader(200)
	}))
	t.Cleanup(worker.Close)
	var list []string
	for _, b := range bases {
		list = append(list, b)
	}
	for i := range count {
		body := fmt.Sprintf("task.url=%s/w?fail=%d&n=%d", worker.URL, i%2, i)
		resp, err := http.Post(list[i%len(list)]+"/queue", "application/x-www-form-urlencoded", strings.NewReader(body))
		require.NoError(t, err)
		resp.Body.Close()
		require.Less(t, resp.StatusCode, 300)
	}
	require.Eventually(t, func() bool { return int(got.Load()) >= count }, 20*time.Second, 20*time.Millisecond)
	time.Sleep(500 * time.Millisecond) // let outcomes spread
}

func TestReplayReproducesARecordedCluster(t *testing.T) {
	dir := t.TempDir()
	sub := t.Run("run", func(t *testing.T) {
		bases := cluster(t, dir, 3, 64<<20)
		load(t, bases, 30)
	})
	require.True(t, sub)
	for _, id := range []string{"n1", "n2", "n3"} {
		res, err := recorder.Replay(filepath.Join(dir, id, "rec"))
		require.NoError(t, err)
		require.Len(t, res, 1)
		r := res[0]
		require.Nil(t, r.Diff, "%s: %v", id, r.Diff)
		require.Empty(t, r.Skipped)
		require.Empty(t, r.Gap)
		require.Greater(t, r.Inputs, 30, "%s replayed too few inputs", id)
	}
}

// A recording whose input was changed no longer matches what the node did: replay
// names the first difference.
func TestReplayShowsTheFirstDifference(t *testing.T) {
	dir := t.TempDir()
	t.Run("run", func(t *testing.T) {
		load(t, cluster(t, dir, 1, 64<<20), 5)
	})
	recDir := filepath.Join(dir, "n1", "rec")
	runs, err := recorder.ReadDir(recDir)
	require.NoError(t, err)
	require.Len(t, runs, 1)
	r := runs[0]
	require.Nil(t, recorder.ReplayRun(r).Diff)
	tampered := false
	for i, g := range r.Groups {
		// The first group that holds the URL is its enqueue, whose input comes
		// first in the group: the first "fail=1" is the request's.
		if !tampered && bytes.Contains(g, []byte("fail=1")) {
			r.Groups[i] = bytes.Replace(g, []byte("fail=1"), []byte("fail=7"), 1)
			tampered = true
		}
	}
	require.True(t, tampered)
	diff := recorder.ReplayRun(r).Diff
	require.NotNil(t, diff)
	require.Contains(t, diff.What, "fail=7")
	require.Contains(t, diff.String(), "appended", "the task record differs first")
}

// The ring keeps the directory under its bound: old files go, and a run whose
// start went replays from the snapshot opening its oldest file kept.
func TestRingDropsOldFiles(t *testing.T) {
	dir := t.TempDir()
	const size = 100 << 10
	t.Run("run", func(t *testing.T) {
		load(t, cluster(t, dir, 1, size), 400)
	})
	recDir := filepath.Join(dir, "n1", "rec")
	entries, err := os.ReadDir(recDir)
	require.NoError(t, err)
	total := int64(0)
	for _, e := range entries {
		info, err := e.Info()
		require.NoError(t, err)
		total += info.Size()
	}
	require.LessOrEqual(t, total, int64(size)+64<<10+256<<10, "the ring holds more than its bound and one file")
	_, err = os.Stat(filepath.Join(recDir, "r000001-000000.rec"))
	require.ErrorIs(t, err, os.ErrNotExist, "the first file should have been dropped")
	res, err := recorder.Replay(recDir)
	require.NoError(t, err)
	require.Len(t, res, 1)
	require.Empty(t, res[0].Skipped)
	require.Nil(t, res[0].Diff, "%v", res[0].Diff)
	require.NotEmpty(t, res[0].From, "the replay should have started from a snapshot")
	require.NotEqual(t, "r000001-000000.rec", res[0].From)
	t.Logf("%+v %v", res[0], names(entries))
	// How many inputs follow the kept snapshot depends on when the last rotation
	// fell (CI once saw 20, an idle machine 600-700): what matters is that the
	// replay ran some from the snapshot and matched (Diff nil above).
	require.Positive(t, res[0].Inputs)

	// Observe (check, import) takes the run too: its events open with what the
	// snapshot held, then follow the node from there.
	obs, err := recorder.Observe(recDir)
	require.NoError(t, err)
	require.Len(t, obs, 1)
	require.Empty(t, obs[0].Skipped)
	require.Equal(t, res[0].From, obs[0].From)
	evs := obs[0].Events
	require.NotEmpty(t, evs)
	require.Equal(t, recorder.EventStart, evs[0].Kind)
	require.True(t, evs[0].Snapshot)
	require.NotEmpty(t, evs[0].Known, "the node held tasks at the snapshot")
	require.False(t, evs[0].At.IsZero(), "the window's start takes the first clock reading after the snapshot")
	states := 0
	for _, e := range evs[1:] {
		require.False(t, e.At.Before(evs[0].At), "%v before the window", e)
		if e.Kind == recorder.EventState {
			states++
		}
	}
	require.Positive(t, states)
}

// A node without durable storage (--data-dir=) is recorded and replayed too: it
// loads nothing at start, and appends and syncs nothing.
func TestReplayOfAMemoryNode(t *testing.T) {
	dir := t.TempDir()
	t.Run("run", func(t *testing.T) {
		d := startRecordedMemoryNode(t, dir)
		load(t, map[string]string{"n1": "http://" + d.HTTPAddr()}, 10)
	})
	res, err := recorder.Replay(dir)
	require.NoError(t, err)
	require.Len(t, res, 1)
	require.Nil(t, res[0].Diff, "%v", res[0].Diff)
	require.Greater(t, res[0].Inputs, 20)
}

// The daemon's compaction takes the node's policy (which clears what the node
// noted for it): recorded as a call, it replays.
func TestReplayAcrossCompactions(t *testing.T) {
	dir := t.TempDir()
	recDir := filepath.Join(dir, "rec")
	t.Run("run", func(t *testing.T) {
		d, err := daemon.Start(daemon.Config{HTTPAddr: "127.0.0.1:0", DataDir: filepath.Join(dir, "data"), RecordDir: recDir, RecordSize: 1 << 20,
			DedupWindow: 300 * time.Millisecond, CompactInterval: 200 * time.Millisecond})
		require.NoError(t, err)
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			require.NoError(t, d.Shutdown(ctx))
		})
		load(t, map[string]string{"n1": "http://" + d.HTTPAddr()}, 10)
		time.Sleep(1500 * time.Millisecond) // past the dedup window and a few compactions
	})
	runs, err := recorder.ReadDir(recDir)
	require.NoError(t, err)
	calls := 0
	for _, g := range runs[0].Groups {
		if bytes.Contains(g, []byte(`"op":"compaction-policy"`)) {
			calls++
		}
	}
	require.Positive(t, calls, "no compaction was recorded")
	res := recorder.ReplayRun(runs[0])
	require.Nil(t, res.Diff, "%v", res.Diff)
}

// A queue paused through the API shows in the observed events as a change issued
// and answered with the pause, for check's Q5 and Q6.
func TestObserveSeesAQueuePause(t *testing.T) {
	dir := t.TempDir()
	t.Run("run", func(t *testing.T) {
		d := startRecordedMemoryNode(t, dir)
		require.Eventually(t, func() bool {
			resp, err := http.Post("http://"+d.HTTPAddr()+"/v1/queues/emails/pause", "", nil)
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == 200
		}, 10*time.Second, 50*time.Millisecond)
	})
	obs, err := recorder.Observe(dir)
	require.NoError(t, err)
	require.Len(t, obs, 1)
	var put, answered *recorder.Event
	for i, e := range obs[0].Events {
		switch e.Kind {
		case recorder.EventQueuePut:
			put = &obs[0].Events[i]
		case recorder.EventQueueAnswered:
			answered = &obs[0].Events[i]
		}
	}
	require.NotNil(t, put)
	require.Equal(t, "emails", put.Setting.Queue)
	require.NotNil(t, answered)
	require.True(t, answered.OK)
	require.True(t, answered.Setting.Paused)
	require.Equal(t, put.Put, answered.Put)
}

// A node alone, recorded, that another node joins (POST /v1/cluster/join, the
// roster's election and change) and that is then removed (POST
// /v1/cluster/members/{id}/remove): both recordings replay input for input.
func TestReplayAcrossAJoinAndARemoval(t *testing.T) {
	dir := t.TempDir()
	sub := t.Run("run", func(t *testing.T) {
		start := func(id, join string) string {
			cfg := daemon.Config{NodeID: id, HTTPAddr: "127.0.0.1:0", PeerAddr: freeAddr(t), Join: join,
				DataDir: filepath.Join(dir, id, "data"), RecordDir: filepath.Join(dir, id, "rec"), RecordSize: 64 << 20,
				Lease: 3 * time.Second, MaxClockDrift: 100 * time.Millisecond, ReplicaOffset: 200 * time.Millisecond}
			d, err := daemon.Start(cfg)
			require.NoError(t, err)
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				require.NoError(t, d.Shutdown(ctx))
			})
			return "http://" + d.HTTPAddr()
		}
		a := start("j1", "")
		waitHealthy(t, a, 10*time.Second)
		b := start("j2", strings.TrimPrefix(a, "http://"))
		waitHealthy(t, b, 60*time.Second)
		load(t, map[string]string{"j1": a, "j2": b}, 10)
		resp, err := http.Post(a+"/v1/cluster/members/j2/remove", "application/json", nil)
		require.NoError(t, err)
		resp.Body.Close()
		require.Less(t, resp.StatusCode, 300, "remove j2")
		time.Sleep(500 * time.Millisecond)
	})
	require.True(t, sub)
	for _, id := range []string{"j1", "j2"} {
		res, err := recorder.Replay(filepath.Join(dir, id, "rec"))
		require.NoError(t, err)
		require.NotEmpty(t, res)
		for _, r := range res {
			require.Nil(t, r.Diff, "%s: %v", id, r.Diff)
		}
	}
}

// startRecordedMemoryNode starts a one-node daemon without durable storage that
// records into dir; it is shut down at the end of the (sub)test.
func startRecordedMemoryNode(t *testing.T, dir string) *daemon.Daemon {
	t.Helper()
	d, err := daemon.Start(daemon.Config{HTTPAddr: "127.0.0.1:0", RecordDir: dir, RecordSize: 1 << 20})
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, d.Shutdown(ctx))
	})
	return d
}

func names(es []os.DirEntry) []string {
	var out []string
	for _, e := range es {
		info, _ := e.Info()
		out = append(out, fmt.Sprint(e.Name(), " ", info.Size()))
	}
	return out
}

// With the run's start kept, replay checks the snapshot opening each later file
// against the replayed node's own state there: a snapshot changed is a difference.
func TestReplayChecksTheSnapshotsOfLaterFiles(t *testing.T) {
	dir := t.TempDir()
	t.Run("run", func(t *testing.T) {
		load(t, cluster(t, dir, 1, 600<<10), 400)
	})
	runs, err := recorder.ReadDir(filepath.Join(dir, "n1", "rec"))
	require.NoError(t, err)
	require.Len(t, runs, 1)
	r := runs[0]
	require.True(t, r.Start, "the ring should have kept the run's start")
	require.Greater(t, len(r.Files), 1, "the run should span several files")
	res := recorder.ReplayRun(r)
	require.Nil(t, res.Diff, "%v", res.Diff)
	require.Empty(t, res.From)

	const inSnapshot = 10 // the input kind of a snapshot group (format.go)
	snapshots := 0
	for i, g := range r.Groups {
		if g[0] != inSnapshot {
			continue
		}
		if snapshots++; snapshots == 1 {
			changed := bytes.Clone(g)
			changed[len(changed)-1] ^= 1
			r.Groups[i] = changed
		}
	}
	require.Equal(t, len(r.Files)-1, snapshots, "every file after the first opens with a snapshot")
	diff := recorder.ReplayRun(r).Diff
	require.NotNil(t, diff)
	require.Equal(t, "the snapshot at the start of a file", diff.What)
}
