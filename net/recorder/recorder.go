package recorder

import (
	"encoding/json"
	"errors"
	"time"

	"github.com/miyamotohq/miyamoto/net/disk"
	"github.com/miyamotohq/miyamoto/net/driver"
	"github.com/miyamotohq/miyamoto/net/wire"
	"github.com/miyamotohq/miyamoto/node"
)

// Options configure a Recorder.
type Options struct {
	Dir     string // the recording's directory; created if missing
	MaxSize int64  // bytes the directory may hold; the oldest files are dropped past it
	// Config is the node's configuration, and DenyPrivate and AllowURLs the daemon's
	// URL policy that Config.CheckTaskURL applies, kept for Replay.
	Config      node.Config
	DenyPrivate bool
	AllowURLs   string
	// Durable: the node's storage keeps records across a crash (WrapEnv checks it).
	Durable bool
}

// Recorder records one run of a node. A nil *Recorder records nothing, so the
// daemon calls its labelling methods without checking.
type Recorder struct {
	ring *ring
	// Only the node's goroutine touches what follows.
	cur       enc  // the group of the input running now; nil between inputs
	labelled  bool // cur starts with its input's kind
	effects   bool // cur holds an output event
	timers    uint64
	syncs     uint64
	recovered bool // node.New's group was written
}

var _ driver.Recorder = (*Recorder)(nil)

// Open starts a new run of the recording in opts.Dir.
func Open(opts Options) (*Recorder, error) {
	if opts.MaxSize <= 0 {
		return nil, errors.New("the recording's size must be positive")
	}
	cfg := opts.Config
	cfg.EnsureDefaults()
	r, err := openRing(opts.Dir, opts.MaxSize, Header{NodeID: string(cfg.ID), Config: cfg,
		DenyPrivate: opts.DenyPrivate, AllowURLs: opts.AllowURLs, Durable: opts.Durable, Started: time.Now()})
	if err != nil {
		return nil, err
	}
	// node.New's reads (if any) come before the first input: they form group inNew.
	return &Recorder{ring: r, cur: enc{inNew}, labelled: true}, nil
}

// Close writes what is buffered and closes the recording; call it after the driver
// stopped. It returns the first error writing met (recording stopped there).
func (r *Recorder) Close() error {
	if r == nil {
		return nil
	}
	return r.ring.close()
}

// Err reports the first write error; recording stopped there, the node went on.
func (r *Recorder) Err() error {
	r.ring.mu.Lock()
	defer r.ring.mu.Unlock()
	return r.ring.err
}

// BeginInput starts the group of an input (driver.Recorder).
func (r *Recorder) BeginInput() {
	if !r.recovered {
		// The first input is Start: close node.New's group first, even empty, so
		// that Replay finds the groups in their places.
		r.recovered = true
		r.writeGroup()
		r.cur, r.labelled = append(r.cur[:0], inStart), true
		return
	}
	r.cur, r.labelled, r.effects = r.cur[:0], false, false
}

// EndInput writes the group of the input that ended (driver.Recorder). An
// unlabelled input that did nothing (a read of the node's state for the API or
// the metrics) is not written: Replay need not run it.
func (r *Recorder) EndInput() {
	if !r.labelled && !r.effects {
		r.cur = r.cur[:0]
		return
	}
	r.writeGroup()
}

func (r *Recorder) writeGroup() {
	if !r.labelled {
		r.cur = append(enc{inOpaque}, r.cur...)
	}
	r.ring.writeGroup(appendFrame(nil, r.cur))
	r.cur, r.labelled, r.effects = r.cur[:0], false, false
}

// label starts the group with its input; events already in it (none, when the
// label comes first in the posted function, as it must) stay after.
func (r *Recorder) label(kind byte, args func(enc) enc) {
	if r == nil || r.labelled {
		return
	}
	head := args(enc{kind})
	r.cur = append(head, r.cur...)
	r.labelled = true
}

// Step labels the running input as the peer message m.
func (r *Recorder) Step(m node.Message) {
	if r == nil {
		return
	}
	r.label(inStep, func(e enc) enc { return e.bytes(wire.AppendFrame(nil, m)) })
}

// Result labels the running input as the webhook result res.
func (r *Recorder) Result(res node.DeliveryResult) {
	if r == nil {
		return
	}
	r.label(inResult, func(e enc) enc { return appendResult(e, res) })
}

// Call labels the running input as the API call c.
func (r *Recorder) Call(c Call) {
	if r == nil {
		return
	}
	b, err := json.Marshal(c)
	if err != nil {
		panic("recorder: an API call does not encode: " + err.Error()) // Call holds plain data only
	}
	r.label(inCall, func(e enc) enc { return e.bytes(b) })
}

// event appends an event to the running input's group.
func (r *Recorder) event(kind byte, args func(enc) enc) {
	if isOutput(kind) {
		r.effects = true
	}
	r.cur = args(r.cur.byte(kind))
}

func appendResult(e enc, res node.DeliveryResult) enc {
	msg := ""
	if res.Err != nil {
		msg = res.Err.Error()
	}
	return e.str(res.TaskID).uvarint(res.Attempt).varint(int64(res.Status)).str(msg).
		byte(byte(res.ErrorKind)).str(res.Body).varint(int64(res.RetryAfter))
}

func decodeResult(d *dec) node.DeliveryResult {
	res := node.DeliveryResult{TaskID: d.str(), Attempt: d.uvarint(), Status: int(d.varint())}
	if msg := d.str(); msg != "" {
		res.Err = errors.New(msg)
	}
	res.ErrorKind = node.ErrorKind(d.byte())
	res.Body = d.str()
	res.RetryAfter = time.Duration(d.varint())
	return res
}

