package node

import (
	"errors"
	"fmt"
	"math/bits"
)

// Admission limits keep a node's memory bounded: past them it refuses new tasks, as
// coordinator (ErrNodeFull, ErrQueueFull) and as replica (a Store answered
// RejectFull), instead of growing until the process dies. Only tasks that are not
// final count; finished tasks stay for the dedup window whatever the limits, so their
// memory is bounded by the window times the delivery rate.

// ErrNodeFull: this node (or a majority of the task's replicas) holds its limit of
// pending tasks or of their bytes. Nothing was stored; retry later.
var ErrNodeFull = errors.New("the node holds its limit of pending tasks: nothing was stored, retry later")

// ErrQueueFull: this node holds its limit of pending tasks for the queue.
var ErrQueueFull = errors.New("the queue holds its limit of pending tasks on this node: nothing was stored, retry later")

// entryOverhead approximates what an entry costs beyond its task's variable fields
// (the entry, the task struct, the map slot, its timer), measured at about 1 KB.
const entryOverhead = 1024

// taskBytes is what a held task costs in memory, approximately.
func taskBytes(t *Task) int64 {
	b := entryOverhead + len(t.ID) + len(t.Queue) + len(t.Name) + len(t.URL) + len(t.Method) + len(t.ContentType) + len(t.Body)
	for _, h := range t.Headers {
		b += len(h.Name) + len(h.Value) + 32
	}
	return int64(b)
}

// countOpen adds d (+1 or -1) to the pending-task counters for e.
func (n *Node) countOpen(e *entry, d int) {
	n.open += d
	n.openBytes += int64(d) * taskBytes(e.task)
	q := e.task.Queue
	n.openByQueue[q] += d
	if n.openByQueue[q] <= 0 {
		delete(n.openByQueue, q)
	}
}

// addEntry puts e in tasks, counting it by state, and as pending if it is.
func (n *Node) addEntry(e *entry) {
	n.tasks[e.task.ID] = e
	n.tasksPeak = max(n.tasksPeak, len(n.tasks))
	n.count(e, e.state, +1)
	if !e.state.Final() {
		n.countOpen(e, +1)
	}
}

// removeEntry drops e from tasks.
func (n *Node) removeEntry(e *entry) {
	n.unschedule(e)
	delete(n.tasks, e.task.ID)
	n.count(e, e.state, -1)
	if !e.state.Final() {
		n.countOpen(e, -1)
	}
}

// recount rebuilds the counters from tasks, and from notes those of the tasks made
// cold in Start (restart.go; at start, after the records replayed: no task is
// frozen, and no other is cold, they go so at the end of inputs).
func (n *Node) recount(notes []coldCount) {
	n.open, n.openBytes = 0, 0
	clear(n.openByQueue)
	clear(n.counts)
	if n.cfg.Unsafe.SkipRecount {
		return // negative controls only (S6)
	}
	n.recountStates()
	for _, e := range n.tasks {
		if !e.state.Final() {
			n.countOpen(e, +1)
		}
	}
	if cold := n.countCold(notes); cold != len(n.tombs) {
		panic(fmt.Sprintf("node: recount with %d tasks frozen or cold, %d of them made cold in Start", len(n.tombs), cold))
	}
}

// admit reports whether t may be taken under the limits, or the error to answer.
func (n *Node) admit(t *Task) error {
	c := n.cfg
	if c.Unsafe.AdmitPastLimits {
		return nil // negative controls only (S7)
	}
	if c.MaxPending > 0 && n.open >= c.MaxPending {
		return fmt.Errorf("%w (%d tasks)", ErrNodeFull, c.MaxPending)
	}
	if c.MaxPendingBytes > 0 && n.openBytes+taskBytes(t) > c.MaxPendingBytes {
		return fmt.Errorf("%w (%d bytes)", ErrNodeFull, c.MaxPendingBytes)
	}
	if c.MaxQueuePending > 0 && n.openByQueue[t.Queue] >= c.MaxQueuePending {
		return fmt.Errorf("%w (%d tasks in queue %q)", ErrQueueFull, c.MaxQueuePending, t.Queue)
	}
	return nil
}

// PendingCount returns the pending tasks this node holds, overall and in queue q, as
// the admission limits count them (O(1), for the simulator's per-event checks).
func (n *Node) PendingCount(q string) (total, inQueue int) { return n.open, n.openByQueue[q] }

// Pending returns the pending-task counters as tracked and as counted afresh, for
// tests and the simulator's checks: the two must always agree.
func (n *Node) Pending() (tracked, actual int) {
	for _, e := range n.tasks {
		if !e.state.Final() {
			actual++
		}
	}
	for _, h := range n.tombs { // a count: order does not matter
		if h&coldHandle != 0 {
			actual++ // a cold task is pending (coolable), and stays so while cold
		}
	}
	return n.open, actual
}

// refuseFull handles a replica's RejectFull: once no majority can store op's task,
// the enqueue fails, and the replicas that stored it are told it is cancelled (best
// effort: one message each), so that a refused task does not run.
func (n *Node) refuseFull(op *enqueueOp, rank int, from NodeID) {
	op.full |= 1 << rank
	t := op.task
	if op.replied || len(t.Replicas)-bits.OnesCount64(op.full) >= majority(t) {
		return
	}
	op.replied = true
	delete(n.pending, t.ID)
	n.stopAlarm(op.stop)
	for i, r := range t.Replicas {
		if op.acks&(1<<i) != 0 {
			n.send(Message{Type: MsgOutcome, To: r, TaskID: t.ID, Task: t, State: StateCancelled})
		}
	}
	n.answerEnqueue(op.client, t, EnqueueResult{ID: t.ID, Err: fmt.Errorf("replica %s: %w", from, ErrNodeFull)})
}

// dropBody frees the body of a task that ended in state (called as it becomes
// final): it is kept for the dedup window, but will never be delivered again. A dead
// task keeps its body, which a re-queue copies. The task is copied, not changed: a
// message or a delivery in flight may still hold the old one.
func (n *Node) dropBody(e *entry, state TaskState) {
	if state == StateDead || len(e.task.Body) == 0 {
		return
	}
	t := *e.task
	t.Body = nil
	e.task = &t
}
