package node

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// rosterHarness is a cluster of n1..n3 (their static roster, epoch 1) and n4, which
// starts knowing all four (as a node told where to join would), for a roster of
// epoch 2 that adds n4 to spread to.
func rosterHarness(t *testing.T, seed uint64) *harness {
	three := []NodeID{"n1", "n2", "n3"}
	return newHarness(t, 4, seed, func(c *Config) {
		if c.ID != "n4" {
			c.Members = three
		}
	})
}

var fourMembers = NewRoster(2, []NodeID{"n4", "n2", "n1", "n3"}, map[NodeID]string{"n4": "10.0.0.4:7001"}, "n1")

// A static member list is the roster of epoch 1: one node leads its cluster of
// one, several have no leader until one is elected.
func TestStaticMembersAreEpochOne(t *testing.T) {
	h := newHarness(t, 3, 1, func(c *Config) { c.PeerAddrs = map[NodeID]string{"n2": "h2:7001"} })
	r := h.node("n1").Roster()
	require.Equal(t, uint64(1), r.Epoch)
	require.Equal(t, []NodeID{"n1", "n2", "n3"}, r.IDs())
	require.Equal(t, NodeID(""), r.Leader)
	addr, ok := r.Addr("n2")
	require.True(t, ok)
	require.Equal(t, "h2:7001", addr)

	alone := newHarness(t, 1, 1, nil)
	require.Equal(t, NodeID("n1"), alone.node("n1").Roster().Leader)
}

// A roster adopted by one member reaches every member by gossip, and new tasks are
// placed on its ring (the new member among them) while a task stored before keeps
// its replica list.
func TestRosterSpreadsByGossipAndPlacesNewTasks(t *testing.T) {
	h := rosterHarness(t, 3)
	before := h.enqueue("n1", reqQ("default", time.Hour))
	h.run(time.Second)
	oldID := acked(t, before)
	oldReplicas := h.replicas(oldID)

	n1 := h.node("n1")
	n1.input(func() { require.True(t, n1.maybeAdoptRoster(fourMembers)) })
	h.run(h.elapsed() + 30*time.Second)
	for _, id := range h.order {
		require.True(t, fourMembers.Equal(h.node(id).Roster()), "%s holds %+v", id, h.node(id).Roster())
	}
	require.Equal(t, oldReplicas, h.replicas(oldID), "a stored task keeps its replicas")

	onN4 := 0
	for range 20 {
		r := h.enqueue("n2", reqQ("default", time.Hour))
		h.run(h.elapsed() + time.Second)
		if slices.Contains(h.replicas(acked(t, r)), "n4") {
			onN4++
		}
	}
	require.Positive(t, onN4, "new tasks are placed over the four members")
}

// An older roster is never adopted over a newer one, nor the same epoch twice.
func TestRosterOnlyMovesForward(t *testing.T) {
	h := rosterHarness(t, 4)
	n1 := h.node("n1")
	n1.input(func() {
		require.True(t, n1.maybeAdoptRoster(fourMembers))
		require.False(t, n1.maybeAdoptRoster(NewRoster(2, []NodeID{"n1"}, nil, "n1")), "same epoch")
		require.False(t, n1.maybeAdoptRoster(NewRoster(1, []NodeID{"n1"}, nil, "n1")), "older epoch")
	})
	require.Same(t, fourMembers, n1.Roster())
}

// The roster is durable: a restarted member starts from the highest roster it
// logged, not from its static list.
func TestRosterSurvivesARestart(t *testing.T) {
	h := rosterHarness(t, 5)
	var recs []Record
	h.nodes["n2"].storage = func() Storage { return keptStorage{h: h, recs: &recs} }
	h.crash("n2")
	h.restart("n2")
	h.run(h.elapsed() + time.Second)
	n2 := h.node("n2")
	n2.input(func() { require.True(t, n2.maybeAdoptRoster(fourMembers)) })
	h.run(h.elapsed() + time.Second)
	h.crash("n2")
	h.restart("n2")
	require.True(t, fourMembers.Equal(h.node("n2").Roster()), "restarted with %+v", h.node("n2").Roster())
	require.Equal(t, 3, h.node("n2").Config().Replicas)
}

