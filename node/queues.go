package node

import (
	"errors"
	"hash/fnv"
	"slices"
	"time"
)

// Queue settings are replicated to every member: a change made through any node
// gets the next version, is sent to all members, and the highest (Version, Origin)
// wins everywhere. Members that missed it catch up through gossip (gossip.go): every
// SyncInterval each node sends a digest of its settings to one random member, and
// what differs is repaired a chunk at a time.
//
// Rate limits and concurrency caps hold for the whole cluster: each limited queue
// has one token node (placement of the queue name on the ring), which keeps the
// queue's token bucket and its count of deliveries in flight. A claimant that won a
// claim asks the token node for a permit before it delivers; a denied permit releases
// the claim and tries again when a token is due. While the token node is
// unreachable, the queue's deliveries wait: the limit is never exceeded, at the cost
// of availability. A token node that restarts without memory grants nothing for a
// lease, so that permits it gave before cannot be handed out twice.

// ErrNotEveryMember: a queue setting was applied, but not every member acknowledged it
// in time; it keeps spreading by gossip.
var ErrNotEveryMember = errors.New("not every member acknowledged the setting in time; it keeps spreading, retry to confirm")

// ErrSuperseded: another change of the queue, newer by its version, reached a member
// before this one did. A change is a whole setting, so the newer one stands there and
// everywhere, and this one does not: the client reads the queue and changes it again.
// (Versions are hybrid clocks: two changes made within the clocks' offset of each
// other through nodes that had not heard of one another are ordered by version, not
// by when they were made.)
var ErrSuperseded = errors.New("another change of this queue, newer by its version, replaced this one before every member had it: read the queue's settings and change them again")

// pausePoll is how often a replica of a paused queue's task looks again.
const pausePoll = time.Second

// queue returns the settings in force for a queue on this node.
func (n *Node) queue(name string) QueueConfig {
	if s := n.settings[name]; s != nil && !s.Deleted {
		return s.Config
	}
	return n.cfg.DefaultQueue
}

func (n *Node) queuePaused(name string) bool {
	if n.cfg.Unsafe.IgnorePause {
		return false // negative controls only (Q5)
	}
	s := n.settings[name]
	return s != nil && s.Paused && !s.Deleted
}

// QueueSetting returns this node's view of a queue's settings; ok is false when the
// queue runs on the defaults because it was never set (s is then the defaults) or
// its settings were deleted (s is then the tombstone, with the defaults).
func (n *Node) QueueSetting(name string) (s QueueSetting, ok bool) {
	if p := n.settings[name]; p != nil {
		return *p, !p.Deleted
	}
	return QueueSetting{Queue: name, Config: n.cfg.DefaultQueue}, false
}

// QueueNames lists every queue this node knows: set ones (not deleted) and those of
// the tasks it holds, sorted.
func (n *Node) QueueNames() []string {
	seen := map[string]bool{}
	for name, s := range n.settings {
		if !s.Deleted {
			seen[name] = true
		}
	}
	for k := range n.counts {
		seen[k.queue] = true
	}
	return sortedKeys(seen)
}

type setOp struct {
	seq     uint64 // what alarms name it by (alarms.go)
	setting *QueueSetting
	acks    map[NodeID]bool
	// cancelled sums what the members reported their adoption of the setting's
	// purge cancelled (each task once: by its first replica).
	cancelled int
	client    ReplyID
	stop      alarmID
	// purge: the change is a purge (PurgeQueue), which a newer setting keeps (a
	// member keeps the latest purge time of every setting it adopts).
	purge bool
}

// SetQueue changes a queue's settings (and pause) cluster-wide: cfg is the whole
// new configuration, explicit the fields of it a client set. reply is called once
// every member acknowledged (nil), or after EnqueueTimeout with ErrNotEveryMember.
func (n *Node) SetQueue(name string, cfg QueueConfig, explicit SettingFields, paused bool, reply func(QueueSetting, error)) {
	n.input(func() { n.setQueue(name, cfg, explicit, paused, n.await(func(a Answer) { reply(a.Setting, a.Err) })) })
}

func (n *Node) setQueue(name string, cfg QueueConfig, explicit SettingFields, paused bool, client ReplyID) {
	n.changeQueue(QueueSetting{Queue: name, Config: cfg, Explicit: explicit, Paused: paused}, client)
}

// PurgeQueue cancels every task of the queue created before now, cluster-wide; the
// answer comes as for SetQueue, with the number of tasks the purge cancelled: each
// member counts those it cancelled of which it is the first replica, so with every
// member answering each task is counted once. It is a lower bound when a first
// replica never stored its task, or learnt the purge from another member before
// this node's request reached it; a repeated purge counts none of the tasks an
// earlier one cancelled.
func (n *Node) PurgeQueue(name string, reply func(QueueSetting, int, error)) {
	n.input(func() { n.purgeQueue(name, n.await(settingReply(reply))) })
}

func (n *Node) purgeQueue(name string, client ReplyID) {
	cur, _ := n.QueueSetting(name)
	cur.PurgedBefore = n.now()
	if op := n.changeQueue(cur, client); op != nil {
		op.purge = true
	}
}

