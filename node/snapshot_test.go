package node

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The snapshot's property: a node restored from a snapshot taken between two
// inputs, given the inputs the original takes from then on, does what the original
// does. A harness cluster runs with faults; one node is the original, with durable
// storage, and at random instants it is snapshotted and a copy restored from the
// snapshot. The copy takes every input the original takes (harness.mirror, the
// alarms and syncs of the original ringing the copy's of the same numbers, the
// same clients' calls, the original's random draws); neither knows the other.
// At the next instant the two must have made the same outputs, in the same order.

// twin is the original node and its copy of the moment.
type twin struct {
	t        *testing.T
	h        *harness
	cfg      Config
	orig     *Node
	copy     *Node
	origOut  []any // what the original did since the copy was made
	copyOut  []any // what the copy did
	draws    []draw
	alarms   map[uint64]func() // the copy's armed alarms, by number
	syncs    []func()          // the copy's syncs asked, oldest first
	gen      int               // copies made
	recs     []Record          // the original's log
	sizes    []int             // every snapshot's size
	tasks    []int             // the tasks the original held at each
	compared map[string]int    // the outputs found the same, by kind
}

// The outputs compared.
type (
	outSend     struct{ M Message }
	outDispatch struct{ D Delivery }
	outAppend   struct{ Recs []Record }
	outSync     struct{}
	outAlarm    struct {
		ID uint64
		D  time.Duration
	}
	outReply struct {
		ID ReplyID
		A  Answer
	}
	outState struct {
		TaskID   string
		From, To TaskState
		Attempt  uint64
	}
	outDecided struct {
		TaskID string
		State  TaskState
		Reason string
	}
	outEnded struct {
		TaskID string
		A      DeliveryAttempt
		Due    time.Time
	}
)

// draw is one value the original drew from its random source.
type draw struct {
	kind string
	arg  int64
	v    uint64
}

// outputs is where one node of the pair writes what it does.
type outputs struct {
	tw   *twin
	copy bool
}

func (o outputs) add(v any) {
	if o.copy {
		o.tw.copyOut = append(o.tw.copyOut, v)
	} else {
		o.tw.origOut = append(o.tw.origOut, v)
	}
}

func (o outputs) TaskStateChanged(t *Task, from, to TaskState, attempt uint64) {
	o.add(outState{t.ID, from, to, attempt})
}
func (o outputs) TaskDecided(t *Task, s TaskState, reason string) {
	o.add(outDecided{t.ID, s, reason})
}
func (o outputs) DeliveryEnded(t *Task, a DeliveryAttempt, due time.Time) {
	o.add(outEnded{t.ID, a, due})
}

// origEnv is the original's: the harness's network and worker, with its outputs
// written down.
type origEnv struct {
	outputs
	net  fakeNetwork
	disp *fakeDispatcher
	rand *rand.Rand
}

func (e origEnv) Now() time.Time { return e.tw.h.now }
func (e origEnv) AfterFunc(time.Duration, func()) func() bool {
	panic("an AlarmClock's AfterFunc")
}

func (e origEnv) AfterAlarm(id uint64, d time.Duration, f func()) func() bool {
	e.add(outAlarm{id, d})
	tw := e.tw
	ev := tw.h.schedule(d, func() {
		f()
		if g := tw.alarms[id]; tw.copy != nil && g != nil {
			delete(tw.alarms, id)
			g()
		}
	})
	return func() bool {
		was := !ev.ran && !ev.cancelled
		ev.cancelled = true
		return was
	}
}

func (e origEnv) Send(m Message)          { e.add(outSend{m}); e.net.Send(m) }
func (e origEnv) Dispatch(d Delivery)     { e.add(outDispatch{d}); e.disp.Dispatch(d) }
func (e origEnv) Durable() bool           { return true }
func (e origEnv) Load() ([]Record, error) { return e.tw.recs, nil }
func (e origEnv) Append(recs ...Record) {
	e.add(outAppend{slices.Clone(recs)})
	e.tw.recs = append(e.tw.recs, recs...)
}

