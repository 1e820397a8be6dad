package node

import (
	"slices"
	"time"
)

// The token lease: what lets a limited queue's token node (queues.go) hand over
// safely when the roster changes.
//
// The roster decides each limited queue's token node, and members learn a new
// roster at different times: without more, a claimant still on the old roster asks
// the old token node while one on the new roster asks the new one, and both grant,
// so that the cluster runs up to twice max_concurrent and twice the rate. So a
// token node grants a permit only while it holds the token lease of its roster's
// epoch: a majority of that roster's members answered, to a round it sent less
// than a term (tokenLeaseTerm) minus MaxClockDrift ago, that they were at exactly that
// epoch. A member answers yes only while its roster is of that epoch, it is not
// recovering (it may have forgotten a later roster it held) and not joining, and it
// stored (accepted) no roster of a later epoch (a guard for a change of several
// members at once, which no leader proposes). It promises nothing and logs nothing.
//
// And a token node that takes the lease up, at start, at a new epoch, or after it
// lapsed, grants nothing for a while: rates for a term plus twice the drift
// allowance, concurrency caps for that plus a lease, the drift allowance and
// PermitValidity more; its buckets start empty.
//
// Why that is enough (Q1, Q2 across a hand-over): say the token node T of epoch E
// grants at time g and T' takes up the lease of a later epoch at A. A roster change
// is committed only once a majority of the old roster stored it, and adds or
// removes one member, so every majority of E meets every majority of E+1 (and a
// later epoch is proposed only once the one before was committed). So some member m
// answered T's round (sent after g minus the term) while at E and storing nothing
// later, and answered T' while at a later epoch: m's roster only grows, so m
// answered T first, and g is before A plus the term. A member that forgot (a
// restart without storage) and came back at an older epoch breaks that order, but
// it answers no one for its recovery wait; whoever held a lease through it lapsed
// (its answers are older than a term by then) and waits again when it takes the
// lease up. T' grants from A plus its wait on, when T has stopped and every permit
// T gave (a lease plus the drift allowance at most, started within PermitValidity)
// has lapsed. A restarted token node forgot its own permits: it waits the same.
//
// A static cluster of one node (alone) needs no lease: it is every queue's token
// node, now and at every earlier instant of its epoch.

// tokenLeaseTerm is how long a member's answer to a token lease round counts, from
// the round's sending: a quarter of a lease plus the drift allowance, which the
// holder takes off again, so that an answer counts for a quarter of a lease on its
// clock. Shorter would cost more rounds; longer, a longer wait at every hand-over.
func (n *Node) tokenLeaseTerm() time.Duration { return n.cfg.Lease/4 + n.cfg.MaxClockDrift }

// tokenLease is this node's token lease.
type tokenLease struct {
	epoch uint64 // the epoch its rounds are made under; a new one starts over
	round uint64
	sent  map[uint64]time.Time // recent rounds: local time each was sent
	// answered: per member, the send time of the latest round it said yes to.
	answered map[NodeID]time.Time
	// held: the lease was held at the last look, until `until`, since `since`
	// (local times). A look finds it lapsed when the until it saw has passed.
	held         bool
	until, since time.Time
	// taken: when the lease of this epoch was first taken up here (schedule.go's
	// ticks wait from it); zero until then.
	taken time.Time
	timer alarmID
}

// tokenReady reports whether this node may grant a permit of queue q now as its
// token node; when not, retry is how long the asker should wait.
func (n *Node) tokenReady(q QueueConfig, now time.Time) (ok bool, retry time.Duration) {
	if n.cfg.Unsafe.TokenWithoutLease {
		return true, 0 // negative controls only (Q2)
	}
	if n.alone() {
		return true, 0
	}
	if !n.lookAtTokenLease(now) {
		n.kickTokenLease()
		return false, pausePoll
	}
	wait := n.tokenLeaseTerm() + 2*n.cfg.MaxClockDrift
	if q.MaxConcurrent > 0 {
		wait += n.cfg.Lease + n.cfg.MaxClockDrift + n.cfg.PermitValidity
	}
	if ready := n.tok.since.Add(wait); now.Before(ready) {
		return false, ready.Sub(now)
	}
	return true, 0
}

