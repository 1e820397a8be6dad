package node

// The naive protocol is the original Miyamoto's: replica k fires at eta + k×offset
// unless another replica told it to stand down. It has no claims, so a lost or late
// Cancel makes two replicas deliver. It is kept only as the simulator's negative
// control; never run it in production.

func (n *Node) naiveFire(e *entry) {
	if e.state.Final() || e.naiveStoodDown || e.delivering {
		return
	}
	for _, r := range e.task.Replicas {
		if r != n.cfg.ID {
			n.send(Message{Type: MsgNaiveCancel, To: r, TaskID: e.task.ID})
		}
	}
	// Each replica counts attempts on its own: the naive scheme has no ballots.
	e.ext().claiming = e.promised + 1
	e.ext().promised = e.claiming
	e.ext().holder = n.cfg.ID
	e.ext().delivering = true
	n.setState(e, StateClaimed)
	n.recordStart(e)
	n.env.Dispatcher.Dispatch(Delivery{Task: e.task, Attempt: e.claiming, Retries: e.retries, Deadline: n.queue(e.task.Queue).DispatchDeadline, PreviousStatus: e.lastStatus})
}

func (n *Node) naiveResult(e *entry, r DeliveryResult) {
	if r.OK() {
		n.finish(e, StateSucceeded, r.Status)
		return
	}
	e.ext().retries++
	retry := n.queue(e.task.Queue).Retry
	now := n.now()
	if retry.Exhausted(e.retries, now.Sub(e.task.Created)) {
		n.finish(e, StateDead, r.Status)
		return
	}
	next := now.Add(max(retry.Backoff(e.retries), r.RetryAfter))
	e.nextETA = next
	n.setState(e, StateScheduled)
	n.armFire(e)
	for _, rep := range e.task.Replicas {
		if rep != n.cfg.ID {
			n.send(Message{Type: MsgNaivePushBack, To: rep, TaskID: e.task.ID, NextETA: next, Retries: e.retries, Status: e.lastStatus})
		}
	}
}

func (n *Node) handleNaiveCancel(m Message) {
	e := n.entryOf(m.TaskID)
	if e == nil || e.state.Final() || e.delivering {
		return
	}
	e.ext().naiveStoodDown = true
	n.disarm(e)
	n.setState(e, StateClaimed)
}

func (n *Node) handleNaivePushBack(m Message) {
	e := n.entryOf(m.TaskID)
	if e == nil || e.state.Final() || e.delivering {
		return
	}
	e.ext().naiveStoodDown = false
	e.ext().retries = max(e.retries, m.Retries)
	e.ext().lastStatus = m.Status
	if m.NextETA.After(e.nextETA) {
		e.nextETA = m.NextETA
	}
	n.setState(e, StateScheduled)
	n.armFire(e)
}