func (e origEnv) Sync(done func()) {
	e.add(outSync{})
	tw := e.tw
	tw.h.schedule(time.Millisecond, func() {
		done()
		if tw.copy != nil {
			require.NotEmpty(tw.t, tw.syncs, "the original's sync ended; the copy asked none")
			g := tw.syncs[0]
			tw.syncs = tw.syncs[1:]
			g()
		}
	})
}

func (e origEnv) Uint64() uint64 { v := e.rand.Uint64(); e.drew("Uint64", 0, v); return v }
func (e origEnv) IntN(n int) int {
	v := e.rand.IntN(n)
	e.drew("IntN", int64(n), uint64(v))
	return v
}
func (e origEnv) Int64N(n int64) int64 {
	v := e.rand.Int64N(n)
	e.drew("Int64N", n, uint64(v))
	return v
}

func (e origEnv) drew(kind string, arg int64, v uint64) {
	if e.tw.copy != nil {
		e.tw.draws = append(e.tw.draws, draw{kind, arg, v})
	}
}

// copyEnv is the copy's: its outputs go nowhere but to its list; its alarms and
// syncs wait for the original's; it draws what the original drew.
type copyEnv struct{ outputs }

func (e copyEnv) Now() time.Time { return e.tw.h.now }
func (e copyEnv) AfterFunc(time.Duration, func()) func() bool {
	panic("an AlarmClock's AfterFunc")
}

func (e copyEnv) AfterAlarm(id uint64, d time.Duration, f func()) func() bool {
	e.add(outAlarm{id, d})
	e.tw.alarms[id] = f
	return func() bool { delete(e.tw.alarms, id); return true }
}

func (e copyEnv) Send(m Message)          { e.add(outSend{m}) }
func (e copyEnv) Dispatch(d Delivery)     { e.add(outDispatch{d}) }
func (e copyEnv) Durable() bool           { return true }
func (e copyEnv) Load() ([]Record, error) { panic("a restored node loads nothing") }
func (e copyEnv) Append(recs ...Record)   { e.add(outAppend{slices.Clone(recs)}) }
func (e copyEnv) Sync(done func())        { e.add(outSync{}); e.tw.syncs = append(e.tw.syncs, done) }

func (e copyEnv) Uint64() uint64       { return e.draw("Uint64", 0) }
func (e copyEnv) IntN(n int) int       { return int(e.draw("IntN", int64(n))) }
func (e copyEnv) Int64N(n int64) int64 { return int64(e.draw("Int64N", n)) }

func (e copyEnv) draw(kind string, arg int64) uint64 {
	tw := e.tw
	require.NotEmpty(tw.t, tw.draws, "the copy drew %s(%d), the original did not", kind, arg)
	d := tw.draws[0]
	tw.draws = tw.draws[1:]
	require.Equal(tw.t, draw{kind, arg, d.v}, d, "the copy drew otherwise than the original")
	return d.v
}

func (tw *twin) env(copy bool) Env {
	if copy {
		e := copyEnv{outputs{tw, true}}
		return Env{Clock: e, Network: e, Dispatcher: e, Storage: e, Rand: e, Observer: e.outputs}
	}
	h := tw.h
	e := origEnv{outputs: outputs{tw, false}, net: fakeNetwork{h: h}, disp: &fakeDispatcher{h: h, id: tw.cfg.ID},
		rand: rand.New(rand.NewPCG(h.seed, 7))}
	return Env{Clock: e, Network: e, Dispatcher: e, Storage: e, Rand: e, Observer: e.outputs}
}

// call makes a client's request of the original and of the copy, through the
// API's adapter (replies.go). The original's answer counts only for a request the
// copy took too: one made since the copy was restored.
func (tw *twin) call(f func(n *Node, id ReplyID)) {
	gen := tw.gen
	ask := func(n *Node, out *[]any, mine func() bool) {
		n.input(func() {
			var id ReplyID
			id = n.await(func(a Answer) {
				if mine() {
					*out = append(*out, outReply{id, a})
				}
			})
			f(n, id)
		})
	}
	ask(tw.orig, &tw.origOut, func() bool { return tw.gen == gen })
	if tw.copy != nil {
		cp := tw.copy
		ask(cp, &tw.copyOut, func() bool { return tw.copy == cp })
	}
}

