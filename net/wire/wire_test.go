package wire

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/node"
)

// utc builds a time the way the decoder returns it.
func utc(sec, nsec int64) time.Time { return time.Unix(sec, nsec).UTC() }

func fullTask() *node.Task {
	return &node.Task{
		ID:          "6f1c1f8e-2b7e-4d4e-9a53-6f0d6f5b9f11",
		Queue:       "emails",
		Name:        "welcome-42",
		URL:         "http://worker.example:8080/send?x=1",
		Method:      "POST",
		Headers:     []node.Header{{Name: "X-B", Value: "2"}, {Name: "X-A", Value: "1"}, {Name: "X-B", Value: "3"}, {}},
		ContentType: "application/x-www-form-urlencoded",
		Body:        []byte("to=a%40b.c&n=\x00\xff"),
		ETA:         utc(1_700_000_123, 456_789_000),
		Created:     utc(1_700_000_000, 1),
		Nonce:       0xdeadbeefcafe,
		Delivery:    node.AtMostOnce,
		Replicas:    []node.NodeID{"n3", "n1", "n2"},
		ListVersion: 3,
	}
}

func fullMessage(t node.MsgType, task *node.Task) node.Message {
	return node.Message{
		Type:       t,
		From:       "node-a",
		To:         "node-b",
		TaskID:     "6f1c1f8e-2b7e-4d4e-9a53-6f0d6f5b9f11",
		Task:       task,
		Attempt:    math.MaxUint64,
		Promised:   7,
		Lease:      -3 * time.Second,
		Granted:    true,
		Reject:     node.RejectRecovering,
		Holder:     "node-c",
		State:      node.StateCancelled,
		NextETA:    utc(-5, 999_999_999),
		Retries:    math.MinInt64,
		Failed:     math.MaxUint64 - 1,
		FailedBits: math.MaxUint64,
		Status:     503,
		Queue:      "emails",
		Setting: &node.QueueSetting{Queue: "emails", Paused: true, Deleted: true, Explicit: node.FieldRate | node.FieldDelivery, PurgedBefore: utc(1_800_000_000, 5), Version: 12, Origin: "node-d", Config: node.QueueConfig{
			Delivery: node.AtMostOnce, DispatchDeadline: 3 * time.Second, Rate: 2.5, BucketSize: 4, MaxConcurrent: 9,
			Retry: node.RetryConfig{TaskRetryLimit: 5, TaskAgeLimit: time.Hour, MinBackoff: time.Second, MaxBackoff: time.Minute, MaxDoublings: 3},
		}},
		Reason: "retry limits reached (task_retry_limit 5) after 6 failed deliveries; last: HTTP 500",
		Attempts: []node.DeliveryAttempt{
			{Number: 1, Node: "node-a", Start: utc(1_700_000_200, 7), Duration: 1500 * time.Millisecond, Status: 500, Body: "oops\x00\xff"},
			{Number: math.MaxUint64, Node: "node-b", Start: utc(1_700_000_300, 0), Duration: -1, Error: node.MaxErrorKind, Message: "dial tcp: connection refused"},
			{InFlight: true},
		},
		Schedule: &node.Schedule{Name: "nightly-report", Cron: "0 30 3 * * *", TimeZone: "Europe/Paris", Queue: "emails", URL: "http://w/x",
			Method: "PUT", Headers: []node.Header{{Name: "X-A", Value: "1"}, {}}, ContentType: "text/plain", Body: []byte("\x00hi"),
			Missed: node.MissedOne, Deleted: true, Created: utc(1_700_000_000, 9), Version: 1 << 40, Origin: "node-e"},
		Counts: []node.QueueCount{{Queue: "emails", State: node.StateScheduled, N: 3},
			{Queue: "emails", State: node.StateDead, Before: []node.NodeID{"node-a", "node-c"}, N: math.MaxInt64}, {}},
		Epoch: math.MaxUint64,
		Round: 0xfeedface12345678,
		Roster: &node.Roster{Epoch: 7, Leader: "node-b", Members: []node.Member{
			{ID: "node-a", Addr: "10.0.0.1:7001"}, {ID: "node-b", Addr: "[::1]:7002"}, {ID: "node-c"}},
			Removed: []node.NodeID{"node-x", "node-e"}},
		Member: &node.Member{ID: "node-d", Addr: "10.0.0.4:7001"},
	}
}

