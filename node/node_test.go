package node

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func req(countdown time.Duration) EnqueueRequest {
	return EnqueueRequest{URL: "http://worker.example/hook", Countdown: countdown}
}

func reqQ(queue string, countdown time.Duration) EnqueueRequest {
	r := req(countdown)
	r.Queue = queue
	return r
}

// acked asserts that an enqueue was answered with an ID and no error.
func acked(t *testing.T, r *enqResult) string {
	t.Helper()
	require.True(t, r.done, "enqueue not answered")
	require.NoError(t, r.Err)
	_, err := uuid.Parse(r.ID)
	require.NoError(t, err, "ID %q is not a UUID", r.ID)
	return r.ID
}

func TestSingleNodeCountdown(t *testing.T) {
	h := newHarness(t, 1, 7, nil)
	r := h.enqueue("n1", req(5*time.Second))
	// R=1: the node is its own majority, so the reply comes within this input.
	id := acked(t, r)
	assert.Equal(t, time.Duration(0), r.At)
	st, ok := h.node("n1").Task(id)
	require.True(t, ok)
	assert.Equal(t, StateScheduled, st.State)
	assert.Equal(t, []NodeID{"n1"}, st.Task.Replicas)
	assert.Equal(t, "default", st.Task.Queue)
	assert.Equal(t, "POST", st.Task.Method)

	h.run(4999 * time.Millisecond)
	assert.Empty(t, h.deliveries, "delivered before its countdown")

	h.run(10 * time.Minute)
	ds := h.deliveriesOf(id)
	require.Len(t, ds, 1, "deliveries: %v", ds)
	assert.GreaterOrEqual(t, ds[0].At, 5*time.Second)
	assert.Equal(t, NodeID("n1"), ds[0].Node)
	assert.Equal(t, uint64(1), ds[0].Attempt)
	assert.Equal(t, 0, ds[0].Retries)

	st, ok = h.node("n1").Task(id)
	require.True(t, ok)
	assert.Equal(t, StateSucceeded, st.State)
	assert.Equal(t, 200, st.LastStatus)
}

func TestThreeNodesManyTasks(t *testing.T) {
	h := newHarness(t, 3, 11, func(c *Config) {
		c.Lease = 8 * time.Second // Lease - MaxClockDrift < DispatchDeadline: the lease binds
	})
	cfg := h.node("n1").Config()
	var results []*enqResult
	for i := 0; i < 50; i++ {
		from := h.order[i%3]
		h.at(time.Duration(i)*37*time.Millisecond, func() {
			results = append(results, h.enqueue(from, req(time.Duration(i%7)*time.Second)))
		})
	}
	h.run(10 * time.Minute)

	require.Len(t, results, 50)
	seen := map[string]bool{}
	for i, r := range results {
		id := acked(t, r)
		require.False(t, seen[id], "duplicate ID %s", id)
		seen[id] = true
		assert.LessOrEqual(t, r.At, time.Duration(i)*37*time.Millisecond+2*h.latency, "ack of task %d late", i)

		ds := h.deliveriesOf(id)
		require.Len(t, ds, 1, "task %d: deliveries %v", i, ds)
		d := ds[0]
		assert.GreaterOrEqual(t, d.Attempt, uint64(1))
		assert.Positive(t, d.Deadline)
		assert.LessOrEqual(t, d.Deadline, cfg.Lease-cfg.MaxClockDrift)
		assert.LessOrEqual(t, d.Deadline, cfg.DefaultQueue.DispatchDeadline)
		assert.GreaterOrEqual(t, d.At, d.ETA, "delivered before due")
		reps := h.replicas(id)
		assert.Len(t, reps, 3)
		assert.Equal(t, reps[0], d.Node, "with no faults rank 0 delivers")

		succeeded := 0
		for _, n := range h.order {
			if h.stateOn(n, id) == StateSucceeded {
				succeeded++
			}
		}
		assert.GreaterOrEqual(t, succeeded, 2, "task %d: succeeded on a minority", i)
	}
	assert.Len(t, h.deliveries, 50)
}

