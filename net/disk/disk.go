// Package disk is the production node.Storage: an append-only log of node.Records in
// segment files, written with group commit. The daemon and the simulator run the same
// code: the file system is a vfs.FS and the clock Options.Now.
//
// The loop a user runs:
//
//	l, err := disk.Open(dir, disk.Options{Post: driver.Post}) // Post runs a func as a node input
//	n := node.New(cfg, node.Env{Storage: l, ...})            // n.Start calls l.Load once
//	...                                                      // the node calls Append and Sync
//	l.Close()                                                // after the node has stopped
//
// In the simulator, on its one goroutine and in virtual time:
//
//	mem := vfs.NewMem()                                      // one per node, kept across crashes
//	l, err := disk.Open("/n1", disk.Options{FS: mem, Now: virtualNow, Post: input,
//		Schedule: func(d time.Duration, run func()) { ... }}) // call run after d (+ fsync latency)
//	...                                                      // crash: forget l, mem.Crash(tear); Open again
//
// # Files
//
// dir holds segments named 00000001.log, 00000002.log, ... (eight digits at least,
// numbered without gaps). Each segment is a sequence of records:
//
//	record  = length(4) lengthCRC(4) payloadCRC(4) payload(length bytes)
//	payload = version(1) kind(1) taskID attempt holder leaseEnd nextETA retries
//	          state(1) status taskPresence(1) task? settingPresence(1) setting?
//	          round failed reason
//
// The three header fields are big endian; both CRCs are CRC-32C (Castagnoli),
// lengthCRC of the 4 length bytes, payloadCRC of the payload. length is 2 to
// MaxRecordSize. Strings, numbers and times in the payload are encoded as in net/wire
// and the task as wire.AppendTask writes it; version is recordVersion (4; 2 and 3 are
// read too, format 1 had no lengthCRC and is refused, naming the cause). A payload of kind 0 (version, 0
// and nothing else) is a compaction marker: it is only ever the first record of a
// segment written by Compact, and means that this segment replaces every segment
// numbered below it. The writer starts a new segment when the next record would take
// the active one past Options.SegmentSize (a record bigger than that gets a segment of
// its own); before it creates the new segment it fsyncs the old one, so every segment
// but the last is complete on disk.
//
// dir also holds LockFile, locked by the process that has the log open (a second
// Open fails naming the directory), and, while the log may lack records it
// acknowledged, LostFile (see LostSince and Repair). Files Repair set aside
// (*.log.cut, *.log.cut-OFFSET) are ignored.
//
// # Load: torn tails and corruption
//
// Load reads the live segments in order (deleting leftover *.tmp files and, when a
// segment begins with a compaction marker, every segment below the highest such one).
// A crash can only cut short what was being appended at the end of the last segment:
// a prefix of the unacknowledged bytes reaches the disk, or the file grew and the new
// bytes read as zeros. So the rule never guesses. In the last segment, and only
// there, a torn tail is exactly one of:
//
//   - fewer bytes than a header at the very end (what there is of the header checks
//     out as far as it goes: with 8 bytes or more, lengthCRC matches);
//   - a header that checks out whose payload runs past the end of the file;
//   - nothing but zero bytes from a record boundary to the end.
//
// A torn tail is dropped: the file is truncated to the end of the last good record
// (and fsynced), a warning is logged, and the records before it are returned. Later
// appends continue from there.
//
// Everything else is silent corruption, and Load returns a *CorruptError (matching
// ErrCorrupt) naming the file and the offset of the damaged record, and the node
// refuses to start: a header whose lengthCRC does not match (a damaged length is
// never taken for a short record), a length out of bounds, a payload CRC mismatch
// (in the final record too: a whole payload was written whole), a payload that does
// not decode, bytes after a bad record, anything bad in a segment that is not the
// last, a missing segment. Nothing is truncated then: an operator decides, with
// Repair (miyamoto repair-log), which keeps what it cuts.
//
// A consequence: a crash that leaves a hole (zeros or stale bytes) in the middle of an
// unacknowledged batch, followed by more bytes of that batch, is reported as
// corruption rather than silently dropped; the data there was never acknowledged, so
// cutting at the reported offset is then safe.
//
// # Sync and errors
//
// Append only encodes into memory and never blocks on IO. Sync hands done to the
// writer, which writes everything pending, fsyncs once for every Sync requested
// meanwhile (group commit), and then posts one function that calls every done, in
// the order of the Sync calls. The writer is a goroutine that Open starts; under load
// it lingers: a group commit starts no sooner than Options.Linger after the previous
// fsync ended. With Options.Schedule (the simulator) there is no goroutine and no
// sleep: the log asks its caller to run each group commit, on the caller's goroutine,
// with the same code.
//
// Storage errors are faults, not crashes of the truth:
//
//   - ENOSPC and EMFILE (and their kin EDQUOT and ENFILE) from a write, or from
//     opening or creating a segment, are retried: the active segment is truncated
//     back to its size before the failed batch (a failed truncate makes the error
//     sticky), the records not yet written and the waiting Syncs are kept, and the
//     writer tries again after a backoff (10 ms, doubling, at most 1 s). Meanwhile Err
//     reports the error (errors.Is(err, ErrRetrying)), so the node's owner stops
//     acknowledging; it clears after the next successful commit. Each record is still
//     written once, whole.
//   - Every other error, and every fsync error (after a failed fsync the kernel may
//     have dropped the dirty pages and a later fsync proves nothing), is sticky: it is
//     logged, Err reports it, and from then on nothing is written and no done runs
//     again, so the node never acknowledges anything that might not be durable. The
//     process should then be restarted; Load repairs what the failed write left at
//     the tail.
//
// What this package must never do: call a done function before the records appended
// ahead of its Sync are fsynced, call one inside Sync or more than once, block Append
// or Sync on IO, retry an fsync, write a record twice or in part, silently skip a
// damaged record that is not a torn tail, or touch the file system and the clock
// other than through Options.FS and Options.Now.
package disk

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miyamotohq/miyamoto/net/disk/vfs"
	"github.com/miyamotohq/miyamoto/node"
)

