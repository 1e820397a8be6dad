package node

import (
	"errors"
	"slices"
	"time"
)

// The roster's leader and its changes (roster.go holds the roster itself).
//
// Leader lease. The leader holds a lease on the roster granted by a majority of
// the current roster's members, by the claim rule of tasks: a member claims with a
// ballot above every ballot it has seen (MsgLeaderClaim); an acceptor grants a
// ballot to the first claimant only, a higher ballot to another claimant only once
// the lease it granted ran out on its own clock, and the same ballot again to its
// holder (a renewal, which extends the lease). A claimant that holds a majority of
// grants leads until its claim was sent plus Lease minus MaxClockDrift on its own
// clock, and renews when half the lease is left. Grants are logged before they are
// answered, and a node that forgot (without durable storage) grants nothing during
// its recovery wait, which outlasts every lease it could have granted.
//
// Invariant (M1): at most one member holds the lease at any instant. Two leases
// overlap only if a majority granted each, so some acceptor granted both; it
// granted the second only after the first ran out on its clock, which the holder
// of the first reaches MaxClockDrift later at most.
//
// Roster changes. Only the leader changes the roster, one epoch at a time, and it
// is the Paxos rule with the lease's ballot: it sends the roster of the next epoch
// (MsgRosterPropose) to the members of the current roster and of the new one; a
// member stores it (RecRosterAccept) when the ballot is not below any it granted
// or accepted under; the roster is committed once a majority of the old roster
// and a majority of the new one stored it. The leader then adopts it and sends it
// (MsgRoster) to every member, and gossip carries it to those who missed it.
// A new leader first learns the highest roster a majority stored: every grant of
// its claim carries the roster the acceptor stored last; the highest above the
// committed one is proposed again, unchanged, before anything else, so a roster
// that may have been committed is never replaced by another of the same epoch.
// Then, if the roster does not name it leader, the new leader commits the next
// epoch with itself as leader, and then the joins waiting.
//
// Invariant (M1): no two different rosters are committed under one epoch.
//
// Election is lazy: a cluster whose roster never changed (epoch 1, a static
// member list) elects no leader and sends no lease message until a join asks for
// one. From then on (roster epoch above 1, or a lease seen) every member keeps a
// leader: it claims the lease when the one it granted ran out, its rank in the
// roster times ClaimTimeout later (the lowest ID first, so that members seldom
// duel).

// ErrJoinPending: the join was handed to the leader (or a leader is being
// elected); ask again until the roster lists the new member.
var ErrJoinPending = errors.New("the join is in progress: ask again until the roster lists the new member")

// LeaderObserver is an optional ability of an Observer: LeaseWon is told when
// this node wins or renews the roster lease (it leads until the local time
// until), RosterCommitted when, as leader, it commits a roster. The simulator's
// checker (M1) uses them. They must not call back into the node.
type LeaderObserver interface {
	LeaseWon(self NodeID, ballot uint64, until time.Time)
	RosterCommitted(self NodeID, r *Roster)
}

// leaseAcceptor is what this node granted of the roster lease. Invariant: promised
// only grows.
type leaseAcceptor struct {
	promised uint64    // highest ballot granted
	holder   NodeID    // to whom
	leaseEnd time.Time // local time the lease granted ends
}

// leaderClaim is a claim round of the roster lease this node is making.
type leaderClaim struct {
	seq    uint64 // what alarms name it by (alarms.go)
	ballot uint64
	// round is this claim round's random number, echoed by its answers: a renewal
	// repeats its ballot, so the ballot alone does not tell a grant of this round
	// from a late grant of an earlier one, which the acceptor gave before sent and
	// whose lease ends before the one this round counts from sent.
	round   uint64
	sent    time.Time
	renewal bool
	// whileLeading: a claim of a higher ballot by the leader itself (a member
	// refused its change for a higher promise). Its grants stand for the lease it
	// holds too, so a failed one is not released: releasing would end that lease
	// at the acceptors while this node still leads on it (M1 on seeds 19, 98 and
	// 143 of limits-across-roster-changes, when it was).
	whileLeading bool
	// The roster the claim was made under: grants count among its members.
	epoch   uint64
	members []NodeID
	grants  map[NodeID]bool
	// best is the highest roster the granting acceptors stored (accepted), with the
	// ballot it was stored under.
	best       *Roster
	bestBallot uint64
	stop       alarmID
}