// DeleteQueue removes a queue's settings cluster-wide: it runs on the defaults,
// unpaused, and is no longer listed unless tasks of it are held. It is a setting
// like any other (a tombstone, see QueueSetting.Deleted), so it reaches every
// member and survives restarts the same way. With purge, the same change purges the
// queue too, and the answer counts the tasks cancelled as PurgeQueue's does.
func (n *Node) DeleteQueue(name string, purge bool, reply func(QueueSetting, int, error)) {
	n.input(func() { n.deleteQueue(name, purge, n.await(settingReply(reply))) })
}

func (n *Node) deleteQueue(name string, purge bool, client ReplyID) {
	s := QueueSetting{Queue: name, Config: n.cfg.DefaultQueue, Deleted: true}
	if purge {
		s.PurgedBefore = n.now()
	}
	n.changeQueue(s, client)
}

// changeQueue makes want (its queue, config, explicit fields, pause, deletion and
// purge) the queue's setting cluster-wide under a new version.
func settingReply(reply func(QueueSetting, int, error)) func(Answer) {
	return func(a Answer) { reply(a.Setting, a.Purged, a.Err) }
}

func (n *Node) changeQueue(want QueueSetting, client ReplyID) *setOp {
	reply := func(s QueueSetting, purged int, err error) {
		n.answer(client, Answer{Setting: s, Purged: purged, Err: err})
	}
	if err := want.Config.Validate(); err != nil {
		reply(QueueSetting{}, 0, err)
		return nil
	}
	if !want.Deleted {
		if err := n.admitQueue(want.Queue); err != nil {
			reply(QueueSetting{}, 0, err)
			return nil
		}
	}
	// Versions are hybrid: above every version seen here and at least the local
	// clock in milliseconds, so that a later change wins even when it is made
	// through a node that has not heard of the earlier one yet.
	s := &want
	s.Version = max(n.maxVersion+1, uint64(max(n.now().UnixMilli(), 0)))
	s.Origin = n.cfg.ID
	if cur := n.settings[s.Queue]; cur != nil && s.PurgedBefore.Before(cur.PurgedBefore) {
		s.PurgedBefore = cur.PurgedBefore // a purge, once made, stays
	}
	op := &setOp{seq: n.nextOpSeq(), setting: s, acks: map[NodeID]bool{}, client: client}
	n.setOps = append(n.setOps, op)
	op.stop = n.after(n.cfg.EnqueueTimeout, alarm{kind: alarmQueueSetTimeout, id: op.seq})
	for _, m := range n.members {
		n.send(Message{Type: MsgQueueSet, To: m, Setting: s})
	}
	return op
}

func (n *Node) finishSet(op *setOp, err error) {
	for i, o := range n.setOps {
		if o == op {
			n.setOps = append(n.setOps[:i], n.setOps[i+1:]...)
			n.stopAlarm(op.stop)
			n.answer(op.client, Answer{Setting: *op.setting, Purged: op.cancelled, Err: err})
			return
		}
	}
}

func (n *Node) handleQueueSet(m Message) {
	s := m.Setting
	if s == nil || s.Config.Validate() != nil {
		return
	}
	cancelled := n.adoptSetting(s)
	cur := n.settings[s.Queue]
	// Invariant: a member acknowledges a setting only once its record is durable, so
	// that a change answered 200 (every member acknowledged) survives a power loss of
	// every member: an at-most-once queue never turns at-least-once.
	n.afterSync(sendThen(Message{Type: MsgQueueSetResp, To: m.From, Setting: cur, Retries: cancelled}))
}

// adoptSetting keeps s if it is newer than what this node has, and logs it. It
// returns how many tasks whose first replica this node is its purge cancelled.
func (n *Node) adoptSetting(s *QueueSetting) (cancelled int) {
	c, ok := n.keepSetting(s)
	if !ok {
		return 0
	}
	if n.env.Storage.Durable() && !n.cfg.Unsafe.SettingsNotLogged { // negative controls only (Q6)
		n.env.Storage.Append(Record{Kind: RecSetting, Setting: c})
		n.superseded++
	}

	if !c.PurgedBefore.IsZero() {
		cancelled = n.purge(c.Queue, c.PurgedBefore)
	}
	if o, ok := n.env.Observer.(QueueObserver); ok {
		o.QueueChanged(n.cfg.ID, *c)
	}
	if n.gossipStop == 0 {
		n.armGossip()
	}
	n.kickTokenLease()
	return cancelled
}

// keepSetting makes s this node's setting for its queue if it is newer than the one
// held (a purge, once made, stays), and returns the setting now held.
func (n *Node) keepSetting(s *QueueSetting) (*QueueSetting, bool) {
	n.maxVersion = max(n.maxVersion, s.Version)
	cur := n.settings[s.Queue]
	if !s.newer(cur) {
		return nil, false
	}
	if cur == nil && (n.refusedByFloor(s) || n.tombstoneExpired(s)) {
		return nil, false // its tombstone was (or would be) dropped: see queuecap.go
	}
	c := *s
	if cur != nil && c.PurgedBefore.Before(cur.PurgedBefore) {
		c.PurgedBefore = cur.PurgedBefore
	}
	if cur != nil && cur.Deleted {
		n.tombstones--
	}
	if c.Deleted {
		n.tombstones++
		n.maybeArmTombstoneSweep()
	}
	n.settings[s.Queue] = &c
	n.markQueue(s.Queue, refSetting, !c.Deleted)
	return &c, true
}

// --- learning the settings at start ----------------------------------------------