func roundTrip(t *testing.T, m node.Message) node.Message {
	t.Helper()
	prefix := []byte("junk")
	frame := AppendFrame(prefix, m)
	require.Equal(t, "junk", string(frame[:4]), "AppendFrame must append")
	frame = frame[4:]
	require.Equal(t, len(frame), FrameLen(frame))
	got, n, err := DecodeFrame(frame)
	require.NoError(t, err)
	require.Equal(t, len(frame), n)
	return got
}

func TestRoundTripEveryType(t *testing.T) {
	for typ := node.MsgType(1); typ <= node.MaxMsgType; typ++ {
		t.Run(typ.String(), func(t *testing.T) {
			// Every field set, with a task.
			m := fullMessage(typ, fullTask())
			require.Equal(t, m, roundTrip(t, m))
			// Every field set, no task.
			m = fullMessage(typ, nil)
			require.Equal(t, m, roundTrip(t, m))
			// Only the type: zero times, empty strings, nil task.
			m = node.Message{Type: typ}
			require.Equal(t, m, roundTrip(t, m))
			// A task with every field zero.
			m = node.Message{Type: typ, Task: &node.Task{}}
			require.Equal(t, m, roundTrip(t, m))
			// A schedule with every field zero.
			m = node.Message{Type: typ, Schedule: &node.Schedule{}}
			require.Equal(t, m, roundTrip(t, m))
		})
	}
}

func TestTimes(t *testing.T) {
	now := time.Now() // Local, with a monotonic reading
	cases := map[string]time.Time{
		"zero":             {},
		"now":              now,
		"unix epoch":       time.Unix(0, 0),
		"before epoch":     utc(-1, 1),
		"year 3000":        time.Date(3000, 1, 2, 3, 4, 5, 6, time.UTC),
		"year 1000":        time.Date(1000, 1, 2, 3, 4, 5, 999_999_999, time.UTC),
		"year 1 not zero":  time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC),
		"nanos lower edge": time.Unix(0, math.MinInt64),
		"nanos upper edge": time.Unix(0, math.MaxInt64),
		"past upper edge":  time.Unix(0, math.MaxInt64).Add(1),
		"in a zone":        time.Date(2024, 2, 29, 23, 59, 59, 5, time.FixedZone("X", 5*3600)),
	}
	for name, tm := range cases {
		t.Run(name, func(t *testing.T) {
			task := &node.Task{ETA: tm, Created: tm}
			got := roundTrip(t, node.Message{Type: node.MsgStore, Task: task, NextETA: tm})
			for _, g := range []time.Time{got.NextETA, got.Task.ETA, got.Task.Created} {
				require.True(t, g.Equal(tm), "want %v, got %v", tm, g)
				if tm.IsZero() {
					require.Equal(t, time.Time{}, g, "zero time must decode to time.Time{}")
				} else {
					require.Equal(t, time.UTC, g.Location())
				}
			}
		})
	}
}

func TestNormalisation(t *testing.T) {
	// Empty and nil lists and bodies encode alike and decode as nil.
	empty := &node.Task{Body: []byte{}, Headers: []node.Header{}, Replicas: []node.NodeID{}}
	got := roundTrip(t, node.Message{Type: node.MsgStore, Task: empty})
	require.Nil(t, got.Task.Body)
	require.Nil(t, got.Task.Headers)
	require.Nil(t, got.Task.Replicas)

	got = roundTrip(t, node.Message{Type: node.MsgCountResp, Counts: []node.QueueCount{{Before: []node.NodeID{}}}})
	require.Nil(t, got.Counts[0].Before)
	require.Nil(t, roundTrip(t, node.Message{Type: node.MsgCountResp, Counts: []node.QueueCount{}}).Counts)

	// Header order is kept, duplicates included.
	task := fullTask()
	got = roundTrip(t, node.Message{Type: node.MsgStore, Task: task})
	require.Equal(t, task.Headers, got.Task.Headers)

	// The decoded message never aliases the frame.
	frame := AppendFrame(nil, node.Message{Type: node.MsgStore, Task: task})
	m, _, err := DecodeFrame(frame)
	require.NoError(t, err)
	for i := range frame {
		frame[i] = 0xAA
	}
	require.Equal(t, task, m.Task)
}

