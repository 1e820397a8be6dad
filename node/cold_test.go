package node

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"
)

// coldWhere sets, on an entry going cold, the fields the cold form does not
// encode as values of their own, and why each needs none.
var coldWhere = map[string]func(e *entry){
	"entryExtra": func(e *entry) { e.entryExtra = &noExtra },  // coolable: none of its own
	"timerKind":  func(e *entry) { e.timerKind = timerFire },  // coolable: the replica timer
	"state":      func(e *entry) { e.state = StateScheduled }, // coolable (the tomb has its byte)
	"timerIdx":   func(e *entry) { e.timerIdx = 0 },           // in the cold heap, not the node's
	"frozen":     func(e *entry) { e.frozen = false },         // set on the entry a tomb replaced
}

// setEveryField sets every field of e to a value that is not zero (each another),
// but task and the fields coldWhere names; a field of a type it does not know
// fails the test, so that a field added to entry is looked at here.
func setEveryField(t *testing.T, e *entry) {
	v := reflect.ValueOf(e).Elem()
	base := epoch.Add(30 * 24 * time.Hour)
	for i := range v.NumField() {
		name := v.Type().Field(i).Name
		if name == "task" || coldWhere[name] != nil {
			continue
		}
		// The fields are unexported: reach them through their address.
		f := reflect.NewAt(v.Field(i).Type(), unsafe.Pointer(v.Field(i).UnsafeAddr())).Elem()
		switch f.Interface().(type) {
		case time.Time:
			f.Set(reflect.ValueOf(base.Add(time.Duration(i) * time.Second)))
		case int64:
			f.SetInt(base.Add(time.Duration(i) * time.Minute).UnixNano())
		case int, int32:
			f.SetInt(int64(i + 1))
		case uint64:
			f.SetUint(uint64(1000 + i))
		default:
			t.Fatalf("entry.%s is of type %s: teach setEveryField (and the cold form) about it", name, f.Type())
		}
	}
	for _, set := range coldWhere {
		set(e)
	}
}

// A cold task decodes to the entry it was encoded from, field by field: every
// field of entry is set (a field added is set too, and fails here until the cold
// form keeps it or coolable requires it empty), with a full task.
func TestColdRoundTrip(t *testing.T) {
	h := newHarness(t, 1, 1, nil)
	n := h.node("n1")
	for _, mut := range []func(e *entry){
		func(e *entry) {}, // every field set
		func(e *entry) { e.task.Body, e.task.Headers, e.task.Name, e.floor = nil, nil, "", 0 }, // a plain enqueue
	} {
		e := fullEntry("0b8e3c1e-7a52-4c55-9a3b-2a8d6c0f4e11")
		e.task.ETA = epoch.Add(30 * 24 * time.Hour)
		setEveryField(t, e)
		mut(e)
		rec, ok := n.encodeCold(e, [16]byte{1, 2})
		require.True(t, ok)
		h := n.coldArena.put(rec) | coldHandle
		got := n.decodeHeld(e.task.ID, h)
		require.Equal(t, *e.task, *got.task)
		require.Same(t, &noExtra, got.entryExtra)
		e.task, got.task = nil, nil
		require.Equal(t, *e, *got)
		require.Equal(t, e.timerSeq, n.coldSeq(h))
		n.releaseTomb(h)
	}
}

