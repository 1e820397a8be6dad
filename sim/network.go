package sim

import (
	"fmt"
	"time"

	"github.com/miyamotohq/miyamoto/net/wire"
	"github.com/miyamotohq/miyamoto/node"
)

// netState is the simulated network's current behaviour.
type netState struct {
	drop, duplicate, reorder float64
	rules                    []*linkRule     // active partitions
	active                   []*messageFault // active drop/duplicate/reorder faults, oldest first
	delays                   []*linkDelay    // active delay faults
}

// linkDelay is one delay fault: messages sent to the nodes in `to` (a bitmask over
// node indexes) while it lasts take d more than the network's latency.
type linkDelay struct {
	to uint64
	d  time.Duration
}

// extraDelay is what the active delay faults add to a message sent to node idx now:
// the longest of those that cover it (overlapping ones do not add up, as one slow
// link is as slow as its slowest queue).
func (n *netState) extraDelay(idx int) time.Duration {
	var d time.Duration
	for _, l := range n.delays {
		if l.to&(uint64(1)<<idx) != 0 {
			d = max(d, l.d)
		}
	}
	return d
}

// messageFault is one timed drop, duplicate or reorder fault.
type messageFault struct {
	kind  string
	value float64
}

// recompute sets each probability to the latest active fault of its kind, or to the
// scenario's own value when none is active.
func (n *netState) recompute(base NetworkSpec) {
	n.drop, n.duplicate, n.reorder = base.Drop, base.Duplicate, base.Reorder
	for _, f := range n.active {
		switch f.kind {
		case "drop":
			n.drop = f.value
		case "duplicate":
			n.duplicate = f.value
		case "reorder":
			n.reorder = f.value
		}
	}
}

// linkRule blocks messages from any node in `from` to any node in `to`; both ways
// unless oneway.
type linkRule struct {
	from, to uint64 // bitmasks over node indexes
	oneway   bool
	name     string
}

func (r *linkRule) blocks(from, to int) bool {
	f, t := uint64(1)<<from, uint64(1)<<to
	if r.from&f != 0 && r.to&t != 0 {
		return true
	}
	return !r.oneway && r.from&t != 0 && r.to&f != 0
}

func (w *world) blocked(from, to int) bool {
	for _, r := range w.net.rules {
		if r.blocks(from, to) {
			return true
		}
	}
	return false
}

// simNetwork is a node's view of the network.
type simNetwork struct{ s *simNode }

var _ node.Network = simNetwork{}

func (sn simNetwork) Send(m node.Message) {
	s := sn.s
	w := s.w
	to := w.byID[m.To]
	if to == nil {
		return
	}
	switch {
	case w.blocked(s.idx, to.idx):
		if w.sc.Network.Partition == "hold" {
			w.hold(s, to, m)
		} else {
			w.dropped(m, "partition")
		}
		return
	case w.net.drop > 0 && w.rngNet.Float64() < w.net.drop:
		w.dropped(m, "loss")
		return
	}
	know := w.check.sent(s, m)
	w.transmit(to, m, know)
	if w.net.duplicate > 0 && w.rngNet.Float64() < w.net.duplicate {
		w.transmit(to, m, know)
	}
}

// heldMessage is a message a silent partition holds (NetworkSpec.Partition "hold"):
// written to a connection that stays open, it arrives when the link heals, unless
// either end's process died since (its connection with it).
type heldMessage struct {
	from, to       *simNode
	fromInc, toInc uint64
	m              node.Message
	know           []uint64
}

// hold keeps m, blocked on its way from s to to, until the link heals.
func (w *world) hold(s, to *simNode, m node.Message) {
	if w.trace != nil {
		w.trace.message(w.now, "hold", m, "partition")
	}
	know := w.check.sent(s, m)
	w.held = append(w.held, heldMessage{from: s, to: to, fromInc: s.incarnation, toInc: to.incarnation, m: w.wireCopy(m), know: know})
}

// releaseHeld sends on, in the order they were held, the held messages whose link is
// no longer blocked; those whose sender or receiver restarted since are lost.
func (w *world) releaseHeld() {
	var still []heldMessage
	for _, h := range w.held {
		switch {
		case h.from.incarnation != h.fromInc || h.to.incarnation != h.toInc:
			w.dropped(h.m, "partition")
		case w.blocked(h.from.idx, h.to.idx):
			still = append(still, h)
		default:
			w.deliverAfterLatency(h.to, h.m, h.know)
		}
	}
	w.held = still
}

// wireCopy is m as a receiver gets it: encoded and decoded by the production codec,
// sharing no memory with the sender's (the decoder copies what it keeps, so the
// buffer is reused).
func (w *world) wireCopy(m node.Message) node.Message {
	w.wireBuf = wire.AppendFrame(w.wireBuf[:0], m)
	got, _, err := wire.DecodeFrame(w.wireBuf)
	if err != nil {
		panic(fmt.Sprintf("sim: wire codec failed on %v: %v", m, err))
	}
	return got
}

