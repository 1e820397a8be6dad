// Package driver runs one node.Node in production: a single goroutine owns the node
// and runs every input posted to it (peer messages, client requests, timers from the
// real clock, webhook results) one at a time, in the order they were posted.
//
// It must never call the node from any other goroutine, and Post must never block:
// the transport's readers, the HTTP handlers and the webhook workers all post here.
package driver

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/miyamotohq/miyamoto/node"
)

// ErrStopped: the driver has stopped and runs no more inputs.
var ErrStopped = errors.New("node stopped")

// Driver owns a node and its goroutine.
type Driver struct {
	node  *node.Node
	clock clock.Clock

	mu      sync.Mutex
	queue   []input
	wake    chan struct{}
	stopped bool
	started bool
	done    chan struct{}
	rec     Recorder // nil: not recording
	// parks counts the times Run waited for a post with its queue empty.
	parks atomic.Int64
}

// input is one posted input: f, or when f is nil, step applied to m. Messages are
// queued by value beside the functions so that posting one allocates nothing: a
// closure per message was the daemon's largest allocation under load.
type input struct {
	f    func(*node.Node)
	call func() // a timer's callback, when f is nil
	step func(*node.Node, node.Message)
	m    node.Message
}

// maxKeptQueue bounds, in inputs, the queue Run keeps for reuse after a wake-up.
const maxKeptQueue = 4096

// Recorder watches every input the driver runs, for the flight recorder
// (net/recorder): WrapEnv wraps the node's environment once, when the node is
// built, and BeginInput and EndInput bracket each input on the node's goroutine
// (Start included), so that what the node reads and does in between is told apart
// by input.
type Recorder interface {
	WrapEnv(node.Env) node.Env
	BeginInput()
	EndInput()
}

// New builds the node with env, its Clock replaced by one backed by clk whose
// callbacks are posted to the driver's goroutine.
func New(cfg node.Config, env node.Env, clk clock.Clock) (*Driver, error) {
	return NewRecorded(cfg, env, clk, nil)
}

// NewRecorded is New with rec watching every input (rec may be nil). rec wraps the
// environment after its Clock was replaced, so it sees the node's own clock.
func NewRecorded(cfg node.Config, env node.Env, clk clock.Clock, rec Recorder) (*Driver, error) {
	d := &Driver{clock: clk, wake: make(chan struct{}, 1), done: make(chan struct{}), rec: rec}
	env.Clock = Clock{c: clk, post: d.postFunc}
	if rec != nil {
		env = rec.WrapEnv(env)
	}
	n, err := node.New(cfg, env)
	if err != nil {
		return nil, err
	}
	d.node = n
	return d, nil
}

// Node returns the node, for use only inside functions passed to Post or Do.
func (d *Driver) Node() *node.Node { return d.node }

// Start starts the node (recovering its storage) on the calling goroutine; call it
// before Run, from the goroutine that will start Run, to see a failed recovery at
// once. Run starts the node itself if Start was not called.
func (d *Driver) Start() error {
	d.started = true
	var err error
	d.runInput(&input{f: func(n *node.Node) { err = n.Start() }})
	return err
}

// runInput runs one input, bracketed for the recorder when there is one.
func (d *Driver) runInput(in *input) {
	if d.rec == nil {
		in.run(d.node)
		return
	}
	d.rec.BeginInput()
	in.run(d.node)
	d.rec.EndInput()
}

func (in *input) run(n *node.Node) {
	switch {
	case in.f != nil:
		in.f(n)
	case in.call != nil:
		in.call()
	default:
		in.step(n, in.m)
	}
}

