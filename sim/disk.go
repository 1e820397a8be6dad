package sim

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"syscall"
	"time"

	"github.com/miyamotohq/miyamoto/net/disk"
	"github.com/miyamotohq/miyamoto/net/disk/vfs"
	"github.com/miyamotohq/miyamoto/node"
)

// A node with durable storage runs production's log, net/disk, over a crashable
// in-memory file system (vfs.Mem) that outlives its incarnations: every record goes
// through the real codec, the real group commit and the real recovery. The file
// system keeps only what was synced across a power loss (plus, by the scenario's
// torn_writes, a prefix of what was not), and injects by seeded rule the faults the
// scenario schedules: fsync stalls and latency spikes, a full disk (ENOSPC, with
// partial writes), too many open files (EMFILE), fsync errors (EIO) and bit flips.
// A node whose log is corrupt refuses to start, as the daemon does; the simulator
// then acts as the operator: it runs repair-log's code (disk.RepairFS) and starts
// the node again, which then waits as one that forgot.

// discard is the logger of every simulated log (the trace says what matters).
var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// simDisk is one node's disk, kept across its crashes.
type simDisk struct {
	s   *simNode
	fs  *vfs.Mem
	dir string
	log *disk.Log // the current incarnation's log; nil while the node is down
	rng *rand.Rand

	// index is what the disk holds durably, decoded from the bytes each fsync made
	// durable (and rebuilt from what Load returned at every start): the checker's S8
	// compares acknowledgements with it, never with the node's own word.
	index durableIndex
	// repairedAt is the true time records were last cut by a repair (-1: never);
	// cut, the tasks whose durable records the last Load no longer returned.
	repairedAt int64
	// repaired: a repair cut the log and no start has loaded it since (the checker
	// then excuses what the cut took: recovered clears it).
	repaired bool
	cut      map[string]bool
	// unconfirmed are the records appended since the last Sync whose done ran (from
	// seq confirmed+1 on): what a crash may take (the checker's Q4 knowledge).
	unconfirmed         []node.Record
	appended, confirmed uint64

	// Faults in force (true times they end; see applyDiskFault).
	stallUntil, slowUntil, fullUntil, emfileUntil int64
	slowMax                                       time.Duration
	fsyncErr                                      bool // the next fsync of a segment fails (EIO)
	faultsOff                                     bool // during the operator's repair
}

// durableIndex is the set of facts a node's disk holds durably.
type durableIndex struct {
	tasks    map[taskKey]bool
	grants   map[grantKey]bool
	outcomes map[string]node.TaskState
	settings map[string]uint64 // queue -> highest version
	scheds   map[string]uint64 // schedule -> highest version
}

func (x *durableIndex) reset() {
	*x = durableIndex{tasks: map[taskKey]bool{}, grants: map[grantKey]bool{}, outcomes: map[string]node.TaskState{}, settings: map[string]uint64{}, scheds: map[string]uint64{}}
}

// missingFrom returns the tasks with a fact in x that is not in y.
func (x *durableIndex) missingFrom(y *durableIndex) map[string]bool {
	cut := map[string]bool{}
	for k := range x.tasks {
		if !y.tasks[k] {
			cut[k.id] = true
		}
	}
	for k := range x.grants {
		if !y.grants[k] {
			cut[k.task] = true
		}
	}
	for id := range x.outcomes {
		if _, ok := y.outcomes[id]; !ok {
			cut[id] = true
		}
	}
	return cut
}

func (x *durableIndex) add(r node.Record) {
	switch r.Kind {
	case node.RecTask:
		x.tasks[keyOf(r.Task)] = true
	case node.RecGrant:
		x.grants[grantKey{r.TaskID, r.Attempt, r.Holder}] = true
	case node.RecOutcome:
		x.outcomes[r.TaskID] = r.State
	case node.RecSetting:
		if r.Setting != nil && r.Setting.Version > x.settings[r.Setting.Queue] {
			x.settings[r.Setting.Queue] = r.Setting.Version
		}
	case node.RecSchedule:
		if r.Schedule != nil && r.Schedule.Version > x.scheds[r.Schedule.Name] {
			x.scheds[r.Schedule.Name] = r.Schedule.Version
		}
	}
}

