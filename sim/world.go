package sim

import (
	"math"
	"math/rand/v2"
	"slices"
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

	nodes []*simNode
	byID  map[node.NodeID]*simNode

	net           netState
	wireRoundTrip bool // pass every message through net/wire
	liveness      bool // in the liveness phase: no more faults
	stopped       bool

	check *checker
	trace *tracer
}

// at schedules fn at true time t (never in the past).
func (w *world) at(t int64, fn func()) {
	if t < w.now {
		t = w.now
	}
	w.seq++
	w.queue.push(event{at: t, seq: w.seq, fn: fn})
}

func (w *world) after(d time.Duration, fn func()) { w.at(w.now+int64(d), fn) }

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

	disk     *simDisk // nil with memory storage
	inflight int      // webhooks this node started that have not ended
	started  int      // incarnations started, for seeding
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
	return int64(math.Ceil(float64(d) / (1 + s.drift)))
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
	s.w.at(s.w.now+s.trueDelay(d), func() {
		if t.cancelled {
			return
		}
		t.cancelled = true
		s.input(inc, f)
	})
	return t.stop
}

// --- node.Storage ----------------------------------------------------------------

// simDisk keeps records; only those covered by a finished Sync survive a crash.
type simDisk struct {
	s      *simNode
	recs   []node.Record
	synced int  // records covered by a finished sync
	lost   bool // synced records were lost (corruption) since the last Load
}

// LostSince implements node.LossReporter: the loss is at the restart that follows it.
func (d *simDisk) LostSince() (time.Time, bool) { return time.Time{}, d.lost }

// corrupt loses a random suffix of the synced records, up to all of them: a bit flip
// or a truncation that the real disk detects (and an operator answers by cutting the
// log there, or wiping it). It returns the records lost.
func (d *simDisk) corrupt(r interface{ IntN(int) int }) []node.Record {
	keep := r.IntN(d.synced + 1)
	lost := slices.Clone(d.recs[keep:d.synced])
	d.recs, d.synced = d.recs[:keep], keep
	d.lost = d.lost || len(lost) > 0
	return lost
}

var _ node.Storage = (*simDisk)(nil)

const diskSyncLatency = 2 * time.Millisecond

func (d *simDisk) Durable() bool              { return true }
func (d *simDisk) Append(recs ...node.Record) { d.recs = append(d.recs, recs...) }
func (d *simDisk) Load() ([]node.Record, error) {
	return append([]node.Record(nil), d.recs[:d.synced]...), nil
}
func (d *simDisk) Sync(done func()) {
	target := len(d.recs)
	s := d.s
	inc := s.incarnation
	s.w.after(diskSyncLatency, func() {
		if s.incarnation != inc || !s.up {
			return // the process died before fsync returned
		}
		d.synced = max(d.synced, target)
		s.input(inc, done)
	})
}

// crash drops what no sync covered and returns it.
func (d *simDisk) crash() []node.Record {
	lost := slices.Clone(d.recs[d.synced:])
	d.recs = d.recs[:d.synced]
	return lost
}

// --- node.Observer ----------------------------------------------------------------

type simObserver struct{ s *simNode }

var _ node.MessageObserver = simObserver{}

func (o simObserver) QueueChanged(id node.NodeID, set node.QueueSetting) {
	o.s.w.check.queueChanged(id, set)
}

func (o simObserver) MessageSent(m node.Message) { o.s.w.check.nodeSent(o.s, m) }

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
	members := make([]node.NodeID, len(w.nodes))
	for i, o := range w.nodes {
		members[i] = o.id
	}
	queues := map[string]node.QueueConfig{}
	for _, q := range w.sc.Workload.Queues {
		queues[q.Name] = q.config()
	}
	return node.Config{
		ID:            s.id,
		Members:       members,
		Replicas:      c.Replicas,
		ReplicaOffset: c.ReplicaOffset.D(),
		Lease:         c.Lease.D(),
		MaxClockDrift: c.MaxClockDrift.D(),
		Protocol:      w.proto,
		ClaimQuorum:   c.ClaimQuorum,
		Queues:        queues,

		MaxPending:      c.MaxPending,
		MaxQueuePending: c.MaxQueuePending,
	}
}

// boot starts a new incarnation of s.
func (w *world) boot(s *simNode) {
	s.incarnation++
	s.started++
	s.up, s.paused, s.buffered = true, false, nil
	env := node.Env{
		Clock:      simClock{s},
		Network:    simNetwork{s},
		Dispatcher: simDispatcher{s},
		Rand:       rand.New(rand.NewPCG(w.seed, uint64(s.idx)<<32|uint64(s.started))),
		Observer:   simObserver{s},
	}
	if s.disk != nil {
		env.Storage = s.disk
	}
	n, err := node.New(w.newNodeConfig(s), env)
	if err != nil {
		panic("sim: node config rejected after scenario validation: " + err.Error())
	}
	s.n = n
	if err := n.Start(); err != nil {
		panic("sim: node start: " + err.Error())
	}
	if s.disk != nil {
		s.disk.lost = false // reported once, to the incarnation that loaded it
	}
}

func (w *world) crash(s *simNode) {
	if !s.up {
		return
	}
	s.up, s.paused, s.buffered, s.n = false, false, nil, nil
	s.incarnation++
	var lost []node.Record
	if s.disk != nil {
		lost = s.disk.crash()
	}
	w.check.crashed(s, s.disk, lost)
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
		if !s.up || s.paused {
			d++
		}
	}
	return d
}
