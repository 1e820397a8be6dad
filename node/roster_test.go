package node

import (
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
