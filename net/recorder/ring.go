package recorder

import (
	"bytes"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/miyamotohq/miyamoto/net/version"
	"github.com/miyamotohq/miyamoto/net/wire"
	"github.com/miyamotohq/miyamoto/node"
)

// Header opens every file of a recording: what Replay needs besides the groups.
type Header struct {
	NodeID string
	Run    uint64 // one start of the process; a restart is the next run
	Seq    uint64 // the file's number in its run; 0 holds the start
	// Config is the node's configuration (gob drops CheckTaskURL, a function; the
	// daemon's URL policy below rebuilds it).
	Config      node.Config
	Durable     bool // whether the node's storage keeps records across a crash
	DenyPrivate bool
	AllowURLs   string
	Started     time.Time // the run's start, on the wall clock
	// Build is the recording build's version (net/version), Format the layout of
	// what it wrote (see Format): a build reads only recordings of its own Format.
	// Empty in recordings made before they carried them.
	Build  string
	Format string
	// StreamedLoad: the recorder gave the node a streaming storage
	// (node.RecordStreamer), so a durable node's start read its log by LoadEach
	// (events evLoadRec, evLoadEnd), not by Load (evLoad). Recordings made before
	// it existed are false.
	StreamedLoad bool
}

// ring writes groups to the files of a recording, dropping the oldest file when the
// directory holds more than max bytes. The node's goroutine only encodes groups into
// a batch in memory, in place (it never waits for the disk, but while a start
// streams a large log: waitWriter); the writer goroutine frames the batch (encoding
// its deferred parts and the checksums) and moves it to the current file every
// flushEvery, or sooner when it grows.
type ring struct {
	// rotateDue: the current file is full; the node's goroutine answers with a
	// rotation mark (writeRotation) between two inputs.
	rotateDue atomic.Bool
	dir       string
	max       int64 // bytes the directory may hold
	fileSize  int64 // a file is closed past this size (at a group's end)

	// stopped: err is set (a copy the node's goroutine reads without mu).
	stopped atomic.Bool

	// The node's goroutine encodes each group straight into the batch the writer
	// will take, rather than into a buffer of its own and copying it over (the
	// largest part of what recording cost the node's goroutine,
	// BenchmarkRecorderNodeCost profiled). Two batches take turns: pending, which
	// the node's goroutine fills, and one that is spare, ready or the writer's.
	// The node's goroutine holds input while it encodes into pending, from an
	// input's start to its end (acquire, release), and hands pending over as ready
	// at an input's end once it is large or the writer asked (want), taking spare
	// in its place. The writer takes pending itself only when it finds input free
	// (TryLock: the node is between inputs, or idle); it never waits for an input
	// to end (waiting, it made the node's goroutine wake it and then wait in turn,
	// at every flush).
	input   sync.Mutex
	pending *batch                // groups not yet written; under input
	ready   atomic.Pointer[batch] // handed over, for the writer to write
	spare   atomic.Pointer[batch] // the writer's last batch, for reuse
	want    atomic.Bool           // the writer found input held: hand pending over
	// sleeping: the writer waits for a kick, which a batch handed over sends; while
	// batches keep coming it looks for the next every pollEvery instead, so that
	// the node's goroutine hands them over without waking it up (a wake-up is a
	// system call on the node's thread: with a batch handed over every 8 KiB
	// rather than 64, the node's goroutine spent 4% more CPU per enqueue).
	sleeping atomic.Bool

	mu   sync.Mutex
	err  error  // the first error: recording stops there, the node goes on
	hdr  Header // Seq moves on with each file
	kick chan struct{}
	stop chan struct{}
	done chan struct{}

	// Only the writer goroutine (or close, after it stopped) touches what follows.
	f       *os.File
	size    int64 // bytes in the current file
	opening int64 // of which its header and snapshot: the file is full at fileSize more
	files   []ringFile
	out     []byte // the framed batch being written
	payload []byte // a group with its deferred parts filled in
	frame   []byte // a deferred message's or records' frames, to hash
}

// deferred is a part of a group that the writer goroutine encodes rather than the
// node's, at byte at of the group without its deferred parts: a message's wire
// frame (a received message, whole), the hash of it (a sent one, see appendSent),
// or the hash of appended records' frames (see appendAppended). Encoding and
// hashing them was most of what recording cost the node. The writer reads them
// later, from another goroutine, as net/peer's sender does messages: the node never
// changes what a message or record points to (a task, setting, schedule or roster
// is copied, not changed: see node's dropBody). The records themselves are copied.
type deferred struct {
	at   int
	kind deferredKind
	m    node.Message // defFrame, defFrameHash
	// defRecordsHash: the records are recs[first:first+n] of the group (of the
	// batch, once in one).
	first, n int
}

type deferredKind uint8

