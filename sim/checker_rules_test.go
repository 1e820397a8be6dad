package sim

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/node"
)

// checkerWorld builds a world of three idle nodes (n1..n3, all up) whose checker is
// driven by hand, and a task of queue "q" held by all three. retry is the queue's
// retry object in scenario JSON.
func checkerWorld(t testing.TB, retry, drift string) (*world, *node.Task) {
	t.Helper()
	sc := mustParse(t, fmt.Sprintf(`{
  "name": "checker-by-hand",
  "cluster": {"nodes": 3, "replicas": 3, "max_clock_drift": %q},
  "workload": {"tasks": 0, "rate": 1, "queues": [{"name": "q", "retry": %s}]},
  "duration": "1s"
}`, drift, retry))
	w := &world{sc: sc, byID: map[node.NodeID]*simNode{}}
	for i := range 3 {
		s := &simNode{w: w, idx: i, id: node.NodeID(nodeName(i)), up: true, incarnation: 1}
		w.nodes = append(w.nodes, s)
		w.byID[s.id] = s
	}
	w.check = newChecker(w)
	task := &node.Task{ID: "task-1", Queue: "q", ETA: epoch, Created: epoch, Delivery: node.AtLeastOnce, Replicas: []node.NodeID{"n1", "n2", "n3"}}
	for _, s := range w.nodes {
		w.check.stateChanged(s, task, node.StateNone, node.StateScheduled)
	}
	return w, task
}

// deliverAt has s deliver attempt a of task from start to end (true times since the
// run began), the worker answering status.
func deliverAt(w *world, s *simNode, task *node.Task, a uint64, start, end time.Duration, status int) {
	w.now = int64(start)
	id := w.check.deliveryStarted(s, node.Delivery{Task: task, Attempt: a})
	w.now = int64(end)
	w.check.deliveryEnded(id, status)
}

// failThenRetry has n1 fail len(gaps) deliveries, each starting gaps[i] after the
// previous one ended (the first at 1 s), and returns the violations of Q4.
func failThenRetry(t *testing.T, retry string, gaps []time.Duration) []Violation {
	w, task := checkerWorld(t, retry, "10ms")
	n1 := w.nodes[0]
	at := time.Second
	for i, g := range gaps {
		at += g
		deliverAt(w, n1, task, uint64(i+1), at, at+5*time.Millisecond, 503)
		at += 5 * time.Millisecond
	}
	var q4 []Violation
	for _, v := range w.check.violations {
		if v.Invariant == "Q4" {
			q4 = append(q4, v)
		}
	}
	return q4
}

// Q4's backoff is the checker's own App Engine formula, not the node's: a node whose
// backoff stopped doubling too soon (max_doublings taken as 0) is caught, a node that
// waits exactly the right gaps is not.
func TestQ4BackoffIsTheCheckersOwn(t *testing.T) {
	retry := `{"min_backoff": "1s", "max_backoff": "1h", "max_doublings": 2}`
	right := []time.Duration{0, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 12 * time.Second}
	require.Empty(t, failThenRetry(t, retry, right))

	linear := []time.Duration{0, time.Second, 2 * time.Second, 3 * time.Second, 4 * time.Second}
	q4 := failThenRetry(t, retry, linear)
	require.Len(t, q4, 2, "the 4th and 5th retries are early: %v", q4)
	require.Contains(t, q4[0].Detail, "retry after 3 failures")
	require.Contains(t, q4[0].Detail, "the backoff is 4s")
}

// The checker's formula and node.RetryConfig.Backoff agree everywhere: a bug in
// either (a node that ignores max_doublings, say) fails here.
func TestQ4BackoffMatchesTheNodes(t *testing.T) {
	for _, minB := range []time.Duration{100 * time.Millisecond, time.Second, 3 * time.Second} {
		for _, maxB := range []time.Duration{minB, 10 * time.Second, time.Hour} {
			if maxB < minB {
				continue
			}
			for doublings := range 6 {
				r := node.RetryConfig{MinBackoff: minB, MaxBackoff: maxB, MaxDoublings: doublings}
				for k := 1; k <= 40; k++ {
					require.Equal(t, backoff(r, k), r.Backoff(k), "min %s max %s max_doublings %d after %d failures", minB, maxB, doublings, k)
				}
			}
		}
	}
}

