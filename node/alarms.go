package node

import "time"

// Alarms: every timer the node arms is data, an alarm, not a function. An alarm
// names what it is for (its kind) and the operation, task or schedule it belongs
// to (id, key, at); ring looks that up when the timer fires and does what the
// kind says, or nothing if the operation ended or was replaced since. Two alarms
// of one kind for one thing are told apart by the operation's sequence number
// (nextOpSeq), as the closures they replace were by the pointers they held.
//
// Why data: a snapshot of the node (for the flight recorder's replay from the
// middle of a run, see net/recorder) must write down every armed timer and re-arm
// it on the restored node; a function cannot be written down, an alarm can.
// Log syncs' actions (syncs.go) and clients' replies (replies.go) are data too.

// alarmKind says what an alarm does when it rings.
type alarmKind uint8

const (
	alarmNone               alarmKind = iota
	alarmWake                         // timers.go: fire the due entries' timers
	alarmForget                       // forget.go: drop the entries past their dedup window
	alarmGossip                       // gossip.go: send a digest to a random member
	alarmTombstones                   // queuecap.go: sweep deleted queues' tombstones
	alarmLeaderTick                   // leader.go: renew or claim the roster lease
	alarmLeaderClaim                  // leader.go: give up the claim of the lease (id: leaderClaim.seq)
	alarmProposals                    // leader.go: resend a roster change (id: rosterChange.seq)
	alarmMoveTick                     // move.go: start moves
	alarmMoveResend                   // move.go: resend a move (key: task ID, id: moveOp.seq)
	alarmStoreResend                  // node.go: resend an enqueue's stores (key: task ID, id: enqueueOp.seq)
	alarmQueryTimeout                 // query.go: answer a lookup or cancel (key: its key, id: queryOp.seq)
	alarmQueueSetTimeout              // queues.go: end a queue change (id: setOp.seq)
	alarmSettingsPoll                 // queues.go: ask for the settings again (id: settingsSync.seq)
	alarmListTimeout                  // queues.go: answer a cluster listing (id: listOp.id)
	alarmCountTimeout                 // counts.go: answer a cluster count (id: countOp.id)
	alarmScheduleSetTimeout           // schedule.go: end a schedule change (id: schedOp.seq)
	alarmPlanTicks                    // schedule.go: plan a schedule's next ticks (key: name, id: schedRun.seq)
	alarmTick                         // schedule.go: enqueue a tick's task (key: name, id: schedRun.seq, at: the tick)
	alarmCatchUp                      // schedule.go: enqueue a missed tick late (key: name, id: schedRun.seq)
	alarmTokenLease                   // token.go: renew the token lease
	alarmPermitHold                   // queues.go: answer a permit asked early for its slot (key: task ID, id: attempt)
	alarmPermitWait                   // queues.go: a held ask's wait for a free slot is over (key: queue, id: permitWait.seq)
	alarmKinds                        // the number of kinds
)

// alarm is a timer as data (see the top of this file).
type alarm struct {
	kind alarmKind
	id   uint64
	key  string
	at   time.Time
}

// alarmID names an armed alarm, in the order they were armed (Node.alarmSeq); 0 is
// none. A field that may cancel its alarm holds its ID.
type alarmID uint64

// armedAlarm is an alarm armed and not yet rung nor stopped: what it is, its
// deadline on the node's clock (Unix nanoseconds: a restored node re-arms it for
// that instant) and the Clock's cancel (not part of the node's state).
type armedAlarm struct {
	alarm
	at     int64
	cancel func() bool
}

// after arms a timer that rings a after d, as an input of the node.
func (n *Node) after(d time.Duration, a alarm) alarmID {
	n.alarmSeq++
	id := alarmID(n.alarmSeq)
	// The deadline is read without n.now: lastNow feeds coolOld's decisions, which
	// must not depend on whether a timer was armed.
	at := n.env.Clock.Now().Add(d).UnixNano()
	n.alarms[id] = &armedAlarm{alarm: a, at: at, cancel: n.armAlarm(id, a, d)}
	return id
}