// The door refuses a roster no member could send.
func TestDoorRefusesBadRosters(t *testing.T) {
	bad := map[string]*Roster{
		"roster.epoch":         {Epoch: 1, Members: []Member{{ID: "n1"}}},
		"roster.members":       {Epoch: 2},
		"roster.members.order": {Epoch: 2, Members: []Member{{ID: "n2"}, {ID: "n1"}}},
		"roster.members.id":    {Epoch: 2, Members: []Member{{ID: ""}}},
		"roster.leader":        {Epoch: 2, Members: []Member{{ID: "n1"}}, Leader: "n9"},
	}
	for i, removed := range [][]NodeID{{"n1"}, {"n9", "n9"}, {""}, make([]NodeID, MaxMembers+1)} {
		r := &Roster{Epoch: 2, Members: []Member{{ID: "n1"}}, Removed: removed}
		reason, detail := checkRoster(r)
		require.Equal(t, RefusedRange, reason, "case %d", i)
		require.Equal(t, "roster.removed", detail, "case %d", i)
	}
	ok := &Roster{Epoch: 2, Members: []Member{{ID: "n1"}}, Removed: []NodeID{"n9", "n2"}}
	reason, _ := checkRoster(ok)
	require.Equal(t, RefusedNone, reason)
	for want, r := range bad {
		reason, detail := checkRoster(r)
		require.Equal(t, RefusedRange, reason, want)
		require.Equal(t, want, detail)
	}
	h := newHarness(t, 2, 6, nil)
	n1 := h.node("n1")
	n1.Step(Message{Type: MsgRoster, From: "n2", To: "n1"})
	require.Equal(t, uint64(1), n1.Refused()[RefusedRange], "a roster message without a roster")
	require.Equal(t, uint64(1), n1.Roster().Epoch)
}

// joinHarness is n1..n(members) with their static roster and one more node, the
// last, started with Config.Join.
func joinHarness(t *testing.T, members int, seed uint64, mut func(*Config)) *harness {
	var static []NodeID
	for i := 1; i <= members; i++ {
		static = append(static, NodeID("n"+string(rune('0'+i))))
	}
	return newHarness(t, members+1, seed, func(c *Config) {
		if slices.Contains(static, c.ID) {
			c.Members = static
		} else {
			c.Members, c.Join = []NodeID{c.ID}, true
		}
		if mut != nil {
			mut(c)
		}
	})
}

// join asks via, again every second (as the daemon's --join does), to add id,
// until via's roster lists it or limit passes; it returns how long it took.
func (h *harness) join(via, id NodeID, limit time.Duration) time.Duration {
	start := h.elapsed()
	for h.elapsed()-start < limit {
		var got *Roster
		h.node(via).Join(Member{ID: id, Addr: string(id) + ":7001"}, func(r *Roster, err error) { got = r })
		if got != nil {
			return h.elapsed() - start
		}
		h.run(h.elapsed() + time.Second)
	}
	h.t.Fatalf("%s did not join through %s within %v", id, via, limit)
	return 0
}

// leaders lists the live nodes that hold the roster lease now.
func (h *harness) leaders() []NodeID {
	var out []NodeID
	for _, id := range h.order {
		if sn := h.nodes[id]; !sn.down {
			if ok, _ := sn.n.Leading(); ok {
				out = append(out, id)
			}
		}
	}
	return out
}

// A cluster whose roster never changed elects no leader: no lease message at all.
func TestStaticClusterSendsNoLeaseMessages(t *testing.T) {
	h := newHarness(t, 3, 7, nil)
	h.enqueue("n1", req(time.Second))
	h.run(time.Minute)
	for _, s := range h.sent {
		require.NotContains(t, []MsgType{MsgLeaderClaim, MsgRosterPropose, MsgRoster}, s.Msg.Type)
	}
	require.Empty(t, h.leaders())
}