// After the retry limit's failures a task is dead: one more delivery is a Q4
// violation, however long it waited.
func TestQ4RetryLimit(t *testing.T) {
	retry := `{"task_retry_limit": 2, "min_backoff": "1s", "max_backoff": "1s"}`
	require.Empty(t, failThenRetry(t, retry, []time.Duration{0, time.Second, time.Second}), "two retries are allowed")
	q4 := failThenRetry(t, retry, []time.Duration{0, time.Second, time.Second, time.Minute})
	require.Len(t, q4, 1)
	require.Contains(t, q4[0].Detail, "over the retry limits")
}

// The age limit counts the task's age when a retry starts, as the holder does: a retry
// whose backoff ran past task_age_limit is not made, even though the last failure
// ended in time.
func TestQ4AgeLimitAtTheStart(t *testing.T) {
	retry := `{"task_age_limit": "5s", "min_backoff": "1s", "max_backoff": "1m"}`
	require.Empty(t, failThenRetry(t, retry, []time.Duration{0, time.Second, 2 * time.Second}), "retries at ages 2 and 4 s are allowed")
	q4 := failThenRetry(t, retry, []time.Duration{0, time.Second, 2 * time.Second, 4 * time.Second})
	require.Len(t, q4, 1, "the retry at age 8 s starts past the limit, though the failure before it ended at 4 s")
	require.Contains(t, q4[0].Detail, "over the retry limits")
}

// Q4's other half: a task dies only once every retry limit that is set is used up,
// by the deciding node's own count. A node that ends it dead one failure early, or
// before its age limit, is caught; one that waits for both is not.
func TestQ4NoDeathBeforeTheLimits(t *testing.T) {
	for _, c := range []struct {
		retry   string
		retries int
		age     time.Duration
		early   bool
	}{
		{`{"task_retry_limit": 2}`, 2, time.Minute, true},
		{`{"task_retry_limit": 2}`, 3, time.Second, false},
		{`{"task_retry_limit": 2, "task_age_limit": "10s"}`, 5, 10 * time.Second, true},
		{`{"task_retry_limit": 2, "task_age_limit": "10s"}`, 3, 11 * time.Second, false},
		{`{"task_age_limit": "10s"}`, 1, 9 * time.Second, true},
		{`{}`, 1, time.Second, false}, // no limit: the task is never ended dead this way, and not judged
	} {
		w, task := checkerWorld(t, c.retry, "10ms")
		q := w.check.queues["q"]
		w.check.checkDeathCount(w.nodes[0], w.check.rec(task), q.retry, c.retries, c.age)
		if !c.early {
			require.Empty(t, w.check.violations, "%s: %d failures at %s", c.retry, c.retries, c.age)
			continue
		}
		require.Len(t, w.check.violations, 1, "%s: %d failures at %s", c.retry, c.retries, c.age)
		require.Equal(t, "Q4", w.check.violations[0].Invariant)
		require.Contains(t, w.check.violations[0].Detail, "before the retry limits were used up")
	}
}

// End to end, with real nodes: tasks whose workers keep failing die at the retry
// limit, and the deciders are found to have counted enough failures (no false alarm).
func TestQ4DeathsAtTheLimitPass(t *testing.T) {
	sc := mustParse(t, `{
  "name": "deaths",
  "cluster": {"nodes": 3, "replicas": 3},
  "workload": {"tasks": 20, "rate": 10, "queues": [{"name": "q", "retry": {"task_retry_limit": 2, "min_backoff": "100ms", "max_backoff": "1s"}}]},
  "workers": {"server_error": 1},
  "duration": "10s"
}`)
	r, err := Run(sc, 1, Options{})
	require.NoError(t, err)
	require.False(t, r.Failed(), r.Report())
	require.Equal(t, 20, r.Acked)
	require.Equal(t, 3*20, r.Deliveries, "each task is delivered task_retry_limit + 1 times, then dies")
}

// What follows a success is a duplicate, not a retry: the failures before it do not
// set its backoff.
func TestQ4CountsFromTheLastSuccess(t *testing.T) {
	w, task := checkerWorld(t, `{"min_backoff": "10s", "max_backoff": "10s"}`, "10ms")
	n1, n2 := w.nodes[0], w.nodes[1]
	deliverAt(w, n1, task, 1, time.Second, 2*time.Second, 503)
	deliverAt(w, n1, task, 2, 12*time.Second, 13*time.Second, 200)
	deliverAt(w, n2, task, 3, 13500*time.Millisecond, 14*time.Second, 200)
	for _, v := range w.check.violations {
		require.NotEqual(t, "Q4", v.Invariant, v.String())
	}
}