// armAlarm asks the Clock to ring alarm id (a) after d.
func (n *Node) armAlarm(id alarmID, a alarm, d time.Duration) (cancel func() bool) {
	f := func() { n.input(func() { n.rang(id, a) }) }
	if ac, ok := n.env.Clock.(AlarmClock); ok {
		return ac.AfterAlarm(uint64(id), d, f)
	}
	return n.env.Clock.AfterFunc(d, f)
}

// rang rings alarm id: a stopped one too, when the Clock could not stop it in
// time (its handler finds it stale, as for any other alarm).
func (n *Node) rang(id alarmID, a alarm) {
	delete(n.alarms, id)
	n.ring(a)
}

// stopAlarm cancels alarm id (none for 0).
func (n *Node) stopAlarm(id alarmID) {
	if al := n.alarms[id]; al != nil {
		delete(n.alarms, id)
		al.cancel()
	}
}

// nextOpSeq numbers an operation that alarms may refer to.
func (n *Node) nextOpSeq() uint64 {
	n.opSeq++
	return n.opSeq
}

// ring does what a says, if what it refers to is still there.
func (n *Node) ring(a alarm) {
	switch a.kind {
	case alarmWake:
		n.fireTimers()
	case alarmForget:
		n.sweepForgotten()
	case alarmGossip:
		n.gossip()
	case alarmTombstones:
		n.tombstoneStop = 0
		n.sweepTombstones()
		n.maybeArmTombstoneSweep()
	case alarmLeaderTick:
		n.onLeaderTick()
	case alarmLeaderClaim:
		if op := n.leaderOp; op != nil && op.seq == a.id {
			n.leaderClaimTimedOut(op)
		}
	case alarmProposals:
		if ch := n.change; ch != nil && ch.seq == a.id {
			n.sendProposals(ch)
		}
	case alarmPermitHold:
		if m, ok := n.heldPermits[a.key]; ok && m.Attempt == a.id {
			delete(n.heldPermits, a.key)
			n.handlePermit(m)
		}
	case alarmPermitWait:
		n.permitWaitOver(a.key, a.id)
	case alarmMoveTick:
		n.onMoveTick()
	case alarmMoveResend:
		if e := n.tasks[a.key]; e != nil && e.move != nil && e.move.seq == a.id {
			n.sendMove(e, e.move)
		}
	case alarmStoreResend:
		if op := n.pending[a.key]; op != nil && op.seq == a.id {
			n.sendStores(op)
		}
	case alarmQueryTimeout:
		if op := n.queries[a.key]; op != nil && op.seq == a.id {
			delete(n.queries, a.key)
			n.finishQuery(op, true)
		}
	case alarmQueueSetTimeout:
		for _, op := range n.setOps {
			if op.seq == a.id {
				n.finishSet(op, ErrNotEveryMember)
				break
			}
		}
	case alarmSettingsPoll:
		if sy := n.sync; sy != nil && sy.seq == a.id {
			n.maybeSettingsSynced()
			n.askSettings()
		}
	case alarmListTimeout:
		if op := n.lists[a.id]; op != nil {
			n.finishList(op)
		}
	case alarmCountTimeout:
		if op := n.countOps[a.id]; op != nil {
			n.finishCount(op)
		}
	case alarmScheduleSetTimeout:
		for _, op := range n.schedOps {
			if op.seq == a.id {
				n.finishSchedule(op, ErrNotEveryMember)
				break
			}
		}
	case alarmPlanTicks, alarmTick, alarmCatchUp:
		r := n.runs[a.key]
		if r == nil || r.seq != a.id {
			return // stopped: a run leaves runs only when it stops (runSchedule)
		}
		switch a.kind {
		case alarmPlanTicks:
			if !r.stopped {
				n.planTicks(r)
			}
		case alarmTick:
			if !r.stopped {
				n.enqueueTick(r, a.at)
			}
		default:
			n.catchUpTick(r)
		}
	case alarmTokenLease:
		n.renewTokenLease()
	}
}
