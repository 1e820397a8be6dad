package recorder

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/miyamotohq/miyamoto/net/urlpolicy"
	"github.com/miyamotohq/miyamoto/net/wire"
	"github.com/miyamotohq/miyamoto/node"
)

// Replayed is what Replay found for one run.
type Replayed struct {
	NodeID string
	Run    uint64
	Inputs int // inputs re-executed and found the same
	// Skipped says why the run was not replayed at all ("" when it was): its start
	// was dropped by the ring.
	Skipped string
	// Gap says why replay stopped before the end of the files present ("" when it
	// reached it).
	Gap  string
	Diff *Difference // the first difference, nil when none
	// From names the file whose snapshot the replay started from, when the ring
	// had dropped the run's start ("" when it started at the node's start).
	From string
}

// Difference is the first place a replay departed from the recording.
type Difference struct {
	Input    int    // the input's index in its run (0 is node.New, 1 Start)
	What     string // the input
	Recorded string // what the recording says came next
	Replayed string // what the replayed node did or asked instead
}

func (d *Difference) String() string {
	return fmt.Sprintf("input %d (%s): recorded %s, replay: %s", d.Input, d.What, d.Recorded, d.Replayed)
}

// Replay re-executes every run of the recording in dir from its start, feeding the
// recorded inputs, clock readings, random draws and storage answers, and compares
// what the node does with what it recorded.
func Replay(dir string) ([]Replayed, error) {
	runs, err := ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []Replayed
	for _, r := range runs {
		out = append(out, ReplayRun(r))
	}
	return out, nil
}

// ReplayRun re-executes one run (see Replay).
func ReplayRun(run *Run) Replayed { return replayRun(run, nil) }

// replayRun re-executes one run, telling obs (when not nil) what the node did.
func replayRun(run *Run, obs *observer) Replayed {
	res := Replayed{NodeID: run.Header.NodeID, Run: run.Header.Run, Gap: run.Gap}
	switch {
	case !run.Start && !run.Snapshot:
		res.Skipped = fmt.Sprintf("its start (%s) was dropped by the ring, and its oldest file kept (%s) holds no snapshot of the node; raise --record-size",
			fileName(run.Header.Run, 0), run.Files[0])
		return res
	case !run.Start:
		res.From = run.Files[0]
	}
	cfg, err := replayConfig(run.Header)
	if err != nil {
		res.Diff = &Difference{What: "configuration", Recorded: "the node's configuration", Replayed: err.Error()}
		return res
	}
	p := &replayEnv{durable: run.Header.Durable, streamed: run.Header.StreamedLoad, timers: map[uint64]func(){}, syncs: map[uint64]func(){}, obs: obs}
	var n *node.Node
	for i, g := range run.Groups {
		d := dec{b: g}
		kind := d.byte()
		what := inputNames[kind]
		if kind == inSnapshot {
			if diff := p.snapshot(&d, i == 0, cfg, &n); diff != nil {
				diff.Input, diff.What = i, "the snapshot at the start of a file"
				res.Diff = diff
				return res
			}
			continue
		}
		apply, err := p.input(kind, &d, cfg, &n)
		if err == nil && i == 0 && kind != inNew || i > 0 && kind == inNew {
			err = fmt.Errorf("recording: a %s input at position %d", what, i)
		}
		if err != nil {
			res.Diff = &Difference{Input: i, What: what, Recorded: "a readable input", Replayed: err.Error()}
			return res
		}
		p.events, p.lastNow = d, 0
		if obs != nil {
			obs.beginInput(d)
		}
		if diff := p.run(apply); diff != nil {
			diff.Input, diff.What = i, describeInput(kind, g)
			res.Diff = diff
			return res
		}
		res.Inputs++
	}
	return res
}

