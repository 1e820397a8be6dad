package node

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Acceptor rules, one node at a time: the test plays every other member by hand,
// stepping messages into the node and reading what it sends back. Timers never
// fire unless the test runs them; storage syncs when the test says so.

type acceptorEnv struct {
	now    time.Time
	sent   []Message
	recs   []Record // appended, in order
	synced int      // recs[:synced] survive a crash
	syncs  []func() // done functions of Syncs not yet finished
	loss   time.Time
	lossy  bool
	// refusals: what the door refused (door_test.go).
	refusals []Refusal
}

func (a *acceptorEnv) Now() time.Time { return a.now }
func (a *acceptorEnv) AfterFunc(time.Duration, func()) func() bool {
	return func() bool { return true }
}
func (a *acceptorEnv) Send(m Message)        { a.sent = append(a.sent, m) }
func (a *acceptorEnv) Dispatch(Delivery)     {}
func (a *acceptorEnv) Durable() bool         { return true }
func (a *acceptorEnv) Append(recs ...Record) { a.recs = append(a.recs, recs...) }
func (a *acceptorEnv) Load() ([]Record, error) {
	return append([]Record(nil), a.recs[:a.synced]...), nil
}
func (a *acceptorEnv) LostSince() (since time.Time, lost bool) { return a.loss, a.lossy }
func (a *acceptorEnv) Sync(done func()) {
	n := len(a.recs)
	a.syncs = append(a.syncs, func() { a.synced = max(a.synced, n); done() })
}
func (a *acceptorEnv) TaskStateChanged(*Task, TaskState, TaskState, uint64) {}

// flush finishes every pending Sync (each runs its done, as an input of the node).
func (a *acceptorEnv) flush() {
	for len(a.syncs) > 0 {
		f := a.syncs[0]
		a.syncs = a.syncs[1:]
		f()
	}
}

// take returns and forgets what the node sent.
func (a *acceptorEnv) take() []Message {
	out := a.sent
	a.sent = nil
	return out
}

var acceptorMembers = []NodeID{"n1", "n2", "n3"}

// bootAcceptor starts n3 (a replica of every test task) on env's records.
func bootAcceptor(t testing.TB, env *acceptorEnv, seed uint64) *Node {
	t.Helper()
	q := DefaultQueueConfig()
	q.Retry.MinBackoff = 5 * time.Second // longer than MaxClockDrift, so that a backoff shows
	n, err := New(Config{ID: "n3", Members: acceptorMembers, Lease: 10 * time.Second, DefaultQueue: q},
		Env{Clock: env, Network: env, Dispatcher: env, Storage: env, Rand: rand.New(rand.NewPCG(seed, 0)), Observer: env})
	require.NoError(t, err)
	require.NoError(t, n.Start())
	return n
}

func acceptorTask(created time.Time) *Task {
	return &Task{ID: "task-1", Queue: "default", URL: "http://w/", Method: "POST", ETA: created, Created: created, Nonce: 1, Replicas: acceptorMembers}
}

// claim steps a Claim of attempt a (round r) from `from` and returns the node's answer.
func claim(t *testing.T, env *acceptorEnv, n *Node, task *Task, from NodeID, a, r uint64) Message {
	t.Helper()
	return answer(t, env, n, Message{Type: MsgClaim, From: from, To: "n3", TaskID: task.ID, Task: task, Attempt: a, Lease: 10 * time.Second, Promised: r}, MsgClaimResp)
}

// answer steps m into n and returns n's one answer of type want to m's sender.
func answer(t *testing.T, env *acceptorEnv, n *Node, m Message, want MsgType) Message {
	t.Helper()
	n.Step(m)
	env.flush()
	var resp []Message
	for _, out := range env.take() {
		if out.Type == want && out.To == m.From {
			resp = append(resp, out)
		}
	}
	require.Len(t, resp, 1, "one answer to the %s", m.Type)
	return resp[0]
}

func release(env *acceptorEnv, n *Node, task *Task, from NodeID, a, r uint64, next time.Time, retries int) {
	step(env, n, Message{Type: MsgRelease, From: from, To: "n3", TaskID: task.ID, Attempt: a, Promised: r, NextETA: next, Retries: retries})
}

// step steps m into n, finishes the syncs it asked for and forgets what n sent.
func step(env *acceptorEnv, n *Node, m Message) {
	n.Step(m)
	env.flush()
	env.take()
}

