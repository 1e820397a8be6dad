package node

import (
	"fmt"
	"math/bits"
	"time"
)

// lostRounds is how many failed claim rounds in a row, with a majority of replicas
// saying they do not hold the task, end an at-most-once task as unknown.
const lostRounds = 3

// fire runs when a replica's timer goes off in the quorum protocol.
func (n *Node) fire(e *entry) {
	if e.state.Final() || e.delivering || e.claiming != 0 || n.stopping {
		return
	}
	now := n.now()
	if e.task.ListVersion > 0 && e.rank < 0 || e.pending != nil && e.pending.Rank(n.cfg.ID) < 0 {
		// Not a replica of the list in force, or of the one a move stored (move.go).
		// A removed node still finishes the move and decides nothing else: a move
		// it began stored the new list here, and when the removed copies are the
		// task's only holders, nobody else can finish it (M2, L1 on seed 52 of
		// ship-of-theseus-5: a power loss cut the move, and the restarted mover
		// skipped the task for good; deciding the task unknown as well ended it
		// so while the new list delivered it: L3, seed 94 of
		// membership-leader-cut-off).
		if n.removed && e.pending != nil && e.rank >= 0 {
			n.startMoveWhenRoom(e, now)
		}
		return
	}
	if e.pending != nil && n.movesInFlight >= MaxMovesInFlight {
		n.arm(e, timerFire, now.Add(moveEvery))
		return
	}
	if !n.settingsKnown() {
		// Not before this node knows the queue's settings (see settingsSync).
		n.arm(e, timerFire, now.Add(pausePoll+time.Duration(e.rank)*n.cfg.ReplicaOffset))
		return
	}
	held := e.promised > 0 && !e.released && e.holder != n.cfg.ID
	if e.task.Delivery == AtMostOnce && held {
		// Someone was granted the one attempt this task gets. If its lease has run out
		// on our clock without an outcome, the outcome is unknown for good. (The grant
		// itself never expires: grantable refuses every later attempt.)
		if now.Before(e.leaseEnd) {
			n.pushBack(e, e.leaseEnd)
			return
		}
		e.ext().reason = fmt.Sprintf("at-most-once: %s held its one attempt and gave no outcome before its lease ran out", e.holder)
		n.finish(e, StateUnknown, 0)
		return
	}
	if held && now.Before(e.leaseEnd) {
		n.pushBack(e, e.leaseEnd)
		return
	}
	if e.amnesiac {
		// Give the others a lease to decide it; if nobody has by then, its outcome
		// is unknown for good (we may have delivered it).
		if !e.amnesiacWaited {
			e.ext().amnesiacWaited = true
			n.pushBack(e, now.Add(n.cfg.Lease))
			return
		}
		e.ext().reason = "at-most-once: this replica lost its records of the task and no other replica decided it within a lease"
		n.finish(e, StateUnknown, 0)
		return
	}
	if n.queuePaused(e.task.Queue) && !n.removed {
		// (A removed node moves the task whatever it last knew of the queue: below.)
		// Look again later, keeping the replicas' stagger so that after the resume
		// rank 0 goes first instead of all of them at once.
		n.arm(e, timerFire, now.Add(pausePoll+time.Duration(e.rank)*n.cfg.ReplicaOffset))
		return
	}
	if e.task.Delivery == AtMostOnce && e.promised > 0 && e.holder == n.cfg.ID && !e.released {
		// We were granted an attempt before and no longer know whether we delivered it
		// (only possible after recovering our own grant from storage).
		e.ext().reason = "at-most-once: this node held its one attempt when it restarted and cannot tell whether it delivered it"
		n.finish(e, StateUnknown, 0)
		return
	}
	if n.removed {
		// Invariant: a removed node delivers nothing; when its timer fires it
		// moves the task instead (move.go), whatever its rank. It learns no queue
		// settings after its removal, so its deliveries ran under settings the
		// members had changed since (a lowered cap exceeded: Q2, seeds 3, 13 and
		// 45 of settings-flip-replacements). And the mover by rank, the first
		// member the list names, may never have stored the task (a majority
		// without it acknowledged the Store): left to it, such a task was moved by
		// nobody (M2, L1; seeds 15, 22 and 34). Movers compete as claimants do, so
		// more than one is safe.
		n.startMoveWhenRoom(e, now)
		return
	}
	if e.pending != nil {
		n.startMove(e, now) // finish the move a grant stored here
		return
	}
	n.startClaim(e, now)
}

// startClaim asks every replica for the next attempt.
func (n *Node) startClaim(e *entry, now time.Time) {
	x := e.ext()
	x.claiming = max(x.promised, e.floor, x.seen) + 1
	x.seen = x.claiming
	x.bestPending, x.bestBallot = nil, 0
	// round tells a duplicate of this claim from the same attempt claimed again after
	// a restart, and the Release of this round from that of another.
	x.round = n.env.Rand.Uint64() | 1
	x.permitting, x.permitted = false, false
	x.claimSent = now
	x.grants, x.rejects, x.unknowns = 0, 0, 0
	n.arm(e, timerClaim, now.Add(n.cfg.ClaimTimeout))
	m := Message{Type: MsgClaim, TaskID: e.task.ID, Task: e.task, Attempt: e.claiming, Lease: n.cfg.Lease, Promised: e.round}
	if e.moving {
		m.Reason = moveClaim // granted before the task is due: nothing is delivered (move.go)
	}
	n.bcast(e.task, m)
}