// Run starts the node and runs inputs until ctx is done or Stop is called.
func (d *Driver) Run(ctx context.Context) error {
	defer close(d.done)
	if !d.started {
		if err := d.Start(); err != nil {
			return err
		}
	}
	// Two queues take turns: Post appends to one while Run runs the other, so a
	// steady load reuses both instead of growing a new slice per wake-up.
	var spare []input
	yielded := false
	for {
		d.mu.Lock()
		batch := d.queue
		d.queue = spare
		stopped := d.stopped
		d.mu.Unlock()
		for i := range batch {
			d.runInput(&batch[i])
		}
		clear(batch) // let the messages' tasks and the closures go
		spare = nil
		if cap(batch) <= maxKeptQueue {
			spare = batch[:0]
		}
		if stopped {
			return nil
		}
		if len(batch) > 0 {
			yielded = false
			continue
		}
		// The queue ran dry: yield once before parking. The goroutines the batch
		// just woke (HTTP handlers given their answers, webhook workers given
		// deliveries) run first and often post the next inputs meanwhile, which
		// then find the node's goroutine runnable instead of parked: no wake-up
		// to pay for (a parked goroutine readied while the other P sleeps costs a
		// thread woken by the kernel), and the next batch is larger. On the
		// compare command's single node (closed loop, 32 clients, two cores
		// shared with other work) this cut the process's CPU per task by 13% and
		// left an open loop's latency as it was (README, Throughput against the
		// physical limit).
		if !yielded {
			yielded = true
			runtime.Gosched()
			continue
		}
		yielded = false
		d.parks.Add(1)
		select {
		case <-d.wake:
		case <-ctx.Done():
			d.Stop()
		}
	}
}

// Stop makes Run return after the inputs already posted; later posts are dropped.
func (d *Driver) Stop() {
	d.mu.Lock()
	d.stopped = true
	d.mu.Unlock()
	d.signal()
}

// Done is closed once Run has returned.
func (d *Driver) Done() <-chan struct{} { return d.done }

// Post queues f to run on the node's goroutine. It never blocks; after Stop it
// reports false and f never runs.
func (d *Driver) Post(f func(*node.Node)) bool { return d.post(input{f: f}) }

func (d *Driver) post(in input) bool {
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		return false
	}
	d.queue = append(d.queue, in)
	d.mu.Unlock()
	d.signal()
	return true
}

// PostMessages queues step(node, m) for each of ms, in order, as one input per
// message, and wakes the node's goroutine once. It is Post for a batch of peer
// messages without a closure per message; ms is copied, so the caller may reuse it.
// It never blocks; after Stop it reports false and nothing runs.
func (d *Driver) PostMessages(ms []node.Message, step func(*node.Node, node.Message)) bool {
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		return false
	}
	for i := range ms {
		d.queue = append(d.queue, input{step: step, m: ms[i]})
	}
	d.mu.Unlock()
	d.signal()
	return true
}

// postFunc posts a timer's callback as it is, with no closure around it.
func (d *Driver) postFunc(f func()) { d.post(input{call: f}) }

func (d *Driver) signal() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Do runs f on the node's goroutine and waits for it (or ctx).
func (d *Driver) Do(ctx context.Context, f func(*node.Node)) error {
	ran := make(chan struct{})
	if !d.Post(func(n *node.Node) { f(n); close(ran) }) {
		return ErrStopped
	}
	select {
	case <-ran:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-d.done:
		// Run closes done only after running every input posted before Stop, so f
		// has run by now if it ever will: report that, not ErrStopped.
		select {
		case <-ran:
			return nil
		default:
			return ErrStopped
		}
	}
}

// Clock adapts a benbjohnson clock to node.Clock: timer callbacks are posted to the
// node's goroutine instead of running on the timer's.
type Clock struct {
	c    clock.Clock
	post func(func())
}

var _ node.Clock = Clock{}

func (c Clock) Now() time.Time { return c.c.Now() }

func (c Clock) AfterFunc(d time.Duration, f func()) func() bool {
	t := c.c.AfterFunc(d, func() { c.post(f) })
	return t.Stop
}

// AfterFuncNumbered is AfterFunc that, when the timer fires, calls fired(id) on the
// node's goroutine right before f. The flight recorder (net/recorder) labels a
// timer's input with it: a wrapper of f would cost a closure per timer armed, and a
// node arms one per enqueue.
func (c Clock) AfterFuncNumbered(d time.Duration, id uint64, fired func(uint64), f func()) func() bool {
	// The closure captures post, not c (two words more): at five words it takes
	// AfterFunc's size class (48 bytes) rather than the next, so that a recorded
	// node's timers cost what a plain node's do (BenchmarkRecorderNodeCost).
	post := c.post
	t := c.c.AfterFunc(d, func() { post(func() { fired(id); f() }) })
	return t.Stop
}