// A node started with Join, asking through a member that is not the leader, is
// added: a leader is elected, commits a roster naming itself, then one adding the
// new node; every member ends with the same roster, one leader holds the lease,
// and the new node takes tasks.
func TestJoinThroughAnyMember(t *testing.T) {
	h := joinHarness(t, 3, 8, nil)
	require.ErrorIs(t, enqueueErr(h, "n4"), ErrJoining)
	took := h.join("n3", "n4", time.Minute)
	t.Logf("joined in %v", took)
	h.run(h.elapsed() + 10*time.Second)
	want := h.node("n1").Roster()
	require.Equal(t, []NodeID{"n1", "n2", "n3", "n4"}, want.IDs())
	for _, id := range h.order {
		require.True(t, want.Equal(h.node(id).Roster()), "%s holds %+v, n1 %+v", id, h.node(id).Roster(), want)
	}
	require.Len(t, h.leaders(), 1)
	require.Equal(t, h.leaders()[0], want.Leader)
	addr, _ := want.Addr("n4")
	require.Equal(t, "n4:7001", addr)
	require.Empty(t, h.node("n4").NotReady())
	r := h.enqueue("n4", req(time.Second))
	h.run(h.elapsed() + 10*time.Second)
	require.Equal(t, StateSucceeded, h.stateOn(h.replicas(acked(t, r))[0], acked(t, r)))
}

// A cluster of one grows to two: the new roster's majority is both nodes, so the
// joiner stores it too.
func TestSingleNodeGrowsToTwo(t *testing.T) {
	h := joinHarness(t, 1, 9, nil)
	require.Equal(t, NodeID("n1"), h.node("n1").Roster().Leader)
	h.join("n1", "n2", time.Minute)
	h.run(h.elapsed() + 5*time.Second)
	require.Equal(t, []NodeID{"n1", "n2"}, h.node("n2").Roster().IDs())
	require.Equal(t, []NodeID{"n1"}, h.leaders())
}

// When the leader crashes another member wins the lease once the grants ran out,
// and commits a roster naming itself; the lease is never held twice.
func TestLeaderCrashElectsAnother(t *testing.T) {
	h := joinHarness(t, 3, 10, nil)
	h.join("n2", "n4", time.Minute)
	h.run(h.elapsed() + 5*time.Second)
	old := h.leaders()
	require.Len(t, old, 1)
	epoch := h.node("n1").Roster().Epoch
	h.crash(old[0])
	lease := h.node("n1").Config().Lease
	start := h.elapsed()
	for h.elapsed()-start < 3*lease {
		h.run(h.elapsed() + 100*time.Millisecond)
		require.LessOrEqual(t, len(h.leaders()), 1)
		if len(h.leaders()) == 1 {
			break
		}
	}
	require.Len(t, h.leaders(), 1, "no new leader within three leases")
	t.Logf("new leader %s after %v (lease %v)", h.leaders()[0], h.elapsed()-start, lease)
	h.run(h.elapsed() + 5*time.Second)
	next := h.leaders()[0]
	require.NotEqual(t, old[0], next)
	require.Equal(t, next, h.node(next).Roster().Leader)
	require.Greater(t, h.node(next).Roster().Epoch, epoch)
}

func enqueueErr(h *harness, via NodeID) error {
	var err error
	h.node(via).Enqueue(req(time.Second), func(r EnqueueResult) { err = r.Err })
	return err
}