const (
	defFrame       deferredKind = iota // a message's wire frame
	defFrameHash                       // the hash of a message's wire frame: 8 bytes
	defRecordsHash                     // the hash of records' frames: 8 bytes
)

// deferredSize is what a deferred part holds in memory, counted against maxPending.
const deferredSize = int(unsafe.Sizeof(deferred{}))

// recordSize is what a deferred record holds in memory.
const recordSize = int(unsafe.Sizeof(node.Record{}))

// batch is the groups the node's goroutine hands the writer: their bytes without
// their deferred parts, one after the other, and the deferred parts in order.
type batch struct {
	bytes  []byte
	groups []groupEnd
	defs   []deferred
	recs   []node.Record // the records of the defRecordsHash parts
}

// groupEnd marks a group's end in a batch: its last byte's offset plus one, and the
// number of deferred parts of it and the groups before it. rotate marks not a
// group but the point where the file ends; its bytes (none, or a snapshot group)
// open the next file.
type groupEnd struct {
	end, defs int
	rotate    bool
}

func newBatch() *batch { return &batch{bytes: make([]byte, 0, pendingStart)} }

// size is what the batch holds in memory, roughly.
func (b *batch) size() int { return len(b.bytes) + len(b.defs)*deferredSize + len(b.recs)*recordSize }

func (b *batch) reset() {
	clear(b.defs) // the messages and records are the node's: do not keep them alive
	clear(b.recs)
	b.bytes, b.groups, b.defs, b.recs = b.bytes[:0], b.groups[:0], b.defs[:0], b.recs[:0]
}

type ringFile struct {
	name string
	size int64
}

// flushEvery bounds what a killed process loses of its recording.
const flushEvery = 100 * time.Millisecond

// maxPending bounds the groups waiting for a slow disk: past it the recording stops
// (Err says why) rather than the node's memory growing.
const maxPending = 64 << 20

// pendingStart is the buffers' first capacity: what a busy node records between two
// flushes, so that the node's goroutine seldom grows a buffer.
const pendingStart = 1 << 20

// kickAt is how much the node's goroutine buffers before it wakes the writer up:
// little enough that the two buffers it fills in turn stay in the CPU's caches
// (at 512 KiB, copying each group into them was the node's largest cost of
// recording: BenchmarkRecorderNodeCost, profiled).
const kickAt = 64 << 10

// pollEvery is how soon a busy writer looks for the next batch.
const pollEvery = 5 * time.Millisecond

// minFileSize keeps the file count sane for a small --record-size.
const minFileSize = 64 << 10

// fileName names file seq of run.
func fileName(run, seq uint64) string { return fmt.Sprintf("r%06d-%06d.rec", run, seq) }

func parseFileName(name string) (run, seq uint64, ok bool) {
	n, err := fmt.Sscanf(name, "r%06d-%06d.rec", &run, &seq)
	return run, seq, err == nil && n == 2 && name == fileName(run, seq)
}

// openRing starts the next run in dir, creating it if needed.
func openRing(dir string, maxBytes int64, hdr Header) (*ring, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	hdr.Build, hdr.Format = version.String(), Format()
	r := &ring{dir: dir, max: maxBytes, fileSize: max(maxBytes/8, minFileSize), hdr: hdr,
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		pending: newBatch()}
	r.spare.Store(newBatch())
	for _, e := range entries {
		run, _, ok := parseFileName(e.Name())
		if !ok || !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return nil, err
		}
		r.files = append(r.files, ringFile{e.Name(), info.Size()})
		r.hdr.Run = max(r.hdr.Run, run+1)
	}
	r.hdr.Run = max(r.hdr.Run, 1)
	sort.Slice(r.files, func(i, j int) bool { return r.files[i].name < r.files[j].name })
	if err := r.openFile(); err != nil {
		return nil, err
	}
	go r.writeLoop()
	return r, nil
}

