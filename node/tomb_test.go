package node

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

// notInTomb names the fields of entry and entryExtra that tombFields does not
// list, and why: the tomb keeps them otherwise, or tombable requires them empty.
var notInTomb = map[string]string{
	"entryExtra":  "kept as a flag and the other fields",
	"task":        "encodeTask",
	"timerIdx":    "tombable: not in the timer heap (a cold task: in the cold heap, cold.go)",
	"timerSeq":    "only the timer heap reads it, and schedule sets it (a cold task's is in front of its tomb)",
	"timerKind":   "tombable: timerForget (coolable: timerFire)",
	"state":       "its own byte",
	"frozen":      "set on the entry a tomb replaced",
	"delivering":  "tombable: false",
	"moving":      "tombable: false",
	"move":        "tombable: nil",
	"bestPending": "tombable: nil",
	"pending":     "tombable: nil",
	"history":     "written after the fields",
}

// fieldPointer returns the address f (a tombFields element) points at.
func fieldPointer(f any) uintptr {
	switch p := f.(type) {
	case random:
		return reflect.ValueOf(p.p).Pointer()
	case sameOr:
		return reflect.ValueOf(p.p()).Pointer()
	}
	return reflect.ValueOf(f).Pointer()
}

// Every field of entry and entryExtra is in tombFields or notInTomb: a field
// added to either fails here until the tomb keeps it (or tombable excludes it).
func TestTombListsEveryField(t *testing.T) {
	e, x := &entry{}, &entryExtra{}
	listed := map[uintptr]bool{}
	for _, f := range tombFields(e, x) {
		listed[fieldPointer(f)] = true
	}
	for _, v := range []reflect.Value{reflect.ValueOf(e).Elem(), reflect.ValueOf(x).Elem()} {
		for i := range v.NumField() {
			name := v.Type().Field(i).Name
			if _, ok := notInTomb[name]; ok {
				continue
			}
			if !listed[v.Field(i).Addr().Pointer()] {
				t.Errorf("field %s.%s is neither in tombFields nor in notInTomb", v.Type().Name(), name)
			}
		}
	}
	require.Len(t, listed, len(tombFields(e, x)), "tombFields lists a field twice")
}

// fullEntry returns a final entry, idle, with every field a tomb keeps set to a
// value that is not zero (and the round of its grant another than its own).
func fullEntry(id string) *entry {
	base := epoch.Add(time.Hour)
	t := &Task{ID: id, Queue: "q", Name: "a name", URL: "http://w/hook", Method: "PUT",
		Headers: []Header{{"X-A", "1"}, {"X-B", "two"}}, ContentType: "text/plain", Body: []byte("kept: dead"),
		ETA: base.Add(-time.Minute), Created: base.Add(-2 * time.Minute), Nonce: 1<<63 + 5, Delivery: AtMostOnce,
		Replicas: []NodeID{"n1", "n2", "n3"}, ListVersion: 7}
	e := &entry{task: t, timerKind: timerForget, state: StateDead}
	x := &entryExtra{history: []DeliveryAttempt{
		{Number: 3, Node: "n1", Start: base, Duration: 1500 * time.Millisecond, Status: 503},
		{Number: 4, Node: "n2", Start: base.Add(time.Second), InFlight: true, Error: ErrorTimeout},
	}}
	e.entryExtra = x
	for i, f := range tombFields(e, x) {
		switch p := f.(type) {
		case *uint64:
			*p = uint64(i + 1)
		case random:
			*p.p = 1<<63 | uint64(i)
		case sameOr:
			*p.p() = 1<<62 | uint64(i)
		case *int64:
			*p = base.Add(time.Duration(i) * time.Second).UnixNano()
		case *time.Duration:
			*p = time.Duration(i+1) * time.Millisecond
		case *int:
			*p = -(i + 1)
		case *bool:
			*p = true
		case *NodeID:
			*p = "n3"
		case *string:
			*p = fmt.Sprintf("field %d", i)
		case *time.Time:
			*p = base.Add(time.Duration(-i) * time.Second)
		default:
			panic(fmt.Sprintf("a tomb field of type %T", f))
		}
	}
	return e
}

// A tomb decodes to the entry it was encoded from, field by field, but the
// history's answer bodies and error texts (the compact form drops them).
func TestTombRoundTrip(t *testing.T) {
	h := newHarness(t, 1, 1, nil)
	n := h.node("n1")
	for _, mut := range []func(e *entry){
		func(e *entry) {}, // every field set
		func(e *entry) { e.entryExtra = &noExtra; e.task.Body = nil; e.task.Headers = nil }, // a replica that only stored it
		func(e *entry) { e.round = e.holderRound; e.rank = 0 },                              // its own grant's round
	} {
		e := fullEntry("0b8e3c1e-7a52-4c55-9a3b-2a8d6c0f4e11")
		mut(e)
		rec, ok := n.encodeTomb(e)
		require.True(t, ok)
		got := n.decodeTomb(e.task.ID, rec)
		require.Equal(t, *e.task, *got.task)
		want := *e.entryExtra
		for i := range want.history {
			want.history[i].Body, want.history[i].Message = "", ""
		}
		require.Equal(t, want, *got.entryExtra)
		if e.entryExtra == &noExtra {
			require.Same(t, &noExtra, got.entryExtra, "an entry without extra gets none back")
		}
		e.entryExtra, got.entryExtra, e.task, got.task = nil, nil, nil, nil
		require.Equal(t, *e, *got)
	}
}