// abandonClaim gives up the attempt being claimed (never delivered) and tries again
// no earlier than retryAt. Acceptors that granted it are told, so that they need not
// wait for its lease.
func (n *Node) abandonClaim(e *entry, retryAt time.Time) {
	if e.claiming == 0 || e.delivering {
		return
	}
	if e.moving {
		n.endMove(e)
	}
	a := e.claiming
	n.permitDone(e, a)
	x := e.ext()
	x.claiming, x.grants, x.rejects = 0, 0, 0
	if e.promised == a && e.holder == n.cfg.ID && e.holderRound == e.round {
		e.ext().released = true // our own acceptor's grant; handleRelease skips our own message
	}
	// The other replicas learn when we try again, so that they do not take their
	// turn at once and compete with us (acceptors refuse claims before it).
	next := e.nextETA
	if retryAt.After(next) {
		next = retryAt
	}
	n.bcast(e.task, Message{Type: MsgRelease, TaskID: e.task.ID, Attempt: a, Promised: e.round, NextETA: next, Status: e.lastStatus}.withFailures(e.failures()))
	if e.state.Final() {
		return
	}
	if retryAt.Before(e.nextETA) {
		retryAt = e.nextETA
	}
	n.arm(e, timerFire, retryAt)
}

// claimBackoff is how long to wait before claiming again after a failed round:
// ClaimTimeout with jitter, doubling with each failed round in a row, at most a lease.
func (n *Node) claimBackoff(e *entry) time.Duration {
	e.ext().failedRounds++
	d := n.jitter(n.cfg.ClaimTimeout) << min(e.failedRounds-1, 5)
	return min(d, n.cfg.Lease)
}

// handleClaim is the acceptor's side of a claim.
func (n *Node) handleClaim(m Message) {
	e := n.entryOf(m.TaskID)
	resp := Message{Type: MsgClaimResp, To: m.From, TaskID: m.TaskID, Attempt: m.Attempt, Round: m.Promised}
	if e != nil && m.Task != nil && m.Task.ListVersion > e.task.ListVersion {
		n.adoptList(e, m.Task) // claims are made under lists in force only (move.go)
	}
	switch {
	case e == nil && m.Task != nil && n.mayHaveForgotten(m.Task):
		resp.Reject = RejectForgotten
	case e == nil && n.recovering():
		resp.Reject = RejectRecovering
	case e == nil:
		resp.Reject = RejectUnknown
	case e.task.Rank(m.From) < 0 && !leftOut(e, m):
		return // not a replica of this task: ignore
	case e.state.Final():
		resp = finalAnswer(resp, e)
	case e.task.Rank(m.From) < 0:
		// Left out of the list in force (leftOut): told the list, it stops claiming.
		resp.Reject, resp.Task = RejectMoved, e.task
	case e.amnesiac:
		// We may have granted this at-most-once task and forgotten: we no longer
		// know it, as far as claims go. A majority of such answers ends it unknown.
		resp.Reject = RejectUnknown
	case m.Attempt == e.promised && m.From == e.holder && !e.released && m.Promised == e.holderRound && m.Promised != 0:
		// The same claim round again (a duplicated message): grant again, lease
		// unchanged, once the first grant's record is durable (invariant: no grant is
		// answered before it is synced, even when the claim is repeated). A holder
		// that restarted and claims the same attempt anew has another round number
		// and is refused: it may have delivered already.
		resp.Granted = true
		resp = resp.withFailures(e.failures())
		resp.Task, resp.Promised = e.pending, e.pendingBallot
		n.sendAfterSync(resp)
		return
	case n.recovering() && !n.bornAfterForgetting(e.task):
		// Invariant: a node that may have lost its memory grants nothing for a task it
		// may have granted before its start until every lease it could have given is
		// over. (handleStore does not learn such tasks during the wait; this guards
		// any other way in.)
		resp.Reject = RejectRecovering
	case m.Task != nil && m.Task.ListVersion < e.task.ListVersion:
		// Invariant: no grant under a list a move replaced (move.go).
		resp.Reject, resp.Task = RejectMoved, e.task
	default:
		n.expireGrant(e)
		n.judgeClaim(e, m, resp)
		return
	}
	if e != nil {
		resp = resp.withFailures(e.failures())
	}
	n.send(resp)
}

// leftOut reports whether claim m comes from a replica of a list a move replaced
// that the list in force, e's, leaves out (a removed member that still holds its
// copy). It is answered with how the task ended or the list in force, so that it
// stops claiming and agrees: ignored, it kept claiming until the others forgot the
// task, then ended it unknown while they had it succeeded (L3 on seeds 60, 62, 65,
// 68, 71, 88 and 150 of replace-power-loss).
func leftOut(e *entry, m Message) bool {
	return m.Task != nil && m.Task.Rank(m.From) >= 0 && m.Task.ListVersion < e.task.ListVersion
}

