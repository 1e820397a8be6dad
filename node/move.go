package node

import (
	"math/bits"
	"slices"
	"time"
)

// Re-replication: a task whose replica list names a member no longer in the
// roster is moved to a list of members, by DESIGN's rule. The list has a version
// (Task.ListVersion): 0 as placed at enqueue, else the attempt under which a
// mover first proposed it, so two moves never give two lists one version. Each
// list in force chooses its successor as one Paxos instance does a value: the
// attempts claimed under it are the ballots, a pending list stored under a grant
// is the accepted value, with that grant's attempt as its ballot. Versions grow
// along the chain of lists in force: every attempt claimed under a list is above
// its version (the mover stores the list with its attempt as the floor).
//
//  1. The mover (the first replica of the list, by rank, that the roster still
//     lists; the first replica when it lists none; and any removed replica whose
//     timer fires, see fire) wins an ordinary claim on the task, marked as a move
//     so that it is granted before the task is due: nobody else is delivering it.
//  2. It sends the new list (MsgMove) to the replicas of the old list; a replica
//     stores it as pending (RecMove) only while the grant of that attempt to that
//     mover is the one standing, as a Paxos acceptor takes a value only under the
//     ballot it promised. From then on every grant it gives reports the pending
//     list, and a claimant told of one moves instead of delivering: in effect it
//     refuses deliveries under the old list. Once the new list is in force, a
//     claim made under the old one is refused outright (RejectMoved).
//  3. Once a majority of the old list stored it, the new list is in force: the
//     mover stores the task (with its failure count and its attempt as the floor)
//     on the new list (MsgStore), and once a majority of the new list stored it,
//     the move is done: it adopts the new list and releases its attempt.
//
// A claimant whose majority of grants reports a pending list must finish that
// move (the list stored under the highest attempt, as it is, version and all,
// under its own attempt) instead of delivering: if a majority stored it, every
// later majority of grants reports it, so a list that may be in force is never
// lost and no one delivers under the list it replaced.
//
// Invariant: finishing another's move never renumbers its list. The list may
// have been in force for long and replaced by later moves since (the grants
// come from replicas of an old list that heard of none of them); under a new
// version, its own attempt, it could outrank those later lists, take their
// place on replicas that hold them, and let a claim under it deliver a task
// its successors had finished (S3, seed 541 of remove-replace-swarm). Under
// the version it was first proposed with, every replica that holds a later
// list keeps that one, and its claims are refused (RejectMoved). A replica that holds a pending list naming it claims for that
// move when its timer fires; one that the pending list does not name stays
// quiet. Lists in force spread by claims (a replica adopts a newer list a claim
// carries) and by RejectMoved answers.
//
// Pacing: at most MaxMovesInFlight moves per node, started by a scan every
// moveEvery while this node saw a member removed.

// MaxMovesInFlight bounds the moves one node makes at once, so that deliveries
// are not starved.
const MaxMovesInFlight = 8

// moveEvery is how often a node looks for tasks to move.
const moveEvery = time.Second

// moveClaim, as a Claim's Reason, says the claim is for a move: acceptors grant
// it before the task is due (a move delivers nothing; the backoff and due time
// the grant would otherwise wait for still hold for the deliveries after it).
const moveClaim = "move"

// moveOp is a move this node makes of one task.
type moveOp struct {
	seq     uint64 // what alarms name it by (alarms.go)
	next    *Task  // the new list (ListVersion: attempt, or that of the move it finishes)
	old     *Task  // the list the claim was won under
	attempt uint64
	oldAcks uint64 // ranks in old that stored next
	newAcks uint64 // ranks in next that stored the task
	inForce bool   // a majority of old stored next
}

// Moves returns the moves this node makes now and those it finished since it
// started (metrics).
func (n *Node) Moves() (inFlight int, done uint64) { return n.movesInFlight, n.movesDone }

// armMoves starts the scan for tasks to move, if it is not running.
func (n *Node) armMoves() {
	if n.moveTimer != 0 || n.stopping {
		return
	}
	n.moveTimer = n.after(moveEvery, alarm{kind: alarmMoveTick})
}

