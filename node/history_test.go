package node

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// describe runs a Describe from node `from` and the cluster until it answers.
func (h *harness) describe(from NodeID, id string, within time.Duration) (TaskStatus, error, time.Duration) {
	var got TaskStatus
	var gotErr error
	done := false
	start := h.elapsed()
	var at time.Duration
	h.node(from).Describe(id, func(st TaskStatus, err error) {
		require.False(h.t, done, "reply called twice")
		got, gotErr, done, at = st, err, true, h.elapsed()
	})
	h.run(start + within)
	require.True(h.t, done, "Describe did not answer within %v", within)
	return got, gotErr, at - start
}

// A task that fails until its retry limit is used up dies with a reason naming the
// limit, the count and the last answer; Describe from any node merges the attempts
// of every replica that delivered, and exactly one node decides (and logs) it.
func TestDeadTaskSaysWhyAndShowsEveryAttempt(t *testing.T) {
	q := DefaultQueueConfig()
	q.Retry.TaskRetryLimit = 2
	q.Retry.MinBackoff = 100 * time.Millisecond
	h := newHarness(t, 3, 7, nil)
	h.setQueues(map[string]QueueConfig{"failing": q})
	h.worker = func(Delivery, int) (int, time.Duration) { return 500, 40 * time.Millisecond }
	h.body = "database is down"
	r := h.enqueue("n1", reqQ("failing", 0))
	h.run(time.Minute)
	id := acked(t, r)

	for _, from := range h.order {
		st, err, _ := h.describe(from, id, time.Second)
		require.NoError(t, err)
		require.Equal(t, StateDead, st.State)
		require.Len(t, st.Attempts, 3, "retry limit 2: the third failure kills it: %+v", st.Attempts)
		ds := h.deliveriesOf(id)
		require.Len(t, ds, 3)
		for i, a := range st.Attempts {
			require.Equal(t, ds[i].Attempt, a.Number)
			require.Equal(t, ds[i].Node, a.Node)
			require.Equal(t, epoch.Add(ds[i].At), a.Start)
			require.Equal(t, 40*time.Millisecond, a.Duration)
			require.False(t, a.InFlight)
			require.Equal(t, 500, a.Status)
			require.Equal(t, NoError, a.Error)
			require.Equal(t, "database is down", a.Body)
		}
		require.Contains(t, st.Reason, "retry limits reached (task_retry_limit 2) after 3 failed deliveries; last: HTTP 500: database is down")
	}
	require.Len(t, h.decisions, 1, "one node decides the task: %+v", h.decisions)
	require.Equal(t, StateDead, h.decisions[0].State)
	require.Equal(t, h.deliveriesOf(id)[2].Node, h.decisions[0].Node, "the node whose delivery used up the limit")
	require.Len(t, h.ended, 3, "the DeliveryObserver hears every result")
	for _, id := range h.order {
		st, ok := h.node(id).Task(r.ID)
		require.True(t, ok)
		require.Equal(t, h.decisions[0].Reason, st.Reason, "every replica adopted the reason with the outcome")
	}
}

// An at-most-once delivery that gets no answer ends the task unknown, and the
// history says it timed out.
func TestTimeoutIsAnErrorKind(t *testing.T) {
	amo := DefaultQueueConfig()
	amo.Delivery = AtMostOnce
	amo.DispatchDeadline = 2 * time.Second
	h := newHarness(t, 3, 3, nil)
	h.setQueues(map[string]QueueConfig{"once": amo})
	h.worker = func(Delivery, int) (int, time.Duration) { return 0, 0 }
	r := h.enqueue("n2", reqQ("once", 0))
	h.run(time.Minute)
	id := acked(t, r)
	st, err, _ := h.describe("n3", id, time.Second)
	require.NoError(t, err)
	require.Equal(t, StateUnknown, st.State)
	require.Len(t, st.Attempts, 1)
	a := st.Attempts[0]
	require.Equal(t, ErrorTimeout, a.Error)
	require.Equal(t, 0, a.Status)
	require.Equal(t, errDeadline.Error(), a.Message)
	require.Equal(t, 2*time.Second, a.Duration)
	require.Contains(t, st.Reason, "at-most-once: its one delivery got no answer (timeout: deadline exceeded")
}

