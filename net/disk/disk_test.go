package disk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/node"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func utc(sec, nsec int64) time.Time { return time.Unix(sec, nsec).UTC() }

func fullTask(id string) *node.Task {
	return &node.Task{
		ID:          id,
		Queue:       "emails",
		Name:        "welcome-" + id,
		URL:         "http://worker.example:8080/send?x=1",
		Method:      "POST",
		Headers:     []node.Header{{Name: "X-B", Value: "2"}, {Name: "X-A", Value: "1"}, {}},
		ContentType: "application/x-www-form-urlencoded",
		Body:        []byte("to=a%40b.c&n=\x00\xff"),
		ETA:         utc(1_700_000_123, 456_789_000),
		Created:     utc(1_700_000_000, 1),
		Nonce:       0xdeadbeefcafe,
		Delivery:    node.AtMostOnce,
		Replicas:    []node.NodeID{"n3", "n1", "n2"},
	}
}

// taskRecords returns one record of every kind for task id, every field set.
func taskRecords(id string) []node.Record {
	return []node.Record{
		{Kind: node.RecTask, Task: fullTask(id), TaskID: id},
		{Kind: node.RecGrant, TaskID: id, Attempt: math.MaxUint64, Holder: "n1", Round: math.MaxUint64, LeaseEnd: utc(1_700_000_200, 7)},
		{Kind: node.RecRelease, TaskID: id, Attempt: 2, Holder: "n2", Round: 0x5eed, NextETA: utc(-5, 999_999_999), Retries: math.MinInt64, Failed: math.MaxUint64, FailedBits: math.MaxUint64, Status: 503},
		{Kind: node.RecOutcome, TaskID: id, Attempt: 3, State: node.StateCancelled, Retries: 4, Status: 200,
			LeaseEnd: time.Date(9999, 1, 2, 3, 4, 5, 6, time.UTC), NextETA: time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC)},
	}
}

// tlog is a Log under test with a node-like inbox: Post queues done functions, and
// the test goroutine runs them (it plays the node's goroutine).
type tlog struct {
	*Log
	t     *testing.T
	dir   string
	inbox chan func()
}

func openT(t *testing.T, dir string, opts Options) *tlog {
	t.Helper()
	tl := &tlog{t: t, dir: dir, inbox: make(chan func(), 100_000)}
	if opts.Post == nil {
		opts.Post = func(f func()) { tl.inbox <- f }
	}
	if opts.Logger == nil {
		opts.Logger = quiet
	}
	l, err := Open(dir, opts)
	require.NoError(t, err)
	tl.Log = l
	t.Cleanup(func() { l.Close() })
	return tl
}

// run runs n posted done functions, failing if they do not come in time.
func (tl *tlog) run(n int) {
	tl.t.Helper()
	for range n {
		select {
		case f := <-tl.inbox:
			f()
		case <-time.After(10 * time.Second):
			tl.t.Fatalf("a done function was not posted in time (err %v)", tl.Err())
		}
	}
}

// sync appends recs, syncs and waits for the done.
func (tl *tlog) sync(recs ...node.Record) {
	tl.t.Helper()
	tl.Append(recs...)
	ran := false
	tl.Sync(func() { ran = true })
	tl.run(1)
	require.True(tl.t, ran)
}

func (tl *tlog) load() []node.Record {
	tl.t.Helper()
	recs, err := tl.Load()
	require.NoError(tl.t, err)
	return recs
}

