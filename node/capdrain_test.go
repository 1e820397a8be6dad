package node

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// drainRun is one capped-queue backlog drained in virtual time.
type drainRun struct {
	drain    time.Duration // from the tasks' due time to the last worker answer
	inFlight int           // the most worker calls in flight at once
	started  int           // worker calls made
	// lastGaps are the gaps between the last few starts.
	lastGaps []time.Duration
}

// drainCappedCfg enqueues tasks, all due at one instant, on a queue capped at
// limit in a cluster of size nodes whose worker answers 200 after work, and runs
// until every task is done (or a bound of 10× the ideal passes). lease is the
// nodes' and deadline the queue's dispatch deadline (0: the defaults).
func drainCappedCfg(t *testing.T, size int, seed uint64, tasks, limit int, work, lease, deadline time.Duration) drainRun {
	t.Helper()
	h := newHarness(t, size, seed, func(c *Config) { c.Lease = lease })
	q := DefaultQueueConfig()
	if deadline > 0 {
		q.DispatchDeadline = deadline
	}
	q.MaxConcurrent = limit
	h.setQueues(map[string]QueueConfig{"q": q})
	h.worker = func(Delivery, int) (int, time.Duration) { return 200, work }
	// Past the members' recovery wait (in-memory storage) and the token node's wait
	// after taking its lease up (41.7 s with the defaults): the queue can deliver.
	start := 2 * time.Minute
	h.run(start - 10*time.Second)
	due := h.now.Add(10 * time.Second)
	var enqs []*enqResult
	for i := range tasks {
		enqs = append(enqs, h.enqueue(h.order[i%size], EnqueueRequest{Queue: "q", URL: "http://w.test/", ETA: due, Name: fmt.Sprintf("t%03d", i)}))
	}
	ideal := time.Duration(tasks/limit) * work
	h.run(start + 10*ideal)
	for i, r := range enqs {
		require.True(t, r.done && r.Err == nil, "enqueue %d: %+v", i, r)
	}
	var run drainRun
	done := map[string]bool{}
	type edge struct {
		at time.Duration
		d  int
	}
	var edges []edge
	var starts []time.Duration
	for _, d := range h.deliveries {
		run.started++
		if d.Status == 200 {
			done[d.TaskID] = true
		}
		run.drain = max(run.drain, d.End-start)
		edges = append(edges, edge{d.At, +1}, edge{d.End, -1})
		starts = append(starts, d.At)
	}
	require.Len(t, done, tasks, "every task should be delivered within 10× the ideal")
	// Ends before starts at one instant: a slot freed and taken at once is not two.
	slices.SortFunc(edges, func(a, b edge) int {
		if a.at != b.at {
			return int(a.at - b.at)
		}
		return a.d - b.d
	})
	cur := 0
	for _, e := range edges {
		cur += e.d
		run.inFlight = max(run.inFlight, cur)
	}
	slices.Sort(starts)
	for i := max(len(starts)-5, 1); i < len(starts); i++ {
		run.lastGaps = append(run.lastGaps, starts[i]-starts[i-1])
	}
	return run
}

// A capped queue with a backlog keeps its cap busy: 100 tasks due at once on a
// queue capped at 2, a worker that takes 1 s, drain in about 50 s on one node and
// on three, with the defaults (lease 30 s, dispatch deadline 10 s) and with a
// lease of 10 s and a deadline of 3 s (asks held for about 5.7 s, not 18.8 s).
func TestCappedQueueBacklogDrainsAtItsCap(t *testing.T) {
	const tasks, limit, work = 100, 2, time.Second
	ideal := time.Duration(tasks/limit) * work
	for _, c := range []struct{ lease, deadline time.Duration }{{0, 0}, {10 * time.Second, 3 * time.Second}} {
		for _, size := range []int{1, 3} {
			for _, seed := range []uint64{1, 2, 3} {
				run := drainCappedCfg(t, size, seed, tasks, limit, work, c.lease, c.deadline)
				ratio := float64(run.drain) / float64(ideal)
				t.Logf("lease %v, deadline %v, %d node(s), seed %d: drained in %v, %.3f× the ideal %v; %d calls, at most %d in flight; last gaps %v",
					c.lease, c.deadline, size, seed, run.drain, ratio, ideal, run.started, run.inFlight, run.lastGaps)
				require.LessOrEqual(t, run.inFlight, limit, "never more than the cap in flight")
				// Measured at 1.009-1.022 on one node and 1.031-1.036 on three (a
				// freed slot is taken a round trip later: 20 ms a start with the
				// harness's 10 ms links); before asks were held at the cap,
				// 1.76-2.07 with the defaults and 1.37-1.48 with the short lease.
				require.LessOrEqual(t, ratio, 1.10, "a capped queue with a backlog should keep its cap busy")
			}
		}
	}
}

