package node

import (
	"testing"
	"time"
)

// BenchmarkClusterTasks is three nodes, R=3, in virtual time with no storage and
// no codec: tasks enqueued through each node in turn, due at once, delivered with
// a 200, 32 at a time. ns/op, B/op and allocs/op are per task, for the three
// nodes together (and the harness that carries their messages); every finished
// task is frozen once 1,000 more finished on its node, as in the daemon.
func BenchmarkClusterTasks(b *testing.B) { benchTasks(b, 3) }

// BenchmarkSingleTasks is BenchmarkClusterTasks on one node, R=1: the single
// node's own work per task (the compare command's target single, without HTTP).
func BenchmarkSingleTasks(b *testing.B) { benchTasks(b, 1) }

func benchTasks(b *testing.B, n int) {
	h := newHarness(b, n, 1, nil)
	h.latency = 100 * time.Microsecond
	req := EnqueueRequest{Queue: "default", URL: "http://127.0.0.1:9/hook", Method: "POST",
		ContentType: "application/json", Body: []byte(`{"n":1}`)}
	done := 0
	i := 0
	for b.Loop() {
		r := h.enqueue(h.order[i%n], req)
		i++
		if i%32 == 0 {
			h.run(h.elapsed() + 10*time.Millisecond)
			done += len(h.deliveries)
			h.forgetRecords()
		}
		_ = r
	}
	h.run(h.elapsed() + 10*time.Second)
	done += len(h.deliveries)
	if done < i {
		b.Fatalf("%d of %d tasks delivered", done, i)
	}
}

// forgetRecords drops what the harness recorded so far, so that a long run keeps
// only the nodes' own memory.
func (h *harness) forgetRecords() {
	h.sent, h.states, h.deliveries, h.decisions, h.ended = h.sent[:0], h.states[:0], h.deliveries[:0], h.decisions[:0], h.ended[:0]
	clear(h.perTask)
	h.events = 0
}
