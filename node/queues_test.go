package node

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// queueAnswer is what a queue change's reply said.
type queueAnswer struct {
	done      bool
	set       QueueSetting
	cancelled int
	err       error
}

func (a *queueAnswer) reply(s QueueSetting, cancelled int, err error) {
	a.done, a.set, a.cancelled, a.err = true, s, cancelled, err
}

// enqueueMany enqueues n tasks of queue, due in an hour, through every node in
// turn, and returns their IDs.
func enqueueMany(t *testing.T, h *harness, queue string, n int) []string {
	var ids []string
	for i := 0; i < n; i++ {
		r := h.enqueue(h.order[i%len(h.order)], reqQ(queue, time.Hour))
		h.run(h.elapsed() + 50*time.Millisecond)
		ids = append(ids, acked(t, r))
	}
	return ids
}

// A purge's answer counts the tasks it cancelled across the cluster, each once,
// although with five nodes and R=3 no node holds them all; a repeated purge
// cancels (and counts) nothing more.
func TestPurgeCountsEachTaskOnce(t *testing.T) {
	h := newHarness(t, 5, 31, nil)
	ids := enqueueMany(t, h, "q", 20)
	enqueueMany(t, h, "other", 3)
	require.Less(t, len(h.node("n2").ListTasks("q", StateNone, "", 100)), 20, "n2 holds every task: the test shows nothing")

	var a queueAnswer
	h.node("n2").PurgeQueue("q", a.reply)
	h.run(h.elapsed() + time.Second)
	require.True(t, a.done)
	require.NoError(t, a.err)
	require.Equal(t, 20, a.cancelled)
	for _, id := range ids {
		for _, r := range h.replicas(id) {
			require.Equal(t, StateCancelled, h.stateOn(r, id), "task %s on %s", id, r)
		}
	}

	var again queueAnswer
	h.node("n4").PurgeQueue("q", again.reply)
	h.run(h.elapsed() + time.Second)
	require.NoError(t, again.err)
	require.Zero(t, again.cancelled, "the second purge found nothing left to cancel")
}

// Deleting a queue's settings is a replicated tombstone: every member runs the
// queue on the defaults again, unpaused, and stops listing it; a member cut off
// during the deletion still holding the old setting is overruled when it comes
// back instead of spreading the old setting again.
func TestDeleteQueueTombstoneWins(t *testing.T) {
	h := newHarness(t, 3, 37, nil)
	cfg := DefaultQueueConfig()
	cfg.Delivery, cfg.MaxConcurrent = AtMostOnce, 2
	var set queueAnswer
	h.node("n1").SetQueue("q", cfg, FieldDelivery|FieldMaxConcurrent, true, func(s QueueSetting, err error) { set.reply(s, 0, err) })
	h.run(h.elapsed() + time.Second)
	require.NoError(t, set.err)
	require.Equal(t, FieldDelivery|FieldMaxConcurrent, set.set.Explicit)
	for _, id := range h.order {
		require.Contains(t, h.node(id).QueueNames(), "q")
	}

	h.isolate("n3")
	var del queueAnswer
	h.node("n2").DeleteQueue("q", false, del.reply)
	h.run(h.elapsed() + 6*time.Second)
	require.ErrorIs(t, del.err, ErrNotEveryMember, "n3 was cut off")
	held, _ := h.node("n3").QueueSetting("q")
	require.True(t, held.Paused && !held.Deleted, "n3 missed the deletion")

	h.heal()
	h.run(h.elapsed() + 20*time.Second) // gossip, every 2 s to one random member
	for _, id := range h.order {
		n := h.node(id)
		s, ok := n.QueueSetting("q")
		require.False(t, ok, "%s", id)
		require.True(t, s.Deleted, "%s still holds %+v", id, s)
		require.Zero(t, s.Explicit)
		require.Equal(t, DefaultQueueConfig(), n.queue("q"), "%s", id)
		require.False(t, n.queuePaused("q"), "%s", id)
		require.NotContains(t, n.QueueNames(), "q", "%s", id)
	}

	// A later PUT makes the queue again, from the defaults.
	var again queueAnswer
	h.node("n3").SetQueue("q", cfg, FieldDelivery, false, func(s QueueSetting, err error) { again.reply(s, 0, err) })
	h.run(h.elapsed() + time.Second)
	require.NoError(t, again.err)
	for _, id := range h.order {
		s, ok := h.node(id).QueueSetting("q")
		require.True(t, ok && !s.Deleted && s.Config.Delivery == AtMostOnce, "%s: %+v", id, s)
	}
}

// A deletion with purge cancels the queue's tasks in the same change and counts them.
func TestDeleteQueueWithPurge(t *testing.T) {
	h := newHarness(t, 3, 41, nil)
	ids := enqueueMany(t, h, "typo", 5)
	var del queueAnswer
	h.node("n1").DeleteQueue("typo", true, del.reply)
	h.run(h.elapsed() + time.Second)
	require.NoError(t, del.err)
	require.Equal(t, 5, del.cancelled)
	for _, id := range ids {
		require.Equal(t, StateCancelled, h.stateOn("n2", id))
	}
}

// A queue change counts a member's answer only when it carries that very change:
// an answer with a newer one (the member took another change first, which stands
// everywhere) ends it with ErrSuperseded, never as acknowledged; a purge is kept by
// a newer setting that keeps its purge time (pause-loses-to-earlier-resume,
// put-undoes-concurrent-pause: Q5).
func TestQueueChangeOvertakenByANewerIsSuperseded(t *testing.T) {
	h := newHarness(t, 3, 1, nil)
	n := h.node("n1")
	var got []error
	pause := &QueueSetting{Queue: "q", Paused: true, Version: 3, Origin: "n1"}
	resume := &QueueSetting{Queue: "q", Version: 4, Origin: "n2"}
	n.input(func() {
		client := n.await(func(a Answer) { got = append(got, a.Err) })
		n.setOps = append(n.setOps, &setOp{setting: pause, acks: map[NodeID]bool{}, client: client})
		n.handleQueueSetResp(Message{Type: MsgQueueSetResp, From: "n1", To: "n1", Setting: pause})
		n.handleQueueSetResp(Message{Type: MsgQueueSetResp, From: "n2", To: "n1", Setting: resume})
		n.handleQueueSetResp(Message{Type: MsgQueueSetResp, From: "n3", To: "n1", Setting: pause})
	})
	require.Equal(t, []error{ErrSuperseded}, got, "n2 holds the resume, which stands: the pause is not acknowledged")
	require.Empty(t, n.setOps)

	got = nil
	purge := &QueueSetting{Queue: "q", Version: 5, Origin: "n1", PurgedBefore: epoch.Add(time.Second)}
	later := &QueueSetting{Queue: "q", Version: 6, Origin: "n3", PurgedBefore: purge.PurgedBefore}
	n.input(func() {
		client := n.await(func(a Answer) { got = append(got, a.Err) })
		n.setOps = append(n.setOps, &setOp{setting: purge, acks: map[NodeID]bool{}, client: client, purge: true})
		for _, from := range []NodeID{"n1", "n2"} {
			n.handleQueueSetResp(Message{Type: MsgQueueSetResp, From: from, To: "n1", Setting: purge})
		}
		n.handleQueueSetResp(Message{Type: MsgQueueSetResp, From: "n3", To: "n1", Setting: later})
	})
	require.Equal(t, []error{nil}, got, "the newer setting keeps the purge time: the purge holds there")
}