// finalAnswer is resp refusing a claim because the task is final: how it ended.
func finalAnswer(resp Message, e *entry) Message {
	resp.Reject, resp.State, resp.Status, resp.Reason = RejectFinal, e.state, e.lastStatus, e.reason
	return resp.withFailures(e.failures())
}

// expireGrant ends, before a claim is judged, the grant whose lease ran out here
// with no word from its holder.
//
// Invariant: an attempt whose lease expired with no outcome counts as a failed
// delivery. It may have been delivered and failed or hung, and its Release may be
// lost for good (a holder behind a one-way partition): retries counts it, so that
// the backoff and the retry limit do, and no attempt is granted before its backoff,
// counted from the lease's end, is over. It is recorded like a Release, so that a
// restart neither counts it again nor reads the clock to decide it.
func (n *Node) expireGrant(e *entry) {
	if e.promised == 0 || e.released || e.delivering || !n.leaseExpired(e) {
		return
	}
	e.ext().released = true
	// The count may hold this failure already (learnt from a message that did not
	// say when it ended): the backoff still runs from the lease's end.
	e.countFailure(e.promised)
	next := e.leaseEnd.Add(n.queue(e.task.Queue).Retry.Backoff(e.retries))
	if next.After(e.notBefore) {
		e.notBefore = next
	}
	if next.After(e.nextETA) {
		e.nextETA = next
	}
	n.persist(nil, Record{Kind: RecRelease, TaskID: e.task.ID, Holder: e.holder, Attempt: e.promised, Round: e.holderRound, NextETA: next, Status: e.lastStatus}.withFailures(e.failures()))
}

// judgeClaim grants m's attempt or says why not, for a task this node holds and may
// grant.
func (n *Node) judgeClaim(e *entry, m Message, resp Message) {
	switch {
	case n.now().Before(e.notBefore.Add(-n.cfg.MaxClockDrift)) && m.Reason != moveClaim:
		// Not due yet by our clock (a failed delivery's backoff the claimant missed,
		// or its clock runs ahead): refuse, and say when to come back.
		resp.Reject, resp.Promised, resp.Holder = RejectPromised, max(e.promised, e.floor), e.holder
		resp.Lease = e.notBefore.Sub(n.now())
	case m.Attempt <= max(e.promised, e.floor) || !n.grantable(e, m.From):
		// Invariant: no attempt at or below floor is granted (see entry.floor).
		resp.Reject, resp.Promised, resp.Holder = RejectPromised, max(e.promised, e.floor), e.holder
		resp.Lease = max(e.leaseEnd.Sub(n.now()), 0)
		if e.task.Delivery == AtMostOnce && resp.Lease == 0 {
			// The grant never expires; its holder's lease is over, so the outcome is
			// about to be decided (unknown) here: come back in a lease.
			resp.Lease = n.cfg.Lease
		}
	default:
		// Invariant: a grant of attempt a > promised happens only when the previous
		// attempt was released, expired here, or belongs to the same claimant.
		now := n.now()
		x := e.ext()
		x.promised, x.holder, x.released = m.Attempt, m.From, false
		e.ext().holderRound = m.Promised
		// Invariant: leaseEnd is always a real time (grant time plus the lease asked
		// for), also in at-most-once, where it says when the holder's attempt is
		// surely over, not when the grant expires (it never does: see grantable).
		// No sentinel time: one read back from disk is equal in instant, not in ==.
		e.ext().leaseEnd = now.Add(m.Lease)
		resp.Granted = true
		resp = resp.withFailures(e.failures())
		// The claimant must finish this move (move.go); Promised says under which
		// attempt it was stored, so that it finishes the one stored last.
		resp.Task, resp.Promised = e.pending, e.pendingBallot
		if m.From != n.cfg.ID && e.timerKind == timerFire {
			// Someone else is about to fire: stay quiet until its lease is over.
			n.pushBack(e, now.Add(m.Lease))
		}
		rec := Record{Kind: RecGrant, TaskID: e.task.ID, Attempt: e.promised, Holder: e.holder, Round: e.holderRound, LeaseEnd: e.leaseEnd}
		n.persistThenSend(resp, rec)
		return
	}
	resp = resp.withFailures(e.failures())
	n.send(resp)
}

// grantable reports whether a later attempt than e.promised may be granted to from.
func (n *Node) grantable(e *entry, from NodeID) bool {
	// No shortcut for a claimant that asks again: after a crash it may have forgotten
	// a delivery that is still running at the worker.
	if e.amnesiac {
		return false
	}
	if e.promised == 0 || e.released {
		return true
	}
	if e.task.Delivery == AtMostOnce {
		return false // an at-most-once grant never expires
	}
	if e.delivering {
		// Our own delivery has not reported yet (we were paused past its lease, its
		// result queued behind this claim): its failure, or success, is not counted.
		// Its deadline was cut to the lease, so the wait is short.
		return false
	}
	return n.leaseExpired(e)
}

