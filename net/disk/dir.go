package disk

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/miyamotohq/miyamoto/net/disk/vfs"
)

// File names in a data directory besides the segments.
const (
	// LockFile is held (flock, exclusive) by the process that has the log open, so that
	// two processes never append to one log. The kernel releases it when the process
	// dies, so a crash never leaves a stale lock behind.
	LockFile = "LOCK"
	// LostFile marks a log that may lack records it acknowledged before the time the
	// file names: a directory that held no segment when it was opened (new, or
	// wiped), or a log that Repair cut. While it exists, LostSince reports that time
	// and the node acts as one that forgot then (node.LossReporter). ForgetLoss
	// removes it once the node has waited.
	LostFile = "LOST"
)

const lostText = `This node's log may lack records it acknowledged before the time below (a new or
wiped directory, or a log cut by "miyamoto repair-log"). The node therefore acts as
one that forgot then: it refuses to grant what it may have granted before, until that
is safe. The node removes this file itself once the wait is over; do not remove it.
since: `

// lockDir takes dir's lock file, or fails naming the process that holds it.
func lockDir(fsys vfs.FS, dir string) (io.Closer, error) {
	path := filepath.Join(dir, LockFile)
	lock, err := fsys.Lock(path)
	if err != nil {
		var le *vfs.LockedError
		if errors.As(err, &le) {
			holder := ""
			if le.PID != 0 {
				holder = fmt.Sprintf(" (pid %d)", le.PID)
			}
			return nil, fmt.Errorf("disk: data directory %s is in use by another process%s: one directory per node", dir, holder)
		}
		return nil, fmt.Errorf("disk: locking %s: %w", path, err)
	}
	return lock, nil
}

// hasSegments reports whether dir holds at least one segment file.
func hasSegments(fsys vfs.FS, dir string) (bool, error) {
	names, err := fsys.ReadDir(dir)
	if err != nil {
		return false, fmt.Errorf("disk: %w", err)
	}
	for _, name := range names {
		if _, ok := parseSegName(name); ok {
			return true, nil
		}
	}
	return false, nil
}

// markLost records durably that the log may lack what it acknowledged before now. A
// LOST file already there is replaced when it names an earlier time: a new loss (a
// repair during a recovery wait) means records synced since that earlier time may be
// gone too, so the node must act as one that forgot now, not then. (A start that
// finds LOST and loses nothing more keeps its time: checkLost reads it.) The file is
// written aside and renamed, so a crash leaves the old one or the new one.
func markLost(fsys vfs.FS, dir string, now time.Time) error {
	path := filepath.Join(dir, LostFile)
	if b, err := fsys.ReadFile(path); err == nil {
		if since, ok := parseLost(b); ok && !since.Before(now) {
			return nil
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("disk: %w", err)
	}
	tmp := path + ".tmp"
	if err := fsys.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("disk: %w", err)
	}
	f, err := fsys.Create(tmp)
	if err != nil {
		return fmt.Errorf("disk: %w", err)
	}
	_, err = f.Write([]byte(lostText + now.Format(time.RFC3339Nano) + "\n"))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = fsys.Rename(tmp, path)
	}
	if err == nil {
		err = fsys.SyncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("disk: writing %s: %w", path, err)
	}
	return nil
}

// parseLost reads the time a LOST file names.
func parseLost(b []byte) (time.Time, bool) {
	_, text, _ := strings.Cut(string(b), "since: ")
	since, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(text))
	return since, err == nil
}

// checkLost decides at Open whether the log may lack acknowledged records, and since
// when, and makes that durable before anything is appended: a node that crashes
// during its wait must go on waiting when it comes back (but only until the same end:
// what it logged since is all there).
func checkLost(fsys vfs.FS, dir string, now func() time.Time) (since time.Time, lost bool, err error) {
	b, err := fsys.ReadFile(filepath.Join(dir, LostFile))
	if err == nil {
		// A time that does not parse (an edited file) is zero: the node's start, the
		// longer wait.
		since, _ = parseLost(b)
		return since, true, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		// Unreadable is not absent: guessing "not lost" could grant twice.
		return time.Time{}, false, fmt.Errorf("disk: %w", err)
	}
	has, err := hasSegments(fsys, dir)
	if err != nil || has {
		return time.Time{}, false, err
	}
	// No segment: a new directory, or one that was wiped. Nothing tells the two apart,
	// so treat it as wiped; for a new node the cost is one recovery wait.
	t := now()
	return t, true, markLost(fsys, dir, t)
}

// LostSince implements node.LossReporter: the time the LOST file names, while it
// exists (see LostFile).
func (l *Log) LostSince() (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lostSince, l.lost
}

