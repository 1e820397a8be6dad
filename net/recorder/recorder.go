package recorder

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/miyamotohq/miyamoto/net/disk"
	"github.com/miyamotohq/miyamoto/net/driver"
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
	//
	// b is the writer's pending batch, which the node's goroutine holds
	// (ring.input) from BeginInput to EndInput, and cur its bytes: the running
	// input's group is cur[start:], its deferred parts b.defs[defStart:] (their
	// offsets in the group) and their records b.recs[recStart:], written where the
	// writer will take them rather than copied there. Between inputs the writer
	// may swap the batch: b and cur are stale until the next BeginInput.
	b                  *batch
	cur                enc
	start              int
	defStart, recStart int
	holding            bool // the node's goroutine holds ring.input (b is pending)
	labelled           bool // the group starts with its input's kind
	effects            bool // the group holds an output event
	timers             uint64
	syncs              uint64
	early              enc // events of the running input that came before its label
	// earlyDefs are the deferred parts of early.
	earlyDefs []deferred
	lastNow   int64 // the group's last clock reading (unix ns), 0 before its first
	recovered bool  // node.New's group was written
	// timerFired is labelTimer as a func value, made once (see numberedClock).
	timerFired func(uint64)
	snapshot   func() ([]byte, error) // the node's Snapshot (SnapshotWith); nil: none
	frame      []byte                 // a loaded record's frame being encoded
}

var _ driver.Recorder = (*Recorder)(nil)

// The daemon's clock spares the recorder a closure per timer.
var _ numberedClock = driver.Clock{}

// Open starts a new run of the recording in opts.Dir.
func Open(opts Options) (*Recorder, error) {
	if opts.MaxSize <= 0 {
		return nil, errors.New("the recording's size must be positive")
	}
	cfg := opts.Config
	cfg.EnsureDefaults()
	r, err := openRing(opts.Dir, opts.MaxSize, Header{NodeID: string(cfg.ID), Config: cfg,
		DenyPrivate: opts.DenyPrivate, AllowURLs: opts.AllowURLs, Durable: opts.Durable, Started: time.Now(),
		StreamedLoad: true})
	if err != nil {
		return nil, err
	}
	// node.New's reads (if any) come before the first input: they form group inNew,
	// and the first BeginInput finds the batch held.
	rec := &Recorder{ring: r, labelled: true}
	rec.acquire()
	rec.cur = append(rec.cur, inNew)
	rec.timerFired = rec.labelTimer
	return rec, nil
}

// acquire takes the pending batch for the node's goroutine: the group it starts
// is encoded at its end.
func (r *Recorder) acquire() {
	r.b = r.ring.acquire()
	r.cur, r.holding = r.b.bytes, true
	r.groupStarts()
}

// groupStarts starts the next group at the end of the batch.
func (r *Recorder) groupStarts() {
	r.start, r.defStart, r.recStart = len(r.cur), len(r.b.defs), len(r.b.recs)
}

// release hands the pending batch back, the groups ended in it; the running
// group (none, between inputs) is dropped.
func (r *Recorder) release() {
	r.dropGroup()
	r.ring.release(r.cur)
	r.b, r.cur, r.holding = nil, nil, false
}

// dropGroup drops the running group, its deferred parts and their records (not
// keeping the messages and records alive).
func (r *Recorder) dropGroup() {
	r.cur = r.cur[:r.start]
	clear(r.b.defs[r.defStart:])
	clear(r.b.recs[r.recStart:])
	r.b.defs, r.b.recs = r.b.defs[:r.defStart], r.b.recs[:r.recStart]
}

// groupDefs are the running group's deferred parts.
func (r *Recorder) groupDefs() []deferred { return r.b.defs[r.defStart:] }

// Close writes what is buffered and closes the recording; call it after the driver
// stopped. It returns the first error writing met (recording stopped there).
func (r *Recorder) Close() error {
	if r == nil {
		return nil
	}
	if r.holding { // node.New failed, or no input ran: what it read is dropped
		r.release()
	}
	return r.ring.close()
}

// Err reports the first write error; recording stopped there, the node went on.
func (r *Recorder) Err() error {
	if r == nil {
		return nil
	}
	r.ring.mu.Lock()
	defer r.ring.mu.Unlock()
	if errors.Is(r.ring.err, errClosed) {
		return nil
	}
	return r.ring.err
}

