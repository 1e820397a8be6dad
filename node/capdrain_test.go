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

// drainCapped enqueues tasks, all due at one instant, on a queue capped at limit
// in a cluster of size nodes whose worker answers 200 after work, and runs until
// every task is done (or a bound of 10× the ideal passes).
func drainCapped(t *testing.T, size int, seed uint64, tasks, limit int, work time.Duration) drainRun {
	t.Helper()
	h := newHarness(t, size, seed, nil)
	q := DefaultQueueConfig()
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
// on three.
func TestCappedQueueBacklogDrainsAtItsCap(t *testing.T) {
	const tasks, limit, work = 100, 2, time.Second
	ideal := time.Duration(tasks/limit) * work
	for _, size := range []int{1, 3} {
		for _, seed := range []uint64{1, 2, 3} {
			run := drainCapped(t, size, seed, tasks, limit, work)
			ratio := float64(run.drain) / float64(ideal)
			t.Logf("%d node(s), seed %d: drained in %v, %.3f× the ideal %v; %d calls, at most %d in flight; last gaps %v",
				size, seed, run.drain, ratio, ideal, run.started, run.inFlight, run.lastGaps)
			require.LessOrEqual(t, run.inFlight, limit, "never more than the cap in flight")
		}
	}
}