// What the compact form loses: a status answer of a frozen task shows its
// attempts without the worker's answer nor the error text.
func TestTombKeepsAttemptsWithoutBodies(t *testing.T) {
	e := fullEntry("0b8e3c1e-7a52-4c55-9a3b-2a8d6c0f4e11")
	e.history[0].Body, e.history[1].Message = "Service Unavailable", "context deadline exceeded"
	h := newHarness(t, 1, 1, nil)
	n := h.node("n1")
	rec, ok := n.encodeTomb(e)
	require.True(t, ok)
	got := n.decodeTomb(e.task.ID, rec).history
	require.Len(t, got, 2)
	require.Equal(t, "", got[0].Body)
	require.Equal(t, "", got[1].Message)
	require.Equal(t, 503, got[0].Status)
	require.Equal(t, ErrorTimeout, got[1].Error)
}

// finishNamed enqueues named tasks due at once on a 3-node cluster whose nodes
// keep detail for one finished task, and lets them succeed.
func finishNamed(t *testing.T, tasks int) (*harness, []string) {
	h := newHarness(t, 3, 1, func(c *Config) { c.FinishedDetail = 1 })
	var rs []*enqResult
	for i := range tasks {
		rs = append(rs, h.enqueue(NodeID(fmt.Sprintf("n%d", i%3+1)), EnqueueRequest{Queue: "default",
			Name: fmt.Sprintf("job-%d", i), URL: "http://w/hook"}))
	}
	h.run(h.elapsed() + time.Minute)
	var ids []string
	for _, r := range rs {
		ids = append(ids, acked(t, r))
	}
	return h, ids
}

// Finished tasks beyond the FinishedDetail most recent are frozen on every
// replica, and answer as before: status, listing in ID order, counts, a second
// enqueue of their name, a late Outcome; they are forgotten after the dedup
// window as before.
func TestFinishedTasksFreezeAndAnswerAsBefore(t *testing.T) {
	h, ids := finishNamed(t, 30)
	for _, id := range h.order {
		n := h.node(id)
		require.Equal(t, 29, n.Tombs(), "node %s keeps one finished task in full", id)
		require.NoError(t, n.CheckCounts())
		require.Equal(t, 30, n.QueueCounts("default")[StateSucceeded])
		listed := n.ListTasks("default", StateSucceeded, "", 100)
		require.Len(t, listed, 30)
		for i, st := range listed {
			require.Equal(t, StateSucceeded, st.State)
			require.Equal(t, "http://w/hook", st.Task.URL)
			if i > 0 {
				require.Less(t, listed[i-1].Task.ID, st.Task.ID, "listed in ID order")
			}
		}
	}

	attempts := 0
	for _, id := range h.order {
		var st TaskStatus
		h.node(id).Lookup(ids[0], func(s TaskStatus, err error) { require.NoError(t, err); st = s })
		require.Equal(t, StateSucceeded, st.State)
		require.Equal(t, "job-0", st.Task.Name)
		for _, a := range st.Attempts {
			require.Equal(t, 200, a.Status)
			require.Equal(t, id, a.Node)
			attempts++
		}
	}
	require.Equal(t, 1, attempts, "the deliverer's attempt survives in the compact form")

	// The name is still taken.
	r := h.enqueue("n3", EnqueueRequest{Queue: "default", Name: "job-0", URL: "http://w/hook"})
	h.run(h.elapsed() + time.Second)
	require.True(t, r.done)
	var dup *DuplicateNameError
	require.True(t, errors.As(r.Err, &dup), "a second enqueue of a frozen task's name: %v", r.Err)
	require.Equal(t, ids[0], dup.ID)

	// A late cancel thaws the task and is answered with its state; the task is
	// in line to be frozen again.
	h.sent = nil
	h.node("n1").Step(Message{Type: MsgOutcome, From: "n2", To: "n1", TaskID: ids[1], State: StateCancelled})
	h.run(h.elapsed() + time.Second)
	answered := false
	for _, sm := range h.sent {
		if m := sm.Msg; m.Type == MsgOutcomeResp && m.TaskID == ids[1] && m.To == "n2" {
			require.Equal(t, StateSucceeded, m.State)
			answered = true
		}
	}
	require.True(t, answered, "the late cancel was answered")
	require.NotNil(t, h.node("n1").tasks[ids[1]], "thawed: the most recent in line to be frozen again")
	require.Equal(t, 29, h.node("n1").Tombs(), "the one kept in full before was frozen instead")
	require.NoError(t, h.node("n1").CheckCounts())

	// Past the dedup window every task is forgotten, frozen or not.
	h.run(h.elapsed() + 2*time.Hour)
	for _, id := range h.order {
		require.Empty(t, h.node(id).TaskIDs(), "node %s", id)
		require.Zero(t, h.node(id).Tombs())
		require.NoError(t, h.node(id).CheckCounts())
	}
}