func TestReplicaTimerTakesOverFromIsolatedRank0(t *testing.T) {
	h := newHarness(t, 3, 3, nil)
	r := h.enqueue("n2", req(5*time.Second))
	h.run(time.Second)
	id := acked(t, r)
	reps := h.replicas(id)
	// Rank 0 loses contact with everyone before the task is due: its own timer fires
	// but it can never win a quorum.
	h.isolate(reps[0])
	h.run(5 * time.Minute)

	cfg := h.node(reps[1]).Config()
	ds := h.deliveriesOf(id)
	require.Len(t, ds, 1, "deliveries: %v", ds)
	assert.Equal(t, reps[1], ds[0].Node, "rank 1 takes over")
	assert.GreaterOrEqual(t, ds[0].At, 5*time.Second+cfg.ReplicaOffset)
	assert.Less(t, ds[0].At, 5*time.Second+2*cfg.ReplicaOffset, "rank 1 should not wait for rank 2's turn")
	assert.Equal(t, StateSucceeded, h.stateOn(reps[1], id))
	assert.Equal(t, StateSucceeded, h.stateOn(reps[2], id))
	assert.False(t, h.stateOn(reps[0], id).Final(), "the isolated node cannot have learned the outcome")
	// Rank 0 did try: its claims went out and were lost.
	var rank0Claims int
	for _, s := range h.sentOf(MsgClaim, id) {
		if s.Msg.From == reps[0] && s.Msg.To != reps[0] {
			assert.True(t, s.Dropped)
			rank0Claims++
		}
	}
	assert.Positive(t, rank0Claims)
}

func TestRetryBackoff(t *testing.T) {
	const workerLatency = 50 * time.Millisecond
	h := newHarness(t, 3, 5, nil)
	h.worker = func(d Delivery, k int) (int, time.Duration) {
		if k <= 2 {
			return 500, workerLatency
		}
		return 200, workerLatency
	}
	r := h.enqueue("n1", req(time.Second))
	h.run(10 * time.Minute)
	id := acked(t, r)
	retry := h.node("n1").Config().DefaultQueue.Retry
	require.Equal(t, 100*time.Millisecond, retry.MinBackoff)

	ds := h.deliveriesOf(id)
	require.Len(t, ds, 3, "deliveries: %v", ds)
	reps := h.replicas(id)
	var attempts []uint64
	for i, d := range ds {
		assert.Equal(t, i, d.Retries, "delivery %d", i)
		assert.Equal(t, reps[0], d.Node, "rank 0 re-arms first after its own failure")
		attempts = append(attempts, d.Attempt)
	}
	assert.Equal(t, []int{0, 500, 500}, []int{ds[0].PreviousStatus, ds[1].PreviousStatus, ds[2].PreviousStatus})
	assert.IsIncreasing(t, attempts)
	// The gap is the worker's answer, then the backoff: the claim round trip comes
	// before the backoff ends (ClaimAhead), not after it.
	for i := 1; i < len(ds); i++ {
		gap := ds[i].At - ds[i-1].At
		assert.Equal(t, workerLatency+retry.Backoff(i), gap, "gap before delivery %d", i)
	}
	assert.Equal(t, 100*time.Millisecond, retry.Backoff(1))
	assert.Equal(t, 200*time.Millisecond, retry.Backoff(2))
	for _, n := range reps {
		st, ok := h.node(n).Task(id)
		require.True(t, ok)
		assert.Equal(t, StateSucceeded, st.State, "on %s", n)
		assert.Equal(t, 2, st.Retries, "on %s", n)
	}
}

