package vfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"syscall"
)

// Op names an operation of Mem, for an injector (see Mem.SetInjector).
type Op string

// The operations an injector is consulted on, and the path it is given.
const (
	OpCreate   Op = "create"   // FS.Create: the new file's path
	OpOpen     Op = "open"     // FS.OpenAppend
	OpWrite    Op = "write"    // File.Write: the path the file was opened by
	OpTruncate Op = "truncate" // File.Truncate
	OpSync     Op = "sync"     // File.Sync
	OpClose    Op = "close"    // File.Close (the handle is closed whatever the injector says)
	OpRead     Op = "read"     // FS.ReadFile and FS.ReadHead
	OpReadDir  Op = "readdir"  // FS.ReadDir: the directory
	OpRemove   Op = "remove"   // FS.Remove
	OpRename   Op = "rename"   // FS.Rename: the old path
	OpMkdir    Op = "mkdir"    // FS.Mkdir
	OpSyncDir  Op = "syncdir"  // FS.SyncDir: the directory
	OpLock     Op = "lock"     // FS.Lock: the lock file
)

// ShortWrite, returned by an injector for OpWrite, makes that Write store the first N
// bytes of its buffer (clamped to 0..len) and then fail with Err (io.ErrShortWrite
// when nil): a write that ran out of space part way, as ENOSPC does. Any other error
// an injector returns fails its operation before it does anything.
type ShortWrite struct {
	N   int
	Err error
}

func (e *ShortWrite) Error() string { return fmt.Sprintf("short write of %d bytes: %v", e.N, e.Err) }
func (e *ShortWrite) Unwrap() error { return e.Err }

// ErrCrashed is the error of every operation on a File (or lock) obtained before the
// last Mem.Crash: the process that held it is gone.
var ErrCrashed = errors.New("vfs: file handle from before a crash")

// Mem is an in-memory file system that can crash, for the simulator and for tests.
// It models a journaling file system without auto_da_alloc (ext4 data=ordered):
//
//   - A file's content is durable up to its last Sync: Mem keeps, per file, the bytes
//     written (what reads see) and the content as of its last successful Sync.
//   - A directory's entries (a file or directory created, renamed or removed in it)
//     are durable only after SyncDir of that directory. A renamed file's content is
//     the file's own: renaming does not sync it.
//   - A Sync that fails (the injector returned an error) drops the file's unsynced
//     bytes as Linux does after a writeback error: reads still see them, but the
//     disk holds zeros in their place and no later Sync writes them.
//   - Crash reverts everything to the durable state: a file whose entry was not
//     durable vanishes (a removed one whose removal was not durable comes back), and
//     each surviving file keeps its synced content plus, when the tear function says
//     so, a prefix of what was written after it (a torn write). A Truncate below the
//     synced length is undone by a crash unless a Sync followed it.
//
// Faults are injected by a function consulted before every operation (SetInjector);
// silent corruption by FlipBit. Mem is deterministic: ReadDir is sorted and Crash
// visits files in path order, so a seeded tear function gives the same result every
// run.
//
// Paths are slash-separated; a relative path is taken from the root "/", which always
// exists. Every method is safe for concurrent use; the injector, the sync observer
// and the tear function are called without Mem's lock held except tear (called
// inside Crash), which must not call Mem.
type Mem struct {
	mu      sync.Mutex
	root    *memNode
	gen     uint64 // bumped by Crash: handles of an older generation are dead
	locks   map[*memNode]bool
	inject  func(op Op, path string) error
	observe func(path string, durable []byte, from int)
}

var _ FS = (*Mem)(nil)

// memNode is a file or a directory (an inode: renames move it between entries).
type memNode struct {
	dir bool

	// Files. Invariant: dirtyFrom <= min(len(data), len(durable)); data and durable
	// never share an array. The next Sync makes durable[:dirtyFrom] ++ data[dirtyFrom:]
	// durable; durable[:dirtyFrom] equals data[:dirtyFrom] unless a failed Sync dropped
	// dirty pages.
	data      []byte // what reads see (the page cache)
	durable   []byte // what the disk holds: the content as of the last Sync
	dirtyFrom int    // the lowest offset changed since the last Sync

	// Directories.
	entries        map[string]*memNode // what lookups see
	durableEntries map[string]*memNode // as of the last SyncDir
}