// A node must know a queue's settings before it coordinates, delivers or grants
// permits for a task of that queue: otherwise it would act under the defaults, and
// an at-most-once queue would turn at-least-once. A node with durable storage that
// lost nothing loads them from its log. A node without (or whose log lost records)
// asks every other member for theirs at start, and until it has heard from all of
// them, or from a majority once EnqueueTimeout has passed, it is not Ready: it
// answers enqueues ErrStarting, fires no task and grants no permit (it still stores
// tasks as a replica: a task carries its delivery mode). A change answered 200 was
// acknowledged by every member, so any majority includes one that holds it, unless a
// majority lost their state at once (then the settings are lost, like the tasks).

// ErrStarting: the node is still learning the queue settings from the other members.
var ErrStarting = errors.New("the node is starting: it is learning the queue settings from the other members; retry shortly")

// settingsSync is the state of the start-up round that learns the settings.
type settingsSync struct {
	seq      uint64 // what alarms name it by (alarms.go)
	round    uint64
	started  time.Time
	answered map[NodeID]bool
	// got counts, per member, the settings received in answer to its latest ask
	// (asks, echoed in each answer's Attempt) by queue, and want what that answer's
	// end marker said it sent.
	//
	// Invariant: a member counts as answered only when one answer, whole, arrived:
	// its end marker and every setting it counted. Counting one answer's settings
	// against another's marker let a node restarted without memory end its round
	// missing a setting it had acknowledged (Q6: seed 309 of settings-learning-chain,
	// an end marker "1" from before the member learnt a second setting, then only
	// that second setting of a later answer).
	got  map[NodeID]map[string]bool
	want map[NodeID]int
	ask  map[NodeID]uint64 // the latest ask a member's answer echoed
	asks uint64
}

// startSettingsSync asks every other member for its settings, again every
// pausePoll until done.
func (n *Node) startSettingsSync() {
	// The round is the start time: one round per incarnation, and no draw from the
	// random source (which would shift every ID drawn after it).
	n.sync = &settingsSync{seq: n.nextOpSeq(), round: uint64(n.bootTime.UnixNano()) | 1, started: n.now(), answered: map[NodeID]bool{n.cfg.ID: true},
		got: map[NodeID]map[string]bool{}, want: map[NodeID]int{}, ask: map[NodeID]uint64{}}
	n.askSettings()
}

func (n *Node) askSettings() {
	sy := n.sync
	if sy == nil {
		return
	}
	sy.asks++
	for _, m := range n.members {
		if !sy.answered[m] {
			n.send(Message{Type: MsgQueueSync, To: m, Promised: sy.round, Attempt: sy.asks})
		}
	}
	n.after(pausePoll, alarm{kind: alarmSettingsPoll, id: sy.seq})
}

// handleQueueSync answers a member that is learning the settings: every setting
// this node holds, then an end marker with their count.
func (n *Node) handleQueueSync(m Message) {
	names := sortedKeys(n.settings)
	for _, name := range names {
		n.send(Message{Type: MsgQueueSyncResp, To: m.From, Promised: m.Promised, Attempt: m.Attempt, Setting: n.settings[name]})
	}
	// Schedules are learnt the same way, in the same round (schedule.go).
	scheds := sortedKeys(n.schedules)
	for _, name := range scheds {
		n.send(Message{Type: MsgQueueSyncResp, To: m.From, Promised: m.Promised, Attempt: m.Attempt, Schedule: n.schedules[name]})
	}
	n.send(Message{Type: MsgQueueSyncResp, To: m.From, Promised: m.Promised, Attempt: m.Attempt, Retries: len(names) + len(scheds)})
}

func (n *Node) handleQueueSyncResp(m Message) {
	sy := n.sync
	if sy == nil || m.Promised != sy.round || sy.answered[m.From] || !slices.Contains(n.members, m.From) {
		return
	}
	// An answer to a later ask starts the count again; one to an earlier ask is
	// still adopted, but not counted.
	current := m.Attempt >= sy.ask[m.From]
	if m.Attempt > sy.ask[m.From] {
		sy.ask[m.From] = m.Attempt
		delete(sy.got, m.From)
		delete(sy.want, m.From)
	}
	// got is keyed by queue name, and by "\x00" and the name for a schedule (no
	// queue name starts so).
	got := func(key string) {
		if !current {
			return
		}
		if sy.got[m.From] == nil {
			sy.got[m.From] = map[string]bool{}
		}
		sy.got[m.From][key] = true
	}
	if s := m.Setting; s != nil {
		if s.Config.Validate() != nil {
			return
		}
		n.adoptSetting(s)
		got(s.Queue)
	} else if s := m.Schedule; s != nil {
		if s.Name == "" {
			return
		}
		n.adoptSchedule(s)
		got("\x00" + s.Name)
	} else if current {
		sy.want[m.From] = max(m.Retries, 0)
	}
	if w, ok := sy.want[m.From]; ok && len(sy.got[m.From]) >= w {
		sy.answered[m.From] = true
		n.maybeSettingsSynced()
	}
}

// maybeSettingsSynced ends the round once every member answered, or a majority did
// and EnqueueTimeout has passed.
func (n *Node) maybeSettingsSynced() {
	sy := n.sync
	if sy == nil {
		return
	}
	answered := membersIn(n.members, sy.answered)
	all := answered == len(n.members)
	majority := answered >= len(n.members)/2+1 && !n.now().Before(sy.started.Add(n.cfg.EnqueueTimeout))
	if all || majority {
		n.sync = nil
	}
}