func newSimDisk(s *simNode) *simDisk {
	d := &simDisk{s: s, fs: vfs.NewMem(), dir: "/" + string(s.id), repairedAt: -1,
		rng: rand.New(rand.NewPCG(s.w.seed, 6<<32|uint64(s.idx)))}
	d.index.reset()
	d.fs.SetInjector(d.inject)
	d.fs.SetSyncObserver(func(path string, durable []byte, from int) {
		// Segments only: a compaction's output (*.tmp, then renamed) holds records
		// already indexed, and the index is rebuilt from Load at every start.
		if strings.HasSuffix(path, ".log") {
			disk.DecodeFrames(durable[from:], d.index.add)
		}
	})
	return d
}

// open opens the log for incarnation inc of the node.
func (d *simDisk) open(inc uint64) (*disk.Log, error) {
	s := d.s
	spec := s.w.sc.Disk
	return disk.Open(d.dir, disk.Options{
		FS:          d.fs,
		Now:         s.localNow,
		Logger:      discard,
		SegmentSize: spec.SegmentSize,
		// Sync's done runs as an input of the incarnation that asked for it.
		Post: func(f func()) { s.input(inc, f) },
		// Each group commit (write + fsync) takes the disk's latency; it runs as part
		// of the process, so not while it is paused and never after it died.
		Schedule: func(delay time.Duration, run func()) {
			s.w.after(time.Duration(s.trueDelay(delay))+d.syncLatency(), func() { s.input(inc, run) })
		},
	})
}

// syncLatency is how long the next group commit takes, with the stall and spike
// faults in force.
func (d *simDisk) syncLatency() time.Duration {
	w := d.s.w
	lat := w.uniform(d.rng, w.sc.Disk.SyncLatency)
	if w.now < d.slowUntil {
		lat += time.Duration(d.rng.Int64N(int64(d.slowMax) + 1))
	}
	if w.now < d.stallUntil {
		lat = max(lat, time.Duration(d.stallUntil-w.now))
	}
	return lat
}

// inject is the file system's fault rule: consulted before every operation.
func (d *simDisk) inject(op vfs.Op, path string) error {
	now := d.s.w.now
	if d.faultsOff {
		return nil
	}
	switch {
	case now < d.fullUntil && op == vfs.OpWrite:
		// A full disk takes part of the write, then refuses the rest.
		return &vfs.ShortWrite{N: d.rng.IntN(4096), Err: syscall.ENOSPC}
	case now < d.fullUntil && op == vfs.OpCreate:
		return syscall.ENOSPC
	case now < d.emfileUntil && (op == vfs.OpCreate || op == vfs.OpOpen):
		return syscall.EMFILE
	case d.fsyncErr && op == vfs.OpSync && strings.HasSuffix(path, ".log"):
		d.fsyncErr = false
		return syscall.EIO
	}
	return nil
}

// crash is a power loss of this node's machine: what was not synced is gone, but
// for a prefix of it that a torn write left behind (scenario disk.torn_writes).
func (d *simDisk) crash() {
	d.log = nil
	torn := d.s.w.sc.Disk.TornWrites
	d.fs.Crash(func(path string, unsynced int) int {
		if torn > 0 && d.rng.Float64() < torn {
			return d.rng.IntN(unsynced + 1)
		}
		return 0
	})
}

// kill is the death of the process alone: what it wrote stays in the page cache.
func (d *simDisk) kill() {
	d.log = nil
	d.fs.Kill()
}

