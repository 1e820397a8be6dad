package node

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func requirePendingConsistent(t *testing.T, h *harness) {
	t.Helper()
	for _, id := range h.order {
		tracked, actual := h.node(id).Pending()
		require.Equal(t, actual, tracked, "node %s tracks %d pending tasks but holds %d", id, tracked, actual)
		require.NoError(t, h.node(id).CheckCounts(), "node %s", id)
	}
}

// TestPendingLimit: past MaxPending the node refuses new tasks with ErrNodeFull; once
// tasks finish, it takes new ones again.
func TestPendingLimit(t *testing.T) {
	h := newHarness(t, 1, 3, func(c *Config) { c.MaxPending = 3 })
	for range 3 {
		acked(t, h.enqueue("n1", req(10*time.Second)))
	}
	r := h.enqueue("n1", req(10*time.Second))
	require.True(t, r.done)
	require.ErrorIs(t, r.Err, ErrNodeFull)
	require.Contains(t, r.Err.Error(), "(3 tasks)")
	requirePendingConsistent(t, h)

	h.run(time.Minute) // all three delivered: final tasks do not count
	require.Len(t, h.deliveries, 3)
	requirePendingConsistent(t, h)
	acked(t, h.enqueue("n1", req(time.Second)))
	tracked, _ := h.node("n1").Pending()
	require.Equal(t, 1, tracked)
}

// TestQueueAndBytesLimits: a queue's own limit, and the byte budget.
func TestQueueAndBytesLimits(t *testing.T) {
	h := newHarness(t, 1, 3, func(c *Config) { c.MaxQueuePending = 2; c.MaxPendingBytes = 8 << 10 })
	acked(t, h.enqueue("n1", reqQ("a", time.Minute)))
	acked(t, h.enqueue("n1", reqQ("a", time.Minute)))
	r := h.enqueue("n1", reqQ("a", time.Minute))
	require.ErrorIs(t, r.Err, ErrQueueFull)
	require.Contains(t, r.Err.Error(), `queue "a"`)
	acked(t, h.enqueue("n1", reqQ("b", time.Minute)))

	big := reqQ("c", time.Minute)
	big.Body = make([]byte, 8<<10)
	r = h.enqueue("n1", big)
	require.ErrorIs(t, r.Err, ErrNodeFull)
	require.Contains(t, r.Err.Error(), "bytes")
	requirePendingConsistent(t, h)
}

// TestReplicasFull: when a majority of the replicas refuse a task under their limits,
// the coordinator answers ErrNodeFull, and the replica that stored it (itself here)
// cancels it, so that a refused task never runs.
func TestReplicasFull(t *testing.T) {
	h := newHarness(t, 3, 5, func(c *Config) {
		if c.ID != "n1" {
			c.MaxPending = 1
		}
	})
	r1 := h.enqueue("n1", req(time.Minute))
	h.run(time.Second)
	first := acked(t, r1)
	r := h.enqueue("n1", req(10*time.Second))
	h.run(2 * time.Second)
	require.True(t, r.done)
	require.ErrorIs(t, r.Err, ErrNodeFull)
	require.Contains(t, r.Err.Error(), "replica n")
	h.run(5 * time.Minute)
	for _, d := range h.deliveries {
		require.Equal(t, first, d.TaskID, "a refused task ran: %v", d)
	}
	require.Equal(t, StateCancelled, h.stateOn("n1", r.ID), "the coordinator's own copy of the refused task")
	requirePendingConsistent(t, h)
}

// TestFinishedTasksDropTheirBody: a finished task is kept for the dedup window
// without its body (it is never delivered again), except a dead one, which a
// re-queue copies.
func TestFinishedTasksDropTheirBody(t *testing.T) {
	q := DefaultQueueConfig()
	q.Retry.TaskRetryLimit = 1
	h := newHarness(t, 3, 9, nil)
	h.setQueues(map[string]QueueConfig{"failing": q})
	h.worker = func(d Delivery, _ int) (int, time.Duration) {
		if d.Task.Queue == "failing" {
			return 500, 10 * time.Millisecond
		}
		return 200, 10 * time.Millisecond
	}
	ok := req(time.Second)
	ok.Body = make([]byte, 4096)
	rOK := h.enqueue("n1", ok)
	dead := reqQ("failing", time.Second)
	dead.Body = []byte("keep me")
	rDead := h.enqueue("n1", dead)
	h.run(10 * time.Minute)
	idOK, idDead := acked(t, rOK), acked(t, rDead)
	for _, n := range h.replicas(idOK) {
		st, found := h.node(n).Task(idOK)
		require.True(t, found)
		require.Equal(t, StateSucceeded, st.State)
		require.Nil(t, st.Task.Body, "node %s keeps the body of a succeeded task", n)
	}
	for _, n := range h.replicas(idDead) {
		st, found := h.node(n).Task(idDead)
		require.True(t, found)
		require.Equal(t, StateDead, st.State)
		require.Equal(t, []byte("keep me"), st.Task.Body, "node %s dropped a dead task's body: re-queue needs it", n)
	}
	require.Len(t, h.deliveriesOf(idOK), 1)
	requirePendingConsistent(t, h)
}