// The log of a bridge node: it granted n1 attempt 1, heard n2 release attempts 3
// and 4 it never granted, and granted n1 attempt 2 in between. After a restart, with
// its clock past the first lease but inside the second, it must still hold n1's
// attempt 2: replaying a record never reads the clock.
func TestReplayKeepsTheGrantWhateverTheClock(t *testing.T) {
	t0 := epoch
	task := acceptorTask(t0)
	env := &acceptorEnv{now: t0}
	n := bootAcceptor(t, env, 1)
	n.Step(Message{Type: MsgStore, From: "n1", To: "n3", TaskID: task.ID, Task: task})
	env.flush()
	env.take()

	env.now = t0.Add(time.Second)
	require.True(t, claim(t, env, n, task, "n1", 1, 11).Granted)
	env.now = t0.Add(3 * time.Second)
	release(env, n, task, "n2", 3, 23, t0, 0) // n2's abandoned claim: a number we never granted
	env.now = t0.Add(9 * time.Second)
	release(env, n, task, "n1", 1, 11, t0.Add(9*time.Second), 1) // n1's attempt 1 failed
	require.True(t, claim(t, env, n, task, "n1", 4, 14).Granted, "above every number released")
	env.now = t0.Add(10 * time.Second)
	release(env, n, task, "n2", 5, 25, t0, 1)

	// Crash and restart 12 s in: attempt 1's lease is over, attempt 4's is not.
	env.now = t0.Add(12 * time.Second)
	env.recs = env.recs[:env.synced]
	n = bootAcceptor(t, env, 2)
	resp := claim(t, env, n, task, "n2", 6, 26)
	require.False(t, resp.Granted, "attempt 4, granted to n1 until 19 s, is still live")
	require.Equal(t, RejectPromised, resp.Reject)
	require.Equal(t, NodeID("n1"), resp.Holder)
	require.Equal(t, uint64(5), resp.Promised, "the highest number it refuses")
}

// A holder that restarted without the record of its attempt claims the same number
// again and releases it when refused. That release is of another round: it must not
// free the grant its earlier incarnation is still delivering under.
func TestReleaseOfAnotherRoundFreesNothing(t *testing.T) {
	t0 := epoch
	task := acceptorTask(t0)
	env := &acceptorEnv{now: t0}
	n := bootAcceptor(t, env, 1)
	n.Step(Message{Type: MsgStore, From: "n1", To: "n3", TaskID: task.ID, Task: task})
	env.flush()

	require.True(t, claim(t, env, n, task, "n1", 1, 101).Granted)
	env.now = t0.Add(2 * time.Second)
	require.False(t, claim(t, env, n, task, "n1", 1, 202).Granted, "the same attempt in another round is refused")
	release(env, n, task, "n1", 1, 202, t0.Add(2*time.Second), 0)
	resp := claim(t, env, n, task, "n2", 2, 302)
	require.False(t, resp.Granted, "round 101's grant is live until 10 s")
	require.Equal(t, NodeID("n1"), resp.Holder)

	// The release of the round that won frees it, after a restart too.
	env.recs = env.recs[:env.synced]
	n = bootAcceptor(t, env, 2)
	release(env, n, task, "n1", 1, 101, t0.Add(2*time.Second), 1)
	require.True(t, claim(t, env, n, task, "n2", 2, 302).Granted)
}

// A replica that lost its memory and is given a task back must not grant an attempt
// number that may have been granted before it forgot: its floor is the milliseconds
// from the task's creation to the end of its recovery wait.
func TestForgottenTaskComesBackWithAFloor(t *testing.T) {
	t0 := epoch
	task := acceptorTask(t0)
	env := &acceptorEnv{now: t0.Add(30 * time.Second), lossy: true} // every record lost, noticed at start
	n := bootAcceptor(t, env, 1)
	wait := n.Config().RecoveryWait
	require.Equal(t, RejectRecovering, claim(t, env, n, task, "n1", 7, 1).Reject)

	env.now = env.now.Add(wait)
	n.Step(Message{Type: MsgStore, From: "n1", To: "n3", TaskID: task.ID, Task: task}) // the claimant gives it back
	env.flush()
	env.take()
	floor := uint64((30*time.Second + wait).Milliseconds())
	resp := claim(t, env, n, task, "n1", 8, 2)
	require.False(t, resp.Granted, "attempt 8 may have been granted before the loss")
	require.Equal(t, floor, resp.Promised)
	require.True(t, claim(t, env, n, task, "n1", floor+1, 3).Granted)
}