// segments lists the segment files of dir in order.
// segments lists dir's files but the lock and the LOST marker.
func segments(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		if e.Name() != LockFile && e.Name() != LostFile {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	return names
}

// framesOnDisk counts the whole, valid records in dir's segments without repairing
// anything (safe while the writer runs).
func framesOnDisk(dir string) int {
	entries, _ := os.ReadDir(dir)
	n := 0
	for _, e := range entries {
		if _, ok := parseSegName(e.Name()); !ok {
			continue
		}
		data, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		walkSegment(data, e.Name(), true, func(int, int, *node.Record) { n++ })
	}
	return n
}

func records(ids ...string) []node.Record {
	var recs []node.Record
	for _, id := range ids {
		recs = append(recs, taskRecords(id)...)
	}
	return recs
}

func TestRoundTripEveryKind(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, Options{})
	require.True(t, l.Durable())
	require.Empty(t, l.load())
	want := records("a", "b")
	// Odd values: empty task fields, a task on a non-task record.
	want = append(want,
		node.Record{Kind: node.RecTask, Task: &node.Task{ID: "c"}, TaskID: "c"},
		node.Record{Kind: node.RecOutcome, TaskID: "c", Task: fullTask("c"), State: node.StateSucceeded})
	l.sync(want[:3]...)
	l.sync(want[3:]...)
	require.Equal(t, want, l.load(), "Load on the open log")
	require.NoError(t, l.Close())

	l2 := openT(t, dir, Options{})
	require.Equal(t, want, l2.load(), "Load after reopening")
}

func TestAppendRefusesTaskRecordWithoutTask(t *testing.T) {
	l := openT(t, t.TempDir(), Options{})
	require.Panics(t, func() { l.Append(node.Record{Kind: node.RecTask, TaskID: "x"}) })
	require.Panics(t, func() { l.Append(node.Record{Kind: 0, TaskID: "x"}) })
}

func TestOptions(t *testing.T) {
	_, err := Open(t.TempDir(), Options{SegmentSize: -1})
	require.ErrorContains(t, err, "SegmentSize")
	require.ErrorContains(t, err, "Post is required")
	o, err := Options{Post: func(func()) {}}.withDefaults()
	require.NoError(t, err)
	require.EqualValues(t, DefaultSegmentSize, o.SegmentSize)
	require.NotNil(t, o.Logger)
}

func TestOpenCreatesDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	l := openT(t, dir, Options{})
	l.sync(records("x")...)
	require.Equal(t, []string{"00000001.log"}, segments(t, dir))
}

// TestGroupCommit holds the writer inside its first Post while 16 goroutines issue
// 800 Append+Sync pairs: they must all share one fsync, and every done must run
// exactly once, through Post, after its records are on disk.
func TestGroupCommit(t *testing.T) {
	dir := t.TempDir()
	gate := make(chan struct{})
	var posts atomic.Int64
	var l *tlog
	l = openT(t, dir, Options{Post: func(f func()) {
		if posts.Add(1) == 1 {
			<-gate
		}
		l.inbox <- f
	}})
	l.load()

	const workers, each = 16, 50
	calls := make([]int, 1+workers*each) // touched only by the test goroutine, via the inbox
	var appended atomic.Int64
	var onDisk int64 // records seen on disk; it only grows, so re-read only when short
	check := func(i int, k int64) func() {
		return func() {
			calls[i]++
			if onDisk < k {
				onDisk = int64(framesOnDisk(dir))
			}
			require.GreaterOrEqual(t, onDisk, k, "done %d ran before its records were on disk", i)
		}
	}
	l.Append(records("first")...)
	l.Sync(check(0, appended.Add(4)))
	require.Eventually(t, func() bool { return posts.Load() == 1 }, 10*time.Second, time.Millisecond)
	// The writer may have written "first" alone before its Sync came: count from here.
	first := l.Stats()
	require.EqualValues(t, 1, first.Fsyncs)

	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for j := range each {
				id := fmt.Sprintf("w%d-%d", w, j)
				l.Append(node.Record{Kind: node.RecTask, Task: fullTask(id), TaskID: id})
				l.Sync(check(1+w*each+j, appended.Add(1)))
			}
		})
	}
	wg.Wait()
	// Every Sync has returned; no done may have run or even been posted but the first.
	require.Len(t, l.inbox, 0)
	require.Equal(t, int64(1), posts.Load())
	require.Equal(t, make([]int, len(calls)), calls)

	close(gate)
	l.run(1) // the first batch's post, released by the gate
	l.run(1) // one post for the whole second group, not one per Sync
	for i, c := range calls {
		require.Equal(t, 1, c, "done %d", i)
	}
	st := l.Stats()
	require.EqualValues(t, len(calls), st.Syncs)
	require.EqualValues(t, 1, st.Fsyncs-first.Fsyncs, "everything queued behind the first batch shares one fsync")
	require.EqualValues(t, 1, st.Commits-first.Commits)
	require.Equal(t, 4+workers*each, framesOnDisk(dir))
	select {
	case <-l.inbox:
		t.Fatal("a done was posted twice")
	case <-time.After(20 * time.Millisecond):
	}
}