func TestRetryLimitDead(t *testing.T) {
	q := DefaultQueueConfig()
	q.Retry.TaskRetryLimit = 2
	h := newHarness(t, 3, 9, nil)
	h.setQueues(map[string]QueueConfig{"limited": q})
	h.worker = func(Delivery, int) (int, time.Duration) { return 500, 20 * time.Millisecond }
	r := h.enqueue("n3", reqQ("limited", 0))
	h.run(10 * time.Minute)
	id := acked(t, r)
	ds := h.deliveriesOf(id)
	require.Len(t, ds, 3, "a retry limit of 2 allows the first try and 2 retries: %v", ds)
	for _, n := range h.replicas(id) {
		st, ok := h.node(n).Task(id)
		require.True(t, ok)
		assert.Equal(t, StateDead, st.State, "on %s", n)
		assert.Equal(t, 500, st.LastStatus, "on %s", n)
		assert.Equal(t, 3, st.Retries, "on %s", n)
	}
}

func TestAtMostOnce(t *testing.T) {
	amo := DefaultQueueConfig()
	amo.Delivery = AtMostOnce
	for _, tc := range []struct {
		name   string
		worker workerFunc
		want   TaskState
	}{
		{"no answer", func(Delivery, int) (int, time.Duration) { return 0, 0 }, StateUnknown},
		{"500", func(Delivery, int) (int, time.Duration) { return 500, 30 * time.Millisecond }, StateDead},
		{"200", always200, StateSucceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, 3, 13, nil)
			h.setQueues(map[string]QueueConfig{"once": amo})
			h.worker = tc.worker
			r := h.enqueue("n1", reqQ("once", 2*time.Second))
			h.run(30 * time.Minute)
			id := acked(t, r)
			ds := h.deliveriesOf(id)
			require.Len(t, ds, 1, "deliveries: %v", ds)
			for _, n := range h.replicas(id) {
				st, ok := h.node(n).Task(id)
				require.True(t, ok)
				assert.Equal(t, tc.want, st.State, "on %s", n)
				assert.Equal(t, AtMostOnce, st.Task.Delivery)
			}
		})
	}
}

// Partitions between replicas: the naive protocol must duplicate (it is the negative
// control), the quorum protocol must not.
func TestPartitionNaiveVersusQuorum(t *testing.T) {
	for _, tc := range []struct {
		name   string
		sideOf func(reps []NodeID) (a, b []NodeID) // b is the minority
	}{
		{"rank 0 alone", func(r []NodeID) ([]NodeID, []NodeID) { return r[1:], r[:1] }},
		{"rank 2 alone", func(r []NodeID) ([]NodeID, []NodeID) { return r[:2], r[2:] }},
	} {
		for _, proto := range []Protocol{ProtocolNaive, ProtocolQuorum} {
			t.Run(tc.name+"/"+proto.String(), func(t *testing.T) {
				h := newHarness(t, 3, 17, func(c *Config) { c.Protocol = proto })
				r := h.enqueue("n1", req(5*time.Second))
				h.run(time.Second)
				id := acked(t, r)
				a, b := tc.sideOf(h.replicas(id))
				h.partition(a, b)
				h.run(10 * time.Minute)
				ds := h.deliveriesOf(id)
				if proto == ProtocolNaive {
					assert.Len(t, ds, 2, "naive must deliver once on each side: %v", ds)
					if len(ds) == 2 {
						assert.NotEqual(t, ds[0].Node, ds[1].Node)
					}
				} else {
					assert.Len(t, ds, 1, "quorum: only the majority side may deliver: %v", ds)
					if len(ds) == 1 {
						assert.Contains(t, a, ds[0].Node)
					}
				}
			})
		}
	}
}

func TestNaiveWithoutFaultsDeliversOnce(t *testing.T) {
	h := newHarness(t, 3, 19, func(c *Config) { c.Protocol = ProtocolNaive })
	r := h.enqueue("n2", req(time.Second))
	h.run(10 * time.Minute)
	id := acked(t, r)
	require.Len(t, h.deliveriesOf(id), 1)
	for _, n := range h.order {
		assert.Equal(t, StateSucceeded, h.stateOn(n, id), "on %s", n)
	}
}