// coldNamesGone, which reads a cold tomb only up to the replica list, reads it
// as decodeTask does: for tasks with and without headers, body, name and words
// out of the dictionary, it says what the decoded list says.
func TestColdNamesGoneReadsTheList(t *testing.T) {
	h := newHarness(t, 1, 1, nil) // the roster lists n1 alone
	n := h.node("n1")
	long := "http://w/" + strings.Repeat("x", maxWordLen) // written in full, not as a word
	for i, mut := range []func(e *entry){
		func(e *entry) {},
		func(e *entry) { e.task.Replicas = []NodeID{"n1"} },
		func(e *entry) { e.task.Body, e.task.Headers, e.task.Name = nil, nil, "" },
		func(e *entry) { e.task.URL, e.task.Replicas = long, []NodeID{"n1"} },
		func(e *entry) { e.task.URL, e.task.Headers = long, []Header{{long, "v"}} },
		func(e *entry) { e.task.Replicas = []NodeID{NodeID(long), "n1"} },
	} {
		e := fullEntry("0b8e3c1e-7a52-4c55-9a3b-2a8d6c0f4e11")
		setEveryField(t, e)
		mut(e)
		rec, ok := n.encodeCold(e, [16]byte{1, 2})
		require.True(t, ok)
		hd := n.coldArena.put(rec) | coldHandle
		gone := false
		for _, r := range n.decodeHeld(e.task.ID, hd).task.Replicas {
			gone = gone || !n.roster.Has(r)
		}
		require.Equal(t, gone, n.coldNamesGone(hd), "case %d", i)
		n.releaseTomb(hd)
	}
}

// Every field of entry is one setEveryField sets or one coldWhere explains, and
// coolable holds of the entry coldWhere leaves: a cold entry is what coolable
// allows.
func TestColdExplainsEveryField(t *testing.T) {
	e := &entry{}
	setEveryField(t, e)
	require.Equal(t, timerFire, e.timerKind)
	require.Same(t, &noExtra, e.entryExtra)
	for name := range coldWhere {
		_, ok := reflect.TypeOf(entry{}).FieldByName(name)
		require.True(t, ok, "coldWhere names a field entry does not have: %s", name)
	}
}

// coldCluster is four members (n4 joined, so that a leader keeps the roster)
// whose tasks go cold as early as they may (cold), or never.
func coldCluster(t *testing.T, cold bool) *harness {
	return grownToFour(t, 31, func(c *Config) {
		c.PendingDetail, c.ColdAhead = 1, time.Nanosecond
		if !cold {
			c.PendingDetail = 1 << 30
		}
	})
}

// sentAroundCold enqueues tasks due in ten minutes on four members, then
// addresses them while they wait (a cancel, a status query, a lookup, a listing,
// a second enqueue of a name, a purge of another queue, the removal of a member,
// which moves the tasks it held, and a drain), lets them come due (claims,
// deliveries, outcomes) and returns what the nodes sent. With cold it checks that
// tasks were cold when each was addressed.
func sentAroundCold(t *testing.T, cold bool) []string {
	h := coldCluster(t, cold)
	colds := func() int {
		c := 0
		for _, id := range h.order {
			c += h.node(id).Colds()
		}
		return c
	}
	var ids []string
	for i := range 16 {
		q := "default"
		if i%4 == 3 {
			q = "other"
		}
		r := h.enqueue(h.order[i%4], EnqueueRequest{Queue: q, Name: fmt.Sprintf("job-%d", i),
			URL: "http://w/hook", Countdown: 10*time.Minute + time.Duration(i)*time.Second})
		h.run(h.elapsed() + 100*time.Millisecond)
		ids = append(ids, acked(t, r))
	}
	h.run(h.elapsed() + time.Second)
	if cold {
		require.Greater(t, colds(), 30, "most replicas of the 16 tasks are cold")
	}
	var cancelled TaskState
	h.node("n1").Cancel(ids[0], func(s TaskState, err error) { require.NoError(t, err); cancelled = s })
	var described, looked TaskStatus
	h.node("n2").Describe(ids[1], func(s TaskStatus, err error) { require.NoError(t, err); described = s })
	h.node("n3").Lookup(ids[2], func(s TaskStatus, err error) { require.NoError(t, err); looked = s })
	listed := h.node("n4").ListTasks("default", StateScheduled, "", 100)
	second := h.enqueue("n3", EnqueueRequest{Queue: "default", Name: "job-5", URL: "http://w/hook2"})
	h.node("n2").PurgeQueue("other", func(QueueSetting, int, error) {})
	h.run(h.elapsed() + 5*time.Second)
	require.Equal(t, StateCancelled, cancelled)
	require.Equal(t, StateScheduled, described.State)
	require.Equal(t, ids[1], described.Task.ID)
	require.NotEmpty(t, listed)
	require.True(t, second.done)
	require.Equal(t, StateScheduled, looked.State)
	require.Equal(t, "job-2", looked.Task.Name)
	if cold {
		require.Greater(t, colds(), 10, "tasks are cold before the removal")
	}
	leader := h.leaders()[0]
	var gone NodeID
	for _, id := range h.order {
		if id != leader && gone == "" {
			gone = id
		}
	}
	h.remove(leader, gone, time.Minute)
	h.run(h.elapsed() + 30*time.Second)
	for _, id := range h.order {
		if id != gone {
			require.Zero(t, h.node(id).TasksOnRemoved(), "%s: every task moved off %s", id, gone)
		}
	}
	h.node(h.order[len(h.order)-1]).Drain()
	h.run(h.elapsed() + 15*time.Minute)
	done := 0
	for _, id := range ids {
		for _, r := range h.order {
			if h.stateOn(r, id) == StateSucceeded {
				done++
				break
			}
		}
	}
	require.GreaterOrEqual(t, done, 10, "the tasks neither cancelled nor purged came due and succeeded")
	return describeSent(h)
}