// handleClaimResp is the claimant's side: count grants, deliver on a quorum.
func (n *Node) handleClaimResp(m Message) {
	e := n.entryOf(m.TaskID)
	if e == nil || e.state.Final() && !(m.Reject == RejectFinal && n.tellsMore(e.state, m.State)) {
		return
	}
	rank := e.task.Rank(m.From)
	if rank < 0 {
		return
	}
	e.mergeFailures(failuresOf(&m))
	if e.task.ListVersion > 0 && e.rank < 0 && (m.Reject == RejectForgotten || m.Reject == RejectFinal && m.State == StateUnknown) {
		// Invariant: a copy the list in force leaves out (a removed mover's, once
		// its move is done) takes no unknown. Unknown gives way to what the delivery
		// did, which such a copy would never hear of: its Outcomes, under a list that
		// does not name it, are refused as forged (L3 on seeds 1 and 53 of
		// settings-flip-replacements without this rule: a replica cut off ended
		// unknown and learnt succeeded later; the removed mover kept the unknown it
		// had taken). It decides nothing, so staying undecided costs nothing.
		return
	}
	if m.Reject == RejectFinal {
		e.ext().lastStatus = m.Status
		e.ext().reason = m.Reason
		n.adoptFinal(e, m.State, nil)
		return
	}
	if m.Reject == RejectForgotten && !e.delivering {
		// A replica finished this task and forgot it after its dedup window: it is
		// over, and its outcome is known nowhere any more.
		e.ext().reason = fmt.Sprintf("%s finished this task and forgot it after its dedup window: its outcome is known nowhere any more", m.From)
		n.adoptFinal(e, StateUnknown, nil)
		n.decided(e)
		return
	}
	if e.claiming == 0 || e.delivering || m.Attempt != e.claiming || m.Round != e.round {
		// About a claim round we gave up, or one of the process this node was
		// before a restart: that process may have won the same attempt with it and
		// be delivering still (its log stopped before it kept the claim), so a grant
		// of it must not count for ours.
		return
	}
	if m.Granted {
		e.ext().grants |= 1 << rank
		n.ackCounted(Ack{Kind: RecGrant, From: m.From, TaskID: m.TaskID, Attempt: m.Attempt, Holder: n.cfg.ID})
		if p := m.Task; p != nil && p.ListVersion > e.task.ListVersion && (e.bestPending == nil || m.Promised > e.bestBallot) {
			// A move's list, perhaps in force: finish the one stored under the
			// highest attempt, as a Paxos proposer takes the value of the highest
			// ballot (move.go).
			x := e.ext()
			x.bestPending, x.bestBallot = p, m.Promised
		}
		if bits.OnesCount64(e.grants) >= n.quorum(e.task) {
			if e.moving || e.bestPending != nil || n.removed {
				// A claim a removed node made before it learnt so moves too: it
				// delivers nothing (see fire).
				n.claimedForMove(e)
			} else {
				n.deliver(e)
			}
		}
		return
	}
	if m.Reject == RejectMoved {
		// Our list was replaced: take the one in force and claim under it.
		if m.Task != nil {
			n.adoptList(e, m.Task)
		}
		n.abandonClaim(e, n.now().Add(n.claimBackoff(e)))
		return
	}
	// Remember the attempt that beat ours so that the next claim outbids it. This is
	// claimant state only: the acceptor's record (promised, holder) is never changed
	// by what a claimant hears, or it could forget a grant it gave.
	e.ext().seen = max(e.seen, m.Promised)
	if m.Reject == RejectUnknown && e.task.Delivery == AtLeastOnce {
		// The replica lost the task in a crash and has finished its recovery wait, so
		// every grant it gave before has expired: give the task back to it. (Never for
		// at-most-once: it may have granted the one attempt and forgotten.) The
		// failures counted so far and their backoff go with it, so that its grants do
		// not make the next holder count from zero.
		n.send(Message{Type: MsgStore, To: m.From, TaskID: e.task.ID, Task: e.task, Status: e.lastStatus, NextETA: e.notBefore}.withFailures(e.failures()))
	}
	e.ext().rejects |= 1 << rank
	if m.Reject == RejectUnknown {
		e.ext().unknowns |= 1 << rank
	}
	if e.task.Delivery == AtMostOnce && e.failedRounds >= lostRounds && bits.OnesCount64(e.unknowns) >= majority(e.task) {
		// A majority of replicas lost the task round after round: it can never be
		// claimed safely again, and whether it was delivered is unknown.
		e.ext().reason = "at-most-once: a majority of its replicas lost the task, so whether it was delivered is unknown"
		n.finish(e, StateUnknown, 0)
		return
	}
	if len(e.task.Replicas)-bits.OnesCount64(e.rejects) < n.quorum(e.task) {
		retry := n.now().Add(n.claimBackoff(e))
		if m.Reject == RejectPromised {
			retry = n.now().Add(m.Lease + time.Duration(e.rank)*n.cfg.ReplicaOffset)
		}
		n.abandonClaim(e, retry)
	}
}