// describeSent renders what the harness's nodes sent, by value (a Task by its
// fields, not its address).
func describeSent(h *harness) []string {
	var out []string
	for _, sm := range h.sent {
		m := sm.Msg
		task := "-"
		if m.Task != nil {
			task = fmt.Sprintf("%+v", *m.Task)
		}
		m.Task, m.Setting, m.Schedule, m.Roster, m.Member = nil, nil, nil, nil, nil
		attempts := m.Attempts
		m.Attempts = nil
		type plain Message // every field, not Message.String's few
		out = append(out, fmt.Sprintf("%v %v %+v task=%s attempts=%d", sm.At, sm.Dropped, plain(m), task, len(attempts)))
	}
	return out
}

// sentAround runs named tasks to success on a 3-node cluster whose nodes keep
// detail for `detail` finished tasks, then addresses the finished tasks (a late
// cancel, status queries, a second enqueue of a name) and drains every node, and
// returns what the nodes sent.
func sentAround(t *testing.T, detail int) []string {
	h := newHarness(t, 3, 1, func(c *Config) { c.FinishedDetail = detail })
	var ids []string
	for i := range 12 {
		r := h.enqueue(NodeID(fmt.Sprintf("n%d", i%3+1)), EnqueueRequest{Queue: "default",
			Name: fmt.Sprintf("job-%d", i), URL: "http://w/hook"})
		h.run(h.elapsed() + 100*time.Millisecond)
		ids = append(ids, acked(t, r))
	}
	h.run(h.elapsed() + time.Minute)
	h.node("n1").Step(Message{Type: MsgOutcome, From: "n2", To: "n1", TaskID: ids[3], State: StateCancelled})
	h.node("n2").Describe(ids[4], func(TaskStatus, error) {})
	h.enqueue("n3", EnqueueRequest{Queue: "default", Name: "job-5", URL: "http://w/hook"})
	h.run(h.elapsed() + time.Second)
	for _, id := range h.order {
		h.node(id).Drain()
	}
	h.run(h.elapsed() + time.Minute)
	return describeSent(h)
}

// Freezing changes nothing a node sends: the same run with every finished task
// frozen at once and with none frozen sends the same messages at the same times,
// a drain's included.
func TestFreezingChangesNothingSent(t *testing.T) {
	frozen := sentAround(t, 1)
	require.Equal(t, sentAround(t, 1_000_000), frozen)
	releases := 0
	for _, s := range frozen {
		if strings.Contains(s, "Type:release ") {
			releases++
		}
	}
	// Every task is finished when the nodes drain: the deliverers' attempts are not
	// released (TestDrainLeavesFinishedAttemptsAlone says why).
	require.Zero(t, releases, "the drain released a finished task's attempt")
}

// rawKey takes exactly the canonical lower-case UUIDs, and gives their 16 bytes.
func TestRawKeyTakesCanonicalUUIDsOnly(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 200 {
		var u uuid.UUID
		for j := range u {
			u[j] = byte(r.Uint32())
		}
		id := u.String()
		k, ok := rawKey(id)
		require.True(t, ok, id)
		require.Equal(t, [16]byte(u), k, id)
		require.Equal(t, id, rawIDOf(k).id())
		for i := range id {
			for _, c := range []byte{'-', 'g', 'A', 'F', '/', ':', '`', 0, 0xff} {
				if c == id[i] {
					continue
				}
				bad := id[:i] + string([]byte{c}) + id[i+1:]
				_, ok := rawKey(bad)
				require.False(t, ok, "%q", bad)
			}
		}
		for _, bad := range []string{id[1:], id + "0", strings.ReplaceAll(id, "-", ""), strings.ToUpper(id)} {
			if bad == id {
				continue
			}
			_, ok := rawKey(bad)
			require.False(t, ok, "%q", bad)
		}
	}
}

func BenchmarkRawKey(b *testing.B) {
	id := uuid.UUID{0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x0f, 0xed, 0xcb, 0xa9, 0x87, 0x65, 0x43, 0x21}.String()
	var sum byte
	for b.Loop() {
		k, _ := rawKey(id)
		sum += k[15]
	}
	if sum == 1 {
		b.Log(sum) // keeps the result alive
	}
}
