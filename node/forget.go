package node

import "time"

// mayHaveForgotten reports whether t may be a task this node forgot after its dedup
// window (see forgetMark).
func (n *Node) mayHaveForgotten(t *Task) bool {
	return !n.forgetMark.IsZero() && !t.Created.After(n.forgetMark)
}

// Finished tasks are kept for the dedup window, then dropped. One timer per node
// serves them all (a timer per task cost about 300 bytes each, measured with the
// daemon: a third of what a finished task kept in memory).
//
// Forgetting must not bring a task back: a replica that was away for longer than
// the window comes back holding the task as scheduled, and the others, which
// forgot it, cannot tell it from one they never had. So every node keeps a
// watermark, forgetMark: the latest Created among the tasks it forgot (durable with
// its log). A task created no later than that may be one it forgot: it refuses to
// store it again (RejectForgotten) and answers a claim for it the same way, and a
// claimant that hears RejectForgotten knows the task ended elsewhere and ends it
// here as unknown. Invariant: a node never stores, as new, a task it may have
// forgotten after its dedup window. (A replica that missed a task's Store and
// forgot a later-created one meanwhile will not get that task back: it stays on
// the replicas that have it.)

// forgetItem is a final task to drop at a local time (Unix nanoseconds). It names
// the task by ID (or, once the task was frozen, by the raw key of its ID: tomb.go),
// not by entry: the entry may be frozen meanwhile, and thawed again.
//
// An entry armed for forgetting keeps in timerAt (which only the timer heap reads
// otherwise: schedule sets it anew) the place of its item in the queue's whole
// history: an item whose place its task's entry no longer names is stale (the
// entry was re-armed, disarmed or replaced since).
type forgetItem struct {
	id string
	at int64
}

// renameForget names e's item in the forget queue by raw, the raw key of its ID,
// so that the queue no longer keeps the ID's string.
func (n *Node) renameForget(e *entry, raw string) {
	i := int(e.timerAt) - n.forgetBase
	if i < n.forgetHead || i >= len(n.forgetQ) {
		return
	}
	if it := &n.forgetQ[i]; it.id == e.task.ID {
		it.id = raw
	}
}

// forgetting returns the entry the forget queue's item at place pos (in the
// queue's whole history) drops, nil when stale. An id of 16 bytes may be a raw
// key: the place tells which task it is.
func (n *Node) forgetting(it forgetItem, pos int) *entry {
	armed := func(e *entry) bool { return e != nil && e.timerKind == timerForget && e.timerAt == int64(pos) }
	if len(it.id) == 16 {
		if e := n.entryOf(idOfRaw(it.id)); armed(e) {
			return e
		}
	}
	if e := n.entryOf(it.id); armed(e) {
		return e
	}
	return nil
}

// queueForget schedules e (final, its timer just disarmed) to be dropped at at. The
// queue is in time order because every forget time is now + DedupWindow; were the
// clock to step back, an item would only wait for the ones queued before it.
func (n *Node) queueForget(e *entry, at time.Time) {
	if n.cfg.Unsafe.ForgetAtOnce {
		at = n.now() // negative controls only (Q3)
	}
	e.timerAt = int64(n.forgetBase + len(n.forgetQ))
	n.forgetQ = append(n.forgetQ, forgetItem{id: e.task.ID, at: at.UnixNano()})
	n.queueFreeze(e)
	if n.forgetTimer == 0 {
		n.armForgetTimer(at.UnixNano())
	}
}

func (n *Node) armForgetTimer(at int64) {
	n.forgetTimer = n.after(max(time.Duration(at-n.now().UnixNano()), 0), alarm{kind: alarmForget})
}