// A grant whose lease ran out with no word from its holder counts as a failed
// delivery: the acceptor adds it to the retries and refuses the next attempt until
// the backoff after the lease's end is over (the Release may be lost for good).
func TestExpiredGrantCountsAsAFailure(t *testing.T) {
	t0 := epoch
	task := acceptorTask(t0)
	env := &acceptorEnv{now: t0}
	n := bootAcceptor(t, env, 1)
	n.Step(Message{Type: MsgStore, From: "n1", To: "n3", TaskID: task.ID, Task: task})
	env.flush()
	require.True(t, claim(t, env, n, task, "n1", 1, 1).Granted)
	leaseEnd := t0.Add(10 * time.Second)

	env.now = leaseEnd.Add(time.Millisecond)
	resp := claim(t, env, n, task, "n2", 2, 2)
	require.False(t, resp.Granted, "not before the backoff of one failure after the lease's end")
	require.Equal(t, 1, resp.Retries)
	backoff := 5 * time.Second
	require.Equal(t, leaseEnd.Add(backoff).Sub(env.now), resp.Lease)

	// It is durable: a restart keeps the count and frees the grant.
	env.recs = env.recs[:env.synced]
	n = bootAcceptor(t, env, 2)
	env.now = leaseEnd.Add(backoff + n.Config().MaxClockDrift)
	resp = claim(t, env, n, task, "n2", 2, 3)
	require.True(t, resp.Granted)
	require.Equal(t, 1, resp.Retries, "counted once")
}

// Two failures known apart are both counted: n3 knows attempt 1 failed, n2 (which
// never heard of it) reports that attempt 2 failed, each with a count of one. The
// union is two failures: n3 counts two (a max of the counts would say one, and the
// next holder would wait the backoff of one), waits the backoff of two from n2's
// failure, and rebuilds both from its log. The same failure reported again is not
// counted twice.
func TestFailuresKnownApartAreBothCounted(t *testing.T) {
	t0 := epoch
	task := acceptorTask(t0)
	env := &acceptorEnv{now: t0}
	n := bootAcceptor(t, env, 1)
	n.Step(Message{Type: MsgStore, From: "n1", To: "n3", TaskID: task.ID, Task: task})
	env.flush()
	require.True(t, claim(t, env, n, task, "n1", 1, 1).Granted)
	backoff := func(k int) time.Duration { return n.queue(task.Queue).Retry.Backoff(k) }

	env.now = t0.Add(time.Second)
	step(env, n, Message{Type: MsgRelease, From: "n1", To: "n3", TaskID: task.ID, Attempt: 1, Promised: 1, NextETA: env.now.Add(backoff(1)), Retries: 1, Failed: 1, FailedBits: 1})

	// n2 delivered attempt 2 with grants from n1 and itself, and it failed at t2.
	t2 := env.now.Add(backoff(1) + time.Second)
	env.now = t2.Add(time.Millisecond)
	step(env, n, Message{Type: MsgRelease, From: "n2", To: "n3", TaskID: task.ID, Attempt: 2, Promised: 7, NextETA: t2.Add(backoff(1)), Retries: 1, Failed: 2, FailedBits: 1})
	step(env, n, Message{Type: MsgRelease, From: "n2", To: "n3", TaskID: task.ID, Attempt: 2, Promised: 7, NextETA: t2.Add(backoff(1)), Retries: 1, Failed: 2, FailedBits: 1})

	check := func(n *Node, round uint64) {
		t.Helper()
		env.now = t2.Add(backoff(1) + n.Config().MaxClockDrift)
		resp := claim(t, env, n, task, "n1", 3, round)
		require.False(t, resp.Granted, "not at the backoff of one failure")
		require.Equal(t, 2, resp.Retries, "two failures, each counted once")
		require.Equal(t, uint64(2), resp.Failed)
		require.Equal(t, t2.Add(backoff(2)).Sub(env.now), resp.Lease, "the backoff of two, from the last failure")
	}
	check(n, 2)
	env.recs = env.recs[:env.synced]
	check(bootAcceptor(t, env, 2), 3)
}

// Counts that locate different failures merge without loss: n1 knows attempts 1 and
// 3 failed, n2 knows 2 and 3; each says two. n3 counts three, waits the backoff of
// three, and rebuilds the same count from its log.
func TestFailureCountsMergeWithoutLoss(t *testing.T) {
	t0 := epoch
	task := acceptorTask(t0)
	env := &acceptorEnv{now: t0}
	n := bootAcceptor(t, env, 1)
	step(env, n, Message{Type: MsgStore, From: "n1", To: "n3", TaskID: task.ID, Task: task})
	backoff := func(k int) time.Duration { return n.queue(task.Queue).Retry.Backoff(k) }

	t1 := t0.Add(time.Second)
	env.now = t1
	step(env, n, Message{Type: MsgRelease, From: "n1", To: "n3", TaskID: task.ID, Attempt: 3, Promised: 5, NextETA: t1.Add(backoff(2)), Retries: 2, Failed: 3, FailedBits: 0b101})
	step(env, n, Message{Type: MsgRelease, From: "n2", To: "n3", TaskID: task.ID, Attempt: 4, Promised: 6, NextETA: t1.Add(backoff(2)), Retries: 2, Failed: 3, FailedBits: 0b011})

	check := func(n *Node, round uint64) {
		t.Helper()
		env.now = t1.Add(backoff(2) + n.Config().MaxClockDrift)
		resp := claim(t, env, n, task, "n1", 5, round)
		require.False(t, resp.Granted, "not at the backoff of two failures")
		require.Equal(t, 3, resp.Retries, "{1,3} and {2,3} are three failures")
		require.Equal(t, uint64(3), resp.Failed)
		require.Equal(t, uint64(0b111), resp.FailedBits)
		require.Equal(t, t1.Add(backoff(3)).Sub(env.now), resp.Lease, "the backoff of three")
	}
	check(n, 1)
	env.recs = env.recs[:env.synced]
	check(bootAcceptor(t, env, 2), 2)
}