// DefaultSegmentSize is the segment size used when Options.SegmentSize is 0.
const DefaultSegmentSize = 64 << 20

// maxSpare is the largest pending buffer kept for reuse after a batch.
const maxSpare = 4 << 20

// ErrCorrupt is matched (errors.Is) by every *CorruptError.
var ErrCorrupt = errors.New("disk: corrupt log")

// ErrClosed is returned by Load and Compact after Close.
var ErrClosed = errors.New("disk: log is closed")

// CorruptError is silent corruption found by Load: a damaged record that is not a torn
// tail. The node must not start on such a log.
type CorruptError struct {
	Path   string // the segment file
	Offset int64  // byte offset of the damaged record's header in Path
	Reason string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("disk: corrupt record in %s at offset %d: %s", e.Path, e.Offset, e.Reason)
}

// Is makes errors.Is(err, ErrCorrupt) true.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

// Options configure a Log.
type Options struct {
	// SegmentSize in bytes: the writer starts a new segment rather than take the active
	// one past it. 0 means DefaultSegmentSize; negative is an error.
	SegmentSize int64
	// Post runs a Sync's done function as an input of the node (the daemon passes a
	// function that posts into the node's goroutine). Required. It is called on the
	// writer goroutine (with Schedule, inside run or Close), so it must not block for
	// long, and never inside Sync.
	Post func(func())
	// Logger receives write errors, tail repairs and compactions. nil: slog.Default().
	Logger *slog.Logger
	// FS is the file system the log lives on. nil: vfs.OS. The simulator passes a
	// *vfs.Mem.
	FS vfs.FS
	// Now is the wall clock: the time the LOST file names, and the linger. nil:
	// time.Now.
	Now func() time.Time
	// Linger: a group commit starts no sooner than this after the previous fsync
	// ended, so that under load each fsync serves more Syncs. An idle log is not
	// delayed (its last fsync is long past). 0 means DefaultLinger; negative, none.
	// Without effect under Schedule.
	Linger time.Duration
	// Schedule, when set, runs the log without a goroutine, for the simulator: Open
	// starts none and the log never sleeps. Whenever the log has work — a Sync was
	// requested and no run is scheduled yet, or a retry is due — it calls
	// Schedule(delay, run), with delay 0 for new work (the simulator adds its fsync
	// latency) and the backoff for a retry. run performs one group commit on the
	// caller's goroutine: it writes everything pending, fsyncs once if a Sync is
	// waiting, then calls Post once with the waiting Syncs' dones, in Sync order; it
	// may call Schedule again (a retry). Schedule must only record run for later:
	// calling it inside Schedule is not allowed. Syncs requested before run is called
	// join its group commit. A run called after Close does nothing; a run that belongs
	// to a crashed incarnation must simply never be called. The Log is then meant for
	// one goroutine (Append, Sync, Load, Compact, run and Close all on it).
	Schedule func(delay time.Duration, run func())
}