// rosterChange is the roster of the next epoch the leader is committing.
type rosterChange struct {
	seq    uint64 // what alarms name it by (alarms.go)
	roster *Roster
	old    *Roster
	ballot uint64
	acks   map[NodeID]bool
}

// leaderTick is how often a member looks at the lease: renews it, or claims it
// (often enough for the rank stagger, ClaimTimeout apart, to order claimants).
func (n *Node) leaderTick() time.Duration {
	return max(min(n.cfg.Lease/8, n.cfg.ClaimTimeout/2), 10*time.Millisecond)
}

// Leader returns the member this node knows as leader: itself while it holds the
// lease, else the holder of the lease it granted while that runs, else the leader
// the roster names ("" when none is known).
func (n *Node) Leader() NodeID {
	switch {
	case n.leading():
		return n.cfg.ID
	case n.leaseAcc.holder != "" && n.now().Before(n.leaseAcc.leaseEnd):
		return n.leaseAcc.holder
	}
	return n.roster.Leader
}

// Leading reports whether this node holds the roster lease now, and until when
// (local time).
func (n *Node) Leading() (bool, time.Time) { return n.leading(), n.leaseUntil }

func (n *Node) leading() bool {
	return n.ballot != 0 && n.now().Before(n.leaseUntil)
}

// activateLeader starts keeping a leader (see the lazy election above).
func (n *Node) activateLeader() {
	if n.leaderActive || n.joining {
		return
	}
	n.leaderActive = true
	n.armLeaderTick(0)
}

func (n *Node) armLeaderTick(d time.Duration) {
	if n.leaderTimer != 0 {
		n.stopAlarm(n.leaderTimer)
	}
	n.leaderTimer = n.after(d, alarm{kind: alarmLeaderTick})
}

// onLeaderTick renews the lease this node holds when half of it is left, or
// claims it when the lease it granted ran out and its turn came.
func (n *Node) onLeaderTick() {
	n.leaderTimer = 0
	if n.stopping || !n.roster.Has(n.cfg.ID) {
		return
	}
	now := n.now()
	switch {
	case n.leaderOp != nil:
	case n.leading():
		if n.leaseUntil.Sub(now) < n.cfg.Lease/2 {
			n.claimLeader(true)
		}
	case n.mayClaimLeader(now):
		n.claimLeader(false)
	}
	n.maybeRemoveUnreachable(now)
	n.armLeaderTick(n.leaderTick())
}

// mayClaimLeader: the lease this node granted ran out (or it granted none), a
// lease has passed since it adopted a roster another leader committed, the random
// backoff after a failed round of its own is over, its turn
// came (rank × ClaimTimeout after that), and it is not recovering.
func (n *Node) mayClaimLeader(now time.Time) bool {
	if n.recovering() && !n.alone() {
		return false
	}
	rank := slices.Index(n.members, n.cfg.ID)
	free := n.leaseAcc.leaseEnd
	if seen := n.leaderSeen.Add(n.cfg.Lease); seen.After(free) {
		free = seen
	}
	if n.leaderBackoff.After(free) {
		free = n.leaderBackoff
	}
	return !now.Before(free.Add(time.Duration(rank) * n.cfg.ClaimTimeout))
}

// alone reports whether this node is the whole of a static roster of one: it
// leads its cluster whatever it forgot (no other member can have held a lease it
// granted), so its recovery wait does not hold back the first join.
func (n *Node) alone() bool { return n.roster.Epoch == 1 && len(n.members) == 1 }

// claimLeader sends a claim of the roster lease to every member of the roster: a
// renewal under the ballot held, or a new ballot above every one seen.
func (n *Node) claimLeader(renewal bool) {
	ballot := n.ballot
	if !renewal {
		n.maxBallot++
		ballot = n.maxBallot
	}
	op := &leaderClaim{seq: n.nextOpSeq(), ballot: ballot, round: n.env.Rand.Uint64() | 1, sent: n.now(), renewal: renewal, whileLeading: !renewal && n.leading(), epoch: n.roster.Epoch, members: n.members, grants: map[NodeID]bool{}}
	n.leaderOp = op
	for _, m := range n.members {
		n.send(Message{Type: MsgLeaderClaim, To: m, Attempt: ballot, Lease: n.cfg.Lease, Epoch: n.roster.Epoch, Round: op.round})
	}
	op.stop = n.after(n.cfg.ClaimTimeout, alarm{kind: alarmLeaderClaim, id: op.seq})
}