// onMoveTick starts moves up to MaxMovesInFlight, lowest task ID first; it
// keeps scanning while any task is left to move.
func (n *Node) onMoveTick() {
	n.moveTimer = 0
	if n.stopping {
		return
	}
	if !n.settingsKnown() || n.recovering() {
		n.armMoves()
		return
	}
	now := n.now()
	var ids []string
	for id, e := range n.tasks {
		if n.needsMove(e) {
			ids = append(ids, id)
		}
	}
	for raw, h := range n.tombs { // sorted below
		// A cold task is read without thawing (cold.go), and decoded only when
		// its list names a member gone.
		if h&coldHandle != 0 && n.coldNamesGone(h) {
			if id := raw.id(); n.needsMove(n.peek(id)) {
				ids = append(ids, id)
			}
		}
	}
	slices.Sort(ids) // not the map's order
	for _, id := range ids {
		if n.movesInFlight >= MaxMovesInFlight {
			break
		}
		if e := n.entryOf(id); n.mayMoveNow(e, now) {
			n.startMove(e, now)
		}
	}
	if len(ids) > 0 || n.movesInFlight > 0 {
		n.armMoves()
	}
}

// needsMove reports whether e's list names a member the roster no longer lists
// and this node is its mover: the first replica, by rank, that the roster lists
// (or the first replica, when the roster lists none: a removed node still moves).
// A removed replica also moves the tasks it holds when their timers fire (fire,
// in claim.go).
func (n *Node) needsMove(e *entry) bool {
	if e.state.Final() || e.amnesiac || e.pending != nil || e.move != nil || e.rank < 0 {
		return false
	}
	gone := false
	for _, r := range e.task.Replicas {
		if !n.roster.Has(r) {
			gone = true
		}
	}
	if !gone {
		return false
	}
	for _, r := range e.task.Replicas {
		if n.roster.Has(r) {
			return r == n.cfg.ID
		}
	}
	return e.rank == 0 // no replica is a member any more: the first moves it
}

// mayMoveNow: no claim or delivery of ours runs, and no other holder's grant
// stands here (an at-most-once grant stands until released).
func (n *Node) mayMoveNow(e *entry, now time.Time) bool {
	if e.claiming != 0 || e.delivering {
		return false
	}
	if e.promised > 0 && !e.released && e.holder != n.cfg.ID {
		return e.task.Delivery == AtLeastOnce && !now.Before(e.leaseEnd)
	}
	return !(e.task.Delivery == AtMostOnce && e.promised > 0 && !e.released)
}

// startMoveWhenRoom starts the move of e now, or, with MaxMovesInFlight moves
// already in flight, tries again in moveEvery.
func (n *Node) startMoveWhenRoom(e *entry, now time.Time) {
	if n.movesInFlight >= MaxMovesInFlight {
		n.arm(e, timerFire, now.Add(moveEvery))
		return
	}
	n.startMove(e, now)
}

// startMove claims the task for a move.
func (n *Node) startMove(e *entry, now time.Time) {
	e.ext().moving = true
	n.movesInFlight++
	n.startClaim(e, now)
}

// endMove forgets the move of e (done or given up).
func (n *Node) endMove(e *entry) {
	if e.moving {
		e.ext().moving = false
		n.movesInFlight--
	}
	e.ext().move = nil
}

// claimedForMove runs when a claim won a majority and is for a move (ours, or
// one a grant reported pending): it sends the new list to the old list's
// replicas, within the claim's lease.
func (n *Node) claimedForMove(e *entry) {
	if !e.moving {
		e.ext().moving = true
		n.movesInFlight++
	}
	now := n.now()
	leaseEnd := e.claimSent.Add(n.cfg.Lease - n.cfg.MaxClockDrift)
	next := e.bestPending // as it is: never renumbered (see the package doc above)
	if op := e.move; op != nil && op.attempt == e.claiming {
		// Invariant: one attempt proposes one list. A grant after the quorum runs
		// this again; neither a pending list it reports nor a roster learnt since
		// may change the list (two lists under one ballot: a later claimant could
		// finish the one that is not in force; seed 354 of remove-replace-swarm).
		next = op.next
	} else if next == nil {
		if next = n.nextList(e.task); next != nil {
			next.ListVersion = e.claiming
		}
	}
	if next == nil || !now.Before(leaseEnd) {
		n.abandonClaim(e, now.Add(n.claimBackoff(e)))
		return
	}
	op := &moveOp{seq: n.nextOpSeq(), next: next, old: e.task, attempt: e.claiming}
	e.ext().move = op
	// The claim timer now bounds the whole move by the lease.
	n.arm(e, timerClaim, leaseEnd)
	if n.cfg.Unsafe.MoveSkipOldMajority {
		op.inForce = true // negative controls only (M2)
	}
	n.sendMove(e, op)
}

