package node

import (
	"errors"
	"fmt"
	"hash/fnv"
	"regexp"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // time zones resolve the same on every node, even in an image with no zoneinfo

	"github.com/google/uuid"
	"github.com/robfig/cron/v3"
)

// Schedules enqueue a task at every tick of a cron expression (robfig/cron's
// parser, a pure function of the expression: Schedule.Next(t)).
//
// A schedule is replicated data like a queue's settings: a change made through any
// node gets the next version, is sent to every member, logged before it is
// acknowledged, spread by gossip and learnt at start (queues.go). A deletion is a
// version too (Deleted), so that an older copy gossiped later cannot bring the
// schedule back.
//
// Every member runs every schedule, and a tick becomes one task however many run
// it: the tick's task is a function of the schedule's name and the tick alone (its
// ID, its nonce, its name "<schedule>-<unix seconds>", its due time, its creation
// time), so the Stores of every node that enqueues it are copies of one task, and a
// replica that holds it answers the next ones as repeats. Only the task's replicas
// enqueue it: replica k at tick − ScheduleLead + k × ReplicaOffset, so that the
// first does it ahead of the tick and the others take over when it is down; a
// replica that knows the task final already does nothing. Invariant: every tick of
// a schedule has one task ID and one nonce, on every node and in every version of
// the schedule; a change of its queue or task takes effect from the ticks enqueued
// after it, and a tick enqueued during the change runs under one version or the
// other, never both.
//
// Missed ticks. A node acts on the ticks whose turn (its slot) comes while it runs
// the schedule; the others cover the slots it missed. When the cluster cannot take
// a tick's task (no majority of its replicas), the policy decides:
//   - MissedSkip (the default): the tick is not run; the next ticks are.
//   - MissedOne: the latest tick that could not be enqueued is enqueued once as soon
//     as it can be, late; so is, at a node's start, the latest tick before it (a
//     repeat the replicas answer as such when it ran). Older missed ticks are
//     skipped. A tick older than half the dedup window is never run late: its task
//     may have run and been forgotten since.

// Ticks and the roster. A tick's replica list is the placement of its ID on the
// ring of the roster its scheduler knows, and members learn a new roster at
// different times: while a join spread, one scheduler placed a tick on the old
// roster's list and two others on the new one's, two lists that shared one member,
// each won a claim quorum, and the tick ran twice (S1; the scenario
// schedule-tick-during-join). So a scheduler enqueues a tick only while it holds the
// token lease of its roster's epoch (token.go), and at an epoch above 1 only once
// the lease of that epoch was first taken up, here, a term and twice the drift
// allowance before the tick's first slot (ScheduleLead before the tick).
//
// Why only one roster's schedulers then enqueue a tick: token.go's argument shows
// that once a lease of epoch E' is taken up at A, every lease of an earlier epoch
// has lapsed by A plus that wait. Say u enqueued tick t under epoch E and w under
// E' > E. w took its lease up at A with A plus the wait at or before t's first slot,
// so every lease of E lapsed by then; but u held its lease of E when it enqueued
// the tick, at or after its own slot, which is not before the first. So every Store
// of a tick, sent when it may and resent as late as it may, names one list. The
// static roster of epoch 1 has no earlier epoch: holding its lease is enough.
//
// What it costs: a node cut off from a majority of the roster enqueues no tick (the
// others do); after every roster change (a join, a removal, a new leader) no tick
// whose first slot comes within a term and twice the drift allowance (with the
// defaults, 30 s / 4 + 3 × 1 s = 10.5 s) is enqueued, by anyone: those ticks are
// missed, as with MissedSkip; and a member in its recovery wait answers no to the
// lease's rounds, so a cluster whose members all start as ones that forgot (new
// data directories, or memory) runs no tick until a majority is past that wait.
// (Acceptors refusing claims made under another list than theirs, tried as a
// second guard, made the bug worse: claims under each list then never meet at an
// acceptor, whose record of a grant is what keeps two claims apart.)

// tickMayEnqueue reports whether this node may send the Stores of tick t's task now
// (see "Ticks and the roster" above), and if not, whether it may later: when it
// holds no lease now but one it takes up again would do.
func (n *Node) tickMayEnqueue(t time.Time) (ok, later bool) {
	if n.cfg.Unsafe.TickWithoutLease || n.alone() {
		return true, false // TickWithoutLease: negative controls only (S1)
	}
	held := n.lookAtTokenLease(n.now())
	if !held {
		n.kickTokenLease()
	}
	if n.roster.Epoch <= 1 {
		return held, !held
	}
	// The first take-up of this epoch's lease, here: one from now on would come
	// after the tick's first slot, which is past.
	taken := n.tok.taken
	inTime := !taken.IsZero() && !taken.Add(n.tokenLeaseTerm()+2*n.cfg.MaxClockDrift).After(t.Add(-ScheduleLead))
	return held && inTime, !held && inTime
}

