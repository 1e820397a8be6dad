package node

import (
	"container/heap"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A deterministic, single-goroutine fake cluster for driving nodes in virtual time.
// Every callback the nodes hand to the environment (timers, message deliveries,
// webhook results) is queued as an event and runs later from run's loop, never
// inside the call that scheduled it. Events run in (time, sequence) order.

// epoch is virtual time zero.
var epoch = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// maxEvents bounds every run so that a livelock fails the test instead of hanging.
const maxEvents = 2_000_000

var errDeadline = errors.New("deadline exceeded")

type event struct {
	at        time.Time
	seq       uint64
	fn        func()
	cancelled bool
	ran       bool
}

type eventQueue []*event

func (q eventQueue) Len() int { return len(q) }
func (q eventQueue) Less(i, j int) bool {
	if !q[i].at.Equal(q[j].at) {
		return q[i].at.Before(q[j].at)
	}
	return q[i].seq < q[j].seq
}
func (q eventQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)   { *q = append(*q, x.(*event)) }
func (q *eventQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	old[len(old)-1] = nil // the array outlives the pop: let the event go
	*q = old[:len(old)-1]
	return e
}

// deliveryRec is one webhook call started by a node.
type deliveryRec struct {
	At             time.Duration // virtual time of the Dispatch call
	Node           NodeID
	TaskID         string
	Name           string
	Attempt        uint64
	Retries        int
	Deadline       time.Duration
	PreviousStatus int
	ETA            time.Duration // the task's due time, virtual
	End            time.Duration // when the worker answered or the deadline passed
	Status         int           // the worker's answer (0: none)
}

func (d deliveryRec) String() string {
	return fmt.Sprintf("%v %s %s attempt=%d retries=%d deadline=%v", d.At, d.Node, d.TaskID, d.Attempt, d.Retries, d.Deadline)
}

// sentMsg is one message handed to the network.
type sentMsg struct {
	At      time.Duration
	Msg     Message
	Dropped bool
}

// stateChange is one Observer notification.
type stateChange struct {
	At       time.Duration
	Node     NodeID
	TaskID   string
	From, To TaskState
}

// enqResult is a client's view of one Enqueue.
type enqResult struct {
	done bool
	At   time.Duration // when reply was called
	EnqueueResult
}

// workerFunc scripts the worker: for the k-th delivery of a task (k counts from 1)
// it returns the HTTP status and how long the answer takes. Status 0 means no
// answer: the dispatcher reports a timeout at the delivery's deadline.
type workerFunc func(d Delivery, k int) (status int, latency time.Duration)

// always200 answers 200 after 50ms.
func always200(Delivery, int) (int, time.Duration) { return 200, 50 * time.Millisecond }

type simNode struct {
	id   NodeID
	cfg  Config
	n    *Node
	inc  int // incarnation: bumps on restart, so that old callbacks do nothing
	down bool
	// storage, when set, gives each incarnation its Storage (default MemoryStorage).
	storage func() Storage
}

type harness struct {
	t       testing.TB
	seed    uint64
	now     time.Time
	seq     uint64
	queue   eventQueue
	events  int
	order   []NodeID
	nodes   map[NodeID]*simNode
	latency time.Duration
	blocked map[[2]NodeID]bool // one-way: from → to dropped
	worker  workerFunc
	// retryAfter is sent back with every answer (as a worker's Retry-After).
	retryAfter time.Duration
	// body is the worker's answer body, sent back with every answer.
	body string

	// Random network faults, all off by default; drawn from netRand.
	netRand   *rand.Rand
	dropProb  float64       // lose a message
	dupProb   float64       // deliver a message twice
	jitterMax time.Duration // add [0, jitterMax) to the latency: reordering

	deliveries []deliveryRec
	perTask    map[string]int
	sent       []sentMsg
	states     []stateChange
	decisions  []decision
	ended      []DeliveryAttempt // DeliveryObserver notifications

	// mirror, by node, takes every message and webhook result the node takes,
	// right after it (snapshot_test.go's restored copy).
	mirror map[NodeID]*Node
	// envMut, when set, adjusts each node's Env before New (newHarnessEnv).
	envMut func(h *harness, id NodeID, env *Env)
}

// decision is one DecisionObserver notification.
type decision struct {
	Node   NodeID
	TaskID string
	State  TaskState
	Reason string
}

// newHarness builds n nodes "n1".."nN" that all list each other as members. mut,
// when not nil, adjusts every node's Config before New.
func newHarness(t testing.TB, n int, seed uint64, mut func(*Config)) *harness {
	return newHarnessEnv(t, n, seed, mut, nil)
}

// newHarnessEnv is newHarness with envMut adjusting each node's Env before New.
func newHarnessEnv(t testing.TB, n int, seed uint64, mut func(*Config), envMut func(*harness, NodeID, *Env)) *harness {
	h := &harness{
		envMut:  envMut,
		t:       t,
		seed:    seed,
		now:     epoch,
		nodes:   map[NodeID]*simNode{},
		latency: 10 * time.Millisecond,
		blocked: map[[2]NodeID]bool{},
		worker:  always200,
		perTask: map[string]int{},
		netRand: rand.New(rand.NewPCG(seed, 1<<62)),
	}
	for i := 1; i <= n; i++ {
		h.order = append(h.order, NodeID(fmt.Sprintf("n%d", i)))
	}
	// The nodes start bootLead before virtual time zero: a node takes no task created
	// within MaxClockDrift of its start (it cannot tell a first start from a restart
	// without memory), and the tests model an established cluster.
	h.now = epoch.Add(-bootLead)
	for i, id := range h.order {
		cfg := Config{ID: id, Members: h.order}
		if mut != nil {
			mut(&cfg)
		}
		sn := &simNode{id: id, cfg: cfg}
		h.nodes[id] = sn
		h.boot(sn, uint64(i))
	}
	h.run(0) // the start: the nodes learn each other's queue settings
	h.sent, h.states = nil, nil
	return h
}

// bootLead is how long before virtual time zero newHarness starts the nodes.
const bootLead = 2 * time.Second

// boot builds and starts sn's current incarnation.
func (h *harness) boot(sn *simNode, stream uint64) {
	inc := sn.inc
	env := Env{
		Clock:      &fakeClock{h: h, id: sn.id, inc: inc},
		Network:    fakeNetwork{h: h},
		Dispatcher: &fakeDispatcher{h: h, id: sn.id, inc: inc},
		Storage:    storageOf(sn),
		// One seed for the run; each node (and incarnation) gets its own stream so
		// that two nodes do not draw the same task IDs.
		Rand:     rand.New(rand.NewPCG(h.seed, stream+uint64(inc)<<32)),
		Observer: &observer{h: h, id: sn.id},
	}
	if h.envMut != nil {
		h.envMut(h, sn.id, &env)
	}
	n, err := New(sn.cfg, env)
	require.NoError(h.t, err)
	require.NoError(h.t, n.Start())
	sn.n = n
}

func (h *harness) node(id NodeID) *Node { return h.nodes[id].n }

// setQueues gives every node these queue settings, as if a client's PUT had reached
// them all (a node takes no static queue configuration).
func (h *harness) setQueues(qs map[string]QueueConfig) {
	for _, id := range h.order {
		n := h.node(id)
		for _, name := range sortedKeys(qs) {
			n.input(func() { n.adoptSetting(&QueueSetting{Queue: name, Config: qs[name], Version: 1, Origin: n.members[0]}) })
		}
	}
}

func storageOf(sn *simNode) Storage {
	if sn.storage != nil {
		return sn.storage()
	}
	return MemoryStorage{}
}

// elapsed is the current virtual time.
func (h *harness) elapsed() time.Duration { return h.now.Sub(epoch) }

// schedule queues fn to run d from now.
func (h *harness) schedule(d time.Duration, fn func()) *event {
	if d < 0 {
		d = 0
	}
	h.seq++
	ev := &event{at: h.now.Add(d), seq: h.seq, fn: fn}
	heap.Push(&h.queue, ev)
	return ev
}

// at queues a harness action at virtual time t (from epoch).
func (h *harness) at(t time.Duration, fn func()) {
	require.GreaterOrEqual(h.t, t, h.elapsed(), "scheduling in the past")
	h.schedule(t-h.elapsed(), fn)
}

// run processes every event due at or before virtual time until, then sets the
// clock to until.
func (h *harness) run(until time.Duration) {
	end := epoch.Add(until)
	for h.queue.Len() > 0 && !h.queue[0].at.After(end) {
		ev := heap.Pop(&h.queue).(*event)
		if ev.cancelled {
			continue
		}
		h.events++
		if h.events > maxEvents {
			h.t.Fatalf("more than %d events by %v: livelock?", maxEvents, h.elapsed())
		}
		h.now = ev.at
		ev.ran = true
		ev.fn()
	}
	if end.After(h.now) {
		h.now = end
	}
}

// alive reports whether incarnation inc of id is the running one.
func (h *harness) alive(id NodeID, inc int) bool {
	sn := h.nodes[id]
	return sn != nil && !sn.down && sn.inc == inc
}

// enqueue asks node from to enqueue req now. Call it between runs or from an
// action queued with at, never from inside a node callback.
func (h *harness) enqueue(from NodeID, req EnqueueRequest) *enqResult {
	res := &enqResult{}
	h.node(from).Enqueue(req, func(r EnqueueResult) {
		require.False(h.t, res.done, "reply called twice")
		res.done, res.At, res.EnqueueResult = true, h.elapsed(), r
	})
	return res
}

// --- faults ---

func (h *harness) block(from, to NodeID) { h.blocked[[2]NodeID{from, to}] = true }

// partition drops every message between a node of a and a node of b, both ways.
func (h *harness) partition(a, b []NodeID) {
	for _, x := range a {
		for _, y := range b {
			h.block(x, y)
			h.block(y, x)
		}
	}
}

// isolate cuts id off from every other node.
func (h *harness) isolate(id NodeID) {
	for _, o := range h.order {
		if o != id {
			h.partition([]NodeID{id}, []NodeID{o})
		}
	}
}

func (h *harness) heal() { h.blocked = map[[2]NodeID]bool{} }

// crash stops id: its timers, messages and webhook results are dropped.
func (h *harness) crash(id NodeID) { h.nodes[id].down = true }

// restart brings id back as a new process that lost all memory (MemoryStorage).
func (h *harness) restart(id NodeID) {
	sn := h.nodes[id]
	sn.inc++
	sn.down = false
	h.boot(sn, uint64(posOf(h.order, id)))
}

func posOf(ids []NodeID, id NodeID) int {
	for i, x := range ids {
		if x == id {
			return i
		}
	}
	return -1
}

// --- queries ---

func (h *harness) deliveriesOf(taskID string) []deliveryRec {
	var out []deliveryRec
	for _, d := range h.deliveries {
		if d.TaskID == taskID {
			out = append(out, d)
		}
	}
	return out
}

func (h *harness) sentOf(typ MsgType, taskID string) []sentMsg {
	var out []sentMsg
	for _, s := range h.sent {
		if s.Msg.Type == typ && s.Msg.TaskID == taskID {
			out = append(out, s)
		}
	}
	return out
}

// stateOn returns the task's state on node id (StateNone when not held).
func (h *harness) stateOn(id NodeID, taskID string) TaskState {
	st, ok := h.node(id).Task(taskID)
	if !ok {
		return StateNone
	}
	return st.State
}

// replicas returns the task's replica list as its coordinator chose it.
func (h *harness) replicas(taskID string) []NodeID {
	for _, id := range h.order {
		if st, ok := h.node(id).Task(taskID); ok {
			return st.Task.Replicas
		}
	}
	h.t.Fatalf("no node holds task %s", taskID)
	return nil
}

// --- environment fakes ---

type fakeClock struct {
	h   *harness
	id  NodeID
	inc int
}

func (c *fakeClock) Now() time.Time { return c.h.now }

func (c *fakeClock) AfterFunc(d time.Duration, f func()) func() bool {
	ev := c.h.schedule(d, func() {
		if c.h.alive(c.id, c.inc) {
			f()
		}
	})
	return func() bool {
		if ev.ran || ev.cancelled {
			return false
		}
		ev.cancelled = true
		return true
	}
}

type fakeNetwork struct{ h *harness }

func (nw fakeNetwork) Send(m Message) {
	h := nw.h
	link := [2]NodeID{m.From, m.To}
	dropped := h.blocked[link] || h.nodes[m.To] == nil || h.dropProb > 0 && h.netRand.Float64() < h.dropProb
	h.sent = append(h.sent, sentMsg{At: h.elapsed(), Msg: m, Dropped: dropped})
	if dropped {
		return
	}
	copies := 1
	if h.dupProb > 0 && h.netRand.Float64() < h.dupProb {
		copies = 2
	}
	for range copies {
		lat := h.latency
		if h.jitterMax > 0 {
			lat += time.Duration(h.netRand.Int64N(int64(h.jitterMax)))
		}
		h.schedule(lat, func() {
			// A partition that starts while the message is in flight drops it too.
			if h.blocked[link] || h.nodes[m.To].down {
				return
			}
			h.nodes[m.To].n.Step(m)
			if tw := h.mirror[m.To]; tw != nil {
				tw.Step(m)
			}
		})
	}
}

type fakeDispatcher struct {
	h   *harness
	id  NodeID
	inc int
}

func (fd *fakeDispatcher) Dispatch(d Delivery) {
	h := fd.h
	h.perTask[d.Task.ID]++
	k := h.perTask[d.Task.ID]
	status, lat := h.worker(d, k)
	res := DeliveryResult{TaskID: d.Task.ID, Attempt: d.Attempt, Status: status, RetryAfter: h.retryAfter, Body: h.body}
	if status == 0 || lat > d.Deadline {
		res.Status, res.Err, res.ErrorKind, res.Body, lat = 0, errDeadline, ErrorTimeout, "", d.Deadline
	}
	h.deliveries = append(h.deliveries, deliveryRec{
		At: h.elapsed(), Node: fd.id, TaskID: d.Task.ID, Name: d.Task.Name, Attempt: d.Attempt, Retries: d.Retries,
		Deadline: d.Deadline, PreviousStatus: d.PreviousStatus, ETA: d.Task.ETA.Sub(epoch),
		End: h.elapsed() + lat, Status: res.Status,
	})
	h.schedule(lat, func() {
		if h.alive(fd.id, fd.inc) {
			h.nodes[fd.id].n.HandleDeliveryResult(res)
			if tw := h.mirror[fd.id]; tw != nil {
				tw.HandleDeliveryResult(res)
			}
		}
	})
}

type observer struct {
	h  *harness
	id NodeID
}

func (o *observer) TaskStateChanged(t *Task, from, to TaskState, attempt uint64) {
	o.h.states = append(o.h.states, stateChange{At: o.h.elapsed(), Node: o.id, TaskID: t.ID, From: from, To: to})
}

func (o *observer) TaskDecided(t *Task, state TaskState, reason string) {
	o.h.decisions = append(o.h.decisions, decision{Node: o.id, TaskID: t.ID, State: state, Reason: reason})
}

func (o *observer) DeliveryEnded(t *Task, a DeliveryAttempt, due time.Time) {
	o.h.ended = append(o.h.ended, a)
}

// --- harness self-tests ---

func TestHarnessClockOrderAndCancel(t *testing.T) {
	h := newHarness(t, 1, 1, nil)
	c := &fakeClock{h: h, id: "n1"}
	var got []string
	c.AfterFunc(2*time.Second, func() { got = append(got, "b") })
	c.AfterFunc(time.Second, func() { got = append(got, "a1") })
	c.AfterFunc(time.Second, func() { got = append(got, "a2") })
	cancel := c.AfterFunc(time.Second, func() { got = append(got, "cancelled") })
	c.AfterFunc(0, func() { got = append(got, "zero") })
	require.Empty(t, got, "AfterFunc must never run its callback synchronously")
	require.True(t, cancel())
	require.False(t, cancel(), "second cancel reports nothing stopped")
	h.run(1500 * time.Millisecond)
	require.Equal(t, []string{"zero", "a1", "a2"}, got)
	require.Equal(t, 1500*time.Millisecond, h.elapsed())
	h.run(time.Minute)
	require.Equal(t, []string{"zero", "a1", "a2", "b"}, got)
}