func TestClaimQuorumOneDuplicatesUnderPartition(t *testing.T) {
	h := newHarness(t, 3, 23, func(c *Config) { c.ClaimQuorum = 1 })
	r := h.enqueue("n1", req(5*time.Second))
	h.run(time.Second)
	id := acked(t, r)
	for _, n := range h.order {
		h.isolate(n)
	}
	h.run(10 * time.Minute)
	ds := h.deliveriesOf(id)
	assert.Greater(t, len(ds), 1, "a quorum of 1 lets every isolated replica fire: %v", ds)
	nodes := map[NodeID]bool{}
	for _, d := range ds {
		nodes[d.Node] = true
	}
	assert.Len(t, nodes, 3)
}

func TestEnqueueNoMajorityOutcomeUnknown(t *testing.T) {
	h := newHarness(t, 3, 29, nil)
	h.run(time.Second)
	h.isolate("n1")
	r := h.enqueue("n1", req(time.Second))
	timeout := h.node("n1").Config().EnqueueTimeout
	h.run(time.Second + timeout - time.Millisecond)
	assert.False(t, r.done, "answered before EnqueueTimeout")
	h.run(time.Minute)
	require.True(t, r.done)
	assert.ErrorIs(t, r.Err, ErrOutcomeUnknown)
	assert.Equal(t, time.Second+timeout, r.At)
	_, err := uuid.Parse(r.ID)
	assert.NoError(t, err, "the unknown outcome still names the task's ID")
	// The coordinator stored it itself but cannot win a claim alone.
	assert.Empty(t, h.deliveriesOf(r.ID))

	// With every other node down the same happens.
	h2 := newHarness(t, 3, 29, nil)
	h2.crash("n2")
	h2.crash("n3")
	r2 := h2.enqueue("n1", req(0))
	h2.run(time.Minute)
	require.True(t, r2.done)
	assert.ErrorIs(t, r2.Err, ErrOutcomeUnknown)
}

func TestEnqueueBadRequestAnswersAtOnce(t *testing.T) {
	h := newHarness(t, 3, 31, nil)
	r := h.enqueue("n1", EnqueueRequest{URL: "ftp://x/y"})
	require.True(t, r.done)
	var fe *FieldError
	require.ErrorAs(t, r.Err, &fe)
	assert.Equal(t, "url", fe.Field)
	assert.Empty(t, h.sent, "nothing is stored for a bad request")
}

func TestDeterminism(t *testing.T) {
	scenario := func(seed uint64) []string {
		h := newHarness(t, 5, seed, func(c *Config) { c.Replicas = 3 })
		h.worker = func(d Delivery, k int) (int, time.Duration) {
			// Fail some first attempts, keyed on the task ID so that it is seeded too.
			if k == 1 && d.Task.ID[0] < '8' {
				return 503, 40 * time.Millisecond
			}
			return 200, 25 * time.Millisecond
		}
		for i := 0; i < 30; i++ {
			from := h.order[i%5]
			h.at(time.Duration(i)*50*time.Millisecond, func() { h.enqueue(from, req(time.Duration(i%4)*time.Second)) })
		}
		// A node drops out for a while: claim timeouts and jittered retries.
		h.at(2*time.Second, func() { h.isolate("n3") })
		h.at(20*time.Second, func() { h.heal() })
		h.run(5 * time.Minute)
		var log []string
		for _, d := range h.deliveries {
			log = append(log, fmt.Sprintf("%v %s %s %d %d", d.At, d.Node, d.TaskID, d.Attempt, d.Retries))
		}
		for _, s := range h.states {
			log = append(log, fmt.Sprintf("%v %s %s %s>%s", s.At, s.Node, s.TaskID, s.From, s.To))
		}
		return log
	}
	a, b := scenario(42), scenario(42)
	require.NotEmpty(t, a)
	assert.Equal(t, a, b, "same seed, different runs")
	assert.NotEqual(t, a, scenario(43), "a different seed should give different task IDs")
}

