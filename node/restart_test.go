package node

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// streamView is a durableView that streams its records (RecordStreamer), as
// net/disk does.
type streamView struct{ durableView }

func (v streamView) Load() ([]Record, error) { panic("a streaming Storage is read by LoadEach") }
func (v streamView) LoadEach(visit func(*Record)) error {
	for _, r := range append([]Record(nil), v.d.synced...) {
		visit(&r)
	}
	return nil
}

// restartedWithLog runs three members with logs (n1's streamed when compact),
// enqueues tasks through n1 due in ten minutes, cancels every fifth (a record
// after its task's: the replay thaws it) and names some, restarts n1 from its log
// and lets the tasks come due. compact keeps the tasks compact from the log on
// (a replay line and a cold line of one task); otherwise none ever is. It returns
// what the nodes sent and checks n1's counters right after its restart.
func restartedWithLog(t *testing.T, compact bool) []string {
	h := newHarness(t, 3, 41, func(c *Config) {
		c.PendingDetail, c.ColdAhead = 1, time.Nanosecond
		if !compact {
			c.PendingDetail = 1 << 30
		}
	})
	disks := h.giveDisks()
	if compact {
		d := disks["n1"]
		h.nodes["n1"].storage = func() Storage { return streamView{durableView{d}} }
	}
	for _, id := range h.order {
		h.crash(id)
		h.restart(id)
	}
	h.run(h.elapsed() + 3*time.Second)
	var ids []string
	for i := range 30 {
		r := req(10*time.Minute + time.Duration(30-i)*time.Second)
		if i%3 == 0 {
			r.Name = fmt.Sprintf("job-%d", i)
		}
		res := h.enqueue("n1", r)
		h.run(h.elapsed() + 50*time.Millisecond)
		ids = append(ids, acked(t, res))
	}
	for i := 0; i < len(ids); i += 5 {
		h.node("n1").Cancel(ids[i], func(TaskState, error) {})
	}
	h.run(h.elapsed() + 2*time.Second)
	before := h.node("n1").Counts()

	h.crash("n1")
	h.run(h.elapsed() + time.Second)
	h.restart("n1")
	n := h.node("n1")
	require.NoError(t, n.CheckCounts(), "the counters of a restarted node")
	require.Equal(t, before, n.Counts())
	if compact {
		require.Equal(t, 23, n.Colds(), "all but the last armed of the 24 pending tasks went cold in Start")
	} else {
		require.Zero(t, n.Colds())
	}
	second := h.enqueue("n1", EnqueueRequest{Name: "job-3", URL: "http://w/again"})
	h.run(h.elapsed() + 15*time.Minute)
	require.True(t, second.done)
	require.NoError(t, n.CheckCounts())
	done := 0
	for _, id := range ids {
		if h.stateOn("n1", id) == StateSucceeded {
			done++
		}
	}
	require.Equal(t, 24, done, "every task not cancelled came due after the restart")
	return describeSent(h)
}

// A restart that keeps the tasks compact from the log on (stored while the log is
// read, thawed for a later record, cold once armed) changes nothing the node
// does: the same messages at the same times as a restart that rebuilds every
// task as an entry.
func TestRestartKeepsTasksCompactAndChangesNothing(t *testing.T) {
	compact := restartedWithLog(t, true)
	require.Equal(t, restartedWithLog(t, false), compact)
}
