package disk

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
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
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("disk: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder := ""
		if b, rerr := os.ReadFile(path); rerr == nil {
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil {
				holder = fmt.Sprintf(" (pid %d)", pid)
			}
		}
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("disk: data directory %s is in use by another process%s: one directory per node", dir, holder)
		}
		return nil, fmt.Errorf("disk: locking %s: %w", path, err)
	}
	// The pid is only for the message above; the lock is the flock.
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

// hasSegments reports whether dir holds at least one segment file.
func hasSegments(dir string) (bool, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false, fmt.Errorf("disk: %w", err)
	}
	for _, e := range entries {
		if _, ok := parseSegName(e.Name()); ok {
			return true, nil
		}
	}
	return false, nil
}

// markLost writes the LOST file durably, naming now; a LOST file already there
// stands (its earlier time is the one that matters).
func markLost(dir string, now time.Time) error {
	path := filepath.Join(dir, LostFile)
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("disk: %w", err)
	}
	_, err = f.WriteString(lostText + now.Format(time.RFC3339Nano) + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("disk: writing %s: %w", path, err)
	}
	return nil
}

// checkLost decides at Open whether the log may lack acknowledged records, and since
// when, and makes that durable before anything is appended: a node that crashes
// during its wait must go on waiting when it comes back (but only until the same end:
// what it logged since is all there).
func checkLost(dir string) (since time.Time, lost bool, err error) {
	if b, err := os.ReadFile(filepath.Join(dir, LostFile)); err == nil {
		// A time that does not parse (an edited file) is zero: the node's start, the
		// longer wait.
		_, text, _ := strings.Cut(string(b), "since: ")
		since, _ = time.Parse(time.RFC3339Nano, strings.TrimSpace(text))
		return since, true, nil
	}
	has, err := hasSegments(dir)
	if err != nil || has {
		return time.Time{}, false, err
	}
	// No segment: a new directory, or one that was wiped. Nothing tells the two apart,
	// so treat it as wiped; for a new node the cost is one recovery wait.
	now := time.Now()
	return now, true, markLost(dir, now)
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
	if err := os.Remove(filepath.Join(l.dir, LostFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("disk: %w", err)
	}
	if err := syncDir(l.dir); err != nil {
		return fmt.Errorf("disk: %w", err)
	}
	l.mu.Lock()
	l.lost = false
	l.mu.Unlock()
	return nil
}

// RepairReport says what Repair did.
type RepairReport struct {
	Cut     string   // the segment cut short ("" when none)
	Offset  int64    // where it was cut
	Dropped int64    // bytes dropped from Cut
	Removed []string // whole segments removed after the damage
}

// Repair makes a log that Load refuses loadable again: it cuts the first damaged
// segment at the damaged record, removes every segment after it (and every segment
// after a missing one), and writes the LOST file, because what was cut may have been
// acknowledged. The node then restarts as one that forgot, which is safe; the other
// replicas still hold the tasks. The directory must not be in use.
func Repair(dir string) (RepairReport, error) {
	var rep RepairReport
	lock, err := lockDir(dir)
	if err != nil {
		return rep, err
	}
	defer lock.Close()
	l := &Log{dir: dir, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for range 3 { // a gap, then possibly a damaged record in what is left
		_, err := l.scan()
		var ce *CorruptError
		if err == nil {
			break
		}
		if !errors.As(err, &ce) {
			return rep, err
		}
		if err := markLost(dir, time.Now()); err != nil {
			return rep, err
		}
		num, ok := parseSegName(filepath.Base(ce.Path))
		if !ok {
			return rep, err
		}
		if st, statErr := os.Stat(ce.Path); statErr == nil {
			rep.Cut, rep.Offset, rep.Dropped = filepath.Base(ce.Path), ce.Offset, st.Size()-ce.Offset
			if err := truncate(ce.Path, ce.Offset); err != nil {
				return rep, err
			}
		}
		entries, rerr := os.ReadDir(dir)
		if rerr != nil {
			return rep, fmt.Errorf("disk: %w", rerr)
		}
		for _, e := range entries {
			if n, ok := parseSegName(e.Name()); ok && n > num {
				if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
					return rep, fmt.Errorf("disk: %w", err)
				}
				rep.Removed = append(rep.Removed, e.Name())
			}
		}
		if err := syncDir(dir); err != nil {
			return rep, fmt.Errorf("disk: %w", err)
		}
	}
	if _, err := l.scan(); err != nil {
		return rep, err
	}
	return rep, nil
}
