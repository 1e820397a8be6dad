package node

import "time"

// Replies: what the node owes a client is data, a ReplyID, not a function (see
// alarms.go on why: a snapshot of the node must write down every operation in
// flight, with whom it answers). An operation keeps the IDs of the requests it
// answers; when it ends, the node calls Env.Replies with each and the Answer.
//
// The API that takes reply functions (Enqueue, Lookup, SetQueue, ...) is a thin
// adapter over this: when Env.Replies is nil the node installs replyFuncs, which
// keeps each function by its ID outside the node's state, and each call of that
// API numbers its request and hands the node the number.

// ReplyID names a request whose answer the node owes; 0 is nobody.
type ReplyID uint64

// Answer is the node's answer to a request: the fields of the request's kind are
// set (Enqueue for Enqueue; Status for Lookup and Describe; State for Cancel;
// Setting and Purged for queue changes; List and Missing for ListCluster; Counts for
// CountCluster; Roster for Join and Remove; Schedule for schedule changes), and Err
// when it failed (an enqueue's error is Enqueue.Err).
type Answer struct {
	Enqueue  EnqueueResult
	Status   TaskStatus
	State    TaskState
	Setting  QueueSetting
	Purged   int
	List     []TaskStatus
	Missing  []NodeID
	Counts   ClusterCounts
	Roster   *Roster
	Schedule Schedule
	Err      error
}

// Replies takes the node's answers to clients' requests. Reply is called once per
// request the node took, as part of some input (the request's own or a later one);
// it must not call back into the node.
type Replies interface {
	Reply(id ReplyID, a Answer)
}

// replyFuncs is the Replies behind the API that takes functions: each function by
// the ID its request was given. An ID it does not know (a request a restored node
// owes to a client of the process it was snapshotted in) is dropped.
type replyFuncs struct {
	fns map[ReplyID]func(Answer)
}

func (r *replyFuncs) Reply(id ReplyID, a Answer) {
	if f, ok := r.fns[id]; ok {
		delete(r.fns, id)
		f(a)
	}
}

// await numbers a request whose answer goes to f. It panics when the node's
// Env has its own Replies: such a node takes requests by their IDs only.
func (n *Node) await(f func(Answer)) ReplyID {
	if n.funcs == nil {
		panic("node: a reply function given to a node whose Env.Replies numbers its requests")
	}
	n.replySeq++
	id := ReplyID(n.replySeq)
	n.funcs.fns[id] = f
	return id
}

// The requests by ID: each is the method of the same name without For, answered
// through Env.Replies with id (the caller's number for it, never 0) instead of a
// reply function. A node whose Env.Replies is nil takes reply functions only.

// EnqueueFor is Enqueue answered to id.
func (n *Node) EnqueueFor(id ReplyID, req EnqueueRequest) {
	n.byID(id, func() { n.enqueue(req, id) })
}

// LookupFor is Lookup answered to id.
func (n *Node) LookupFor(id ReplyID, taskID string) { n.byID(id, func() { n.lookup(taskID, id) }) }

// DescribeFor is Describe answered to id.
func (n *Node) DescribeFor(id ReplyID, taskID string) { n.byID(id, func() { n.describe(taskID, id) }) }

// CancelFor is Cancel answered to id.
func (n *Node) CancelFor(id ReplyID, taskID string) { n.byID(id, func() { n.cancel(taskID, id) }) }

// SetQueueFor is SetQueue answered to id.
func (n *Node) SetQueueFor(id ReplyID, name string, cfg QueueConfig, explicit SettingFields, paused bool) {
	n.byID(id, func() { n.setQueue(name, cfg, explicit, paused, id) })
}

// PurgeQueueFor is PurgeQueue answered to id.
func (n *Node) PurgeQueueFor(id ReplyID, name string) { n.byID(id, func() { n.purgeQueue(name, id) }) }

// DeleteQueueFor is DeleteQueue answered to id.
func (n *Node) DeleteQueueFor(id ReplyID, name string, purge bool) {
	n.byID(id, func() { n.deleteQueue(name, purge, id) })
}

// ListClusterFor is ListCluster answered to id.
func (n *Node) ListClusterFor(id ReplyID, queue string, state TaskState, after string, limit int) {
	n.byID(id, func() { n.listCluster(queue, state, after, limit, id) })
}

// CountClusterFor is CountCluster answered to id.
func (n *Node) CountClusterFor(id ReplyID) { n.byID(id, func() { n.countCluster(id) }) }

// JoinFor is Join answered to id.
func (n *Node) JoinFor(id ReplyID, m Member) { n.byID(id, func() { n.join(m, id) }) }

// RemoveFor is Remove answered to id.
func (n *Node) RemoveFor(id ReplyID, member NodeID) { n.byID(id, func() { n.remove(member, id) }) }

// PutScheduleFor is PutSchedule answered to id.
func (n *Node) PutScheduleFor(id ReplyID, s Schedule) { n.byID(id, func() { n.putSchedule(s, id) }) }

// DeleteScheduleFor is DeleteSchedule answered to id.
func (n *Node) DeleteScheduleFor(id ReplyID, name string) {
	n.byID(id, func() { n.deleteSchedule(name, id) })
}

// byID runs a request by ID as an input; it panics when the node takes reply
// functions (Env.Replies nil): their numbers and the caller's would mix.
func (n *Node) byID(id ReplyID, f func()) {
	if n.funcs != nil || id == 0 {
		panic("node: a request by ID needs Env.Replies, and an ID other than 0")
	}
	n.input(f)
}

// answer gives the client of request id its answer (none for 0).
func (n *Node) answer(id ReplyID, a Answer) {
	if id != 0 {
		n.env.Replies.Reply(id, a)
	}
}

// enqueueClient is who an enqueue answers: a client's request, or a schedule's
// tick (a schedule run's enqueue of the tick due at tick.at).
type enqueueClient struct {
	id   ReplyID
	tick *tickRef
}

// tickRef names a schedule's tick: its run (name, seq) and due time.
type tickRef struct {
	name string
	seq  uint64
	at   time.Time
}

// answerEnqueue answers c the enqueue of t.
func (n *Node) answerEnqueue(c enqueueClient, t *Task, res EnqueueResult) {
	if c.tick != nil {
		n.tickAnswered(*c.tick, t, res)
		return
	}
	n.answer(c.id, Answer{Enqueue: res})
}