// BeginInput starts the group of an input (driver.Recorder).
func (r *Recorder) BeginInput() {
	if !r.recovered {
		// The first input is Start: close node.New's group first, even empty, so
		// that Replay finds the groups in their places.
		r.recovered = true
		r.writeGroup()
		r.cur, r.labelled, r.lastNow = append(r.cur, inStart), true, 0
		return
	}
	r.acquire()
	r.labelled, r.effects, r.lastNow = false, false, 0
}

// SnapshotWith has every file of the run after its first start with a snapshot of
// the node that snap (the node's Snapshot) makes, on the node's goroutine between
// two inputs, so that Replay can start from the oldest file the ring kept. Call it
// before the node's first input.
func (r *Recorder) SnapshotWith(snap func() ([]byte, error)) {
	if r != nil {
		r.snapshot = snap
	}
}

// EndInput writes the group of the input that ended (driver.Recorder). An
// unlabelled input that did nothing (a read of the node's state for the API or
// the metrics) is not written: Replay need not run it.
func (r *Recorder) EndInput() {
	if !r.labelled && !r.effects {
		r.dropGroup()
	} else {
		r.writeGroup()
	}
	r.maybeRotate()
	r.release()
}

// maybeRotate ends the current file once the writer found it full, and starts the
// next with a snapshot of the node: between two inputs, where the node's state is
// whole. A snapshot that fails (the node not started yet) waits for the next
// input's end.
func (r *Recorder) maybeRotate() {
	if !r.recovered || !r.ring.rotateDue.Load() {
		return
	}
	var group enc
	if r.snapshot != nil {
		snap, err := r.snapshot()
		if err != nil {
			return
		}
		group = enc{inSnapshot}.uvarint(r.timers).uvarint(r.syncs).bytes(snap)
	}
	r.dropGroup()
	r.cur = r.ring.writeRotation(append(r.cur, group...))
	r.groupStarts()
}

// writeGroup ends the running input's group in the pending batch.
func (r *Recorder) writeGroup() {
	if !r.labelled {
		r.cur = slices.Insert(r.cur, r.start, inOpaque)
		defs := r.groupDefs()
		for i := range defs {
			defs[i].at++
		}
	}
	r.cur = r.ring.endGroup(r.cur, r.start, r.defStart)
	r.groupStarts()
	r.labelled, r.effects, r.lastNow = false, false, 0
}

// partSize is how large the running input's group may grow before its front is
// written as a part (see maybeWritePart).
const partSize = 256 << 10

// maybeWritePart writes the front of the running input's group as a part (inPart)
// once it holds partSize bytes and no deferred part, then waits until the writer
// caught up: a start streaming its log then holds a part of it at a time, not
// every record of the log as its group (the node itself holds one record at a
// time; see node.RecordStreamer). Reading joins the parts to their group.
func (r *Recorder) maybeWritePart() {
	if len(r.cur)-r.start < partSize || len(r.groupDefs()) > 0 {
		return
	}
	r.cur = r.ring.endGroup(slices.Insert(r.cur, r.start, inPart), r.start, r.defStart)
	r.groupStarts()
	// The writer takes the batch only from a goroutine that holds none.
	r.release()
	r.ring.waitWriter(4 * partSize)
	r.acquire()
}

// deferMessage leaves m's wire frame (or, with hash, its hash) at the current end
// of the group for the writer goroutine to encode.
func (r *Recorder) deferMessage(m node.Message, hash bool) {
	kind := defFrame
	if hash {
		kind = defFrameHash
	}
	r.b.defs = append(r.b.defs, deferred{at: len(r.cur) - r.start, kind: kind, m: m})
}

// deferRecordsHash leaves the hash of recs' frames at the current end of the group
// for the writer goroutine to compute, with a copy of recs.
func (r *Recorder) deferRecordsHash(recs []node.Record) {
	r.b.defs = append(r.b.defs, deferred{at: len(r.cur) - r.start, kind: defRecordsHash, first: len(r.b.recs), n: len(recs)})
	r.b.recs = append(r.b.recs, recs...)
}

// beginLabel starts the group with its input's kind, and reports whether the
// caller is to append the input's arguments and call endLabel: not when the input
// is labelled already. Events already in the group (none, when the label comes first
// in the posted function, as it must) are moved after the label by endLabel. Two
// calls rather than one taking a closure: a closure that captures the arguments
// costs an allocation per input.
func (r *Recorder) beginLabel(kind byte) bool {
	if r == nil || r.labelled {
		return false
	}
	r.labelled = true
	if len(r.cur) > r.start {
		r.early = append(r.early[:0], r.cur[r.start:]...)
		defs := r.groupDefs()
		r.earlyDefs = append(r.earlyDefs[:0], defs...)
		clear(defs) // not recs: the early parts still point into them
		r.b.defs = r.b.defs[:r.defStart]
	}
	r.cur = append(r.cur[:r.start], kind)
	return true
}