// DefaultLinger is Options.Linger's default. Measured with bench/cmd/compare on a
// 3-node cluster with storage on, it raised throughput by about a fifth and lowered
// the median latency (README).
const DefaultLinger = time.Millisecond

// withDefaults fills defaults and reports every problem at once.
func (o Options) withDefaults() (Options, error) {
	var errs []error
	switch {
	case o.SegmentSize == 0:
		o.SegmentSize = DefaultSegmentSize
	case o.SegmentSize < 0:
		errs = append(errs, fmt.Errorf("disk: SegmentSize %d is negative", o.SegmentSize))
	}
	if o.Post == nil {
		errs = append(errs, errors.New("disk: Options.Post is required (done must run as a node input)"))
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Linger == 0 {
		o.Linger = DefaultLinger
	}
	if o.FS == nil {
		o.FS = vfs.OS
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o, errors.Join(errs...)
}

// Retry backoff after ENOSPC or EMFILE: the first retry waits minRetry, each next one
// twice the last, up to maxRetry.
const (
	minRetry = 10 * time.Millisecond
	maxRetry = time.Second
)

// ErrRetrying is matched (errors.Is) by Err's error while the writer retries after
// a retryable error (ENOSPC, EMFILE): the log cannot make records durable now, but
// may again without a restart.
var ErrRetrying = errors.New("disk: retrying")

type retryingError struct{ err error }

func (e retryingError) Error() string        { return "disk: retrying after: " + e.err.Error() }
func (e retryingError) Unwrap() error        { return e.err }
func (e retryingError) Is(target error) bool { return target == ErrRetrying }

// isRetryable reports an error that may go away by itself: a full disk or quota, or
// too many open files. The writer retries these (see the package doc).
func isRetryable(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) ||
		errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// Stats are counters since Open.
type Stats struct {
	Syncs       uint64 // Sync calls
	Fsyncs      uint64 // fsyncs of segment files: one per group commit, plus one per roll and per Compact
	Commits     uint64 // batches the writer wrote
	Bytes       uint64 // record bytes written by the writer (not counting compaction)
	Compactions uint64 // successful Compact calls
	Retries     uint64 // group commits that failed with a retryable error and were tried again
}

// Log is an on-disk node.Storage. Append, Sync and Err may be called from any
// goroutine; see Load, Compact and Close for theirs. With Options.Schedule, all
// calls are meant for one goroutine.
type Log struct {
	fs   vfs.FS
	dir  string
	opts Options
	log  *slog.Logger

	// mu guards what Append and Sync touch; it is never held during IO.
	mu        sync.Mutex
	wake      sync.Cond // on mu: pending work or closing
	pending   []byte    // encoded records not yet handed to the writer
	spare     []byte    // a drained buffer for reuse
	waiters   []func()  // done functions of Syncs not yet handed to the writer
	closing   bool
	err       error         // sticky write error
	retryErr  error         // the retryable error the writer is retrying after, or nil
	backoff   time.Duration // the delay before the next retry (0: none failed)
	scheduled bool          // with Schedule: a run is scheduled
	lost      bool          // the LOST file exists (see LostSince)
	lostSince time.Time     // the time it names

	// io guards the files. The writer holds it while it writes and fsyncs a batch;
	// Load, Compact and Close take it too, so they never interleave with a batch.
	io       sync.Mutex
	ready    bool     // the tail was scanned and repaired: the writer may append
	first    uint64   // lowest live segment (0: none)
	last     uint64   // active (highest) segment (0: none)
	size     int64    // bytes in the active segment
	synced   int64    // bytes of the active segment known durable (<= size)
	f        vfs.File // the active segment opened for append, or nil
	dirty    bool     // bytes written to f since its last fsync
	closedIO bool

	stopped  chan struct{} // closed when the writer goroutine ends (nil with Schedule)
	closeCh  chan struct{} // closed by Close: wakes a writer waiting to retry
	closeErr error
	lock     io.Closer // holds LockFile's lock until Close

	lastFsync time.Time // when the last group commit's fsync ended (writer only)

	syncs, fsyncs, commits, bytes, compactions, retries atomic.Uint64
}

var (
	_ node.Storage      = (*Log)(nil)
	_ node.LossReporter = (*Log)(nil)
)

// Open opens the log in dir, creating dir if it is missing, and starts the writer
// goroutine (none with Options.Schedule). It reads nothing yet: Load scans the
// segments (and the writer scans them itself before its first write if Load was never
// called).
func Open(dir string, opts Options) (*Log, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	fsys := opts.FS
	if err := mkdirDurable(fsys, filepath.Clean(dir)); err != nil {
		return nil, fmt.Errorf("disk: %w", err)
	}
	lock, err := lockDir(fsys, dir)
	if err != nil {
		return nil, err
	}
	lostSince, lost, err := checkLost(fsys, dir, opts.Now)
	if err != nil {
		lock.Close()
		return nil, err
	}
	l := &Log{fs: fsys, dir: dir, opts: opts, log: opts.Logger.With("dir", dir), closeCh: make(chan struct{}), lock: lock, lost: lost, lostSince: lostSince}
	l.wake.L = &l.mu
	if opts.Schedule == nil {
		l.stopped = make(chan struct{})
		go l.run()
	}
	return l, nil
}

// Durable reports true: records survive a crash once their Sync's done ran.
func (l *Log) Durable() bool { return true }

// Append encodes recs at the end of the pending buffer. It never blocks on IO. After
// Close it does nothing. A RecTask record without a Task, or a record over
// MaxRecordSize, panics (it could not be replayed).
func (l *Log) Append(recs ...node.Record) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closing {
		return
	}
	for i := range recs {
		l.pending = appendRecord(l.pending, &recs[i])
	}
}

// Sync asks the writer to make every record appended so far durable, then to call
// Options.Post(done). It returns at once; done never runs inside it. done never runs
// at all after a sticky error (see Err) or when Sync is called after Close; during
// retries it waits.
func (l *Log) Sync(done func()) {
	l.syncs.Add(1)
	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		return
	}
	l.waiters = append(l.waiters, done)
	l.wake.Signal()
	schedule := l.opts.Schedule != nil && !l.scheduled
	if schedule {
		l.scheduled = true
	}
	l.mu.Unlock()
	if schedule {
		l.opts.Schedule(0, l.runScheduled)
	}
}