// ScheduleLead is how long before a tick its task is enqueued (by the first of its
// replicas): it is due at the tick, and delivered on time.
const ScheduleLead = time.Second

// ErrScheduleNotFound: no schedule of that name is in force.
var ErrScheduleNotFound = errors.New("no such schedule")

// MissedPolicy says what becomes of ticks the cluster could not enqueue.
type MissedPolicy uint8

const (
	MissedSkip MissedPolicy = iota // missed ticks are not run
	MissedOne                      // the latest missed tick runs once, late
)

func (p MissedPolicy) String() string {
	switch p {
	case MissedSkip:
		return "skip"
	case MissedOne:
		return "one"
	}
	return fmt.Sprintf("missed(%d)", uint8(p))
}

// ParseMissedPolicy reads "skip" or "one" ("" is skip).
func ParseMissedPolicy(s string) (MissedPolicy, error) {
	switch s {
	case "", "skip":
		return MissedSkip, nil
	case "one":
		return MissedOne, nil
	}
	return 0, fmt.Errorf("must be skip (missed ticks are not run) or one (the latest missed tick runs once), not %q", s)
}

// Schedule is one cron schedule as the cluster agrees on it: the one with the
// highest (Version, Origin) wins everywhere.
type Schedule struct {
	Name     string
	Cron     string // cron expression: 5 fields, or 6 with seconds first, or a descriptor (@hourly, @every 10s)
	TimeZone string // IANA name the expression is read in; "" is UTC
	Queue    string
	// The task template: what every tick's task carries.
	URL         string
	Method      string
	Headers     []Header
	ContentType string
	Body        []byte
	Missed      MissedPolicy
	// Deleted marks a deletion; the schedule is kept so that it wins over older copies.
	Deleted bool
	// Created is when the schedule was made (its first PUT since it was last
	// deleted), on its origin's clock: its first tick is the first after it.
	Created time.Time
	Version uint64
	Origin  NodeID
}

// newer reports whether s supersedes o.
func (s *Schedule) newer(o *Schedule) bool {
	if o == nil {
		return true
	}
	if s.Version != o.Version {
		return s.Version > o.Version
	}
	return s.Origin > o.Origin
}

