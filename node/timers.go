package node

import (
	"container/heap"
	"time"
)

// One timer per node, not one per task. The entries whose timer is armed (fire,
// claim, outcome; forget has its own queue, see forget.go) sit in a min-heap
// ordered by due time, then by the order they were armed; one Clock.AfterFunc
// (wake) is armed for the first of them. A runtime timer and its closures cost about
// 290 bytes of heap per pending task and a goroutine wake-up each; the heap slot is
// the entry's own index field.
//
// A timer is due when the node's clock reads its time (as for forget.go's queue): a
// wake that comes early (the clock was stepped back) fires nothing and re-arms.
//
// Invariant: each wake fires only timers armed before it started (timerSeq), in
// (due time, arm order): one armed by a timer's handler for "now" runs as a later
// input, after whatever else came in between, as a separate AfterFunc would.

// timerHeap implements heap.Interface over the armed entries.
type timerHeap []*entry

func (h timerHeap) Len() int { return len(h) }
func (h timerHeap) Less(i, j int) bool {
	if h[i].timerAt != h[j].timerAt {
		return h[i].timerAt < h[j].timerAt
	}
	return h[i].timerSeq < h[j].timerSeq
}
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].timerIdx, h[j].timerIdx = int32(i+1), int32(j+1)
}
func (h *timerHeap) Push(x any) {
	e := x.(*entry)
	e.timerIdx = int32(len(*h) + 1)
	*h = append(*h, e)
}
func (h *timerHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.timerIdx = 0
	return e
}

// schedule puts e in the timer heap, due at local time at.
func (n *Node) schedule(e *entry, at time.Time) {
	n.timerSeq++
	e.timerAt, e.timerSeq = at.UnixNano(), n.timerSeq
	heap.Push(&n.timers, e)
	n.armWake()
}

// unschedule takes e out of the timer heap, if it is in it. The wake stays armed:
// if it comes with nothing due, it re-arms for the next timer.
func (n *Node) unschedule(e *entry) {
	if e.timerIdx != 0 {
		heap.Remove(&n.timers, int(e.timerIdx-1))
	}
}

// armWake arms the wake for the first timer (of the node's heap and the cold one:
// cold.go), unless one is armed as early.
func (n *Node) armWake() {
	first, ok := n.firstTimer()
	if !ok {
		return
	}
	if n.wake != 0 {
		if n.wakeAt <= first {
			return
		}
		n.stopAlarm(n.wake)
	}
	n.wakeAt = first
	n.wake = n.after(max(time.Duration(first-n.now().UnixNano()), 0), alarm{kind: alarmWake})
}

// firstTimer returns the due time of the first timer armed, in either heap; ok is
// false when none is.
func (n *Node) firstTimer() (at int64, ok bool) {
	cold, coldOK := n.coldTop()
	switch {
	case len(n.timers) > 0 && (!coldOK || n.timers[0].timerAt <= cold.at):
		return n.timers[0].timerAt, true
	case coldOK:
		return cold.at, true
	}
	return 0, false
}

// fireTimers runs every timer due by now that was armed before this wake, then
// re-arms the wake for the next one. The cold timers due by now are thawed first,
// into their places in the heap.
func (n *Node) fireTimers() {
	n.wake, n.wakeAt = 0, 0
	now, last := n.now().UnixNano(), n.timerSeq
	n.thawDueCold(now)
	for len(n.timers) > 0 && n.timers[0].timerAt <= now && n.timers[0].timerSeq <= last {
		e := heap.Pop(&n.timers).(*entry)
		kind := e.timerKind
		e.timerKind = timerNone
		if n.tasks[e.task.ID] != e {
			continue // replaced since
		}
		n.onTimer(e, kind)
	}
	n.armWake()
}