// TestSyncWithoutNewData: a Sync with nothing new to write still completes, and a
// Sync whose records were written by an earlier batch does not fsync again.
func TestSyncWithoutNewData(t *testing.T) {
	l := openT(t, t.TempDir(), Options{})
	l.load()
	l.Sync(func() {})
	l.run(1)
	require.EqualValues(t, 0, l.Stats().Fsyncs)
	l.sync(records("a")...)
	l.Sync(func() {})
	l.run(1)
	require.EqualValues(t, 1, l.Stats().Fsyncs)
}

func TestReopenAfterClose(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, Options{})
	l.load()
	l.sync(records("a")...)
	// Appended and synced but not waited for, and appended with no Sync at all: Close
	// writes both and runs the pending done.
	l.Append(records("b")...)
	ran := 0
	l.Sync(func() { ran++ })
	l.Append(records("c")...)
	require.NoError(t, l.Close())
	l.run(1)
	require.Equal(t, 1, ran)
	require.NoError(t, l.Close(), "Close twice")
	l.Append(records("d")...) // ignored
	l.Sync(func() { t.Error("done after Close") })
	_, err := l.Load()
	require.ErrorIs(t, err, ErrClosed)
	require.ErrorIs(t, l.Compact(func(string) bool { return true }), ErrClosed)

	l2 := openT(t, dir, Options{})
	require.Equal(t, records("a", "b", "c"), l2.load())
	l2.sync(records("e")...)
	require.NoError(t, l2.Close())
	l3 := openT(t, dir, Options{})
	require.Equal(t, records("a", "b", "c", "e"), l3.load())
}

// writeLog writes the records of the given tasks, one Sync per task, and closes.
func writeLog(t *testing.T, dir string, opts Options, ids ...string) {
	t.Helper()
	l := openT(t, dir, opts)
	l.load()
	for _, id := range ids {
		l.sync(records(id)...)
	}
	require.NoError(t, l.Close())
}

// recordOffsets returns the offset of every record in one segment file.
func recordOffsets(t *testing.T, path string) []int {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var offs []int
	_, _, err = walkSegment(data, path, false, func(off, _ int, _ *node.Record) { offs = append(offs, off) })
	require.NoError(t, err)
	return offs
}

func TestTornTail(t *testing.T) {
	good := records("a", "b")
	cases := []struct {
		name   string
		damage func(t *testing.T, path string) // the log holds good plus one task "c"
	}{
		{"truncated mid-record", func(t *testing.T, path string) {
			offs := recordOffsets(t, path)
			// Cut inside the first record of task c: everything of c is torn off.
			require.NoError(t, os.Truncate(path, int64(offs[len(good)]+11)))
		}},
		{"truncated in a header", func(t *testing.T, path string) {
			offs := recordOffsets(t, path)
			require.NoError(t, os.Truncate(path, int64(offs[len(good)]+5)))
		}},
		{"truncated after the length's check", func(t *testing.T, path string) {
			offs := recordOffsets(t, path)
			require.NoError(t, os.Truncate(path, int64(offs[len(good)]+9)))
		}},
		{"truncated right after a header", func(t *testing.T, path string) {
			offs := recordOffsets(t, path)
			require.NoError(t, os.Truncate(path, int64(offs[len(good)]+frameHeader)))
		}},
		{"zeros appended", func(t *testing.T, path string) {
			cutAfterGood(t, path, len(good))
			appendBytes(t, path, make([]byte, 4096))
		}},
		{"a few zeros appended", func(t *testing.T, path string) {
			cutAfterGood(t, path, len(good))
			appendBytes(t, path, make([]byte, 5))
		}},
		{"zeros after a torn record", func(t *testing.T, path string) {
			offs := recordOffsets(t, path)
			require.NoError(t, os.Truncate(path, int64(offs[len(good)])))
			appendBytes(t, path, make([]byte, 100))
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			writeLog(t, dir, Options{}, "a", "b", "c")
			path := filepath.Join(dir, "00000001.log")
			c.damage(t, path)

			l := openT(t, dir, Options{})
			require.Equal(t, good, l.load())
			fi, err := os.Stat(path)
			require.NoError(t, err)
			offs := recordOffsets(t, path) // the repaired file is clean
			require.Len(t, offs, len(good))
			require.Less(t, int64(offs[len(offs)-1]), fi.Size())

			l.sync(records("d")...)
			require.NoError(t, l.Close())
			l2 := openT(t, dir, Options{})
			require.Equal(t, records("a", "b", "d"), l2.load())
		})
	}
}

