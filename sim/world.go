package sim

import (
	"math"
	"math/rand/v2"
	"time"

	"github.com/miyamotohq/miyamoto/node"
)

// epoch is what every node's clock reads at true time 0, before its offset.
var epoch = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// world is one run: the event loop and everything simulated.
type world struct {
	sc    *Scenario
	seed  uint64
	proto node.Protocol

	now    int64 // true time, ns since the run began
	seq    uint64
	queue  eventQueue
	events uint64 // events run

	rngNet, rngFault, rngWork, rngWorker, rngClock *rand.Rand
	// rngSwarm is the swarm's own stream: what it enables, when, which faults, and
	// the nodes they strike (resolving is set to it while the swarm applies one), so
	// that its faults, written down as a fixed schedule (shrink), leave every other
	// draw of the run as it was.
	rngSwarm, resolving *rand.Rand
	rngLook             *rand.Rand    // the clients' lookups (lookup.go)
	applied             *[]FaultEvent // see Options.applied
	armedFaults         []FaultEvent  // faults aimed at a moment, waiting for it (trigger)
	held                []heldMessage // messages a silent partition holds (releaseHeld)

	nodes []*simNode
	byID  map[node.NodeID]*simNode

	net        netState
	wireBuf    []byte // the last message's frame (see transmit)
	liveness   bool   // in the liveness phase: no more faults
	removals   bool   // a remove or replace event ran (the checker's M2)
	livenessAt int64  // true time the liveness phase began (when liveness)
	stopped    bool

	check *checker
	wl    *workload
	// changeGen counts the clients' changes of each queue, so that the repeats of
	// an older change stop once a newer one was made (see changeUntilDone).
	changeGen map[string]int
	// settingUp names the queues whose setup PUT (workload.queues) is not answered
	// yet; heldChanges are the scenario's changes of such a queue, made once it is (see
	// manage).
	settingUp   map[string]bool
	heldChanges map[string][]heldChange
	trace       *tracer
	liveQueue   string // see Options.liveQueue
	tweak       func(*node.Config)
	started     func(*node.Node)
}

// at schedules fn at true time t (never in the past).
func (w *world) at(t int64, fn func()) {
	if t < w.now {
		t = w.now
	}
	w.seq++
	w.queue.push(event{at: t, seq: w.seq, fn: fn})
}

// after schedules fn d from now. A time past the end of int64 saturates (the event
// never runs), as a production timer of centuries never fires: a wrap into the past
// would fire it at once and show a storm production does not have.
func (w *world) after(d time.Duration, fn func()) {
	at := w.now + int64(d)
	if d > 0 && at < w.now {
		at = math.MaxInt64
	}
	w.at(at, fn)
}

func (w *world) uniform(r *rand.Rand, rg Range) time.Duration {
	if rg.Max <= rg.Min {
		return rg.Min.D()
	}
	return rg.Min.D() + time.Duration(r.Int64N(int64(rg.Max-rg.Min)+1))
}

// simNode is one member: its state machine and what the simulator knows about it.
type simNode struct {
	w   *world
	idx int
	id  node.NodeID
	n   *node.Node

	up, paused  bool
	incarnation uint64
	buffered    []func() // inputs that arrived while paused

	offset int64   // clock offset, ns
	drift  float64 // clock rate error: local time runs at 1+drift

	// spare: started outside the cluster (node.Config.Join); asked: a join event
	// started adding it (membership.go).
	spare, asked bool
	// removing: a remove or replace event started removing it (membership.go).
	removing bool

	disk     *simDisk // nil with memory storage
	inflight int      // webhooks this node started that have not ended
	started  int      // incarnations started, for seeding

	// running holds this incarnation's deliveries whose result has not reached the
	// node, so that a graceful stop can cut them (stop.go).
	running map[runKey]bool
	// stopping: a stop fault began this incarnation's graceful shutdown (stop.go);
	// restartAfterStop: the fault's end came first, so the node starts again as soon
	// as it is down.
	stopping, restartAfterStop bool
}