// deliver starts the webhook for the attempt that just won a quorum.
func (n *Node) deliver(e *entry) {
	now := n.now()
	if wait := e.notBefore.Sub(now); wait > 0 && wait <= n.claimAhead() {
		// Won ahead of the due time (ClaimAhead): deliver at it. Invariant: a claim
		// started ahead delivers no earlier than the task is due on the holder's
		// clock (S5). Everything below is checked again then: the lease, a pause,
		// the permit of a limited queue (asked at the start, so that a rate counts
		// starts, not claims). The due time is notBefore (the ETA, or a failure's
		// backoff), not nextETA: that one is the replica timer's, which another
		// replica's Release may push a lease ahead while we claim (L1 on seed 20 of
		// rate-limit when the claim waited for it).
		n.arm(e, timerDeliver, e.notBefore)
		return
	}
	q := n.queue(e.task.Queue)
	// The lease counts from when we sent the claim, which is before any acceptor
	// started counting it; MaxClockDrift covers clocks that measure time differently.
	leaseEnd := e.claimSent.Add(n.cfg.Lease - n.cfg.MaxClockDrift)
	deadline := min(q.DispatchDeadline, leaseEnd.Sub(now))
	// Re-check the lease right before delivery: a pause between the grants and now
	// may have eaten it.
	if deadline <= 0 {
		if e.task.Delivery == AtMostOnce {
			e.ext().reason = "at-most-once: the lease of its one attempt ran out before the delivery could start"
			n.finish(e, StateUnknown, 0)
			return
		}
		n.abandonClaim(e, now)
		return
	}
	if e.task.Delivery == AtLeastOnce && now.Before(e.notBefore.Add(-n.cfg.MaxClockDrift)) {
		// Invariant: a holder does not deliver before the backoff of a failure it
		// knows of is over, even with a quorum of grants from replicas that did not
		// know of it yet (its Release reached us, not them, while we claimed).
		n.abandonClaim(e, e.notBefore)
		return
	}
	if e.task.Delivery == AtLeastOnce && e.retries > 0 && q.Retry.Exhausted(e.retries, now.Sub(e.task.Created)) {
		// Invariant: no delivery after the retry limits are used up. The failures
		// counted so far (some by acceptors whose grants expired with no word from
		// their holder) may have used them up since the last delivery; the holder of
		// this quorum decides the task dead instead of delivering it.
		n.permitDone(e, e.claiming)
		n.finish(e, StateDead, 0)
		return
	}
	if n.queuePaused(e.task.Queue) {
		n.abandonClaim(e, now.Add(pausePoll+time.Duration(e.rank)*n.cfg.ReplicaOffset))
		return
	}
	if q.Limited() && !e.permitted {
		// The claim timer still runs: no answer from the token node in time gives
		// the claim up like any other failed round.
		if !e.permitting {
			n.askPermit(e, leaseEnd.Sub(now))
		}
		return
	}
	e.ext().delivering = true
	e.ext().failedRounds = 0
	n.disarm(e)
	n.setState(e, StateClaimed)
	n.recordStart(e)
	n.env.Dispatcher.Dispatch(Delivery{Task: e.task, Attempt: e.claiming, Retries: e.retries, Deadline: deadline, PreviousStatus: e.lastStatus})
}

// HandleDeliveryResult takes the outcome of a webhook this node started.
func (n *Node) HandleDeliveryResult(r DeliveryResult) {
	n.input(func() { n.handleDeliveryResult(r) })
}

func (n *Node) handleDeliveryResult(r DeliveryResult) {
	e := n.entryOf(r.TaskID)
	if e == nil || !e.delivering || e.claiming != r.Attempt {
		return
	}
	e.ext().delivering = false
	n.recordResult(e, r)
	n.permitDone(e, r.Attempt)
	if r.Status != 0 {
		e.ext().lastStatus = r.Status
	}
	if n.cfg.Protocol == ProtocolNaive {
		n.naiveResult(e, r)
		return
	}
	now := n.now()
	switch {
	case r.OK():
		n.finish(e, StateSucceeded, r.Status)
	case e.task.Delivery == AtMostOnce && r.Status == 0:
		n.finish(e, StateUnknown, 0)
	case e.task.Delivery == AtMostOnce:
		n.finish(e, StateDead, r.Status)
	default:
		e.countFailure(e.claiming)
		retry := n.queue(e.task.Queue).Retry
		if retry.Exhausted(e.retries, now.Sub(e.task.Created)) {
			n.finish(e, StateDead, r.Status)
			return
		}
		next := now.Add(max(retry.Backoff(e.retries), r.RetryAfter))
		if n.cfg.Unsafe.RetryWithoutBackoff {
			next = now // negative controls only (Q4)
		}
		a := e.claiming
		x := e.ext()
		x.claiming, x.grants, x.rejects = 0, 0, 0
		n.applyRelease(e, n.cfg.ID, a, e.round, next, e.failures(), e.lastStatus)
		e.notBefore = next
		n.setState(e, StateScheduled)
		n.armFire(e)
		n.bcast(e.task, Message{Type: MsgRelease, TaskID: e.task.ID, Attempt: a, Promised: e.round, NextETA: next, Status: e.lastStatus}.withFailures(e.failures()))
	}
}

