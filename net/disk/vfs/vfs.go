// Package vfs is the file-system seam of net/disk: the few file operations the log
// performs, behind an interface, so that the same log code runs over the real disk
// (OS) in the daemon and over a crashable in-memory file system (Mem) in the
// simulator and in tests.
//
// The interface is as narrow as the log's needs: create a new file, open an existing
// one for appending, read a whole file or its first bytes, list a directory, remove,
// rename, make a directory, fsync a file or a directory, and take a directory's
// exclusive lock. Every File writes at the end of the file (O_APPEND), so a writer
// never seeks; Truncate then Write continues at the new end.
//
// What this package must never do: buffer writes on its own (a File's Write reaches
// the OS, or Mem's page cache, before it returns), report an fsync as successful when
// it was not, or, in Mem, let the order of a map reach an output (ReadDir is sorted
// and Crash visits files in path order) — the simulator replays runs from a seed.
package vfs

import (
	"errors"
	"fmt"
	"io"
)

// FS is what net/disk does with a file system. Names are paths as the caller builds
// them with path/filepath. Errors wrap the standard ones (fs.ErrNotExist,
// fs.ErrExist, syscall.Errno values such as ENOSPC), so errors.Is works on them.
type FS interface {
	// Create makes name a new, empty file open for writing. It fails (fs.ErrExist) if
	// name exists. The new entry is durable only after SyncDir of its directory.
	Create(name string) (File, error)
	// OpenAppend opens the existing file name for writing at its end.
	OpenAppend(name string) (File, error)
	// ReadFile returns the whole content of name; the caller owns the slice.
	ReadFile(name string) ([]byte, error)
	// ReadHead returns the first n bytes of name, or all of it when it is shorter.
	ReadHead(name string, n int) ([]byte, error)
	// ReadDir returns the names of dir's entries, sorted.
	ReadDir(dir string) ([]string, error)
	// Remove removes the file name (durable after SyncDir of its directory).
	Remove(name string) error
	// Rename renames oldname to newname, replacing a file there (durable after SyncDir
	// of both directories).
	Rename(oldname, newname string) error
	// Mkdir creates the directory name; its parent must exist. It fails (fs.ErrExist)
	// if name exists. The new entry is durable only after SyncDir of the parent.
	Mkdir(name string) error
	// SyncDir makes dir's entries (creations, renames, removals) durable.
	SyncDir(dir string) error
	// Lock takes the exclusive lock of the file name (created if missing) for this
	// process, without waiting. A lock held by another process fails with an error
	// matching ErrLocked. Close releases it; so does the death of the process.
	Lock(name string) (io.Closer, error)
}

// File is a file opened for writing by FS.Create or FS.OpenAppend. It is used by one
// goroutine at a time.
type File interface {
	// Write appends p. A short write returns the count written and an error.
	Write(p []byte) (int, error)
	// Truncate sets the file's size (bytes past it are gone; the next Write appends
	// there). Durable after Sync.
	Truncate(size int64) error
	// Sync makes the file's content durable (fsync). After an error, nothing is known
	// of what reached the disk, and a later Sync proves nothing about it.
	Sync() error
	Close() error
}

// ErrLocked is matched by the error of FS.Lock when another process holds the lock.
var ErrLocked = errors.New("vfs: locked by another process")

// LockedError is FS.Lock's error when another process holds the lock.
type LockedError struct {
	Path string
	PID  int // the holder's process id as it wrote it in the file, or 0 when unknown
}

func (e *LockedError) Error() string {
	if e.PID != 0 {
		return fmt.Sprintf("vfs: %s is locked by process %d", e.Path, e.PID)
	}
	return fmt.Sprintf("vfs: %s is locked by another process", e.Path)
}

// Is makes errors.Is(err, ErrLocked) true.
func (e *LockedError) Is(target error) bool { return target == ErrLocked }