// leaderClaimTimedOut gives up op, this node's claim of the lease, which a
// majority did not grant in time.
func (n *Node) leaderClaimTimedOut(op *leaderClaim) {
	n.leaderOp = nil
	n.releaseLeaderClaim(op)
	// Claimants that collided try again at random times apart.
	span := int64(n.cfg.ClaimTimeout) * int64(len(n.members))
	n.leaderBackoff = n.now().Add(time.Duration(n.env.Rand.Int64N(span)))
}

// releaseLeaderClaim frees the grants of a claim round that won no majority, so
// that the members that gave them may grant another claimant at once: two
// claimants that each hold some grants would otherwise block each other for a
// whole lease. A renewal's grants are kept: the lease is still ours.
func (n *Node) releaseLeaderClaim(op *leaderClaim) {
	if op.renewal || op.whileLeading {
		return
	}
	for _, id := range n.members { // in order: not the map's
		if op.grants[id] {
			n.send(Message{Type: MsgLeaderRelease, To: id, Attempt: op.ballot})
		}
	}
}

// handleLeaderRelease ends the lease granted to the sender under that ballot. The
// release is not logged: forgetting it only keeps the lease longer, which is safe.
func (n *Node) handleLeaderRelease(m Message) {
	if acc := &n.leaseAcc; acc.holder == m.From && acc.promised == m.Attempt && n.now().Before(acc.leaseEnd) {
		acc.leaseEnd = n.now()
	}
}

// handleLeaderClaim is the acceptor of the roster lease.
func (n *Node) handleLeaderClaim(m Message) {
	resp := Message{Type: MsgLeaderClaimResp, To: m.From, Attempt: m.Attempt, Epoch: n.roster.Epoch, Round: m.Round}
	if n.recovering() && !n.alone() || n.joining {
		resp.Reject = RejectRecovering
		n.send(resp)
		return
	}
	if m.Epoch < n.roster.Epoch {
		// The claimant works with an old roster: it must learn this one first.
		n.send(Message{Type: MsgRoster, To: m.From, Roster: n.roster})
		resp.Reject = RejectPromised
		n.send(resp)
		return
	}
	n.maxBallot = max(n.maxBallot, m.Attempt)
	acc := &n.leaseAcc
	now := n.now()
	refuse := m.Attempt < acc.promised ||
		m.Attempt == acc.promised && acc.holder != m.From ||
		m.Attempt > acc.promised && acc.holder != "" && acc.holder != m.From && now.Before(acc.leaseEnd)
	if refuse {
		resp.Reject, resp.Promised, resp.Holder = RejectPromised, acc.promised, acc.holder
		resp.Lease = max(acc.leaseEnd.Sub(now), 0)
		n.send(resp)
		return
	}
	// Invariant: a lease is granted to another holder only once the one granted
	// before ran out on this clock; the grant is logged before it is answered.
	if acc.promised != 0 {
		n.superseded++ // the grant before is compacted away
	}
	*acc = leaseAcceptor{promised: m.Attempt, holder: m.From, leaseEnd: now.Add(m.Lease)}
	resp.Granted = true
	resp.Roster, resp.Promised = n.accepted, n.acceptedBallot
	n.activateLeader()
	rec := Record{Kind: RecLeaseGrant, Attempt: acc.promised, Holder: acc.holder, LeaseEnd: acc.leaseEnd}
	n.persist(sendThen(resp), rec)
}

