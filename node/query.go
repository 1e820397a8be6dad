package node

import (
	"errors"
	"fmt"
	"math/bits"
	"time"
)

// Clients may ask any node about any task: placement is a function of the task ID
// and the ring, so every node can name a task's replicas and ask them.

// queryOp is a Lookup, Describe or Cancel this node coordinates for a client.
type queryOp struct {
	seq      uint64 // what alarms name it by (alarms.go)
	replicas []NodeID
	answered uint64 // replicas (by index) that answered
	found    TaskStatus
	held     bool
	attempts []DeliveryAttempt // Lookup, Describe: the answers' histories, merged
	reason   string            // Lookup, Describe: a final state's reason, from any answer
	describe bool              // Describe: hear every replica, even once the answer is final
	grace    bool              // Describe: the wait was cut to describeGrace
	states   []TaskState       // Cancel: state each answering replica reports after it
	// lookups (Lookup, Describe) or cancels (Cancel): the requests it answers, a
	// second identical query joining the first (startQuery).
	lookups []ReplyID
	cancels []ReplyID
	stop    alarmID
}

// describeGrace is how long a Describe whose answer is already final waits for the
// replicas that have not answered: their histories complete the story, but a
// replica that is down must not hold the answer back for a whole EnqueueTimeout.
const describeGrace = 300 * time.Millisecond

// Lookup finds a task on its replicas (this node's own copy when it holds one) and
// calls reply with the most advanced view: ErrNotFound when every replica answered
// without it, ErrOutcomeUnknown when some did not answer in time.
func (n *Node) Lookup(id string, reply func(TaskStatus, error)) {
	n.input(func() { n.lookup(id, n.await(statusReply(reply))) })
}

func (n *Node) lookup(id string, client ReplyID) {
	if st, ok := n.Task(id); ok && st.State.Final() {
		st.Attempts = historyOf(n.peek(id))
		n.answer(client, Answer{Status: st})
		return
	}
	op := &queryOp{seq: n.nextOpSeq(), replicas: n.Placement(id), lookups: []ReplyID{client}}
	n.startQuery(id, op, Message{Type: MsgStatus, TaskID: id})
}

func statusReply(reply func(TaskStatus, error)) func(Answer) {
	return func(a Answer) { reply(a.Status, a.Err) }
}

// Describe is Lookup for a client that wants the task's whole history (GET
// /v1/tasks/{id}): it asks every replica, this node's own final copy
// notwithstanding, and the answer's Attempts merge the deliveries each replica
// made. Once a final answer came it waits describeGrace at most for the others;
// otherwise it answers like Lookup.
func (n *Node) Describe(id string, reply func(TaskStatus, error)) {
	n.input(func() { n.describe(id, n.await(statusReply(reply))) })
}

func (n *Node) describe(id string, client ReplyID) {
	op := &queryOp{seq: n.nextOpSeq(), replicas: n.Placement(id), lookups: []ReplyID{client}, describe: true}
	n.startQuery(id, op, Message{Type: MsgStatus, TaskID: id})
}

// Cancel ends a task as cancelled on its replicas unless it is final already, and
// calls reply with the task's state once a majority of replicas answered: cancelled,
// or the final state that won. A delivery already in flight is not stopped, but its
// outcome no longer changes the task. ErrNotFound when a majority does not hold it.
func (n *Node) Cancel(id string, reply func(TaskState, error)) {
	n.input(func() { n.cancel(id, n.await(func(a Answer) { reply(a.State, a.Err) })) })
}

func (n *Node) cancel(id string, client ReplyID) {
	op := &queryOp{seq: n.nextOpSeq(), replicas: n.Placement(id), cancels: []ReplyID{client}}
	n.startQuery(id, op, Message{Type: MsgOutcome, TaskID: id, State: StateCancelled})
}

func (n *Node) startQuery(id string, op *queryOp, m Message) {
	key := queryKey(id, m.Type)
	if op.describe {
		key += describeSuffix
	}
	if old := n.queries[key]; old != nil {
		// A second identical query joins the first: answer both together.
		old.lookups = append(old.lookups, op.lookups...)
		old.cancels = append(old.cancels, op.cancels...)
		if op.lookups != nil {
			// The answers counted so far may predate this request by up to an
			// EnqueueTimeout (a replica down holds the query that long): ask every
			// replica again, and wait for the new answers, so that the joined
			// client's view is no older than its request. Without this a client
			// that polls through a node with one replica down read, for seconds,
			// the state the task had at its first poll, the node's own final copy
			// notwithstanding (V1 on seed 11 of at-most-once-faults with lookups).
			old.answered = 0
			for _, r := range old.replicas {
				m.To = r
				n.send(m)
			}
		}
		return
	}
	n.queries[key] = op
	n.armQuery(key, op, n.cfg.EnqueueTimeout)
	for _, r := range op.replicas {
		m.To = r
		n.send(m)
	}
}

// describeSuffix keeps a Describe apart from a Lookup of the same task: they end
// on different conditions.
const describeSuffix = "+describe"

// armQuery (re)sets op's deadline: after d it answers with what it has.
func (n *Node) armQuery(key string, op *queryOp, d time.Duration) {
	if op.stop != 0 {
		n.stopAlarm(op.stop)
	}
	op.stop = n.after(d, alarm{kind: alarmQueryTimeout, id: op.seq, key: key})
}

func queryKey(id string, t MsgType) string { return id + "/" + t.String() }