// settingsKnown reports whether the node knows the queue settings (see above).
func (n *Node) settingsKnown() bool { return n.sync == nil }

func (n *Node) handleQueueSetResp(m Message) {
	s := m.Setting
	if s == nil {
		return
	}
	// Invariant: a change counts as held by a member only when the member answers
	// with that very change, or with a newer one that keeps it (a purge). An answer
	// with a newer change means this one lost there, and so everywhere: it is ended
	// with ErrSuperseded, never answered as acknowledged (a pause made through a
	// node whose clock ran behind, overtaken by a resume made 100 ms earlier but
	// versioned later, was answered 200 while the queue ran: Q5 on
	// pause-loses-to-earlier-resume).
	for i := 0; i < len(n.setOps); {
		op := n.setOps[i]
		if op.setting.Queue != s.Queue || op.setting.newer(s) {
			i++ // another queue's, or an answer older than this change
			continue
		}
		same := s.Version == op.setting.Version && s.Origin == op.setting.Origin
		if !same && !(op.purge && !s.PurgedBefore.Before(op.setting.PurgedBefore)) {
			n.finishSet(op, ErrSuperseded) // removes it from n.setOps
			continue
		}
		if !op.acks[m.From] && same {
			op.cancelled += max(m.Retries, 0) // once per member: messages may be repeated
		}
		op.acks[m.From] = true
		n.ackCounted(Ack{Kind: RecSetting, From: m.From, Setting: s})
		if membersIn(n.members, op.acks) == len(n.members) {
			n.finishSet(op, nil)
			continue
		}
		i++
	}
}

// purge cancels the tasks of a queue created before a time, here, and returns how
// many of those it cancelled this node is the first replica of.
func (n *Node) purge(queue string, before time.Time) (first int) {
	n.thawColdOf(queue) // a purge may cancel them (cold.go)
	for _, id := range sortedKeys(n.tasks) {
		e := n.tasks[id]
		if e.task.Queue == queue && e.task.Created.Before(before) && !e.state.Final() {
			if e.task.Rank(n.cfg.ID) == 0 {
				first++
			}
			n.adoptFinal(e, StateCancelled, nil)
		}
	}
	return first
}

// QueueObserver, when the Env's Observer implements it, is told whenever this node
// adopts new settings for a queue.
type QueueObserver interface {
	QueueChanged(node NodeID, s QueueSetting)
}

// --- permits: the token node's side -------------------------------------------

// tokenNode is the member that keeps a queue's bucket and concurrency count.
func (n *Node) tokenNode(queue string) NodeID { return TokenNode(n.members, queue) }

// TokenNode returns the token node of a queue among members (sorted by ID).
func TokenNode(members []NodeID, queue string) NodeID {
	h := fnv.New64a()
	h.Write([]byte(queue))
	return members[h.Sum64()%uint64(len(members))]
}

type permitKey struct {
	task    string
	attempt uint64
}

// bucket is a limited queue's state on its token node. Invariant: tokens ≤ BucketSize
// and len(inflight) ≤ MaxConcurrent whenever a permit is granted.
type bucket struct {
	// The rate is kept as GCRA, the token bucket's exact equivalent: tat is the
	// theoretical arrival time of the next delivery; one may start at now if
	// now ≥ tat − (bucket_size−1)/rate, and each start moves tat on by 1/rate.
	// A denied task is given a slot (and tat moves past it), so that claimants come
	// back one by one and each finds its turn.
	tat      time.Time
	slots    map[string]time.Time    // task -> its reserved start time
	inflight map[permitKey]time.Time // permit -> local time it lapses
	// woken: the slots of the concurrency cap kept for held asks that were told to
	// come now (serveWaits), each until a local time; they count against the cap
	// like permits until their ask comes again or they lapse.
	woken map[permitKey]time.Time
}

// MaxPermitWaits bounds the asks a token node holds for one queue at its cap; past
// it an ask is refused at once, as before there were waits.
const MaxPermitWaits = 4096

// A claimant refused because the queue is at its concurrency cap used to give its
// claim back and come back after a backoff that doubled up to a lease: with a
// backlog, a freed slot stayed idle until some claimant's backoff happened to end
// (100 tasks due at once, a cap of 2, a worker taking 1 s: 1.8-2.1 times the 50 s
// a busy cap takes, node's TestCappedQueueBacklogDrainsAtItsCap). So a claimant of
// a capped queue now says how long it can keep its won claim waiting (the
// Promised of its ask: while the queue's whole dispatch deadline and a round trip
// still fit in its lease), and the token node holds an ask it must refuse for
// "full" that long, in arrival order. When a slot frees (PermitDone, or a permit
// or a kept slot lapsing) the first held ask is told to come now, and the slot is
// kept for it (woken) for PermitValidity, the bound on a round trip: it asks again,
// and that ask is decided as any other, rate and lease included. So a freed slot
// is taken a round trip later, and the permit a claimant starts with is never older
// than PermitValidity (Q1 reads nothing else). A wake is not a permit: kept slots
// count against the cap (Q2) until they are taken or lapse. The claimant kept its
// claim throughout: it announced no retry time, so coming at once breaks none. A
// held ask whose time is up is refused for "full" as before, and its claimant
// backs off; held asks live in memory only, like permits.

// permitWait is an ask held at the cap (see above).
type permitWait struct {
	seq   uint64    // what its alarm names it by
	ask   Message   // the ask, answered when a slot frees or the wait is over
	until time.Time // local time the wait is over
	stop  alarmID
}