func TestDecodeStream(t *testing.T) {
	var msgs []node.Message
	var stream []byte
	for i := range 50 {
		m := fullMessage(node.MsgType(1+i%int(node.MaxMsgType)), nil)
		m.Attempt = uint64(i)
		if i%3 == 0 {
			m.Task = fullTask()
			m.Task.Body = bytes.Repeat([]byte{byte(i)}, 1+i*100)
		}
		msgs = append(msgs, m)
		stream = AppendFrame(stream, m)
	}
	// DecodeFrame: every strict prefix of a frame is ErrShort.
	b := stream
	for _, want := range msgs {
		n := FrameLen(b)
		for cut := range n {
			_, _, err := DecodeFrame(b[:cut])
			require.ErrorIs(t, err, ErrShort, "cut %d of %d", cut, n)
		}
		got, used, err := DecodeFrame(b)
		require.NoError(t, err)
		require.Equal(t, n, used)
		require.Equal(t, want, got)
		b = b[used:]
	}
	require.Empty(t, b)

	// ReadFrame over a reader with a tiny buffer, reusing scratch space.
	r := bufio.NewReaderSize(bytes.NewReader(stream), 16)
	var buf []byte
	for _, want := range msgs {
		var got node.Message
		var err error
		got, buf, err = ReadFrame(r, buf)
		require.NoError(t, err)
		require.Equal(t, want, got)
	}
	_, _, err := ReadFrame(r, buf)
	require.ErrorIs(t, err, io.EOF)

	// A stream cut inside a frame.
	r = bufio.NewReader(bytes.NewReader(stream[:len(stream)-1]))
	for range len(msgs) - 1 {
		_, buf, err = ReadFrame(r, buf)
		require.NoError(t, err)
	}
	_, _, err = ReadFrame(r, buf)
	require.ErrorIs(t, err, io.ErrUnexpectedEOF)
}

func TestReadFrameBigBody(t *testing.T) {
	m := node.Message{Type: node.MsgStore, Task: &node.Task{Body: bytes.Repeat([]byte("abc"), 400_000)}}
	frame := AppendFrame(nil, m)
	got, _, err := ReadFrame(bufio.NewReader(bytes.NewReader(frame)), nil)
	require.NoError(t, err)
	require.Equal(t, m, got)
}

func TestReadFrameDoesNotTrustLength(t *testing.T) {
	// A frame that claims MaxFrame bytes but sends ten: the reader must not allocate
	// the whole claim up front.
	hdr := binary.BigEndian.AppendUint32(nil, MaxFrame)
	hdr = append(hdr, Version, 1, 2, 3, 4, 5, 6, 7, 8, 9)
	var err error
	allocs := testing.AllocsPerRun(5, func() {
		_, _, err = ReadFrame(bufio.NewReader(bytes.NewReader(hdr)), nil)
	})
	require.ErrorIs(t, err, io.ErrUnexpectedEOF)
	require.Less(t, allocs, 10.0)

	// Over the limit: refused before reading.
	over := binary.BigEndian.AppendUint32(nil, MaxFrame+1)
	_, _, err = ReadFrame(bufio.NewReader(bytes.NewReader(over)), nil)
	require.ErrorIs(t, err, ErrMalformed)
}

// frameOf frames a raw payload (version byte included).
func frameOf(payload ...byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(payload))), payload...)
}

// validPayload is the payload (version byte included) of a small message, to corrupt.
func validPayload(m node.Message) []byte { return AppendFrame(nil, m)[headerLen:] }