// Err returns why the log cannot make records durable now, or nil while it can. The
// daemon should report it as its health (503 while it is not nil) rather than wait
// for Syncs that do not complete. Two kinds:
//
//   - errors.Is(err, ErrRetrying): a retryable error (ENOSPC, EMFILE); the writer is
//     retrying, the pending Syncs wait, and Err returns nil again after the next
//     successful commit.
//   - anything else: sticky; nothing more is written and no done runs again. Restart
//     the process.
func (l *Log) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.err != nil:
		return l.err
	case l.retryErr != nil:
		return retryingError{l.retryErr}
	}
	return nil
}

// sticky returns the sticky error, or nil.
func (l *Log) sticky() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// fail makes err the sticky error: nothing is written and no done runs from now on.
func (l *Log) fail(err error) error {
	l.log.Error("log IO failed; no further writes, Syncs will never complete", "err", err)
	l.mu.Lock()
	if l.err == nil {
		l.err = err
	}
	l.mu.Unlock()
	return err
}

// Stats returns the counters.
func (l *Log) Stats() Stats {
	return Stats{
		Syncs:       l.syncs.Load(),
		Fsyncs:      l.fsyncs.Load(),
		Commits:     l.commits.Load(),
		Bytes:       l.bytes.Load(),
		Compactions: l.compactions.Load(),
		Retries:     l.retries.Load(),
	}
}