// Q4 counts the failures the starting node can know of. A failure every replica that
// could know of it has since forgotten (crashes without durable storage) is not
// counted, and the early retry is excused as "forgotten"; one that a replica kept
// and passed on by message is counted.
func TestQ4CountsWhatCanBeKnown(t *testing.T) {
	w, task := checkerWorld(t, `{"min_backoff": "10s", "max_backoff": "10s"}`, "10ms")
	n1, n2, n3 := w.nodes[0], w.nodes[1], w.nodes[2]
	deliverAt(w, n1, task, 1, time.Second, 2*time.Second, 503)
	// n1 tells n2 (a Release); n2 and n1 then lose everything.
	rel := node.Message{Type: node.MsgRelease, From: "n1", To: "n2", TaskID: task.ID, Attempt: 1, Retries: 1}
	w.check.learn(n2, rel, w.check.sent(n1, rel))
	w.check.crashed(n1, nil)
	w.check.crashed(n2, nil)
	deliverAt(w, n3, task, 2, 3*time.Second, 4*time.Second, 200) // n3 never heard of it
	require.Empty(t, w.check.violations)
	require.Len(t, w.check.excused, 1)
	require.Equal(t, "forgotten", w.check.excused[0].Kind)

	w, task = checkerWorld(t, `{"min_backoff": "10s", "max_backoff": "10s"}`, "10ms")
	n1, n2, n3 = w.nodes[0], w.nodes[1], w.nodes[2]
	deliverAt(w, n1, task, 1, time.Second, 2*time.Second, 503)
	rel.Retries = 1
	w.check.learn(n2, rel, w.check.sent(n1, rel))
	w.check.crashed(n1, nil)
	grant := node.Message{Type: node.MsgClaimResp, From: "n2", To: "n3", TaskID: task.ID, Attempt: 2, Granted: true, Retries: 1}
	w.check.learn(n3, grant, w.check.sent(n2, grant)) // n2 kept it and tells n3
	deliverAt(w, n3, task, 2, 3*time.Second, 4*time.Second, 200)
	require.Len(t, w.check.violations, 1)
	require.Equal(t, "Q4", w.check.violations[0].Invariant)

	// A Store that gives the task back teaches the failures it carries only to a
	// node that took it: one that lost the task and refused the Store (its recovery
	// wait) learnt nothing, and passes nothing on.
	w, task = checkerWorld(t, `{"min_backoff": "10s", "max_backoff": "10s"}`, "10ms")
	n1, n2, n3 = w.nodes[0], w.nodes[1], w.nodes[2]
	deliverAt(w, n1, task, 1, time.Second, 2*time.Second, 503)
	w.check.crashed(n2, nil) // n2 loses the task (no durable storage)
	store := node.Message{Type: node.MsgStore, From: "n1", To: "n2", TaskID: task.ID, Task: task, Retries: 1}
	w.check.learn(n2, store, w.check.sent(n1, store)) // refused: n2 does not hold the task
	w.check.crashed(n1, nil)
	grant = node.Message{Type: node.MsgClaimResp, From: "n2", To: "n3", TaskID: task.ID, Attempt: 2, Granted: true}
	w.check.learn(n3, grant, w.check.sent(n2, grant))
	deliverAt(w, n3, task, 2, 3*time.Second, 4*time.Second, 200)
	require.Empty(t, w.check.violations, "nobody who could tell n3 knew of the failure")
	require.Len(t, w.check.excused, 1)

	// Taken, it is learnt.
	w, task = checkerWorld(t, `{"min_backoff": "10s", "max_backoff": "10s"}`, "10ms")
	n1, n2, n3 = w.nodes[0], w.nodes[1], w.nodes[2]
	deliverAt(w, n1, task, 1, time.Second, 2*time.Second, 503)
	w.check.crashed(n2, nil)
	w.check.stateChanged(n2, task, node.StateNone, node.StateScheduled) // n2 took the Store
	w.check.learn(n2, store, w.check.sent(n1, store))
	w.check.crashed(n1, nil)
	w.check.learn(n3, grant, w.check.sent(n2, grant))
	deliverAt(w, n3, task, 2, 3*time.Second, 4*time.Second, 200)
	require.Len(t, w.check.violations, 1)
	require.Equal(t, "Q4", w.check.violations[0].Invariant)
}

