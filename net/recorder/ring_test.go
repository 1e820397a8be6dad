package recorder

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Groups written in bursts with idle flushes between them come back whole and in
// order.
func TestRingKeepsEveryGroupAcrossIdleFlushes(t *testing.T) {
	dir := t.TempDir()
	r, err := openRing(dir, 64<<20, Header{NodeID: "n1"})
	require.NoError(t, err)
	var want []string
	for burst := range 4 {
		for i := range 2000 {
			g := fmt.Sprintf("burst %d group %d %s", burst, i, make([]byte, i%300))
			want = append(want, g)
			r.writeGroup([]byte(g))
		}
		time.Sleep(3 * flushEvery) // idle flushes
	}
	require.NoError(t, r.close())
	hdr, groups, torn, err := readFile(filepath.Join(dir, fileName(1, 0)))
	require.NoError(t, err)
	require.Empty(t, torn)
	require.Equal(t, "n1", hdr.NodeID)
	require.Len(t, groups, len(want))
	for i, g := range groups {
		require.Equal(t, want[i], string(g), "group %d", i)
	}
}

// The buffer the node's goroutine appends to never shares its array with the one
// the writer holds, whatever order flushes with and without data come in. (A flush
// that found nothing once handed the spare buffer out while keeping it as spare:
// the next burst went into the array the writer was writing.)
func TestRingBuffersNeverShareAnArray(t *testing.T) {
	r, err := openRing(t.TempDir(), 64<<20, Header{NodeID: "n1"})
	require.NoError(t, err)
	close(r.stop) // drive the flushes by hand
	<-r.done
	t.Cleanup(func() { r.f.Close() })
	shared := func() bool {
		p, s := r.pending[:cap(r.pending)], r.spare[:cap(r.spare)]
		return len(p) > 0 && len(s) > 0 && &p[0] == &s[0]
	}
	for _, step := range []string{"data", "flush", "flush", "data", "flush", "data", "flush", "flush", "flush", "data", "data", "flush"} {
		if step == "data" {
			r.writeGroup([]byte("a group"))
		} else {
			r.flush()
		}
		require.False(t, shared(), "after %s the pending and spare buffers share an array", step)
	}
}
