package disk

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/miyamotohq/miyamoto/node"
)

// Load returns every record of the log in append order, after repairing a torn tail
// (see the package doc for the exact rule). Records the writer wrote and fsynced are
// all there; records written but never synced may be there too. It is meant to be
// called once, by node.Start, before the first Append; it is safe at any time (it
// waits for the batch being written). A *CorruptError means the node must not start;
// so does the sticky error, which Load returns once the log has failed.
func (l *Log) Load() ([]node.Record, error) {
	l.io.Lock()
	defer l.io.Unlock()
	if l.closedIO {
		return nil, ErrClosed
	}
	if err := l.sticky(); err != nil {
		return nil, err
	}
	var recs []node.Record
	err := l.scan(func(r *node.Record) { recs = append(recs, *r) })
	if err != nil {
		return nil, err
	}
	return recs, nil
}

// LoadEach is Load handing the records to visit one at a time (node.RecordStreamer):
// a restart then holds one segment's bytes and one record at a time, not every
// record of the log. Records before a *CorruptError may have been visited.
func (l *Log) LoadEach(visit func(r *node.Record)) error {
	l.io.Lock()
	defer l.io.Unlock()
	if l.closedIO {
		return ErrClosed
	}
	if err := l.sticky(); err != nil {
		return err
	}
	return l.scan(visit)
}

var _ node.RecordStreamer = (*Log)(nil)

// scan reads the live segments, passing their records to visit (nil: none),
// repairs the tail and positions the writer at the end of the last segment. l.io
// is held.
func (l *Log) scan(visit func(r *node.Record)) error {
	if l.f != nil {
		if l.dirty {
			if err := l.fsync(); err != nil {
				return err
			}
		}
		if err := l.f.Close(); err != nil {
			return err
		}
		l.f = nil
	}
	segs, err := l.liveSegments()
	if err != nil {
		return err
	}
	var size int64
	for i, num := range segs {
		path := l.segPath(num)
		data, err := l.fs.ReadFile(path)
		if err != nil {
			return fmt.Errorf("disk: %w", err)
		}
		isLast := i == len(segs)-1
		good, torn, err := walkSegment(data, path, isLast, func(_, _ int, r *node.Record) {
			if visit != nil {
				visit(r)
			}
		})
		if err != nil {
			return err
		}
		if torn != "" {
			l.log.Warn("dropping torn tail of the log", "file", path, "offset", good, "bytes", len(data)-good, "why", torn)
		}
		if isLast {
			// What Load returns must be durable. A process that died (or failed) before
			// fsyncing its last batch leaves those bytes in the page cache, where this
			// scan reads them; should the next roll leave them unsynced behind it, a
			// crash would cut them out of the middle of the log. Every segment but the
			// last was fsynced before the next one was created.
			if err := l.truncate(path, int64(good)); err != nil {
				return fmt.Errorf("disk: making the tail of the log durable: %w", err)
			}
		}
		size = int64(good)
	}
	l.first, l.last, l.size, l.synced, l.dirty = 0, 0, 0, 0, false
	if len(segs) > 0 {
		l.first, l.last, l.size, l.synced = segs[0], segs[len(segs)-1], size, size
		// The same for the segments' entries (a failed directory fsync, then a restart).
		if err := l.fs.SyncDir(l.dir); err != nil {
			return fmt.Errorf("disk: %w", err)
		}
	}
	l.ready = true
	return nil
}

// walkSegment checks every record of one segment and calls visit with each record's
// frame bounds (a compaction marker is checked but not visited). It returns the
// length of the good prefix and, when isLast and the rest is a torn tail, why. The
// rule (see the package doc) never guesses: only what a crash can leave at the end of
// the last segment is a torn tail, everything else is a *CorruptError.
func walkSegment(data []byte, path string, isLast bool, visit func(off, end int, r *node.Record)) (good int, torn string, err error) {
	corrupt := func(off int, format string, args ...any) (int, string, error) {
		return off, "", &CorruptError{Path: path, Offset: int64(off), Reason: fmt.Sprintf(format, args...)}
	}
	off := 0
	for off < len(data) {
		payload, n, status := nextFrame(data[off:])
		switch status {
		case frameShortHeader:
			if isLast {
				return off, "partial record header", nil
			}
			return corrupt(off, "partial record header at the end of a segment that is not the last")
		case frameBadHeader:
			if isLast && allZero(data[off:]) {
				return off, "zero-filled tail", nil
			}
			if off == 0 && isOldFrame(data) {
				return corrupt(off, "written by an older build (record format 1); this build reads format %d", recordVersion)
			}
			return corrupt(off, "record header checksum mismatch (a damaged length)")
		case frameBadLength:
			return corrupt(off, "record length %d is out of bounds (%d to %d)", binary.BigEndian.Uint32(data[off:]), minPayload, MaxRecordSize)
		case frameShortPayload:
			if isLast {
				return off, "record runs past the end of the file", nil
			}
			return corrupt(off, "record of %d bytes runs past the end of a segment that is not the last", binary.BigEndian.Uint32(data[off:]))
		case frameBadPayload:
			return corrupt(off, "payload checksum mismatch")
		}
		end := off + n
		r, marker, err := decodeRecord(payload)
		switch {
		case err != nil:
			return corrupt(off, "%v", err)
		case marker && off != 0:
			return corrupt(off, "compaction marker inside a segment")
		case !marker:
			visit(off, end, &r)
		}
		off = end
	}
	return off, "", nil
}