// handleRelease: the holder of an attempt failed it (or abandoned the claim).
func (n *Node) handleRelease(m Message) {
	e := n.entryOf(m.TaskID)
	if e == nil || e.state.Final() || m.From == n.cfg.ID {
		return
	}
	freed, next := n.applyRelease(e, m.From, m.Attempt, m.Promised, m.NextETA, failuresOf(&m), m.Status)
	if freed && !e.delivering && e.claiming == 0 {
		n.setState(e, StateScheduled)
		n.armFire(e)
	}
	// The record holds the count as merged, and the backoff's end as applied, so that
	// replaying it rebuilds the same entry whatever the queue's settings are then.
	rec := Record{Kind: RecRelease, TaskID: e.task.ID, Holder: m.From, Attempt: m.Attempt, Round: m.Promised, NextETA: next, Status: m.Status}.withFailures(e.failures())
	n.persist(nil, rec)
}

// applyRelease records that from's attempt a, claimed in round, is over without
// success, with the failures counted so far (see failureCount) and no attempt before
// next. It reports whether that freed a live grant this acceptor gave (then the
// replica timer should be re-armed at the next due time), and the due time it
// applied: next, later by the backoff of the failures this count adds to the
// sender's.
//
// Invariant: a release never frees a live grant held by someone else. A claimant that
// abandons a claim we rejected also sends Release; it must not free the grant we gave
// the attempt that beat it (that attempt may be delivering right now). "Someone else"
// includes the claimant's own earlier incarnation: a holder that restarted without
// the record of its attempt may claim the same number again, be refused, and release
// it; only the round it was granted in frees the grant.
//
// Invariant: what a release does depends only on the entry and the release, never on
// the clock, so that replaying the log at start rebuilds exactly the state the node
// had (a release read against the restart-time clock could free a grant whose
// delivery is still running).
func (n *Node) applyRelease(e *entry, from NodeID, a, round uint64, next time.Time, count failureCount, status int) (bool, time.Time) {
	// A release moves notBefore when it tells of a failure we did not count, or
	// reports the failure of a itself, the highest or a late one below it (next is
	// then the end of its backoff).
	if rose := e.mergeFailures(count); rose || count.locates(a) {
		if e.retries > count.retries {
			// We knew of failures the sender did not: its backoff is too short.
			b := n.queue(e.task.Queue).Retry.Backoff
			next = next.Add(b(e.retries) - b(count.retries))
		}
		// A delivery failed: no attempt before its backoff is over. (A release of an
		// abandoned claim moves only the timers, never this: it would let two
		// claimants that keep abandoning shut each other out.)
		if next.After(e.notBefore) {
			e.notBefore = next
		}
	}
	if status != 0 {
		e.ext().lastStatus = status
	}
	if next.After(e.nextETA) {
		e.nextETA = next
	}
	switch {
	case a == e.promised && e.holder == from && round == e.holderRound && !e.released:
		e.ext().released = true
		return true, next
	case a > e.promised:
		// An attempt we never granted is over: it was claimed, so it may have been
		// delivered with others' grants. Never grant that number, so that our next
		// claim outbids it and no other node delivers it again; the grant we hold (a
		// live one, maybe) stays as it is.
		e.floor = max(e.floor, a)
	}
	return false, next
}

func (n *Node) leaseExpired(e *entry) bool {
	return e.task.Delivery == AtLeastOnce && !n.now().Before(e.leaseEnd)
}

// finish ends the task in a final state here and tells every replica, again and again
// until a majority has acknowledged.
func (n *Node) finish(e *entry, state TaskState, status int) {
	if status != 0 {
		e.ext().lastStatus = status
	}
	if e.reason == "" {
		e.ext().reason = n.finalReason(e, state)
	}
	n.setState(e, state)
	x := e.ext()
	x.outcomeAcks, x.outcomeSends = 0, 0
	n.persist(nil, Record{Kind: RecOutcome, TaskID: e.task.ID, State: state, Status: e.lastStatus, Reason: e.reason}.withFailures(e.failures()))
	n.decided(e)
	n.sendOutcome(e)
}

// tellsMore reports whether final state to tells more of a task than from: unknown
// (the outcome of an at-most-once attempt that this replica did not see) gives way to
// what the delivery did, succeeded or dead.
//
// Invariant: replicas that hold a task final agree on its state once the messages
// about it get through. A replica cut off from the delivery ends the task unknown
// when the grant's lease runs out, while the deliverer's Done may have reached a
// majority and stopped: so a replica holding unknown resends its Outcome until every
// replica has answered (outcomeAcksNeeded), adopts the succeeded or dead an answer
// reports, and one that replaces unknown sends its new state around again.
func (n *Node) tellsMore(from, to TaskState) bool {
	if n.cfg.Unsafe.KeepUnknown {
		return false // negative controls only (L3)
	}
	return from == StateUnknown && (to == StateSucceeded || to == StateDead)
}

// resendOutcome sends e's final state anew to every replica, until enough have
// acknowledged it (it replaced unknown here: those holding unknown learn it).
func (n *Node) resendOutcome(e *entry) {
	x := e.ext()
	x.outcomeAcks, x.outcomeSends = 0, 0
	n.sendOutcome(e)
}