// TestTornTailRepairedWithoutLoad: the writer repairs the tail itself when it writes
// before anyone called Load.
func TestTornTailRepairedWithoutLoad(t *testing.T) {
	dir := t.TempDir()
	writeLog(t, dir, Options{}, "a")
	appendBytes(t, dir+"/00000001.log", []byte{0, 0, 1, 0, 9, 9})
	l := openT(t, dir, Options{})
	l.sync(records("b")...)
	require.NoError(t, l.Close())
	require.Equal(t, records("a", "b"), openT(t, dir, Options{}).load())
}

func cutAfterGood(t *testing.T, path string, n int) {
	t.Helper()
	offs := recordOffsets(t, path)
	if n < len(offs) {
		require.NoError(t, os.Truncate(path, int64(offs[n])))
	}
}

func appendBytes(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	require.NoError(t, err)
	_, err = f.Write(b)
	require.NoError(t, err)
	require.NoError(t, f.Close())
}

func flipBit(t *testing.T, path string, at int) {
	t.Helper()
	flipBitN(t, path, at, 4)
}

func flipBitN(t *testing.T, path string, at int, bit uint) {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	data[at] ^= 1 << bit
	require.NoError(t, os.WriteFile(path, data, 0o644))
}

// requireCorrupt checks that opening dir fails to load with a *CorruptError at path
// and off whose message contains why, and that nothing was truncated.
func requireCorrupt(t *testing.T, dir, path string, off int, why string) {
	t.Helper()
	before, err := os.ReadFile(path)
	require.NoError(t, err)
	l := openT(t, dir, Options{})
	recs, err := l.Load()
	require.Nil(t, recs)
	require.ErrorIs(t, err, ErrCorrupt)
	var ce *CorruptError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, path, ce.Path)
	require.EqualValues(t, off, ce.Offset)
	require.Contains(t, err.Error(), fmt.Sprintf("%s at offset %d: %s", path, off, why))
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, before, after, "nothing is truncated on corruption")
	require.NoError(t, l.Close())
}