// grantBy has acceptor grant claimant's attempt now (as the node would send it).
func grantBy(w *world, acceptor, claimant *simNode, task *node.Task, a uint64) {
	w.check.nodeSent(acceptor, node.Message{Type: node.MsgClaimResp, From: acceptor.id, To: claimant.id, TaskID: task.ID, Attempt: a, Granted: true})
}

func learnsSuccess(w *world, s *simNode, task *node.Task) {
	w.check.stateChanged(s, task, node.StateScheduled, node.StateSucceeded)
}

// S3 judges what the replicas knew when the grants of the new delivery were given,
// not when it starts: a claimant that won its quorum before the success reached a
// majority, and was paused before starting, is an excused duplicate. A claim that
// wins its quorum after the success reached a majority is still a violation.
func TestS3CountsWhatWasKnownAtTheGrants(t *testing.T) {
	w, task := checkerWorld(t, `{}`, "10ms")
	n1, n2, n3 := w.nodes[0], w.nodes[1], w.nodes[2]
	w.now = int64(time.Second)
	w.check.paused(n1) // n1 is paused while its worker answers 2xx
	deliverAt(w, n1, task, 1, time.Second, 2*time.Second, 200)
	w.now = int64(3 * time.Second)
	grantBy(w, n2, n2, task, 2)
	grantBy(w, n3, n2, task, 2) // n2 won attempt 2; then n2 is paused
	w.now = int64(4 * time.Second)
	learnsSuccess(w, n1, task) // n1 resumes and tells n3: a majority knows
	learnsSuccess(w, n3, task)
	deliverAt(w, n2, task, 2, 5*time.Second, 5500*time.Millisecond, 200) // n2 resumes
	require.Empty(t, w.check.violations)
	require.Len(t, w.check.excused, 1)
	require.Equal(t, "duplicate", w.check.excused[0].Kind)
	require.Contains(t, w.check.excused[0].Cause, "holder paused")

	w.now = int64(6 * time.Second)
	grantBy(w, n2, n3, task, 3)
	grantBy(w, n3, n3, task, 3)
	w.check.deliveryStarted(n3, node.Delivery{Task: task, Attempt: 3})
	require.Len(t, w.check.violations, 1)
	require.Equal(t, "S3", w.check.violations[0].Invariant)
	require.Contains(t, w.check.violations[0].Detail, "n3 knew of the success at 4s and granted the attempt at 6s")
}

// A replica that granted a claim before the success reached it cannot take its
// grant back: a claim whose last grant comes after a majority knew of the success,
// its other grant given before, is a duplicate its holder's fault excuses, not a
// violation (seed 45 of big-cluster-swarm: a grant and the success's Done held back
// by a partition, delivered at the heal, the Done first).
func TestS3GrantGivenBeforeTheSuccessReachedTheGranter(t *testing.T) {
	w, task := checkerWorld(t, `{}`, "10ms")
	n1, n2, n3 := w.nodes[0], w.nodes[1], w.nodes[2]
	w.now = int64(time.Second)
	w.check.paused(n1)
	deliverAt(w, n1, task, 1, time.Second, 2*time.Second, 200)
	w.now = int64(3 * time.Second)
	grantBy(w, n2, n3, task, 2) // n2 grants n3's claim, knowing nothing yet
	w.now = int64(4 * time.Second)
	learnsSuccess(w, n1, task)
	learnsSuccess(w, n2, task) // a majority knows now
	w.now = int64(5 * time.Second)
	grantBy(w, n3, n3, task, 2) // the quorum completes after that
	w.check.deliveryStarted(n3, node.Delivery{Task: task, Attempt: 2})
	require.Empty(t, w.check.violations)
	require.Len(t, w.check.excused, 1)
	require.Contains(t, w.check.excused[0].Cause, "holder paused")
}

