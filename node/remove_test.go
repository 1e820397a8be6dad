package node

import (
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// remove asks via, again every second, to remove id, until via's roster no
// longer lists it or limit passes; it returns how long it took.
func (h *harness) remove(via, id NodeID, limit time.Duration) time.Duration {
	start := h.elapsed()
	for h.elapsed()-start < limit {
		var got *Roster
		var err error
		h.node(via).Remove(id, func(r *Roster, e error) { got, err = r, e })
		if got != nil {
			return h.elapsed() - start
		}
		require.ErrorIs(h.t, err, ErrRemovePending)
		h.run(h.elapsed() + time.Second)
	}
	h.t.Fatalf("%s was not removed through %s within %v", id, via, limit)
	return 0
}

// grownToFour is n1..n3 with n4 joined, so that a leader keeps the roster.
func grownToFour(t *testing.T, seed uint64, mut func(*Config)) *harness {
	h := joinHarness(t, 3, seed, mut)
	h.join("n1", "n4", time.Minute)
	h.run(h.elapsed() + 5*time.Second)
	require.Len(t, h.leaders(), 1)
	return h
}

// A member removed through a member that does not lead leaves every roster; it
// learns it, takes no task and says why; new tasks are placed without it, and a
// task stored before on it is moved off it and still succeeds.
func TestRemoveThroughAnyMember(t *testing.T) {
	h := grownToFour(t, 21, nil)
	leader := h.leaders()[0]
	before := h.enqueue(leader, req(20*time.Second))
	h.run(h.elapsed() + time.Second)
	oldID := acked(t, before)
	// gone: a replica of the task that does not lead; via: a member that does not
	// lead either.
	var via, gone NodeID
	for _, r := range h.replicas(oldID) {
		if r != leader && gone == "" {
			gone = r
		}
	}
	for _, id := range h.order {
		if id != leader && id != gone && via == "" {
			via = id
		}
	}
	require.Zero(t, h.node(via).TasksOnRemoved())
	oldReplicas := h.replicas(oldID)
	took := h.remove(via, gone, time.Minute)
	t.Logf("%s removed in %v", gone, took)
	h.run(h.elapsed() + 10*time.Second)
	want := h.node(leader).Roster()
	require.False(t, want.Has(gone))
	require.Len(t, want.Members, 3)
	for _, id := range h.order {
		require.True(t, want.Equal(h.node(id).Roster()), "%s holds %+v, leader %+v", id, h.node(id).Roster(), want)
	}
	for _, r := range oldReplicas {
		if r != gone {
			st, _ := h.node(r).Task(oldID)
			require.NotContains(t, st.Task.Replicas, gone, "%s: the pending task was moved off the removed node", r)
			require.Zero(t, h.node(r).TasksOnRemoved(), "%s: no task left naming %s", r, gone)
		}
	}
	require.True(t, h.node(gone).Removed())
	require.Contains(t, h.node(gone).NotReady(), "removed")
	require.ErrorIs(t, enqueueErr(h, gone), ErrRemoved)
	require.Equal(t, []NodeID{leader}, h.leaders())

	for range 10 {
		r := h.enqueue(via, req(time.Second))
		h.run(h.elapsed() + time.Second)
		require.NotContains(t, h.replicas(acked(t, r)), gone, "a new task is placed without the removed member")
	}
	h.run(h.elapsed() + 30*time.Second)
	for _, r := range h.replicas(oldID) {
		t.Logf("%s: %v", r, h.stateOn(r, oldID))
	}
	require.Equal(t, StateSucceeded, h.stateOn(h.replicas(oldID)[0], oldID), "a task stored before the removal still fires")
	require.Zero(t, h.node(via).TasksOnRemoved(), "a final task is not counted")

	var again *Roster
	h.node(via).Remove(gone, func(r *Roster, err error) { again = r })
	require.NotNil(t, again, "removing a member that is gone answers at once")
}

// The leader may be removed: it commits the roster without itself, stops
// leading, and another member takes the lease.
func TestRemoveTheLeader(t *testing.T) {
	h := grownToFour(t, 22, nil)
	old := h.leaders()[0]
	h.remove(old, old, time.Minute)
	lease := h.node("n1").Config().Lease
	h.run(h.elapsed() + 3*lease)
	leaders := h.leaders()
	require.Len(t, leaders, 1)
	require.NotEqual(t, old, leaders[0])
	require.False(t, h.node(leaders[0]).Roster().Has(old))
	require.True(t, h.node(old).Removed())
}

// The only member cannot be removed; a bad ID is named.
func TestRemoveRefusesTheLastMemberAndBadIDs(t *testing.T) {
	h := newHarness(t, 1, 23, nil)
	var err error
	h.node("n1").Remove("n1", func(_ *Roster, e error) { err = e })
	require.ErrorIs(t, err, ErrLastMember)
	h.node("n1").Remove("", func(_ *Roster, e error) { err = e })
	var fe *FieldError
	require.ErrorAs(t, err, &fe)
	require.Equal(t, "id", fe.Field)
}

// With RemoveAfter, the leader removes a member it has not heard from for that
// long, and only then.
func TestRemoveAfterUnreachable(t *testing.T) {
	h := grownToFour(t, 24, func(c *Config) { c.RemoveAfter = time.Minute })
	leader := h.leaders()[0]
	dead := NodeID("n4")
	if leader == dead {
		dead = "n3"
	}
	h.crash(dead)
	start := h.elapsed()
	h.run(start + 50*time.Second)
	require.True(t, h.node(leader).Roster().Has(dead), "removed before RemoveAfter")
	h.run(start + 2*time.Minute)
	require.False(t, h.node(leader).Roster().Has(dead), "not removed after RemoveAfter")
	require.Len(t, h.node(leader).Roster().Members, 3, "only the dead member is removed")
}

// Re-replication: after a replica of a pending task is removed, its mover claims
// it, stores the new list on a majority of the old list and the task on a
// majority of the new one; every member then holds a list of members (a version
// above 0), nothing names the removed node, and the task fires once.
func TestRemovedReplicaIsReplaced(t *testing.T) {
	h := grownToFour(t, 26, nil)
	leader := h.leaders()[0]
	r := h.enqueue(leader, req(time.Minute))
	h.run(h.elapsed() + time.Second)
	id := acked(t, r)
	var gone NodeID
	for _, rep := range h.replicas(id) {
		if rep != leader && gone == "" {
			gone = rep
		}
	}
	h.remove(leader, gone, time.Minute)
	h.run(h.elapsed() + 20*time.Second)
	for _, n := range h.order {
		if n == gone {
			continue
		}
		st, ok := h.node(n).Task(id)
		if !ok || st.Task.ListVersion == 0 {
			continue
		}
		require.NotContains(t, st.Task.Replicas, gone, "%s holds a list naming the removed node", n)
		require.Len(t, st.Task.Replicas, 3)
		require.Zero(t, h.node(n).TasksOnRemoved(), "%s still counts the task", n)
	}
	moved := 0
	for _, n := range h.order {
		if st, ok := h.node(n).Task(id); ok && n != gone && st.Task.ListVersion > 0 && st.Task.Rank(n) >= 0 {
			moved++
		}
	}
	require.GreaterOrEqual(t, moved, 2, "a majority of the new list holds the moved task")

	// The removed node claims under the old list (forgetting the move it stored):
	// no member that holds the new list grants it.
	g := h.node(gone)
	before := len(h.sentOf(MsgClaimResp, id))
	g.input(func() {
		e := g.tasks[id]
		e.ext().pending = nil
		g.startClaim(e, g.now())
	})
	h.run(h.elapsed() + time.Second)
	for _, s := range h.sentOf(MsgClaimResp, id)[before:] {
		require.False(t, s.Msg.To == gone && s.Msg.Granted && s.Msg.From != gone, "%s granted a claim under the old list", s.Msg.From)
	}
	h.run(h.elapsed() + time.Minute)
	require.Len(t, h.deliveriesOf(id), 1)
}

// A node that learns a roster after skipping epochs (a joiner whose first roster
// came by gossip after a removal, a member away during the changes) knows the
// members removed before it from the roster itself (Roster.Removed): it admits the
// claims of a task whose list names one, and what that member sends about the
// tasks it still holds. Here n3 goes from the static roster to epoch 4, never
// having seen n9 added (epoch 2) nor removed (epoch 3). Before the roster carried
// them, it refused both at the door for good, and a task whose copies were on
// removed members could never be moved (M2, L1 on seed 109 of replace-by-stop).
func TestSkippedEpochsStillKnowRemovedMembers(t *testing.T) {
	env := &acceptorEnv{now: epoch.Add(time.Minute)}
	n := bootAcceptor(t, env, 1)
	r := NewRoster(4, []NodeID{"n1", "n2", "n3"}, nil, "n1")
	r.Removed = []NodeID{"n9"}
	n.Step(Message{Type: MsgRoster, From: "n1", To: "n3", Roster: r})
	env.flush()
	require.Equal(t, uint64(4), n.Roster().Epoch)
	env.take()

	tk := acceptorTask(env.now)
	tk.ETA = env.now.Add(time.Hour)
	tk.Replicas = []NodeID{"n3", "n9", "n1"}
	n.Step(Message{Type: MsgClaim, From: "n1", To: "n3", TaskID: tk.ID, Task: tk, Attempt: 2, Lease: 10 * time.Second, Promised: 1})
	env.flush()
	require.Empty(t, env.refusals, "a list naming a member removed before this node knew it")
	sent := env.take()
	require.Len(t, sent, 1)
	require.Equal(t, MsgClaimResp, sent[0].Type)
	require.Equal(t, RejectUnknown, sent[0].Reject, "answered, so that the claimant gives the task back")

	moved := *tk
	moved.Replicas, moved.ListVersion = []NodeID{"n3", "n1", "n2"}, 5
	n.Step(Message{Type: MsgStore, From: "n9", To: "n3", TaskID: tk.ID, Task: &moved, Attempt: 5})
	env.flush()
	require.Empty(t, env.refusals, "a removed member moving a task it held")
	sent = env.take()
	require.Len(t, sent, 1)
	require.Equal(t, MsgStoreResp, sent[0].Type)
	require.Equal(t, "n9", string(sent[0].To))
	require.Zero(t, sent[0].Reject)
	st, ok := n.Task(tk.ID)
	require.True(t, ok)
	require.Equal(t, moved.Replicas, st.Task.Replicas)
}

// The roster names the members removed (Roster.Removed): a node that joins after a
// removal knows the removed member as departed, as those that saw it leave do.
func TestJoinerAfterARemovalKnowsTheRemovedMember(t *testing.T) {
	static := []NodeID{"n1", "n2", "n3"}
	h := newHarness(t, 5, 31, func(c *Config) {
		if slices.Contains(static, c.ID) {
			c.Members = static
		} else {
			c.Members, c.Join = []NodeID{c.ID}, true
		}
	})
	h.join("n1", "n4", time.Minute)
	h.run(h.elapsed() + 5*time.Second)
	gone := NodeID("n2")
	if h.leaders()[0] == gone {
		gone = "n3"
	}
	h.remove("n1", gone, time.Minute)
	h.join("n1", "n5", time.Minute)
	h.run(h.elapsed() + 10*time.Second)
	for _, id := range []NodeID{"n1", "n4", "n5"} {
		if id == gone {
			continue
		}
		require.Equal(t, []NodeID{gone}, h.node(id).Roster().Removed, "%s", id)
		require.True(t, h.node(id).isMember(gone), "%s admits what %s says", id, gone)
	}
}
