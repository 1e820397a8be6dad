package node

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func requireCountsConsistent(t *testing.T, h *harness) {
	t.Helper()
	for _, id := range h.order {
		if !h.nodes[id].down {
			require.NoError(t, h.node(id).CheckCounts(), "node %s", id)
		}
	}
}

// countCluster asks node from for a cluster-wide count and runs until it answers.
func countCluster(t *testing.T, h *harness, from NodeID) (ClusterCounts, time.Duration) {
	t.Helper()
	var got ClusterCounts
	done := false
	asked := h.elapsed()
	var took time.Duration
	h.node(from).CountCluster(func(c ClusterCounts) { got, done, took = c, true, h.elapsed()-asked })
	h.run(h.elapsed() + 3*time.Second)
	require.True(t, done, "no answer")
	return got, took
}

// A cluster-wide count counts each task once, although with five nodes and R=3 each
// task is on three of them, follows state changes, and still counts every task while
// a minority of its replicas is down: each task on its lowest-ranked replica that
// answers. The members that did not answer are named, and the answer comes within
// ListTimeout.
func TestCountClusterCountsEachTaskOnce(t *testing.T) {
	h := newHarness(t, 5, 31, nil)
	nodes := []NodeID{"n1", "n2", "n3", "n4", "n5"}
	var later []string
	for i := range 20 {
		r := h.enqueue(nodes[i%5], reqQ("later", time.Hour))
		h.run(h.elapsed() + 50*time.Millisecond)
		later = append(later, acked(t, r))
	}
	for i := range 7 {
		r := h.enqueue(nodes[i%5], reqQ("soon", 100*time.Millisecond))
		h.run(h.elapsed() + 50*time.Millisecond)
		acked(t, r)
	}
	h.run(h.elapsed() + 10*time.Second) // the "soon" tasks are delivered
	requireCountsConsistent(t, h)
	held := 0
	for _, id := range nodes {
		held += h.node(id).QueueCounts("later")[StateScheduled]
	}
	require.Equal(t, 60, held, "each task is held three times")

	c, took := countCluster(t, h, "n2")
	require.Empty(t, c.Missing)
	require.Equal(t, map[string]map[TaskState]int{"later": {StateScheduled: 20}, "soon": {StateSucceeded: 7}}, c.Queues)
	require.Less(t, took, 100*time.Millisecond, "everyone answered: no wait")

	// A cancel is a state change like any other.
	var st TaskState
	h.node("n4").Cancel(later[0], func(s TaskState, err error) { require.NoError(t, err); st = s })
	h.run(h.elapsed() + 2*time.Second)
	require.Equal(t, StateCancelled, st)
	c, _ = countCluster(t, h, "n5")
	require.Equal(t, map[TaskState]int{StateScheduled: 19, StateCancelled: 1}, c.Queues["later"])
	requireCountsConsistent(t, h)

	// Two of five down: every task still has a replica that answers.
	h.crash("n1")
	h.crash("n3")
	c, took = countCluster(t, h, "n2")
	require.Equal(t, []NodeID{"n1", "n3"}, c.Missing)
	require.Equal(t, map[TaskState]int{StateScheduled: 19, StateCancelled: 1}, c.Queues["later"])
	require.Equal(t, map[TaskState]int{StateSucceeded: 7}, c.Queues["soon"])
	require.Equal(t, h.node("n2").Config().ListTimeout, took, "a partial answer waits ListTimeout, no longer")

	// Four of five down: the tasks only they hold are missing, and the answer says who.
	h.crash("n2")
	h.crash("n4")
	c, _ = countCluster(t, h, "n5")
	require.Equal(t, []NodeID{"n1", "n2", "n3", "n4"}, c.Missing)
	total := 0
	for _, v := range c.Queues["later"] {
		total += v
	}
	require.Less(t, total, 20)
	require.Positive(t, total)
}

// A restart rebuilds the counters from the log.
func TestCountsSurviveRestart(t *testing.T) {
	h := newHarness(t, 1, 5, nil)
	for range 3 {
		h.enqueue("n1", reqQ("q", time.Hour))
	}
	h.enqueue("n1", reqQ("p", 10*time.Millisecond))
	h.run(h.elapsed() + 5*time.Second)
	require.Equal(t, map[string]map[TaskState]int{"q": {StateScheduled: 3}, "p": {StateSucceeded: 1}}, h.node("n1").Counts())
	require.Equal(t, []string{"p", "q"}, h.node("n1").QueueNames())
	requireCountsConsistent(t, h)
}