// Close writes and fsyncs everything pending (running the done functions of the
// Syncs already requested), stops the writer and closes the files. Later Appends and
// Syncs are ignored. It does not retry: a retryable error during Close is sticky. It
// returns the sticky write error if there was one. It waits for the writer, which may
// be inside Post: when Post can block (a full node inbox), do not call Close from the
// goroutine that Post feeds; stop the node first. With Schedule, Close does the last
// group commit itself, on the caller's goroutine.
func (l *Log) Close() error {
	l.mu.Lock()
	already := l.closing
	l.closing = true
	l.wake.Broadcast()
	l.mu.Unlock()
	if !already {
		close(l.closeCh)
		if l.opts.Schedule != nil {
			l.commitStep()
		}
	}
	if l.stopped != nil {
		<-l.stopped
	}
	l.io.Lock()
	defer l.io.Unlock()
	if already {
		return l.closeErr
	}
	var err error
	if l.f != nil {
		if l.dirty && l.sticky() == nil { // never fsync again after a failure
			err = l.fsync()
		}
		if cerr := l.f.Close(); err == nil {
			err = cerr
		}
		l.f = nil
	}
	l.closedIO = true
	if l.lock != nil {
		l.lock.Close() // releases the lock
		l.lock = nil
	}
	if werr := l.Err(); werr != nil {
		err = werr
	}
	if err != nil {
		err = fmt.Errorf("disk: close: %w", err)
	}
	l.closeErr = err
	return err
}

// run is the writer goroutine: a loop around commitStep, lingering under load and
// waiting out the backoff after a retryable error.
func (l *Log) run() {
	defer close(l.stopped)
	for {
		l.mu.Lock()
		for len(l.pending) == 0 && len(l.waiters) == 0 && !l.closing {
			l.wake.Wait()
		}
		if len(l.pending) == 0 && len(l.waiters) == 0 {
			l.mu.Unlock()
			return // closing and drained
		}
		if wait := l.opts.Linger - l.opts.Now().Sub(l.lastFsync); len(l.waiters) > 0 && wait > 0 && !l.closing {
			// Busy: the last fsync ended under Linger ago. Let more Syncs join this
			// one rather than fsync for a few (see Options.Linger).
			l.mu.Unlock()
			time.Sleep(wait)
			l.mu.Lock()
		}
		l.mu.Unlock()
		if retry := l.commitStep(); retry > 0 {
			t := time.NewTimer(retry)
			select {
			case <-t.C:
			case <-l.closeCh: // Close does not wait out a backoff: it gives up
			}
			t.Stop()
		}
	}
}

// runScheduled is the run that Options.Schedule is given: one commitStep.
func (l *Log) runScheduled() {
	l.mu.Lock()
	l.scheduled = false
	idle := l.closing || len(l.pending) == 0 && len(l.waiters) == 0
	l.mu.Unlock()
	if idle {
		return // Close did the last commit
	}
	if retry := l.commitStep(); retry > 0 {
		l.opts.Schedule(retry, l.runScheduled)
	}
}