func (n *Node) handlePermit(m Message) { n.decidePermit(m, false) }

// decidePermit answers the ask m. waited says m was held at the cap and its time
// is up: it is not held again.
func (n *Node) decidePermit(m Message, waited bool) {
	q := n.queue(m.Queue)
	if n.cfg.Unsafe.BurstOffByOne {
		q.BucketSize++ // negative controls only (Q1)
	}
	resp := Message{Type: MsgPermitResp, To: m.From, TaskID: m.TaskID, Attempt: m.Attempt}
	now := n.now()
	if n.tokenNode(m.Queue) != n.cfg.ID {
		// The asker's roster names this node, ours another: the asker is at another
		// epoch (a removed member stays at the roster that dropped it). The token
		// lease proves that the token node of our epoch grants alone, not that
		// every member holding it may: granting from a bucket here would start the
		// queue at twice its rate beside the real token node (seeds 53 and 54 of
		// remove-during-partition-limits: a member at epoch 7 granted a removed
		// member asking by epoch 6's ring). Tell a laggard our roster, so that it
		// asks the right node next time.
		n.maybePushRoster(m.From, m.Epoch)
		resp.Lease = pausePoll
		n.send(resp)
		return
	}
	if !n.settingsKnown() {
		// A token node that does not know the queue's limits yet grants nothing.
		resp.Lease = pausePoll
		n.send(resp)
		return
	}
	if ok, retry := n.tokenReady(q, now); !ok {
		resp.Lease = retry
		n.send(resp)
		return
	}
	// Permits live in memory only, even with durable storage: after any start this
	// node may have forgotten permits it gave before, so a concurrency cap waits
	// until they have lapsed. (A rate alone needs no wait: the bucket starts empty,
	// so a restart adds no burst.) A new node cannot be told from a restarted one.
	if wait := n.bootTime.Add(n.cfg.Lease + n.cfg.MaxClockDrift); q.MaxConcurrent > 0 && now.Before(wait) {
		resp.Lease = wait.Sub(now)
		n.send(resp)
		return
	}
	b := n.buckets[m.Queue]
	if b == nil {
		// A new bucket starts empty: a token node that restarts adds no burst.
		b = &bucket{tat: now.Add(gcraTau(q) + gcraT(q)), inflight: map[permitKey]time.Time{}, slots: map[string]time.Time{}}
		n.buckets[m.Queue] = b
	}
	b.prune(now)
	for id, slot := range b.slots {
		if now.Sub(slot) > SlotGrace {
			delete(b.slots, id) // never came back: the slot is lost, never reused
		}
	}
	key := permitKey{m.TaskID, m.Attempt}
	_, wokenFor := b.woken[key]
	delete(b.woken, key) // its kept slot is taken now, or lost
	if !wokenFor && len(n.permitWaits[m.Queue]) > 0 {
		n.serveWaits(m.Queue) // a slot lapsed since: the asks held go first
	}
	slot, reserved := b.slots[m.TaskID]
	if reserved && now.Sub(slot) > SlotGrace {
		// Too late for its slot (a start now could bunch up with the next one): the
		// slot is lost and the task queues again.
		delete(b.slots, m.TaskID)
		reserved = false
	}
	_, dup := b.inflight[key]
	rateOK := q.Rate <= 0 || reserved && !now.Before(slot) || !reserved && !now.Before(b.tat.Add(-gcraTau(q)))
	switch {
	case dup:
		resp.Granted = true
	case q.MaxConcurrent > 0 && b.busy() >= n.capLimit(q):
		if !waited && n.waitForPermit(m, now) {
			return // held until a slot frees or its time is up
		}
		resp.Reject = RejectPromised // full: the claimant backs off, doubling
		resp.Lease = n.cfg.OutcomeRetry
		if waited {
			resp.Promised = 1 // it waited in line as long as it could: not doubling
		}
	case !rateOK:
		if !reserved {
			slot = b.tat.Add(-gcraTau(q))
			b.slots[m.TaskID] = slot
			b.tat = b.tat.Add(gcraT(q))
		}
		if slot.Sub(now) <= SlotEarly {
			n.holdPermit(m, slot.Sub(now))
			return
		}
		resp.Lease = slot.Sub(now)
	default:
		resp.Granted = true
		if q.Rate > 0 && !reserved {
			if b.tat.Before(now) {
				b.tat = now
			}
			b.tat = b.tat.Add(gcraT(q))
		}
		delete(b.slots, m.TaskID)
		b.inflight[key] = now.Add(m.Lease + n.cfg.MaxClockDrift)
	}
	n.send(resp)
	if wokenFor && !resp.Granted {
		n.serveWaits(m.Queue) // the slot kept for it is free again
	}
}

// gcraT is the emission interval 1/rate; gcraTau the burst allowance.
func gcraT(q QueueConfig) time.Duration {
	if q.Rate <= 0 {
		return 0
	}
	return time.Duration(float64(time.Second) / q.Rate)
}

func gcraTau(q QueueConfig) time.Duration {
	return time.Duration(max(q.BucketSize-1, 0)) * gcraT(q)
}

