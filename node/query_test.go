package node

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A Describe that joins one in flight (one replica down holds it an EnqueueTimeout)
// asks the replicas again: its answer is no older than its request. Before, the
// joined client read the view of the first request, the coordinator's own final copy
// notwithstanding: "scheduled" for a task that had succeeded seconds before (V1,
// seed 11 of at-most-once-faults with lookups).
func TestJoinedDescribeAsksAgain(t *testing.T) {
	h := newHarness(t, 3, 5, nil)
	r := h.enqueue("n1", req(2*time.Second))
	h.run(time.Second)
	id := acked(t, r)
	reps := h.replicas(id)
	coord, down := reps[0], reps[2]
	h.crash(down)

	type answer struct {
		st  TaskStatus
		err error
		at  time.Duration
	}
	var first, second *answer
	h.at(1500*time.Millisecond, func() {
		h.node(coord).Describe(id, func(st TaskStatus, err error) { first = &answer{st, err, h.elapsed()} })
	})
	h.run(4 * time.Second)
	require.Nil(t, first, "a replica is down and the task was not final: the first Describe waits")
	st, ok := h.node(coord).Task(id)
	require.True(t, ok)
	require.Equal(t, StateSucceeded, st.State, "the two replicas up delivered it: %v", h.deliveriesOf(id))

	h.node(coord).Describe(id, func(st TaskStatus, err error) { second = &answer{st, err, h.elapsed()} })
	h.run(10 * time.Second)
	require.NotNil(t, second)
	require.NoError(t, second.err)
	require.Equal(t, StateSucceeded, second.st.State, "the joined Describe's view is from after its request")
	require.Less(t, second.at, 4*time.Second+describeGrace+100*time.Millisecond, "final: it waits describeGrace at most for the down replica")
	require.NotNil(t, first)
	require.Equal(t, StateSucceeded, first.st.State, "the first client gets the fresh view with it")
}

// taskViews is what a node says of each task (its own state and its acceptor's),
// for comparing two nodes that should not differ.
func taskViews(n *Node) string {
	var out string
	for _, id := range n.TaskIDs() {
		st, _ := n.Task(id)
		acc, _ := n.Acceptor(id)
		out += fmt.Sprintf("%s %s attempt %d retries %d status %d next %s reason %q acceptor %+v\n",
			id, st.State, st.Attempt, st.Retries, st.LastStatus, st.NextETA, st.Reason, acc)
	}
	return out
}

// Lookups and Describes change no node's state: two clusters driven alike, one of
// them answering every kind of query from every node (the tasks succeeded, dead,
// waiting, one not there at all; one link cut, so that some queries time out), end
// with the same tasks in the same states on every node, the same records logged,
// the same state changes seen, and the same messages sent but for the queries' own.
func TestLookupsChangeNoState(t *testing.T) {
	run := func(queries bool) (*harness, [][]Record) {
		q := DefaultQueueConfig()
		q.Retry.TaskRetryLimit = 1
		q.Retry.MinBackoff = 100 * time.Millisecond
		h := newHarness(t, 3, 9, nil)
		logs := make([][]Record, len(h.order))
		for i, id := range h.order {
			h.nodes[id].storage = func() Storage { return keptStorage{h: h, recs: &logs[i]} }
			h.crash(id)
			h.restart(id)
		}
		h.run(0)
		h.setQueues(map[string]QueueConfig{"failing": q})
		h.worker = func(d Delivery, _ int) (int, time.Duration) {
			if d.Task.Queue == "failing" {
				return 500, 20 * time.Millisecond
			}
			return 200, 20 * time.Millisecond
		}
		var ids []string
		for i, r := range []EnqueueRequest{req(0), reqQ("failing", 0), req(time.Hour), req(3 * time.Second)} {
			res := h.enqueue(h.order[i%3], r)
			h.run(h.elapsed() + 500*time.Millisecond)
			ids = append(ids, acked(t, res))
		}
		ids = append(ids, "00000000-0000-4000-8000-000000000000") // held by nobody
		h.run(2 * time.Second)
		h.block("n1", "n2")
		if queries {
			for _, from := range h.order {
				for _, id := range ids {
					h.node(from).Describe(id, func(TaskStatus, error) {})
					h.node(from).Lookup(id, func(TaskStatus, error) {})
				}
			}
		}
		h.run(20 * time.Second)
		return h, logs
	}
	quiet, quietLogs := run(false)
	asked, askedLogs := run(true)

	queries := 0
	var quietSent, askedSent []string
	for _, s := range quiet.sent {
		quietSent = append(quietSent, fmt.Sprintf("%s %v", s.At, s.Msg))
	}
	for _, s := range asked.sent {
		if s.Msg.Type == MsgStatus || s.Msg.Type == MsgStatusResp {
			queries++
			continue
		}
		askedSent = append(askedSent, fmt.Sprintf("%s %v", s.At, s.Msg))
	}
	require.Greater(t, queries, 0, "the queries were made")
	require.Equal(t, quietSent, askedSent, "the same messages, but for the queries'")
	for _, id := range quiet.order {
		require.Equal(t, taskViews(quiet.node(id)), taskViews(asked.node(id)), "node %s", id)
		require.NoError(t, asked.node(id).CheckCounts())
	}
	require.Equal(t, quietLogs, askedLogs, "the same records logged")
	require.Equal(t, quiet.states, asked.states, "the same state changes")
	require.Equal(t, quiet.decisions, asked.decisions)
}
