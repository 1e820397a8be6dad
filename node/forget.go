package node

import "time"

// Finished tasks are kept for the dedup window, then dropped. One timer per node
// serves them all (a timer per task cost about 300 bytes each, measured with the
// daemon: a third of what a finished task kept in memory).

// forgetItem is a final entry to drop at a local time, unless it was re-armed or
// disarmed since (its timerEpoch moved on) or replaced.
type forgetItem struct {
	e     *entry
	epoch uint64
	at    time.Time
}

// queueForget schedules e (final, its timer just disarmed) to be dropped at at. The
// queue is in time order because every forget time is now + DedupWindow; were the
// clock to step back, an item would only wait for the ones queued before it.
func (n *Node) queueForget(e *entry, at time.Time) {
	if n.cfg.Unsafe.ForgetAtOnce {
		at = n.now() // negative controls only (Q3)
	}
	n.forgetQ = append(n.forgetQ, forgetItem{e: e, epoch: e.timerEpoch, at: at})
	if n.forgetTimer == nil {
		n.armForgetTimer(at)
	}
}

func (n *Node) armForgetTimer(at time.Time) {
	n.forgetTimer = n.env.Clock.AfterFunc(max(at.Sub(n.now()), 0), func() {
		n.input(n.sweepForgotten)
	})
}

// sweepForgotten drops every queued entry whose time has come, then re-arms the
// timer for the next one.
func (n *Node) sweepForgotten() {
	n.forgetTimer = nil
	now := n.now()
	for n.forgetHead < len(n.forgetQ) {
		it := n.forgetQ[n.forgetHead]
		if it.at.After(now) {
			break
		}
		n.forgetQ[n.forgetHead] = forgetItem{}
		n.forgetHead++
		e := it.e
		if e.timerEpoch != it.epoch || e.timerKind != timerForget || n.tasks[e.task.ID] != e {
			continue // re-armed, disarmed or replaced since
		}
		e.timerKind = timerNone
		n.onTimer(e, timerForget)
	}
	// Reclaim the consumed prefix once it is most of the array.
	if n.forgetHead > 1024 && n.forgetHead*2 > len(n.forgetQ) {
		n.forgetQ = append(n.forgetQ[:0], n.forgetQ[n.forgetHead:]...)
		n.forgetHead = 0
	}
	if n.forgetHead < len(n.forgetQ) {
		n.armForgetTimer(n.forgetQ[n.forgetHead].at)
	}
}