func appendRecords(e enc, recs []node.Record) enc {
	e = e.uvarint(uint64(len(recs)))
	for i := range recs {
		e = e.bytes(disk.AppendRecordFrame(nil, &recs[i]))
	}
	return e
}

func decodeRecords(d *dec) []node.Record {
	n := d.uvarint()
	var recs []node.Record
	for i := uint64(0); i < n && d.err == nil; i++ {
		b := d.bytes()
		got := 0
		if disk.DecodeFrames(b, func(rec node.Record) { recs = append(recs, rec); got++ }) != len(b) || got != 1 {
			d.fail("a record")
		}
	}
	return recs
}

// WrapEnv wraps env so that every read and every action of the node is recorded
// (driver.Recorder).
func (r *Recorder) WrapEnv(env node.Env) node.Env {
	if env.Storage == nil {
		env.Storage = node.MemoryStorage{}
	}
	if env.Storage.Durable() != r.ring.hdr.Durable {
		panic("recorder: Options.Durable does not match the node's storage")
	}
	env.Clock = recClock{r, env.Clock}
	env.Rand = recRand{r, env.Rand}
	env.Network = recNetwork{r, env.Network}
	env.Dispatcher = recDispatcher{r, env.Dispatcher}
	env.Storage = recStorage{r, env.Storage}
	return env
}

type recClock struct {
	r     *Recorder
	inner node.Clock
}

// Now strips the monotonic reading: a replay can rebuild a wall reading but not a
// monotonic one, and time.Time's Sub prefers the latter, so the recorded node must
// compute with what is recorded. It then sees a step of the wall clock as a step (a
// clock fault the protocol bounds by MaxClockDrift), not smoothed over.
func (c recClock) Now() time.Time {
	t := c.inner.Now().Round(0)
	c.r.event(evNow, func(e enc) enc { return e.varint(timeNanos(t)) })
	return t
}

func (c recClock) AfterFunc(d time.Duration, f func()) func() bool {
	c.r.timers++
	id := c.r.timers
	c.r.event(evTimer, func(e enc) enc { return e.uvarint(id).varint(int64(d)) })
	cancel := c.inner.AfterFunc(d, func() {
		c.r.label(inTimer, func(e enc) enc { return e.uvarint(id) })
		f()
	})
	return func() bool {
		stopped := cancel()
		c.r.event(evCancel, func(e enc) enc { return e.bool(stopped) })
		return stopped
	}
}

type recRand struct {
	r     *Recorder
	inner node.Rand
}

func (g recRand) draw(v uint64) uint64 {
	g.r.event(evRand, func(e enc) enc { return e.uvarint(v) })
	return v
}

func (g recRand) Uint64() uint64         { return g.draw(g.inner.Uint64()) }
func (g recRand) IntN(n int) int         { return int(g.draw(uint64(g.inner.IntN(n)))) }
func (g recRand) Int64N(n int64) int64   { return int64(g.draw(uint64(g.inner.Int64N(n)))) }
func (n recNetwork) Send(m node.Message) { n.r.event(evSend, sendArgs(m)); n.inner.Send(m) }

func sendArgs(m node.Message) func(enc) enc {
	return func(e enc) enc { return e.bytes(wire.AppendFrame(nil, m)) }
}

type recNetwork struct {
	r     *Recorder
	inner node.Network
}

type recDispatcher struct {
	r     *Recorder
	inner node.Dispatcher
}

func (d recDispatcher) Dispatch(del node.Delivery) {
	d.r.event(evDispatch, dispatchArgs(del))
	d.inner.Dispatch(del)
}

func dispatchArgs(del node.Delivery) func(enc) enc {
	return func(e enc) enc { return e.str(del.Task.ID).uvarint(del.Attempt).varint(int64(del.Deadline)) }
}

// recStorage always has the optional abilities the node looks for (LossReporter,
// StorageHealth), answering as the node would without them, so that Replay's
// storage, which has them too, is asked the same questions.
type recStorage struct {
	r     *Recorder
	inner node.Storage
}

var (
	_ node.LossReporter  = recStorage{}
	_ node.StorageHealth = recStorage{}
)

func (s recStorage) Durable() bool { return s.inner.Durable() }

func (s recStorage) Append(recs ...node.Record) {
	s.r.event(evAppend, func(e enc) enc { return appendRecords(e, recs) })
	s.inner.Append(recs...)
}

func (s recStorage) Sync(done func()) {
	s.r.syncs++
	id := s.r.syncs
	s.r.event(evSync, func(e enc) enc { return e.uvarint(id) })
	s.inner.Sync(func() {
		if s.r.labelled {
			// The log completes several syncs in one posted function (net/disk): each
			// is an input of its own, as the node sees it.
			s.r.EndInput()
			s.r.BeginInput()
		}
		s.r.label(inSync, func(e enc) enc { return e.uvarint(id) })
		done()
	})
}

func (s recStorage) Load() ([]node.Record, error) {
	recs, err := s.inner.Load()
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	s.r.event(evLoad, func(e enc) enc { return appendRecords(e.str(msg), recs) })
	return recs, err
}

func (s recStorage) LostSince() (time.Time, bool) {
	var since time.Time
	lost := false
	if lr, ok := s.inner.(node.LossReporter); ok {
		since, lost = lr.LostSince()
	}
	s.r.event(evLost, func(e enc) enc { return e.varint(timeNanos(since)).bool(lost) })
	return since, lost
}

func (s recStorage) Err() error {
	var err error
	if h, ok := s.inner.(node.StorageHealth); ok {
		err = h.Err()
	}
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	s.r.event(evStoreErr, func(e enc) enc { return e.str(msg) })
	return err
}