func TestRecoveryWaitAfterRestart(t *testing.T) {
	h := newHarness(t, 3, 37, nil)
	r1 := h.enqueue("n1", req(10*time.Second))  // due during n3's recovery wait
	r3 := h.enqueue("n2", req(100*time.Second)) // due after it
	h.run(3 * time.Second)
	id1, id3 := acked(t, r1), acked(t, r3)
	t1, _ := h.node("n1").Task(id1)
	h.restart("n3")
	boot := h.elapsed()
	wait := h.node("n3").Config().RecoveryWait
	require.Equal(t, 30*time.Second+2*time.Second+5*time.Second, wait, "default RecoveryWait")
	_, ok := h.node("n3").Task(id1)
	assert.False(t, ok, "memory storage: the restarted node forgot the task")

	// A Store of a task created before the restart (a late or duplicated message)
	// is refused while recovering: n3 may have granted it and forgotten.
	before := len(filterFrom(h.sentOf(MsgStoreResp, id1), "n3"))
	h.node("n3").Step(Message{Type: MsgStore, From: "n1", To: "n3", TaskID: id1, Task: t1.Task})
	assert.Len(t, filterFrom(h.sentOf(MsgStoreResp, id1), "n3"), before, "n3 acknowledged an old Store while recovering")
	_, ok = h.node("n3").Task(id1)
	assert.False(t, ok, "n3 learned an old task while recovering")

	// A task created after the restart (by more than MaxClockDrift) is an ordinary
	// task for n3 at once: stored, granted, delivered.
	var r2 *enqResult
	h.at(boot+2*time.Second, func() { r2 = h.enqueue("n2", req(3*time.Second)) })
	h.run(boot + 3*time.Second)
	id2 := acked(t, r2)
	assert.NotEmpty(t, filterFrom(h.sentOf(MsgStoreResp, id2), "n3"), "n3 refused a task created after it started")
	_, ok = h.node("n3").Task(id2)
	assert.True(t, ok)

	h.run(boot + wait - time.Second)
	// Task 1 fired while n3 was recovering: n3 refused every claim for it and did
	// not learn it back.
	require.Len(t, h.deliveriesOf(id1), 1)
	var rejects []Reject
	for _, s := range filterFrom(h.sentOf(MsgClaimResp, id1), "n3") {
		if s.At < boot {
			continue
		}
		assert.False(t, s.Msg.Granted, "n3 granted a claim for a task it forgot while recovering")
		rejects = append(rejects, s.Msg.Reject)
	}
	require.NotEmpty(t, rejects, "no claim reached n3")
	for _, rj := range rejects {
		assert.Equal(t, RejectRecovering, rj)
	}
	// It may learn task 1's final outcome (a tombstone can never be granted), but
	// never task 1 as something still to run.
	if st, ok := h.node("n3").Task(id1); ok {
		assert.True(t, st.State.Final(), "n3 learned task 1 back as %s while recovering", st.State)
	}
	assert.Len(t, h.deliveriesOf(id2), 1)
	assert.Equal(t, StateSucceeded, h.stateOn("n3", id2))

	// After the wait an old task is given back to n3 (repair) and still runs once.
	h.run(5 * time.Minute)
	require.Len(t, h.deliveriesOf(id3), 1)
	for _, s := range filterFrom(h.sentOf(MsgClaimResp, id3), "n3") {
		if s.At >= boot {
			assert.NotEqual(t, RejectRecovering, s.Msg.Reject, "still recovering at %v", s.At)
		}
	}
	assert.Equal(t, StateSucceeded, h.stateOn("n3", id3), "n3 was not given task 3 back")
}

func TestSingleNodeRestartSkipsRecovery(t *testing.T) {
	h := newHarness(t, 1, 41, nil)
	r0 := h.enqueue("n1", req(time.Hour))
	h.restart("n1") // a single node cannot have granted to anyone else
	_, ok := h.node("n1").Task(r0.ID)
	assert.False(t, ok)
	r := h.enqueue("n1", req(0))
	id := acked(t, r)
	h.run(time.Minute)
	assert.Len(t, h.deliveriesOf(id), 1)
}