func TestCorruption(t *testing.T) {
	t.Run("flipped bit in a middle record", func(t *testing.T) {
		dir := t.TempDir()
		writeLog(t, dir, Options{}, "a", "b", "c")
		path := filepath.Join(dir, "00000001.log")
		offs := recordOffsets(t, path)
		flipBit(t, path, offs[5]+frameHeader+7)
		requireCorrupt(t, dir, path, offs[5], "payload checksum mismatch")

		// The writer refuses too: a Sync never completes.
		l := openT(t, dir, Options{})
		l.Append(records("d")...)
		l.Sync(func() { t.Error("done ran on a corrupt log") })
		require.Eventually(t, func() bool { return l.Err() != nil }, 10*time.Second, time.Millisecond)
		require.ErrorIs(t, l.Err(), ErrCorrupt)
	})
	t.Run("flipped bit in the length of a middle record", func(t *testing.T) {
		dir := t.TempDir()
		writeLog(t, dir, Options{}, "a", "b")
		path := filepath.Join(dir, "00000001.log")
		offs := recordOffsets(t, path)
		flipBit(t, path, offs[2]+3) // a shorter length
		requireCorrupt(t, dir, path, offs[2], "record header checksum mismatch")
	})
	// The issue that brought the length its own check: the top bit of record 2's length
	// flipped in the last segment made the rest look like a record cut short, and Load
	// cut records 2 to 8 for good.
	t.Run("top bit of record 2's length in the last segment", func(t *testing.T) {
		dir := t.TempDir()
		writeLog(t, dir, Options{}, "a", "b") // 8 records
		path := filepath.Join(dir, "00000001.log")
		offs := recordOffsets(t, path)
		require.Len(t, offs, 8)
		flipBitN(t, path, offs[1], 7)
		requireCorrupt(t, dir, path, offs[1], "record header checksum mismatch")
	})
	t.Run("bad payload checksum in the final record", func(t *testing.T) {
		dir := t.TempDir()
		writeLog(t, dir, Options{}, "a", "b")
		path := filepath.Join(dir, "00000001.log")
		offs := recordOffsets(t, path)
		flipBit(t, path, offs[7]+frameHeader+3)
		requireCorrupt(t, dir, path, offs[7], "payload checksum mismatch")
	})
	t.Run("flipped payload checksum of the final record", func(t *testing.T) {
		dir := t.TempDir()
		writeLog(t, dir, Options{}, "a", "b")
		path := filepath.Join(dir, "00000001.log")
		offs := recordOffsets(t, path)
		flipBit(t, path, offs[7]+9)
		requireCorrupt(t, dir, path, offs[7], "payload checksum mismatch")
	})
	t.Run("garbage appended", func(t *testing.T) {
		dir := t.TempDir()
		writeLog(t, dir, Options{}, "a")
		path := filepath.Join(dir, "00000001.log")
		fi, err := os.Stat(path)
		require.NoError(t, err)
		appendBytes(t, path, []byte{0xff, 0xff, 0x00, 0x10, 1, 2, 3, 4, 5, 6, 7, 8, 9})
		requireCorrupt(t, dir, path, int(fi.Size()), "record header checksum mismatch")
	})
	t.Run("partial header whose length does not check out", func(t *testing.T) {
		dir := t.TempDir()
		writeLog(t, dir, Options{}, "a")
		path := filepath.Join(dir, "00000001.log")
		fi, err := os.Stat(path)
		require.NoError(t, err)
		appendBytes(t, path, []byte{0, 0, 0, 9, 1, 2, 3, 4, 5})
		requireCorrupt(t, dir, path, int(fi.Size()), "record header checksum mismatch")
	})
	t.Run("length over MaxRecordSize", func(t *testing.T) {
		dir := t.TempDir()
		writeLog(t, dir, Options{}, "a")
		path := filepath.Join(dir, "00000001.log")
		fi, err := os.Stat(path)
		require.NoError(t, err)
		// A header that checks out, then a payload that runs past the end: were the
		// length not bounded this would pass for a torn tail.
		h := binary.BigEndian.AppendUint32(nil, MaxRecordSize+1)
		h = binary.BigEndian.AppendUint32(h, crc32.Checksum(h, crcTable))
		appendBytes(t, path, append(h, 0, 0, 0, 0, 1, 2, 3))
		requireCorrupt(t, dir, path, int(fi.Size()), "record length 16777217 is out of bounds")
	})
	t.Run("torn record in a segment that is not the last", func(t *testing.T) {
		dir := t.TempDir()
		writeLog(t, dir, Options{SegmentSize: 300}, "a", "b", "c", "d")
		segs := segments(t, dir)
		require.Greater(t, len(segs), 2)
		path := filepath.Join(dir, segs[0])
		offs := recordOffsets(t, path)
		fi, err := os.Stat(path)
		require.NoError(t, err)
		require.NoError(t, os.Truncate(path, fi.Size()-2))
		requireCorrupt(t, dir, path, offs[len(offs)-1], "record of")
	})
	t.Run("missing segment", func(t *testing.T) {
		dir := t.TempDir()
		writeLog(t, dir, Options{SegmentSize: 300}, "a", "b", "c", "d")
		segs := segments(t, dir)
		require.Greater(t, len(segs), 2)
		require.NoError(t, os.Remove(filepath.Join(dir, segs[1])))
		_, err := openT(t, dir, Options{}).Load()
		require.ErrorIs(t, err, ErrCorrupt)
		require.ErrorContains(t, err, "segment missing")
	})
	t.Run("zero length followed by data", func(t *testing.T) {
		dir := t.TempDir()
		writeLog(t, dir, Options{}, "a")
		path := filepath.Join(dir, "00000001.log")
		fi, err := os.Stat(path)
		require.NoError(t, err)
		appendBytes(t, path, []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1})
		requireCorrupt(t, dir, path, int(fi.Size()), "record header checksum mismatch")
	})
	t.Run("a log written by the previous format", func(t *testing.T) {
		dir := t.TempDir()
		// Format 1: length, CRC of the payload, payload starting with version 1.
		payload := []byte{1, 0}
		frame := binary.BigEndian.AppendUint32(nil, uint32(len(payload)))
		frame = binary.BigEndian.AppendUint32(frame, crc32.Checksum(payload, crcTable))
		frame = append(frame, payload...)
		path := filepath.Join(dir, "00000001.log")
		require.NoError(t, os.WriteFile(path, frame, 0o644))
		requireCorrupt(t, dir, path, 0, "written by an older build (record format 1)")
		// repair-log is the way forward: the old log is kept aside, the node forgot.
		rep, err := Repair(dir)
		require.NoError(t, err)
		require.Equal(t, "00000001.log.cut-0", rep.CutFile)
		l := openT(t, dir, Options{})
		require.Empty(t, l.load())
		require.True(t, lost(l))
	})
}

