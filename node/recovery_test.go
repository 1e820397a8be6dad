package node

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A replica that restarts without memory shortly after a task was created, and then
// receives a late duplicate of that task's Store, must not grant that task while
// recovering: it may have granted the task's attempt before the crash. If it does, a
// replica that missed the first claim wins a second quorum for the same attempt while
// the first delivery is still running (S1, S2).
func TestRestartedNodeGrantsNothingItMayHaveGranted(t *testing.T) {
	h := newHarness(t, 3, 51, nil)
	h.worker = func(Delivery, int) (int, time.Duration) { return 200, 8 * time.Second } // slow worker
	r := h.enqueue("n1", req(500*time.Millisecond))
	require.NotEmpty(t, h.sent, "Stores sent")
	id := h.sent[0].Msg.TaskID
	h.run(200 * time.Millisecond) // every replica stored it
	st, ok := h.node("n1").Task(id)
	require.True(t, ok)
	reps := st.Task.Replicas
	r0, r1, r2 := reps[0], reps[1], reps[2]
	require.Equal(t, "n1", string(r0), "this seed's placement puts the coordinator first")
	// r0's claim does not reach r2, so r2 never learns of attempt 1.
	h.block(r0, r2)
	h.run(600 * time.Millisecond)
	require.True(t, r.done)
	ds := h.deliveriesOf(id)
	require.Len(t, ds, 1, "rank 0 delivers with the grants of itself and rank 1")
	require.Equal(t, r0, ds[0].Node)

	// r1 crashes after granting and restarts at once, without memory.
	h.crash(r1)
	h.restart(r1)
	boot := h.elapsed()
	// A duplicate of the task's Store, delayed by the network, reaches it. The task
	// is less than MaxClockDrift older than r1's start, so r1 may take it again, but
	// must not grant it while recovering.
	h.node(r1).Step(Message{Type: MsgStore, From: "n1", To: r1, TaskID: id, Task: st.Task})

	h.run(time.Minute)
	for _, s := range filterFrom(h.sentOf(MsgClaimResp, id), r1) {
		if s.At >= boot && s.At < boot+h.node(r1).Config().RecoveryWait {
			assert.False(t, s.Msg.Granted, "a restarted node granted, during its recovery wait, a task it may have granted before: %v", s)
		}
	}
	ds = h.deliveriesOf(id)
	for i := 1; i < len(ds); i++ {
		assert.GreaterOrEqual(t, ds[i].At, ds[i-1].End, "S1: %s started attempt %d while %s's attempt %d ran: %v", ds[i].Node, ds[i].Attempt, ds[i-1].Node, ds[i-1].Attempt, ds)
		assert.NotEqual(t, ds[i].Attempt, ds[i-1].Attempt, "S2: attempt delivered twice: %v", ds)
	}
}

// lossyStorage is a durable Storage with no records that reports a loss since a time.
type lossyStorage struct {
	h     *harness
	since time.Time
}

func (s lossyStorage) Durable() bool                { return true }
func (s lossyStorage) Append(...Record)             {}
func (s lossyStorage) Sync(done func())             { s.h.schedule(time.Millisecond, done) }
func (s lossyStorage) Load() ([]Record, error)      { return nil, nil }
func (s lossyStorage) LostSince() (time.Time, bool) { return s.since, true }

// A durable node that reports a loss acts as one that forgot at the time it gives,
// not at its start: its recovery wait ends RecoveryWait after that time, and it is
// ready to take tasks once MaxClockDrift after it has passed. A zero time means its
// start. Recovering says when the daemon may drop the loss marker.
func TestLossCountsFromTheTimeReported(t *testing.T) {
	wait := 30*time.Second + 2*time.Second + 5*time.Second // RecoveryWait's default
	h := newHarness(t, 3, 5, nil)
	bootAt := h.now.Add(-time.Second)
	h.nodes["n2"].storage = func() Storage { return lossyStorage{h: h, since: bootAt.Add(-10 * time.Second)} }
	h.nodes["n3"].storage = func() Storage { return lossyStorage{h: h} }
	h.now = bootAt
	h.crash("n2")
	h.restart("n2")
	h.crash("n3")
	h.restart("n3")
	h.run(-500 * time.Millisecond) // they learn the queue settings from n1 meanwhile

	require.True(t, h.node("n2").Ready(), "the loss is 11 s old: past MaxClockDrift")
	require.False(t, h.node("n3").Ready(), "n3 forgot at its start, half a second ago")
	require.True(t, h.node("n2").Recovering())
	require.True(t, h.node("n3").Recovering())

	h.run(wait - 10*time.Second - time.Second - 100*time.Millisecond)
	require.True(t, h.node("n2").Recovering(), "before the end of the wait counted from the loss")
	h.run(wait - 10*time.Second)
	require.False(t, h.node("n2").Recovering(), "RecoveryWait after the loss, not after the start")
	require.True(t, h.node("n3").Recovering())
	h.run(wait + time.Second)
	require.False(t, h.node("n3").Recovering())
	require.False(t, h.node("n1").Recovering(), "a node with memory storage that never restarted")
}
