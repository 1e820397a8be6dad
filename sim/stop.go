package sim

import (
	"cmp"
	"slices"
	"time"

	"github.com/miyamotohq/miyamoto/node"
)

// A graceful stop is what SIGTERM does to the daemon (net/daemon's Shutdown), in
// the same order, with the node's own code: the node drains (node.Drain: no new
// enqueue or claim, claim rounds in progress released); deliveries in flight run
// on until they end or until ShutdownTimeout, when the dispatcher cuts them and the
// node takes their results as failed calls; the log is then closed, which writes
// and syncs everything appended; and the process ends. What the node sent is on
// the network and arrives as any message does. A crash, by contrast, loses what
// was not synced and sends nothing more.

// stopTimeout is the daemon's default ShutdownTimeout (net/daemon).
const stopTimeout = 15 * time.Second

// stopPoll is how often a draining node is checked for deliveries still running.
const stopPoll = 10 * time.Millisecond

// runKey names one delivery of a node: task and attempt.
type runKey struct {
	task    string
	attempt uint64
}

// errCut is the result of a delivery the dispatcher cut at shutdown (the daemon's
// is the context's cancellation, wrapped by net/http).
const errCut = simError("context canceled: cut at shutdown")

// stop begins s's graceful stop. restart, when the fault ends, starts it again
// once it is down.
func (w *world) stop(s *simNode) {
	if !s.up || s.stopping {
		return
	}
	s.stopping = true
	if w.trace != nil {
		w.trace.nodeEvent(w.now, s.id, "stop")
	}
	inc := s.incarnation
	s.input(inc, func() { s.n.Drain() })
	deadline := w.now + int64(stopTimeout)
	var poll func()
	poll = func() {
		if !s.up || s.incarnation != inc {
			return // crashed meanwhile
		}
		if s.paused || len(s.running) > 0 && w.now < deadline {
			// A stopped process runs nothing, its shutdown included.
			w.after(stopPoll, poll)
			return
		}
		w.endStop(s)
	}
	w.after(stopPoll, poll)
}

// endStop ends s's graceful stop: deliveries still running are cut, the log is
// closed, the process ends.
func (w *world) endStop(s *simNode) {
	keys := make([]runKey, 0, len(s.running))
	for k := range s.running {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b runKey) int {
		return cmp.Or(cmp.Compare(a.task, b.task), cmp.Compare(a.attempt, b.attempt))
	})
	s.running = nil // their calls go on at the workers; their ends are ignored (network.go)
	for _, k := range keys {
		res := node.DeliveryResult{TaskID: k.task, Attempt: k.attempt, Err: errCut, ErrorKind: node.ErrorOther}
		s.n.HandleDeliveryResult(res)
	}
	if w.trace != nil {
		w.trace.nodeEvent(w.now, s.id, "stopped")
	}
	// The driver stops before the log closes (net/daemon): the completions of the
	// last syncs reach no node. Everything appended is synced all the same, so
	// nothing the node wrote is lost.
	s.up, s.paused, s.buffered, s.n, s.stopping = false, false, nil, nil, false
	s.incarnation++
	var lost []node.Record
	if d := s.disk; d != nil {
		var err error
		if d.log != nil {
			err = d.log.Close()
		}
		lost = d.takeUnconfirmed()
		if err == nil {
			lost = nil // the close synced them
		} else if w.trace != nil {
			w.trace.nodeEvent(w.now, s.id, "log close: "+err.Error())
		}
		d.kill() // the process ends: what it wrote stays in the page cache
	}
	w.check.crashed(s, lost)
	if s.restartAfterStop {
		s.restartAfterStop = false
		w.restart(s)
	}
}
