package node

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// Move rules (move.go), one node at a time, as in acceptor_test.go: the test plays
// the other members by hand.

// movedTo is task moved to the list rs, first proposed under attempt v.
func movedTo(task *Task, v uint64, rs ...NodeID) *Task {
	c := *task
	c.Replicas, c.ListVersion = rs, v
	return &c
}

// stepMove steps from's Move of next under the grant of attempt a (round r) into n
// and returns n's answer.
func stepMove(t *testing.T, env *acceptorEnv, n *Node, next *Task, from NodeID, a, r uint64) Message {
	t.Helper()
	return answer(t, env, n, Message{Type: MsgMove, From: from, To: "n3", TaskID: next.ID, Task: next, Attempt: a, Promised: r}, MsgMoveResp)
}

// An old list's replica holds a pending list with the attempt it last stored it
// under (its Paxos ballot), durably, and its grants report both: a list stored
// again under a later grant counts no more for the earlier mover, and a claimant
// can tell which pending list a majority may have put in force.
func TestPendingListKeepsTheAttemptItWasStoredUnder(t *testing.T) {
	t0 := epoch
	task := acceptorTask(t0)
	env := &acceptorEnv{now: t0}
	n := bootAcceptor(t, env, 1)
	step(env, n, Message{Type: MsgStore, From: "n1", To: "n3", TaskID: task.ID, Task: task})

	// n1 moves the task off n3 under attempt 1, then releases it.
	next := movedTo(task, 1, "n1", "n2", "n4")
	require.True(t, claim(t, env, n, task, "n1", 1, 11).Granted)
	require.True(t, stepMove(t, env, n, next, "n1", 1, 11).Granted)
	release(env, n, task, "n1", 1, 11, t0, 0)

	// n2, which never heard that the move is done, claims under the old list.
	resp := claim(t, env, n, task, "n2", 3, 23)
	require.True(t, resp.Granted)
	require.Same(t, next, resp.Task, "the grant reports the pending list")
	require.Equal(t, uint64(1), resp.Promised, "and the attempt it was stored under")
	require.True(t, stepMove(t, env, n, next, "n2", 3, 23).Granted, "n2 finishes the same list, its version kept")

	require.False(t, stepMove(t, env, n, next, "n1", 1, 11).Granted,
		"stored again under attempt 3, it no longer counts for attempt 1")

	// After a restart, a grant reports the attempt it was stored under last.
	release(env, n, task, "n2", 3, 23, t0, 0)
	env.recs = env.recs[:env.synced]
	n = bootAcceptor(t, env, 2)
	resp = claim(t, env, n, task, "n1", 5, 15)
	require.True(t, resp.Granted)
	require.Equal(t, next.Replicas, resp.Task.Replicas)
	require.Equal(t, uint64(1), resp.Task.ListVersion)
	require.Equal(t, uint64(3), resp.Promised)
}

// A claimant whose grants report pending lists finishes the one stored under the
// highest attempt, under the version it was first proposed with: renumbered to
// its own attempt, a list that later moves replaced could outrank them and come
// back in force (S3, seed 541 of remove-replace-swarm).
func TestClaimantFinishesTheLatestPendingListUnrenumbered(t *testing.T) {
	t0 := epoch
	task := acceptorTask(t0)
	env := &acceptorEnv{now: t0}
	n := bootAcceptor(t, env, 1)
	step(env, n, Message{Type: MsgStore, From: "n1", To: "n3", TaskID: task.ID, Task: task})
	release(env, n, task, "n2", 4, 24, t0, 0) // an attempt n3 never granted: our claim outbids it

	e := n.tasks[task.ID]
	n.input(func() { n.startClaim(e, env.now) }) // its Claim to itself waits for a sync
	require.Equal(t, uint64(5), e.claiming)
	env.take()

	// n2 stored a list first proposed under attempt 2; n1 a list first proposed
	// under attempt 1 and stored again under attempt 4 (a mover finished it).
	older := movedTo(task, 1, "n1", "n2", "n4")
	rival := movedTo(task, 2, "n2", "n1", "n5")
	n.Step(Message{Type: MsgClaimResp, From: "n2", To: "n3", TaskID: task.ID, Attempt: 5, Granted: true, Round: e.round, Task: rival, Promised: 2})
	n.Step(Message{Type: MsgClaimResp, From: "n1", To: "n3", TaskID: task.ID, Attempt: 5, Granted: true, Round: e.round, Task: older, Promised: 4})
	env.flush()

	requireMoves(t, env, older, 5)
}

// One attempt proposes one list: a grant that comes after the quorum, reporting
// a list stored under a higher attempt than those the quorum reported, does not
// change the list the move under way sends.
func TestLateGrantDoesNotChangeTheMovedList(t *testing.T) {
	t0 := epoch
	task := acceptorTask(t0)
	env := &acceptorEnv{now: t0}
	n := bootAcceptor(t, env, 1)
	step(env, n, Message{Type: MsgStore, From: "n1", To: "n3", TaskID: task.ID, Task: task})
	release(env, n, task, "n2", 4, 24, t0, 0)

	e := n.tasks[task.ID]
	n.input(func() { n.startClaim(e, env.now) })
	env.flush() // n3's own grant, once its Claim to itself is synced
	env.take()
	older := movedTo(task, 1, "n1", "n2", "n4")
	rival := movedTo(task, 2, "n2", "n1", "n5")
	n.Step(Message{Type: MsgClaimResp, From: "n2", To: "n3", TaskID: task.ID, Attempt: 5, Granted: true, Round: e.round, Task: rival, Promised: 2})
	requireMoves(t, env, rival, 5)
	n.Step(Message{Type: MsgClaimResp, From: "n1", To: "n3", TaskID: task.ID, Attempt: 5, Granted: true, Round: e.round, Task: older, Promised: 4})
	for _, m := range env.take() {
		require.False(t, m.Type == MsgMove && m.Task.ListVersion != rival.ListVersion, "a second list under attempt 5: %v", m)
	}
}

