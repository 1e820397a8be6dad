package sim

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/node"
)

// v1 returns the V1 violations so far.
func v1(w *world) []Violation {
	var out []Violation
	for _, v := range w.check.violations {
		if v.Invariant == "V1" {
			out = append(out, v)
		}
	}
	return out
}

// answer has a lookup of task through n1, made at `at`, answered now with state.
func answer(w *world, task *node.Task, at time.Duration, state node.TaskState, err error) {
	lk := &lookupRec{via: w.nodes[0], id: task.ID, at: int64(at)}
	w.check.lookupAnswered(lk, node.TaskStatus{Task: task, State: state}, err)
}

// V1 judges a final answer against the world: succeeded needs a delivery that
// answered 2xx, cancelled a client's cancel (or purge), dead a node that ended the
// task dead; an error or a state that is not final is always an honest answer.
func TestV1FinalAnswersMustBeTrue(t *testing.T) {
	w, task := checkerWorld(t, `{}`, "10ms")
	n1 := w.nodes[0]
	w.now = int64(time.Second)
	answer(w, task, time.Second, node.StateScheduled, nil)
	answer(w, task, time.Second, node.StateNone, node.ErrOutcomeUnknown)
	require.Empty(t, v1(w), "not final, or an error: nothing to judge")

	answer(w, task, time.Second, node.StateSucceeded, nil)
	require.Len(t, v1(w), 1)
	require.Contains(t, v1(w)[0].Detail, "no delivery of it had answered 2xx")

	w.now = int64(2 * time.Second)
	id := w.check.deliveryStarted(n1, node.Delivery{Task: task, Attempt: 1})
	answer(w, task, 2*time.Second, node.StateSucceeded, nil)
	require.Len(t, v1(w), 2, "the delivery is in flight: its success is not yet true")
	w.now = int64(3 * time.Second)
	w.check.deliveryEnded(id, 200)
	answer(w, task, 3*time.Second, node.StateSucceeded, nil)
	require.Len(t, v1(w), 3, "a 2xx, but no node took succeeded yet: the lookup decided it")
	w.check.stateChanged(n1, task, node.StateClaimed, node.StateSucceeded)
	answer(w, task, 3*time.Second, node.StateSucceeded, nil)
	require.Len(t, v1(w), 3, "true now")

	answer(w, task, 3*time.Second, node.StateCancelled, nil)
	require.Len(t, v1(w), 4)
	require.Contains(t, v1(w)[3].Detail, "no client had cancelled it")
	w.check.cancelRequested(task.ID)
	answer(w, task, 3*time.Second, node.StateCancelled, nil)
	require.Len(t, v1(w), 5, "asked, but no node ended it cancelled")
	w.check.stateChanged(w.nodes[1], task, node.StateScheduled, node.StateCancelled)
	answer(w, task, 3*time.Second, node.StateCancelled, nil)
	require.Len(t, v1(w), 5, "a cancel racing a success: both are true")

	answer(w, task, 3*time.Second, node.StateDead, nil)
	require.Len(t, v1(w), 6)
	require.Contains(t, v1(w)[5].Detail, "no node had ended it dead")

	other := *task
	other.ID = "task-2"
	answer(w, &other, 3*time.Second, node.StateScheduled, nil)
	lk := &lookupRec{via: n1, id: task.ID, at: int64(3 * time.Second)}
	w.check.lookupAnswered(lk, node.TaskStatus{Task: &other, State: node.StateSucceeded}, nil)
	require.Len(t, v1(w), 7)
	require.Contains(t, v1(w)[6].Detail, "the answer is of another task")
	w.check.lookupAnswered(lk, node.TaskStatus{Task: task, State: node.StateScheduled}, nil)
	require.Len(t, v1(w), 8)
	require.Contains(t, v1(w)[7].Detail, "answered twice")
}

// A purge or a deletion of the task's queue, or an enqueue of it refused as full,
// makes cancelled true as a client's cancel does.
func TestV1CancelledByPurgeOrRefusal(t *testing.T) {
	for _, by := range []string{"purge", "refused"} {
		w, task := checkerWorld(t, `{}`, "10ms")
		w.check.stateChanged(w.nodes[1], task, node.StateScheduled, node.StateCancelled)
		if by == "purge" {
			w.check.queueCancelRequested("q")
		} else {
			w.check.cancelRequested(task.ID)
		}
		answer(w, task, 0, node.StateCancelled, nil)
		require.Empty(t, v1(w), by)
	}
}

// A lookup made when a majority knew the task final, with every replica up and
// reachable throughout, must answer final; a status message lost, a replica that
// went down or paused, or a cut between the coordinator and a replica excuse an
// older view.
func TestV1StaleAnswerOnlyWhenEveryReplicaCouldAnswer(t *testing.T) {
	for _, c := range []struct {
		name  string
		spoil func(w *world)
		stale bool
	}{
		{"every replica answered", func(*world) {}, true},
		{"a status message lost", func(w *world) {
			w.check.messageLost(node.Message{Type: node.MsgStatusResp, TaskID: "task-1"})
		}, false},
		{"a replica crashed and restarted", func(w *world) { w.nodes[2].incarnation++ }, false},
		{"a replica paused and resumed", func(w *world) { w.check.paused(w.nodes[1]) }, false},
	} {
		w, task := checkerWorld(t, `{}`, "10ms")
		w.now = int64(time.Second)
		for _, s := range w.nodes[:2] {
			w.check.stateChanged(s, task, node.StateScheduled, node.StateSucceeded)
		}
		w.now = int64(5 * time.Second)
		lk := &lookupRec{via: w.nodes[0], id: task.ID, at: w.now, final: true, finalSince: int64(time.Second),
			nodes: w.nodes, incs: []uint64{1, 1, 1}}
		w.now += int64(time.Second)
		c.spoil(w)
		w.check.lookupAnswered(lk, node.TaskStatus{Task: task, State: node.StateScheduled}, nil)
		if !c.stale {
			require.Empty(t, v1(w), c.name)
			continue
		}
		require.Len(t, v1(w), 1, c.name)
		require.True(t, strings.Contains(v1(w)[0].Detail, "answered scheduled, but a majority of the task's replicas knew it final since 1s"), v1(w)[0].Detail)
	}
}

// A lookup made in the liveness phase that is never answered is V1; one made in the
// safety phase is not judged so (its node may go down, or wait out a replica).
func TestV1LookupNeverAnswered(t *testing.T) {
	sc := mustParse(t, `{
  "name": "lookups-lost",
  "cluster": {"nodes": 3, "replicas": 3, "replica_offset": "1s"},
  "network": {"latency": {"min": "1ms", "max": "10ms"}},
  "workload": {"tasks": 20, "rate": 10, "lookups": {"rate": 5}},
  "duration": "5s",
  "liveness_bound": "1m"
}`)
	res, err := Run(sc, 1, Options{})
	require.NoError(t, err)
	require.Zero(t, res.ViolationCounts["V1"], "answered: %v", res.Violations)
	require.NotZero(t, res.Lookups)

	lost := 0
	testLookupAnswerLost = func() bool { lost++; return true }
	defer func() { testLookupAnswerLost = nil }()
	res, err = Run(sc, 1, Options{})
	require.NoError(t, err)
	require.NotZero(t, lost)
	require.NotZero(t, res.ViolationCounts["V1"])
	for _, v := range res.Violations {
		require.Equal(t, "V1", v.Invariant)
		require.Contains(t, v.Detail, "in the liveness phase had no answer after 6s")
		require.GreaterOrEqual(t, v.At, 5*time.Second+6*time.Second, "made in the liveness phase, judged a bound later")
	}
}