func (n *Node) handlePermitDone(m Message) {
	key := permitKey{m.TaskID, m.Attempt}
	if b := n.buckets[m.Queue]; b != nil {
		delete(b.inflight, key)
		delete(b.woken, key)
	}
	// A claimant that gives its claim up while held says so the same way.
	ws := n.permitWaits[m.Queue]
	for i, w := range ws {
		if w.ask.TaskID == m.TaskID && w.ask.Attempt == m.Attempt {
			n.stopAlarm(w.stop)
			n.dropWait(m.Queue, i)
			break
		}
	}
	n.serveWaits(m.Queue)
}

// prune drops the permits and kept slots that lapsed by now.
func (b *bucket) prune(now time.Time) {
	for k, until := range b.inflight { // deletion only: order never reaches an output
		if !now.Before(until) {
			delete(b.inflight, k)
		}
	}
	for k, until := range b.woken { // deletion only
		if !now.Before(until) {
			delete(b.woken, k)
		}
	}
}

// busy counts what holds a slot of the cap: permits, and slots kept for woken asks.
func (b *bucket) busy() int { return len(b.inflight) + len(b.woken) }

// capLimit is the most slots of q's cap that may be busy at once.
func (n *Node) capLimit(q QueueConfig) int {
	if n.cfg.Unsafe.ConcurrencyOffByOne {
		return q.MaxConcurrent + 1 // negative controls only (Q2)
	}
	return q.MaxConcurrent
}

// waitForPermit holds the ask m, refused now because its queue is at the cap, for
// as long as its claimant said it can wait (its Promised, at most a lease), and
// reports whether it did. A repeated ask of one held is dropped: the one held is
// answered.
func (n *Node) waitForPermit(m Message, now time.Time) bool {
	wait := time.Duration(min(m.Promised, uint64(n.cfg.Lease)))
	ws := n.permitWaits[m.Queue]
	if wait <= 0 || len(ws) >= MaxPermitWaits {
		return false
	}
	for _, w := range ws {
		if w.ask.TaskID == m.TaskID && w.ask.Attempt == m.Attempt {
			return true
		}
	}
	if n.permitWaits == nil {
		n.permitWaits = map[string][]permitWait{}
	}
	seq := n.nextOpSeq()
	stop := n.after(wait, alarm{kind: alarmPermitWait, key: m.Queue, id: seq})
	n.permitWaits[m.Queue] = append(ws, permitWait{seq: seq, ask: m, until: now.Add(wait), stop: stop})
	return true
}

// dropWait takes the i-th held ask of queue off its list.
func (n *Node) dropWait(queue string, i int) {
	ws := slices.Delete(n.permitWaits[queue], i, i+1)
	if len(ws) == 0 {
		delete(n.permitWaits, queue)
		return
	}
	n.permitWaits[queue] = ws
}

// serveWaits tells the first held asks of queue to come now, one per free slot of
// its cap, and keeps each its slot for PermitValidity.
func (n *Node) serveWaits(queue string) {
	if len(n.permitWaits[queue]) == 0 {
		return
	}
	b := n.buckets[queue]
	if b == nil {
		// The token node took its lease up anew since (lookAtTokenLease): held
		// asks are answered when their time is up, as it says then.
		return
	}
	now := n.now()
	q := n.queue(queue)
	b.prune(now)
	for len(n.permitWaits[queue]) > 0 && (q.MaxConcurrent <= 0 || b.busy() < n.capLimit(q)) {
		w := n.permitWaits[queue][0]
		n.stopAlarm(w.stop)
		n.dropWait(queue, 0)
		if b.woken == nil {
			b.woken = map[permitKey]time.Time{}
		}
		b.woken[permitKey{w.ask.TaskID, w.ask.Attempt}] = now.Add(n.cfg.PermitValidity)
		// Lease 0, neither granted nor refused: come now (handlePermitResp).
		n.send(Message{Type: MsgPermitResp, To: w.ask.From, TaskID: w.ask.TaskID, Attempt: w.ask.Attempt})
		// Should its ask not come, the slot goes to the next one when it lapses.
		n.after(n.cfg.PermitValidity, alarm{kind: alarmPermitWait, key: queue})
	}
}

// permitWaitOver rings for queue's held ask seq, whose time is up (seq 0: a kept
// slot lapses): the first held asks take the slots free by now; if seq was not
// among them, it is refused for "full".
func (n *Node) permitWaitOver(queue string, seq uint64) {
	n.serveWaits(queue)
	if seq == 0 {
		return
	}
	for i, w := range n.permitWaits[queue] {
		if w.seq == seq {
			n.dropWait(queue, i)
			n.decidePermit(w.ask, true)
			return
		}
	}
}

// --- permits: the claimant's side ----------------------------------------------

// DefaultPermitValidity is Config.PermitValidity's default: how long after asking
// a claimant may use a permit. A start can lag its grant by at most this much, so
// deliveries in any window T stay within rate×(T + PermitValidity + SlotGrace) +
// bucket_size even when answers are slow or the claimant paused. A later answer is
// dropped and the claim retried.
const DefaultPermitValidity = 200 * time.Millisecond

// SlotGrace is how late a denied claimant may come back for its reserved slot. A
// reserved start may thus lag its slot by SlotGrace plus PermitValidity.
const SlotGrace = 50 * time.Millisecond

// SlotEarly is how early a claimant may come back for its slot: the token node
// holds the ask and answers it at the slot. A claimant aims at its slot knowing
// only the round trip of its last ask (waitForSlot); the two margins take the
// difference between that round trip and the next. The grant is made at the slot,
// so the hold changes nothing of what Q1 bounds; the claimant still drops a
// permit that reaches it later than PermitValidity after it asked.
const SlotEarly = 50 * time.Millisecond

