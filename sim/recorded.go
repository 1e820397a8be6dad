package sim

import (
	"slices"
	"time"

	"github.com/miyamotohq/miyamoto/node"
)

// RecordedKind says what a RecordedEvent is.
type RecordedKind uint8

// What production nodes did, as their flight recordings (net/recorder) show it.
const (
	RecStart         RecordedKind = iota + 1 // a node's process started: Durable, Loaded
	RecStop                                  // it stopped or was killed
	RecState                                 // Task's state changed on Node: From, To
	RecSent                                  // Node sent Message (to itself too)
	RecSend                                  // Message left Node through the network; Lost: no recording shows it arrive
	RecReceive                               // Message arrived at Node; SendIndex: its RecSend, -1 unknown
	RecDispatch                              // Node started Delivery
	RecResult                                // a delivery of Node ended with Status
	RecAcked                                 // an enqueue of Task was acknowledged to its client
	RecQueueChanged                          // Node's copy of a queue setting changed: Setting
	RecQueuePut                              // a client's queue change came to Node: Op ("set-queue", "purge-queue", "delete-queue"), Put, Setting.Queue, Setting.Paused (asked)
	RecQueueAnswered                         // Node answered the change Put: Setting, OK
	RecInFlight                              // a delivery Node started before its window (see Snapshot) was in flight at the window's start: Delivery
)

// RecordedEvent is one thing a production node did, at a reading of its clock.
type RecordedEvent struct {
	Node      node.NodeID
	At        time.Time
	Kind      RecordedKind
	Task      *node.Task
	From, To  node.TaskState
	Message   node.Message
	SendIndex int
	Lost      bool
	Delivery  node.Delivery
	Attempt   uint64
	Status    int
	Setting   node.QueueSetting
	Durable   bool
	Loaded    []node.Record
	// Snapshot, on a RecStart: what the recording kept of this run begins at a
	// snapshot of the node, not at its start (the ring dropped it): a window. Known
	// is every task the node held there, in its state; the checker takes them as
	// the node's, with what it cannot have seen (their creation, deliveries that
	// ended before) unseen.
	Snapshot bool
	Known    []node.TaskStatus
	Op       string
	Put      int
	OK       bool
	// Read is Node's clock reading as recorded, where the merge moved At later (to
	// keep a node's events in order, a receive after its send); zero: At.
	Read time.Time
	// Bound, for a RecSend, is a reading of Node's clock taken no later than the
	// send; for a RecReceive, one taken no earlier than the arrival (net/recorder's
	// Event.Bound). Zero: none; the message does not measure clocks.
	Bound time.Time
}

// RecordedCluster is what CheckRecorded needs to know of the cluster.
type RecordedCluster struct {
	Members       []node.NodeID
	MaxClockDrift time.Duration // S5's and Q4's allowance, as configured
	// PermitValidity is the members' (node.Config; 0: its default): Q1 allows for it.
	PermitValidity time.Duration
	DedupWindow    time.Duration
	DefaultQueue   node.QueueConfig // what a queue nobody set works by
}

// RecordedResult is CheckRecorded's verdict.
type RecordedResult struct {
	Origin          time.Time // the first event's time: Violation.At and Excuse.At count from it
	Tasks           int
	Acked           int
	Deliveries      int
	Violations      []Violation
	ViolationCounts map[string]int
	Excused         []Excuse
}