func (r *Recorder) endLabel() {
	if len(r.early) > 0 {
		for _, d := range r.earlyDefs {
			d.at += len(r.cur) - r.start
			r.b.defs = append(r.b.defs, d)
		}
		clear(r.earlyDefs)
		r.earlyDefs = r.earlyDefs[:0]
		r.cur = append(r.cur, r.early...)
		r.early = r.early[:0]
	}
}

// Step labels the running input as the peer message m.
func (r *Recorder) Step(m node.Message) {
	if r == nil {
		return
	}
	if r.beginLabel(inStep) {
		r.deferMessage(m, false)
		r.endLabel()
	}
}

// Result labels the running input as the webhook result res.
func (r *Recorder) Result(res node.DeliveryResult) {
	if r == nil {
		return
	}
	if r.beginLabel(inResult) {
		r.cur = appendResult(r.cur, res)
		r.endLabel()
	}
}

// Enqueue labels the running input as an enqueue of req: the API's busiest call,
// in binary rather than Call's JSON, which cost the node a tenth of its throughput.
func (r *Recorder) Enqueue(req node.EnqueueRequest) {
	if r == nil {
		return
	}
	if r.beginLabel(inEnqueue) {
		r.cur = appendEnqueue(r.cur, req)
		r.endLabel()
	}
}

func appendEnqueue(e enc, req node.EnqueueRequest) enc {
	e = e.str(req.Queue).str(req.Name).str(req.URL).str(req.Method).uvarint(uint64(len(req.Headers)))
	for _, h := range req.Headers {
		e = e.str(h.Name).str(h.Value)
	}
	return e.str(req.ContentType).bytes(req.Body).varint(int64(req.Countdown)).varint(timeNanos(req.ETA))
}

func decodeEnqueue(d *dec) node.EnqueueRequest {
	req := node.EnqueueRequest{Queue: d.str(), Name: d.str(), URL: d.str(), Method: d.str()}
	for n := d.uvarint(); n > 0 && d.err == nil; n-- {
		req.Headers = append(req.Headers, node.Header{Name: d.str(), Value: d.str()})
	}
	req.ContentType = d.str()
	if body := d.bytes(); len(body) > 0 {
		req.Body = append([]byte(nil), body...)
	}
	req.Countdown = time.Duration(d.varint())
	req.ETA = nanosTime(d.varint())
	return req
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
	if r.beginLabel(inCall) {
		r.cur = r.cur.bytes(b)
		r.endLabel()
	}
}

// event starts an event in the running input's group; the caller appends its
// arguments to r.cur. (Appending in place, without a closure, keeps the recorder's
// cost on the node's goroutine low.)
func (r *Recorder) event(kind byte) {
	if isOutput(kind) {
		r.effects = true
	}
	r.cur = append(r.cur, kind)
}

func appendResult(e enc, res node.DeliveryResult) enc {
	msg := errText(res.Err)
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
		recs = append(recs, decodeRecord(d))
	}
	return recs
}

// decodeRecord reads one record's frame.
func decodeRecord(d *dec) node.Record {
	b := d.bytes()
	var rec node.Record
	got := 0
	if disk.DecodeFrames(b, func(r node.Record) { rec = r; got++ }) != len(b) || got != 1 {
		d.fail("a record")
	}
	return rec
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
	numbered, _ := env.Clock.(numberedClock)
	// Pointers: a method of a value type called through an interface copies the
	// value at every call, and the node calls these several times per input.
	env.Clock = &recClock{r, env.Clock, numbered}
	env.Rand = &recRand{r, env.Rand}
	env.Network = &recNetwork{r, env.Network}
	env.Dispatcher = &recDispatcher{r, env.Dispatcher}
	env.Storage = &recStorage{r, env.Storage}
	return env
}

type recClock struct {
	r     *Recorder
	inner node.Clock
	// numbered is inner's numberedClock, nil when it has none: asked once, not
	// at every timer armed.
	numbered numberedClock
}

// Now strips the monotonic reading: a replay can rebuild a wall reading but not a
// monotonic one, and time.Time's Sub prefers the latter, so the recorded node must
// compute with what is recorded. It then sees a step of the wall clock as a step (a
// clock fault the protocol bounds by MaxClockDrift), not smoothed over.
func (c *recClock) Now() time.Time {
	t := c.inner.Now().Round(0)
	c.r.event(evNow)
	c.r.cur = c.r.cur.varint(nowField(&c.r.lastNow, timeNanos(t)))
	return t
}