func TestMalformed(t *testing.T) {
	minimal := validPayload(node.Message{Type: node.MsgClaim})
	withTask := validPayload(node.Message{Type: node.MsgStore, Task: &node.Task{}})
	// A zero schedule ends with missed deleted created version origin, a byte each,
	// followed by the message's reason, attempts count and counts count.
	withSched := validPayload(node.Message{Type: node.MsgScheduleSet, Schedule: &node.Schedule{}})
	// Offsets inside minimal: version, type, from, to, taskID, presence, ...; from
	// the end: nextETA retries failed failedBits status queue settingPresence schedulePresence
	// reason attempts counts.
	const presence = 5
	// Every message ends with its epoch, round, roster and member presence, a byte
	// each when zero: the offsets from the end below count from before them (noTail).
	const rosterTail = 4
	noTail := func(p []byte) []byte { return p[:len(p)-rosterTail] }
	tail := []byte{0, 0, 0, 0}
	minimal, withSched, withAttempt := noTail(minimal), noTail(validPayload(node.Message{Type: node.MsgScheduleSet, Schedule: &node.Schedule{}})), noTail(validPayload(node.Message{Type: node.MsgStatusResp, Attempts: []node.DeliveryAttempt{{}}}))
	whole := func(p []byte) []byte { return append(append([]byte(nil), p...), tail...) }
	// A zero attempt is 9 bytes, followed by the counts count: its error kind is
	// the fourth byte from the end, the attempts count the eleventh.
	set := func(p []byte, i int, v ...byte) []byte {
		q := append([]byte(nil), p[:i]...)
		q = append(q, v...)
		if i+len(v) < len(p) {
			q = append(q, p[i+len(v):]...)
		}
		return q
	}
	huge := binary.AppendUvarint(nil, math.MaxUint64)
	cases := []struct {
		name  string
		frame []byte
		want  string
	}{
		{"empty frame", frameOf(), "no version"},
		{"bad version", frameOf(whole(set(minimal, 0, Version+1))...), fmt.Sprintf("version %d", Version+1)},
		{"version zero", frameOf(whole(set(minimal, 0, 0))...), "version 0"},
		{"over max frame", binary.BigEndian.AppendUint32(nil, MaxFrame+1), "exceeds the maximum"},
		{"length 0xFFFFFFFF", []byte{0xff, 0xff, 0xff, 0xff}, "exceeds the maximum"},
		{"type zero", frameOf(whole(set(minimal, 1, 0))...), "unknown message type 0"},
		{"type unknown", frameOf(whole(set(minimal, 1, byte(node.MaxMsgType)+1))...), "unknown message type"},
		{"type 255", frameOf(whole(set(minimal, 1, 255))...), "unknown message type 255"},
		{"only version", frameOf(Version), "truncated before type"},
		{"truncated message", frameOf(whole(minimal[:len(minimal)-1])...), "truncated"},
		{"truncated task", frameOf(withTask[:len(withTask)-10]...), "truncated"},
		{"trailing byte", frameOf(whole(append(append([]byte(nil), minimal...), 0))...), "trailing"},
		{"from longer than frame", frameOf(Version, 1, 100, 'a'), "from length 100 exceeds"},
		{"from length huge", frameOf(append([]byte{Version, 1}, huge...)...), "from length"},
		{"uvarint overflow", frameOf(Version, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01), "overflows"},
		{"presence 2", frameOf(whole(set(minimal, presence, 2))...), "task presence is not a boolean"},
		{"headers count huge", frameOf(append(set(withTask, presence+6, 0x80, 0x80, 0x80, 0x80, 0x08), make([]byte, 20)...)...), "task.headers count"},
		{"headers count > bytes/2", frameOf(set(withTask, presence+6, 20)...), "task.headers count 20 exceeds"},
		{"body longer than frame", frameOf(set(withTask, presence+8, 100)...), "task.body length 100 exceeds"},
		{"replicas count", frameOf(set(withTask, presence+13, 100)...), "task.replicas count 100 exceeds"},
		{"bad time tag", frameOf(set(withTask, presence+9, 7)...), "unknown time tag 7"},
		{"bad delivery", frameOf(set(withTask, presence+12, 9)...), "unknown delivery mode 9"},
		{"wide time bad nanos", frameOf(whole(append(set(minimal, len(minimal)-11, append([]byte{2, 0}, binary.AppendUvarint(nil, uint64(time.Second))...)...), 0, 0, 0, 0, 0))...), "nanoseconds"},
		{"counts count", frameOf(whole(set(minimal, len(minimal)-1, 3))...), "counts count 3 exceeds"},
		{"count state", frameOf(whole(append(set(minimal, len(minimal)-1, 1), 0, byte(maxState)+1, 0, 0))...), "unknown count.state"},
		{"count negative", frameOf(whole(append(set(minimal, len(minimal)-1, 1), 0, 1, 0, 1))...), "count.n -1 is negative"},
		{"granted 2", frameOf(whole(set(minimal, presence+4, 2))...), "granted is not a boolean"},
		{"unknown missed policy", frameOf(whole(set(withSched, len(withSched)-8, byte(maxMissed)+1))...), "unknown missed-tick policy"},
		{"schedule deleted 2", frameOf(whole(set(withSched, len(withSched)-7, 2))...), "schedule.deleted is not a boolean"},
		{"unknown reject", frameOf(whole(set(minimal, presence+5, byte(maxReject)+1))...), "unknown reject"},
		{"unknown state", frameOf(whole(set(minimal, presence+7, byte(maxState)+1))...), "unknown task state"},
		{"unknown error kind", frameOf(whole(set(withAttempt, len(withAttempt)-4, byte(maxErrKind)+1))...), "unknown error kind"},
		{"attempts count", frameOf(whole(set(withAttempt, len(withAttempt)-11, 2))...), "attempts count 2 exceeds"},
		{"roster presence 2", frameOf(append(append([]byte(nil), minimal...), 0, 0, 2, 0)...), "roster presence is not a boolean"},
		{"member presence 2", frameOf(append(append([]byte(nil), minimal...), 0, 0, 0, 2)...), "member presence is not a boolean"},
		{"roster members count", frameOf(append(append([]byte(nil), minimal...), 0, 0, 1, 2, 9, 0)...), "roster.members count 9 exceeds"},
		{"in flight 2", frameOf(whole(set(withAttempt, len(withAttempt)-6, 2))...), "attempt.in_flight is not a boolean"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, n, err := DecodeFrame(c.frame)
			require.Error(t, err)
			require.ErrorIs(t, err, ErrMalformed)
			require.Contains(t, err.Error(), c.want)
			require.Zero(t, n)
			_, _, err = ReadFrame(bufio.NewReader(bytes.NewReader(c.frame)), nil)
			require.ErrorIs(t, err, ErrMalformed)
		})
	}
}