// askHeld steps into the token node an ask for attempt 1 of task id from another
// member, which can wait hold at the cap, and returns the answers sent to it.
func askHeld(h *harness, token NodeID, id string, hold time.Duration) []Message {
	h.t.Helper()
	from := h.order[0]
	if from == token {
		from = h.order[1]
	}
	n := h.node(token)
	n.input(func() {
		n.step(Message{Type: MsgPermit, From: from, To: token, TaskID: id, Attempt: 1, Queue: "q", Lease: 2 * time.Second, Promised: uint64(hold)})
	})
	return permitAnswers(h, id)
}

// permitAnswers are the token node's answers to task id's asks so far.
func permitAnswers(h *harness, id string) []Message {
	var out []Message
	for _, s := range h.sentOf(MsgPermitResp, id) {
		out = append(out, s.Msg)
	}
	return out
}

// permitDone steps into the token node the end of attempt 1 of task id.
func permitDoneOf(h *harness, token NodeID, id string) {
	n := h.node(token)
	n.input(func() {
		n.step(Message{Type: MsgPermitDone, From: h.order[0], To: token, TaskID: id, Attempt: 1, Queue: "q"})
	})
}

// The token node holds asks refused at the cap in arrival order and, when a slot
// frees, tells the first to come now and keeps the slot for it, counted against
// the cap, for PermitValidity; an ask that cannot wait is refused at once, and a
// held one whose time is up is refused.
func TestTokenNodeHoldsAsksAtTheCapInArrivalOrder(t *testing.T) {
	q := DefaultQueueConfig()
	q.MaxConcurrent = 1
	h, token := tokenHarness(t, q)
	n := h.node(token)
	h.run(n.cfg.RecoveryWait + n.tokenLeaseTerm() + 2*n.cfg.Lease)
	require.True(t, askPermit(h, token, "a", 1).Granted)

	require.Empty(t, askHeld(h, token, "b", time.Second), "held: the queue is at its cap")
	require.Empty(t, askHeld(h, token, "c", time.Second), "held behind b")
	require.Empty(t, askHeld(h, token, "b", time.Second), "a repeated ask of one held is not answered")
	refused := askHeld(h, token, "d", 0)
	require.Len(t, refused, 1, "an ask that cannot wait is answered at once")
	require.Equal(t, RejectPromised, refused[0].Reject)
	require.Zero(t, refused[0].Promised, "it did not wait: its claimant backs off, doubling")

	h.run(h.elapsed() + 100*time.Millisecond)
	permitDoneOf(h, token, "a")
	woken := permitAnswers(h, "b")
	require.Len(t, woken, 1, "the first held ask is told when a slot frees")
	require.False(t, woken[0].Granted)
	require.Equal(t, RejectNone, woken[0].Reject)
	require.Zero(t, woken[0].Lease, "come now")
	require.Empty(t, permitAnswers(h, "c"), "c waits its turn")
	require.False(t, askPermit(h, token, "e", 1).Granted, "the slot kept for b counts against the cap")

	granted := askHeld(h, token, "b", time.Second)
	require.True(t, granted[len(granted)-1].Granted, "b asks again and takes its slot")

	h.run(h.elapsed() + time.Second)
	over := permitAnswers(h, "c")
	require.Len(t, over, 1, "c's time is up")
	require.Equal(t, RejectPromised, over[0].Reject)
	require.NotZero(t, over[0].Promised, "it waited in line: its claimant comes back without doubling")

	// A woken ask that never comes back: its slot lapses after PermitValidity and
	// goes to the next held ask.
	require.Empty(t, askHeld(h, token, "f", 2*time.Second))
	require.Empty(t, askHeld(h, token, "g", 2*time.Second))
	permitDoneOf(h, token, "b")
	require.Len(t, permitAnswers(h, "f"), 1, "f is woken")
	h.run(h.elapsed() + n.cfg.PermitValidity - time.Millisecond)
	require.Empty(t, permitAnswers(h, "g"), "f's slot is kept for PermitValidity")
	h.run(h.elapsed() + 2*time.Millisecond)
	require.Len(t, permitAnswers(h, "g"), 1, "then it goes to g")
	require.Empty(t, n.permitWaits, "nothing held")

	// A claimant that gives its claim up while held says so: its ask is dropped.
	require.Empty(t, askHeld(h, token, "h", 2*time.Second))
	require.Len(t, n.permitWaits["q"], 1)
	permitDoneOf(h, token, "h")
	require.Empty(t, n.permitWaits, "h is no longer held")
	h.run(h.elapsed() + 3*time.Second)
	require.Empty(t, permitAnswers(h, "h"), "nor answered")
}