func TestRecoveringNodeAnswersClaimWithRejectRecovering(t *testing.T) {
	h := newHarness(t, 3, 43, nil)
	h.run(time.Second)
	h.restart("n2")
	task := &Task{ID: "t-1", Queue: "default", URL: "http://x/", Method: "POST", Replicas: []NodeID{"n1", "n2", "n3"}, ETA: epoch, Created: epoch}
	h.node("n2").Step(Message{Type: MsgClaim, From: "n1", To: "n2", TaskID: task.ID, Task: task, Attempt: 1, Lease: 30 * time.Second})
	resps := h.sentOf(MsgClaimResp, task.ID)
	require.Len(t, resps, 1)
	assert.Equal(t, NodeID("n1"), resps[0].Msg.To)
	assert.False(t, resps[0].Msg.Granted)
	assert.Equal(t, RejectRecovering, resps[0].Msg.Reject)
	assert.Equal(t, uint64(1), resps[0].Msg.Attempt)

	// After the wait the same claim is answered RejectUnknown.
	h.run(h.elapsed() + h.node("n2").Config().RecoveryWait)
	h.node("n2").Step(Message{Type: MsgClaim, From: "n1", To: "n2", TaskID: task.ID, Task: task, Attempt: 1, Lease: 30 * time.Second})
	resps = h.sentOf(MsgClaimResp, task.ID)
	require.Len(t, resps, 2)
	assert.Equal(t, RejectUnknown, resps[1].Msg.Reject)
}

func filterFrom(ms []sentMsg, from NodeID) []sentMsg {
	var out []sentMsg
	for _, m := range ms {
		if m.Msg.From == from {
			out = append(out, m)
		}
	}
	return out
}

func filterTo(ms []sentMsg, to NodeID) []sentMsg {
	var out []sentMsg
	for _, m := range ms {
		if m.Msg.To == to {
			out = append(out, m)
		}
	}
	return out
}

func TestValidateRequest(t *testing.T) {
	for _, tc := range []struct {
		name  string
		req   EnqueueRequest
		field string
	}{
		{"missing url", EnqueueRequest{}, "url"},
		{"ftp url", EnqueueRequest{URL: "ftp://example.com/x"}, "url"},
		{"relative url", EnqueueRequest{URL: "/hook"}, "url"},
		{"scheme only http", EnqueueRequest{URL: "http://"}, "url"},
		{"scheme only https", EnqueueRequest{URL: "https://"}, "url"},
		{"no host", EnqueueRequest{URL: "http:///path"}, "url"},
		{"no host, query", EnqueueRequest{URL: "http://?a=b"}, "url"},
		{"no host, fragment", EnqueueRequest{URL: "https://#x"}, "url"},
		{"negative countdown", EnqueueRequest{URL: "http://x/", Countdown: -time.Second}, "countdown"},
		{"ok", EnqueueRequest{URL: "http://x/"}, ""},
		{"ok https upper case", EnqueueRequest{URL: "HTTPS://Example.com/a?b=c"}, ""},
		{"ok host only", EnqueueRequest{URL: "http://x"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.req
			err := ValidateRequest(&r)
			if tc.field == "" {
				require.NoError(t, err)
				assert.Equal(t, "default", r.Queue)
				assert.Equal(t, "POST", r.Method)
				return
			}
			var fe *FieldError
			require.True(t, errors.As(err, &fe), "want a *FieldError, got %v", err)
			assert.Equal(t, tc.field, fe.Field)
			assert.Contains(t, err.Error(), tc.field)
		})
	}
	r := EnqueueRequest{URL: "http://x/", Queue: "mail", Method: "PUT"}
	require.NoError(t, ValidateRequest(&r))
	assert.Equal(t, "mail", r.Queue)
	assert.Equal(t, "PUT", r.Method)
}