// TestEnumBounds fails when node grows an enum the codec does not know yet.
func TestEnumBounds(t *testing.T) {
	require.True(t, strings.HasPrefix((node.MaxMsgType+1).String(), "msg("), "node.MaxMsgType is not the last message type")
	require.True(t, strings.HasPrefix((maxState+1).String(), "state("), "node has task states past maxState: update wire")
	require.False(t, strings.HasPrefix(maxState.String(), "state("))
	require.Equal(t, node.AtMostOnce, maxDelivery)
	require.Equal(t, node.RejectMoved, maxReject)
	require.True(t, strings.HasPrefix((maxReject+1).String(), "reject("), "node has rejects past maxReject: update wire")
	require.True(t, strings.HasPrefix((maxErrKind+1).String(), "error_kind("), "node has error kinds past maxErrKind: update wire")
}

func FuzzDecodeFrame(f *testing.F) {
	for typ := node.MsgType(1); typ <= node.MaxMsgType; typ++ {
		f.Add(AppendFrame(nil, fullMessage(typ, fullTask())))
		f.Add(AppendFrame(nil, node.Message{Type: typ}))
		f.Add(validPayload(fullMessage(typ, fullTask())))
	}
	f.Add(AppendFrame(nil, node.Message{Type: node.MsgStore, Task: &node.Task{ETA: time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)}}))
	two := AppendFrame(AppendFrame(nil, fullMessage(node.MsgClaim, nil)), fullMessage(node.MsgStore, fullTask()))
	f.Add(two)
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		b := make([]byte, rng.IntN(64))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		f.Add(b)
		// Random bytes behind a plausible header.
		f.Add(frameOf(append([]byte{Version, byte(1 + rng.IntN(int(node.MaxMsgType)))}, b...)...))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkDecode(t, b)
		// Also read the input as a payload behind a correct length, so that mutations
		// that insert or delete bytes still reach the message decoder.
		if len(b) <= MaxFrame {
			checkDecode(t, frameOf(b...))
		}
	})
}

// checkDecode asserts that b decodes to an error or to a message whose re-encoding
// decodes to the same message.
func checkDecode(t *testing.T, b []byte) {
	m, n, err := DecodeFrame(b)
	if err != nil {
		if n != 0 {
			t.Fatalf("error %v with n=%d", err, n)
		}
		if !errors.Is(err, ErrShort) && !errors.Is(err, ErrMalformed) {
			t.Fatalf("error %v is neither ErrShort nor ErrMalformed", err)
		}
		return
	}
	if n < headerLen+1 || n > len(b) {
		t.Fatalf("n=%d for %d bytes", n, len(b))
	}
	// ReadFrame agrees with DecodeFrame.
	rm, _, rerr := ReadFrame(bufio.NewReader(bytes.NewReader(b)), nil)
	if rerr != nil {
		t.Fatalf("ReadFrame failed where DecodeFrame succeeded: %v", rerr)
	}
	require.Equal(t, m, rm)
	again := AppendFrame(nil, m)
	m2, n2, err := DecodeFrame(again)
	if err != nil {
		t.Fatalf("re-encoded frame does not decode: %v\nmessage %#v", err, m)
	}
	require.Equal(t, len(again), n2)
	require.Equal(t, m, m2)
}