// snapshot takes a snapshot group: the first of the run restores the node from it;
// a later one must equal the replayed node's own snapshot there (the same state).
func (p *replayEnv) snapshot(d *dec, first bool, cfg node.Config, n **node.Node) *Difference {
	timers, syncs, snap := d.uvarint(), d.uvarint(), d.bytes()
	if d.err != nil {
		return &Difference{Recorded: "a readable snapshot", Replayed: d.err.Error()}
	}
	if !first {
		got, err := (*n).Snapshot()
		switch {
		case err != nil:
			return &Difference{Recorded: "the node's snapshot", Replayed: err.Error()}
		case !bytes.Equal(got, snap):
			return &Difference{Recorded: fmt.Sprintf("the node's state (a snapshot of %d bytes)", len(snap)),
				Replayed: fmt.Sprintf("another state (a snapshot of %d bytes)", len(got))}
		}
		return nil
	}
	// Restoring, the node re-arms its timers and asks again for its syncs: under the
	// numbers they were recorded with, not as new events.
	p.restoring = true
	nn, err := node.Restore(cfg, p.env(), snap)
	p.restoring = false
	if err != nil {
		return &Difference{Recorded: "a snapshot this build restores", Replayed: err.Error()}
	}
	ids := nn.SyncsWaiting()
	if len(ids) != len(p.restored) {
		return &Difference{Recorded: fmt.Sprintf("%d syncs waiting", len(ids)), Replayed: fmt.Sprintf("%d syncs asked again", len(p.restored))}
	}
	for i, id := range ids {
		p.syncs[id] = p.restored[i]
	}
	p.restored, p.nTimers, p.nSyncs, *n = nil, timers, syncs, nn
	p.obs.restored(nn, p.durable)
	return nil
}

// replayConfig is the run's node configuration with the URL check the daemon had.
func replayConfig(h Header) (node.Config, error) {
	cfg := h.Config
	if h.DenyPrivate {
		allow, err := urlpolicy.ParseAllow(h.AllowURLs)
		if err != nil {
			return cfg, fmt.Errorf("the recorded --allow-url: %w", err)
		}
		cfg.CheckTaskURL = (&urlpolicy.Policy{Allow: allow}).CheckURLNoLookup
	}
	return cfg, nil
}

// input decodes an input and returns the function that applies it.
func (p *replayEnv) input(kind byte, d *dec, cfg node.Config, n **node.Node) (func(), error) {
	switch kind {
	case inNew:
		return func() {
			nn, err := node.New(cfg, p.env())
			if err != nil {
				panic(fmt.Sprintf("node.New: %v", err))
			}
			*n = nn
		}, nil
	case inStart:
		return func() {
			if err := (*n).Start(); err != nil {
				p.startErr = err
			}
		}, nil
	case inStep:
		frame := d.frame()
		m, _, err := wire.DecodeFrame(frame)
		if err != nil {
			return nil, fmt.Errorf("a recorded message does not decode: %w", err)
		}
		return func() { p.obs.received(m, frame); (*n).Step(m) }, d.err
	case inResult:
		r := decodeResult(d)
		return func() { p.obs.result(r); (*n).HandleDeliveryResult(r) }, d.err
	case inEnqueue:
		req := decodeEnqueue(d)
		return func() { (*n).Enqueue(req, p.obs.enqueueAnswered) }, d.err
	case inCall:
		var c Call
		if err := json.Unmarshal(d.bytes(), &c); err != nil {
			return nil, fmt.Errorf("a recorded API call does not decode: %w", err)
		}
		return func() {
			if err := c.apply(*n, p.obs); err != nil {
				panic(err.Error())
			}
		}, d.err
	case inTimer, inSync:
		id := d.uvarint()
		pending, name := p.timers, "timer"
		if kind == inSync {
			pending, name = p.syncs, "sync"
		}
		return func() {
			f := pending[id]
			if f == nil {
				panic(divergence{fmt.Sprintf("%s %d completing", name, id), fmt.Sprintf("%s %d was never started or already completed", name, id)})
			}
			delete(pending, id)
			f()
		}, d.err
	case inOpaque:
		return nil, errors.New("the daemon ran an unlabelled function that changed the node: the recording cannot say what it was")
	}
	return nil, fmt.Errorf("recording: unknown input kind %d", kind)
}