// A name is unique within its queue: a second enqueue with it, through any node,
// answers DuplicateNameError with the first task's ID, while the first task runs once.
// The same name in another queue is another task.
func TestTaskNamesDeduplicate(t *testing.T) {
	h := newHarness(t, 5, 77, nil)
	named := func(queue, name string, c time.Duration) EnqueueRequest {
		r := reqQ(queue, c)
		r.Name = name
		return r
	}
	first := h.enqueue("n1", named("q", "welcome-42", 2*time.Second))
	h.run(500 * time.Millisecond)
	id := acked(t, first)
	for _, via := range []NodeID{"n1", "n2", "n3", "n4", "n5"} {
		again := h.enqueue(via, named("q", "welcome-42", 0))
		h.run(h.elapsed() + 500*time.Millisecond)
		require.True(t, again.done, "no answer through %s", via)
		var dup *DuplicateNameError
		require.ErrorAs(t, again.Err, &dup, "through %s", via)
		require.Equal(t, id, dup.ID)
	}
	other := h.enqueue("n3", named("other", "welcome-42", 0))
	h.run(time.Minute)
	otherID := acked(t, other)
	require.NotEqual(t, id, otherID)
	require.Len(t, h.deliveriesOf(id), 1)
	require.Len(t, h.deliveriesOf(otherID), 1)
	// Still a duplicate after it finished, within the dedup window.
	late := h.enqueue("n4", named("q", "welcome-42", 0))
	h.run(h.elapsed() + time.Second)
	var dup *DuplicateNameError
	require.ErrorAs(t, late.Err, &dup)
	require.Len(t, h.deliveriesOf(id), 1)

	bad := h.enqueue("n1", named("q", "no spaces", 0))
	h.run(h.elapsed() + time.Second)
	var fe *FieldError
	require.ErrorAs(t, bad.Err, &fe)
	require.Equal(t, "name", fe.Field)
}

// A worker's Retry-After delays the next attempt at least that long, even when the
// queue's backoff is shorter.
func TestRetryAfterDelaysNextAttempt(t *testing.T) {
	h := newHarness(t, 3, 31, nil)
	h.retryAfter = 7 * time.Second
	h.worker = func(d Delivery, k int) (int, time.Duration) {
		if k == 1 {
			return 503, 10 * time.Millisecond
		}
		return 200, 10 * time.Millisecond
	}
	r := h.enqueue("n2", req(0))
	h.run(time.Minute)
	ds := h.deliveriesOf(acked(t, r))
	require.Len(t, ds, 2)
	require.GreaterOrEqual(t, ds[1].At-ds[0].End, 7*time.Second, "the retry came before Retry-After")
}

// A limited queue's permits come from one token node: 12 tasks due at once on a
// queue of 2/s with bucket 1 start no faster than the rate allows, cluster-wide.
func TestRateLimitAcrossNodes(t *testing.T) {
	q := DefaultQueueConfig()
	q.Rate, q.BucketSize = 2, 1
	h := newHarness(t, 5, 17, nil)
	h.setQueues(map[string]QueueConfig{"slow": q})
	var rs []*enqResult
	for _, via := range []NodeID{"n1", "n2", "n3", "n4", "n5", "n1", "n2", "n3", "n4", "n5", "n1", "n2"} {
		rs = append(rs, h.enqueue(via, reqQ("slow", time.Second)))
	}
	h.run(2 * time.Minute)
	var starts []time.Duration
	for _, r := range rs {
		ds := h.deliveriesOf(acked(t, r))
		require.Len(t, ds, 1)
		starts = append(starts, ds[0].At)
	}
	slices.Sort(starts)
	for i := 1; i < len(starts); i++ {
		// 1/rate apart, less what a permit's lag (PermitValidity + SlotGrace) allows.
		require.GreaterOrEqual(t, starts[i]-starts[i-1], 500*time.Millisecond-DefaultPermitValidity-SlotGrace, "starts %v", starts)
	}
	require.GreaterOrEqual(t, starts[len(starts)-1]-starts[0], 11*500*time.Millisecond-DefaultPermitValidity-SlotGrace)
}