// commitStep is one group commit, the whole of a writer's turn, shared by the writer
// goroutine and the scheduled runs: it takes everything pending, writes it, fsyncs
// once if a Sync is waiting, and posts the waiters' done functions in one Post. After
// a retryable error it puts back what was not written ahead of what was appended
// since, keeps the waiters ahead of later ones, and returns the delay before the next
// try (> 0; with Schedule, a run counts as scheduled from then). After any other
// error the log fails for good (see fail).
func (l *Log) commitStep() (retry time.Duration) {
	l.mu.Lock()
	buf, waiters := l.pending, l.waiters
	l.pending, l.spare, l.waiters = l.spare[:0], nil, nil
	failed, closing := l.err, l.closing
	l.mu.Unlock()

	if failed != nil {
		if len(waiters) > 0 {
			l.log.Error("dropping syncs after a write error", "syncs", len(waiters), "records_bytes", len(buf))
		}
		l.recycle(buf)
		return 0
	}
	l.io.Lock()
	written, retryable, err := l.commit(buf, len(waiters) > 0)
	l.io.Unlock()
	switch {
	case err == nil:
		l.mu.Lock()
		recovered := l.retryErr
		l.retryErr, l.backoff = nil, 0
		l.mu.Unlock()
		if recovered != nil {
			l.log.Info("log writes work again", "after", recovered)
		}
		if len(waiters) > 0 {
			// One Post for the whole group: one wake-up of the node, not one per Sync.
			l.opts.Post(func() {
				for _, done := range waiters {
					done()
				}
			})
		}
		l.recycle(buf)
		return 0
	case retryable && !closing:
		l.retries.Add(1)
		l.mu.Lock()
		since := l.pending
		l.pending = append(buf[written:], since...)
		if cap(since) <= maxSpare {
			l.spare = since[:0]
		}
		l.waiters = append(waiters, l.waiters...)
		l.backoff = min(max(2*l.backoff, minRetry), maxRetry)
		retry = l.backoff
		first := l.retryErr == nil
		l.retryErr = err
		if l.opts.Schedule != nil {
			l.scheduled = true
		}
		l.mu.Unlock()
		if first {
			l.log.Warn("log write failed; retrying, Syncs wait", "err", err, "retry_in", retry)
		}
		return retry
	default:
		l.fail(fmt.Errorf("disk: write: %w", err))
		if len(waiters) > 0 {
			l.log.Error("dropping syncs after a write error", "syncs", len(waiters), "records_bytes", len(buf))
		}
		return 0
	}
}

// recycle keeps a drained pending buffer for the next batch.
func (l *Log) recycle(buf []byte) {
	if cap(buf) <= maxSpare {
		l.mu.Lock()
		l.spare = buf[:0]
		l.mu.Unlock()
	}
}

// commit writes buf (whole records) to the segments, rolling as needed, and fsyncs
// when needSync and something is unsynced. On error, written is how much of buf is
// in the segments for good (the rest is not there at all: a partial write is
// truncated away) and retryable whether writing buf[written:] may be tried again.
// l.io is held.
func (l *Log) commit(buf []byte, needSync bool) (written int, retryable bool, err error) {
	if l.closedIO {
		return 0, false, ErrClosed
	}
	if !l.ready {
		if err := l.scan(nil); err != nil {
			return 0, false, err
		}
	}
	if l.f == nil && len(buf) > 0 {
		if retryable, err := l.openActive(); err != nil {
			return 0, retryable, err
		}
	}
	l.commits.Add(1)
	for off := 0; off < len(buf); {
		// Take the records that fit in the active segment (at least one if it is empty).
		end := off
		for end < len(buf) {
			n := frameLen(buf[end:])
			if l.size+int64(end-off+n) > l.opts.SegmentSize && (l.size > 0 || end > off) {
				break
			}
			end += n
		}
		if end == off {
			// buf[:off] is in the segment roll fsyncs and closes, for good.
			if retryable, err := l.roll(); err != nil {
				return off, retryable, err
			}
			continue
		}
		start := l.size
		n, err := l.f.Write(buf[off:end])
		l.size += int64(n)
		l.dirty = l.dirty || n > 0
		if err != nil {
			if !isRetryable(err) {
				return off, false, err
			}
			// Take back what part of the batch reached the file, so that the retry
			// writes each record once, whole.
			if terr := l.f.Truncate(start); terr != nil {
				return off, false, fmt.Errorf("%w; then truncating %s back to %d bytes: %w", err, segName(l.last), start, terr)
			}
			l.size = start
			return off, true, err
		}
		l.bytes.Add(uint64(n))
		off = end
	}
	if needSync && l.dirty {
		if err := l.fsync(); err != nil {
			return len(buf), false, err
		}
	}
	return len(buf), false, nil
}

