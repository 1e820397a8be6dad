package sim

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/miyamotohq/miyamoto/node"
)

// Schedules reach simulated nodes as the API's PUT and DELETE of
// /v1/schedules/{name} reach the daemon: node.PutSchedule and node.DeleteSchedule
// through a random live node, at the times the scenario sets, repeated until
// answered 200. The nodes' schedulers then enqueue each tick's task themselves.
//
// The checker verifies, in true time:
//
//   - SC1: at most one task per tick. Every task a scheduler enqueues for a tick of
//     a schedule is the same task (one ID and nonce), and the tick is a tick of the
//     schedule's cron expression (computed here with robfig/cron directly, not with
//     the node's code).
//   - SC2: at least one task per tick, for the ticks a majority could take: every
//     tick from the PUT's answer until the DELETE was issued (less margins for the
//     slots in flight), in the liveness phase; and in the safety phase too when the
//     scenario says its faults never take a majority of any tick's replicas away
//     (every_tick). A tick has its task when a scheduler's enqueue of it was
//     acknowledged or a delivery of it started.

// ScheduleSpec is one cron schedule of the workload.
type ScheduleSpec struct {
	Name     string `json:"name"`
	Cron     string `json:"cron"`
	TimeZone string `json:"time_zone,omitempty"`
	Queue    string `json:"queue,omitempty"`  // default: the first of workload.queues
	Missed   string `json:"missed,omitempty"` // skip (default) | one
	// From is when the client's PUT is made (default 0: at the start); Until when
	// its DELETE is (default: a minute into the liveness phase).
	From  Duration `json:"from,omitempty"`
	Until Duration `json:"until,omitempty"`
	// EveryTick: the faults never take a majority of any tick's replicas away, so
	// every tick of the safety phase must have its task too (SC2).
	EveryTick bool `json:"every_tick,omitempty"`
}

func (sp ScheduleSpec) schedule() node.Schedule {
	missed, _ := node.ParseMissedPolicy(sp.Missed)
	return node.Schedule{Name: sp.Name, Cron: sp.Cron, TimeZone: sp.TimeZone, Queue: sp.Queue, Missed: missed,
		URL: "http://worker.sim/" + sp.Queue, ContentType: "application/x-www-form-urlencoded", Body: []byte("schedule=" + sp.Name)}
}

func (sc *Scenario) fillScheduleDefaults() {
	for i := range sc.Workload.Schedules {
		sp := &sc.Workload.Schedules[i]
		if sp.Queue == "" && len(sc.Workload.Queues) > 0 {
			sp.Queue = sc.Workload.Queues[0].Name
		}
		if sp.Until == 0 {
			sp.Until = sc.Duration + Duration(time.Minute)
		}
	}
}

// validateSchedules reports the problems of workload.schedules through bad.
func (sc *Scenario) validateSchedules(bad func(field, format string, args ...any), queues map[string]bool) {
	names := map[string]bool{}
	for i, sp := range sc.Workload.Schedules {
		f := fmt.Sprintf("workload.schedules[%d]", i)
		s := sp.schedule()
		if _, err := node.ValidateSchedule(&s, epoch); err != nil {
			var fe *node.FieldError
			if errors.As(err, &fe) {
				bad(f+"."+strings.TrimPrefix(fe.Field, "task."), "%s", fe.Message)
			} else {
				bad(f, "%v", err)
			}
		}
		if _, err := node.ParseMissedPolicy(sp.Missed); err != nil {
			bad(f+".missed", "%v", err)
		}
		if names[sp.Name] {
			bad(f+".name", "%q appears twice", sp.Name)
		}
		names[sp.Name] = true
		if !queues[sp.Queue] {
			bad(f+".queue", "must name a queue of workload.queues, not %q", sp.Queue)
		}
		if sp.From < 0 || sp.From > sc.Duration {
			bad(f+".from", "must be within the safety phase (0 to duration %s)", sc.Duration.D())
		}
		if sp.Until <= sp.From || sp.Until > sc.Duration+sc.LivenessBound {
			bad(f+".until", "must come after from and before the end of the liveness bound (%s)", (sc.Duration + sc.LivenessBound).D())
		}
	}
}