// numberedClock is an optional ability of the clock the recorder wraps (net/driver's
// has it): AfterFuncNumbered arms f as AfterFunc does and, when the timer fires,
// calls fired(id) right before f, on the node's goroutine, without the closure per
// timer that wrapping f would cost.
type numberedClock interface {
	AfterFuncNumbered(d time.Duration, id uint64, fired func(uint64), f func()) func() bool
}

func (c *recClock) AfterFunc(d time.Duration, f func()) func() bool {
	c.r.timers++
	id := c.r.timers
	c.r.event(evTimer)
	c.r.cur = c.r.cur.uvarint(id).varint(int64(d))
	// What a cancel answers is not recorded: the node never reads it (node/ calls
	// cancel as a statement), so Replay answers true. A timer that fired before its
	// cancel came (its callback already posted) fires in the recording all the same.
	if c.numbered != nil {
		return c.numbered.AfterFuncNumbered(d, id, c.r.timerFired, f)
	}
	return c.inner.AfterFunc(d, func() {
		c.r.labelTimer(id)
		f()
	})
}

// labelTimer labels the running input as timer id firing.
func (r *Recorder) labelTimer(id uint64) {
	if r.beginLabel(inTimer) {
		r.cur = r.cur.uvarint(id)
		r.endLabel()
	}
}

type recRand struct {
	r     *Recorder
	inner node.Rand
}

func (g *recRand) draw(v uint64) uint64 {
	g.r.event(evRand)
	g.r.cur = g.r.cur.uvarint(v)
	return v
}

func (g *recRand) Uint64() uint64 {
	v := g.inner.Uint64()
	g.r.event(evRand64)
	g.r.cur = g.r.cur.uint64(v)
	return v
}

func (g *recRand) IntN(n int) int       { return int(g.draw(uint64(g.inner.IntN(n)))) }
func (g *recRand) Int64N(n int64) int64 { return int64(g.draw(uint64(g.inner.Int64N(n)))) }

// Send records a summary of the message and a hash of its wire frame: enough for
// Replay to compare (it re-makes the message itself), at a fraction of the bytes.
// The writer goroutine encodes and hashes the frame (see deferred).
func (n *recNetwork) Send(m node.Message) {
	n.r.event(evSend)
	n.r.cur = appendSentSummary(n.r.cur, m)
	n.r.deferMessage(m, true)
	n.inner.Send(m)
}

// appendSent is the recorded form of a sent message: its summary and the hash of
// its frame.
func appendSent(e enc, m node.Message, frame []byte) enc {
	return appendSentSummary(e, m).uint64(frameKey(frame))
}

// appendSentSummary is a sent message's type, receiver, task, attempt and whether
// it grants.
func appendSentSummary(e enc, m node.Message) enc {
	return e.byte(byte(m.Type)).str(string(m.To)).str(m.TaskID).uvarint(m.Attempt).bool(m.Granted)
}

// sentSummary reads what appendSent wrote.
type sentSummary struct {
	typ     node.MsgType
	to      node.NodeID
	task    string
	attempt uint64
	granted bool
	hash    uint64
}

func decodeSent(d *dec) sentSummary {
	return sentSummary{node.MsgType(d.byte()), node.NodeID(d.str()), d.str(), d.uvarint(), d.bool(), d.uint64()}
}

func (s sentSummary) String() string {
	out := fmt.Sprintf("%s →%s task %s attempt %d", s.typ, s.to, s.task, s.attempt)
	if s.typ == node.MsgClaimResp {
		out += fmt.Sprintf(" granted %v", s.granted)
	}
	return out
}

type recNetwork struct {
	r     *Recorder
	inner node.Network
}

type recDispatcher struct {
	r     *Recorder
	inner node.Dispatcher
}

func (d *recDispatcher) Dispatch(del node.Delivery) {
	d.r.event(evDispatch)
	d.r.cur = d.r.cur.str(del.Task.ID).uvarint(del.Attempt).varint(int64(del.Deadline))
	d.inner.Dispatch(del)
}

// recStorage always has the optional abilities the node looks for (LossReporter,
// StorageHealth, RecordStreamer), answering as the node would without them, so
// that Replay's storage, which has them too, is asked the same questions.
type recStorage struct {
	r     *Recorder
	inner node.Storage
}

var (
	_ node.LossReporter   = (*recStorage)(nil)
	_ node.StorageHealth  = (*recStorage)(nil)
	_ node.RecordStreamer = (*recStorage)(nil)
)

func (s *recStorage) Durable() bool { return s.inner.Durable() }