// ForgetLoss removes the LOST file: the node has waited as a forgetful node must and
// holds no task it may have granted before, so the next start can trust the log.
func (l *Log) ForgetLoss() error {
	if _, lost := l.LostSince(); !lost {
		return nil
	}
	// l.mu is never held during IO (Append and Sync must not wait on a disk).
	if err := l.fs.Remove(filepath.Join(l.dir, LostFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("disk: %w", err)
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		return fmt.Errorf("disk: %w", err)
	}
	l.mu.Lock()
	l.lost = false
	l.mu.Unlock()
	return nil
}

// RepairReport says what Repair did. Repair destroys nothing: what it takes out of
// the log stays in the directory under a new name (a side file), which Load ignores.
type RepairReport struct {
	Cut      string     // the segment cut short ("" when none)
	Offset   int64      // where it was cut
	Dropped  int64      // bytes cut from Cut
	CutFile  string     // the side file holding those bytes, byte for byte ("" when none)
	SetAside []SetAside // whole segments after the damage, renamed, in order
}

// SetAside is a segment that Repair took out of the log whole.
type SetAside struct {
	Segment string // its name in the log
	File    string // its name now
}

// Repair makes a log that Load refuses loadable again, on the real file system, at
// the time now. See RepairFS.
func Repair(dir string) (RepairReport, error) { return RepairFS(vfs.OS, dir, time.Now) }

// RepairFS makes a log that Load refuses loadable again: it cuts the first damaged
// segment at the damaged record, takes every segment after it (and every segment after
// a missing one) out of the log, and writes the LOST file (naming now()), because what
// was cut may have been acknowledged. The node then restarts as one that forgot,
// which is safe; the other replicas still hold the tasks. The directory must not be in
// use.
//
// Nothing is destroyed, so that an operator can look at what was cut: the bytes cut
// from a segment are first written and fsynced to NNNNNNNN.log.cut-OFFSET, and the
// segments taken out are renamed to NNNNNNNN.log.cut (".2", ".3"... appended when the
// name is taken by an earlier repair). Load ignores these files; removing them is the
// operator's call.
func RepairFS(fsys vfs.FS, dir string, now func() time.Time) (RepairReport, error) {
	var rep RepairReport
	lock, err := lockDir(fsys, dir)
	if err != nil {
		return rep, err
	}
	defer lock.Close()
	l := &Log{fs: fsys, dir: dir, opts: Options{Now: now}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for range 3 { // a gap, then possibly a damaged record in what is left
		err := l.scan(nil)
		var ce *CorruptError
		if err == nil {
			break
		}
		if !errors.As(err, &ce) {
			return rep, err
		}
		if err := markLost(fsys, dir, now()); err != nil {
			return rep, err
		}
		num, ok := parseSegName(filepath.Base(ce.Path))
		if !ok {
			return rep, err
		}
		names, err := fsys.ReadDir(dir)
		if err != nil {
			return rep, fmt.Errorf("disk: %w", err)
		}
		data, err := fsys.ReadFile(ce.Path)
		switch {
		case err == nil: // not a missing segment: cut it
			side := freeName(names, fmt.Sprintf("%s.cut-%d", filepath.Base(ce.Path), ce.Offset))
			if err := writeDurably(fsys, dir, side, data[ce.Offset:]); err != nil {
				return rep, err
			}
			names = append(names, side)
			if err := l.truncate(ce.Path, ce.Offset); err != nil {
				return rep, fmt.Errorf("disk: %w", err)
			}
			rep.Cut, rep.Offset, rep.Dropped, rep.CutFile = filepath.Base(ce.Path), ce.Offset, int64(len(data))-ce.Offset, side
		case !errors.Is(err, fs.ErrNotExist):
			return rep, fmt.Errorf("disk: %w", err)
		}
		for _, name := range names {
			if n, ok := parseSegName(name); ok && n > num {
				to := freeName(names, name+".cut")
				if err := fsys.Rename(filepath.Join(dir, name), filepath.Join(dir, to)); err != nil {
					return rep, fmt.Errorf("disk: %w", err)
				}
				names = append(names, to)
				rep.SetAside = append(rep.SetAside, SetAside{Segment: name, File: to})
			}
		}
		if err := fsys.SyncDir(dir); err != nil {
			return rep, fmt.Errorf("disk: %w", err)
		}
	}
	if err := l.scan(nil); err != nil {
		return rep, err
	}
	return rep, nil
}

// freeName is name, or name.2, name.3, ... the first that is not in names.
func freeName(names []string, name string) string {
	free := name
	for i := 2; slices.Contains(names, free); i++ {
		free = fmt.Sprintf("%s.%d", name, i)
	}
	return free
}

// writeDurably writes data to the new file dir/name and makes it durable, entry
// included.
func writeDurably(fsys vfs.FS, dir, name string, data []byte) error {
	path := filepath.Join(dir, name)
	f, err := fsys.Create(path)
	if err != nil {
		return fmt.Errorf("disk: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = fsys.SyncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("disk: writing %s: %w", path, err)
	}
	return nil
}