// divergence is how the replay environment stops an input that departs from the
// recording.
type divergence struct{ recorded, replayed string }

// run applies one input and checks that it used up its recorded events.
func (p *replayEnv) run(apply func()) (diff *Difference) {
	defer func() {
		switch v := recover().(type) {
		case nil:
		case divergence:
			diff = &Difference{Recorded: v.recorded, Replayed: v.replayed}
		default:
			diff = &Difference{Recorded: "the input handled", Replayed: fmt.Sprintf("the node panicked: %v", v)}
		}
	}()
	apply()
	if len(p.events.b) > 0 {
		return &Difference{Recorded: describeEvent(&p.events), Replayed: "nothing more"}
	}
	return nil
}

// env is the replayed node's environment: p, its storage streaming as the
// recorded node's did.
func (p *replayEnv) env() node.Env {
	var storage node.Storage = p
	if p.streamed {
		storage = streamingReplay{p}
	}
	env := node.Env{Clock: p, Network: p, Dispatcher: p, Storage: storage, Rand: p}
	if p.obs != nil {
		env.Observer = p.obs
	}
	return env
}

// replayEnv is the whole environment of a replayed node: it answers every read from
// the recorded events and checks every action against them, in order.
type replayEnv struct {
	events   dec
	durable  bool
	streamed bool // the recorded node's storage streamed (Header.StreamedLoad)
	timers   map[uint64]func()
	syncs    map[uint64]func()
	nTimers  uint64
	nSyncs   uint64
	startErr error
	obs      *observer // nil: replay only
	lastNow  int64     // the group's last clock reading (see nowField)
	// restoring: node.Restore is running (snapshot); restored holds the syncs it
	// asked for again, in order.
	restoring bool
	restored  []func()
}

var (
	_ node.Clock         = (*replayEnv)(nil)
	_ node.AlarmClock    = (*replayEnv)(nil)
	_ node.Network       = (*replayEnv)(nil)
	_ node.Dispatcher    = (*replayEnv)(nil)
	_ node.Storage       = (*replayEnv)(nil)
	_ node.Rand          = (*replayEnv)(nil)
	_ node.LossReporter  = (*replayEnv)(nil)
	_ node.StorageHealth = (*replayEnv)(nil)
)

// next consumes the next event, which must be of kind; replayed describes what the
// node did, for the difference.
func (p *replayEnv) next(kind byte, replayed string) *dec {
	if len(p.events.b) == 0 {
		panic(divergence{"nothing more", replayed})
	}
	save := p.events
	if k := p.events.byte(); k != kind {
		p.events = save
		panic(divergence{describeEvent(&p.events), replayed})
	}
	return &p.events
}

func (p *replayEnv) Now() time.Time {
	if p.restoring {
		return time.Time{} // re-arming: the delay it computes is not used
	}
	t := nanosTime(nowValue(&p.lastNow, p.next(evNow, "read the clock").varint()))
	p.obs.read(t)
	return t
}

// AfterAlarm takes a restored node's timers under their numbers, and arms any
// other as AfterFunc (the numbers then agree: the node's alarms are its timers).
func (p *replayEnv) AfterAlarm(id uint64, d time.Duration, f func()) func() bool {
	if p.restoring {
		p.timers[id] = f
		return func() bool { return true }
	}
	return p.AfterFunc(d, f)
}

func (p *replayEnv) AfterFunc(d time.Duration, f func()) func() bool {
	p.nTimers++
	id := p.nTimers
	e := p.next(evTimer, fmt.Sprintf("armed timer %d for %v", id, d))
	if gotID, gotD := e.uvarint(), time.Duration(e.varint()); gotID != id || gotD != d {
		panic(divergence{fmt.Sprintf("timer %d armed for %v", gotID, gotD), fmt.Sprintf("armed timer %d for %v", id, d)})
	}
	p.timers[id] = f
	// Cancels are not recorded (see recClock.AfterFunc): the timer stays known, in
	// case the recording says it fired before its cancel took.
	return func() bool { return true }
}