// A compaction keeps the newest roster, lease grant and stored roster only.
func TestCompactionKeepsTheNewestRosterRecords(t *testing.T) {
	h := joinHarness(t, 3, 11, nil)
	var recs []Record
	h.nodes["n1"].storage = func() Storage { return keptStorage{h: h, recs: &recs} }
	h.crash("n1")
	h.restart("n1")
	h.join("n2", "n4", 2*time.Minute)
	h.run(h.elapsed() + 40*time.Second) // renewals: several grants logged
	kinds := func(rs []Record) map[RecordKind]int {
		c := map[RecordKind]int{}
		for _, r := range rs {
			c[r.Kind]++
		}
		return c
	}
	before := kinds(recs)
	require.Greater(t, before[RecLeaseGrant], 1)
	require.Greater(t, before[RecRoster], 1)
	n1 := h.node("n1")
	var kept []Record
	n1.input(func() {
		p := n1.CompactionPolicy()
		for i := range recs {
			if p.Keep(&recs[i]) {
				kept = append(kept, recs[i])
			}
		}
	})
	after := kinds(kept)
	require.Equal(t, 1, after[RecLeaseGrant])
	require.Equal(t, 1, after[RecRoster])
	require.LessOrEqual(t, after[RecRosterAccept], 1)
	h.nodes["n1"].storage = func() Storage { return keptStorage{h: h, recs: &kept} }
	h.crash("n1")
	h.restart("n1")
	require.True(t, h.node("n2").Roster().Equal(h.node("n1").Roster()), "the compacted log gives back the roster")
}

// Two nodes joining at once are added one epoch at a time, and the leader renews
// its lease under each new roster before the next change of members (M1: two
// changes under one lease could let a majority of the newest roster, which
// granted nothing, elect a rival).
func TestMembersChangeOncePerLease(t *testing.T) {
	static := []NodeID{"n1", "n2", "n3"}
	h := newHarness(t, 5, 12, func(c *Config) {
		if slices.Contains(static, c.ID) {
			c.Members = static
		} else {
			c.Members, c.Join = []NodeID{c.ID}, true
		}
	})
	h.run(40 * time.Second) // past the recovery wait of memory storage
	for range 30 {
		h.node("n1").Join(Member{ID: "n4", Addr: "n4:1"}, func(*Roster, error) {})
		h.node("n1").Join(Member{ID: "n5", Addr: "n5:1"}, func(*Roster, error) {})
		h.run(h.elapsed() + time.Second)
	}
	r := h.node("n1").Roster()
	require.Equal(t, []NodeID{"n1", "n2", "n3", "n4", "n5"}, r.IDs())
	// For every proposal that changes the members, the leader's claim just before
	// it was made under the roster it changes.
	members := map[uint64]int{1: 3}
	lastClaim := map[NodeID]uint64{}
	changes := 0
	for _, s := range h.sent {
		switch m := s.Msg; m.Type {
		case MsgLeaderClaim:
			lastClaim[m.From] = m.Epoch
		case MsgRosterPropose:
			if _, seen := members[m.Roster.Epoch]; seen {
				continue
			}
			members[m.Roster.Epoch] = len(m.Roster.Members)
			if prev, ok := members[m.Roster.Epoch-1]; ok && prev != len(m.Roster.Members) {
				changes++
				require.Equal(t, m.Roster.Epoch-1, lastClaim[m.From], "epoch %d changes the members under a lease of epoch %d", m.Roster.Epoch, lastClaim[m.From])
			}
		}
	}
	require.Equal(t, 2, changes)
}

// A joiner that missed the roster listing it (every message to it lost while the
// change committed without it) learns it when it asks to join again: the member it
// asks sends it the roster, in any cluster, with or without an earlier removal.
func TestJoinerThatMissedItsRosterLearnsItByAskingAgain(t *testing.T) {
	h := joinHarness(t, 3, 11, nil)
	for _, id := range []NodeID{"n1", "n2", "n3"} {
		h.block(id, "n4")
	}
	h.join("n3", "n4", time.Minute)
	h.heal()
	h.run(h.elapsed() + 5*time.Second)
	require.Zero(t, h.node("n4").Roster().Epoch, "nothing else tells the joiner it was listed")

	h.join("n2", "n4", time.Minute) // what the daemon's --join does, every second
	h.run(h.elapsed() + time.Second)
	require.Equal(t, h.node("n1").Roster().Epoch, h.node("n4").Roster().Epoch, "asking again brings the roster")
	require.True(t, h.node("n4").Roster().Has("n4"))
}

