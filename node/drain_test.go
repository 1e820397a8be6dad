package node

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A node that stops leaves the attempt of a task it delivered alone: the other
// replicas, which never heard its outcome, would take a Release of it for an
// attempt over and undelivered, and grant the next one. Here the deliverer is cut
// off while its worker answers, so its Done reaches nobody; then the cut heals
// and it drains (SIGTERM) before it repeats the Done. The at-most-once task must
// not be delivered again. (S4 on seeds 62 and others of scenarios/graceful-stops.)
func TestDrainLeavesFinishedAttemptsAlone(t *testing.T) {
	amo := DefaultQueueConfig()
	amo.Delivery = AtMostOnce
	h := newHarness(t, 3, 1, func(c *Config) {
		c.Lease = 3 * time.Second
		c.ReplicaOffset = 500 * time.Millisecond
		c.OutcomeRetry = time.Second
	})
	h.setQueues(map[string]QueueConfig{"once": amo})
	h.worker = func(Delivery, int) (int, time.Duration) { return 200, 100 * time.Millisecond }
	r := h.enqueue("n1", reqQ("once", time.Second))
	h.run(h.elapsed() + 900*time.Millisecond)
	id := acked(t, r)
	// The first delivery starts a little after the due time; cut its node off then.
	var deliverer NodeID
	for step := 0; step < 100 && deliverer == ""; step++ {
		h.run(h.elapsed() + 10*time.Millisecond)
		for _, d := range h.deliveries {
			if d.TaskID == id {
				deliverer = d.Node
			}
		}
	}
	require.NotEmpty(t, deliverer, "nobody delivered the task")
	h.isolate(deliverer)
	h.run(h.elapsed() + 300*time.Millisecond) // the worker answered; its Done is lost
	st, _ := h.node(deliverer).Task(id)
	require.Equal(t, StateSucceeded, st.State)
	h.heal()
	sentBefore := len(h.sent)
	h.node(deliverer).Drain()
	h.crash(deliverer) // the process ends before its Done is sent again
	for _, sm := range h.sent[sentBefore:] {
		require.False(t, sm.Msg.Type == MsgRelease && sm.Msg.TaskID == id, "the drain released the attempt it delivered: %v", sm.Msg)
	}
	h.run(h.elapsed() + time.Minute)
	n := 0
	for _, d := range h.deliveries {
		if d.TaskID == id {
			n++
		}
	}
	require.Equal(t, 1, n, "an at-most-once task delivered more than once")
}