func (p *replayEnv) draw(what string) uint64 { return p.next(evRand, what).uvarint() }

func (p *replayEnv) Uint64() uint64 { return p.next(evRand64, "drew a random number").uint64() }
func (p *replayEnv) IntN(n int) int {
	return int(p.draw(fmt.Sprintf("drew a random number below %d", n)))
}
func (p *replayEnv) Int64N(n int64) int64 {
	return int64(p.draw(fmt.Sprintf("drew a random number below %d", n)))
}

func (p *replayEnv) Send(m node.Message) {
	frame := wire.AppendFrame(nil, m)
	got := decodeSent(&dec{b: appendSent(nil, m, frame)})
	want := decodeSent(p.next(evSend, "sent "+got.String()))
	if want != got {
		panic(divergence{"sent " + want.String(), "sent " + got.String() + differingHash(want.hash, got.hash)})
	}
	p.obs.sent(m, frame)
}

func (p *replayEnv) Dispatch(del node.Delivery) {
	got := fmt.Sprintf("delivery of %s attempt %d (deadline %v)", del.Task.ID, del.Attempt, del.Deadline)
	e := p.next(evDispatch, "started "+got)
	want := fmt.Sprintf("delivery of %s attempt %d (deadline %v)", e.str(), e.uvarint(), time.Duration(e.varint()))
	if want != got {
		panic(divergence{"started " + want, "started " + got})
	}
	p.obs.dispatched(del)
}

func (p *replayEnv) Durable() bool { return p.durable }

func (p *replayEnv) Append(recs ...node.Record) {
	gotText, gotHash := describeAppended(&dec{b: appendAppended(nil, recs, appendRecordFrames(nil, recs))})
	wantText, wantHash := describeAppended(p.next(evAppend, gotText))
	if wantText != gotText || wantHash != gotHash {
		panic(divergence{wantText, gotText + differingHash(wantHash, gotHash)})
	}
}

func (p *replayEnv) Sync(done func()) {
	if p.restoring {
		p.restored = append(p.restored, done)
		return
	}
	p.nSyncs++
	if id := p.next(evSync, fmt.Sprintf("sync %d", p.nSyncs)).uvarint(); id != p.nSyncs {
		panic(divergence{fmt.Sprintf("sync %d", id), fmt.Sprintf("sync %d", p.nSyncs)})
	}
	p.syncs[p.nSyncs] = done
}

func (p *replayEnv) Load() ([]node.Record, error) {
	e := p.next(evLoad, "loaded its log")
	msg := e.str()
	recs := decodeRecords(e)
	p.obs.loaded(p.durable, recs)
	if msg != "" {
		return recs, errors.New(msg)
	}
	return recs, nil
}

// streamingReplay is the replayed node's storage when the recorded node's
// streamed its log (Header.StreamedLoad): the node then asks LoadEach, not Load.
type streamingReplay struct{ *replayEnv }

var _ node.RecordStreamer = streamingReplay{}

// LoadEach hands over the records the recording holds, one at a time, as the
// recorded node took them; the observer gets them all at the end, as from Load.
func (s streamingReplay) LoadEach(visit func(r *node.Record)) error {
	p := s.replayEnv
	var kept []node.Record
	for len(p.events.b) > 0 && p.events.b[0] == evLoadRec {
		rec := decodeRecord(p.next(evLoadRec, "loaded a record"))
		if p.obs != nil {
			kept = append(kept, rec)
		}
		visit(&rec)
	}
	msg := p.next(evLoadEnd, "finished loading its log").str()
	p.obs.loaded(p.durable, kept)
	if msg != "" {
		return errors.New(msg)
	}
	return nil
}

func (p *replayEnv) LostSince() (time.Time, bool) {
	e := p.next(evLost, "asked whether its log lost records")
	return nanosTime(e.varint()), e.bool()
}

