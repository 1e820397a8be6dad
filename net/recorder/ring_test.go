package recorder

import (
	"bytes"
	"encoding/gob"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/net/wire"
	"github.com/miyamotohq/miyamoto/node"
)

// writeGroup adds group to the pending batch as the node's goroutine does.
func (r *ring) writeGroup(group []byte, defs []deferred, recs []node.Record) {
	p := r.acquire()
	start, defStart, recBase := len(p.bytes), len(p.defs), len(p.recs)
	for _, d := range defs {
		d.first += recBase
		p.defs = append(p.defs, d)
	}
	p.recs = append(p.recs, recs...)
	r.release(r.endGroup(append(p.bytes, group...), start, defStart))
}

// Groups written in bursts with idle flushes between them come back whole and in
// order.
func TestRingKeepsEveryGroupAcrossIdleFlushes(t *testing.T) {
	dir := t.TempDir()
	r, err := openRing(dir, 64<<20, Header{NodeID: "n1"})
	require.NoError(t, err)
	var want []string
	for burst := range 4 {
		for i := range 2000 {
			g := fmt.Sprintf("burst %d group %d %s", burst, i, make([]byte, i%300))
			want = append(want, g)
			r.writeGroup([]byte(g), nil, nil)
		}
		time.Sleep(3 * flushEvery) // idle flushes
	}
	require.NoError(t, r.close())
	hdr, groups, torn, err := readFile(filepath.Join(dir, fileName(1, 0)))
	require.NoError(t, err)
	require.Empty(t, torn)
	require.Equal(t, "n1", hdr.NodeID)
	require.Len(t, groups, len(want))
	for i, g := range groups {
		require.Equal(t, want[i], string(g), "group %d", i)
	}
}

// The buffer the node's goroutine appends to never shares its array with the one
// the writer holds, whatever order flushes with and without data come in. (A flush
// that found nothing once handed the spare buffer out while keeping it as spare:
// the next burst went into the array the writer was writing.)
func TestRingBuffersNeverShareAnArray(t *testing.T) {
	r, err := openRing(t.TempDir(), 64<<20, Header{NodeID: "n1"})
	require.NoError(t, err)
	close(r.stop) // drive the flushes by hand
	<-r.done
	t.Cleanup(func() { r.f.Close() })
	shared := func() bool {
		other := r.spare.Load()
		if other == nil {
			other = r.ready.Load()
		}
		p, s := r.pending.bytes[:cap(r.pending.bytes)], other.bytes[:cap(other.bytes)]
		return len(p) > 0 && len(s) > 0 && &p[0] == &s[0]
	}
	for _, step := range []string{"data", "flush", "flush", "data", "flush", "data", "flush", "flush", "flush", "data", "data", "flush"} {
		if step == "data" {
			r.writeGroup([]byte("a group"), nil, nil)
		} else {
			r.flush(true)
		}
		require.False(t, shared(), "after %s the pending and spare buffers share an array", step)
	}
}

// ringDrivenByHand opens a ring in dir whose writer goroutine has stopped, so that
// a test drives its flushes.
func ringDrivenByHand(t *testing.T, dir string) *ring {
	r, err := openRing(dir, 64<<20, Header{NodeID: "n1"})
	require.NoError(t, err)
	close(r.stop)
	<-r.done
	t.Cleanup(func() { r.f.Close() })
	return r
}

// The writer never waits for the node's goroutine, which encodes into the pending
// batch in place: mid-input a flush returns at once and asks for the batch, which
// the input's end hands over and the next flush writes; between inputs only a due
// flush (the ticker's) takes the batch itself. (A writer that waited for the input
// to end made the node's goroutine wake it at every flush, and then wait in turn.)
func TestRingWriterNeverWaitsForAnInput(t *testing.T) {
	dir := t.TempDir()
	r := ringDrivenByHand(t, dir)

	p := r.acquire() // an input starts
	start := len(p.bytes)
	b := r.endGroup(append(p.bytes, "one"...), start, len(p.defs))
	flushed := make(chan bool)
	go func() { flushed <- r.flush(true) }()
	select {
	case wrote := <-flushed:
		require.False(t, wrote, "a flush took the batch the node's goroutine holds")
	case <-time.After(10 * time.Second):
		t.Fatal("a flush waited for the input to end")
	}
	require.True(t, r.want.Load(), "the flush did not ask for the batch")
	r.release(b) // the input ends
	require.NotNil(t, r.ready.Load(), "the input's end did not hand the batch over")
	require.False(t, r.want.Load())
	require.True(t, r.flush(false))

	r.writeGroup([]byte("two"), nil, nil)
	require.False(t, r.flush(false), "a flush that was not due took a small batch")
	require.True(t, r.flush(true))
	require.False(t, r.flush(true))

	_, groups, torn, err := readFile(filepath.Join(dir, fileName(1, 0)))
	require.NoError(t, err)
	require.Empty(t, torn)
	require.Equal(t, [][]byte{[]byte("one"), []byte("two")}, groups)
}

// A batch handed over wakes the writer up only when it sleeps: a busy writer looks
// for the next one itself (pollEvery), and the node's goroutine spares the system
// call. Either way the batch is written.
func TestRingHandOverWakesOnlyASleepingWriter(t *testing.T) {
	dir := t.TempDir()
	r := ringDrivenByHand(t, dir)
	kicked := func() bool {
		select {
		case <-r.kick:
			return true
		default:
			return false
		}
	}
	full := string(make([]byte, kickAt))
	for _, sleeping := range []bool{false, true} {
		r.sleeping.Store(sleeping)
		r.writeGroup([]byte(full), nil, nil)
		require.NotNil(t, r.ready.Load(), "a full batch was not handed over")
		require.Equal(t, sleeping, kicked(), "writer sleeping: %v", sleeping)
		require.True(t, r.flush(false))
	}
	_, groups, _, err := readFile(filepath.Join(dir, fileName(1, 0)))
	require.NoError(t, err)
	require.Len(t, groups, 2)
}