// A node keeps the latest MaxAttemptHistory of its deliveries of a task, and the
// first MaxAttemptBody bytes of each answer.
func TestHistoryIsBounded(t *testing.T) {
	q := DefaultQueueConfig()
	q.Retry.TaskRetryLimit = 29
	q.Retry.MinBackoff = 10 * time.Millisecond
	q.Retry.MaxBackoff = 10 * time.Millisecond
	h := newHarness(t, 1, 1, nil)
	h.setQueues(map[string]QueueConfig{"q": q})
	h.worker = func(Delivery, int) (int, time.Duration) { return 503, time.Millisecond }
	h.body = strings.Repeat("x", 1000)
	r := h.enqueue("n1", reqQ("q", 0))
	h.run(5 * time.Second)
	id := acked(t, r)
	ds := h.deliveriesOf(id)
	require.Len(t, ds, 30)
	st, err, _ := h.describe("n1", id, time.Second)
	require.NoError(t, err)
	require.Equal(t, StateDead, st.State)
	require.Len(t, st.Attempts, MaxAttemptHistory)
	for i, a := range st.Attempts {
		require.Equal(t, ds[10+i].Attempt, a.Number, "the latest are kept, in order")
		require.Len(t, a.Body, MaxAttemptBody)
	}
}

// A Describe whose answer is final does not wait a whole EnqueueTimeout for a
// replica that is down: describeGrace, then it answers with the others' history.
func TestDescribeDoesNotWaitForADownReplica(t *testing.T) {
	h := newHarness(t, 3, 11, nil)
	r := h.enqueue("n1", req(0))
	h.run(10 * time.Second)
	id := acked(t, r)
	ds := h.deliveriesOf(id)
	require.Len(t, ds, 1)
	var down NodeID
	for _, rep := range h.replicas(id) {
		if rep != ds[0].Node {
			down = rep
			break
		}
	}
	h.crash(down)
	st, err, took := h.describe(ds[0].Node, id, 10*time.Second)
	require.NoError(t, err)
	require.Equal(t, StateSucceeded, st.State)
	require.Len(t, st.Attempts, 1)
	require.Equal(t, 200, st.Attempts[0].Status)
	require.Empty(t, st.Reason)
	require.LessOrEqual(t, took, describeGrace+100*time.Millisecond, "a final answer waits describeGrace at most")
	require.Greater(t, took, 10*time.Millisecond, "it did wait for the others")
}

// keptStorage is a durable Storage whose synced records outlive a restart.
type keptStorage struct {
	h    *harness
	recs *[]Record
}

func (s keptStorage) Durable() bool           { return true }
func (s keptStorage) Append(recs ...Record)   { *s.recs = append(*s.recs, recs...) }
func (s keptStorage) Sync(done func())        { s.h.schedule(time.Millisecond, done) }
func (s keptStorage) Load() ([]Record, error) { return *s.recs, nil }

// Why a task died is part of its durable outcome: a restarted replica still says
// it, though the history (memory only) is gone.
func TestDeadReasonSurvivesARestart(t *testing.T) {
	q := DefaultQueueConfig()
	q.Retry.TaskRetryLimit = 1
	h := newHarness(t, 1, 2, nil)
	var recs []Record
	h.nodes["n1"].storage = func() Storage { return keptStorage{h: h, recs: &recs} }
	h.crash("n1")
	h.restart("n1")
	h.run(0)
	h.setQueues(map[string]QueueConfig{"q": q})
	h.worker = func(Delivery, int) (int, time.Duration) { return 404, time.Millisecond }
	r := h.enqueue("n1", reqQ("q", 0))
	h.run(time.Minute)
	id := acked(t, r)
	before, ok := h.node("n1").Task(id)
	require.True(t, ok)
	require.Equal(t, StateDead, before.State)
	require.Contains(t, before.Reason, "HTTP 404")

	h.crash("n1")
	h.restart("n1")
	h.run(h.elapsed() + time.Second)
	st, err, _ := h.describe("n1", id, time.Second)
	require.NoError(t, err)
	require.Equal(t, StateDead, st.State)
	require.Equal(t, before.Reason, st.Reason)
	require.Empty(t, st.Attempts, "the history is kept in memory only")
}

// Merging replicas' histories keeps each attempt once, its finished copy over one
// in flight, in attempt order.
func TestMergeAttempts(t *testing.T) {
	at := func(s int) time.Time { return epoch.Add(time.Duration(s) * time.Second) }
	a := []DeliveryAttempt{{Number: 1, Node: "n1", Start: at(1), Status: 500}, {Number: 3, Node: "n1", Start: at(3), InFlight: true}}
	b := []DeliveryAttempt{{Number: 2, Node: "n2", Start: at(2), Error: ErrorRefused}, {Number: 3, Node: "n1", Start: at(3), Status: 200}}
	got := mergeAttempts(mergeAttempts(nil, a), b)
	require.Equal(t, []uint64{1, 2, 3}, []uint64{got[0].Number, got[1].Number, got[2].Number})
	require.Equal(t, 200, got[2].Status, "the finished copy wins")
	require.Equal(t, got, mergeAttempts(got, a), "merging again changes nothing")
}

func TestTruncateKeepsRunes(t *testing.T) {
	require.Equal(t, "abc", truncate("abc", 5))
	require.Equal(t, "ab", truncate("abc", 2))
	require.Equal(t, "a", truncate("aé", 2), "é is two bytes: cut before it, not inside")
}
