package vfs

import (
	"errors"
	"io/fs"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestConformance runs the same operations on OS and on Mem: they must agree.
func TestConformance(t *testing.T) {
	for _, c := range []struct {
		name string
		fs   FS
		dir  string
	}{
		{"os", OS, t.TempDir()},
		{"mem", NewMem(), "/data"},
	} {
		t.Run(c.name, func(t *testing.T) {
			fsys, dir := c.fs, c.dir
			if m, ok := fsys.(*Mem); ok {
				require.NoError(t, m.MkdirAll(dir))
			}
			p := func(name string) string { return filepath.Join(dir, name) }

			_, err := fsys.OpenAppend(p("a"))
			require.ErrorIs(t, err, fs.ErrNotExist)
			f, err := fsys.Create(p("a"))
			require.NoError(t, err)
			_, err = fsys.Create(p("a"))
			require.ErrorIs(t, err, fs.ErrExist, "Create is exclusive")
			n, err := f.Write([]byte("hello "))
			require.NoError(t, err)
			require.Equal(t, 6, n)
			require.NoError(t, f.Sync())
			require.NoError(t, f.Close())

			f, err = fsys.OpenAppend(p("a"))
			require.NoError(t, err)
			_, err = f.Write([]byte("world"))
			require.NoError(t, err)
			require.NoError(t, f.Truncate(8))
			_, err = f.Write([]byte("!")) // appends at the new end
			require.NoError(t, err)
			require.NoError(t, f.Close())
			b, err := fsys.ReadFile(p("a"))
			require.NoError(t, err)
			require.Equal(t, "hello wo!", string(b))
			b, err = fsys.ReadHead(p("a"), 4)
			require.NoError(t, err)
			require.Equal(t, "hell", string(b))
			b, err = fsys.ReadHead(p("a"), 100)
			require.NoError(t, err)
			require.Equal(t, "hello wo!", string(b))

			require.NoError(t, fsys.Mkdir(p("sub")))
			require.ErrorIs(t, fsys.Mkdir(p("sub")), fs.ErrExist)
			f, err = fsys.Create(p("c"))
			require.NoError(t, err)
			require.NoError(t, f.Close())
			require.NoError(t, fsys.Rename(p("c"), p("b")))
			names, err := fsys.ReadDir(dir)
			require.NoError(t, err)
			require.Equal(t, []string{"a", "b", "sub"}, names)
			require.NoError(t, fsys.Rename(p("b"), p("a")), "rename replaces a file")
			b, err = fsys.ReadFile(p("a"))
			require.NoError(t, err)
			require.Empty(t, b)
			require.NoError(t, fsys.Remove(p("a")))
			require.ErrorIs(t, fsys.Remove(p("a")), fs.ErrNotExist)
			require.NoError(t, fsys.SyncDir(dir))

			lock, err := fsys.Lock(p("LOCK"))
			require.NoError(t, err)
			_, err = fsys.Lock(p("LOCK"))
			require.ErrorIs(t, err, ErrLocked)
			require.NoError(t, lock.Close())
			lock, err = fsys.Lock(p("LOCK"))
			require.NoError(t, err)
			require.NoError(t, lock.Close())
		})
	}
}

func write(t *testing.T, f File, s string) {
	t.Helper()
	_, err := f.Write([]byte(s))
	require.NoError(t, err)
}

func content(t *testing.T, m *Mem, name string) string {
	t.Helper()
	b, err := m.ReadFile(name)
	require.NoError(t, err)
	return string(b)
}

func TestMemCrashEntries(t *testing.T) {
	m := NewMem()
	require.NoError(t, m.Mkdir("/d"))
	f, err := m.Create("/d/x")
	require.NoError(t, err)
	write(t, f, "abc")
	require.NoError(t, f.Sync())
	m.Crash(nil)
	_, err = m.ReadDir("/d")
	require.ErrorIs(t, err, fs.ErrNotExist, "a directory whose entry was never synced vanishes")

	require.NoError(t, m.Mkdir("/d"))
	require.NoError(t, m.SyncDir("/"))
	f, err = m.Create("/d/x")
	require.NoError(t, err)
	write(t, f, "abc")
	require.NoError(t, f.Sync())
	m.Crash(nil)
	names, err := m.ReadDir("/d")
	require.NoError(t, err)
	require.Empty(t, names, "a file whose entry was never synced vanishes, synced data or not")

	f, err = m.Create("/d/x")
	require.NoError(t, err)
	require.NoError(t, m.SyncDir("/d"))
	write(t, f, "abc")
	require.NoError(t, f.Sync())
	write(t, f, "def")
	m.Crash(nil)
	require.Equal(t, "abc", content(t, m, "/d/x"), "unsynced bytes are lost")
	_, err = f.Write([]byte("x"))
	require.ErrorIs(t, err, ErrCrashed)

	// A rename or a removal without SyncDir is undone.
	require.NoError(t, m.Rename("/d/x", "/d/y"))
	m.Crash(nil)
	names, _ = m.ReadDir("/d")
	require.Equal(t, []string{"x"}, names)
	require.NoError(t, m.Rename("/d/x", "/d/y"))
	require.NoError(t, m.SyncDir("/d"))
	require.NoError(t, m.Remove("/d/y"))
	m.Crash(nil)
	require.Equal(t, "abc", content(t, m, "/d/y"), "the removal was not synced")
	d, ok := m.DurableBytes("/d/y")
	require.True(t, ok)
	require.Equal(t, "abc", string(d))
	require.NoError(t, m.Remove("/d/y"))
	_, ok = m.DurableBytes("/d/y")
	require.True(t, ok, "still there after a crash")
	require.NoError(t, m.SyncDir("/d"))
	_, ok = m.DurableBytes("/d/y")
	require.False(t, ok)
}

func TestMemTornAndTruncate(t *testing.T) {
	m := NewMem()
	f, err := m.Create("x")
	require.NoError(t, err)
	require.NoError(t, m.SyncDir("/"))
	write(t, f, "0123456789")
	require.NoError(t, f.Sync())
	write(t, f, "abcdef")
	var asked []int
	m.Crash(func(path string, unsynced int) int {
		require.Equal(t, "/x", path)
		asked = append(asked, unsynced)
		return 2
	})
	require.Equal(t, []int{6}, asked)
	require.Equal(t, "0123456789ab", content(t, m, "x"), "a torn write keeps a prefix")

	// Everything that survived a crash is durable.
	m.Crash(func(string, int) int { t.Fatal("nothing is unsynced"); return 0 })
	require.Equal(t, "0123456789ab", content(t, m, "x"))

	// A truncation below the synced length is undone by a crash, unless synced.
	f, err = m.OpenAppend("x")
	require.NoError(t, err)
	require.NoError(t, f.Truncate(4))
	write(t, f, "XY")
	require.Equal(t, "0123XY", content(t, m, "x"))
	m.Crash(func(string, int) int { return 100 })
	require.Equal(t, "0123456789ab", content(t, m, "x"))
	f, err = m.OpenAppend("x")
	require.NoError(t, err)
	require.NoError(t, f.Truncate(4))
	write(t, f, "XY")
	var from int
	var durable string
	m.SetSyncObserver(func(path string, d []byte, fr int) { durable, from = string(d), fr })
	require.NoError(t, f.Sync())
	require.Equal(t, "0123XY", durable)
	require.Equal(t, 4, from, "bytes from the truncation point are new")
	m.Crash(nil)
	require.Equal(t, "0123XY", content(t, m, "x"))

	// The observer reports appends from the old end; a Sync with nothing new is silent.
	f, err = m.OpenAppend("x")
	require.NoError(t, err)
	write(t, f, "Z")
	require.NoError(t, f.Sync())
	require.Equal(t, "0123XYZ", durable)
	require.Equal(t, 6, from)
	durable = ""
	require.NoError(t, f.Sync())
	require.Empty(t, durable)
}

func TestMemTearOrderIsDeterministic(t *testing.T) {
	m := NewMem()
	for _, name := range []string{"c", "a", "b"} {
		require.NoError(t, m.MkdirAll("/d"+name))
		f, err := m.Create("/d" + name + "/f")
		require.NoError(t, err)
		require.NoError(t, m.SyncDir("/d"+name))
		write(t, f, "xx")
	}
	var order []string
	m.Crash(func(path string, _ int) int { order = append(order, path); return 1 })
	require.Equal(t, []string{"/da/f", "/db/f", "/dc/f"}, order)
}

func TestMemInjector(t *testing.T) {
	m := NewMem()
	f, err := m.Create("x")
	require.NoError(t, err)
	fail := map[Op]error{}
	var seen []string
	m.SetInjector(func(op Op, path string) error {
		seen = append(seen, string(op)+" "+path)
		return fail[op]
	})
	fail[OpWrite] = &ShortWrite{N: 3, Err: syscall.ENOSPC}
	n, err := f.Write([]byte("abcdef"))
	require.Equal(t, 3, n)
	require.ErrorIs(t, err, syscall.ENOSPC)
	require.Equal(t, "abc", content(t, m, "x"))
	fail[OpWrite] = syscall.ENOSPC
	n, err = f.Write([]byte("def"))
	require.Zero(t, n)
	require.ErrorIs(t, err, syscall.ENOSPC)
	fail[OpCreate] = syscall.EMFILE
	_, err = m.Create("y")
	require.ErrorIs(t, err, syscall.EMFILE)
	_, err = m.ReadFile("y")
	require.ErrorIs(t, err, fs.ErrNotExist, "a failed create does nothing")
	fail[OpSync] = syscall.EIO
	require.ErrorIs(t, f.Sync(), syscall.EIO)
	_, ok := m.DurableBytes("x")
	require.False(t, ok, "the entry was never synced")
	require.Equal(t, []string{"write x", "read x", "write x", "create y", "read y", "sync x"}, seen)
	m.SetInjector(nil)
	require.NoError(t, f.Sync())
}

func TestMemFlipBit(t *testing.T) {
	m := NewMem()
	f, err := m.Create("x")
	require.NoError(t, err)
	require.NoError(t, m.SyncDir("/"))
	write(t, f, "\x00\x00")
	require.NoError(t, f.Sync())
	require.NoError(t, m.FlipBit("x", 1, 7))
	require.Equal(t, "\x00\x80", content(t, m, "x"))
	m.Crash(nil)
	require.Equal(t, "\x00\x80", content(t, m, "x"), "silent corruption survives a crash")
	require.Error(t, m.FlipBit("x", 2, 0))
	require.Error(t, m.FlipBit("x", 0, 8))
}

func TestMemLockReleasedByCrash(t *testing.T) {
	m := NewMem()
	l, err := m.Lock("LOCK")
	require.NoError(t, err)
	_, err = m.Lock("LOCK")
	var le *LockedError
	require.True(t, errors.As(err, &le))
	m.Crash(nil)
	l2, err := m.Lock("LOCK")
	require.NoError(t, err, "the process that held it died")
	require.NoError(t, l.Close(), "closing a dead lock does not release the new one")
	_, err = m.Lock("LOCK")
	require.ErrorIs(t, err, ErrLocked)
	require.NoError(t, l2.Close())
}

// TestMemFailedSyncDropsDirtyPages: after a failed Sync the unsynced bytes are read
// back but never reach the disk, even if a later Sync succeeds.
func TestMemFailedSyncDropsDirtyPages(t *testing.T) {
	m := NewMem()
	f, err := m.Create("x")
	require.NoError(t, err)
	require.NoError(t, m.SyncDir("/"))
	write(t, f, "abc")
	require.NoError(t, f.Sync())
	write(t, f, "def")
	m.SetInjector(func(op Op, _ string) error {
		if op == OpSync {
			return syscall.EIO
		}
		return nil
	})
	require.ErrorIs(t, f.Sync(), syscall.EIO)
	m.SetInjector(nil)
	require.Equal(t, "abcdef", content(t, m, "x"), "the page cache still has them")
	require.NoError(t, f.Sync(), "a retried fsync succeeds...")
	d, _ := m.DurableBytes("x")
	require.Equal(t, "abc\x00\x00\x00", string(d), "...without writing them")
	write(t, f, "g")
	require.NoError(t, f.Sync())
	m.Crash(nil)
	require.Equal(t, "abc\x00\x00\x00g", content(t, m, "x"))
}

func TestMemKill(t *testing.T) {
	m := NewMem()
	_, err := m.Lock("LOCK")
	require.NoError(t, err)
	f, err := m.Create("x")
	require.NoError(t, err)
	require.NoError(t, m.SyncDir("/"))
	write(t, f, "abc")
	m.Kill()
	_, err = f.Write([]byte("d"))
	require.ErrorIs(t, err, ErrCrashed)
	l, err := m.Lock("LOCK")
	require.NoError(t, err, "the dead process's lock is free")
	require.NoError(t, l.Close())
	require.Equal(t, "abc", content(t, m, "x"), "the page cache survives")
	m.Crash(nil)
	require.Empty(t, content(t, m, "x"), "unsynced all along")
}
