package node

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// heapInUse is the live heap after a full collection.
func heapInUse() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// 50,000 queues set and then deleted leave nothing behind once their tombstones
// outlived the dedup window: the node's memory returns where it began (before,
// every setting and every tombstone was kept for good: about 25 MB in the daemon).
func TestDeletedQueuesLeaveMemoryWhereItBegan(t *testing.T) {
	if testing.Short() {
		t.Skip("sets 50,000 queues")
	}
	const queues = 50_000
	h := newHarness(t, 1, 7, func(c *Config) { c.DedupWindow = time.Minute })
	n := quietNode(t, h)
	h.run(h.elapsed() + 2*time.Second)
	before := heapInUse()

	cfg := DefaultQueueConfig()
	cfg.Rate, cfg.BucketSize = 10, 1
	set := func(name string, del bool) {
		var a queueAnswer
		if del {
			n.DeleteQueue(name, false, a.reply)
		} else {
			n.SetQueue(name, cfg, FieldRate|FieldBucketSize, false, func(s QueueSetting, err error) { a.reply(s, 0, err) })
		}
		require.NoError(t, a.err, name)
	}
	for i := range queues {
		set(fmt.Sprintf("q%d", i), false)
	}
	h.run(h.elapsed() + 10*time.Second) // the answers' timers end
	require.Equal(t, queues, n.KnownQueues())
	peak := heapInUse()
	for i := range queues {
		set(fmt.Sprintf("q%d", i), true)
	}
	require.Zero(t, n.KnownQueues(), "deleted queues are not known")
	h.run(h.elapsed() + 3*time.Minute) // the window, and a sweep after it
	require.Empty(t, n.settings, "tombstones should be dropped after the dedup window")
	after := heapInUse()
	t.Logf("heap: %d KB before, %d KB with %d queues set, %d KB after their deletion", before>>10, peak>>10, queues, after>>10)
	require.Greater(t, peak, before+uint64(queues)*100, "the measure should see the settings")
	// Within 2 MB: the harness's event array (about 800 KB) is most of what remains.
	require.Less(t, after, before+2<<20, "memory should return within 2 MB of where it began")
	require.NotZero(t, n.settingsFloor)
	runtime.KeepAlive(h)
}

// quietObserver hears nothing: the harness's observer keeps what it is told.
type quietObserver struct{}

func (quietObserver) TaskStateChanged(*Task, TaskState, TaskState, uint64) {}

// quietNode starts, in place of h's single node, one whose environment keeps
// nothing it is told, so that the heap holds only what the node holds.
func quietNode(t *testing.T, h *harness) *Node {
	sn := h.nodes["n1"]
	sn.inc++
	env := Env{
		Clock:      &fakeClock{h: h, id: sn.id, inc: sn.inc},
		Network:    fakeNetwork{h: h},
		Dispatcher: &fakeDispatcher{h: h, id: sn.id, inc: sn.inc},
		Storage:    MemoryStorage{},
		Rand:       rand.New(rand.NewPCG(1, 2)),
		Observer:   quietObserver{},
	}
	n, err := New(sn.cfg, env)
	require.NoError(t, err)
	require.NoError(t, n.Start())
	sn.n = n
	return n
}

// A setting older than a dropped tombstone is not taken back: a member that was
// away for longer than the dedup window cannot spread the deleted queue's setting.
func TestDroppedTombstoneKeepsOldSettingsOut(t *testing.T) {
	h := newHarness(t, 1, 7, func(c *Config) { c.DedupWindow = time.Minute })
	h.run(h.elapsed() + time.Second)
	n := h.node("n1")
	var a queueAnswer
	n.SetQueue("q", DefaultQueueConfig(), 0, true, func(s QueueSetting, err error) { a.reply(s, 0, err) })
	h.run(h.elapsed() + time.Second)
	old := a.set
	require.NoError(t, a.err)
	n.DeleteQueue("q", false, a.reply)
	h.run(h.elapsed() + 3*time.Minute)
	_, held := n.settings["q"]
	require.False(t, held, "the tombstone should be dropped")

	n.Step(Message{Type: MsgQueueSet, From: "n1", To: "n1", Setting: &old})
	h.run(h.elapsed() + time.Second)
	s, ok := n.QueueSetting("q")
	require.False(t, ok, "the old setting came back: %+v", s)
	require.False(t, n.queuePaused("q"))
}

// Past MaxQueues, a task or a setting of a new queue is refused naming the queue;
// known queues go on, and a deletion makes room.
func TestMaxQueuesRefusesANewQueue(t *testing.T) {
	h := newHarness(t, 1, 9, func(c *Config) { c.MaxQueues = 2 })
	h.run(h.elapsed() + time.Second)
	n := h.node("n1")
	enqueue := func(q string) error {
		var res EnqueueResult
		n.Enqueue(EnqueueRequest{Queue: q, URL: "http://w.test/", Countdown: time.Hour}, func(r EnqueueResult) { res = r })
		h.run(h.elapsed() + time.Second)
		return res.Err
	}
	setQ := func(q string) error {
		var a queueAnswer
		n.SetQueue(q, DefaultQueueConfig(), 0, false, func(s QueueSetting, err error) { a.reply(s, 0, err) })
		h.run(h.elapsed() + time.Second)
		return a.err
	}
	require.NoError(t, enqueue("a"))
	require.NoError(t, setQ("b"))
	err := enqueue("c")
	require.ErrorIs(t, err, ErrTooManyQueues)
	require.Contains(t, err.Error(), `"c"`)
	require.ErrorIs(t, setQ("c"), ErrTooManyQueues)
	require.NoError(t, enqueue("a"), "a known queue takes tasks")
	require.NoError(t, enqueue("b"), "a queue with settings is known")

	var del queueAnswer
	n.DeleteQueue("b", true, del.reply)
	h.run(h.elapsed() + time.Second)
	require.NoError(t, del.err)
	require.Equal(t, 2, n.KnownQueues(), "b still holds a (cancelled) task")
	require.NoError(t, enqueue("a"))
}