// holdPermit answers the ask m, which came d before its slot, at the slot.
func (n *Node) holdPermit(m Message, d time.Duration) {
	if n.heldPermits == nil {
		n.heldPermits = map[string]Message{}
	}
	n.heldPermits[m.TaskID] = m
	n.after(d, alarm{kind: alarmPermitHold, key: m.TaskID, id: m.Attempt})
}

// askPermit asks the token node whether e's won attempt may start.
func (n *Node) askPermit(e *entry, lease time.Duration) {
	now := n.now()
	x := e.ext()
	if x.permitAsked.Before(x.claimSent) {
		x.claimTook = now.Sub(x.claimSent) // the first ask of this claim
	}
	x.permitting = true
	x.permitAsked = now
	m := Message{Type: MsgPermit, To: n.tokenNode(e.task.Queue), TaskID: e.task.ID, Attempt: e.claiming, Queue: e.task.Queue, Lease: lease, Epoch: n.roster.Epoch}
	if q := n.queue(e.task.Queue); q.MaxConcurrent > 0 {
		// The token node may hold the ask while the queue is at its cap (see
		// waitForPermit): for as long as the queue's whole dispatch deadline and
		// a round trip (PermitValidity) still fit in the lease once it is woken;
		// the claim timer waits that long more. A deadline that does not fit is
		// not cut to wait: a hold of a quarter lease (as a claim kept for its
		// rate slot waits, waitForSlot) cut the deadline of workers taking 2-8 s
		// on a lease of 10 s: seeds 1-60 of limits-token-node-cut-off made 5,750
		// deliveries of 4,800 tasks instead of 4,802, the extra ones after
		// attempts that timed out. Then the claimant backs off as before.
		if wait := lease - q.DispatchDeadline - n.cfg.PermitValidity; wait > 0 {
			m.Promised = uint64(wait)
			n.arm(e, timerClaim, now.Add(wait+n.cfg.ClaimTimeout))
		}
	}
	n.send(m)
}

// askPermitAgain asks for the permit of a claim kept while its slot came
// (waitForSlot): the claim timer runs again from here, and deliver re-checks
// everything the wait may have changed (the lease left, a pause of the queue).
func (n *Node) askPermitAgain(e *entry) {
	if e.claiming == 0 || e.delivering || e.permitting || e.state.Final() {
		return
	}
	n.arm(e, timerClaim, n.now().Add(n.cfg.ClaimTimeout))
	n.deliver(e)
}

// waitForSlot decides what a claimant told "not yet, in wait" does. The token
// node keeps a slot for it only SlotGrace past its time, and a claimant that gave
// its claim up must win a claim round again before it can ask: on slow links that
// round alone is later than SlotGrace, so the slot was lost at every try and the
// task queued behind every other, for ever. So a short wait keeps the won claim
// and asks again a round trip (the one just measured) before the slot: the wait
// counts from the token node's answer, which took part of that to come, and the
// ask takes the rest (SlotEarly and SlotGrace absorb the difference between two
// round trips). A longer wait gives the claim back (other replicas may take over
// should this node die meanwhile) and claims again early by twice the claim round
// and the round trip it just took, to be at the token node before the slot however
// much slower the next round is, with a short wait left.
func (n *Node) waitForSlot(e *entry, wait time.Duration) {
	now := n.now()
	rtt := now.Sub(e.permitAsked)
	keep := max(n.cfg.PermitValidity, 2*(e.claimTook+rtt))
	// The delivery still needs most of the lease the claim won.
	if wait <= keep && !now.Add(wait).After(e.claimSent.Add(n.cfg.Lease/4)) {
		n.arm(e, timerPermit, now.Add(wait-min(wait, rtt)))
		return
	}
	// The slot is this task's, whichever replica comes for it, and we are the one
	// it was given to: come back for it even if another replica said it would try
	// later (the nextETA of its Release), but never before the task is due or a
	// failure's backoff is over (notBefore).
	at := now.Add(wait - min(wait, keep))
	if at.Before(e.nextETA) {
		e.nextETA = at
		if at.Before(e.notBefore) {
			e.nextETA = e.notBefore
		}
	}
	n.abandonClaim(e, at)
}

func (n *Node) handlePermitResp(m Message) {
	e := n.entryOf(m.TaskID)
	if e == nil || !e.permitting || e.claiming != m.Attempt || e.delivering {
		return
	}
	e.ext().permitting = false
	if m.Granted && n.now().Sub(e.permitAsked) > n.cfg.PermitValidity {
		// Too late to start now without bunching up with later permits: give it back.
		e.ext().permitted = true
		n.abandonClaim(e, n.now().Add(n.jitter(n.cfg.ClaimTimeout)))
		return
	}
	if !m.Granted && m.Reject == RejectNone && m.Lease == 0 {
		// Held at the cap, and woken: a slot is kept for this claim; ask again now.
		n.askPermitAgain(e)
		return
	}
	if !m.Granted && m.Reject == RejectPromised {
		// The queue is at its concurrency cap: give the claim back and come back
		// after a backoff that doubles, jittered even once it reached its cap of a
		// lease: contenders all waiting exactly a lease came back in step, one won,
		// and the slot stayed idle from its end to the next lease (L1, queue c of
		// remove-during-partition-limits: one start per lease).
		backoff := n.cfg.ClaimTimeout
		if m.Promised == 0 {
			backoff = n.claimBackoff(e)
		}
		// Else it was held at the cap for as long as the claim could wait
		// (waitForPermit): the line is long and the cap busy. It comes back after
		// a claim timeout, not doubling: doubled backoffs kept the last tasks of
		// a backlog away while the line emptied and the cap stood idle (lease
		// 10 s, dispatch deadline 3 s, 100 tasks, cap 2, worker 1 s, three
		// nodes: 1.21 times the ideal drain).
		n.abandonClaim(e, n.now().Add(n.jitter(max(m.Lease, backoff))))
		return
	}
	if !m.Granted {
		n.waitForSlot(e, m.Lease) // not now: our slot, or the token node's lease, is to come
		return
	}
	e.ext().permitted = true
	n.deliver(e)
}