// Lost outcome messages excuse a duplicate only while the success's holder keeps
// sending Done (or a majority acknowledged it): a holder that gave up after one
// acknowledgement does not hide behind them.
func TestS3LostOutcomesExcuseOnlyAHolderThatKeptSending(t *testing.T) {
	for _, kept := range []bool{true, false} {
		w, task := checkerWorld(t, `{}`, "10ms")
		n1, n2, n3 := w.nodes[0], w.nodes[1], w.nodes[2]
		deliverAt(w, n1, task, 1, time.Second, 2*time.Second, 200)
		learnsSuccess(w, n1, task)
		done := func(to *simNode) node.Message {
			return node.Message{Type: node.MsgOutcome, From: "n1", To: to.id, TaskID: task.ID, Attempt: 1, State: node.StateSucceeded}
		}
		w.check.nodeSent(n1, done(n1))
		w.check.nodeSent(n1, node.Message{Type: node.MsgOutcomeResp, From: "n1", To: "n1", TaskID: task.ID, State: node.StateSucceeded})
		for at := 2 * time.Second; at < 12*time.Second; at += time.Second {
			w.now = int64(at)
			if kept || at == 2*time.Second {
				for _, to := range []*simNode{n2, n3} {
					w.check.nodeSent(n1, done(to))
					w.check.messageLost(done(to))
				}
			}
		}
		w.now = int64(12 * time.Second)
		grantBy(w, n2, n2, task, 2)
		grantBy(w, n3, n2, task, 2)
		deliverAt(w, n2, task, 2, 12*time.Second, 13*time.Second, 200)
		if kept {
			require.Empty(t, w.check.violations)
			require.Len(t, w.check.excused, 1)
			require.Equal(t, "outcome messages lost", w.check.excused[0].Cause)
			continue
		}
		require.Len(t, w.check.violations, 1, "a holder that stopped sending Done after one acknowledgement")
		require.Equal(t, "S3", w.check.violations[0].Invariant)
	}
}

// An Outcome the network holds back (a reorder's delay) excuses a duplicate only
// when it was still on its way as the new claim won its quorum (seed 36 of an early
// grant-sync-race: a Done 1.15 s late, past the lease); one that arrived before is
// no excuse.
func TestS3HeldBackOutcomeExcusesOnlyWhileOnItsWay(t *testing.T) {
	for _, late := range []bool{true, false} {
		w, task := checkerWorld(t, `{}`, "10ms")
		n1, n2, n3 := w.nodes[0], w.nodes[1], w.nodes[2]
		deliverAt(w, n1, task, 1, time.Second, 2*time.Second, 200)
		learnsSuccess(w, n1, task)
		arrival := int64(2500 * time.Millisecond)
		if late {
			arrival = int64(5 * time.Second)
		}
		w.check.outcomeHeldBack(node.Message{Type: node.MsgOutcome, From: "n1", To: "n2", TaskID: task.ID, Attempt: 1, State: node.StateSucceeded}, arrival)
		w.now = int64(4 * time.Second)
		grantBy(w, n2, n3, task, 2)
		grantBy(w, n3, n3, task, 2)
		deliverAt(w, n3, task, 2, 4*time.Second, 4500*time.Millisecond, 200)
		if late {
			require.Empty(t, w.check.violations)
			require.Len(t, w.check.excused, 1)
			require.Equal(t, "outcome messages held back", w.check.excused[0].Cause)
			continue
		}
		require.Len(t, w.check.violations, 1, "a Done that arrived before the claim won")
		require.Equal(t, "S3", w.check.violations[0].Invariant)
	}
}

// A scenario's change of a queue made while that queue's setup PUT is still
// unanswered waits for it: made at once, it ended the setup's repeats, and the
// clients, who begin once every setup is answered, never began (seeds that sent no
// task at all, and passed).
func TestQueueChangesWaitForTheQueuesSetup(t *testing.T) {
	sc := mustParse(t, `{
  "name": "setup-held",
  "cluster": {"nodes": 3, "replicas": 3},
  "workload": {"tasks": 30, "rate": 10, "countdown": {"min": "0s", "max": "1s"},
    "queues": [{"name": "slow", "rate": 5, "bucket_size": 2}]},
  "faults": {"schedule": [
    {"at": "0s", "kind": "crash", "nodes": ["n3"], "duration": "12s"},
    {"at": "4s", "kind": "pause_queue", "queue": "slow"},
    {"at": "6s", "kind": "resume_queue", "queue": "slow"}]},
  "duration": "20s",
  "liveness_bound": "2m"
}`)
	res, err := Run(sc, 1, Options{})
	require.NoError(t, err)
	require.False(t, res.Failed(), res.Report())
	require.Equal(t, 30, res.Enqueued, "the clients never began")
}