// handleLeaderClaimResp counts a grant of this node's claim; a majority of the
// roster makes it the leader.
func (n *Node) handleLeaderClaimResp(m Message) {
	if !m.Granted {
		n.maxBallot = max(n.maxBallot, m.Promised)
		return
	}
	op := n.leaderOp
	// Invariant (M1): a grant counts only for the round that asked for it. The
	// lease is counted from this round's sending, and the acceptor's from its
	// grant: a grant of an earlier round with the same ballot (a renewal's), held
	// up in the network, was given before this round was sent and runs out before
	// the lease this round would count (seed 14 of an adversary's swarm with
	// messages held up to 12 s: a grant 3 s late, counted by the next renewal, and
	// another member leading on that acceptor's grant before that lease ended).
	if op == nil || m.Attempt != op.ballot || m.Round != op.round || !slices.Contains(op.members, m.From) {
		return
	}
	op.grants[m.From] = true
	if m.Roster != nil && (op.best == nil || rosterAfter(m.Roster, m.Promised, op.best, op.bestBallot)) {
		op.best, op.bestBallot = m.Roster, m.Promised
	}
	if len(op.grants) < len(op.members)/2+1 {
		return
	}
	n.stopAlarm(op.stop)
	n.leaderOp = nil
	n.winLease(op)
}

// winLease makes this node the leader until the lease's end less the drift
// allowance, measured from when the claim was sent.
func (n *Node) winLease(op *leaderClaim) {
	if n.removed {
		return // a removed member leads nothing (remove.go)
	}
	if !op.renewal && op.best != nil && op.best.Epoch > n.roster.Epoch+1 {
		// A majority stored a roster two epochs ahead of ours: the one between was
		// committed, and we do not know it. Lead once gossip brought it.
		return
	}
	until := op.sent.Add(n.cfg.Lease - n.cfg.MaxClockDrift)
	if n.cfg.Unsafe.LeaseWithoutDrift {
		until = op.sent.Add(n.cfg.Lease) // negative controls only (M1)
	}
	if !n.now().Before(until) {
		// A pause between the grants and now ate the whole lease: nothing was won
		// (the grants have run out at the acceptors too, and another member may
		// hold the lease by now). The next leader tick claims again in turn. Seed 33
		// of replace-power-loss: a holder paused for 3 s counted grants that had
		// waited for it and reported a lease won, already over, under another's.
		return
	}
	wasLeading := n.leading() && n.ballot == op.ballot
	n.ballot, n.leaseUntil, n.leaseEpoch = op.ballot, until, op.epoch
	if o, ok := n.env.Observer.(LeaderObserver); ok {
		o.LeaseWon(n.cfg.ID, op.ballot, until)
	}
	if op.renewal && wasLeading {
		n.nextChange() // a change may have waited for the lease of the new roster
		return
	}
	n.change = nil
	if op.best != nil && op.best.Epoch > n.roster.Epoch {
		// It may have been committed: finish it, unchanged, before anything else.
		n.propose(op.best)
		return
	}
	n.nextChange()
}

// rosterAfter orders stored rosters: by epoch, then by the ballot they were
// stored under.
func rosterAfter(r *Roster, ballot uint64, o *Roster, oBallot uint64) bool {
	if r.Epoch != o.Epoch {
		return r.Epoch > o.Epoch
	}
	return ballot > oBallot
}

// nextChange starts the next roster change the leader has to make: name itself
// leader, then add the members waiting to join, then remove those waiting to be
// removed (remove.go), one epoch each.
func (n *Node) nextChange() {
	if n.change != nil || !n.leading() {
		return
	}
	if n.roster.Leader != n.cfg.ID {
		n.propose(n.rosterWith(nil))
		return
	}
	if (len(n.joins) > 0 || len(n.removals) > 0) && n.leaseEpoch < n.roster.Epoch {
		// Invariant (M1): the lease is held from a majority of the roster before its
		// members change again. One change keeps every majority of the new roster
		// meeting every majority of the old; a second before the lease is renewed
		// under the first could let a majority of the newest roster, which granted
		// nothing, elect a rival.
		if n.leaderOp == nil {
			n.claimLeader(true)
		}
		return
	}
	for len(n.joins) > 0 {
		j := n.joins[0]
		n.joins = n.joins[1:]
		if addr, ok := n.roster.Addr(j.ID); ok && addr == j.Addr {
			continue // already a member
		}
		n.propose(n.rosterWith(&j))
		return
	}
	n.nextRemoval()
}