// flipBit flips one bit of a durable record of the node's log, in its length field
// or its payload (half and half): silent corruption, which the log must detect when
// the node next starts. It returns what it did, for the trace.
func (d *simDisk) flipBit() string {
	names, err := d.fs.ReadDir(d.dir)
	if err != nil {
		return "no log"
	}
	var segs []string
	for _, nm := range names {
		if strings.HasSuffix(nm, ".log") {
			segs = append(segs, nm)
		}
	}
	if len(segs) == 0 {
		return "no segment"
	}
	path := d.dir + "/" + segs[d.rng.IntN(len(segs))]
	data, ok := d.fs.DurableBytes(path)
	if !ok || len(data) == 0 {
		return "empty segment"
	}
	// Frames: length(4) lengthCRC(4) payloadCRC(4) payload. Pick one, then a bit.
	var starts []int
	for off := 0; off+12 <= len(data); {
		n := int(binary.BigEndian.Uint32(data[off:]))
		if off+12+n > len(data) {
			break
		}
		starts = append(starts, off)
		off += 12 + n
	}
	if len(starts) == 0 {
		return "no whole record"
	}
	off := starts[d.rng.IntN(len(starts))]
	at := int64(off + d.rng.IntN(4)) // the length field
	n := int(binary.BigEndian.Uint32(data[off:]))
	if d.rng.IntN(2) == 0 && n > 0 {
		at = int64(off + 12 + d.rng.IntN(n)) // the payload
	}
	bit := uint(d.rng.IntN(8))
	if err := d.fs.FlipBit(path, at, bit); err != nil {
		return err.Error()
	}
	return fmt.Sprintf("flipped bit %d of byte %d of %s (record at %d)", bit, at, path, off)
}

// simStorage is the node's Storage: the real log, with the index rebuilt from what
// it loads.
type simStorage struct {
	*disk.Log
	d *simDisk
}

func (st simStorage) Load() ([]node.Record, error) {
	recs, err := st.Log.Load()
	if err == nil {
		old := st.d.index
		st.d.index.reset()
		for _, r := range recs {
			st.d.index.add(r)
		}
		st.d.cut = old.missingFrom(&st.d.index)
	}
	return recs, err
}

// LoadEach hides the log's own (promoted from *disk.Log), which would skip Load's
// index rebuild: it loads as Load does, then hands the records over.
func (st simStorage) LoadEach(visit func(r *node.Record)) error {
	recs, err := st.Load()
	if err != nil {
		return err
	}
	for i := range recs {
		visit(&recs[i])
	}
	return nil
}

func (st simStorage) Append(recs ...node.Record) {
	st.d.unconfirmed = append(st.d.unconfirmed, recs...)
	st.d.appended += uint64(len(recs))
	st.Log.Append(recs...)
}

func (st simStorage) Sync(done func()) {
	d, target := st.d, st.d.appended
	st.Log.Sync(func() {
		if target > d.confirmed {
			d.unconfirmed = d.unconfirmed[target-d.confirmed:]
			d.confirmed = target
		}
		done()
	})
}

// takeUnconfirmed returns (and forgets) the records no sync confirmed: at a crash.
func (d *simDisk) takeUnconfirmed() []node.Record {
	lost := d.unconfirmed
	d.unconfirmed, d.confirmed = nil, d.appended
	return lost
}

// openStorage opens the node's log for incarnation inc, as the daemon does at start.
func (d *simDisk) openStorage(inc uint64) (node.Storage, error) {
	l, err := d.open(inc)
	if err != nil {
		return nil, err
	}
	d.log = l
	return simStorage{l, d}, nil
}

// repair is what an operator does when the node refuses to start on a corrupt log:
// miyamoto repair-log, which cuts the log at the damage (keeping what it cuts in a
// side file) and marks it LOST, so that the node starts again as one that forgot.
func (d *simDisk) repair(cause error) string {
	if d.log != nil {
		d.log.Close()
		d.log = nil
	}
	d.faultsOff = true
	defer func() { d.faultsOff = false }()
	rep, err := disk.RepairFS(d.fs, d.dir, d.s.localNow)
	if err != nil {
		panic(fmt.Sprintf("sim: repair of %s's log after %v: %v", d.s.id, cause, err))
	}
	d.repairedAt, d.repaired = d.s.w.now, true
	return fmt.Sprintf("%v; repaired: cut %s at %d (%d bytes), %d segments set aside", cause, rep.Cut, rep.Offset, rep.Dropped, len(rep.SetAside))
}