func TestSegmentRolling(t *testing.T) {
	dir := t.TempDir()
	const segSize = 1000
	var ids []string
	for i := range 20 {
		ids = append(ids, fmt.Sprintf("t%02d", i))
	}
	l := openT(t, dir, Options{SegmentSize: segSize})
	l.load()
	for _, id := range ids {
		l.sync(records(id)...)
	}
	// One big batch, rolled inside the batch.
	l.sync(records("x1", "x2", "x3", "x4", "x5")...)
	// A record bigger than a segment gets one of its own.
	big := fullTask("big")
	big.Body = make([]byte, 3*segSize)
	l.sync(node.Record{Kind: node.RecTask, Task: big, TaskID: "big"})
	l.sync(records("after")...)
	require.NoError(t, l.Close())

	segs := segments(t, dir)
	require.Greater(t, len(segs), 10)
	for i, name := range segs {
		require.Equal(t, segName(uint64(i+1)), name)
		fi, err := os.Stat(filepath.Join(dir, name))
		require.NoError(t, err)
		if fi.Size() > segSize {
			require.Len(t, recordOffsets(t, filepath.Join(dir, name)), 1, "%s holds more than one record past the segment size", name)
		}
	}
	want := records(append(ids, "x1", "x2", "x3", "x4", "x5")...)
	want = append(want, node.Record{Kind: node.RecTask, Task: big, TaskID: "big"})
	want = append(want, records("after")...)
	require.Equal(t, want, openT(t, dir, Options{SegmentSize: segSize}).load())
}

func TestCompact(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentSize: 400}
	l := openT(t, dir, opts)
	l.load()
	// Interleave the tasks' records so that every segment holds several tasks.
	ids := []string{"a", "b", "c", "d", "e"}
	for k := range 4 {
		for _, id := range ids {
			l.sync(taskRecords(id)[k])
		}
	}
	before := segments(t, dir)
	require.Greater(t, len(before), 2)

	var asked []string
	keep := map[string]bool{"a": true, "c": true, "e": true}
	require.NoError(t, l.Compact(func(id string) bool {
		asked = append(asked, id)
		return keep[id]
	}))
	require.Equal(t, ids, asked, "keep is asked once per task, in log order")
	want := func(ids ...string) []node.Record {
		var recs []node.Record
		for k := range 4 {
			for _, id := range ids {
				recs = append(recs, taskRecords(id)[k])
			}
		}
		return recs
	}
	require.Equal(t, want("a", "c", "e"), l.load())
	after := segments(t, dir)
	require.Equal(t, []string{segName(uint64(len(before) + 1))}, after)
	require.EqualValues(t, 1, l.Stats().Compactions)

	// Appends continue after the compacted segment; a second compaction works too.
	l.sync(records("f")...)
	require.NoError(t, l.Compact(func(id string) bool { return id != "c" }))
	wantAll := append(want("a", "e"), records("f")...)
	require.Equal(t, wantAll, l.load())
	l.sync(records("g")...)
	require.NoError(t, l.Close())

	l2 := openT(t, dir, opts)
	require.Equal(t, append(wantAll, records("g")...), l2.load())
}