// A failure below the highest one known is counted: n3 granted attempt 2 to n1, then
// heard that attempt 3 (n2's, granted by others) failed. n1's lease runs out with no
// word: attempt 2 failed too, two failures in all.
func TestExpiredGrantBelowAKnownFailureIsCounted(t *testing.T) {
	t0 := epoch
	task := acceptorTask(t0)
	env := &acceptorEnv{now: t0}
	n := bootAcceptor(t, env, 1)
	step(env, n, Message{Type: MsgStore, From: "n1", To: "n3", TaskID: task.ID, Task: task})
	require.True(t, claim(t, env, n, task, "n1", 2, 1).Granted)
	step(env, n, Message{Type: MsgRelease, From: "n2", To: "n3", TaskID: task.ID, Attempt: 3, Promised: 7, NextETA: t0.Add(2 * time.Second), Retries: 1, Failed: 3, FailedBits: 1})

	env.now = t0.Add(10*time.Second + time.Millisecond) // n1's lease is over
	resp := claim(t, env, n, task, "n2", 4, 8)
	require.False(t, resp.Granted, "not before the backoff of the expired attempt")
	require.Equal(t, 2, resp.Retries, "attempts 2 and 3 failed")
	require.Equal(t, uint64(0b11), resp.FailedBits)
}

// A task given back to a replica that lost it carries the failures counted so far
// and the end of their backoff, and the replica keeps them, with its floor, across a
// restart that reports no loss: its grants must not make the next holder count from
// zero, nor grant an attempt number from before the loss.
func TestTaskGivenBackKeepsItsCountAndFloor(t *testing.T) {
	t0 := epoch
	task := acceptorTask(t0)
	env := &acceptorEnv{now: t0.Add(30 * time.Second), lossy: true}
	n := bootAcceptor(t, env, 1)
	env.now = env.now.Add(n.Config().RecoveryWait)
	floor := uint64(env.now.Sub(t0).Milliseconds())
	next := env.now.Add(20 * time.Second)
	n.Step(Message{Type: MsgStore, From: "n1", To: "n3", TaskID: task.ID, Task: task, Retries: 3, Status: 503, NextETA: next})
	env.flush()
	env.take()

	env.recs, env.lossy = env.recs[:env.synced], false
	n = bootAcceptor(t, env, 2)
	resp := claim(t, env, n, task, "n1", floor, 1)
	require.False(t, resp.Granted)
	require.Equal(t, floor, resp.Promised, "the floor outlives the start that set it")
	require.Equal(t, 3, resp.Retries)
	require.Equal(t, next.Sub(env.now), resp.Lease, "not before the backoff it was given")
	env.now = next
	require.True(t, claim(t, env, n, task, "n1", floor+1, 2).Granted)
}

// The floors a start that reports a loss sets on the tasks it kept are recorded: a
// later start that reports none keeps them.
func TestLossyStartRecordsItsFloors(t *testing.T) {
	t0 := epoch
	task := acceptorTask(t0)
	env := &acceptorEnv{now: t0}
	n := bootAcceptor(t, env, 1)
	n.Step(Message{Type: MsgStore, From: "n1", To: "n3", TaskID: task.ID, Task: task})
	env.flush()
	require.True(t, claim(t, env, n, task, "n1", 1, 1).Granted)

	env.now, env.lossy = t0.Add(time.Minute), true // the grant's record survived; others may not have
	n = bootAcceptor(t, env, 2)
	floor := uint64((time.Minute + n.Config().RecoveryWait).Milliseconds())
	env.flush()
	env.now, env.lossy = env.now.Add(n.Config().RecoveryWait), false
	n = bootAcceptor(t, env, 3)
	resp := claim(t, env, n, task, "n2", 2, 2)
	require.False(t, resp.Granted)
	require.Equal(t, floor, resp.Promised)
	require.True(t, claim(t, env, n, task, "n2", floor+1, 3).Granted)
}