func newDir() *memNode {
	return &memNode{dir: true, entries: map[string]*memNode{}, durableEntries: map[string]*memNode{}}
}

// NewMem returns an empty Mem: a root directory and nothing else.
func NewMem() *Mem { return &Mem{root: newDir(), locks: map[*memNode]bool{}} }

// SetInjector makes inject consulted before every operation (see Op for the path it
// gets). A non-nil error fails the operation, which then does nothing, wrapped in an
// *fs.PathError (so errors.Is(err, syscall.ENOSPC) holds when inject returned
// ENOSPC); a *ShortWrite for OpWrite writes part of the buffer first. nil removes it.
func (m *Mem) SetInjector(inject func(op Op, path string) error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.inject = inject
}

// SetSyncObserver makes observe called after every File.Sync that changed a file's
// durable content, with the path the file was opened by, its whole durable content
// and the offset from which it is new: bytes [from, len(durable)) were made durable
// by this Sync (from == len(durable) when the Sync only made a truncation durable).
// durable belongs to Mem: read it during the call, do not keep or modify it. The
// durability of the file's directory entry is separate (see SyncDir, DurableBytes).
func (m *Mem) SetSyncObserver(observe func(path string, durable []byte, from int)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.observe = observe
}

// Crash reverts the file system to its durable state, as a power loss would: see the
// type's doc. For each surviving file that has unsynced bytes past its synced
// content, tear (when not nil) is called with the file's path and the number of such
// bytes, in path order, and the file keeps the first tear(...) of them (clamped to
// 0..unsynced); with a nil tear, unsynced bytes are all lost. Every File and lock
// obtained before the Crash is dead (ErrCrashed); the locks are free.
func (m *Mem) Crash(tear func(path string, unsynced int) int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gen++
	m.locks = map[*memNode]bool{}
	m.root = crashNode(m.root, "/", tear, map[*memNode]*memNode{})
}

func crashNode(n *memNode, p string, tear func(string, int) int, done map[*memNode]*memNode) *memNode {
	if c, ok := done[n]; ok {
		return c // one inode under two durable names (a rename across directories)
	}
	if n.dir {
		c := newDir()
		done[n] = c
		for _, name := range slices.Sorted(maps.Keys(n.durableEntries)) {
			child := crashNode(n.durableEntries[name], path.Join(p, name), tear, done)
			c.entries[name], c.durableEntries[name] = child, child
		}
		return c
	}
	content := slices.Clone(n.durable)
	if unsynced := len(n.data) - len(n.durable); unsynced > 0 && tear != nil {
		k := min(max(tear(p, unsynced), 0), unsynced)
		content = append(content, n.data[len(n.durable):len(n.durable)+k]...)
	}
	c := &memNode{data: content, durable: slices.Clone(content), dirtyFrom: len(content)}
	done[n] = c
	return c
}

// Kill is the death of the process using the file system, without a power loss:
// every File and lock obtained before it is dead (ErrCrashed) and the locks are free,
// but nothing is lost: written bytes stay in the page cache, unsynced, as they are.
func (m *Mem) Kill() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gen++
	m.locks = map[*memNode]bool{}
}

// FlipBit flips bit (0..7) of the byte at off of the file name, in what reads see and
// in its durable content alike: silent corruption that a crash does not undo.
func (m *Mem) FlipBit(name string, off int64, bit uint) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.walk("flipbit", name)
	if err != nil {
		return err
	}
	if n.dir || bit > 7 || off < 0 {
		return &fs.PathError{Op: "flipbit", Path: name, Err: syscall.EINVAL}
	}
	flipped := false
	for _, b := range [][]byte{n.data, n.durable} {
		if off < int64(len(b)) {
			b[off] ^= 1 << bit
			flipped = true
		}
	}
	if !flipped {
		return &fs.PathError{Op: "flipbit", Path: name, Err: fmt.Errorf("offset %d is past the end", off)}
	}
	return nil
}