// scheduleName is what a schedule may be called: its ticks' task names add
// "-<unix seconds>" and stay valid task names.
var scheduleName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$`)

// ValidateSchedule checks a schedule a client gives (name, cron, time zone, queue,
// task and policy), fills its defaults (method POST, queue "default"), and returns
// its parsed expression. Errors are *FieldError naming the field ("task.url" for
// the template's). A schedule with no tick in the five years after now is refused.
func ValidateSchedule(s *Schedule, now time.Time) (*CronSpec, error) {
	if !scheduleName.MatchString(s.Name) {
		return nil, fieldErr("name", "must be 1-100 letters, digits, '_' or '-', starting with a letter or digit, not %q", s.Name)
	}
	spec, err := ParseCron(s.Cron, s.TimeZone)
	if err != nil {
		return nil, err
	}
	if spec.Next(now).IsZero() {
		return nil, fieldErr("cron", "%q has no tick in the next five years", s.Cron)
	}
	req := EnqueueRequest{Queue: s.Queue, URL: s.URL, Method: s.Method}
	if err := ValidateRequest(&req); err != nil {
		var fe *FieldError
		if errors.As(err, &fe) && fe.Field != "queue" {
			fe.Field = "task." + fe.Field
		}
		return nil, err
	}
	s.Queue, s.Method = req.Queue, req.Method
	if s.Missed > MissedOne {
		return nil, fieldErr("missed", "must be skip or one")
	}
	return spec, nil
}

// CronSpec is a parsed cron expression in its time zone.
type CronSpec struct {
	sched cron.Schedule
	// every is the period of an "@every" descriptor: its ticks are the multiples of
	// it since the Unix epoch, so that every node finds the same ones (robfig's own
	// counts from the time it is asked).
	every time.Duration
	loc   *time.Location
}

// cronParser reads 5 fields or 6 with seconds first, and descriptors.
var cronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ParseCron parses a cron expression read in the named time zone ("" is UTC).
// Errors are *FieldError naming "cron" or "time_zone".
func ParseCron(expr, zone string) (*CronSpec, error) {
	expr = strings.TrimSpace(expr)
	if expr == "" {
		return nil, fieldErr("cron", "is required (e.g. \"*/10 * * * * *\", \"0 3 * * *\", \"@hourly\", \"@every 30s\")")
	}
	if strings.HasPrefix(expr, "TZ=") || strings.HasPrefix(expr, "CRON_TZ=") {
		return nil, fieldErr("cron", "give the time zone in time_zone, not in the expression")
	}
	loc := time.UTC
	if zone != "" {
		if zone == "Local" {
			return nil, fieldErr("time_zone", "must name a zone such as \"Europe/Paris\" or \"UTC\": Local differs from node to node")
		}
		l, err := time.LoadLocation(zone)
		if err != nil {
			return nil, fieldErr("time_zone", "%q is not a time zone of the IANA database (e.g. \"Europe/Paris\", \"UTC\")", zone)
		}
		loc = l
	}
	sched, err := cronParser.Parse(expr)
	if err != nil {
		return nil, fieldErr("cron", "%q: %v", expr, err)
	}
	c := &CronSpec{sched: sched, loc: loc}
	if d, ok := sched.(cron.ConstantDelaySchedule); ok {
		c.every = d.Delay
	}
	return c, nil
}

// Next returns the first tick strictly after t, in UTC; zero when there is none in
// the next five years.
func (c *CronSpec) Next(t time.Time) time.Time {
	if c.every > 0 {
		period := int64(c.every / time.Second) // robfig rounds @every to whole seconds, at least 1
		secs := t.Unix()
		k := secs / period
		if secs < 0 && secs%period != 0 {
			k-- // floor, not truncation, before 1970
		}
		return time.Unix((k+1)*period, 0).UTC()
	}
	next := c.sched.Next(t.In(c.loc))
	if next.IsZero() {
		return next
	}
	return next.UTC()
}

// NextTicks returns the schedule's next k ticks after t (fewer when it has no more).
func (s *Schedule) NextTicks(t time.Time, k int) []time.Time {
	spec, err := ParseCron(s.Cron, s.TimeZone)
	if err != nil {
		return nil
	}
	var out []time.Time
	if t.Before(s.Created) {
		t = s.Created
	}
	for len(out) < k {
		t = spec.Next(t)
		if t.IsZero() {
			break
		}
		out = append(out, t)
	}
	return out
}

// TickName is the name of a schedule's task for one tick.
func TickName(schedule string, tick time.Time) string {
	return schedule + "-" + strconv.FormatInt(tick.Unix(), 10)
}

// ScheduleObserver, when the Env's Observer implements it, is told of every tick
// this node's scheduler enqueues (as it starts, with the task, and as it is
// answered), for traces, metrics and the simulator's checker.
type ScheduleObserver interface {
	TickEnqueued(node NodeID, schedule string, tick time.Time, t *Task)
	TickAnswered(node NodeID, schedule string, tick time.Time, t *Task, err error)
}

// --- the API's side: changes, lookups ---------------------------------------------

type schedOp struct {
	seq    uint64 // what alarms name it by (alarms.go)
	sched  *Schedule
	acks   map[NodeID]bool
	client ReplyID
	stop   alarmID
}

// PutSchedule creates or replaces a schedule cluster-wide. reply is called once
// every member acknowledged it (nil), after EnqueueTimeout with ErrNotEveryMember,
// or at once with a *FieldError.
func (n *Node) PutSchedule(s Schedule, reply func(Schedule, error)) {
	n.input(func() { n.putSchedule(s, n.await(scheduleReply(reply))) })
}

func scheduleReply(reply func(Schedule, error)) func(Answer) {
	return func(a Answer) { reply(a.Schedule, a.Err) }
}

func (n *Node) putSchedule(s Schedule, client ReplyID) {
	s.Deleted, s.Created = false, time.Time{}
	if _, err := ValidateSchedule(&s, n.now()); err != nil {
		n.answer(client, Answer{Err: err})
		return
	}
	if cur := n.schedules[s.Name]; cur != nil && !cur.Deleted {
		// A change keeps the schedule's creation: the ticks whose slots are still
		// to come are not dropped by the new version.
		s.Created = cur.Created
	}
	n.changeSchedule(s, client)
}

// DeleteSchedule deletes a schedule cluster-wide (ErrScheduleNotFound when none of
// that name is in force here); the answer comes as for PutSchedule. Tasks already
// enqueued for its ticks (up to ScheduleLead ahead) still run.
func (n *Node) DeleteSchedule(name string, reply func(Schedule, error)) {
	n.input(func() { n.deleteSchedule(name, n.await(scheduleReply(reply))) })
}

func (n *Node) deleteSchedule(name string, client ReplyID) {
	cur := n.schedules[name]
	if cur == nil || cur.Deleted {
		n.answer(client, Answer{Err: ErrScheduleNotFound})
		return
	}
	s := *cur
	s.Deleted = true
	n.changeSchedule(s, client)
}

func (n *Node) changeSchedule(s Schedule, client ReplyID) {
	// Versions are hybrid, as queue settings' are (changeQueue).
	s.Version = max(n.maxVersion+1, uint64(max(n.now().UnixMilli(), 0)))
	s.Origin = n.cfg.ID
	if s.Created.IsZero() {
		s.Created = n.now()
	}
	op := &schedOp{seq: n.nextOpSeq(), sched: &s, acks: map[NodeID]bool{}, client: client}
	n.schedOps = append(n.schedOps, op)
	op.stop = n.after(n.cfg.EnqueueTimeout, alarm{kind: alarmScheduleSetTimeout, id: op.seq})
	for _, m := range n.members {
		n.send(Message{Type: MsgScheduleSet, To: m, Schedule: &s})
	}
}

func (n *Node) finishSchedule(op *schedOp, err error) {
	for i, o := range n.schedOps {
		if o == op {
			n.schedOps = append(n.schedOps[:i], n.schedOps[i+1:]...)
			n.stopAlarm(op.stop)
			n.answer(op.client, Answer{Schedule: *op.sched, Err: err})
			return
		}
	}
}

// Schedules returns the schedules in force on this node, sorted by name.
func (n *Node) Schedules() []Schedule {
	var out []Schedule
	for _, name := range sortedKeys(n.schedules) {
		if s := n.schedules[name]; !s.Deleted {
			out = append(out, *s)
		}
	}
	return out
}

// Schedule returns this node's view of a schedule in force.
func (n *Node) Schedule(name string) (Schedule, bool) {
	s := n.schedules[name]
	if s == nil || s.Deleted {
		return Schedule{}, false
	}
	return *s, true
}

// --- replication -------------------------------------------------------------------

func (n *Node) handleScheduleSet(m Message) {
	s := m.Schedule
	if s == nil || s.Name == "" {
		return
	}
	n.adoptSchedule(s)
	cur := n.schedules[s.Name]
	// Invariant: a member acknowledges a schedule only once its record is durable,
	// so that a change answered 200 survives the loss of any minority, and of every
	// member's power at once.
	n.afterSync(sendThen(Message{Type: MsgScheduleSetResp, To: m.From, Schedule: cur}))
}

func (n *Node) handleScheduleSetResp(m Message) {
	s := m.Schedule
	if s == nil {
		return
	}
	for _, op := range n.schedOps {
		if op.sched.Name == s.Name && !op.sched.newer(s) {
			op.acks[m.From] = true
			n.ackCounted(Ack{Kind: RecSchedule, From: m.From, Schedule: s})
			if membersIn(n.members, op.acks) == len(n.members) {
				n.finishSchedule(op, nil)
			}
			return
		}
	}
}

// adoptSchedule keeps s if it is newer than what this node has, logs it and runs it.
func (n *Node) adoptSchedule(s *Schedule) {
	c, ok := n.keepSchedule(s)
	if !ok {
		return
	}
	if n.env.Storage.Durable() {
		n.env.Storage.Append(Record{Kind: RecSchedule, Schedule: c})
		n.superseded++
	}
	// A schedule learnt while the node learns the settings at start is one it may
	// have run before: its missed ticks are looked for, as after a restart.
	n.runSchedule(c, n.sync != nil)
	if n.gossipStop == 0 {
		n.armGossip()
	}
}

// keepSchedule makes s this node's copy of its schedule if it is newer than the one
// held, and returns the copy.
func (n *Node) keepSchedule(s *Schedule) (*Schedule, bool) {
	n.maxVersion = max(n.maxVersion, s.Version)
	if !s.newer(n.schedules[s.Name]) {
		return nil, false
	}
	c := *s
	n.schedules[s.Name] = &c
	return &c, true
}

// --- the scheduler -----------------------------------------------------------------

// schedRun is this node's running of one schedule version.
type schedRun struct {
	seq   uint64 // what alarms name it by (alarms.go)
	sched *Schedule
	spec  *CronSpec
	// since: the node runs this version from this local time on; it acts on the
	// ticks whose slot comes from then.
	since time.Time
	// cursor: every tick up to it has been planned (its slot armed or passed).
	cursor  time.Time
	stopped bool
	// missed (MissedOne): the latest tick this node could not enqueue (zero: none).
	missed   time.Time
	catchUp  bool // a catch-up timer is armed
	planStop alarmID
}

// runSchedule (re)starts this node's running of s, after stopping the one of an
// older version. atStart: the node may have missed ticks while it was down.
func (n *Node) runSchedule(s *Schedule, atStart bool) {
	if old := n.runs[s.Name]; old != nil {
		old.stopped = true
		if old.planStop != 0 {
			n.stopAlarm(old.planStop)
		}
		delete(n.runs, s.Name)
	}
	if s.Deleted {
		return
	}
	spec, err := ParseCron(s.Cron, s.TimeZone)
	if err != nil {
		return // validated by whoever made it; a node that cannot read it runs nothing
	}
	now := n.now()
	r := &schedRun{seq: n.nextOpSeq(), sched: s, spec: spec, since: now}
	// A tick's last slot comes (R−1) × ReplicaOffset after its first, which is
	// ScheduleLead before it: planning starts with the ticks whose last slot is still
	// to come, and never before the version's creation.
	r.cursor = now.Add(ScheduleLead - time.Duration(max(n.cfg.Replicas-1, 0))*n.cfg.ReplicaOffset - time.Nanosecond)
	if r.cursor.Before(s.Created) {
		r.cursor = s.Created
	}
	n.runs[s.Name] = r
	n.kickTokenLease() // its ticks need the token lease (see "Ticks and the roster")
	if atStart && s.Missed == MissedOne {
		if t := n.latestTick(r, now); !t.IsZero() {
			r.missed = t
			n.armCatchUp(r, 0)
		}
	}
	n.planTicks(r)
}

// planTicks plans every tick whose first slot has come, then arms a timer for the
// next one.
func (n *Node) planTicks(r *schedRun) {
	now := n.now()
	if r.cursor.Before(now.Add(-n.tickHorizon())) {
		r.cursor = now.Add(-n.tickHorizon()) // the clock jumped: no storm of old ticks
	}
	for {
		t := r.spec.Next(r.cursor)
		if t.IsZero() {
			return // no tick in five years: nothing to arm
		}
		if first := t.Add(-ScheduleLead); first.After(now) {
			r.planStop = n.after(first.Sub(now), alarm{kind: alarmPlanTicks, id: r.seq, key: r.sched.Name})
			return
		}
		r.cursor = t
		n.planTick(r, t)
	}
}

// tickHorizon is how long after a tick its last slot may come.
func (n *Node) tickHorizon() time.Duration {
	return ScheduleLead + time.Duration(n.cfg.Replicas)*n.cfg.ReplicaOffset
}

// planTick arms this node's slot for tick t, when it is one of the tick's replicas
// and the slot comes while it runs the schedule.
func (n *Node) planTick(r *schedRun, t time.Time) {
	task := n.tickTask(r.sched, t)
	rank := task.Rank(n.cfg.ID)
	if rank < 0 || rank > 0 && n.cfg.Unsafe.TickPrimaryOnly { // negative controls only (SC2)
		return
	}
	slot := t.Add(-ScheduleLead + time.Duration(rank)*n.cfg.ReplicaOffset)
	if slot.Before(r.since) {
		return // its turn passed before this node ran the schedule: others had it
	}
	// Always through a timer, even when the slot is now: Start plans ticks too, and
	// sends nothing itself.
	n.after(max(slot.Sub(n.now()), 0), alarm{kind: alarmTick, id: r.seq, key: r.sched.Name, at: t})
}

// tickTask is the task of a schedule's tick: the same on every node (see the top of
// this file). It is created ScheduleLead before the tick, the earliest any node
// enqueues it, so that no node takes it for newer than it is (a replica that forgot
// refuses older tasks while it recovers).
func (n *Node) tickTask(s *Schedule, tick time.Time) *Task {
	key := "schedule\x00" + s.Name + "\x00" + strconv.FormatInt(tick.Unix(), 10)
	if n.cfg.Unsafe.TickTaskPerNode {
		key += "\x00" + string(n.cfg.ID) // negative controls only (SC1)
	}
	h := fnv.New64a()
	h.Write([]byte(key))
	id := uuid.NewSHA1(nameSpace, []byte(key)).String()
	t := &Task{
		ID:          id,
		Queue:       s.Queue,
		Name:        TickName(s.Name, tick),
		URL:         s.URL,
		Method:      s.Method,
		Headers:     s.Headers,
		ContentType: s.ContentType,
		Body:        s.Body,
		ETA:         tick,
		Created:     tick.Add(-ScheduleLead),
		Nonce:       h.Sum64() | 1,
		Delivery:    n.queue(s.Queue).Delivery,
	}
	t.Replicas = n.sharedPlacement(id)
	return t
}

// enqueueTick enqueues the task of tick t, unless this node knows it final already.
func (n *Node) enqueueTick(r *schedRun, t time.Time) {
	task := n.tickTask(r.sched, t)
	if e := n.peek(task.ID); e != nil && e.state.Final() {
		if r.missed.Equal(t) {
			r.missed = time.Time{}
		}
		return
	}
	if ok, later := n.tickMayEnqueue(t); !ok {
		switch {
		case later && r.sched.Missed == MissedOne && !r.stopped && !t.Before(r.missed):
			r.missed = t
			n.armCatchUp(r, pausePoll)
		case !later && r.missed.Equal(t):
			r.missed = time.Time{} // never this node's: left to schedulers that may
		}
		return
	}
	if obs, _ := n.env.Observer.(ScheduleObserver); obs != nil {
		obs.TickEnqueued(n.cfg.ID, r.sched.Name, t, task)
	}
	tick := &tickRef{name: r.sched.Name, seq: r.seq, at: t}
	if err := n.refuseNew(); err != nil {
		n.tickAnswered(*tick, task, EnqueueResult{ID: task.ID, Err: err})
		return
	}
	n.coordinate(task, enqueueClient{tick: tick})
}

// tickAnswered takes the answer to the enqueue of a schedule's tick: a tick whose
// task was not taken is tried again later (MissedOne), if its run still goes.
func (n *Node) tickAnswered(tick tickRef, task *Task, res EnqueueResult) {
	if obs, _ := n.env.Observer.(ScheduleObserver); obs != nil {
		obs.TickAnswered(n.cfg.ID, tick.name, tick.at, task, res.Err)
	}
	r := n.runs[tick.name]
	if r == nil || r.seq != tick.seq {
		return // the run stopped: nothing of it is left to change
	}
	t := tick.at
	var dup *DuplicateNameError
	switch {
	case res.Err == nil || errors.As(res.Err, &dup):
		if r.missed.Equal(t) {
			r.missed = time.Time{}
		}
	case errors.Is(res.Err, ErrStopping):
		// Shutting down: the others take the tick; nothing to catch up here.
	case r.sched.Missed == MissedOne && !r.stopped && !t.Before(r.missed):
		r.missed = t
		n.armCatchUp(r, pausePoll)
	}
}

// armCatchUp tries r's missed tick again after d (MissedOne).
func (n *Node) armCatchUp(r *schedRun, d time.Duration) {
	if r.catchUp {
		return
	}
	r.catchUp = true
	n.after(d, alarm{kind: alarmCatchUp, id: r.seq, key: r.sched.Name})
}

// catchUpTick enqueues r's missed tick, late, unless it is too old to.
func (n *Node) catchUpTick(r *schedRun) {
	r.catchUp = false
	if r.stopped || r.missed.IsZero() {
		return
	}
	if n.now().Sub(r.missed) > n.cfg.DedupWindow/2 {
		r.missed = time.Time{} // too old to run late: it may have run and been forgotten
		return
	}
	n.enqueueTick(r, r.missed)
}

// latestTick returns the latest tick of r at or before now, no older than half the
// dedup window nor than r's version (zero: none).
func (n *Node) latestTick(r *schedRun, now time.Time) time.Time {
	floor := now.Add(-n.cfg.DedupWindow / 2)
	if floor.Before(r.sched.Created) {
		floor = r.sched.Created
	}
	// Look back over a doubling span until a tick falls in it, then walk forward.
	var t time.Time
	for back := time.Second; ; back *= 2 {
		from := now.Add(-back)
		if from.Before(floor) {
			from = floor
		}
		if t = r.spec.Next(from); !t.IsZero() && !t.After(now) {
			break
		}
		if !from.After(floor) {
			return time.Time{}
		}
	}
	for {
		next := r.spec.Next(t)
		if next.IsZero() || next.After(now) {
			return t
		}
		t = next
	}
}