// rosterWith is the roster of the next epoch: this node as leader, and j added
// (or its address changed) when not nil.
func (n *Node) rosterWith(j *Member) *Roster {
	ids := slices.Clone(n.members)
	addrs := map[NodeID]string{}
	for _, m := range n.roster.Members {
		addrs[m.ID] = m.Addr
	}
	if j != nil {
		if _, ok := addrs[j.ID]; !ok {
			ids = append(ids, j.ID)
		}
		addrs[j.ID] = j.Addr
	}
	r := NewRoster(n.roster.Epoch+1, ids, addrs, n.cfg.ID)
	r.Removed = n.roster.removedAfter("", ids)
	return r
}

// propose starts committing r (the roster of the next epoch) under the lease's
// ballot.
func (n *Node) propose(r *Roster) {
	n.change = &rosterChange{seq: n.nextOpSeq(), roster: r, old: n.roster, ballot: n.ballot, acks: map[NodeID]bool{}}
	n.sendProposals(n.change)
}

// sendProposals sends the change to every member of the old and new rosters that
// has not stored it, and again every OutcomeRetry while this node leads.
func (n *Node) sendProposals(ch *rosterChange) {
	if n.change != ch || !n.leading() || n.ballot != ch.ballot {
		if n.change == ch {
			n.change = nil
		}
		return
	}
	for _, id := range unionIDs(ch.old, ch.roster) {
		if !ch.acks[id] {
			n.send(Message{Type: MsgRosterPropose, To: id, Attempt: ch.ballot, Roster: ch.roster})
		}
	}
	n.after(n.cfg.OutcomeRetry, alarm{kind: alarmProposals, id: ch.seq})
}

// unionIDs is the members of a and b, sorted, each once.
func unionIDs(a, b *Roster) []NodeID {
	ids := append(a.IDs(), b.IDs()...)
	slices.Sort(ids)
	return slices.Compact(ids)
}

// handleRosterPropose stores a roster the leader proposes, when its ballot is not
// below any this node granted or stored under.
func (n *Node) handleRosterPropose(m Message) {
	r := m.Roster
	resp := Message{Type: MsgRosterProposeResp, To: m.From, Attempt: m.Attempt, Epoch: r.Epoch}
	if n.recovering() && !n.joining {
		// It may have stored a roster before it forgot (a joiner, new or not, has
		// nothing to lose yet that a majority does not hold).
		return
	}
	n.maxBallot = max(n.maxBallot, m.Attempt)
	if r.Epoch <= n.roster.Epoch {
		// Committed already (the one committed under an epoch is the only one): it
		// is stored.
		resp.Granted = true
		n.send(resp)
		return
	}
	if m.Attempt < n.leaseAcc.promised || m.Attempt < n.acceptedBallot {
		resp.Promised = max(n.leaseAcc.promised, n.acceptedBallot)
		n.send(resp)
		return
	}
	resp.Granted = true
	if n.accepted != nil && (n.accepted.Epoch > r.Epoch || n.accepted.Epoch == r.Epoch && n.acceptedBallot == m.Attempt) {
		// A repeated proposal, or one of an epoch the same leader went past (it
		// proposes the next only once this one committed): stored already.
		n.afterSync(sendThen(resp))
		return
	}
	if n.accepted != nil {
		n.superseded++
	}
	n.accepted, n.acceptedBallot = r, m.Attempt
	n.persist(sendThen(resp), Record{Kind: RecRosterAccept, Roster: r, Attempt: m.Attempt})
}

// handleRosterProposeResp counts a member that stored the change; a majority of
// the old roster and of the new one commit it.
func (n *Node) handleRosterProposeResp(m Message) {
	ch := n.change
	if !m.Granted {
		n.maxBallot = max(n.maxBallot, m.Promised)
		if ch != nil && m.Promised > ch.ballot && n.leading() && n.leaderOp == nil {
			// The member promised a higher ballot (another claimed the lease and
			// failed): it refuses this one's proposals for good, and a change whose
			// new roster needs it never commits (the leader re-proposed to it for
			// 100 s, schedules-ship-of-theseus seed 107). Claim the lease again above
			// that ballot; the claim won, the change is proposed again under it
			// (winLease: the highest roster a majority stored).
			n.claimLeader(false)
		}
		return
	}
	if ch == nil || m.Attempt != ch.ballot || m.Epoch != ch.roster.Epoch {
		return
	}
	ch.acks[m.From] = true
	if !majorityStored(ch.old, ch.acks) || !majorityStored(ch.roster, ch.acks) {
		return
	}
	n.change = nil
	n.maybeAdoptRoster(ch.roster)
	if o, ok := n.env.Observer.(LeaderObserver); ok {
		o.RosterCommitted(n.cfg.ID, ch.roster)
	}
	for _, id := range unionIDs(ch.old, ch.roster) {
		if id != n.cfg.ID {
			n.send(Message{Type: MsgRoster, To: id, Roster: ch.roster})
		}
	}
	n.nextChange()
}