// DurableBytes returns what name would hold after a Crash(nil) now: its synced
// content, when every directory entry on its path is durable. ok is false when the
// file would not exist.
func (m *Mem) DurableBytes(name string) (content []byte, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.root
	for _, c := range components(name) {
		if !n.dir {
			return nil, false
		}
		if n = n.durableEntries[c]; n == nil {
			return nil, false
		}
	}
	if n.dir {
		return nil, false
	}
	return slices.Clone(n.durable), true
}

// MkdirAll creates dir and its missing parents, durably at once (no injector, no
// SyncDir needed): a setup helper for tests and the simulator, not part of FS.
func (m *Mem) MkdirAll(dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.root
	for _, c := range components(dir) {
		child := n.entries[c]
		if child == nil {
			child = newDir()
			n.entries[c] = child
		}
		if !child.dir {
			return &fs.PathError{Op: "mkdir", Path: dir, Err: syscall.ENOTDIR}
		}
		n.durableEntries[c] = child
		n = child
	}
	return nil
}

// components splits a path into its names below the root.
func components(name string) []string {
	p := path.Clean("/" + name)
	if p == "/" {
		return nil
	}
	return strings.Split(p[1:], "/")
}

// walk finds name's node. m.mu is held.
func (m *Mem) walk(op, name string) (*memNode, error) {
	n := m.root
	for _, c := range components(name) {
		if !n.dir {
			return nil, &fs.PathError{Op: op, Path: name, Err: syscall.ENOTDIR}
		}
		if n = n.entries[c]; n == nil {
			return nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
		}
	}
	return n, nil
}

// parent finds name's directory and name's last component. m.mu is held.
func (m *Mem) parent(op, name string) (*memNode, string, error) {
	cs := components(name)
	if len(cs) == 0 {
		return nil, "", &fs.PathError{Op: op, Path: name, Err: syscall.EINVAL}
	}
	d, err := m.walk(op, path.Join(cs[:len(cs)-1]...))
	if err != nil {
		return nil, "", &fs.PathError{Op: op, Path: name, Err: errors.Unwrap(err)}
	}
	if !d.dir {
		return nil, "", &fs.PathError{Op: op, Path: name, Err: syscall.ENOTDIR}
	}
	return d, cs[len(cs)-1], nil
}

// fault consults the injector, without holding m.mu.
func (m *Mem) fault(op Op, name string) error {
	m.mu.Lock()
	inject := m.inject
	m.mu.Unlock()
	if inject == nil {
		return nil
	}
	return inject(op, name)
}

