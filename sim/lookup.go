package sim

import (
	"fmt"
	"slices"
	"time"

	"github.com/miyamotohq/miyamoto/node"
)

// Clients look tasks up (workload.lookups) as they do with the daemon: GET
// /v1/tasks/{id} is node.Describe on the node the request reached (net/api's getTask,
// through net/daemon's backend), so a simulated lookup is Describe on a random live
// node, for a random acknowledged task, at Poisson times. Every answer is judged
// against the simulated world (V1: lookupAnswered, and lookUp's bound on the time
// an answer takes).

// maxLookupRate bounds workload.lookups.rate: lookups are probes, not load.
const maxLookupRate = 1000

// defaultLookupsAfterSafety is how far into the liveness phase lookups go on by
// default (workload.lookups.until).
const defaultLookupsAfterSafety = 10 * time.Second

// lookupStream is the seed split the lookups draw from (their times, nodes and
// tasks), their own: a run with lookups enqueues the same tasks at the same times,
// through the same nodes, as without (the network's draws still move with the
// messages the lookups add).
const lookupStream = 7

// startLookups begins the clients' lookups when the workload's first request goes
// out; they go on until spec.Until (default: 10 s into the liveness phase, which
// may be long: lookups all through it would cost much and judge little).
func (w *world) startLookups(spec *LookupSpec) {
	earliest := int64(w.sc.Cluster.MaxClockDrift) + int64(w.sc.Clocks.maxOffset()) + int64(time.Millisecond)
	until := int64(spec.Until)
	if until == 0 {
		until = int64(w.sc.Duration) + int64(defaultLookupsAfterSafety)
	}
	var next func()
	next = func() {
		if w.now >= until {
			return
		}
		w.lookUp()
		w.after(time.Duration(w.rngLook.ExpFloat64()/spec.Rate*float64(time.Second)), next)
	}
	w.at(earliest, func() { w.after(time.Duration(w.rngLook.ExpFloat64()/spec.Rate*float64(time.Second)), next) })
}

// lookUp makes one lookup, if some node can take it (up, not paused, not stopping,
// a member) and some task was acknowledged.
func (w *world) lookUp() {
	var live []*simNode
	for _, s := range w.nodes {
		if s.up && s.n != nil && !s.paused && !s.stopping && s.member() {
			live = append(live, s)
		}
	}
	if len(live) == 0 {
		return
	}
	s := live[w.rngLook.IntN(len(live))]
	r := w.check.pickTask(w.rngLook, "", func(*taskRec) bool { return true })
	if r == nil {
		return
	}
	id := r.task.ID
	if w.trace != nil {
		w.trace.fault(w.now, "lookup", id+" via "+string(s.id))
	}
	lk := w.check.lookupIssued(s, id)
	s.n.Describe(id, func(st node.TaskStatus, err error) {
		if testLookupAnswerLost != nil && testLookupAnswerLost() {
			return
		}
		w.check.lookupAnswered(lk, st, err)
		if w.trace != nil {
			res := st.State.String()
			if err != nil {
				res = err.Error()
			}
			w.trace.fault(w.now, "lookup_answer", id+": "+res)
		}
	})
	if lk.judged {
		// V1's bound: a lookup made in the liveness phase, through a node that
		// stays up (nothing fails any more, the network is whole), is answered
		// within the node's own timeout.
		inc := s.incarnation
		w.after(w.check.lookupBound, func() {
			if !lk.answered && s.up && s.incarnation == inc {
				w.check.violate("V1", []string{id}, []node.NodeID{s.id}, "a lookup through %s made at %s in the liveness phase had no answer after %s",
					s.id, time.Duration(lk.at), w.check.lookupBound)
			}
		})
	}
}

// testLookupAnswerLost, a hook for this package's tests only (lookup_test.go), loses
// the node's answer to a lookup when it returns true, so that a test can see V1's
// bound on the answer's time catch a lookup never answered. Unexported and nil in
// every build of the command.
var testLookupAnswerLost func() bool

// lookupRec is one client's lookup in flight.
type lookupRec struct {
	via      *simNode
	id       string
	at       int64
	judged   bool // made in the liveness phase: V1 bounds its answer's time
	answered bool
	// final: the task was final on a majority of its replicas when the lookup was
	// made, with every replica up (finalSince: since when); nodes are the
	// coordinator and the replicas, incs their incarnations then. See
	// mustAnswerFinal.
	final      bool
	finalSince int64
	nodes      []*simNode
	incs       []uint64
}