// frameLen is the length of the frame at the front of b, which holds whole frames.
func frameLen(b []byte) int {
	return frameHeader + int(uint32(b[0])<<24|uint32(b[1])<<16|uint32(b[2])<<8|uint32(b[3]))
}

// fsync makes the active segment durable. After a failure nothing is known of what
// reached the disk, and the kernel may have dropped the dirty pages while reads still
// return them; so the segment is cut back to its last durable size (no fsync is tried
// again), lest a restarted process read back records that are not on disk and append
// after them. What is cut was never acknowledged.
func (l *Log) fsync() error {
	if err := l.f.Sync(); err != nil {
		if terr := l.f.Truncate(l.synced); terr != nil {
			return fmt.Errorf("%w; then truncating %s back to %d bytes: %w", err, segName(l.last), l.synced, terr)
		}
		l.size = l.synced
		return err
	}
	l.fsyncs.Add(1)
	l.dirty, l.synced = false, l.size
	l.lastFsync = l.opts.Now()
	return nil
}

// openActive opens the last segment for append, or creates the first one.
func (l *Log) openActive() (retryable bool, err error) {
	if l.last == 0 {
		return l.roll()
	}
	f, err := l.fs.OpenAppend(l.segPath(l.last))
	if err != nil {
		return isRetryable(err), err
	}
	l.f = f
	return false, nil
}

// roll makes the active segment complete on disk and starts the next one. Only a
// failure to create the new segment may be retried: the old one is then complete
// and closed, and the next commit opens it again and rolls again.
func (l *Log) roll() (retryable bool, err error) {
	if l.f != nil {
		if l.dirty {
			if err := l.fsync(); err != nil {
				return false, err
			}
		}
		if err := l.f.Close(); err != nil {
			return false, err
		}
		l.f = nil
	}
	next := l.last + 1
	f, err := l.fs.Create(l.segPath(next))
	if err != nil {
		return isRetryable(err), err
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		f.Close()
		return false, err
	}
	l.f, l.last, l.size, l.synced, l.dirty = f, next, 0, 0, false
	if l.first == 0 {
		l.first = next
	}
	return false, nil
}

func (l *Log) segPath(n uint64) string { return filepath.Join(l.dir, segName(n)) }

func segName(n uint64) string { return fmt.Sprintf("%08d.log", n) }

// mkdirDurable creates dir and its missing parents, syncing each new directory's
// parent so that the new entries survive a crash.
func mkdirDurable(fsys vfs.FS, dir string) error {
	err := fsys.Mkdir(dir)
	if errors.Is(err, fs.ErrNotExist) && filepath.Dir(dir) != dir {
		if err := mkdirDurable(fsys, filepath.Dir(dir)); err != nil {
			return err
		}
		err = fsys.Mkdir(dir)
	}
	switch {
	case errors.Is(err, fs.ErrExist):
		return nil
	case err != nil:
		return err
	}
	return fsys.SyncDir(filepath.Dir(dir))
}
