package node

// What a node does once a log sync it waited for has ended is data too, a
// syncAction, not a function (see alarms.go on why: a snapshot must write down
// every sync waiting). Each answers a peer once its request's record is durable.

// syncKind says what a syncAction does.
type syncKind uint8

const (
	syncSend       syncKind = iota + 1 // send msg
	syncOutcomeAck                     // answer an Outcome with what the task is then (to, taskID, e)
)

// syncAction is what to do once a sync ends; nil is nothing.
type syncAction struct {
	kind   syncKind
	msg    Message // syncSend
	to     NodeID  // syncOutcomeAck: who sent the Outcome
	taskID string  // syncOutcomeAck
	e      *entry  // syncOutcomeAck: the entry held when the Outcome came
	// task (syncOutcomeAck): the list in force, sent back to an Outcome of unknown
	// sent under a list a move replaced, so that its sender learns whom to ask.
	task *Task
}

// sendThen is the action that sends m (its own copy).
func sendThen(m Message) *syncAction { return &syncAction{kind: syncSend, msg: m} }

// then is the action that acknowledges a's Store.
func (a storeAck) then() *syncAction {
	return sendThen(a.answer(RejectNone, StateNone))
}

// afterSynced does a, now that what it waited for is durable.
func (n *Node) afterSynced(a *syncAction) {
	if a == nil {
		return
	}
	switch a.kind {
	case syncSend:
		if a.msg.Type == MsgClaimResp && a.msg.Granted {
			n.sendGrant(a.msg)
			return
		}
		n.send(a.msg)
	case syncOutcomeAck:
		// The state now: e may have been frozen (tomb.go) before the sync ended.
		n.send(Message{Type: MsgOutcomeResp, To: a.to, TaskID: a.taskID, State: n.stateNow(a.e), Task: a.task})
	}
}

// sendGrant sends a grant whose record is now durable, unless the task became final
// here while the record was on its way to disk: then it tells the claimant how the
// task ended instead. Holding back a grant is always safe; sending it would let the
// claimant deliver a task whose success this acceptor already knows, making the
// success's Done, which had reached a majority by then, count for nothing (S3, seed
// 80 of replace-power-loss: an Outcome came between a claim and its grant's sync).
func (n *Node) sendGrant(m Message) {
	if e := n.peek(m.TaskID); e != nil && e.state.Final() {
		m.Granted, m.Task, m.Promised = false, nil, 0
		m = finalAnswer(m, e)
	}
	n.send(m)
}