func BenchmarkAppendFrame(b *testing.B) {
	m := fullMessage(node.MsgStore, fullTask())
	var buf []byte
	for b.Loop() {
		buf = AppendFrame(buf[:0], m)
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkDecodeFrame(b *testing.B) {
	frame := AppendFrame(nil, fullMessage(node.MsgStore, fullTask()))
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		if _, _, err := DecodeFrame(frame); err != nil {
			b.Fatal(err)
		}
	}
}

func TestTaskHelpers(t *testing.T) {
	task := fullTask()
	task.ListVersion = 0 // not AppendTask's: a message and a record carry it after their other fields
	b := AppendTask([]byte("x"), task)
	require.Equal(t, "x", string(b[:1]))
	b = append(b, "tail"...)
	f := NewFields(b[1:])
	got := f.Task()
	require.NoError(t, f.Err())
	require.Equal(t, task, got)
	require.Equal(t, len("tail"), f.Len())
	n := len(b) - 1 - len("tail")
	for cut := 0; cut < n; cut++ {
		f := NewFields(b[1 : 1+cut])
		f.Task()
		require.ErrorIs(t, f.Err(), ErrMalformed, "cut at %d", cut)
	}
	// The other fields round-trip too.
	when := time.Date(3000, 1, 2, 3, 4, 5, 6, time.UTC)
	f = NewFields(AppendTime(AppendString(nil, "héllo"), when))
	require.Equal(t, "héllo", f.String("s"))
	require.Equal(t, when, f.Time("t"))
	require.NoError(t, f.Err())
	require.Zero(t, f.Len())
}

// A setting as version 2 wrote it (net/disk's older records hold such) reads with
// the fields that differ from the defaults as explicit; version 3 keeps Explicit
// and Deleted, and refuses fields it does not know.
func TestSettingFormats(t *testing.T) {
	cfg := node.DefaultQueueConfig()
	cfg.Rate, cfg.BucketSize, cfg.Retry.MaxDoublings = 5, 1, 16
	set := &node.QueueSetting{Queue: "q", Config: cfg, Explicit: node.FieldRate | node.FieldMaxDoublings, Deleted: true, Version: 9, Origin: "n1"}
	b := AppendSetting(nil, set)

	f := NewFields(b)
	require.Equal(t, set, f.Setting())
	require.NoError(t, f.Err())
	require.Zero(t, f.Len())

	v2 := b[:len(b)-len(binary.AppendUvarint(nil, uint64(set.Explicit)))-1] // without the explicit fields and the deletion mark
	f = NewFields(v2)
	got := f.SettingFormat2()
	require.NoError(t, f.Err())
	require.Zero(t, f.Len())
	want := *set
	want.Explicit, want.Deleted = node.FieldRate|node.FieldBucketSize, false
	require.Equal(t, &want, got)

	bad := append(append([]byte(nil), v2...), 0x80, 0x80, 0x01, 0) // explicit = 1<<14: no such field
	f = NewFields(bad)
	require.Nil(t, f.Setting())
	require.ErrorContains(t, f.Err(), "unknown setting fields")
}

// A moved task's list version travels last, only when not 0: a frame without it
// is byte for byte what it was, one with it round-trips, and a 0 written out is
// refused.
func TestTaskListVersionTrails(t *testing.T) {
	m := fullMessage(node.MsgMove, fullTask())
	m.Task.ListVersion = 0 // the list it was enqueued with: nothing written
	plain := AppendFrame(nil, m)
	moved := *m.Task
	moved.ListVersion = 300
	m.Task = &moved
	frame := AppendFrame(nil, m)
	require.Equal(t, len(plain)+2, len(frame), "two bytes more: the uvarint 300")
	require.Equal(t, m, roundTrip(t, m))

	zero := append(plain[:len(plain):len(plain)], 0)
	binary.BigEndian.PutUint32(zero, uint32(len(zero)-4))
	_, _, err := DecodeFrame(zero)
	require.ErrorIs(t, err, ErrMalformed)
}