// finishQuery answers the client. timedOut: not every needed replica answered.
func (n *Node) finishQuery(op *queryOp, timedOut bool) {
	if op.stop != 0 {
		n.stopAlarm(op.stop)
	}
	lookup := func(st TaskStatus, err error) {
		for _, id := range op.lookups {
			n.answer(id, Answer{Status: st, Err: err})
		}
	}
	cancel := func(st TaskState, err error) {
		for _, id := range op.cancels {
			n.answer(id, Answer{State: st, Err: err})
		}
	}
	switch {
	case op.lookups != nil && op.held:
		st := op.found
		st.Attempts = op.attempts
		if st.Reason == "" && (st.State == StateDead || st.State == StateUnknown) {
			st.Reason = op.reason
		}
		lookup(st, nil)
	case op.lookups != nil && timedOut:
		lookup(TaskStatus{}, ErrOutcomeUnknown)
	case op.lookups != nil:
		lookup(TaskStatus{}, ErrNotFound)
	case op.cancels != nil:
		held, final := 0, StateNone
		for _, s := range op.states {
			if s != StateNone {
				held++
			}
			if s.Final() && s != StateCancelled && final == StateNone {
				final = s // a replica had it final before the cancel
			}
		}
		switch {
		case final != StateNone:
			cancel(final, nil)
		case held > 0 && !timedOut:
			cancel(StateCancelled, nil)
		case timedOut:
			cancel(StateNone, ErrOutcomeUnknown)
		default:
			cancel(StateNone, ErrNotFound)
		}
	}
}

func (n *Node) handleStatus(m Message) {
	resp := Message{Type: MsgStatusResp, To: m.From, TaskID: m.TaskID}
	if st, ok := n.Task(m.TaskID); ok {
		if n.cfg.Unsafe.ClaimedAnsweredSucceeded && st.State == StateClaimed {
			st.State = StateSucceeded
		}
		resp.Task, resp.State, resp.Attempt, resp.Retries, resp.Status, resp.NextETA = st.Task, st.State, st.Attempt, st.Retries, st.LastStatus, st.NextETA
		resp.Reason, resp.Attempts = st.Reason, historyOf(n.peek(m.TaskID))
	}
	n.send(resp)
}

// handleStatusResp counts a replica's answer for the Lookup and the Describe of
// the task in progress here.
func (n *Node) handleStatusResp(m Message) {
	for _, key := range []string{queryKey(m.TaskID, MsgStatus), queryKey(m.TaskID, MsgStatus) + describeSuffix} {
		if op := n.queries[key]; op != nil {
			n.statusAnswered(key, op, m)
		}
	}
}

func (n *Node) statusAnswered(key string, op *queryOp, m Message) {
	i := indexOf(op.replicas, m.From)
	if i < 0 || op.answered&(1<<i) != 0 {
		return
	}
	op.answered |= 1 << i
	if m.State != StateNone && m.Task != nil {
		st := TaskStatus{Task: m.Task, State: m.State, Attempt: m.Attempt, Retries: m.Retries, LastStatus: m.Status, NextETA: m.NextETA, Reason: m.Reason}
		if !op.held || moreAdvanced(st, op.found) {
			op.found, op.held = st, true
		}
		op.attempts = mergeAttempts(op.attempts, m.Attempts)
		if op.reason == "" {
			op.reason = m.Reason
		}
	}
	final := op.held && op.found.State.Final()
	switch {
	case bits.OnesCount64(op.answered) == len(op.replicas):
	case final && !op.describe:
		// A final answer is the answer; otherwise wait for every replica, so that
		// the client sees the most advanced view.
	case final && !op.grace:
		op.grace = true
		n.armQuery(key, op, describeGrace)
		return
	default:
		return
	}
	delete(n.queries, key)
	n.finishQuery(op, false)
}

// moreAdvanced orders views of one task: final beats not final, then later attempts.
func moreAdvanced(a, b TaskStatus) bool {
	if a.State.Final() != b.State.Final() {
		return a.State.Final()
	}
	if a.Attempt != b.Attempt {
		return a.Attempt > b.Attempt
	}
	return a.Retries > b.Retries
}

// cancelAnswered counts an OutcomeResp for a Cancel this node coordinates.
func (n *Node) cancelAnswered(m Message) bool {
	if len(n.queries) == 0 {
		return false // the common case, every OutcomeResp: no key to build
	}
	key := queryKey(m.TaskID, MsgOutcome)
	op := n.queries[key]
	if op == nil {
		return false
	}
	i := indexOf(op.replicas, m.From)
	if i < 0 || op.answered&(1<<i) != 0 {
		return true
	}
	op.answered |= 1 << i
	op.states = append(op.states, m.State)
	if m.State.Final() {
		n.ackCounted(Ack{Kind: RecOutcome, From: m.From, TaskID: m.TaskID})
	}
	if bits.OnesCount64(op.answered) >= len(op.replicas)/2+1 {
		delete(n.queries, key)
		n.finishQuery(op, false)
	}
	return true
}

func indexOf(list []NodeID, id NodeID) int {
	for i, x := range list {
		if x == id {
			return i
		}
	}
	return -1
}

// ErrNotDead: only a dead task can be re-queued.
var ErrNotDead = errors.New("only a dead task can be re-queued")

// RequeueRequest is the enqueue that re-queues a dead task (POST
// /v1/tasks/{id}/retry, and the simulator's requeue_task): a new task with the dead
// one's queue, URL, method, headers and body, and no name (the dead task keeps its
// name until its dedup window ends, and stays as it is, for the record). st is what
// Lookup found; a task that is not dead gives ErrNotDead.
func RequeueRequest(st TaskStatus) (EnqueueRequest, error) {
	if st.State != StateDead || st.Task == nil {
		return EnqueueRequest{}, fmt.Errorf("%w; this one is %s", ErrNotDead, st.State)
	}
	t := st.Task
	return EnqueueRequest{Queue: t.Queue, URL: t.URL, Method: t.Method, Headers: t.Headers, ContentType: t.ContentType, Body: t.Body}, nil
}