// Append records a summary of each record and a hash of their frames (see Send),
// which the writer goroutine computes.
func (s *recStorage) Append(recs ...node.Record) {
	s.r.event(evAppend)
	s.r.cur = appendAppendedSummary(s.r.cur, recs)
	s.r.deferRecordsHash(recs)
	s.inner.Append(recs...)
}

func appendRecordFrames(dst []byte, recs []node.Record) []byte {
	for i := range recs {
		dst = disk.AppendRecordFrame(dst, &recs[i])
	}
	return dst
}

// appendAppended is the recorded form of an Append: per record its kind, task,
// attempt and state, then the hash of all their frames.
func appendAppended(e enc, recs []node.Record, frames []byte) enc {
	return appendAppendedSummary(e, recs).uint64(frameKey(frames))
}

// appendAppendedSummary is an Append's summary: per record its kind, task, attempt
// and state.
func appendAppendedSummary(e enc, recs []node.Record) enc {
	e = e.uvarint(uint64(len(recs)))
	for i := range recs {
		r := &recs[i]
		id := r.TaskID
		if id == "" && r.Task != nil {
			id = r.Task.ID
		}
		e = e.byte(byte(r.Kind)).str(id).uvarint(r.Attempt).byte(byte(r.State))
	}
	return e
}

func describeAppended(d *dec) (string, uint64) {
	var b strings.Builder
	b.WriteString("appended")
	for n := d.uvarint(); n > 0 && d.err == nil; n-- {
		fmt.Fprintf(&b, " [kind %d task %s attempt %d state %s]", d.byte(), d.str(), d.uvarint(), node.TaskState(d.byte()))
	}
	return b.String(), d.uint64()
}

func (s *recStorage) Sync(done func()) {
	s.r.syncs++
	id := s.r.syncs
	s.r.event(evSync)
	s.r.cur = s.r.cur.uvarint(id)
	s.inner.Sync(func() {
		if s.r.labelled {
			// The log completes several syncs in one posted function (net/disk): each
			// is an input of its own, as the node sees it.
			s.r.EndInput()
			s.r.BeginInput()
		}
		if s.r.beginLabel(inSync) {
			s.r.cur = s.r.cur.uvarint(id)
			s.r.endLabel()
		}
		done()
	})
}

func (s *recStorage) Load() ([]node.Record, error) {
	recs, err := s.inner.Load()
	msg := errText(err)
	s.r.event(evLoad)
	s.r.cur = appendRecords(s.r.cur.str(msg), recs)
	return recs, err
}

// LoadEach streams the log (node.RecordStreamer), recording each record as it
// goes by (evLoadRec) and then the error (evLoadEnd), so that a start with
// --record holds no more of the log at once than one without (maybeWritePart). A
// storage that does not stream is loaded whole and handed over one record at a
// time: recStorage always streams, so that Replay knows how a run loaded
// (Header.StreamedLoad).
func (s *recStorage) LoadEach(visit func(r *node.Record)) error {
	each := func(rec *node.Record) {
		s.r.frame = disk.AppendRecordFrame(s.r.frame[:0], rec)
		s.r.event(evLoadRec)
		s.r.cur = s.r.cur.bytes(s.r.frame)
		visit(rec)
		s.r.maybeWritePart()
	}
	var err error
	if st, ok := s.inner.(node.RecordStreamer); ok {
		err = st.LoadEach(each)
	} else {
		var recs []node.Record
		recs, err = s.inner.Load()
		for i := range recs {
			each(&recs[i])
		}
	}
	msg := errText(err)
	s.r.event(evLoadEnd)
	s.r.cur = s.r.cur.str(msg)
	return err
}

func (s *recStorage) LostSince() (time.Time, bool) {
	var since time.Time
	lost := false
	if lr, ok := s.inner.(node.LossReporter); ok {
		since, lost = lr.LostSince()
	}
	s.r.event(evLost)
	s.r.cur = s.r.cur.varint(timeNanos(since)).bool(lost)
	// The node gets the time as replay will give it: the log's LOST file parses
	// to a UTC time, replay's reading to a local one, and a snapshot keeps the
	// difference (the recovery wait's end, compared by its bytes).
	return nanosTime(timeNanos(since)), lost
}

func (s *recStorage) Err() error {
	var err error
	if h, ok := s.inner.(node.StorageHealth); ok {
		err = h.Err()
	}
	msg := errText(err)
	s.r.event(evStoreErr)
	s.r.cur = s.r.cur.str(msg)
	return err
}

// errText is what the recording keeps of an error: its text, or "" for none.
func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