// outcomeAcksNeeded is how many replicas must acknowledge e's final state before its
// Outcome is no longer resent: a majority, so that no later claim can win; every
// replica for unknown, whose holder keeps asking until each has answered with what
// it holds (a replica that saw the delivery's outcome answers with it, and the
// holder adopts it: see tellsMore).
func outcomeAcksNeeded(e *entry) int {
	if e.state == StateUnknown {
		return len(e.task.Replicas)
	}
	return majority(e.task)
}

// outcomeOf is the Outcome that tells to what e's holder decided.
func outcomeOf(e *entry, to NodeID) Message {
	return Message{Type: MsgOutcome, To: to, TaskID: e.task.ID, Task: e.task, Attempt: e.claiming, State: e.state, Status: e.lastStatus, Reason: e.reason}.withFailures(e.failures())
}

func (n *Node) sendOutcome(e *entry) {
	if bits.OnesCount64(e.outcomeAcks) >= outcomeAcksNeeded(e) {
		n.arm(e, timerForget, n.now().Add(n.cfg.DedupWindow))
		return
	}
	for i, r := range e.task.Replicas {
		if e.outcomeAcks&(1<<i) == 0 {
			n.send(outcomeOf(e, r))
		}
	}
	// Resend after OutcomeRetry, doubling each time up to ClaimTimeout: slow enough
	// not to flood a replica that is down, quick enough to reach one that comes back
	// before the leases it gave run out.
	e.ext().outcomeSends++
	n.arm(e, timerOutcome, n.now().Add(min(n.cfg.OutcomeRetry<<min(e.outcomeSends-1, 16), max(n.cfg.ClaimTimeout, n.cfg.OutcomeRetry))))
}

func (n *Node) handleOutcome(m Message) {
	e := n.entryOf(m.TaskID)
	if e != nil && m.Task != nil && m.Task.Nonce != e.task.Nonce && !(m.From == e.holder && m.Attempt == e.promised && m.Attempt > 0) {
		// Not the task held here, and not from the node this replica granted the
		// attempt the Outcome reports on: a forgery by someone who knows the ID (a
		// named task's is derivable) but not the task, or another enqueue of the same
		// name (a client re-sent it through another node after a timeout, and some
		// replicas stored the second while others hold the first). Not applied; but
		// answered with what is held here, so that a replica of the other enqueue that
		// asks (an at-most-once task it ended unknown, see resendOutcome) learns what
		// became of the ID: replicas must not answer differently about one task for
		// good (L3, seed 20 of names-resent).
		// Once that state is durable, as every other answer to an Outcome: the
		// asker counts it as a replica holding the task final (S8 on seed 6 of
		// names-forged-outcome-answer-not-durable, where it was still on its way
		// to a slow disk).
		n.refuse(m, RefusedForged, "task.nonce")
		if e.state.Final() {
			n.sendAfterSync(Message{Type: MsgOutcomeResp, To: m.From, TaskID: m.TaskID, State: e.state})
		}
		return
	}
	// Another nonce from the holder of the grant this replica gave: claims, grants
	// and attempts are per ID, so that delivery was this task's, whichever enqueue of
	// the name the holder stored.
	from, taskID := m.From, m.TaskID // not m: ack would move it to the heap
	if e == nil && m.Task != nil && m.State.Final() && m.Task.Rank(n.cfg.ID) >= 0 && !n.mayHaveForgotten(m.Task) {
		// We lost the task (or never got it): keep it as final, so that we can never
		// be talked into granting it again. Invariant: not one we may have forgotten
		// after its dedup window (forget.go refuses its claims already): a straggler
		// back after the window, a removed member's stale copy, ends such a task
		// unknown when everyone answers that they forgot it, and its Outcome made the
		// replicas hold unknown again a task they had succeeded (L3 on seeds 47 and
		// 50 of replace-by-stop).
		e = n.newEntry(m.Task)
		e.state = StateNone
		n.addEntry(e)
		n.persist(nil, Record{Kind: RecTask, Task: m.Task, TaskID: m.Task.ID})
	}
	if e == nil {
		n.send(Message{Type: MsgOutcomeResp, To: from, TaskID: taskID, State: StateNone})
		return
	}
	ack := &syncAction{kind: syncOutcomeAck, to: from, taskID: taskID, e: e}
	switch {
	case m.State != StateCancelled && m.Task != nil && m.Task.ListVersion < e.task.ListVersion:
		// Invariant: an Outcome sent under a list a move replaced is not adopted,
		// only answered with what the task is here. Its sender decided under a list
		// that no longer decides the task: a replica cut off during the move, or
		// down and restarted with the old list, ends unknown an at-most-once task
		// the list in force then delivers, and spread that unknown to the new list
		// (L3 on seeds 39 and 53 of settings-flip-replacements without this rule).
		// It keeps asking until its list's replicas hold the task final, and takes
		// from them what the delivery did (tellsMore); an unknown is answered with
		// the list in force too, whose replicas it then asks (handleOutcomeResp).
		if m.State == StateUnknown {
			ack.task = e.task
		}
	case m.State == StateCancelled && e.state.Final():
		// Too late to cancel: the answer says what the task became (once durable).
	case e.state.Final() && !n.tellsMore(e.state, m.State):
		// Already recorded when it became final here; answered once that record is
		// durable (it may still be on its way to disk when the Outcome is repeated).
	default:
		e.mergeFailures(failuresOf(&m))
		if m.Status != 0 {
			e.ext().lastStatus = m.Status
		}
		e.ext().reason = m.Reason // the reason of the state adopted (none for a success)
		wasUnknown := e.state == StateUnknown
		n.adoptFinal(e, m.State, ack)
		if wasUnknown {
			n.resendOutcome(e)
		}
		return
	}
	n.afterSync(ack)
}

