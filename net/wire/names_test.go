package wire

import (
	"bufio"
	"bytes"
	"io"
	"strconv"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/node"
)

// clusterTask is a task as the benchmark's clients enqueue it on a 3-node cluster.
func clusterTask(i int) *node.Task {
	return &node.Task{
		ID: "t-" + strconv.Itoa(i), Queue: "default", URL: "http://127.0.0.1:38211/sink", Method: "POST",
		ContentType: "application/json", Body: []byte(`{"n":` + strconv.Itoa(i) + `}`),
		ETA: utc(1_700_000_000, int64(i)), Created: utc(1_700_000_000, int64(i)), Nonce: uint64(i) + 1,
		Replicas: []node.NodeID{"n1", "n2", "n3"},
	}
}

// clusterStream is the frames one replica receives for i tasks of a 3-node cluster:
// a Store, a Claim and an Outcome with the task, and a grant.
func clusterStream(tasks int) ([]byte, []node.Message) {
	var b []byte
	var ms []node.Message
	for i := range tasks {
		t := clusterTask(i)
		for _, m := range []node.Message{
			{Type: node.MsgStore, From: "n1", To: "n2", TaskID: t.ID, Task: t},
			{Type: node.MsgClaim, From: "n1", To: "n2", TaskID: t.ID, Task: t, Attempt: 1, Promised: 77, Lease: 30 * time.Second},
			{Type: node.MsgClaimResp, From: "n1", To: "n2", TaskID: t.ID, Attempt: 1, Granted: true},
			{Type: node.MsgOutcome, From: "n1", To: "n2", TaskID: t.ID, Task: t, Attempt: 1, State: node.StateSucceeded, Status: 200, Queue: "default"},
		} {
			b = AppendFrame(b, m)
			ms = append(ms, m)
		}
	}
	return b, ms
}

// A FrameReader decodes what ReadFrame decodes, and recurring values of different
// messages share one string.
func TestFrameReaderSharesNames(t *testing.T) {
	stream, want := clusterStream(3)
	stream = AppendFrame(stream, fullMessage(node.MsgStore, fullTask()))
	want = append(want, fullMessage(node.MsgStore, fullTask()))
	fr := NewFrameReader(bufio.NewReader(bytes.NewReader(stream)))
	var got []node.Message
	for {
		m, err := fr.Read()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		got = append(got, m)
	}
	require.Equal(t, want, got)
	same := func(a, b string) bool { return unsafe.StringData(a) == unsafe.StringData(b) }
	require.True(t, same(string(got[0].From), string(got[5].From)), "node IDs copied per message")
	require.True(t, same(got[0].Task.URL, got[4].Task.URL), "URLs copied per message")
	require.False(t, same(got[0].TaskID, got[1].TaskID), "task IDs are not shared: they do not recur")
	sameList := func(a, b *node.Task) bool { return unsafe.SliceData(a.Replicas) == unsafe.SliceData(b.Replicas) }
	require.True(t, sameList(got[0].Task, got[7].Task), "equal replica lists copied per message")
	require.False(t, sameList(got[7].Task, got[12].Task), "a different list shares the one before")
	require.Equal(t, fullTask().Replicas, got[12].Task.Replicas)

	// A broken frame is the same error as ReadFrame's.
	fr = NewFrameReader(bufio.NewReader(bytes.NewReader([]byte{0, 0, 0, 0})))
	_, err := fr.Read()
	require.ErrorIs(t, err, ErrMalformed)
}

// A names table stays bounded: it is emptied when full, and keeps no long strings.
func TestNamesBounded(t *testing.T) {
	var n names
	for i := range 3 * maxNames {
		n.get([]byte("queue-" + strconv.Itoa(i)))
	}
	require.LessOrEqual(t, len(n.m), maxNames)
	n.get(bytes.Repeat([]byte("x"), maxNameLen+1))
	for k := range n.m {
		require.LessOrEqual(t, len(k), maxNameLen)
	}
}

// BenchmarkReadFrames reads a replica's stream of a 3-node cluster (Store, Claim,
// ClaimResp and Outcome per task; see clusterStream) with ReadFrame and with a
// FrameReader. ns/op, B/op and allocs/op are per frame.
func BenchmarkReadFrames(b *testing.B) {
	stream, ms := clusterStream(256)
	run := func(b *testing.B, read func(r *bufio.Reader) func() (node.Message, error)) {
		b.ReportAllocs()
		b.SetBytes(int64(len(stream) / len(ms)))
		var r *bufio.Reader
		var next func() (node.Message, error)
		for i := 0; b.Loop(); i++ {
			if i%len(ms) == 0 {
				r = bufio.NewReaderSize(bytes.NewReader(stream), 64<<10)
				next = read(r)
			}
			if _, err := next(); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("ReadFrame", func(b *testing.B) {
		run(b, func(r *bufio.Reader) func() (node.Message, error) {
			var buf []byte
			return func() (m node.Message, err error) {
				m, buf, err = ReadFrame(r, buf)
				return m, err
			}
		})
	})
	b.Run("FrameReader", func(b *testing.B) {
		var fr *FrameReader
		run(b, func(r *bufio.Reader) func() (node.Message, error) {
			if fr == nil {
				fr = NewFrameReader(r)
			}
			fr.r = r // keep the table, as a connection does
			return fr.Read
		})
	})
}