// --- the clients' requests -----------------------------------------------------------

// startSchedules makes each schedule's PUT and DELETE at their times.
func (w *world) startSchedules() {
	for _, sp := range w.sc.Workload.Schedules {
		m := w.check.scheduleModel(sp)
		w.at(int64(sp.From), func() { w.putScheduleUntilDone(sp, m) })
		w.at(int64(sp.Until), func() { w.deleteScheduleUntilDone(sp, m) })
	}
}

// schedulesDone reports whether every schedule's DELETE was answered: the run may
// end only then (the schedules would go on making tasks).
func (w *world) schedulesDone() bool {
	for _, m := range w.check.scheds {
		if m.deleted < 0 {
			return false
		}
	}
	return true
}

// putScheduleUntilDone makes the PUT through a random live node, again a second
// after a failure or when no answer came within the client's timeout.
func (w *world) putScheduleUntilDone(sp ScheduleSpec, m *schedModel) {
	w.scheduleRequest("put_schedule", sp.Name, func(n *node.Node, reply func(error)) {
		n.PutSchedule(sp.schedule(), func(_ node.Schedule, err error) { reply(err) })
	}, func() { m.answered = w.now })
}

// deleteScheduleUntilDone makes the DELETE once the PUT was answered, and repeats
// it likewise.
func (w *world) deleteScheduleUntilDone(sp ScheduleSpec, m *schedModel) {
	if m.answered < 0 {
		w.after(time.Second, func() { w.deleteScheduleUntilDone(sp, m) })
		return
	}
	m.deleteIssued = w.now
	w.scheduleRequest("delete_schedule", sp.Name, func(n *node.Node, reply func(error)) {
		n.DeleteSchedule(sp.Name, func(_ node.Schedule, err error) {
			if errors.Is(err, node.ErrScheduleNotFound) {
				err = nil // every member held the PUT: deleted already, by an earlier try
			}
			reply(err)
		})
	}, func() { m.deleted = w.now })
}

func (w *world) scheduleRequest(kind, name string, call func(n *node.Node, reply func(error)), done func()) {
	s := w.liveNode()
	if s == nil {
		w.after(time.Second, func() { w.scheduleRequest(kind, name, call, done) })
		return
	}
	if w.trace != nil {
		w.trace.fault(w.now, kind, name+" via "+string(s.id))
	}
	answered := false
	call(s.n, func(err error) {
		if answered {
			return
		}
		answered = true
		if w.trace != nil {
			res := "acknowledged by every member"
			if err != nil {
				res = err.Error()
			}
			w.trace.fault(w.now, kind+"_answer", name+": "+res)
		}
		if err != nil {
			w.after(time.Second, func() { w.scheduleRequest(kind, name, call, done) })
			return
		}
		done()
	})
	w.after(manageTimeout, func() {
		if !answered {
			answered = true
			w.scheduleRequest(kind, name, call, done)
		}
	})
}

// --- the checker's side ----------------------------------------------------------------

// schedModel is what the checker knows of one schedule.
type schedModel struct {
	spec     ScheduleSpec
	cron     cron.Schedule
	loc      *time.Location
	answered int64 // true time the last PUT was answered 200 (-1: not yet)
	// deleteIssued: the DELETE was first made; deleted: it was answered (-1: not yet).
	deleteIssued, deleted int64
}

// tickKey names one tick of one schedule (Unix seconds on the nodes' clocks).
type tickKey struct {
	schedule string
	tick     int64
}

// tickRec is what the checker saw of one tick.
type tickRec struct {
	keys       []taskKey // the tasks enqueued for it (SC1: one at most)
	firstStart int64     // true time the first scheduler began to enqueue it
	acked      bool
}

var tickParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

func (c *checker) scheduleModel(sp ScheduleSpec) *schedModel {
	m := &schedModel{spec: sp, answered: -1, deleteIssued: -1, deleted: -1, loc: time.UTC}
	if sp.TimeZone != "" {
		m.loc, _ = time.LoadLocation(sp.TimeZone) // validated with the scenario
	}
	m.cron, _ = tickParser.Parse(sp.Cron)
	if c.scheds == nil {
		c.scheds = map[string]*schedModel{}
	}
	c.scheds[sp.Name] = m
	return m
}

// next is the model's first tick after t; @every ticks are multiples of its period
// since the Unix epoch (the rule node/ documents).
func (m *schedModel) next(t time.Time) time.Time {
	if d, ok := m.cron.(cron.ConstantDelaySchedule); ok {
		p := int64(d.Delay / time.Second)
		return time.Unix((t.Unix()/p+1)*p, 0)
	}
	return m.cron.Next(t.In(m.loc))
}

// tickEnqueued is SC1, as a scheduler starts to enqueue t for a tick.
func (c *checker) tickEnqueued(s *simNode, schedule string, tick time.Time, t *node.Task) {
	k := tickKey{schedule, tick.Unix()}
	tr := c.ticks[k]
	if tr == nil {
		tr = &tickRec{firstStart: c.w.now}
		c.ticks[k] = tr
		if m := c.scheds[schedule]; m != nil && m.cron != nil {
			if !m.next(tick.Add(-time.Second)).Equal(tick) {
				c.violate("SC1", []string{t.ID}, []node.NodeID{s.id}, "%s enqueued a task for %s, which is no tick of schedule %q (%s)",
					s.id, tick.UTC().Format(time.RFC3339Nano), schedule, m.spec.Cron)
			}
		}
	}
	if !slices.Contains(tr.keys, keyOf(t)) {
		tr.keys = append(tr.keys, keyOf(t))
		if len(tr.keys) == 2 {
			c.violate("SC1", []string{string(tr.keys[0].id), t.ID}, []node.NodeID{s.id}, "tick %s of schedule %q has a second task (enqueued by %s)",
				tick.UTC().Format(time.RFC3339), schedule, s.id)
		}
	}
}

// tickAnswered: a scheduler's enqueue was acknowledged. The task counts as
// acknowledged to a client (L1, L2, Q6 apply), sent when the first scheduler began
// to enqueue it: any node may have stored the copy the replicas keep.
func (c *checker) tickAnswered(schedule string, tick time.Time, t *node.Task, err error) {
	tr := c.ticks[tickKey{schedule, tick.Unix()}]
	if err != nil || tr == nil || c.tasks[keyOf(t)] == nil {
		return
	}
	tr.acked = true
	c.enqueueAcked(t, tr.firstStart)
}

// bootRec is one start of a node: when, and when its recovery wait ends (the same
// when it started with its memory).
type bootRec struct{ at, recovered int64 }

// booted notes a start of s, and whether it started in a recovery wait.
func (c *checker) booted(s *simNode) {
	b := bootRec{at: c.w.now, recovered: c.w.now}
	if s.n != nil && s.n.Recovering() {
		cfg := c.w.newNodeConfig(s)
		cfg.EnsureDefaults()
		b.recovered += int64(cfg.RecoveryWait) // at most: a restart inside a wait ends with it
	}
	if c.boots == nil {
		c.boots = map[node.NodeID][]bootRec{}
	}
	c.boots[s.id] = append(c.boots[s.id], b)
}

// leaseMayBeHeld reports whether, at true time at, a majority of the cluster's
// first members had started and were past their recovery wait: only then may a
// scheduler hold the token lease that ticks need (node's schedule.go, "Ticks and
// the roster"), a member in its recovery wait answering no to its rounds.
func (c *checker) leaseMayBeHeld(at int64) bool {
	n := c.w.sc.Cluster.Nodes
	if n <= 1 {
		return true // alone: no lease
	}
	ok := 0
	for _, s := range c.w.nodes[:n] {
		var last *bootRec
		for i, b := range c.boots[s.id] {
			if b.at <= at {
				last = &c.boots[s.id][i]
			}
		}
		if last != nil && last.recovered <= at {
			ok++
		}
	}
	return ok >= n/2+1
}