// adoptFinal records a final state another replica reached, durably, then runs then.
// Invariant: a final state is acknowledged only once it would survive a crash.
func (n *Node) adoptFinal(e *entry, s TaskState, then *syncAction) {
	x := e.ext()
	x.claiming, x.grants, x.rejects = 0, 0, 0
	n.setState(e, s)
	n.arm(e, timerForget, n.now().Add(n.cfg.DedupWindow))
	n.persist(then, Record{Kind: RecOutcome, TaskID: e.task.ID, State: s, Status: e.lastStatus, Reason: e.reason}.withFailures(e.failures()))
	if s == StateUnknown && e.task.Delivery == AtMostOnce {
		// Adopted unknown: ask every replica, like the one that decided it, until
		// each has answered with what it holds (see tellsMore).
		n.resendOutcome(e)
	}
}

func (n *Node) handleOutcomeResp(m Message) {
	if n.cancelAnswered(m) {
		return
	}
	e := n.entryOf(m.TaskID)
	if e != nil && e.state == StateUnknown && m.Task != nil && m.Task.Nonce == e.task.Nonce && m.Task.ListVersion > e.task.ListVersion {
		n.askListInForce(e, m)
		return
	}
	// Only a replica that holds the task final counts: one that lost it (or never
	// had it) would not stop a later claim, so it must not make Done look safe.
	if e == nil || !e.state.Final() || !m.State.Final() {
		return
	}
	rank := e.task.Rank(m.From)
	if rank < 0 {
		return
	}
	if n.tellsMore(e.state, m.State) {
		// We ended it unknown (cut off from the delivery), and this replica holds
		// what the delivery did.
		n.learnWhatTheDeliveryDid(e, m.State, m.From)
	}
	e.ext().outcomeAcks |= 1 << rank
	n.ackCounted(Ack{Kind: RecOutcome, From: m.From, TaskID: m.TaskID})
	if e.timerKind == timerOutcome && bits.OnesCount64(e.outcomeAcks) >= outcomeAcksNeeded(e) {
		n.arm(e, timerForget, n.now().Add(n.cfg.DedupWindow))
	}
}

// learnWhatTheDeliveryDid replaces e's unknown with s (succeeded or dead), which
// from holds, and tells those who may hold unknown too.
func (n *Node) learnWhatTheDeliveryDid(e *entry, s TaskState, from NodeID) {
	if s == StateDead {
		e.ext().reason = fmt.Sprintf("the delivering replica ended it dead (learnt from %s)", from)
	} else {
		e.ext().reason = ""
	}
	n.adoptFinal(e, s, nil)
	n.resendOutcome(e)
}

// askListInForce takes an answer to this node's Outcome of unknown that names a
// list in force newer than e's: a move replaced e's list while this node was down
// or cut off, and the replicas of e's list may never learn what the delivery did
// (the new list's Outcomes go to the new list). Invariant (L3): an unknown held
// under a replaced list ends as the list in force decided it. A replica of that
// list that says it succeeded or died is taken at its word, list and all; an
// answer from e's own list makes this node ask the new list's replicas, with its
// Outcome still under e's list, which they answer without adopting it (handleOutcome)
// (seed 56 of settings-flip-replacements: a replica back from a crash ended unknown
// a task that the list in force, which names it, had delivered; it asked the
// removed members of its old list for good).
func (n *Node) askListInForce(e *entry, m Message) {
	switch {
	case m.Task.Rank(m.From) >= 0 && m.State.Final() && n.tellsMore(e.state, m.State):
		n.adoptList(e, m.Task)
		n.learnWhatTheDeliveryDid(e, m.State, m.From)
	case e.task.Rank(m.From) >= 0:
		// Once per answer of e's list: as often as this node resends its Outcome.
		for _, r := range m.Task.Replicas {
			if e.task.Rank(r) < 0 {
				n.send(outcomeOf(e, r))
			}
		}
	}
}

// bornAfterForgetting reports whether t was surely created after this node last
// forgot (see forgotAt), so that it cannot have granted it and forgotten. Created is
// on the coordinator's clock, which may be up to MaxClockDrift ahead of ours.
func (n *Node) bornAfterForgetting(t *Task) bool {
	return !t.Created.Before(n.forgotAt.Add(n.cfg.MaxClockDrift))
}