func (c *checker) lookupIssued(s *simNode, id string) *lookupRec {
	c.lookups++
	lk := &lookupRec{via: s, id: id, at: c.w.now, judged: c.w.liveness}
	c.mustAnswerFinal(lk)
	return lk
}

// mustAnswerFinal decides whether the lookup lk, made now, must be answered with a
// final state, and notes what must still hold at the answer for that. Describe asks
// every replica of the task and, once all of them answered, answers the most
// advanced view, a final state before any other (node/query.go). So when a majority
// of the replicas knew the task final before the lookup and each keeps knowing it
// (none crashed since it learnt it, none forgot it at the end of the dedup window),
// and every replica's answer comes in time (the coordinator and the replicas stay
// up and unpaused, no partition comes between them, and no status message of the
// task is lost: replicasStayed), the answer is final. The rule asks no more: a
// replica cut off, down or paused may hold an older view, and the answer is then
// the freshest view of those that answered (or, after EnqueueTimeout,
// ErrOutcomeUnknown).
//
// "Before the lookup" allows for an answer the coordinator counts that a replica
// sent before it (to an earlier lookup of the task this one joined): it left at
// most a message's latency, a reorder's and a delay fault's delay before. A silent
// partition holds messages longer, so with network.partition "hold" the rule waits
// for the liveness phase, when the held messages have been delivered.
func (c *checker) mustAnswerFinal(lk *lookupRec) {
	sc := c.w.sc
	stale := int64(sc.Network.Latency.Max) + int64(sc.Network.ReorderDelay) + int64(maxFaultDelay(sc)) + int64(time.Millisecond)
	recs := c.byID[lk.id]
	if c.w.removals || sc.Cluster.Spares > 0 || len(recs) != 1 {
		return // roster changes move replicas; one ID for two enqueues of a name
	}
	if sc.Network.Partition == "hold" && (!c.w.liveness || c.w.now < c.w.livenessAt+stale) {
		return
	}
	r := recs[0]
	n := len(r.task.Replicas)
	if r.lostState != 0 || len(r.members) != n || !slices.Equal(lk.via.n.Placement(lk.id), r.task.Replicas) {
		return
	}
	var knew []int64
	for rank, id := range r.task.Replicas {
		o := c.w.byID[id]
		if t := r.knowsFinal[rank]; t >= 0 && t < c.w.now-stale && o != nil && c.crashedAt[o.idx] < t {
			knew = append(knew, t)
		}
	}
	if len(knew) < n/2+1 {
		return
	}
	slices.Sort(knew)
	// A replica forgets a final task a dedup window after it ended it, on its own
	// clock: keep well inside the window of the first to know.
	if c.w.now >= knew[0]+int64(c.dedupWindow)/2 {
		return
	}
	nodes := []*simNode{lk.via}
	for _, id := range r.task.Replicas {
		nodes = append(nodes, c.w.byID[id])
	}
	for _, o := range nodes {
		if o == nil || !o.up || o.paused || o.n == nil || c.w.blocked(lk.via.idx, o.idx) || c.w.blocked(o.idx, lk.via.idx) {
			return
		}
		lk.nodes = append(lk.nodes, o)
		lk.incs = append(lk.incs, o.incarnation)
	}
	lk.final, lk.finalSince = true, knew[n/2]
}

// replicasStayed reports whether the coordinator and every replica of lk's task
// stayed up, in the incarnation they had when lk was made, unpaused, and able to
// reach each other (no partition between them since), and no status message of
// the task was lost since.
func (c *checker) replicasStayed(lk *lookupRec) bool {
	for i, o := range lk.nodes {
		if !o.up || o.paused || o.incarnation != lk.incs[i] || c.pausedAt[o.idx] >= lk.at ||
			c.w.blocked(lk.via.idx, o.idx) || c.w.blocked(o.idx, lk.via.idx) || c.cutSince(lk.via.idx, o.idx, lk.at) {
			return false
		}
	}
	t, lost := c.statusLost[lk.id]
	return !lost || t < lk.at
}