// ListCluster sees every task of a queue once, whichever node is asked, although with
// five nodes and R=3 no node holds them all; pages follow IDs.
func TestListClusterSeesEveryTaskOnce(t *testing.T) {
	h := newHarness(t, 5, 23, nil)
	var ids []string
	for i := 0; i < 20; i++ {
		r := h.enqueue([]NodeID{"n1", "n2", "n3", "n4", "n5"}[i%5], reqQ("q", time.Hour))
		h.run(h.elapsed() + 50*time.Millisecond)
		ids = append(ids, acked(t, r))
	}
	slices.Sort(ids)
	held := len(h.node("n1").ListTasks("q", StateNone, "", 100))
	require.Less(t, held, 20, "n1 holds every task: the test shows nothing")
	var got []string
	after := ""
	for page := 0; page < 5; page++ {
		var list []TaskStatus
		var missing []NodeID
		done := false
		h.node("n3").ListCluster("q", StateScheduled, after, 8, func(l []TaskStatus, m []NodeID) { list, missing, done = l, m, true })
		h.run(h.elapsed() + time.Second)
		require.True(t, done)
		require.Empty(t, missing)
		for _, st := range list {
			got = append(got, st.Task.ID)
		}
		if len(list) < 8 {
			break
		}
		after = list[len(list)-1].Task.ID
	}
	require.Equal(t, ids, got)
}

// An enqueue counts only the answers to its own Stores: an answer to an earlier
// enqueue of the same name, late on a slow link, names the same task ID but not
// this enqueue's task (names-late-store-answers: Q3, L2).
func TestLateStoreAnswersOfAnotherEnqueueDoNotCount(t *testing.T) {
	h := newHarness(t, 3, 1, nil)
	named := EnqueueRequest{URL: "http://worker.example/hook", Name: "job-1", Countdown: time.Minute}
	first := h.enqueue("n1", named)
	h.run(h.elapsed() + time.Second)
	require.True(t, first.done)
	require.NoError(t, first.Err)
	firstNonce := h.node("n1").entryOf(first.ID).task.Nonce

	// The second enqueue's Stores never reach n2 and n3; their answers to the first
	// one's Stores arrive now.
	h.block("n1", "n2")
	h.block("n1", "n3")
	second := h.enqueue("n1", named)
	n := h.node("n1")
	for _, from := range []NodeID{"n2", "n3"} {
		n.input(func() {
			n.step(Message{Type: MsgStoreResp, From: from, To: "n1", TaskID: first.ID, Round: firstNonce})
		})
	}
	h.run(h.elapsed() + 100*time.Millisecond)
	require.False(t, second.done && second.Err == nil, "answered as stored on the strength of another enqueue's answers")

	// Its own answers (refusals: the name is taken) decide it.
	h.heal()
	h.run(h.elapsed() + 5*time.Second)
	require.True(t, second.done)
	var dup *DuplicateNameError
	require.ErrorAs(t, second.Err, &dup)
}

// A replica that may have finished a task and forgotten it after its dedup window
// does not hold it: its answer does not count as a stored copy.
func TestForgottenAnswerIsNotAStoredCopy(t *testing.T) {
	h := newHarness(t, 3, 1, nil)
	h.block("n1", "n2")
	h.block("n1", "n3")
	res := h.enqueue("n1", req(time.Minute))
	n := h.node("n1")
	require.Len(t, n.pending, 1)
	var task *Task
	for _, op := range n.pending {
		task = op.task
	}
	for _, from := range []NodeID{"n2", "n3"} {
		n.input(func() {
			n.step(Message{Type: MsgStoreResp, From: from, To: "n1", TaskID: task.ID, Reject: RejectForgotten, Round: task.Nonce})
		})
	}
	h.run(h.elapsed() + 100*time.Millisecond)
	require.False(t, res.done && res.Err == nil, "acknowledged with one copy and two that say they may have forgotten it")
}