// lookAtTokenLease brings the lease's state up to now and reports whether it is
// held. Taking it up empties the buckets: the permits and starts counted in them
// are the ones the wait outlasts.
func (n *Node) lookAtTokenLease(now time.Time) bool {
	t := &n.tok
	if t.epoch != n.roster.Epoch {
		*t = tokenLease{epoch: n.roster.Epoch, round: t.round, timer: t.timer}
	}
	if t.held && !now.Before(t.until) {
		t.held = false // lapsed since the last look
	}
	t.until = n.tokenLeaseUntil()
	if !t.held && now.Before(t.until) {
		t.held, t.since = true, now
		if t.taken.IsZero() {
			t.taken = now
		}
		clear(n.buckets)
	}
	return t.held
}

// tokenLeaseUntil is the local time the answers held now stop making a majority of
// the roster.
func (n *Node) tokenLeaseUntil() time.Time {
	times := make([]time.Time, 0, len(n.members))
	for _, id := range n.members {
		if at, ok := n.tok.answered[id]; ok {
			times = append(times, at)
		}
	}
	need := len(n.members)/2 + 1
	if len(times) < need {
		return time.Time{}
	}
	slices.SortFunc(times, func(a, b time.Time) int { return b.Compare(a) })
	return times[need-1].Add(n.tokenLeaseTerm() - n.cfg.MaxClockDrift)
}

// needsTokenLease reports whether this node is, or may be asked as, the token node
// of a limited queue: then it keeps the lease renewed.
func (n *Node) needsTokenLease() bool {
	if n.alone() || n.joining || n.removed || n.stopping || !n.roster.Has(n.cfg.ID) {
		return false
	}
	if n.cfg.DefaultQueue.Limited() || len(n.runs) > 0 {
		return true // every queue is limited: any may be ours; or ticks need it (schedule.go)
	}
	for name, s := range n.settings { // a yes/no: the order never reaches an output
		if !s.Deleted && s.Config.Limited() && n.tokenNode(name) == n.cfg.ID {
			return true
		}
	}
	return false
}

// kickTokenLease starts renewing the lease when this node needs it and is not
// renewing it yet.
func (n *Node) kickTokenLease() {
	if n.tok.timer == 0 && n.started && n.needsTokenLease() {
		n.armTokenLease(0)
	}
}

func (n *Node) armTokenLease(d time.Duration) {
	n.tok.timer = n.after(d, alarm{kind: alarmTokenLease})
}

// renewTokenLease sends a round to every member (this node too), and again a
// third of the term later, for as long as the node needs the lease.
func (n *Node) renewTokenLease() {
	n.tok.timer = 0
	if !n.needsTokenLease() {
		return
	}
	now := n.now()
	t := &n.tok
	n.lookAtTokenLease(now)
	if t.sent == nil {
		t.sent, t.answered = map[uint64]time.Time{}, map[NodeID]time.Time{}
	}
	for r, at := range t.sent { // deletion only: the order never reaches an output
		if now.Sub(at) > n.tokenLeaseTerm() {
			delete(t.sent, r) // an answer to it would count for nothing
		}
	}
	if t.round == 0 {
		// A random first round, so that an answer to a round of this node's
		// previous process, still on its way, is not taken for one to a round of
		// this process with the same number and a later sending (the roster
		// lease's rounds, leader.go, are random for the same reason). 2^61 leaves
		// the door's bound on attempt numbers far away.
		t.round = n.env.Rand.Uint64() >> 3
	}
	t.round++
	t.sent[t.round] = now
	for _, id := range n.members {
		n.send(Message{Type: MsgTokenLease, To: id, Attempt: t.round, Epoch: t.epoch})
	}
	n.armTokenLease(max((n.tokenLeaseTerm()-n.cfg.MaxClockDrift)/3, 10*time.Millisecond))
}

// handleTokenLease answers a token node's round: yes while this node's roster is
// of the round's epoch and it may not have stored a later one.
func (n *Node) handleTokenLease(m Message) {
	n.maybePushRoster(m.From, m.Epoch)
	yes := m.Epoch == n.roster.Epoch && !n.joining && !(n.recovering() && !n.alone()) &&
		(n.accepted == nil || n.accepted.Epoch <= m.Epoch)
	n.send(Message{Type: MsgTokenLeaseResp, To: m.From, Attempt: m.Attempt, Epoch: m.Epoch, Granted: yes})
}

// handleTokenLeaseResp counts a member's yes.
func (n *Node) handleTokenLeaseResp(m Message) {
	t := &n.tok
	sent, ok := t.sent[m.Attempt]
	if !m.Granted || !ok || m.Epoch != t.epoch || t.epoch != n.roster.Epoch {
		return
	}
	now := n.now()
	n.lookAtTokenLease(now) // a lapse before this answer must be seen as one
	if sent.After(t.answered[m.From]) {
		t.answered[m.From] = sent
	}
	n.lookAtTokenLease(now)
}