// lookupAnswered checks V1 on a lookup's answer: it comes once; a final state it
// answers is true of the task (falseFinal); it is final when it must be
// (mustAnswerFinal).
func (c *checker) lookupAnswered(lk *lookupRec, st node.TaskStatus, err error) {
	if lk.answered {
		c.violate("V1", []string{lk.id}, []node.NodeID{lk.via.id}, "a lookup through %s was answered twice", lk.via.id)
		return
	}
	lk.answered = true
	if lk.final && err == nil && !st.State.Final() && c.replicasStayed(lk) {
		c.violate("V1", []string{lk.id}, []node.NodeID{lk.via.id}, "a lookup through %s made at %s answered %s, but a majority of the task's replicas knew it final since %s, and every replica could answer: none went down or paused, none was cut off from %s, no status message was lost",
			lk.via.id, time.Duration(lk.at), st.State, time.Duration(lk.finalSince), lk.via.id)
		return
	}
	if err != nil || !st.State.Final() {
		// An error (not enough replicas answered in time) is an honest answer, and
		// so is a state that is not final: the answer is the most advanced view of
		// the replicas it heard from, and the API promises no fresher read than
		// that (a replica cut off, or behind, may not know the end yet).
		return
	}
	c.lookupsFinal++
	if why := c.falseFinal(lk.id, st); why != "" {
		c.violate("V1", []string{lk.id}, []node.NodeID{lk.via.id}, "a lookup through %s answered %s, but %s", lk.via.id, st.State, why)
	}
}

// falseFinal says why a final state answered for a task is not true of it (empty:
// it is). What each state guarantees, and why that much and no more:
//
//   - succeeded: a delivery of the task answered 2xx before the answer. A replica
//     takes succeeded only from a webhook's 2xx (its own, or one an outcome message
//     reports), and the worker answered before any node heard of it.
//   - cancelled: a client asked for it (a cancel of the task, a purge or deletion of
//     its queue) before the answer, or an enqueue of it was refused as full (the
//     coordinator then tells the replicas that stored it that it is cancelled,
//     node/limits.go's refuseFull). The answer may come before the cancel's own: a
//     replica holds cancelled from when the cancel's outcome reaches it, and the
//     client hears of it once a majority did.
//   - dead and unknown: some node ended the task so (the checker saw it). Whether
//     that ending was right is Q4's question (no task dies early) and L3's; the
//     lookup only must not make one up. (unknown is not only at-most-once's: a
//     replica back after the others forgot a finished task ends it unknown, its
//     outcome known nowhere any more, lagging-replica.)
//
// Every final state answered must also have been taken by some node before: a
// lookup relays replicas' states, it does not decide.
func (c *checker) falseFinal(asked string, st node.TaskStatus) string {
	if st.Task == nil {
		return "the answer names no task"
	}
	if st.Task.ID != asked {
		return fmt.Sprintf("the answer is of another task, %s", st.Task.ID)
	}
	// By ID, as the nodes hold it: replicas of one name's ID may hold different
	// enqueues of it (one acknowledged, another from a failed attempt), and adopt
	// each other's outcome (L3 judges them by ID too).
	recs := c.byID[asked]
	if len(recs) == 0 {
		return "no node ever held that task"
	}
	var finals uint8
	success := false
	_, cancel := c.cancelReqs[asked]
	for _, r := range recs {
		finals |= r.finals
		success = success || r.success >= 0
		if _, ok := c.purgeReqs[r.task.Queue]; ok {
			cancel = true
		}
	}
	switch {
	case st.State == node.StateSucceeded && !success:
		return "no delivery of it had answered 2xx"
	case st.State == node.StateCancelled && !cancel:
		return fmt.Sprintf("no client had cancelled it, nor purged or deleted its queue %q, and no enqueue of it was refused", recs[0].task.Queue)
	case finals&(1<<st.State) == 0:
		return fmt.Sprintf("no node had ended it %s", st.State)
	}
	return ""
}

// cancelRequested notes a client's cancel of task id, or an enqueue of it refused as
// full; queueCancelRequested a purge or deletion of queue (each may cancel tasks).
func (c *checker) cancelRequested(id string) {
	if _, ok := c.cancelReqs[id]; !ok {
		c.cancelReqs[id] = c.w.now
	}
}

func (c *checker) queueCancelRequested(queue string) {
	if _, ok := c.purgeReqs[queue]; !ok {
		c.purgeReqs[queue] = c.w.now
	}
}