// checkpoint compares what the two did since the last one, then takes a new
// snapshot of the original and restores a new copy from it.
func (tw *twin) checkpoint() {
	tw.compare()
	snap, err := tw.orig.Snapshot()
	require.NoError(tw.t, err)
	tw.sizes = append(tw.sizes, len(snap))
	tw.tasks = append(tw.tasks, len(tw.orig.tasks)+len(tw.orig.tombs))
	tw.compared["frozen"] += len(tw.orig.tombs) - tw.orig.colds
	tw.compared["cold"] += tw.orig.colds
	tw.compared["forgotten"] = int(tw.orig.forgetHead)
	tw.alarms, tw.syncs, tw.draws = map[uint64]func(){}, nil, nil
	cp, err := Restore(tw.cfg, tw.env(true), snap)
	require.NoError(tw.t, err)
	again, err := cp.Snapshot()
	require.NoError(tw.t, err)
	require.True(tw.t, bytes.Equal(snap, again), "the snapshot of the restored node differs from the one it was restored from")
	if d := stateDiff(tw.orig, cp); d != "" {
		tw.t.Fatalf("at %v, the restored node differs from the original: %s", tw.h.elapsed(), d)
	}
	// It armed again every alarm and sync the original holds, under their numbers.
	want := make([]uint64, 0, len(tw.orig.alarms))
	for id := range tw.orig.alarms {
		want = append(want, uint64(id))
	}
	require.ElementsMatch(tw.t, want, slices.Collect(maps.Keys(tw.alarms)))
	require.Len(tw.t, tw.syncs, len(tw.orig.syncs))
	tw.copy, tw.h.mirror[tw.cfg.ID] = cp, cp
	tw.gen++
	tw.origOut, tw.copyOut = nil, nil
}

func (tw *twin) compare() {
	if tw.copy == nil {
		return
	}
	for i := range max(len(tw.origOut), len(tw.copyOut)) {
		var o, c any
		if i < len(tw.origOut) {
			o = tw.origOut[i]
		}
		if i < len(tw.copyOut) {
			c = tw.copyOut[i]
		}
		tw.compared[fmt.Sprintf("%T", o)]++
		if m, ok := o.(outSend); ok {
			tw.compared[m.M.Type.String()]++
		}
		if !reflect.DeepEqual(o, c) {
			tw.t.Fatalf("at %v, output %d of %d/%d: the original did\n\t%s\nthe restored copy did\n\t%s",
				tw.h.elapsed(), i, len(tw.origOut), len(tw.copyOut), describeOut(o), describeOut(c))
		}
	}
	require.Empty(tw.t, tw.draws, "the copy drew less than the original")
	if d := stateDiff(tw.orig, tw.copy); d != "" {
		tw.t.Fatalf("at %v, after the same inputs the copy's state differs from the original's: %s", tw.h.elapsed(), d)
	}
}

func describeOut(v any) string {
	switch o := v.(type) {
	case outSend:
		return "send " + o.M.String()
	case nil:
		return "nothing"
	}
	return fmt.Sprintf("%T %+v", v, v)
}

func TestRestoredNodeGoesOnAsTheOriginal(t *testing.T) {
	seeds := 12
	if testing.Short() {
		seeds = 3
	}
	for seed := range uint64(seeds) {
		t.Run(fmt.Sprint("seed=", seed+1), func(t *testing.T) { runTwin(t, seed+1) })
	}
}