// housekeep is what the daemon does beside the node, every second: it trusts the log
// again (removes LOST) once the node no longer acts as one that forgot, and every
// disk.compact_every, when the node's CompactionPolicy says it is worth it (tasks
// forgotten after their dedup window, cluster.dedup_window, or many superseded
// settings), compacts the log with that policy.
func (w *world) housekeep(s *simNode, inc uint64) {
	d := s.disk
	w.after(time.Second, func() {
		s.input(inc, func() {
			if d.log == nil || s.n == nil {
				return
			}
			if _, lost := d.log.LostSince(); lost && !s.n.Recovering() {
				if err := d.log.ForgetLoss(); err == nil && w.trace != nil {
					w.trace.nodeEvent(w.now, s.id, "log trusted again")
				}
			}
			if every := w.sc.Disk.CompactEvery.D(); every > 0 && time.Duration(w.now)%every < time.Second {
				if policy := s.n.CompactionPolicy(); policy.Worth {
					if err := d.log.CompactRecords(policy.Keep); err == nil && w.trace != nil {
						w.trace.nodeEvent(w.now, s.id, "log compacted")
					}
				}
			}
			w.housekeep(s, inc)
		})
	})
}

// errCorrupt reports whether a node's start failed on a corrupt log.
func errCorrupt(err error) bool { return errors.Is(err, disk.ErrCorrupt) }

// diskFault starts a disk fault of f.Kind on nodes, until f.Duration (or the
// liveness phase) ends it, and returns what ends it.
//
//	disk_stall   every group commit waits until the fault ends (an fsync that hangs)
//	disk_slow    every group commit takes up to Value seconds more
//	disk_full    writes stop short with ENOSPC and segments cannot be created
//	disk_emfile  segments cannot be opened or created (EMFILE)
//	fsync_error  the next fsync fails (EIO): the log stops for good; when the fault
//	             ends the operator restarts the process
func (w *world) diskFault(f FaultEvent, nodes []*simNode) (revert func()) {
	end := w.now + int64(f.Duration)
	if f.Duration == 0 {
		end = int64(w.sc.Duration) // until the liveness phase
	}
	for _, s := range nodes {
		d := s.disk
		switch f.Kind {
		case "disk_stall":
			d.stallUntil = max(d.stallUntil, end)
		case "disk_slow":
			d.slowUntil, d.slowMax = max(d.slowUntil, end), time.Duration(f.Value*float64(time.Second))
		case "disk_full":
			d.fullUntil = max(d.fullUntil, end)
		case "disk_emfile":
			d.emfileUntil = max(d.emfileUntil, end)
		case "fsync_error":
			d.fsyncErr = true
		}
	}
	return func() {
		for _, s := range nodes {
			d := s.disk
			switch f.Kind {
			case "disk_stall":
				d.stallUntil = min(d.stallUntil, w.now)
			case "disk_slow":
				d.slowUntil = min(d.slowUntil, w.now)
			case "disk_full":
				d.fullUntil = min(d.fullUntil, w.now)
			case "disk_emfile":
				d.emfileUntil = min(d.emfileUntil, w.now)
			case "fsync_error":
				d.fsyncErr = false
				if d.log != nil && d.log.Err() != nil && !errors.Is(d.log.Err(), disk.ErrRetrying) {
					// A log stopped by a failed fsync stays stopped: the operator
					// restarts the process (its page cache is lost with it).
					w.crash(s, true)
					w.restart(s)
				}
			}
		}
	}
}