// While no node is up the clients wait, holding their requests: they send exactly
// workload.tasks of them, and the run ends once every answer is in, not at the
// liveness bound.
func TestWorkloadWaitsForANodeWithoutSendingMore(t *testing.T) {
	sc := mustParse(t, `{
  "name": "all-down",
  "cluster": {"nodes": 3, "replicas": 3, "storage": "durable"},
  "workload": {"tasks": 60, "rate": 20, "countdown": {"min": "0s", "max": "1s"}},
  "faults": {"schedule": [{"at": "1s", "kind": "crash", "nodes": ["n1", "n2", "n3"], "duration": "5s"}]},
  "duration": "10s",
  "liveness_bound": "5m"
}`)
	for seed := uint64(1); seed <= 3; seed++ {
		res, err := Run(sc, seed, Options{})
		require.NoError(t, err)
		require.False(t, res.Failed(), res.Report())
		require.Equal(t, 60, res.Enqueued, "seed %d", seed)
		require.Less(t, res.SimTime, time.Minute, "seed %d ran to the liveness bound", seed)
	}
}

// durableWorld is checkerWorld with durable storage and booted nodes, driven by hand:
// runFor runs its events for d.
func durableWorld(t testing.TB) (*world, *node.Task) {
	t.Helper()
	sc := mustParse(t, `{
  "name": "s8-by-hand",
  "cluster": {"nodes": 3, "replicas": 3, "storage": "durable"},
  "workload": {"tasks": 0, "rate": 1},
  "duration": "1s"
}`)
	w := &world{sc: sc, seed: 1, byID: map[node.NodeID]*simNode{}}
	w.rngNet, w.rngFault, w.rngWork, w.rngWorker, w.rngClock = rand.New(rand.NewPCG(1, 1)), rand.New(rand.NewPCG(1, 2)), rand.New(rand.NewPCG(1, 3)), rand.New(rand.NewPCG(1, 4)), rand.New(rand.NewPCG(1, 5))
	w.check = newChecker(w)
	for i := range 3 {
		s := &simNode{w: w, idx: i, id: node.NodeID(nodeName(i))}
		s.disk = newSimDisk(s)
		w.nodes = append(w.nodes, s)
		w.byID[s.id] = s
	}
	for _, s := range w.nodes {
		w.boot(s)
	}
	w.now = int64(2 * time.Second) // past every node's start, so that they take the task
	task := &node.Task{ID: "task-1", Queue: "default", URL: "http://w/", Method: "POST", ETA: epoch.Add(time.Hour), Created: epoch.Add(2 * time.Second), Nonce: 1, Replicas: []node.NodeID{"n1", "n2", "n3"}}
	return w, task
}

func runFor(w *world, d time.Duration) {
	end := w.now + int64(d)
	for len(w.queue) > 0 && w.queue[0].at <= end {
		e := w.queue.pop()
		w.now = e.at
		e.fn()
	}
	w.now = end
}

// S8: a replica that acknowledged storing a task holds it after a crash and restart;
// one whose log lost the acknowledged record (a storage that lied about its sync)
// is caught.
func TestS8AcknowledgedStoreSurvivesACrash(t *testing.T) {
	for _, lie := range []bool{false, true} {
		w, task := durableWorld(t)
		n2 := w.nodes[1]
		n2.n.Step(node.Message{Type: node.MsgStore, From: "n1", To: "n2", TaskID: task.ID, Task: task})
		runFor(w, time.Second) // synced and acknowledged
		require.True(t, w.check.acks[n2.idx].stores[task.ID])
		w.crash(n2, false)
		if lie {
			n2.disk = newSimDisk(n2) // a disk that lost what it said it synced
		}
		w.restart(n2)
		if !lie {
			require.Empty(t, w.check.violations)
			continue
		}
		require.Len(t, w.check.violations, 1)
		require.Equal(t, "S8", w.check.violations[0].Invariant)
		require.Contains(t, w.check.violations[0].Detail, "acknowledged storing the task")
	}
}