// rosterChangedWithin reports whether a roster was committed in [from, to].
func (c *checker) rosterChangedWithin(from, to int64) bool {
	for _, at := range c.rosterChanges {
		if at >= from && at <= to {
			return true
		}
	}
	return false
}

// finishSchedules is SC2, once the run is over.
func (c *checker) finishSchedules(livenessStart int64) {
	sc := c.w.sc
	skew := int64(sc.Clocks.maxOffset()) + int64(sc.Cluster.MaxClockDrift)
	slots := int64(node.ScheduleLead) + int64(sc.Cluster.Replicas)*int64(sc.Cluster.ReplicaOffset)
	delivered := map[tickKey]bool{}
	for k, tr := range c.ticks {
		for _, key := range tr.keys {
			if r := c.tasks[key]; r != nil && len(r.deliveries) > 0 {
				delivered[k] = true
			}
		}
	}
	// From the members' recovery to a tick's first slot: a term of the token lease
	// for its rounds and the drift allowance twice, on every clock.
	cfg := c.w.newNodeConfig(c.w.nodes[0])
	cfg.EnsureDefaults()
	// (and a second for the new roster to reach the members and their first round).
	leaseLag := int64(cfg.Lease/4+3*cfg.MaxClockDrift+time.Second) + int64(sc.Clocks.maxOffset())
	for _, name := range sortedKeys(c.scheds) {
		m := c.scheds[name]
		if m.answered < 0 || m.cron == nil {
			continue
		}
		from := m.answered + int64(node.ScheduleLead) + skew + int64(time.Second)
		if !m.spec.EveryTick {
			from = max(from, livenessStart+slots+skew+int64(5*time.Second))
		}
		to := c.w.now - slots - skew
		if m.deleteIssued >= 0 {
			to = m.deleteIssued - slots - skew - int64(time.Second)
		}
		missing := 0
		for t, n := m.next(epoch.Add(time.Duration(from))), 0; !t.IsZero() && t.Sub(epoch) <= time.Duration(to) && n < 100000; t, n = m.next(t), n+1 {
			if first := int64(t.Sub(epoch)) - int64(node.ScheduleLead); !c.leaseMayBeHeld(first-leaseLag) || c.rosterChangedWithin(first-leaseLag, first) {
				continue // no scheduler could hold the lease in time for its first slot
			}
			k := tickKey{name, t.Unix()}
			if tr := c.ticks[k]; tr != nil && (tr.acked || delivered[k]) {
				continue
			}
			missing++
			if missing <= 5 {
				c.violate("SC2", nil, nil, "tick %s (true time ~%s) of schedule %q has no task, though a majority could take it",
					t.UTC().Format(time.RFC3339), t.Sub(epoch), name)
			}
		}
		if missing > 5 {
			c.violate("SC2", nil, nil, "schedule %q: %d ticks in all have no task", name, missing)
		}
	}
}

// --- the observer ------------------------------------------------------------------

var _ node.ScheduleObserver = simObserver{}

func (o simObserver) TickEnqueued(id node.NodeID, schedule string, tick time.Time, t *node.Task) {
	o.s.w.check.tickEnqueued(o.s, schedule, tick, t)
}

func (o simObserver) TickAnswered(id node.NodeID, schedule string, tick time.Time, t *node.Task, err error) {
	w := o.s.w
	w.check.tickAnswered(schedule, tick, t, err)
	if w.trace != nil {
		kind := "tick_ack"
		if err != nil {
			kind = "tick_failed"
		}
		w.trace.enqueue(w.now, id, kind, t.ID, -1)
	}
}