// A grant counts only for the lease claim round that asked for it: a renewal
// repeats its ballot, and a grant of an earlier round, held up in the network, was
// given before this round was sent, so its lease ends before the one this round
// counts (seed 14 of held-messages-membership: M1).
func TestLeaseGrantOfAnotherRoundDoesNotCount(t *testing.T) {
	h := newHarness(t, 3, 11, nil)
	n := h.node("n1")
	op := &leaderClaim{ballot: 5, round: 7, renewal: true, members: []NodeID{"n1", "n2", "n3"}, grants: map[NodeID]bool{}}
	n.leaderOp = op
	grant := func(from NodeID, round uint64) {
		n.handleLeaderClaimResp(Message{Type: MsgLeaderClaimResp, From: from, To: "n1", Attempt: 5, Granted: true, Round: round})
	}
	grant("n2", 3) // an earlier renewal's grant, late
	grant("n3", 3)
	require.Empty(t, op.grants, "grants of another round counted")
	require.Same(t, op, n.leaderOp)
	grant("n2", 7)
	require.Equal(t, map[NodeID]bool{"n2": true}, op.grants)
}

// A queue change, a schedule change or a count counts the answers of the members
// of the roster it ends under, not how many answered: an acknowledgement of a
// member removed meanwhile does not stand in for a member that never got the
// change (Q6 on seed 24 of settings-flip-replacements: answered 200 as known to
// every member while one stored tasks under the old delivery mode).
func TestAcknowledgementsOfRemovedMembersDoNotCount(t *testing.T) {
	h := newHarness(t, 3, 12, nil)
	n := h.node("n1")
	n.members = []NodeID{"n1", "n3", "n4"} // n2 was removed, n4 added
	s := &QueueSetting{Queue: "q", Version: 3, Origin: "n1"}
	op := &setOp{setting: s, acks: map[NodeID]bool{"n1": true, "n2": true}}
	n.setOps = append(n.setOps, op)
	n.handleQueueSetResp(Message{Type: MsgQueueSetResp, From: "n3", To: "n1", Setting: s})
	require.Len(t, n.setOps, 1, "finished without n4's acknowledgement")
	n.handleQueueSetResp(Message{Type: MsgQueueSetResp, From: "n4", To: "n1", Setting: s})
	require.Empty(t, n.setOps, "every member acknowledged")
	require.Equal(t, 2, membersIn([]NodeID{"a", "b", "c"}, map[NodeID]int{"a": 1, "c": 2, "d": 3}))
}

// A roster's Removed gains the member removed, loses a member added again, and
// keeps the last MaxMembers, oldest dropped first.
func TestRemovedAfter(t *testing.T) {
	r := &Roster{Epoch: 5, Removed: []NodeID{"n1", "n2"}}
	require.Equal(t, []NodeID{"n1", "n2", "n3"}, r.removedAfter("n3", []NodeID{"n4"}))
	require.Equal(t, []NodeID{"n2"}, r.removedAfter("", []NodeID{"n1", "n4"}), "n1 added again")
	require.Equal(t, []NodeID{"n1", "n2"}, r.removedAfter("", []NodeID{"n4"}))
	full := &Roster{Epoch: 5}
	for i := range MaxMembers {
		full.Removed = append(full.Removed, NodeID(fmt.Sprintf("m%d", i)))
	}
	got := full.removedAfter("last", nil)
	require.Len(t, got, MaxMembers)
	require.Equal(t, NodeID("m1"), got[0])
	require.Equal(t, NodeID("last"), got[MaxMembers-1])
}