// localNow converts true time to this node's clock.
func (s *simNode) localNow() time.Time {
	return epoch.Add(time.Duration(s.offset + int64(float64(s.w.now)*(1+s.drift))))
}

// trueDelay converts a duration on this node's clock to true time, rounding up so a
// timer never fires early by its own clock.
func (s *simNode) trueDelay(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	t := math.Ceil(float64(d) / (1 + s.drift))
	if t >= math.MaxInt64 {
		return math.MaxInt64 // saturate: see after
	}
	return int64(t)
}

// input runs f as an input of the node's current incarnation: dropped if the node
// crashed since inc, held while it is paused.
func (s *simNode) input(inc uint64, f func()) {
	if !s.up || s.incarnation != inc {
		return
	}
	if s.paused {
		s.buffered = append(s.buffered, f)
		return
	}
	f()
}

// --- node.Clock ----------------------------------------------------------------

type simClock struct{ s *simNode }

var _ node.Clock = simClock{}

func (c simClock) Now() time.Time { return c.s.localNow() }

type simTimer struct{ cancelled bool }

func (t *simTimer) stop() bool {
	was := !t.cancelled
	t.cancelled = true
	return was
}

func (c simClock) AfterFunc(d time.Duration, f func()) func() bool {
	s := c.s
	t := &simTimer{}
	inc := s.incarnation
	s.w.after(time.Duration(s.trueDelay(d)), func() {
		if t.cancelled {
			return
		}
		t.cancelled = true
		s.input(inc, f)
	})
	return t.stop
}

// --- node.Observer ----------------------------------------------------------------

type simObserver struct{ s *simNode }

var _ node.MessageObserver = simObserver{}

func (o simObserver) AckCounted(a node.Ack) { o.s.w.check.ackCounted(o.s, a) }

func (o simObserver) QueueChanged(id node.NodeID, set node.QueueSetting) {
	o.s.w.check.queueChanged(id, set)
}

func (o simObserver) MessageSent(m node.Message) {
	o.s.w.check.nodeSent(o.s, m)
	if m.Type == node.MsgRosterPropose {
		o.s.w.trigger("roster_proposed", o.s)
	}
}

func (o simObserver) LeaseWon(self node.NodeID, ballot uint64, until time.Time) {
	o.s.w.check.leaseWon(o.s, ballot, until)
}

func (o simObserver) RosterCommitted(self node.NodeID, r *node.Roster) {
	o.s.w.check.rosterCommitted(o.s, r)
	o.s.w.trigger("roster_committed", o.s)
}

func (o simObserver) TaskStateChanged(t *node.Task, from, to node.TaskState, attempt uint64) {
	w := o.s.w
	w.check.stateChanged(o.s, t, from, to)
	if w.trace != nil {
		w.trace.state(w.now, o.s.id, t.ID, attempt, from, to)
	}
}

// --- lifecycle ----------------------------------------------------------------

func (w *world) newNodeConfig(s *simNode) node.Config {
	c := w.sc.Cluster
	members := make([]node.NodeID, c.Nodes)
	for i, o := range w.nodes[:c.Nodes] {
		members[i] = o.id
	}
	if s.spare {
		members = []node.NodeID{s.id}
	}
	return node.Config{
		ID:             s.id,
		Members:        members,
		Join:           s.spare,
		Replicas:       c.Replicas,
		ReplicaOffset:  c.ReplicaOffset.D(),
		Lease:          c.Lease.D(),
		MaxClockDrift:  c.MaxClockDrift.D(),
		PermitValidity: c.PermitValidity.D(),
		DedupWindow:    c.DedupWindow.D(),
		Protocol:       w.proto,
		ClaimQuorum:    c.ClaimQuorum,
		Unsafe:         unsafeConfig(c.Unsafe),

		MaxPending:      c.MaxPending,
		MaxQueuePending: c.MaxQueuePending,
	}
}