// TestCompactPendingAppends: records appended while Compact runs are kept, and a
// Sync requested before Compact completes after it.
func TestCompactPendingAppends(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, Options{})
	l.load()
	l.sync(records("a", "b")...)
	ran := false
	require.NoError(t, l.Compact(func(id string) bool {
		if id == "a" {
			l.Append(records("b2")...) // the node keeps running meanwhile
			l.Sync(func() { ran = true })
		}
		return id == "a"
	}))
	l.run(1)
	require.True(t, ran)
	require.Equal(t, records("a", "b2"), l.load())
}

// TestCompactCrash simulates a crash at each step of Compact.
func TestCompactCrash(t *testing.T) {
	opts := Options{SegmentSize: 400}
	setup := func(t *testing.T) (dir string, old map[string][]byte) {
		dir = t.TempDir()
		writeLog(t, dir, opts, "a", "b", "c")
		old = map[string][]byte{}
		for _, name := range segments(t, dir) {
			data, err := os.ReadFile(filepath.Join(dir, name))
			require.NoError(t, err)
			old[name] = data
		}
		require.Greater(t, len(old), 1)
		return dir, old
	}
	keepB := func(id string) bool { return id == "b" }

	t.Run("before the rename", func(t *testing.T) {
		dir, old := setup(t)
		// A half-written temporary file, as a crash would leave it.
		tmp := filepath.Join(dir, segName(uint64(len(old)+1))+".tmp")
		require.NoError(t, os.WriteFile(tmp, append(slices.Clone(markerFrame), 1, 2, 3), 0o644))
		l := openT(t, dir, opts)
		require.Equal(t, records("a", "b", "c"), l.load())
		require.NoFileExists(t, tmp)
		l.sync(records("d")...)
		require.NoError(t, l.Compact(keepB))
		require.Equal(t, records("b"), l.load())
	})
	t.Run("after the rename, before the old segments are deleted", func(t *testing.T) {
		dir, old := setup(t)
		l := openT(t, dir, opts)
		require.NoError(t, l.Compact(keepB))
		require.NoError(t, l.Close())
		for name, data := range old { // undo the deletions
			require.NoError(t, os.WriteFile(filepath.Join(dir, name), data, 0o644))
		}
		l2 := openT(t, dir, opts)
		require.Equal(t, records("b"), l2.load())
		require.Equal(t, []string{segName(uint64(len(old) + 1))}, segments(t, dir))
		l2.sync(records("e")...)
		require.NoError(t, l2.Close())
		require.Equal(t, records("b", "e"), openT(t, dir, opts).load())
	})
	t.Run("after deleting some old segments", func(t *testing.T) {
		dir, old := setup(t)
		l := openT(t, dir, opts)
		require.NoError(t, l.Compact(keepB))
		require.NoError(t, l.Close())
		last := segName(uint64(len(old)))
		require.NoError(t, os.WriteFile(filepath.Join(dir, last), old[last], 0o644))
		require.Equal(t, records("b"), openT(t, dir, opts).load())
	})
}

// TestWriteErrorIsSticky: after a failed write no done runs again and Err says why.
func TestWriteErrorIsSticky(t *testing.T) {
	l := openT(t, t.TempDir(), Options{})
	l.load()
	l.sync(records("a")...)
	l.io.Lock()
	require.NoError(t, l.f.Close()) // the next write fails
	l.io.Unlock()
	l.Append(records("b")...)
	l.Sync(func() { t.Error("done ran after a write error") })
	require.Eventually(t, func() bool { return l.Err() != nil }, 10*time.Second, time.Millisecond)
	l.Append(records("c")...)
	l.Sync(func() { t.Error("done ran after a write error") })
	require.ErrorIs(t, l.Compact(func(string) bool { return true }), l.Err())
	err := l.Close()
	require.Error(t, err)
	require.True(t, errors.Is(err, l.Err()))
	select {
	case <-l.inbox:
		t.Fatal("a done was posted after a write error")
	default:
	}
}