// runTwin runs one seed: 20 s of a three-node cluster under message loss,
// duplication and reordering, a partition of it and a crash of another, with a workload
// through every node (named tasks, an at-most-once and a rate-limited queue,
// failing and silent workers, lookups, cancels, listings, counts, queue changes, a
// schedule), the node snapshotted every 50-400 ms.
func runTwin(t *testing.T, seed uint64) {
	tw := &twin{t: t, compared: map[string]int{}}
	me := NodeID(fmt.Sprint("n", 1+seed%3)) // the node snapshotted; n3 crashes otherwise
	crashed := NodeID("n3")
	if me == crashed {
		crashed = "n2"
	}
	// Small details and windows: finished tasks freeze, pending ones go cold, final
	// ones are forgotten, all within the run.
	cfg := func(c *Config) {
		c.FinishedDetail, c.PendingDetail, c.ColdAhead, c.DedupWindow = 5, 5, time.Second, 8*time.Second
	}
	logs := map[NodeID]*[]Record{}
	h := newHarnessEnv(t, 3, seed, cfg, func(h *harness, id NodeID, env *Env) {
		if id == me {
			tw.h, tw.cfg.ID = h, id
			*env = tw.env(false)
			return
		}
		// Durable, so that a node grants a lease at once (no recovery wait).
		if logs[id] == nil {
			logs[id] = &[]Record{}
		}
		env.Storage = liveStorage{keptStorage{h, logs[id]}, id, h.nodes[id].inc}
	})
	tw.h, tw.orig, tw.cfg = h, h.node(me), h.nodes[me].cfg
	h.mirror = map[NodeID]*Node{}
	r := rand.New(rand.NewPCG(seed, 99))
	h.dropProb, h.dupProb, h.jitterMax = 0.03, 0.03, 30*time.Millisecond
	h.worker = func(d Delivery, k int) (int, time.Duration) {
		switch x := r.IntN(10); {
		case x < 6:
			return 200, time.Duration(r.IntN(200)) * time.Millisecond
		case x < 8:
			return 500, 20 * time.Millisecond
		default:
			return 0, 0
		}
	}
	amo, limited := DefaultQueueConfig(), DefaultQueueConfig()
	amo.Delivery = AtMostOnce
	limited.Rate, limited.BucketSize = 5, 2
	h.setQueues(map[string]QueueConfig{"amo": amo, "limited": limited})

	const end = 20 * time.Second
	queues := []string{"default", "amo", "limited"}
	var ids []string
	for i := range 80 {
		at := time.Duration(r.Int64N(int64(end - 5*time.Second)))
		req := EnqueueRequest{Queue: queues[r.IntN(3)], URL: "http://w/", Countdown: time.Duration(r.IntN(6000)) * time.Millisecond}
		if r.IntN(4) == 0 {
			req.Name = fmt.Sprint("job", r.IntN(10))
		}
		via := h.order[i%3]
		h.at(at, func() {
			if via != me {
				if !h.nodes[via].down {
					res := h.enqueue(via, req)
					h.at(h.elapsed()+time.Second, func() {
						if res.ID != "" {
							ids = append(ids, res.ID)
						}
					})
				}
				return
			}
			tw.call(func(n *Node, id ReplyID) { n.enqueue(req, id) })
		})
	}
	for range 25 {
		at := time.Duration(r.Int64N(int64(end)))
		k, pause := r.IntN(7), r.IntN(2) == 0
		h.at(at, func() {
			id := "no-such-task"
			if len(ids) > 0 {
				id = ids[r.IntN(len(ids))]
			}
			tw.call(func(n *Node, c ReplyID) {
				switch k {
				case 0:
					n.lookup(id, c)
				case 1:
					n.describe(id, c)
				case 2:
					n.cancel(id, c)
				case 3:
					n.listCluster("default", StateScheduled, "", 10, c)
				case 4:
					n.countCluster(c)
				case 5:
					q := DefaultQueueConfig()
					q.Retry.TaskRetryLimit = 2
					n.changeQueue(QueueSetting{Queue: "default", Config: q, Explicit: FieldTaskRetryLimit}, c)
				default:
					n.changeQueue(QueueSetting{Queue: "amo", Config: amo, Paused: pause}, c)
				}
			})
		})
	}
	h.at(time.Second, func() {
		tw.call(func(n *Node, c ReplyID) {
			n.putSchedule(Schedule{Name: "tick", Cron: "@every 2s", Queue: "default", URL: "http://w/tick"}, c)
		})
	})
	// A member joins that never answers, and is removed: the roster lease, roster
	// changes and re-replication.
	j := time.Duration(4+r.IntN(8)) * time.Second
	h.at(j, func() { tw.call(func(n *Node, c ReplyID) { n.join(Member{ID: "n4", Addr: "n4:7000"}, c) }) })
	h.at(j+3*time.Second, func() { tw.call(func(n *Node, c ReplyID) { n.remove("n4", c) }) })
	p := time.Duration(3+r.IntN(8)) * time.Second
	h.at(p, func() { h.isolate(me) })
	h.at(p+2*time.Second, h.heal)
	c := time.Duration(8+r.IntN(6)) * time.Second
	h.at(c, func() { h.crash(crashed) })
	h.at(c+3*time.Second, func() { h.restart(crashed) })
	for at := time.Duration(0); at < end; at += time.Duration(50+r.IntN(350)) * time.Millisecond {
		h.at(at, tw.checkpoint)
	}
	h.run(end)
	tw.compare()
	require.Greater(t, len(tw.sizes), 40)
	last := len(tw.sizes) - 1
	t.Logf("%s leads: %v until %v; buckets %d", me, tw.orig.leaderActive, tw.orig.leaseUntil.Sub(epoch), len(tw.orig.buckets))
	t.Logf("%d snapshots; the last %d bytes for %d tasks held; outputs the same: %v", len(tw.sizes), tw.sizes[last], tw.tasks[last], tw.compared)
	for _, kind := range []string{"node.outSend", "node.outDispatch", "node.outAppend", "node.outSync", "node.outAlarm", "node.outReply", "node.outState", "frozen", "cold", "forgotten"} {
		require.Positive(t, tw.compared[kind], "no %s compared: the test proves little", kind)
	}
}