// isOldFrame reports whether data starts with a record framed as format 1 wrote it
// (length, payload CRC, payload starting with version 1), to name the cause.
func isOldFrame(data []byte) bool {
	if len(data) < 8 {
		return false
	}
	n := uint64(binary.BigEndian.Uint32(data))
	if n < minPayload || 8+n > uint64(len(data)) {
		return false
	}
	payload := data[8 : 8+n]
	return payload[0] == 1 && crc32.Checksum(payload, crcTable) == binary.BigEndian.Uint32(data[4:])
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// truncate cuts the file path to size (if it is longer) and fsyncs it.
func (l *Log) truncate(path string, size int64) error {
	f, err := l.fs.OpenAppend(path)
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// liveSegments lists the segments to read, in order. It deletes leftover temporary
// files and the segments a committed compaction replaced, and refuses gaps.
func (l *Log) liveSegments() ([]uint64, error) {
	names, err := l.fs.ReadDir(l.dir)
	if err != nil {
		return nil, fmt.Errorf("disk: %w", err)
	}
	var segs []uint64
	removed := false
	for _, name := range names {
		if strings.HasSuffix(name, ".tmp") {
			// An unfinished compaction: its rename never happened, the old set stands.
			l.log.Info("removing leftover temporary file", "file", name)
			if err := l.fs.Remove(filepath.Join(l.dir, name)); err != nil {
				return nil, fmt.Errorf("disk: %w", err)
			}
			removed = true
			continue
		}
		if num, ok := parseSegName(name); ok {
			segs = append(segs, num)
		}
	}
	slices.Sort(segs)
	for i := len(segs) - 1; i > 0; i-- {
		head, err := l.fs.ReadHead(l.segPath(segs[i]), len(markerFrame))
		if err != nil {
			return nil, fmt.Errorf("disk: %w", err)
		}
		if !bytes.Equal(head, markerFrame) {
			continue
		}
		// A compaction committed (renamed its output) but did not finish deleting.
		for _, old := range segs[:i] {
			l.log.Info("removing segment replaced by compaction", "file", segName(old))
			if err := l.fs.Remove(l.segPath(old)); err != nil {
				return nil, fmt.Errorf("disk: %w", err)
			}
		}
		segs, removed = segs[i:], true
		break
	}
	if removed {
		if err := l.fs.SyncDir(l.dir); err != nil {
			return nil, fmt.Errorf("disk: %w", err)
		}
	}
	for i := 1; i < len(segs); i++ {
		if segs[i] != segs[i-1]+1 {
			return nil, &CorruptError{Path: l.segPath(segs[i-1] + 1), Reason: fmt.Sprintf("segment missing between %s and %s", segName(segs[i-1]), segName(segs[i]))}
		}
	}
	return segs, nil
}

// parseSegName accepts exactly the names segName writes.
func parseSegName(name string) (uint64, bool) {
	digits, ok := strings.CutSuffix(name, ".log")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	if err != nil || n == 0 || segName(n) != name {
		return 0, false
	}
	return n, true
}

// Compact rewrites the log keeping only the records of tasks for which keep returns
// true (keep is called once per task ID, on the caller's goroutine, in log order).
//
// It is serialized with the writer internally: it waits for the batch being written,
// and the writer waits for it. Append and Sync keep working meanwhile: what they add
// stays pending and is written after the compacted records, whatever keep says (so a
// Sync requested during Compact completes only after it). The caller may therefore
// call it from any goroutine at any time; calling it from the node's goroutine, with
// keep reading the node's state, is the intended use (the node waits for the rewrite).
// keep must not call Compact, Load or Close. While Err is not nil (a sticky error, or
// writes being retried) Compact does nothing and returns that error.
//
// Crash safety: the kept records are written, after a compaction marker, to
// NNNNNNNN.log.tmp (NNNNNNNN one above the highest segment) and fsynced; the file is
// renamed to NNNNNNNN.log and the directory fsynced (the commit point); then the old
// segments are deleted. Load deletes *.tmp files (before the commit point the old set
// stands) and every segment below the highest one that starts with a marker (after
// it, the new set stands). The compacted records go into one segment whatever their
// size; appends then continue in the next.
func (l *Log) Compact(keep func(taskID string) bool) error {
	decided := make(map[string]bool)
	return l.CompactRecords(func(r *node.Record) bool {
		id := recordTaskID(r)
		k, ok := decided[id]
		if !ok {
			k = keep(id)
			decided[id] = k
		}
		return k
	})
}

// CompactRecords is Compact deciding record by record: it keeps the records for
// which keep returns true (called once per record, in log order). The node's
// node.CompactionPolicy is such a keep: it also drops the records that newer ones
// superseded (old queue settings, old forget marks), which are about no task.
func (l *Log) CompactRecords(keep func(r *node.Record) bool) error {
	l.io.Lock()
	defer l.io.Unlock()
	if l.closedIO {
		return ErrClosed
	}
	if err := l.Err(); err != nil {
		return err
	}
	if !l.ready {
		if err := l.scan(nil); err != nil {
			return err
		}
	}
	if l.f != nil {
		if l.dirty {
			if err := l.fsync(); err != nil {
				return l.fail(fmt.Errorf("disk: compact: %w", err))
			}
		}
		if err := l.f.Close(); err != nil {
			return l.fail(fmt.Errorf("disk: compact: %w", err))
		}
		l.f = nil // reopened by the writer after the swap
	}
	num := l.last + 1
	final := l.segPath(num)
	tmp := final + ".tmp"
	size, kept, dropped, err := l.writeCompacted(tmp, keep)
	if err != nil {
		l.fs.Remove(tmp)
		return fmt.Errorf("disk: compact: %w", err)
	}
	if err := l.fs.Rename(tmp, final); err != nil {
		l.fs.Remove(tmp)
		return fmt.Errorf("disk: compact: %w", err)
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		// Whether the rename is durable is unknown: stop writing, like any IO error.
		return l.fail(fmt.Errorf("disk: compact: %w", err))
	}
	old := l.first
	l.first, l.last, l.size, l.synced, l.dirty = num, num, size, size, false
	l.compactions.Add(1)
	for n := old; n != 0 && n < num; n++ {
		if err := l.fs.Remove(l.segPath(n)); err != nil {
			// Harmless: Load removes it, the new segment starts with a marker.
			l.log.Warn("compaction could not remove an old segment", "file", segName(n), "err", err)
		}
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		l.log.Warn("compaction could not sync the directory after removals", "err", err)
	}
	l.log.Info("log compacted", "segment", segName(num), "bytes", size, "records_kept", kept, "records_dropped", dropped)
	return nil
}

// writeCompacted writes the marker and the kept records of every live segment to
// path and fsyncs it.
func (l *Log) writeCompacted(path string, keep func(*node.Record) bool) (size int64, kept, dropped int, err error) {
	// A leftover of a failed compaction whose removal failed too.
	if err := l.fs.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, 0, 0, err
	}
	f, err := l.fs.Create(path)
	if err != nil {
		return 0, 0, 0, err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	w := bufio.NewWriterSize(f, 64<<10) // large writes, without a megabyte to clear per compaction
	w.Write(markerFrame)
	size = int64(len(markerFrame))
	for n := l.first; n != 0 && n <= l.last; n++ {
		segPath := l.segPath(n)
		data, err := l.fs.ReadFile(segPath)
		if err != nil {
			return 0, 0, 0, err
		}
		_, torn, err := walkSegment(data, segPath, false, func(off, end int, r *node.Record) {
			if !keep(r) {
				dropped++
				return
			}
			kept++
			w.Write(data[off:end])
			size += int64(end - off)
		})
		if err != nil {
			return 0, 0, 0, err
		}
		if torn != "" {
			panic("disk: walkSegment reported a torn tail outside the last segment")
		}
	}
	if err := w.Flush(); err != nil {
		return 0, 0, 0, err
	}
	if err := f.Sync(); err != nil {
		return 0, 0, 0, err
	}
	l.fsyncs.Add(1)
	return size, kept, dropped, nil
}