// BenchmarkAppendSync: parallel node-like callers each append a task record and wait
// for its Sync. It reports how many Syncs shared each fsync.
func BenchmarkAppendSync(b *testing.B) {
	l, err := Open(b.TempDir(), Options{Post: func(f func()) { f() }, Logger: quiet})
	require.NoError(b, err)
	defer l.Close()
	_, err = l.Load()
	require.NoError(b, err)
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		done := make(chan struct{}, 1)
		rec := node.Record{Kind: node.RecTask, Task: fullTask("bench"), TaskID: "bench"}
		for pb.Next() {
			l.Append(rec)
			l.Sync(func() { done <- struct{}{} })
			<-done
		}
	})
	b.StopTimer()
	st := l.Stats()
	b.ReportMetric(float64(st.Syncs)/float64(max(st.Fsyncs, 1)), "syncs/fsync")
	b.ReportMetric(float64(st.Fsyncs)/b.Elapsed().Seconds(), "fsyncs/s")
}

// TestDecodeFrames: the simulator's decoder reads whole valid records from the front
// and stops at the first incomplete or damaged one.
func TestDecodeFrames(t *testing.T) {
	want := records("a", "b")
	b := slices.Clone(markerFrame)
	var ends []int
	for i := range want {
		b = appendRecord(b, &want[i])
		ends = append(ends, len(b))
	}
	decode := func(b []byte) ([]node.Record, int) {
		var got []node.Record
		n := DecodeFrames(b, func(r node.Record) { got = append(got, r) })
		return got, n
	}
	got, n := decode(b)
	require.Equal(t, want, got, "markers are skipped")
	require.Equal(t, len(b), n)

	got, n = decode(b[:ends[3]+5])
	require.Equal(t, want[:4], got)
	require.Equal(t, ends[3], n, "an incomplete frame is not consumed")

	bad := slices.Clone(b)
	bad[ends[2]+frameHeader] ^= 1
	got, n = decode(bad)
	require.Equal(t, want[:3], got)
	require.Equal(t, ends[2], n, "a damaged frame stops decoding")

	// Resuming at consumed continues where it stopped.
	more, m := decode(b[ends[3]:])
	require.Equal(t, want[4:], more)
	require.Equal(t, len(b)-ends[3], m)
}

func TestAppendRefusesOversizedRecord(t *testing.T) {
	big := fullTask("big")
	big.Body = make([]byte, MaxRecordSize-200)
	require.NotPanics(t, func() { appendRecord(nil, &node.Record{Kind: node.RecTask, Task: big, TaskID: "big"}) })
	big.Body = make([]byte, MaxRecordSize)
	defer func() {
		require.Contains(t, fmt.Sprint(recover()), "is over MaxRecordSize")
	}()
	appendRecord(nil, &node.Record{Kind: node.RecTask, Task: big, TaskID: "big"})
	t.Fatal("no panic")
}

// LoadEach hands over the records Load returns, in the same order, across
// segments; a log it read takes appends as one Load read.
func TestLoadEachStreamsWhatLoadReturns(t *testing.T) {
	dir := t.TempDir()
	const segSize = 1000
	l := openT(t, dir, Options{SegmentSize: segSize})
	l.load()
	var ids []string
	for i := range 12 {
		ids = append(ids, fmt.Sprintf("t%02d", i))
		l.sync(records(ids[i])...)
	}
	require.NoError(t, l.Close())
	require.Greater(t, len(segments(t, dir)), 3, "the records span segments")

	loaded := openT(t, dir, Options{SegmentSize: segSize})
	want := loaded.load()
	require.Equal(t, records(ids...), want)
	require.NoError(t, loaded.Close())
	s := openT(t, dir, Options{SegmentSize: segSize})
	var got []node.Record
	require.NoError(t, s.LoadEach(func(r *node.Record) { got = append(got, *r) }))
	require.Equal(t, want, got)
	s.sync(records("after")...)
	require.NoError(t, s.Close())
	require.Equal(t, records(append(ids, "after")...), openT(t, dir, Options{SegmentSize: segSize}).load())
}