// CheckRecorded runs the simulator's checker over what production nodes really did,
// in the order given (net/recorder's Merge: by clock reading, a message received
// after it was sent). Each node's clock stands for true time; MaxClockDrift is the
// allowance, as in a simulated run. The safety invariants S1–S5 and Q1–Q6 are
// checked as events come; liveness (L1, L2) is not, since a recording ends at an
// arbitrary time with tasks still pending, nor are S6–S8, which read a node's state
// the recording does not keep.
func CheckRecorded(cl RecordedCluster, events []RecordedEvent) RecordedResult {
	res := RecordedResult{}
	if len(events) == 0 {
		return res
	}
	origin := events[0].At
	for _, e := range events {
		if e.At.Before(origin) {
			origin = e.At
		}
	}
	res.Origin = origin
	sc := &Scenario{}
	sc.Cluster.Nodes = len(cl.Members)
	sc.Cluster.MaxClockDrift = Duration(cl.MaxClockDrift)
	sc.Cluster.PermitValidity = Duration(cl.PermitValidity)
	sc.Cluster.DedupWindow = Duration(cl.DedupWindow)
	w := &world{sc: sc, byID: map[node.NodeID]*simNode{}}
	members := slices.Clone(cl.Members)
	slices.Sort(members)
	for i, id := range members {
		s := &simNode{w: w, idx: i, id: id}
		w.nodes = append(w.nodes, s)
		w.byID[id] = s
	}
	c := newChecker(w)
	c.members = members
	w.check = c
	f := &recordedFeed{w: w, c: c, shift: epoch.Sub(origin), tasks: map[*node.Task]*node.Task{},
		deliveries: map[recDeliveryKey]int{}, know: map[int][]uint64{}, defaults: cl.DefaultQueue, durable: map[node.NodeID]bool{},
		puts: map[recPutKey]*recPut{}}
	for i, e := range events {
		s := w.byID[e.Node]
		if s == nil {
			continue // a node outside the members the recordings name
		}
		w.now = int64(e.At.Sub(origin))
		f.feed(i, s, e)
	}
	res.Tasks = len(c.order)
	res.Acked = c.acked
	res.Deliveries = len(c.deliveries)
	res.Violations, res.ViolationCounts, res.Excused = c.violations, c.nViolation, c.excused
	return res
}

type recDeliveryKey struct {
	node    node.NodeID
	task    string
	attempt uint64
}

// recordedFeed turns recorded events into the checker's calls, as the simulator's
// world makes them.
type recordedFeed struct {
	w          *world
	c          *checker
	shift      time.Duration             // real time to the simulator's epoch
	tasks      map[*node.Task]*node.Task // each task with its times shifted
	deliveries map[recDeliveryKey]int    // deliveries in flight: their checker index
	know       map[int][]uint64          // per RecSend index: what its receiver learns
	defaults   node.QueueConfig
	durable    map[node.NodeID]bool // per node: its last start's storage keeps records
	puts       map[recPutKey]*recPut
}

type recPutKey struct {
	node node.NodeID
	put  int
}

type recPut struct {
	op  string
	rec *putRec
}

// task is t with its times moved by shift, so that S5 and Q4 compare them with the
// checker's clock (true time since the simulator's epoch).
func (f *recordedFeed) task(t *node.Task) *node.Task {
	if t == nil {
		return nil
	}
	if s, ok := f.tasks[t]; ok {
		return s
	}
	s := *t
	if !s.ETA.IsZero() {
		s.ETA = s.ETA.Add(f.shift)
	}
	if !s.Created.IsZero() {
		s.Created = s.Created.Add(f.shift)
	}
	f.tasks[t] = &s
	return &s
}

// queue makes sure the checker models t's queue: with what the nodes said of it, or
// else the default every node applies.
func (f *recordedFeed) queue(name string) {
	if f.c.queues[name] != nil {
		return
	}
	m := &queueModel{cfg: f.defaults, retry: f.defaults.Retry, retryKnown: true, pausedSince: -1, lastResume: -1}
	m.tokens = m.capacity(f.c.driftRate, f.c.permitLag)
	f.c.queues[name] = m
}

func (f *recordedFeed) feed(i int, s *simNode, e RecordedEvent) {
	c := f.c
	switch e.Kind {
	case RecStart:
		f.started(s, e)
	case RecStop:
		f.stopped(s)
	case RecState:
		t := f.task(e.Task)
		f.queue(t.Queue)
		c.stateChanged(s, t, e.From, e.To)
	case RecSent:
		m := e.Message
		m.Task = f.task(m.Task)
		c.nodeSent(s, m)
	case RecSend:
		m := e.Message
		m.Task = f.task(m.Task)
		f.know[i] = c.sent(s, m)
		if e.Lost {
			c.messageLost(m)
		}
	case RecReceive:
		m := e.Message
		m.Task = f.task(m.Task)
		c.learn(s, m, f.know[e.SendIndex])
		if m.Type == node.MsgRelease {
			c.releaseReached(s, m)
		}
	case RecDispatch:
		d := e.Delivery
		d.Task = f.task(d.Task)
		f.queue(d.Task.Queue)
		f.deliveries[recDeliveryKey{s.id, d.Task.ID, d.Attempt}] = c.deliveryStarted(s, d)
	case RecInFlight:
		d := e.Delivery
		d.Task = f.task(d.Task)
		f.queue(d.Task.Queue)
		f.deliveries[recDeliveryKey{s.id, d.Task.ID, d.Attempt}] = c.deliveryInFlight(s, d)
	case RecResult:
		k := recDeliveryKey{s.id, e.Task.ID, e.Attempt}
		if id, ok := f.deliveries[k]; ok {
			delete(f.deliveries, k)
			c.deliveryEnded(id, e.Status)
		}
	case RecAcked:
		t := f.task(e.Task)
		if c.tasks[keyOf(t)] != nil { // a replica's recording shows it stored
			c.enqueueAcked(t, f.w.now)
		}
	case RecQueueChanged:
		f.queue(e.Setting.Queue)
		c.queueChanged(s.id, e.Setting)
	case RecQueuePut, RecQueueAnswered:
		f.queuePut(s, e)
	}
}