// Cold tasks change nothing a node sends: four members whose pending tasks go cold
// at once and four whose tasks never do send the same messages at the same times,
// around claims, a cancel, status queries, a name enqueued again, a purge, moves
// off a removed member, a drain and the deliveries.
func TestColdTasksChangeNothingSent(t *testing.T) {
	cold := sentAroundCold(t, true)
	require.Equal(t, sentAroundCold(t, false), cold)
	for _, typ := range []string{"Type:claim ", "Type:move ", "Type:outcome ", "Type:status "} {
		found := false
		for _, s := range cold {
			found = found || strings.Contains(s, typ)
		}
		require.True(t, found, "no message of %s was sent: the run compared less than it says", typ)
	}
}

// A cold task comes due in its place: with every pending task cold, the tasks
// fire in the order of their due times, as they would hot.
func TestColdTasksFireInOrder(t *testing.T) {
	h := newHarness(t, 1, 1, func(c *Config) { c.PendingDetail, c.ColdAhead = 1, time.Nanosecond })
	var ids []string
	for i := range 20 {
		r := h.enqueue("n1", req(time.Minute+time.Duration(20-i)*time.Second))
		h.run(h.elapsed() + 10*time.Millisecond)
		ids = append(ids, acked(t, r))
	}
	h.run(h.elapsed() + time.Second)
	n := h.node("n1")
	require.Equal(t, 19, n.Colds(), "all but the most recent went cold")
	require.NoError(t, n.CheckCounts())
	st, ok := n.Task(ids[0])
	require.True(t, ok)
	require.Equal(t, StateScheduled, st.State, "a cold task answers its status")
	h.run(h.elapsed() + 2*time.Minute)
	require.Zero(t, n.Colds())
	var order []string
	for _, d := range h.deliveries {
		order = append(order, d.TaskID)
	}
	want := make([]string, len(ids))
	for i, id := range ids {
		want[len(ids)-1-i] = id
	}
	require.Equal(t, want, order, "delivered in due order")
	require.NoError(t, n.CheckCounts())
}

// liveChunks counts the chunks of an arena that are not dropped.
func liveChunks(a *tombArena) int {
	c := 0
	for _, ch := range a.chunks {
		if ch.buf != nil {
			c++
		}
	}
	return c
}