// transmit carries m to `to`, and with it know: what the checker says a receiver can
// learn from it (checker.sent).
func (w *world) transmit(to *simNode, m node.Message, know []uint64) {
	// What a real node receives: every message goes through the production codec.
	w.deliverAfterLatency(to, w.wireCopy(m), know)
}

// deliverAfterLatency has `to` receive m after the network's latency (and a
// reorder's hold-back, and a delay fault's extra time).
func (w *world) deliverAfterLatency(to *simNode, m node.Message, know []uint64) {
	d := w.uniform(w.rngNet, w.sc.Network.Latency)
	held := false
	if w.net.reorder > 0 && w.rngNet.Float64() < w.net.reorder {
		d += time.Duration(w.rngNet.Int64N(int64(w.sc.Network.ReorderDelay) + 1))
		held = true
	}
	if extra := w.net.extraDelay(to.idx); extra > 0 {
		d += extra
		held = true
	}
	if held {
		w.check.outcomeHeldBack(m, w.now+int64(d))
	}
	w.after(d, func() { w.receive(to, m, know) })
}

func (w *world) receive(to *simNode, m node.Message, know []uint64) {
	if !to.up {
		w.dropped(m, "down")
		return
	}
	if w.trace != nil {
		w.trace.message(w.now, "recv", m, "")
	}
	inc := to.incarnation
	to.input(inc, func() {
		if m.Type != node.MsgStore {
			w.check.learn(to, m, know)
		}
		if m.Type == node.MsgRelease {
			w.check.releaseReached(to, m)
		}
		to.n.Step(m)
		if m.Type == node.MsgStore {
			w.check.learn(to, m, know) // once it holds the task, if it took it
		}
	})
}

func (w *world) dropped(m node.Message, why string) {
	w.check.messageLost(m)
	if w.trace != nil {
		w.trace.message(w.now, "drop", m, why)
	}
}

// --- node.Dispatcher: simulated workers ---------------------------------------

type simDispatcher struct{ s *simNode }

var _ node.Dispatcher = simDispatcher{}

// Dispatch starts a webhook. The worker's part ends at min(its answer, the deadline)
// in true time, whatever becomes of the node meanwhile; the result then goes back
// to the node if the same incarnation is still alive.
func (sd simDispatcher) Dispatch(d node.Delivery) {
	s := sd.s
	w := s.w
	id := w.check.deliveryStarted(s, d)
	if w.trace != nil {
		w.trace.delivery(w.now, "deliver_start", s.id, d.Task.ID, d.Attempt, 0)
	}
	status, latency, answers := w.workerAnswer(d.Task)
	deadline := time.Duration(s.trueDelay(d.Deadline))
	if !answers || latency > deadline {
		status, latency = 0, deadline
	}
	s.inflight++
	inc := s.incarnation
	key := runKey{d.Task.ID, d.Attempt}
	if s.running == nil {
		s.running = map[runKey]bool{}
	}
	s.running[key] = true
	w.after(latency, func() {
		s.inflight--
		w.check.deliveryEnded(id, status)
		if w.trace != nil {
			w.trace.delivery(w.now, "deliver_end", s.id, d.Task.ID, d.Attempt, status)
		}
		if s.incarnation == inc {
			if !s.running[key] {
				// Cut by a graceful stop (stop.go), which gave the node its result; the
				// worker went on with the call all the same.
				return
			}
			delete(s.running, key)
		}
		res := node.DeliveryResult{TaskID: d.Task.ID, Attempt: d.Attempt, Status: status, Body: workerBody(status)}
		if status == 0 {
			// A simulated worker that does not answer in time is a timeout, as the
			// daemon's dispatcher classifies it.
			res.Err, res.ErrorKind = errDeadline, node.ErrorTimeout
		}
		s.input(inc, func() { s.n.HandleDeliveryResult(res) })
	})
}

// workerBody is what a simulated worker answers with status (nothing without an
// answer). It draws no randomness, so that runs stay what they were.
func workerBody(status int) string {
	switch {
	case status == 0:
		return ""
	case status >= 200 && status < 300:
		return "ok"
	}
	return fmt.Sprintf("simulated worker: %d", status)
}

type simError string

func (e simError) Error() string { return string(e) }

const errDeadline = simError("deadline exceeded")

// workerAnswer draws what the worker does with the nth delivery of a task.
func (w *world) workerAnswer(t *node.Task) (status int, latency time.Duration, answers bool) {
	wk := w.sc.Workers
	r := w.rngWorker
	latency = w.uniform(r, wk.Latency)
	if w.check.deliveriesOf(t) <= wk.FailFirst {
		return 500, latency, true
	}
	u := r.Float64()
	switch {
	case u < wk.ClientError:
		return 400, latency, true
	case u < wk.ClientError+wk.ServerError:
		return 503, latency, true
	case u < wk.ClientError+wk.ServerError+wk.Slow:
		return 200, w.uniform(r, wk.SlowLatency), true
	case u < wk.ClientError+wk.ServerError+wk.Slow+wk.Never:
		return 0, 0, false
	}
	return 200, latency, true
}
