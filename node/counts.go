package node

import (
	"fmt"
	"slices"
	"strings"
)

// Task counts are kept as counters, updated on every insertion, removal and state
// change of an entry (addEntry, removeEntry, setState; recount rebuilds them at
// start), so that counting a queue never walks its tasks.
//
// A cluster-wide count must count each task once although R replicas hold it, and
// should not lose a task because one of them does not answer. So each node keys its
// counters by the replicas ranked before it in the task's list ("before"), and a
// cluster count (CountCluster) takes each counter from a member only when none of
// the replicas ranked before that member answered: each task is counted once, by the
// lowest-ranked of its replicas that answered, in the state that replica holds it.
// Replicas may disagree for a moment (the claimant knows first that a task is
// claimed, succeeded or dead; the others learn it from its Outcome), and a replica
// that never received a task (it was down when the task was enqueued) does not count
// it until it learns it, at the latest when the task is claimed.

// countKey is one counter: tasks of a queue, in a state, whose replicas ranked
// before this node are before (their IDs joined with beforeSep; "" for rank 0).
type countKey struct {
	queue  string
	state  TaskState
	before string
}

// beforeSep joins node IDs in countKey.before; no ID holds it.
const beforeSep = "\x00"

// QueueCount is one counter as a member reports it for a cluster-wide count: N tasks
// of Queue in State, whose replicas ranked before the reporting member are Before.
type QueueCount struct {
	Queue  string
	State  TaskState
	Before []NodeID
	N      int
}

// beforeOf returns the replicas ranked before this node in t's list, joined.
func beforeOf(t *Task, rank int) string {
	if rank < 0 {
		rank = len(t.Replicas) // not a replica: any replica that answers counts it instead
	}
	switch rank {
	case 0:
		return ""
	case 1:
		return string(t.Replicas[0])
	}
	ids := make([]string, rank)
	for i, r := range t.Replicas[:rank] {
		ids[i] = string(r)
	}
	return strings.Join(ids, beforeSep)
}

// before is the key of e's counter: the replicas ranked before this node in its
// list, joined. Computed, not kept: a string per entry cost 16 bytes a task.
func (e *entry) before() string { return beforeOf(e.task, e.rank) }

// count adds d (+1 or -1) to the counter of e in state s. StateNone (an entry being
// set up) is not counted.
func (n *Node) count(e *entry, s TaskState, d int) {
	if s == StateNone {
		return
	}
	n.indexTask(e, s, d)
	k := countKey{queue: e.task.Queue, state: s, before: e.before()}
	n.counts[k] += d
	if n.counts[k] == 0 {
		delete(n.counts, k)
	}
}

// recountStates rebuilds the counters from tasks.
func (n *Node) recountStates() {
	clear(n.counts)
	for k := range n.index { // clearing: order does not matter
		n.markQueue(k.queue, refTasks, false)
	}
	clear(n.index)
	for _, e := range n.tasks {
		n.count(e, e.state, +1)
	}
}

// Counts returns the tasks this node holds, by queue and state, from its counters.
func (n *Node) Counts() map[string]map[TaskState]int {
	out := map[string]map[TaskState]int{}
	for k, c := range n.counts { // sums: order does not matter
		if out[k.queue] == nil {
			out[k.queue] = map[TaskState]int{}
		}
		out[k.queue][k.state] += c
	}
	return out
}

// QueueCounts returns the tasks this node holds in a queue, by state.
func (n *Node) QueueCounts(queue string) map[TaskState]int {
	out := map[TaskState]int{}
	for k, c := range n.counts { // sums: order does not matter
		if k.queue == queue {
			out[k.state] += c
		}
	}
	return out
}