// majorityStored reports whether a majority of r's members are in acks.
func majorityStored(r *Roster, acks map[NodeID]bool) bool {
	c := 0
	for _, m := range r.Members {
		if acks[m.ID] {
			c++
		}
	}
	return c >= len(r.Members)/2+1
}

// Join asks the cluster to add m (or to change its peer address). reply is called
// once, during this input: with the roster when it lists m at that address, else
// with ErrJoinPending (the request went to the leader, or a leader is being
// elected); the joiner asks again until it is listed. A FieldError names a bad ID
// or address.
func (n *Node) Join(m Member, reply func(*Roster, error)) {
	n.input(func() { n.join(m, n.await(rosterReply(reply))) })
}

func rosterReply(reply func(*Roster, error)) func(Answer) {
	return func(a Answer) { reply(a.Roster, a.Err) }
}

func (n *Node) join(m Member, client ReplyID) {
	reply := func(r *Roster, err error) { n.answer(client, Answer{Roster: r, Err: err}) }
	if err := checkMember(m); err != nil {
		reply(nil, err)
		return
	}
	if addr, ok := n.roster.Addr(m.ID); ok && addr == m.Addr {
		// A joiner asking again after it was listed missed the roster (lost on
		// the way), and learns it from nobody else: it gossips with no one and
		// refuses members' gossip. Send it.
		n.send(Message{Type: MsgRoster, To: m.ID, Roster: n.roster})
		reply(n.roster, nil)
		return
	}
	n.handleJoinOf(m, true)
	reply(nil, ErrJoinPending)
}

// checkMember checks a joining member's ID and address.
func checkMember(m Member) error {
	switch {
	case m.ID == "" || len(m.ID) > MaxNodeIDLen:
		return fieldErr("id", "must be 1-%d bytes", MaxNodeIDLen)
	case len(m.Addr) > MaxPeerAddrLen:
		return fieldErr("peer_addr", "must be at most %d bytes", MaxPeerAddrLen)
	}
	return nil
}

// handleJoinOf queues m's join when this node leads, or forwards it to the leader
// it knows (once: a forwarded join is not forwarded again).
func (n *Node) handleJoinOf(m Member, forward bool) {
	n.activateLeader()
	if n.leading() {
		if !slices.ContainsFunc(n.joins, func(j Member) bool { return j == m }) && len(n.joins) < MaxMembers {
			n.joins = append(n.joins, m)
		}
		n.nextChange()
		return
	}
	if leader := n.Leader(); forward && leader != "" && leader != n.cfg.ID && n.roster.Has(leader) {
		n.send(Message{Type: MsgJoin, To: leader, Member: &m})
	}
}

func (n *Node) handleJoin(m Message) {
	if m.Member != nil && checkMember(*m.Member) == nil {
		n.handleJoinOf(*m.Member, false)
	}
}

// replayLeader applies a lease grant or a stored roster at start.
func (n *Node) replayLeader(r Record) {
	n.maxBallot = max(n.maxBallot, r.Attempt)
	switch r.Kind {
	case RecLeaseGrant:
		if r.Attempt >= n.leaseAcc.promised {
			n.leaseAcc = leaseAcceptor{promised: r.Attempt, holder: r.Holder, leaseEnd: r.LeaseEnd}
		}
	case RecRosterAccept:
		if r.Roster != nil && (n.accepted == nil || rosterAfter(r.Roster, r.Attempt, n.accepted, n.acceptedBallot)) {
			n.accepted, n.acceptedBallot = r.Roster, r.Attempt
		}
	}
}