// Q1 across a settings change: permits the token node gave under the old rate may
// still start for node.PermitValidity + node.SlotGrace after it adopts the new one, so
// the old bucket's room lasts that long; after that a burst over the new bucket is a
// violation.
func TestQ1SettingsChangeLetsEarlierPermitsStart(t *testing.T) {
	sc := mustParse(t, `{
  "name": "q1-by-hand",
  "cluster": {"nodes": 3, "replicas": 3, "max_clock_drift": "10ms"},
  "workload": {"tasks": 0, "rate": 1, "queues": [{"name": "q", "rate": 20, "bucket_size": 5}]},
  "duration": "1s"
}`)
	w := &world{sc: sc, byID: map[node.NodeID]*simNode{}}
	for i := range 3 {
		s := &simNode{w: w, idx: i, id: node.NodeID(nodeName(i)), up: true, incarnation: 1}
		w.nodes = append(w.nodes, s)
		w.byID[s.id] = s
	}
	w.check = newChecker(w)
	token := node.TokenNode(w.check.members, "q")
	start := func(i int, at time.Duration) {
		task := &node.Task{ID: fmt.Sprintf("task-%d", i), Queue: "q", ETA: epoch, Created: epoch, Replicas: []node.NodeID{"n1", "n2", "n3"}}
		deliverAt(w, w.nodes[0], task, 1, at, at+time.Millisecond, 200)
	}
	for i := range 4 {
		start(i, time.Second) // within the bucket of 5
	}
	w.now = int64(1010 * time.Millisecond)
	slow := node.DefaultQueueConfig()
	slow.Rate, slow.BucketSize = 3, 1
	w.check.queueChanged(token, node.QueueSetting{Queue: "q", Config: slow, Version: 2})
	start(4, 1020*time.Millisecond) // both permitted before the change
	start(5, 1030*time.Millisecond)
	require.Empty(t, w.check.violations)

	start(6, 1500*time.Millisecond)
	start(7, 1510*time.Millisecond) // two at once: over the new bucket of 1
	require.Len(t, w.check.violations, 1)
	require.Equal(t, "Q1", w.check.violations[0].Invariant)
}

// Q5 excuses a delivery of a paused queue only when a majority of members lost the
// pause before they learnt it again (as Q6 does for a setting): with one member
// forgetful it is still a violation, with two of three it is excused as settings.
func TestQ5PauseLostByAMajority(t *testing.T) {
	for _, forgetful := range []int{0, 1, 2} {
		w, task := checkerWorld(t, `{}`, "10ms")
		put := w.check.putIssued("q")
		w.now = int64(time.Second)
		set := node.QueueSetting{Queue: "q", Version: 7, Paused: true}
		w.check.putAnswered(put, set, true)
		for _, s := range w.nodes {
			w.check.settingHeld(s.id, set)
		}
		w.check.queuePaused("q", put)
		for _, s := range w.nodes[:forgetful] {
			w.check.settingsForgotten(s, true)
		}
		deliverAt(w, w.nodes[2], task, 1, 2*time.Second, 3*time.Second, 200)
		var q5, excused int
		for _, v := range w.check.violations {
			if v.Invariant == "Q5" {
				q5++
			}
		}
		for _, e := range w.check.excused {
			if e.Kind == "settings" {
				excused++
			}
		}
		if forgetful < 2 {
			require.Equal(t, 1, q5, "%d of 3 members lost the pause: still paused", forgetful)
			require.Zero(t, excused)
		} else {
			require.Zero(t, q5, "a majority lost the pause: it is gone")
			require.Equal(t, 1, excused)
		}
	}
}

// L1's "failing" excuse: a task whose worker failed every delivery of the liveness
// phase, while the cluster kept retrying it at pace, may rightly still be pending.
// One the cluster stopped retrying, one with no delivery in the liveness phase, and
// one with a delivery in flight for longer than a lease are not excused.
func TestL1ExcusesOnlyATaskStillFailingAtPace(t *testing.T) {
	w, task := checkerWorld(t, `{"min_backoff": "1s", "max_backoff": "1s"}`, "10ms")
	n1 := w.nodes[0]
	r := w.check.byID[task.ID][0]
	deliverAt(w, n1, task, 1, time.Second, 2*time.Second, 503)
	w.liveness, w.livenessAt = true, int64(3*time.Second)
	w.now = int64(4 * time.Second)
	require.Zero(t, w.check.stillFailing(r), "no delivery in the liveness phase")

	deliverAt(w, n1, task, 2, 4*time.Second, 5*time.Second, 503)
	w.now = int64(6 * time.Second)
	require.Equal(t, 1, w.check.stillFailing(r))

	pace := time.Second + time.Duration(w.sc.Cluster.Lease) + 3*time.Duration(w.sc.Cluster.ReplicaOffset)
	w.now = int64(5*time.Second + pace + time.Millisecond)
	require.Zero(t, w.check.stillFailing(r), "the cluster stopped retrying it")

	w.now = int64(6 * time.Second)
	w.check.deliveryStarted(n1, node.Delivery{Task: task, Attempt: 3})
	require.Equal(t, 2, w.check.stillFailing(r), "a delivery in flight, started in time")
	w.now = int64(6*time.Second + time.Duration(w.sc.Cluster.Lease) + time.Millisecond)
	require.Zero(t, w.check.stillFailing(r), "a delivery in flight for longer than a lease")
}