// boot starts a new incarnation of s.
func (w *world) boot(s *simNode) {
	s.incarnation++
	s.started++
	s.up, s.paused, s.buffered = true, false, nil
	s.running, s.stopping = nil, false
	env := node.Env{
		Clock:      simClock{s},
		Network:    simNetwork{s},
		Dispatcher: simDispatcher{s},
		Rand:       rand.New(rand.NewPCG(w.seed, uint64(s.idx)<<32|uint64(s.started))),
		Observer:   simObserver{s},
	}
	err := w.start(s, env)
	if err != nil && errCorrupt(err) {
		// The node refuses to start on a corrupt log, as the daemon does; the
		// operator runs repair-log, and the node starts again as one that forgot.
		detail := s.disk.repair(err)
		if w.trace != nil {
			w.trace.nodeEvent(w.now, s.id, "refused to start: "+detail)
		}
		err = w.start(s, env)
	}
	if err != nil {
		// The process exits, as the daemon does when it cannot open or load its log
		// (a full disk, too many open files); its supervisor starts it again a
		// second later.
		s.up, s.n = false, nil
		s.incarnation++
		if s.disk != nil {
			s.disk.kill()
		}
		if w.trace != nil {
			w.trace.nodeEvent(w.now, s.id, "could not start: "+err.Error())
		}
		w.after(time.Second, func() { w.restart(s) })
		return
	}
	if s.disk != nil {
		w.check.recovered(s)
		w.housekeep(s, s.incarnation)
	}
	w.check.booted(s)
}

// start builds the node of s's new incarnation on env and starts it.
func (w *world) start(s *simNode, env node.Env) error {
	if s.disk != nil {
		st, err := s.disk.openStorage(s.incarnation)
		if err != nil {
			return err
		}
		env.Storage = st
	}
	cfg := w.newNodeConfig(s)
	if w.tweak != nil {
		w.tweak(&cfg)
	}
	n, err := node.New(cfg, env)
	if err != nil {
		panic("sim: node config rejected after scenario validation: " + err.Error())
	}
	if w.started != nil {
		w.started(n)
	}
	s.n = n
	return n.Start()
}

// crash ends s's process. With durable storage, kill is the death of the process
// alone (what it wrote stays in the page cache); otherwise it is a power loss of its
// machine (what was not synced is gone, but for torn writes).
func (w *world) crash(s *simNode, kill bool) {
	if !s.up {
		return
	}
	s.up, s.paused, s.buffered, s.n = false, false, nil, nil
	s.running, s.stopping = nil, false
	s.incarnation++
	var lost []node.Record
	if s.disk != nil {
		lost = s.disk.takeUnconfirmed()
		if kill {
			s.disk.kill()
		} else {
			s.disk.crash()
		}
	}
	w.check.crashed(s, lost)
	if w.trace != nil {
		w.trace.nodeEvent(w.now, s.id, "crash")
	}
}

func (w *world) restart(s *simNode) {
	if s.up {
		return
	}
	if w.trace != nil {
		w.trace.nodeEvent(w.now, s.id, "restart")
	}
	w.boot(s)
	w.check.restarted(s)
	if s.spare && s.asked {
		w.joinLoop(s) // a joiner without the roster in its log asks again, as --join does
	}
}

func (w *world) pause(s *simNode) {
	if !s.up || s.paused {
		return
	}
	s.paused = true
	w.check.paused(s)
	if w.trace != nil {
		w.trace.nodeEvent(w.now, s.id, "pause")
	}
}

func (w *world) resume(s *simNode) {
	if !s.up || !s.paused {
		return
	}
	s.paused = false
	if w.trace != nil {
		w.trace.nodeEvent(w.now, s.id, "resume")
	}
	// Everything that arrived meanwhile runs now, in arrival order; anything it
	// schedules goes behind.
	buf := s.buffered
	s.buffered = nil
	inc := s.incarnation
	for _, f := range buf {
		s.input(inc, f)
	}
}

func (w *world) down() int {
	d := 0
	for _, s := range w.nodes {
		if !s.up || s.paused || s.stopping { // a draining node claims nothing
			d++
		}
	}
	return d
}