// liveStorage is keptStorage whose syncs end only for the incarnation that asked.
type liveStorage struct {
	keptStorage
	id  NodeID
	inc int
}

func (s liveStorage) Sync(done func()) {
	s.h.schedule(time.Millisecond, func() {
		if s.h.alive(s.id, s.inc) {
			done()
		}
	})
}

// stateDiff names the first place where the states of nodes a and b differ, or
// is "": every field the snapshot holds, walked by reflection and not through the
// codec, so that a field the codec leaves out shows as a difference at once. It
// also requires the same sharing of noExtra (cold.go tells by pointer).
func stateDiff(a, b *Node) string {
	return valueDiff(reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem(), "Node", map[[2]uintptr]bool{})
}

func valueDiff(a, b reflect.Value, path string, seen map[[2]uintptr]bool) string {
	switch a.Kind() {
	case reflect.Pointer:
		switch {
		case a.IsNil() || b.IsNil():
			if a.IsNil() != b.IsNil() {
				return path + ": nil on one side"
			}
			return ""
		case a.Pointer() == b.Pointer():
			return "" // the same value (noExtra, a time's location)
		case a.Pointer() == reflect.ValueOf(&noExtra).Pointer() || b.Pointer() == reflect.ValueOf(&noExtra).Pointer():
			return path + ": noExtra on one side only"
		}
		pair := [2]uintptr{a.Pointer(), b.Pointer()}
		if seen[pair] {
			return ""
		}
		seen[pair] = true
		return valueDiff(a.Elem(), b.Elem(), path, seen)
	case reflect.Struct:
		t := a.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			if _, skip := snapshotSkips[t.Name()+"."+f.Name]; skip {
				continue
			}
			if _, ok := snapshotCaps[t.Name()+"."+f.Name]; ok && a.Field(i).Cap() != b.Field(i).Cap() {
				return fmt.Sprintf("%s.%s: capacity %d, not %d", path, f.Name, a.Field(i).Cap(), b.Field(i).Cap())
			}
			if d := valueDiff(a.Field(i), b.Field(i), path+"."+f.Name, seen); d != "" {
				return d
			}
		}
		return ""
	case reflect.Slice, reflect.Array:
		if a.Kind() == reflect.Slice && a.IsNil() != b.IsNil() || a.Len() != b.Len() {
			return fmt.Sprintf("%s: length %d (nil %v), not %d (nil %v)", path, a.Len(), a.Kind() == reflect.Slice && a.IsNil(), b.Len(), b.Kind() == reflect.Slice && b.IsNil())
		}
		for i := range a.Len() {
			if d := valueDiff(a.Index(i), b.Index(i), fmt.Sprintf("%s[%d]", path, i), seen); d != "" {
				return d
			}
		}
		return ""
	case reflect.Map:
		if a.IsNil() != b.IsNil() || a.Len() != b.Len() {
			return fmt.Sprintf("%s: %d entries, not %d", path, a.Len(), b.Len())
		}
		for it := a.MapRange(); it.Next(); {
			k := it.Key()
			bv := b.MapIndex(k)
			if !bv.IsValid() {
				return fmt.Sprintf("%s[%v]: missing", path, k)
			}
			if d := valueDiff(it.Value(), bv, fmt.Sprintf("%s[%v]", path, k), seen); d != "" {
				return d
			}
		}
		return ""
	case reflect.Interface:
		if a.IsNil() || b.IsNil() {
			if a.IsNil() != b.IsNil() {
				return path + ": nil on one side"
			}
			return ""
		}
		return valueDiff(a.Elem(), b.Elem(), path, seen)
	case reflect.Bool:
		if a.Bool() != b.Bool() {
			return fmt.Sprintf("%s: %v, not %v", path, a.Bool(), b.Bool())
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if a.Int() != b.Int() {
			return fmt.Sprintf("%s: %v, not %v", path, a.Int(), b.Int())
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		if a.Uint() != b.Uint() {
			return fmt.Sprintf("%s: %v, not %v", path, a.Uint(), b.Uint())
		}
	case reflect.Float32, reflect.Float64:
		if a.Float() != b.Float() {
			return fmt.Sprintf("%s: %v, not %v", path, a.Float(), b.Float())
		}
	case reflect.String:
		if a.String() != b.String() {
			return fmt.Sprintf("%s: %q, not %q", path, a.String(), b.String())
		}
	default:
		return fmt.Sprintf("%s: cannot compare a %s", path, a.Type())
	}
	return ""
}

// BenchmarkSnapshot measures a snapshot and a restore of a node holding 20,000
// tasks: pending (most of them cold, as a node with many keeps them) or finished
// (frozen into tombs), and reports the bytes per task.
func BenchmarkSnapshot(b *testing.B) {
	for _, finished := range []bool{false, true} {
		name := "pending"
		if finished {
			name = "finished"
		}
		b.Run(name, func(b *testing.B) {
			const tasks = 20_000
			h := newHarness(b, 1, 1, nil)
			countdown := time.Hour
			if finished {
				countdown = 0
			}
			for i := range tasks {
				h.enqueue("n1", EnqueueRequest{URL: "http://worker.example/task", Countdown: countdown, Body: []byte(fmt.Sprint("n=", i))})
				if i%1000 == 999 {
					h.run(h.elapsed() + 100*time.Millisecond)
				}
			}
			h.run(h.elapsed() + 10*time.Second)
			n := h.node("n1")
			var snap []byte
			b.ResetTimer()
			for b.Loop() {
				var err error
				if snap, err = n.Snapshot(); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			start := time.Now()
			if _, err := Restore(n.cfg, Env{Clock: &fakeClock{h: h, id: "n1"}, Network: fakeNetwork{h: h}, Dispatcher: &fakeDispatcher{h: h, id: "n1"},
				Rand: rand.New(rand.NewPCG(1, 2))}, snap); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(time.Since(start).Microseconds())/1000, "restore-ms")
			b.ReportMetric(float64(len(snap))/tasks, "bytes/task")
		})
	}
}

// A read of a node's state between inputs (the API's and the metrics' reads, the
// daemon's health and recovery checks) leaves the state as it found it, even when
// the read takes the clock: the flight recorder does not record such reads, so a
// state they changed is one a replay does not reach (a later file's snapshot then
// differs from the replayed node's). Before this held, the reads that took the
// clock moved its last reading (lastNow, which coolOld decides by).
func TestReadsBetweenInputsLeaveTheStateAlone(t *testing.T) {
	h := newHarness(t, 3, 1, nil)
	h.enqueue("n1", req(5*time.Second))
	h.run(2 * time.Second)
	n := h.node("n1")
	ids := n.TaskIDs()
	require.NotEmpty(t, ids)
	reads := []struct {
		name string
		read func()
	}{
		{"Leader", func() { n.Leader() }},
		{"Leading", func() { n.Leading() }},
		{"NotReady", func() { n.NotReady() }},
		{"Recovering", func() { n.Recovering() }},
		{"Counts", func() { n.Counts() }},
		{"QueueCounts", func() { n.QueueCounts("default") }},
		{"CheckCounts", func() { require.NoError(t, n.CheckCounts()) }},
		{"ListTasks", func() { n.ListTasks("", StateNone, "", 10) }},
		{"TaskIDs", func() { n.TaskIDs() }},
		{"Task", func() { n.Task(ids[0]) }},
		{"Acceptor", func() { n.Acceptor(ids[0]) }},
		{"Placement", func() { n.Placement(ids[0]) }},
		{"QueueSetting", func() { n.QueueSetting("default") }},
		{"QueueNames", func() { n.QueueNames() }},
		{"Schedules", func() { n.Schedules() }},
		{"Pending", func() { n.Pending() }},
		{"Moves", func() { n.Moves() }},
		{"TasksOnRemoved", func() { n.TasksOnRemoved() }},
		{"Refused", func() { n.Refused() }},
		{"Tombs", func() { n.Tombs() }},
	}
	for _, r := range reads {
		before, err := n.Snapshot()
		require.NoError(t, err)
		h.now = h.now.Add(time.Second) // the read comes later than the last input
		r.read()
		after, err := n.Snapshot()
		require.NoError(t, err)
		require.True(t, bytes.Equal(before, after), "%s between inputs changed the node's state", r.name)
	}
}

// A snapshot's times are a function of their instants and of whether they are
// UTC or local, never of a monotonic reading: snapshot, restore and snapshot
// again give the same bytes when the node holds times read from a real clock (a
// monotonic reading), local and UTC, as a node outside the simulator does. (The
// property test above runs in virtual time, where every time is alike.)
func TestSnapshotTimesKeepTheirLocationAndNoMonotonicReading(t *testing.T) {
	h := newHarness(t, 3, 1, nil)
	h.enqueue("n1", req(5*time.Second))
	h.run(time.Second)
	n := h.node("n1")
	wall := time.Now() // local, with a monotonic reading
	n.leaderSeen, n.forgetMark, n.ledSince = wall, wall.UTC(), wall.Add(time.Second)
	snap, err := n.Snapshot()
	require.NoError(t, err)
	cp, err := Restore(n.cfg, Env{Clock: &fakeClock{h: h, id: "n1"}, Network: fakeNetwork{h: h}, Dispatcher: &fakeDispatcher{h: h, id: "n1"},
		Rand: rand.New(rand.NewPCG(1, 2))}, snap)
	require.NoError(t, err)
	again, err := cp.Snapshot()
	require.NoError(t, err)
	require.True(t, bytes.Equal(snap, again), "a restored node's snapshot differs from the one it came from")
	require.Equal(t, time.Local, cp.leaderSeen.Location())
	require.Equal(t, time.UTC, cp.forgetMark.Location())
	require.True(t, cp.leaderSeen.Equal(wall.Round(0)) && cp.forgetMark.Equal(wall.Round(0)))
}

// A snapshot of another encoding version is refused as such, not read field by
// field into the wrong places.
func TestSnapshotOfAnotherVersionIsRefused(t *testing.T) {
	h := newHarness(t, 3, 1, nil)
	h.enqueue("n1", req(5*time.Second))
	h.run(time.Second)
	n := h.node("n1")
	snap, err := n.Snapshot()
	require.NoError(t, err)
	env := func() Env {
		return Env{Clock: &fakeClock{h: h, id: "n1"}, Network: fakeNetwork{h: h}, Dispatcher: &fakeDispatcher{h: h, id: "n1"},
			Rand: rand.New(rand.NewPCG(1, 2))}
	}
	_, err = Restore(n.cfg, env(), snap)
	require.NoError(t, err, "this build's own snapshot")
	require.Equal(t, byte(snapshotVersion), snap[len(snapshotMagic)], "the version follows the magic, one byte while below 128")
	for _, v := range []byte{snapshotVersion - 1, snapshotVersion + 1} {
		old := bytes.Clone(snap)
		old[len(snapshotMagic)] = v
		_, err = Restore(n.cfg, env(), old)
		require.ErrorIs(t, err, ErrSnapshotVersion, "version %d", v)
	}
}
