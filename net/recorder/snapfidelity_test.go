package recorder_test

import (
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/net/recorder"
)

// replayFromEverySnapshot replays run once from each snapshot after its start, as
// if the ring had dropped every file before it, and requires no difference. It
// returns how many snapshots it started from.
func replayFromEverySnapshot(t *testing.T, run *recorder.Run) (snapshots int) {
	t.Helper()
	const inSnapshot = 10 // the input kind of a snapshot group (format.go)
	for i, g := range run.Groups {
		if i == 0 || g[0] != inSnapshot {
			continue
		}
		snapshots++
		from := *run
		from.Groups, from.Start, from.Snapshot = run.Groups[i:], false, true
		res := recorder.ReplayRun(&from)
		require.Nil(t, res.Diff, "node %s run %d from the snapshot at input %d: %v", run.Header.NodeID, run.Header.Run, i, res.Diff)
	}
	return snapshots
}

// readOften reads every node's health, metrics and cluster view until stop is
// closed: reads of the node's state between its inputs, which the recorder does
// not record.
func readOften(bases map[string]string, stop chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	c := &http.Client{Timeout: 2 * time.Second}
	wg.Go(func() {
		for {
			for _, base := range bases {
				for _, path := range []string{"/healthz", "/metrics", "/v1/cluster"} {
					select {
					case <-stop:
						return
					default:
					}
					if resp, err := c.Get(base + path); err == nil {
						resp.Body.Close()
					}
				}
			}
			time.Sleep(2 * time.Millisecond)
		}
	})
	return &wg
}

// The replay-fidelity bug: three recorded nodes under load, their health, metrics
// and cluster view read all along, with small files so that many snapshots are
// written; every run replays from its start, every snapshot of a later file equal
// to the replayed node's state, and from each of those snapshots too, as if the
// ring had dropped what came before. The node's reads between inputs took the
// clock and kept its reading (node's lastNow), a state the replay did not reach:
// this failed at a later file's snapshot most runs.
func TestReplayFromEverySnapshotOfAClusterReadAllAlong(t *testing.T) {
	dir := t.TempDir()
	ran := t.Run("run", func(t *testing.T) {
		bases := cluster(t, dir, 3, 600<<10)
		stop := make(chan struct{})
		wg := readOften(bases, stop)
		load(t, bases, 300)
		close(stop)
		wg.Wait()
	})
	require.True(t, ran)
	snapshots := 0
	for _, id := range []string{"n1", "n2", "n3"} {
		runs, err := recorder.ReadDir(filepath.Join(dir, id, "rec"))
		require.NoError(t, err)
		for _, r := range runs {
			res := recorder.ReplayRun(r)
			require.Nil(t, res.Diff, "%s: %v", id, res.Diff)
			snapshots += replayFromEverySnapshot(t, r)
		}
	}
	require.GreaterOrEqual(t, snapshots, 6, "the runs should span several files each")
}