// Cold tasks thaw in due order, not in the order they went cold: a chunk of their
// tombs whose tasks mostly fired has the rest moved, so that a few tasks due late
// do not keep every chunk; they still decode, count and fire as before. Tasks
// thawed and cold again leave stale timers in the cold heap, dropped once they
// are most of it.
func TestColdChunksAndHeapStayCompact(t *testing.T) {
	h := newHarness(t, 3, 1, func(c *Config) { c.PendingDetail, c.ColdAhead = 1, time.Nanosecond })
	n := h.node("n1")
	var ids, late []string
	var rs []*enqResult
	for i := range 3000 {
		countdown := 2 * time.Minute
		if i%100 == 0 {
			countdown = 2 * time.Hour
		}
		r := h.enqueue("n1", req(countdown))
		if i%500 == 499 {
			h.run(h.elapsed() + 10*time.Millisecond)
		}
		rs = append(rs, r)
	}
	h.run(h.elapsed() + time.Second)
	for i, r := range rs {
		ids = append(ids, acked(t, r))
		if i%100 == 0 {
			late = append(late, ids[i])
		}
	}
	require.Equal(t, 2999, n.Colds())
	before := liveChunks(&n.coldArena)
	require.Greater(t, before, 3, "the cold tombs fill several chunks")

	// A Store repeated (as a coordinator resends it) thaws its task, which goes
	// cold again, and leaves a stale item in the cold heap: three rounds over
	// every task would leave 9,000.
	for range 3 {
		for _, id := range ids {
			st, _ := n.Task(id)
			n.Step(Message{Type: MsgStore, From: "n2", To: "n1", TaskID: id, Task: st.Task})
		}
		h.run(h.elapsed() + time.Millisecond)
	}
	require.Equal(t, 2999, n.Colds())
	require.GreaterOrEqual(t, n.ColdsMade(), uint64(4*2999), "every task thawed and went cold again three times")
	require.Empty(t, n.Refused())
	require.LessOrEqual(t, len(n.cold), 2*n.Colds()+1024, "stale cold timers are dropped once they are most")
	require.NoError(t, n.CheckCounts())

	h.run(h.elapsed() + 3*time.Minute)
	require.Equal(t, len(late), n.Colds(), "the tasks due late are cold still")
	t.Logf("chunks %d before %d", liveChunks(&n.coldArena), before)
	require.LessOrEqual(t, liveChunks(&n.coldArena), 2, "their tombs were moved off the chunks that emptied")
	require.NoError(t, n.CheckCounts())
	for _, id := range late {
		st, ok := n.Task(id)
		require.True(t, ok)
		require.Equal(t, StateScheduled, st.State)
	}
	h.run(h.elapsed() + 2*time.Hour)
	require.Zero(t, n.Colds())
	for _, id := range late {
		st, _ := n.Task(id)
		require.Equal(t, StateSucceeded, st.State, "task %s fired after its tomb moved", id)
	}
	require.NoError(t, n.CheckCounts())
}

// A long line of tasks to go cold (a restart puts every pending task of the log
// in it at once) drains over several inputs, coolPerInput at a time, not in one.
func TestColdLineDrainsOverInputs(t *testing.T) {
	h := newHarness(t, 1, 1, func(c *Config) { c.PendingDetail = 1 << 30 })
	for i := range 2*coolPerInput + 100 {
		h.enqueue("n1", req(time.Hour+time.Duration(i)*time.Millisecond))
	}
	h.run(h.elapsed() + time.Second)
	n := h.node("n1")
	require.Zero(t, n.Colds())
	// As a restart with a line this long would see it; then one input.
	n.cfg.PendingDetail = 1
	n.Describe("0b8e3c1e-7a52-4c55-9a3b-2a8d6c0f4e11", func(TaskStatus, error) {})
	require.Equal(t, coolPerInput, n.Colds(), "one input made coolPerInput tasks cold")
	for range 3 {
		n.Describe("0b8e3c1e-7a52-4c55-9a3b-2a8d6c0f4e11", func(TaskStatus, error) {})
	}
	require.Equal(t, 2*coolPerInput+99, n.Colds(), "the next inputs drained the line")
	require.NoError(t, n.CheckCounts())
}