// The same for a move of this node's own: the list it computed when the quorum
// came stays the list of that attempt, whatever a later grant reports (or the
// roster says by then).
func TestLateGrantDoesNotChangeOwnMove(t *testing.T) {
	t0 := epoch
	task := acceptorTask(t0)
	env := &acceptorEnv{now: t0}
	n := bootAcceptor(t, env, 1)
	step(env, n, Message{Type: MsgStore, From: "n1", To: "n3", TaskID: task.ID, Task: task})

	e := n.tasks[task.ID]
	n.input(func() { n.startMove(e, env.now) })
	env.flush()
	env.take()
	n.Step(Message{Type: MsgClaimResp, From: "n2", To: "n3", TaskID: task.ID, Attempt: 1, Granted: true, Round: e.round})
	env.flush()
	own := e.move.next
	require.Equal(t, uint64(1), own.ListVersion)
	env.take()
	late := movedTo(task, 1, "n2", "n1", "n5")
	n.Step(Message{Type: MsgClaimResp, From: "n1", To: "n3", TaskID: task.ID, Attempt: 1, Granted: true, Round: e.round, Task: late, Promised: 1})
	requireMoves(t, env, own, 1)
}

// requireMoves checks that n sent Moves of want under attempt a to the other
// replicas of the old list (its own goes straight to itself), and nothing else.
func requireMoves(t *testing.T, env *acceptorEnv, want *Task, a uint64) {
	t.Helper()
	to := map[NodeID]bool{}
	for _, m := range env.take() {
		if m.Type != MsgMove {
			continue
		}
		to[m.To] = true
		require.Equal(t, a, m.Attempt, "under the claimant's own attempt")
		require.Equal(t, want.Replicas, m.Task.Replicas, "the list stored under the highest attempt")
		require.Equal(t, want.ListVersion, m.Task.ListVersion, "not renumbered")
	}
	require.Equal(t, map[NodeID]bool{"n1": true, "n2": true}, to, "a Move to each other replica of the old list")
}

// An Outcome sent under a list a move replaced is answered with what the task is
// here, not taken: its sender decided under a list that no longer decides the
// task, and its unknown would spread to the list in force, which may deliver it
// (L3 on seeds 39 and 53 of settings-flip-replacements without the rule).
func TestOutcomeUnderReplacedListIsAnsweredNotTaken(t *testing.T) {
	t0 := epoch
	task := acceptorTask(t0)
	env := &acceptorEnv{now: t0}
	n := bootAcceptor(t, env, 1)
	step(env, n, Message{Type: MsgStore, From: "n1", To: "n3", TaskID: task.ID, Task: task})

	// n2 claims under the list a move put in force, which leaves n1 out: n3 takes it.
	next := movedTo(task, 1, "n2", "n3", "n4")
	require.True(t, claim(t, env, n, next, "n2", 2, 22).Granted)
	release(env, n, next, "n2", 2, 22, t0, 0)

	// n1 ended it unknown under the old list.
	outcome := func(from NodeID, under *Task, s TaskState) Message {
		return answer(t, env, n, Message{Type: MsgOutcome, From: from, To: "n3", TaskID: task.ID, Task: under, Attempt: 1, State: s}, MsgOutcomeResp)
	}
	require.Equal(t, StateScheduled, outcome("n1", task, StateUnknown).State, "answered with what the task is here")
	st, _ := n.Task(task.ID)
	require.Equal(t, StateScheduled, st.State, "not taken")
	require.Equal(t, uint64(1), st.Task.ListVersion)

	// Under the list in force an Outcome is taken, and n1, asking again, learns it.
	require.Equal(t, StateSucceeded, outcome("n2", next, StateSucceeded).State)
	require.Equal(t, StateSucceeded, outcome("n1", task, StateUnknown).State)
}

// A copy that the list in force leaves out takes no unknown from a claim's answer:
// unknown gives way to what the delivery did, which such a copy would never hear
// of (its Outcomes, under a list that does not name it, are refused as forged):
// L3 on seeds 1 and 53 of settings-flip-replacements without the rule. What is
// settled for good, it takes.
func TestLeftOutCopyTakesNoUnknown(t *testing.T) {
	t0 := epoch
	task := acceptorTask(t0)
	env := &acceptorEnv{now: t0}
	n := bootAcceptor(t, env, 1)
	step(env, n, Message{Type: MsgStore, From: "n1", To: "n3", TaskID: task.ID, Task: task})

	// n1 claims under the list a move put in force, which leaves n3 out: n3 takes it.
	next := movedTo(task, 1, "n1", "n2", "n4")
	claim(t, env, n, next, "n1", 2, 12)
	st, _ := n.Task(task.ID)
	require.Equal(t, uint64(1), st.Task.ListVersion)

	final := func(s TaskState) TaskState {
		step(env, n, Message{Type: MsgClaimResp, From: "n2", To: "n3", TaskID: task.ID, Attempt: 1, Reject: RejectFinal, State: s})
		st, _ := n.Task(task.ID)
		return st.State
	}
	require.Equal(t, StateScheduled, final(StateUnknown), "unknown is not taken")
	require.Equal(t, StateSucceeded, final(StateSucceeded), "succeeded is")
}