// openFile starts file hdr.Seq of the run with its header.
func (r *ring) openFile() error {
	var hdr bytes.Buffer
	r.mu.Lock()
	h := r.hdr
	r.mu.Unlock()
	if err := gob.NewEncoder(&hdr).Encode(h); err != nil {
		return fmt.Errorf("recording header: %w", err)
	}
	name := fileName(h.Run, h.Seq)
	f, err := os.OpenFile(filepath.Join(r.dir, name), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	r.f, r.size = f, 0
	r.files = append(r.files, ringFile{name: name})
	err = r.writeFile(append([]byte(magic), appendFrame(nil, hdr.Bytes())...))
	r.opening = r.size
	return err
}

// writeFile appends b to the current file.
func (r *ring) writeFile(b []byte) error {
	if _, err := r.f.Write(b); err != nil {
		return err
	}
	r.size += int64(len(b))
	r.files[len(r.files)-1].size = r.size
	return nil
}

// acquire takes the pending batch for the node's goroutine, which encodes groups
// at its end (their bytes, deferred parts and records) until it calls release.
func (r *ring) acquire() *batch {
	r.input.Lock()
	return r.pending
}

// endGroup ends the group at b[start:] (b: the pending batch's bytes, grown),
// whose deferred parts are the batch's from defStart on (their offsets in the
// group, their records' indexes in the batch), and returns the batch's bytes to
// go on with. Called on the node's goroutine, which holds the batch.
func (r *ring) endGroup(b enc, start, defStart int) enc {
	p := r.pending
	p.bytes = b
	if r.stopped.Load() {
		p.reset()
		return p.bytes
	}
	for i := defStart; i < len(p.defs); i++ {
		p.defs[i].at += start
	}
	p.groups = append(p.groups, groupEnd{end: len(p.bytes), defs: len(p.defs)})
	if p.size() > maxPending {
		r.fail(fmt.Errorf("the disk took the recording slower than the node made it (over %d MiB waiting): recording stopped", maxPending>>20))
		p.reset()
	}
	return p.bytes
}

// release hands the pending batch back, its bytes b (ending with its last group),
// and wakes the writer up once the batch is large enough to write.
func (r *ring) release(b enc) {
	r.pending.bytes = b
	handed := r.handOver()
	r.input.Unlock()
	if handed && r.sleeping.Load() {
		r.wake()
	}
}

// handOver makes pending ready for the writer, and spare pending, when it holds
// groups, is large enough or was asked for, and the writer gave its last batch
// back; called with input held. It reports whether it did.
func (r *ring) handOver() bool {
	p := r.pending
	// Written early, the buffers stay at their first size (and in the CPU's caches).
	if len(p.groups) == 0 || p.size() < min(int(r.fileSize/4), kickAt) && !r.want.Load() {
		return false
	}
	s := r.spare.Swap(nil)
	if s == nil {
		return false // the writer still writes the other batch
	}
	// Spare is set only when the writer holds no batch, so ready is nil.
	r.ready.Store(p)
	r.pending = s
	r.want.Store(false)
	return true
}

func (r *ring) wake() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// fail stops the recording at err, unless it stopped already.
func (r *ring) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil {
		r.err = err
		r.stopped.Store(true)
	}
}

// waitWriter wakes the writer up and waits until the groups pending hold less than
// limit bytes, the recording stopped, or maxWriterWait passed. Only a start's
// streamed load calls it, on the node's goroutine (which otherwise never waits
// for the disk): it reads the log faster than the writer writes it, and would
// stop the recording at maxPending.
func (r *ring) waitWriter(limit int) {
	deadline := time.Now().Add(maxWriterWait)
	for {
		r.input.Lock()
		r.handOver()
		size := r.pending.size()
		r.input.Unlock()
		if size < limit || r.stopped.Load() || time.Now().After(deadline) {
			return
		}
		r.wake()
		time.Sleep(time.Millisecond)
	}
}

// maxWriterWait bounds a wait for the writer: a disk that stalls longer stops the
// recording (maxPending) rather than the node's start.
const maxWriterWait = 10 * time.Second

// writeRotation ends the current file after the groups ended so far in the pending
// batch, whose bytes are b; the next file starts with the bytes after them (a
// snapshot's group, or nothing). It returns the bytes to go on with. Called on the
// node's goroutine, which holds the batch, between two inputs.
func (r *ring) writeRotation(b enc) enc {
	r.rotateDue.Store(false)
	p := r.pending
	p.bytes = b
	if r.stopped.Load() {
		p.reset()
		return p.bytes
	}
	p.groups = append(p.groups, groupEnd{end: len(p.bytes), defs: len(p.defs), rotate: true})
	return p.bytes
}

// frameBatch appends the groups from..to of b to out as frames, their deferred parts
// encoded.
func (r *ring) frameBatch(out []byte, b *batch, from, to int) []byte {
	start, di := 0, 0
	if from > 0 {
		start, di = b.groups[from-1].end, b.groups[from-1].defs
	}
	for _, g := range b.groups[from:to] {
		if di == g.defs {
			out = appendFrame(out, b.bytes[start:g.end])
			start = g.end
			continue
		}
		payload, pos := r.payload[:0], start
		for ; di < g.defs; di++ {
			d := &b.defs[di]
			payload = append(payload, b.bytes[pos:d.at]...)
			payload = r.appendDeferred(payload, b, d)
			pos = d.at
		}
		payload = append(payload, b.bytes[pos:g.end]...)
		out = appendFrame(out, payload)
		r.payload, start = payload, g.end
	}
	return out
}