func (p *replayEnv) Err() error {
	if msg := p.next(evStoreErr, "asked its storage's health").str(); msg != "" {
		return errors.New(msg)
	}
	return nil
}

// describeInput names an input for a difference.
func describeInput(kind byte, g []byte) string {
	d := dec{b: g[1:]}
	switch kind {
	case inStep:
		return "received " + describeMessage(d.frame())
	case inTimer:
		return fmt.Sprintf("timer %d fired", d.uvarint())
	case inSync:
		return fmt.Sprintf("sync %d completed", d.uvarint())
	case inResult:
		r := decodeResult(&d)
		return fmt.Sprintf("webhook result of %s attempt %d: status %d %v", r.TaskID, r.Attempt, r.Status, r.Err)
	case inCall:
		return "API call " + string(d.bytes())
	case inEnqueue:
		req := decodeEnqueue(&d)
		return fmt.Sprintf("enqueue to queue %s of %s %s (%d bytes)", req.Queue, req.Method, req.URL, len(req.Body))
	}
	return inputNames[kind]
}

// differingHash explains a difference that the summaries do not show.
func differingHash(want, got uint64) string {
	if want == got {
		return ""
	}
	return fmt.Sprintf(" (its encoding differs: hash %016x, recorded %016x)", got, want)
}

// describeEvent reads the event at the front of d and names it (the observer
// skips events with it: it reads each whole).
func describeEvent(d *dec) string {
	kind := d.byte()
	switch kind {
	case evNow:
		// Only a group's first reading is whole; the others count from the one before.
		v := d.varint()
		if v > int64(365*24*time.Hour) {
			return "a clock reading of " + nanosTime(v).UTC().Format(time.RFC3339Nano)
		}
		return fmt.Sprintf("a clock reading %v after the last", time.Duration(v))
	case evRand:
		return fmt.Sprintf("a random draw of %d", d.uvarint())
	case evRand64:
		return fmt.Sprintf("a random draw of %d", d.uint64())
	case evCancel:
		return fmt.Sprintf("a timer cancel (stopped: %v)", d.bool())
	case evSend:
		return "sent " + decodeSent(d).String()
	case evDispatch:
		return fmt.Sprintf("started delivery of %s attempt %d", d.str(), d.uvarint())
	case evAppend:
		text, _ := describeAppended(d)
		return text
	case evSync:
		return fmt.Sprintf("sync %d", d.uvarint())
	case evTimer:
		return fmt.Sprintf("timer %d armed for %v", d.uvarint(), time.Duration(d.varint()))
	case evStoreErr:
		if msg := d.str(); msg != "" {
			return "a storage health of " + msg
		}
		return "a storage health of ok"
	case evLost:
		since, lost := nanosTime(d.varint()), d.bool()
		if !lost {
			return "a loss report of none"
		}
		return "a loss report of records synced before " + since.UTC().Format(time.RFC3339Nano)
	case evLoad:
		msg := d.str()
		recs := decodeRecords(d)
		if msg != "" {
			return fmt.Sprintf("a log load of %d records that failed: %s", len(recs), msg)
		}
		return fmt.Sprintf("a log load of %d records", len(recs))
	case evLoadRec:
		rec := decodeRecord(d)
		return fmt.Sprintf("a log record loaded (kind %d task %s)", rec.Kind, rec.TaskID)
	case evLoadEnd:
		if msg := d.str(); msg != "" {
			return "the log's load failed: " + msg
		}
		return "the log's load ended"
	}
	if name, ok := eventNames[kind]; ok {
		return "a " + name
	}
	return fmt.Sprintf("an unknown event %d", kind)
}

func describeMessage(frame []byte) string {
	m, _, err := wire.DecodeFrame(frame)
	if err != nil {
		return "a message that does not decode"
	}
	s := fmt.Sprintf("%s %s→%s task %s attempt %d", m.Type, m.From, m.To, m.TaskID, m.Attempt)
	if m.Type == node.MsgClaimResp {
		s += fmt.Sprintf(" granted %v", m.Granted)
	}
	return s
}
