package node

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestForgetAfterDedupWindow: finished tasks are dropped at the end of their dedup
// window, each at its own time, by one timer; a task still held stays.
func TestForgetAfterDedupWindow(t *testing.T) {
	h := newHarness(t, 3, 13, func(c *Config) { c.DedupWindow = time.Minute })
	early := h.enqueue("n1", req(time.Second))
	h.run(10 * time.Second)
	late := h.enqueue("n2", req(time.Second))
	held := h.enqueue("n3", req(time.Hour))
	h.run(20 * time.Second)
	idEarly, idLate, idHeld := acked(t, early), acked(t, late), acked(t, held)
	for _, id := range []string{idEarly, idLate} {
		require.Len(t, h.deliveriesOf(id), 1)
	}
	finishedAt := func(id string) time.Duration { return h.deliveriesOf(id)[0].End }

	h.run(finishedAt(idEarly) + 50*time.Second)
	for _, n := range h.order {
		_, ok := h.node(n).Task(idEarly)
		require.True(t, ok, "%s forgot a task within its dedup window", n)
	}
	h.run(finishedAt(idEarly) + 62*time.Second) // past the window (+ outcome acks)
	for _, n := range h.order {
		_, ok := h.node(n).Task(idEarly)
		require.False(t, ok, "%s kept a task past its dedup window", n)
		_, ok = h.node(n).Task(idLate)
		require.True(t, ok, "%s forgot the later task with the earlier one", n)
	}
	h.run(finishedAt(idLate) + 62*time.Second)
	for _, n := range h.order {
		_, ok := h.node(n).Task(idLate)
		require.False(t, ok, "%s kept the later task past its window", n)
		_, ok = h.node(n).Task(idHeld)
		require.True(t, ok, "%s dropped a task that is not finished", n)
	}
	requirePendingConsistent(t, h)
}