// The messages and records the writer encodes land where the node's goroutine left
// them: a received message's frame right after its label, a sent one's hash after
// its summary, appended records' hash after theirs, also when the send came before
// the label (moved after it) or the input has no label (an opaque byte put in
// front). The records are copied: the node may reuse their array.
func TestDeferredMessagesLandInPlace(t *testing.T) {
	dir := t.TempDir()
	rec, err := Open(Options{Dir: dir, MaxSize: 64 << 20, Config: node.Config{ID: "n1", Members: []node.NodeID{"n1", "n2"}}, Durable: true})
	require.NoError(t, err)
	env := rec.WrapEnv(node.Env{Network: dropNetwork{}, Storage: durableStorage{}})
	rec.BeginInput() // node.New and Start
	rec.EndInput()

	sent := node.Message{Type: node.MsgStore, From: "n1", To: "n2", TaskID: "t1",
		Task: &node.Task{ID: "t1", URL: "http://127.0.0.1:9/", Body: []byte("body")}}
	got := node.Message{Type: node.MsgClaim, From: "n2", To: "n1", TaskID: "t2", Attempt: 3, Promised: 99}
	first := []node.Record{{Kind: node.RecOutcome, TaskID: "t3", State: node.StateSucceeded}}
	after := []node.Record{{Kind: node.RecGrant, TaskID: "t2", Attempt: 3, Holder: "n2"}}
	rec.BeginInput() // a send and an append before the label
	env.Network.Send(sent)
	env.Storage.Append(first...)
	rec.Step(got)
	env.Storage.Append(after...)
	rec.EndInput()
	rec.BeginInput() // no label at all
	env.Network.Send(sent)
	recs := []node.Record{{Kind: node.RecTask, Task: sent.Task}, {Kind: node.RecGrant, TaskID: "t2", Attempt: 3, Round: 99}}
	appended := slices.Clone(recs)
	env.Storage.Append(recs...)
	recs[1].Attempt = 4 // the node's array, reused
	rec.EndInput()
	require.NoError(t, rec.Close())

	sentEvent := appendSent(enc{evSend}, sent, wire.AppendFrame(nil, sent))
	appendEvent := appendAppended(enc{evAppend}, appended, appendRecordFrames(nil, appended))
	want := [][]byte{
		slices.Concat(enc{inStep}, wire.AppendFrame(nil, got), sentEvent,
			appendAppended(enc{evAppend}, first, appendRecordFrames(nil, first)),
			appendAppended(enc{evAppend}, after, appendRecordFrames(nil, after))),
		append(append(enc{inOpaque}, sentEvent...), appendEvent...),
	}
	_, groups, torn, err := readFile(filepath.Join(dir, fileName(1, 0)))
	require.NoError(t, err)
	require.Empty(t, torn)
	require.Len(t, groups, 2+len(want)) // node.New's and Start's first
	for i, w := range want {
		require.Equal(t, w, groups[2+i], "group %d", 2+i)
	}
}

type dropNetwork struct{}

func (dropNetwork) Send(node.Message) {}

// durableStorage is a durable node.Storage that keeps nothing.
type durableStorage struct{}

func (durableStorage) Durable() bool                { return true }
func (durableStorage) Append(...node.Record)        {}
func (durableStorage) Sync(func())                  {}
func (durableStorage) Load() ([]node.Record, error) { return nil, nil }

// A recording of another format (another build's node, or one from before
// recordings named their format) is refused by ReadDir, naming both builds; the
// same file with this build's format reads.
func TestReadDirRefusesAnotherFormat(t *testing.T) {
	dir := t.TempDir()
	r, err := openRing(dir, 64<<20, Header{NodeID: "n1"})
	require.NoError(t, err)
	r.writeGroup([]byte("a group"), nil, nil)
	require.NoError(t, r.close())
	path := filepath.Join(dir, fileName(1, 0))
	hdr, groups, _, err := readFile(path)
	require.NoError(t, err)
	require.Equal(t, Format(), hdr.Format)
	require.NotEmpty(t, hdr.Build)
	_, err = ReadDir(dir)
	require.NoError(t, err)

	rewrite := func(h Header) {
		var enc bytes.Buffer
		require.NoError(t, gob.NewEncoder(&enc).Encode(h))
		b := append([]byte(magic), appendFrame(nil, enc.Bytes())...)
		for _, g := range groups {
			b = appendFrame(b, g)
		}
		require.NoError(t, os.WriteFile(path, b, 0o644))
	}
	other := hdr
	other.Build, other.Format = "v0.9.0 (0123456789ab)", "events 1, wire 5, state 00000000deadbeef"
	rewrite(other)
	_, err = ReadDir(dir)
	require.ErrorContains(t, err, "was recorded by build v0.9.0 (0123456789ab) (recording format \"events 1, wire 5, state 00000000deadbeef\")")
	require.ErrorContains(t, err, "use the build that recorded it")

	other.Build, other.Format = "", ""
	rewrite(other)
	_, err = ReadDir(dir)
	require.ErrorContains(t, err, "was recorded by a build from before recordings named their build and format")

	rewrite(hdr)
	_, err = ReadDir(dir)
	require.NoError(t, err)
}