// sendMove sends the step of op that is due, to those that have not answered,
// and again every OutcomeRetry while op runs.
func (n *Node) sendMove(e *entry, op *moveOp) {
	if e.move != op {
		return
	}
	if !op.inForce {
		for i, r := range op.old.Replicas {
			if op.oldAcks&(1<<i) == 0 {
				n.send(Message{Type: MsgMove, To: r, TaskID: e.task.ID, Task: op.next, Attempt: op.attempt, Promised: e.round})
			}
		}
	} else {
		for i, r := range op.next.Replicas {
			if op.newAcks&(1<<i) == 0 {
				n.send(Message{Type: MsgStore, To: r, TaskID: e.task.ID, Task: op.next, Attempt: op.attempt, Status: e.lastStatus, NextETA: e.notBefore}.withFailures(e.failures()))
			}
		}
	}
	n.after(n.cfg.OutcomeRetry, alarm{kind: alarmMoveResend, id: op.seq, key: e.task.ID})
}

// nextList is t's list with every member the roster no longer lists replaced by
// members that follow on the ring from where t's ID hashes (nil: none to take).
func (n *Node) nextList(t *Task) *Task {
	var ids []NodeID
	for _, r := range t.Replicas {
		if n.roster.Has(r) {
			ids = append(ids, r)
		}
	}
	want := min(n.wantReplicas, len(n.members))
	ring := n.ringFrom(t.ID)
	for _, m := range ring {
		if len(ids) >= want {
			break
		}
		if !slices.Contains(ids, m) {
			ids = append(ids, m)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	c := *t
	c.Replicas = ids
	return &c
}

// ringFrom is every member, in ring order from where id hashes (Placement's
// order).
func (n *Node) ringFrom(id string) []NodeID {
	saved := n.cfg.Replicas
	n.cfg.Replicas = len(n.members)
	out := n.Placement(id)
	n.cfg.Replicas = saved
	return out
}

// handleMove is a replica of the old list storing the new one, as pending.
func (n *Node) handleMove(m Message) {
	e := n.entryOf(m.TaskID)
	if e == nil || e.task.Rank(m.From) < 0 || m.Task.Nonce != e.task.Nonce {
		return
	}
	resp := Message{Type: MsgMoveResp, To: m.From, TaskID: m.TaskID, Attempt: m.Attempt}
	switch {
	case e.state.Final():
		resp.Reject, resp.State = RejectFinal, e.state
	case e.task.ListVersion >= m.Task.ListVersion:
		// In force already (granted: a version names one list), or a later list
		// is: answer once it is durable.
		resp.Granted = e.task.ListVersion == m.Task.ListVersion
		n.afterSync(sendThen(resp))
		return
	case e.pending != nil && e.pending.ListVersion == m.Task.ListVersion && e.pendingBallot == m.Attempt:
		// Stored already under this attempt (a repeated Move): answer once it is
		// durable. Stored under another attempt only, it counts for this mover
		// only if stored again under its grant, below: an acceptor that took the
		// list again under a later ballot must not count for an earlier one.
		resp.Granted = true
		n.afterSync(sendThen(resp))
		return
	case m.Attempt != e.promised || m.From != e.holder || m.Promised != e.holderRound || e.released:
		// Invariant: a new list is stored only under the grant standing here, so
		// that of two movers only the one a majority still grants can win. (So
		// pendingBallot never exceeds promised.)
	default:
		x := e.ext()
		x.pending, x.pendingBallot = m.Task, m.Attempt
		if e.pending.Rank(n.cfg.ID) < 0 && e.claiming == 0 {
			n.disarm(e) // the new list does not name us: nothing left to fire here
		}
		resp.Granted = true
		n.persist(sendThen(resp), Record{Kind: RecMove, TaskID: e.task.ID, Task: m.Task, Attempt: m.Attempt})
		return
	}
	n.send(resp)
}

// handleMoveResp counts a replica of the old list that stored the new one; a
// majority puts the new list in force.
func (n *Node) handleMoveResp(m Message) {
	e := n.entryOf(m.TaskID)
	if e == nil || e.move == nil || e.move.attempt != m.Attempt || e.move.inForce {
		return
	}
	op := e.move
	if m.Reject == RejectFinal {
		n.adoptFinal(e, m.State, nil)
		n.endMove(e)
		return
	}
	rank := op.old.Rank(m.From)
	if !m.Granted || rank < 0 {
		return
	}
	op.oldAcks |= 1 << rank
	if bits.OnesCount64(op.oldAcks) >= majority(op.old) {
		op.inForce = true
		n.sendMove(e, op)
	}
}

// handleMoveStoreResp counts a replica of the new list that stored the task; a
// majority ends the move.
func (n *Node) handleMoveStoreResp(m Message) {
	e := n.entryOf(m.TaskID)
	if e == nil || e.move == nil || !e.move.inForce || m.Reject != RejectNone || m.Round != e.task.Nonce {
		return
	}
	op := e.move
	rank := op.next.Rank(m.From)
	if rank < 0 {
		return
	}
	op.newAcks |= 1 << rank
	if bits.OnesCount64(op.newAcks) < majority(op.next) {
		return
	}
	n.endMove(e)
	n.movesDone++
	e.floor = max(e.floor, op.attempt)
	n.adoptList(e, op.next)
	// Release the attempt the move was claimed under, on the old list and the new.
	a := e.claiming
	x := e.ext()
	x.claiming, x.grants, x.rejects = 0, 0, 0
	if e.promised == a && e.holder == n.cfg.ID && e.holderRound == e.round {
		e.ext().released = true
	}
	rel := Message{Type: MsgRelease, TaskID: e.task.ID, Attempt: a, Promised: e.round, NextETA: e.nextETA, Status: e.lastStatus}.withFailures(e.failures())
	for _, r := range unionNodes(op.old.Replicas, op.next.Replicas) {
		rel.To = r
		n.send(rel)
	}
	if e.rank >= 0 && !e.state.Final() {
		n.armFire(e)
	}
}

// unionNodes is a's members then b's not in a.
func unionNodes(a, b []NodeID) []NodeID {
	out := slices.Clone(a)
	for _, id := range b {
		if !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

// adoptList makes t (a list in force, newer than e's) e's list: its rank, its
// counters' key and its record follow. A pending list it supersedes is dropped.
func (n *Node) adoptList(e *entry, t *Task) {
	if t.ListVersion <= e.task.ListVersion || t.Nonce != e.task.Nonce {
		return
	}
	held := n.tasks[e.task.ID] == e
	if held {
		n.count(e, e.state, -1)
	}
	e.task = t
	e.rank = t.Rank(n.cfg.ID)
	if held {
		n.count(e, e.state, +1)
	}
	if e.pending != nil && e.pending.ListVersion <= t.ListVersion {
		x := e.ext()
		x.pending, x.pendingBallot = nil, 0
	}
	if e.rank < 0 && e.claiming == 0 {
		n.disarm(e)
	}
	n.persist(nil, Record{Kind: RecTask, Task: t, TaskID: t.ID, Attempt: e.floor, Status: e.lastStatus, NextETA: e.notBefore}.withFailures(e.failures()))
}

// replayMove applies a RecMove, or a RecTask of a newer list, at start.
func (n *Node) replayMove(e *entry, r Record) {
	t := r.Task
	if r.Kind == RecMove {
		// Each RecMove was stored under a grant at least as high as the one before.
		if t.ListVersion > e.task.ListVersion && (e.pending == nil || r.Attempt >= e.pendingBallot) {
			x := e.ext()
			x.pending, x.pendingBallot = t, r.Attempt
		}
		return
	}
	if t.ListVersion > e.task.ListVersion && t.Nonce == e.task.Nonce {
		e.task, e.rank = t, t.Rank(n.cfg.ID)
		e.floor = max(e.floor, r.Attempt)
		e.mergeFailures(recordedFailures(&r))
		if e.pending != nil && e.pending.ListVersion <= t.ListVersion {
			x := e.ext()
			x.pending, x.pendingBallot = nil, 0
		}
	}
}