// CheckCounts compares the counters with the tasks this node holds, for tests and the
// simulator's checks: nil when they agree, else an error naming the first difference.
func (n *Node) CheckCounts() error {
	actual := map[countKey]int{}
	for _, e := range n.heldEntries() {
		if e.state != StateNone {
			actual[countKey{queue: e.task.Queue, state: e.state, before: e.before()}]++
		}
	}
	keys := map[countKey]bool{}
	for k := range actual {
		keys[k] = true
	}
	for k := range n.counts {
		keys[k] = true
	}
	var diffs []string
	for k := range keys { // sorted below
		if actual[k] != n.counts[k] {
			diffs = append(diffs, fmt.Sprintf("queue %q %s (after %q): counted %d, holds %d",
				k.queue, k.state, strings.ReplaceAll(k.before, beforeSep, ","), n.counts[k], actual[k]))
		}
	}
	if len(diffs) == 0 {
		if err := checkNoExtra(); err != nil {
			return err
		}
		return n.checkIndex()
	}
	slices.Sort(diffs)
	return fmt.Errorf("task counters disagree with the tasks held: %s", strings.Join(diffs, "; "))
}

// reportCounts returns this node's counters as a member reports them, sorted.
func (n *Node) reportCounts() []QueueCount {
	out := make([]QueueCount, 0, len(n.counts))
	for k, c := range n.counts { // sorted below
		qc := QueueCount{Queue: k.queue, State: k.state, N: c}
		if k.before != "" {
			for _, id := range strings.Split(k.before, beforeSep) {
				qc.Before = append(qc.Before, NodeID(id))
			}
		}
		out = append(out, qc)
	}
	slices.SortFunc(out, func(a, b QueueCount) int {
		if c := strings.Compare(a.Queue, b.Queue); c != 0 {
			return c
		}
		if a.State != b.State {
			return int(a.State) - int(b.State)
		}
		return slices.Compare(a.Before, b.Before)
	})
	return out
}

// ClusterCounts is a cluster-wide count of tasks by queue and state (see the comment
// at the top of this file). Missing names the members that did not answer in time:
// tasks held only by them are not counted.
type ClusterCounts struct {
	Queues  map[string]map[TaskState]int
	Missing []NodeID
}

// countOp is a cluster-wide count this node coordinates.
type countOp struct {
	id      uint64
	answers map[NodeID][]QueueCount
	client  ReplyID
	stop    alarmID
}

// CountCluster counts the tasks of every queue across the cluster: every member
// sends its counters, and reply is called once all have answered, or after
// ListTimeout with those that did.
func (n *Node) CountCluster(reply func(ClusterCounts)) {
	n.input(func() { n.countCluster(n.await(func(a Answer) { reply(a.Counts) })) })
}

func (n *Node) countCluster(client ReplyID) {
	n.listSeq++
	op := &countOp{id: n.listSeq, answers: map[NodeID][]QueueCount{}, client: client}
	n.countOps[op.id] = op
	op.stop = n.after(n.cfg.ListTimeout, alarm{kind: alarmCountTimeout, id: op.id})
	for _, m := range n.members {
		n.send(Message{Type: MsgCount, To: m, Promised: op.id})
	}
}

func (n *Node) handleCount(m Message) {
	n.send(Message{Type: MsgCountResp, To: m.From, Promised: m.Promised, Counts: n.reportCounts()})
}

func (n *Node) handleCountResp(m Message) {
	op := n.countOps[m.Promised]
	if op == nil || !slices.Contains(n.members, m.From) {
		return
	}
	op.answers[m.From] = m.Counts
	if membersIn(n.members, op.answers) == len(n.members) {
		n.finishCount(op)
	}
}

func (n *Node) finishCount(op *countOp) {
	if n.countOps[op.id] != op {
		return
	}
	delete(n.countOps, op.id)
	n.stopAlarm(op.stop)
	out := ClusterCounts{Queues: map[string]map[TaskState]int{}}
	for _, mem := range n.members {
		if _, ok := op.answers[mem]; !ok {
			out.Missing = append(out.Missing, mem)
		}
	}
	for _, mem := range n.members {
		for _, c := range op.answers[mem] {
			if c.State == StateNone || slices.ContainsFunc(c.Before, func(id NodeID) bool { _, ok := op.answers[id]; return ok }) {
				continue // a replica ranked before mem answered: it counted these
			}
			if out.Queues[c.Queue] == nil {
				out.Queues[c.Queue] = map[TaskState]int{}
			}
			out.Queues[c.Queue][c.State] += c.N
		}
	}
	n.answer(op.client, Answer{Counts: out})
}