// S3 under a moved list counts the knowers of the success among the replicas of the
// success's list only. n1's success (its holder paused, so nobody heard of it) and
// n4's later duplicate under the moved list [n2 n3 n4], known to n4 alone, are one
// knower of each list, not two of three: n2's claim under the moved list is an
// excused duplicate (seed 12 of replace-joiner-cut-off counted both and saw an S3).
// A success a majority of its own list knew of is still a violation.
func TestS3CountsKnowersOfTheSuccesssList(t *testing.T) {
	sc := mustParse(t, `{
  "name": "checker-by-hand",
  "cluster": {"nodes": 4, "replicas": 3, "max_clock_drift": "10ms"},
  "workload": {"tasks": 0, "rate": 1, "queues": [{"name": "q"}]},
  "duration": "1s"
}`)
	for _, majorityKnew := range []bool{false, true} {
		w := &world{sc: sc, byID: map[node.NodeID]*simNode{}}
		for i := range 4 {
			s := &simNode{w: w, idx: i, id: node.NodeID(nodeName(i)), up: true, incarnation: 1}
			w.nodes = append(w.nodes, s)
			w.byID[s.id] = s
		}
		w.check = newChecker(w)
		n1, n2, n3, n4 := w.nodes[0], w.nodes[1], w.nodes[2], w.nodes[3]
		task := &node.Task{ID: "task-1", Queue: "q", ETA: epoch, Created: epoch, Delivery: node.AtLeastOnce, Replicas: []node.NodeID{"n1", "n2", "n3"}}
		for _, s := range w.nodes[:3] {
			w.check.stateChanged(s, task, node.StateNone, node.StateScheduled)
		}
		w.now = int64(time.Second)
		w.check.paused(n1)
		deliverAt(w, n1, task, 1, time.Second, 2*time.Second, 200)
		learnsSuccess(w, n1, task)
		if majorityKnew {
			learnsSuccess(w, n3, task)
		}
		moved := *task
		moved.Replicas, moved.ListVersion = []node.NodeID{"n2", "n3", "n4"}, 4
		w.now = int64(3 * time.Second)
		w.check.stateChanged(n4, &moved, node.StateNone, node.StateScheduled)
		w.check.paused(n4)
		deliverAt(w, n4, &moved, 5, 3*time.Second, 4*time.Second, 200)
		learnsSuccess(w, n4, &moved)
		deliverAt(w, n2, &moved, 6, 5*time.Second, 6*time.Second, 200)
		var s3 int
		for _, v := range w.check.violations {
			if v.Invariant == "S3" {
				s3++
			}
		}
		if majorityKnew {
			require.Positive(t, s3, "n1 and n3 knew, a majority of n1's list")
			continue
		}
		require.Zero(t, s3, "%v", w.check.violations)
		require.NotEmpty(t, w.check.excused)
	}
}

// Q3 for an enqueue acknowledged that no replica stored: a coordinator that took
// late answers to an earlier enqueue of the name for its own (they name only the
// ID) answers a task nobody holds. The checker reports it (Q3 now) instead of
// stopping the run with a panic.
func TestQ3AcknowledgedEnqueueNoReplicaStored(t *testing.T) {
	w, first := checkerWorld(t, "{}", "1s")
	first.Name, first.Nonce = "name-1", 1
	w.check.enqueueAcked(first, 0)
	second := *first
	second.Nonce = 2 // another enqueue of the name, stored by no replica
	w.now = int64(time.Second)
	require.NotPanics(t, func() { w.check.enqueueAcked(&second, w.now) })
	require.Len(t, w.check.violations, 1)
	require.Equal(t, "Q3", w.check.violations[0].Invariant)
	require.Equal(t, 2, w.check.acked)
}