// permitDone frees the concurrency slot of e's attempt on the token node.
func (n *Node) permitDone(e *entry, attempt uint64) {
	if !e.permitted && !e.permitting {
		return
	}
	x := e.ext()
	x.permitted, x.permitting = false, false
	n.send(Message{Type: MsgPermitDone, To: n.tokenNode(e.task.Queue), TaskID: e.task.ID, Attempt: attempt, Queue: e.task.Queue})
}

// ListTasks returns, sorted by ID, up to limit tasks of a queue this node holds, in
// state (StateNone: any), with IDs after `after`: O(log n + limit), from the index.
func (n *Node) ListTasks(queue string, state TaskState, after string, limit int) []TaskStatus {
	ids := n.listIDs(queue, state, after, limit)
	out := make([]TaskStatus, 0, len(ids))
	for _, id := range ids {
		st, _ := n.Task(id)
		out = append(out, st)
	}
	return out
}

// ParseTaskState reads a state name ("scheduled", "dead", ...).
func ParseTaskState(s string) (TaskState, bool) {
	for i, name := range stateNames {
		if name == s && i != int(StateNone) {
			return TaskState(i), true
		}
	}
	return StateNone, false
}

// listOp is a cluster-wide listing this node coordinates.
type listOp struct {
	id     uint64
	limit  int
	views  map[string]TaskStatus // by task ID: the most advanced view
	items  map[NodeID]int        // tasks received from each member
	want   map[NodeID]int        // tasks each member said it sent (after its end marker)
	client ReplyID
	stop   alarmID
}

// ListCluster lists a queue's tasks across the cluster: every member sends its
// first `limit` tasks (in state, IDs after `after`); the answer is the first `limit`
// of their union, by ID, each task in its most advanced view. Members that did not
// answer within ListTimeout are named in missing (the list may then lack tasks).
func (n *Node) ListCluster(queue string, state TaskState, after string, limit int, reply func(list []TaskStatus, missing []NodeID)) {
	n.input(func() {
		n.listCluster(queue, state, after, limit, n.await(func(a Answer) { reply(a.List, a.Missing) }))
	})
}

func (n *Node) listCluster(queue string, state TaskState, after string, limit int, client ReplyID) {
	n.listSeq++
	op := &listOp{id: n.listSeq, limit: limit, views: map[string]TaskStatus{}, items: map[NodeID]int{}, want: map[NodeID]int{}, client: client}
	n.lists[op.id] = op
	op.stop = n.after(n.cfg.ListTimeout, alarm{kind: alarmListTimeout, id: op.id})
	for _, m := range n.members {
		n.send(Message{Type: MsgList, To: m, Queue: queue, State: state, TaskID: after, Attempt: uint64(limit), Promised: op.id})
	}
}

func (n *Node) handleList(m Message) {
	list := n.ListTasks(m.Queue, m.State, m.TaskID, int(min(m.Attempt, 10000)))
	for _, st := range list {
		n.send(Message{Type: MsgListResp, To: m.From, Promised: m.Promised, Task: st.Task, TaskID: st.Task.ID, State: st.State,
			Attempt: st.Attempt, Retries: st.Retries, Status: st.LastStatus, NextETA: st.NextETA})
	}
	n.send(Message{Type: MsgListResp, To: m.From, Promised: m.Promised, Retries: len(list)})
}

func (n *Node) handleListResp(m Message) {
	op := n.lists[m.Promised]
	if op == nil {
		return
	}
	if m.Task == nil {
		op.want[m.From] = m.Retries
	} else {
		op.items[m.From]++
		st := TaskStatus{Task: m.Task, State: m.State, Attempt: m.Attempt, Retries: m.Retries, LastStatus: m.Status, NextETA: m.NextETA}
		if cur, ok := op.views[m.Task.ID]; !ok || moreAdvanced(st, cur) {
			op.views[m.Task.ID] = st
		}
	}
	for _, mem := range n.members {
		if w, ok := op.want[mem]; !ok || op.items[mem] < w {
			return
		}
	}
	n.finishList(op)
}

func (n *Node) finishList(op *listOp) {
	if n.lists[op.id] != op {
		return
	}
	delete(n.lists, op.id)
	n.stopAlarm(op.stop)
	var missing []NodeID
	for _, mem := range n.members {
		if w, ok := op.want[mem]; !ok || op.items[mem] < w {
			missing = append(missing, mem)
		}
	}
	out := make([]TaskStatus, 0, len(op.views))
	for _, id := range sortedKeys(op.views) {
		if len(out) == op.limit {
			break
		}
		out = append(out, op.views[id])
	}
	n.answer(op.client, Answer{List: out, Missing: missing})
}