// sweepForgotten drops every queued entry whose time has come, then re-arms the
// timer for the next one.
func (n *Node) sweepForgotten() {
	n.forgetTimer = 0
	now := n.now()
	mark := n.forgetMark
	for n.forgetHead < len(n.forgetQ) {
		it := n.forgetQ[n.forgetHead]
		if it.at > now.UnixNano() {
			break
		}
		n.forgetQ[n.forgetHead] = forgetItem{}
		pos := n.forgetBase + n.forgetHead
		n.forgetHead++
		e := n.forgetting(it, pos)
		if e == nil {
			continue // re-armed, disarmed or replaced since
		}
		e.timerKind = timerNone
		if e.task.Created.After(n.forgetMark) {
			n.forgetMark = e.task.Created
		}
		n.onTimer(e, timerForget)
	}
	if n.forgetMark.After(mark) && n.env.Storage.Durable() {
		// Durable before the forgotten tasks' records can be compacted away.
		n.persist(nil, n.forgetRecord())
		n.superseded++
	}
	// Reclaim the consumed prefix once it is most of the array.
	if n.forgetHead > 1024 && n.forgetHead*2 > len(n.forgetQ) {
		n.forgetQ = append(n.forgetQ[:0], n.forgetQ[n.forgetHead:]...)
		n.forgetBase += n.forgetHead
		n.forgetHead = 0
	}
	if n.forgetHead < len(n.forgetQ) {
		n.armForgetTimer(n.forgetQ[n.forgetHead].at)
	}
}

// CompactionPolicy says which records a log compaction keeps. Take it on the node's
// goroutine (CompactionPolicy takes the tasks forgotten since the last call, as
// TakeForgotten does); Keep may then run on any goroutine: it reads only the
// snapshot.
type CompactionPolicy struct {
	forgotten map[string]bool
	settings  map[string]uint64 // queue -> version held when the policy was taken
	floor     uint64            // settingsFloor when the policy was taken
	schedules map[string]uint64 // schedule -> version held when the policy was taken
	mark      time.Time
	// The roster's records held when the policy was taken (leader.go): the epoch,
	// the lease granted, and the roster stored with its ballot.
	rosterEpoch   uint64
	lease         leaseAcceptor
	acceptedEpoch uint64
	acceptedBal   uint64
	// Worth reports whether a compaction would drop anything: tasks were forgotten,
	// or enough records were superseded since the last policy.
	Worth bool
}

// supersededWorth is how many superseded records (old settings, old forget marks)
// make a compaction worth it without any forgotten task.
const supersededWorth = 1000

// CompactionPolicy returns the policy for a compaction now.
func (n *Node) CompactionPolicy() CompactionPolicy {
	p := CompactionPolicy{forgotten: map[string]bool{}, settings: map[string]uint64{}, schedules: map[string]uint64{}, mark: n.forgetMark, floor: n.settingsFloor,
		rosterEpoch: n.roster.Epoch, lease: n.leaseAcc, acceptedBal: n.acceptedBallot}
	if n.accepted != nil {
		p.acceptedEpoch = n.accepted.Epoch
	}
	for _, id := range n.TakeForgotten() {
		p.forgotten[id] = true
	}
	for name, s := range n.settings {
		p.settings[name] = s.Version
	}
	for name, s := range n.schedules {
		p.schedules[name] = s.Version
	}
	p.Worth = len(p.forgotten) > 0 || n.superseded >= supersededWorth
	n.superseded = 0
	return p
}

// Keep reports whether a compaction keeps r: every record of a task not forgotten,
// the newest setting of each queue and of each schedule (a deletion included) and
// the newest forget mark, the newest roster, lease grant and stored roster (or
// newer ones, logged after the policy was taken); not the settings of queues whose
// tombstone was dropped.
func (p CompactionPolicy) Keep(r *Record) bool {
	switch r.Kind {
	case RecSetting:
		if r.Setting == nil {
			return true
		}
		held, ok := p.settings[r.Setting.Queue]
		if !ok {
			// Not held: a dropped tombstone (or older) unless logged since.
			return r.Setting.Version > p.floor
		}
		return r.Setting.Version >= held
	case RecSchedule:
		return r.Schedule == nil || r.Schedule.Version >= p.schedules[r.Schedule.Name]
	case RecForgotten:
		return !r.NextETA.Before(p.mark)
	case RecRoster:
		return r.Roster == nil || r.Roster.Epoch >= p.rosterEpoch
	case RecLeaseGrant:
		return r.Attempt > p.lease.promised || r.Attempt == p.lease.promised && !r.LeaseEnd.Before(p.lease.leaseEnd)
	case RecRosterAccept:
		return r.Roster == nil || r.Roster.Epoch > p.acceptedEpoch || r.Roster.Epoch == p.acceptedEpoch && r.Attempt >= p.acceptedBal
	}
	id := r.TaskID
	if r.Task != nil {
		id = r.Task.ID
	}
	return !p.forgotten[id]
}