// started: a node's process began; after its first start, as a restart after a
// crash: it knows what its log gave back, nothing without durable storage.
func (f *recordedFeed) started(s *simNode, e RecordedEvent) {
	s.incarnation++
	first := s.started == 0
	s.up, s.paused = true, false
	s.started++
	f.durable[s.id] = e.Durable
	if e.Snapshot {
		defer f.window(s, e.Known)
	}
	if first {
		return
	}
	c := f.c
	if !e.Durable {
		return // stopped forgot everything already
	}
	stored, final := map[string]bool{}, map[string]bool{}
	for _, r := range e.Loaded {
		switch {
		case r.Kind == node.RecTask && r.Task != nil:
			stored[r.Task.ID] = true
		case r.State.Final():
			final[r.TaskID] = true
		}
	}
	if e.Snapshot {
		// The start and its log are gone: what the node held at the window is
		// what it kept (or learnt again since).
		for _, k := range e.Known {
			stored[k.Task.ID] = true
			final[k.Task.ID] = k.State.Final()
		}
	}
	c.forget(s, stored, final)
}

// window: s's recording begins here, at a snapshot, holding known. Each task is
// taken as s's from now, in its state, as if it had just come to s: its creation,
// its acknowledgement and the deliveries that ended before are unseen, so nothing
// is judged of them (a task created before every window is not counted as
// acknowledged, its earlier failures not in Q4's count, an earlier success not in
// S3's); what happens to it from here is checked as any task's.
func (f *recordedFeed) window(s *simNode, known []node.TaskStatus) {
	for _, k := range known {
		t := f.task(k.Task)
		f.queue(t.Queue)
		f.c.stateChanged(s, t, node.StateNone, k.State)
	}
}

// stopped: the process ended (killed or shut down): it forgot everything without
// durable storage, and with it, what it wrote and had not synced may be gone (the
// next start's log says).
func (f *recordedFeed) stopped(s *simNode) {
	c := f.c
	s.up = false
	s.incarnation++
	c.crashedAt[s.idx] = f.w.now
	durable := f.durableOf(s)
	c.forgetKnowledge(s, !durable, nil)
	if !durable {
		c.forget(s, nil, nil)
		c.settingsForgotten(s, true)
	}
}

// durableOf: whether s's last start said its storage is durable.
func (f *recordedFeed) durableOf(s *simNode) bool { return f.durable[s.id] }

// queuePut follows a client's queue change as the simulator's clients make them
// (manage.go): issued, then answered; a resume or a deletion unpauses the queue when
// issued, a pause pauses it once answered (Q5), and the answered setting is what
// later tasks of the queue get (Q6).
func (f *recordedFeed) queuePut(s *simNode, e RecordedEvent) {
	c, q := f.c, e.Setting.Queue
	k := recPutKey{s.id, e.Put}
	if e.Kind == RecQueuePut {
		f.queue(q)
		f.puts[k] = &recPut{op: e.Op, rec: c.putIssued(q)}
		if e.Op == "delete-queue" || e.Op == "set-queue" && !e.Setting.Paused {
			c.queueResumed(q)
		}
		return
	}
	p := f.puts[k]
	if p == nil {
		return
	}
	delete(f.puts, k)
	set := e.Setting
	if p.op == "delete-queue" {
		// Q6 holds the queue to what the client asked for: after a deletion, the defaults.
		set.Config, set.Paused = f.defaults, false
	}
	c.putAnswered(p.rec, set, e.OK)
	if e.OK && set.Paused && p.op != "purge-queue" {
		c.queuePaused(set.Queue, p.rec)
	}
}