func (m *Mem) Create(name string) (File, error) {
	if err := m.fault(OpCreate, name); err != nil {
		return nil, &fs.PathError{Op: string(OpCreate), Path: name, Err: err}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	d, base, err := m.parent(string(OpCreate), name)
	if err != nil {
		return nil, err
	}
	if d.entries[base] != nil {
		return nil, &fs.PathError{Op: string(OpCreate), Path: name, Err: fs.ErrExist}
	}
	n := &memNode{}
	d.entries[base] = n
	return &memFile{m: m, n: n, name: name, gen: m.gen}, nil
}

func (m *Mem) OpenAppend(name string) (File, error) {
	if err := m.fault(OpOpen, name); err != nil {
		return nil, &fs.PathError{Op: string(OpOpen), Path: name, Err: err}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.walk(string(OpOpen), name)
	if err != nil {
		return nil, err
	}
	if n.dir {
		return nil, &fs.PathError{Op: string(OpOpen), Path: name, Err: syscall.EISDIR}
	}
	return &memFile{m: m, n: n, name: name, gen: m.gen}, nil
}

func (m *Mem) ReadFile(name string) ([]byte, error) { return m.read(name, -1) }

func (m *Mem) ReadHead(name string, n int) ([]byte, error) { return m.read(name, max(n, 0)) }

func (m *Mem) read(name string, limit int) ([]byte, error) {
	if err := m.fault(OpRead, name); err != nil {
		return nil, &fs.PathError{Op: string(OpRead), Path: name, Err: err}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.walk(string(OpRead), name)
	if err != nil {
		return nil, err
	}
	if n.dir {
		return nil, &fs.PathError{Op: string(OpRead), Path: name, Err: syscall.EISDIR}
	}
	b := n.data
	if limit >= 0 && limit < len(b) {
		b = b[:limit]
	}
	return slices.Clone(b), nil
}

func (m *Mem) ReadDir(dir string) ([]string, error) {
	if err := m.fault(OpReadDir, dir); err != nil {
		return nil, &fs.PathError{Op: string(OpReadDir), Path: dir, Err: err}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.walk(string(OpReadDir), dir)
	if err != nil {
		return nil, err
	}
	if !n.dir {
		return nil, &fs.PathError{Op: string(OpReadDir), Path: dir, Err: syscall.ENOTDIR}
	}
	return slices.Sorted(maps.Keys(n.entries)), nil
}

func (m *Mem) Remove(name string) error {
	if err := m.fault(OpRemove, name); err != nil {
		return &fs.PathError{Op: string(OpRemove), Path: name, Err: err}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	d, base, err := m.parent(string(OpRemove), name)
	if err != nil {
		return err
	}
	n := d.entries[base]
	switch {
	case n == nil:
		return &fs.PathError{Op: string(OpRemove), Path: name, Err: fs.ErrNotExist}
	case n.dir && len(n.entries) > 0:
		return &fs.PathError{Op: string(OpRemove), Path: name, Err: syscall.ENOTEMPTY}
	}
	delete(d.entries, base)
	return nil
}

func (m *Mem) Rename(oldname, newname string) error {
	if err := m.fault(OpRename, oldname); err != nil {
		return &os.LinkError{Op: string(OpRename), Old: oldname, New: newname, Err: err}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	od, obase, err := m.parent(string(OpRename), oldname)
	if err != nil {
		return err
	}
	nd, nbase, err := m.parent(string(OpRename), newname)
	if err != nil {
		return err
	}
	n := od.entries[obase]
	if n == nil {
		return &os.LinkError{Op: string(OpRename), Old: oldname, New: newname, Err: fs.ErrNotExist}
	}
	if to := nd.entries[nbase]; to != nil && to != n && (to.dir || n.dir) {
		return &os.LinkError{Op: string(OpRename), Old: oldname, New: newname, Err: syscall.EEXIST}
	}
	delete(od.entries, obase)
	nd.entries[nbase] = n
	return nil
}

func (m *Mem) Mkdir(name string) error {
	if err := m.fault(OpMkdir, name); err != nil {
		return &fs.PathError{Op: string(OpMkdir), Path: name, Err: err}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	d, base, err := m.parent(string(OpMkdir), name)
	if err != nil {
		return err
	}
	if d.entries[base] != nil {
		return &fs.PathError{Op: string(OpMkdir), Path: name, Err: fs.ErrExist}
	}
	d.entries[base] = newDir()
	return nil
}

func (m *Mem) SyncDir(dir string) error {
	if err := m.fault(OpSyncDir, dir); err != nil {
		return &fs.PathError{Op: string(OpSyncDir), Path: dir, Err: err}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.walk(string(OpSyncDir), dir)
	if err != nil {
		return err
	}
	if !n.dir {
		return &fs.PathError{Op: string(OpSyncDir), Path: dir, Err: syscall.ENOTDIR}
	}
	n.durableEntries = maps.Clone(n.entries)
	return nil
}

func (m *Mem) Lock(name string) (io.Closer, error) {
	if err := m.fault(OpLock, name); err != nil {
		return nil, &fs.PathError{Op: string(OpLock), Path: name, Err: err}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	d, base, err := m.parent(string(OpLock), name)
	if err != nil {
		return nil, err
	}
	n := d.entries[base]
	if n == nil {
		n = &memNode{}
		d.entries[base] = n
	}
	if n.dir {
		return nil, &fs.PathError{Op: string(OpLock), Path: name, Err: syscall.EISDIR}
	}
	if m.locks[n] {
		return nil, &LockedError{Path: name}
	}
	m.locks[n] = true
	return &memLock{m: m, n: n, gen: m.gen}, nil
}

type memLock struct {
	m      *Mem
	n      *memNode
	gen    uint64
	closed bool
}

func (l *memLock) Close() error {
	l.m.mu.Lock()
	defer l.m.mu.Unlock()
	if !l.closed && l.gen == l.m.gen {
		delete(l.m.locks, l.n)
	}
	l.closed = true
	return nil
}

// memFile is an open File. Every write appends (O_APPEND).
type memFile struct {
	m      *Mem
	n      *memNode
	name   string
	gen    uint64
	closed bool
}

var _ File = (*memFile)(nil)

// usable reports why the handle cannot be used. m.mu is held.
func (f *memFile) usable(op Op) error {
	switch {
	case f.closed:
		return &fs.PathError{Op: string(op), Path: f.name, Err: fs.ErrClosed}
	case f.gen != f.m.gen:
		return &fs.PathError{Op: string(op), Path: f.name, Err: ErrCrashed}
	}
	return nil
}

func (f *memFile) Write(p []byte) (int, error) {
	n, err := len(p), f.m.fault(OpWrite, f.name)
	if err != nil {
		n = 0
		var sw *ShortWrite
		if errors.As(err, &sw) {
			n = min(max(sw.N, 0), len(p))
			if err = sw.Err; err == nil {
				err = io.ErrShortWrite
			}
		}
		err = &fs.PathError{Op: string(OpWrite), Path: f.name, Err: err}
	}
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if uerr := f.usable(OpWrite); uerr != nil {
		return 0, uerr
	}
	node := f.n
	node.dirtyFrom = min(node.dirtyFrom, len(node.data))
	node.data = append(node.data, p[:n]...)
	return n, err
}

func (f *memFile) Truncate(size int64) error {
	if err := f.m.fault(OpTruncate, f.name); err != nil {
		return &fs.PathError{Op: string(OpTruncate), Path: f.name, Err: err}
	}
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if err := f.usable(OpTruncate); err != nil {
		return err
	}
	if size < 0 {
		return &fs.PathError{Op: string(OpTruncate), Path: f.name, Err: syscall.EINVAL}
	}
	node := f.n
	if cur := int64(len(node.data)); size < cur {
		node.data = node.data[:size]
		node.dirtyFrom = min(node.dirtyFrom, int(size))
	} else if size > cur {
		node.dirtyFrom = min(node.dirtyFrom, len(node.data))
		node.data = append(node.data, make([]byte, size-cur)...)
	}
	return nil
}

func (f *memFile) Sync() error {
	if err := f.m.fault(OpSync, f.name); err != nil {
		f.m.mu.Lock()
		if f.usable(OpSync) == nil {
			// As Linux after a writeback error: the dirty pages are marked clean. Reads
			// still see them, the disk never gets them (zeros there), and no later Sync
			// writes them: a writer that retries an fsync is caught by the next crash.
			// Past the end of data, the disk keeps what it had: a failed Sync makes
			// no truncation durable.
			node := f.n
			dropped := slices.Concat(node.durable[:node.dirtyFrom], make([]byte, len(node.data)-node.dirtyFrom))
			if len(node.durable) > len(node.data) {
				dropped = append(dropped, node.durable[len(node.data):]...)
			}
			node.durable, node.dirtyFrom = dropped, len(node.data)
		}
		f.m.mu.Unlock()
		return &fs.PathError{Op: string(OpSync), Path: f.name, Err: err}
	}
	f.m.mu.Lock()
	if err := f.usable(OpSync); err != nil {
		f.m.mu.Unlock()
		return err
	}
	node := f.n
	from := node.dirtyFrom
	changed := from < len(node.data) || len(node.durable) != len(node.data)
	node.durable = append(node.durable[:from], node.data[from:]...)
	node.dirtyFrom = len(node.data)
	observe, durable := f.m.observe, node.durable
	f.m.mu.Unlock()
	if changed && observe != nil {
		observe(f.name, durable, from)
	}
	return nil
}

func (f *memFile) Close() error {
	err := f.m.fault(OpClose, f.name)
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if uerr := f.usable(OpClose); uerr != nil {
		return uerr
	}
	f.closed = true
	if err != nil {
		return &fs.PathError{Op: string(OpClose), Path: f.name, Err: err}
	}
	return nil
}