func (r *ring) appendDeferred(dst []byte, b *batch, d *deferred) []byte {
	switch d.kind {
	case defFrame:
		return wire.AppendFrame(dst, d.m)
	case defFrameHash:
		r.frame = wire.AppendFrame(r.frame[:0], d.m)
	case defRecordsHash:
		r.frame = appendRecordFrames(r.frame[:0], b.recs[d.first:d.first+d.n])
	}
	return binary.BigEndian.AppendUint64(dst, frameKey(r.frame))
}

func (r *ring) writeLoop() {
	defer close(r.done)
	t := time.NewTicker(flushEvery)
	defer t.Stop()
	poll := time.NewTimer(pollEvery)
	defer poll.Stop()
	for {
		// The ticker says that pending is due too, once flushEvery passed; a kick
		// or a poll, that a batch may be ready.
		wrote := false
		for r.flush(false) {
			wrote = true
		}
		var polled <-chan time.Time
		var kicked <-chan struct{}
		if wrote {
			// Busy: look for the next batch in pollEvery, without a wake-up.
			poll.Reset(pollEvery)
			polled = poll.C
		} else {
			r.sleeping.Store(true)
			kicked = r.kick
		}
		due := false
		// A batch handed over before sleeping was set came with no kick.
		if wrote || r.ready.Load() == nil {
			select {
			case <-r.stop:
				r.flushAll()
				return
			case <-t.C:
				due = true
			case <-polled:
			case <-kicked:
			}
		}
		r.sleeping.Store(false)
		if due {
			r.flushAll()
		}
	}
}

// flushAll writes every batch there is, due or not.
func (r *ring) flushAll() {
	for r.flush(true) {
	}
}

// flush writes a batch of groups, whole, to the current file, then moves to the
// next file when this one is full. It reports whether it wrote one: the batch
// handed over, or else, when due, pending if the node's goroutine is between
// inputs (if not, it asks for it at the input's end). Asking at every flush,
// the writer would take a batch per input: each hand-over wakes it up.
func (r *ring) flush(due bool) bool {
	if r.stopped.Load() {
		return false
	}
	b := r.ready.Swap(nil)
	if b == nil {
		if !due {
			return false
		}
		if !r.input.TryLock() {
			r.want.Store(true)
			return false
		}
		// The node's goroutine encodes into the spare batch while this one writes
		// b; spare is nil until b comes back, so that the two never share an array.
		if b = r.ready.Swap(nil); b == nil && len(r.pending.groups) > 0 {
			b = r.pending
			r.pending = r.spare.Swap(nil)
		}
		r.input.Unlock()
		if b == nil {
			return false
		}
	}
	err := r.writeBatch(b)
	if err == nil && r.size-r.opening >= r.fileSize {
		r.rotateDue.Store(true)
	}
	b.reset()
	r.spare.Store(b)
	if err != nil {
		r.fail(err)
		return false
	}
	return true
}

// writeBatch writes b's groups, moving to the next file at each rotation mark.
func (r *ring) writeBatch(b *batch) error {
	from := 0
	for i, g := range b.groups {
		if !g.rotate {
			continue
		}
		r.out = r.frameBatch(r.out[:0], b, from, i)
		if err := r.writeFile(r.out); err != nil {
			return err
		}
		if err := r.rotate(); err != nil {
			return err
		}
		start := 0
		if i > 0 {
			start = b.groups[i-1].end
		}
		if g.end > start {
			r.out = appendFrame(r.out[:0], b.bytes[start:g.end])
			if err := r.writeFile(r.out); err != nil {
				return err
			}
			r.opening = r.size
		}
		from = i + 1
	}
	r.out = r.frameBatch(r.out[:0], b, from, len(b.groups))
	return r.writeFile(r.out)
}

// rotate closes the current file, opens the next and drops the oldest files while
// the directory holds more than max. The current file is never dropped.
func (r *ring) rotate() error {
	if err := r.f.Close(); err != nil {
		return err
	}
	r.f = nil
	r.mu.Lock()
	r.hdr.Seq++
	r.mu.Unlock()
	if err := r.openFile(); err != nil {
		return err
	}
	total := int64(0)
	for _, f := range r.files {
		total += f.size
	}
	for total > r.max && len(r.files) > 1 {
		old := r.files[0]
		if err := os.Remove(filepath.Join(r.dir, old.name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		total -= old.size
		r.files = r.files[1:]
	}
	return nil
}

// close writes what is pending and closes the current file; later groups are dropped.
func (r *ring) close() error {
	close(r.stop)
	<-r.done
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f != nil {
		if err := r.f.Close(); r.err == nil {
			r.err = err
		}
		r.f = nil
	}
	if r.err == nil {
		r.err = errClosed
	}
	r.stopped.Store(true)
	if errors.Is(r.err, errClosed) {
		return nil
	}
	return r.err
}

// errClosed stops groups that come after close.
var errClosed = errors.New("the recording is closed")
