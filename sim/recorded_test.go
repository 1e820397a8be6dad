package sim

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/node"
)

// recordedRun builds the events of a small recorded cluster: three nodes start,
// one task is stored on all three, then what deliveries does.
func recordedRun(t0 time.Time, deliveries func(task *node.Task, at func(ms int) time.Time) []RecordedEvent) []RecordedEvent {
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	task := &node.Task{ID: "t1", Queue: "default", ETA: at(100), Created: at(10), Nonce: 7, Replicas: []node.NodeID{"n1", "n2", "n3"}}
	var evs []RecordedEvent
	for _, id := range task.Replicas {
		evs = append(evs, RecordedEvent{Node: id, At: at(0), Kind: RecStart})
	}
	for _, id := range task.Replicas {
		evs = append(evs, RecordedEvent{Node: id, At: at(10), Kind: RecState, Task: task, From: node.StateNone, To: node.StateScheduled})
	}
	evs = append(evs, RecordedEvent{Node: "n1", At: at(12), Kind: RecAcked, Task: task})
	return append(evs, deliveries(task, at)...)
}

var recordedCl = RecordedCluster{Members: []node.NodeID{"n1", "n2", "n3"}, MaxClockDrift: 50 * time.Millisecond,
	DedupWindow: time.Hour, DefaultQueue: node.DefaultQueueConfig()}

func TestCheckRecordedFlagsTwoNodesDeliveringOneAttempt(t *testing.T) {
	t0 := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	once := recordedRun(t0, func(task *node.Task, at func(int) time.Time) []RecordedEvent {
		return []RecordedEvent{
			{Node: "n1", At: at(100), Kind: RecDispatch, Delivery: node.Delivery{Task: task, Attempt: 1}},
			{Node: "n1", At: at(150), Kind: RecResult, Task: task, Attempt: 1, Status: 200},
		}
	})
	res := CheckRecorded(recordedCl, once)
	require.Empty(t, res.Violations)
	require.Equal(t, 1, res.Deliveries)
	require.Equal(t, 1, res.Acked)

	twice := recordedRun(t0, func(task *node.Task, at func(int) time.Time) []RecordedEvent {
		return []RecordedEvent{
			{Node: "n1", At: at(100), Kind: RecDispatch, Delivery: node.Delivery{Task: task, Attempt: 1}},
			{Node: "n2", At: at(120), Kind: RecDispatch, Delivery: node.Delivery{Task: task, Attempt: 1}},
			{Node: "n1", At: at(150), Kind: RecResult, Task: task, Attempt: 1, Status: 200},
			{Node: "n2", At: at(170), Kind: RecResult, Task: task, Attempt: 1, Status: 200},
		}
	})
	res = CheckRecorded(recordedCl, twice)
	require.Contains(t, res.ViolationCounts, "S2", "%v", res.Violations)
	require.Contains(t, res.ViolationCounts, "S1")
	require.Equal(t, t0, res.Origin)
	require.Equal(t, 120*time.Millisecond, res.Violations[0].At, "violations count from the first event")
}

func TestCheckRecordedFlagsAnEarlyDelivery(t *testing.T) {
	t0 := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	early := recordedRun(t0, func(task *node.Task, at func(int) time.Time) []RecordedEvent {
		// Due at 100 ms, the allowance 50 ms: a start at 40 ms is early.
		return []RecordedEvent{{Node: "n1", At: at(40), Kind: RecDispatch, Delivery: node.Delivery{Task: task, Attempt: 1}}}
	})
	res := CheckRecorded(recordedCl, early)
	require.Contains(t, res.ViolationCounts, "S5", "%v", res.Violations)
	onTime := recordedRun(t0, func(task *node.Task, at func(int) time.Time) []RecordedEvent {
		return []RecordedEvent{{Node: "n1", At: at(60), Kind: RecDispatch, Delivery: node.Delivery{Task: task, Attempt: 1}}}
	})
	require.Empty(t, CheckRecorded(recordedCl, onTime).Violations, "within the drift allowance")
}

// A node's restart after a gap is a crash fault; a stretch of lost messages to and
// from a node that runs is an isolation; the workload and network follow what was
// seen.
func TestImportRecordedSeesCrashesAndIsolations(t *testing.T) {
	t0 := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	var evs []RecordedEvent
	for _, id := range []node.NodeID{"n1", "n2", "n3"} {
		evs = append(evs, RecordedEvent{Node: id, At: at(0), Kind: RecStart})
	}
	send := func(ms int, from, to node.NodeID, lost bool) {
		evs = append(evs, RecordedEvent{Node: from, At: at(ms), Kind: RecSend, Message: node.Message{From: from, To: to}, Lost: lost})
		if !lost {
			evs = append(evs, RecordedEvent{Node: to, At: at(ms + 2), Kind: RecReceive, Message: node.Message{From: from, To: to}, SendIndex: len(evs) - 1})
		}
	}
	send(100, "n1", "n3", false)
	for ms := 1000; ms < 2000; ms += 200 { // n3 cut off
		send(ms, "n1", "n3", true)
		send(ms+50, "n3", "n2", true)
	}
	send(2100, "n3", "n1", false)
	// n2 crashes at 3 s and restarts 1.5 s later.
	evs = append(evs, RecordedEvent{Node: "n2", At: at(3000), Kind: RecStop}, RecordedEvent{Node: "n2", At: at(4500), Kind: RecStart})
	task := &node.Task{ID: "t1", Queue: "q", ETA: at(600), Created: at(100), Replicas: []node.NodeID{"n1"}}
	evs = append(evs, RecordedEvent{Node: "n1", At: at(100), Kind: RecState, Task: task, From: node.StateNone, To: node.StateScheduled})
	for _, id := range []node.NodeID{"n1", "n2", "n3"} {
		evs = append(evs, RecordedEvent{Node: id, At: at(6000), Kind: RecStop})
	}

	sc, err := ImportRecorded(recordedCl, ImportOptions{Name: "incident", Replicas: 3, ReplicaOffset: time.Second, Lease: 5 * time.Second}, evs)
	require.NoError(t, err)
	require.Equal(t, []FaultEvent{
		{At: Duration(1000 * time.Millisecond), Kind: "isolate", Nodes: []string{"n3"}, Duration: Duration(1100 * time.Millisecond)},
		{At: Duration(3000 * time.Millisecond), Kind: "crash", Nodes: []string{"n2"}, Duration: Duration(1500 * time.Millisecond)},
	}, sc.Faults.Schedule)
	require.Equal(t, 1, sc.Workload.Tasks)
	require.Equal(t, Duration(500*time.Millisecond), sc.Workload.Countdown.Max)
	require.Equal(t, "q", sc.Workload.Queues[0].Name)
	require.Equal(t, Duration(2*time.Millisecond), sc.Network.Latency.Max)
	require.Zero(t, sc.Network.Drop, "the losses are the isolation's")

	// The scenario runs in the simulator.
	res, err := Run(sc, 1, Options{})
	require.NoError(t, err)
	require.False(t, res.Failed(), res.Report())
}

// A client paused the task's queue (the change answered 200) before a delivery
// started: Q5. The same run with the queue resumed first passes.
func TestCheckRecordedFlagsADeliveryOfAPausedQueue(t *testing.T) {
	t0 := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	run := func(resumeFirst bool) RecordedResult {
		evs := recordedRun(t0, func(task *node.Task, at func(int) time.Time) []RecordedEvent {
			paused := node.QueueSetting{Queue: task.Queue, Config: node.DefaultQueueConfig(), Paused: true}
			evs := []RecordedEvent{
				{Node: "n2", At: at(40), Kind: RecQueuePut, Op: "set-queue", Put: 1, Setting: node.QueueSetting{Queue: task.Queue, Paused: true}},
				{Node: "n2", At: at(60), Kind: RecQueueAnswered, Put: 1, Setting: paused, OK: true},
			}
			if resumeFirst {
				evs = append(evs, RecordedEvent{Node: "n3", At: at(80), Kind: RecQueuePut, Op: "set-queue", Put: 1, Setting: node.QueueSetting{Queue: task.Queue}})
			}
			return append(evs, RecordedEvent{Node: "n1", At: at(200), Kind: RecDispatch, Delivery: node.Delivery{Task: task, Attempt: 1}})
		})
		return CheckRecorded(recordedCl, evs)
	}
	require.Contains(t, run(false).ViolationCounts, "Q5", "%v", run(false).Violations)
	require.Empty(t, run(true).Violations)
}

// n2's clock reads 2 s ahead of the others', and for a while n1's messages to n3
// were lost while n3's to n1 arrived: the import gives n2 a clock offset of 2 s
// (not a network 2 s slow), and the link n1→n3 a oneway fault (not an isolation).
func TestImportRecordedSeesClockOffsetsAndOneWayLinks(t *testing.T) {
	t0 := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	ahead := map[node.NodeID]time.Duration{"n2": 2 * time.Second}
	// at is node id's clock reading at true time ms (plus µs).
	at := func(id node.NodeID, ms, us int) time.Time {
		return t0.Add(time.Duration(ms)*time.Millisecond + time.Duration(us)*time.Microsecond + ahead[id])
	}
	var evs []RecordedEvent
	for _, id := range []node.NodeID{"n1", "n2", "n3"} {
		evs = append(evs, RecordedEvent{Node: id, At: at(id, 0, 0), Kind: RecStart})
	}
	// send: a message from one node to another at true time ms, 1.2 ms on the way
	// (1 ms when quick), or lost.
	send := func(ms int, from, to node.NodeID, lost, quick bool) {
		evs = append(evs, RecordedEvent{Node: from, At: at(from, ms, 0), Bound: at(from, ms, 0), Kind: RecSend, Message: node.Message{From: from, To: to}, Lost: lost})
		delay := 1200
		if quick {
			delay = 1000
		}
		if !lost {
			evs = append(evs, RecordedEvent{Node: to, At: at(to, ms, delay), Bound: at(to, ms, delay), Kind: RecReceive, Message: node.Message{From: from, To: to}, SendIndex: len(evs) - 1})
		}
	}
	pairs := [][2]node.NodeID{{"n1", "n2"}, {"n2", "n1"}, {"n1", "n3"}, {"n3", "n1"}, {"n2", "n3"}, {"n3", "n2"}}
	for ms := 100; ms < 1000; ms += 100 {
		for i, p := range pairs {
			send(ms+i, p[0], p[1], false, ms == 500)
		}
	}
	for ms := 1000; ms < 2000; ms += 100 { // n1 → n3 lost; n3 → n1, and the rest, arrive
		send(ms, "n1", "n3", true, false)
		send(ms+10, "n3", "n1", false, false)
		send(ms+20, "n1", "n2", false, false)
		send(ms+30, "n2", "n3", false, false)
	}
	send(2000, "n1", "n3", false, false)
	for _, id := range []node.NodeID{"n1", "n2", "n3"} {
		evs = append(evs, RecordedEvent{Node: id, At: at(id, 3000, 0), Kind: RecStop})
	}

	sc, err := ImportRecorded(recordedCl, ImportOptions{Name: "incident", Replicas: 3, ReplicaOffset: time.Second, Lease: 5 * time.Second}, evs)
	require.NoError(t, err)
	require.Equal(t, map[string]Duration{"n2": Duration(2 * time.Second)}, sc.Clocks.Offsets, "n2's clock is 2 s ahead; n1's and n3's agree")
	require.Equal(t, []FaultEvent{
		{At: Duration(1000 * time.Millisecond), Kind: "oneway", Nodes: []string{"n1", "n3"}, Duration: Duration(1000 * time.Millisecond)},
	}, sc.Faults.Schedule)
	require.Equal(t, Range{Duration(1000 * time.Microsecond), Duration(1200 * time.Microsecond)}, sc.Network.Latency, "delays on true time")
	require.Zero(t, sc.Network.Drop, "the losses are the one-way link's")

	// As net/recorder's Merge gives them: a receive no earlier than its send, the
	// node's own reading kept in Read. The same scenario comes out.
	merged := slices.Clone(evs)
	for i, e := range merged {
		if e.Kind == RecReceive && e.At.Before(merged[e.SendIndex].At) {
			merged[i].Read, merged[i].At = e.At, merged[e.SendIndex].At
		}
	}
	require.NotEqual(t, evs, merged, "some receives were moved")
	fromMerged, err := ImportRecorded(recordedCl, ImportOptions{Name: "incident", Replicas: 3, ReplicaOffset: time.Second, Lease: 5 * time.Second}, merged)
	require.NoError(t, err)
	require.Equal(t, sc, fromMerged)

	// The scenario runs in the simulator, n2's clock 2 s ahead.
	var trace bytes.Buffer
	res, err := Run(sc, 1, Options{Trace: &trace})
	require.NoError(t, err)
	require.Contains(t, trace.String(), `"node":"n2","kind":"clock","offset":2000000000`)
	require.Contains(t, trace.String(), `"detail":"n1->n3"`)
	require.False(t, res.Failed(), res.Report())
}

// Recordings whose windows open at snapshots: n1's and n2's starts were dropped,
// and they hold t1, created before, n1 delivering attempt 1 since then. A delivery
// of attempt 2 by n2 after n1's ended is no violation (nothing of t1's past is
// judged); one while n1's is still in flight is an S1, and one of attempt 1 again
// an S2.
func TestCheckRecordedFromSnapshotsJudgesOnlyWhatFollows(t *testing.T) {
	t0 := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	// Created an hour before the windows, due then: every retry limit would be
	// judged used up, and Q3 and S5 would fire, were its past taken for seen.
	task := &node.Task{ID: "t1", Queue: "default", ETA: at(-3600_000), Created: at(-3600_000), Nonce: 7,
		Replicas: []node.NodeID{"n1", "n2", "n3"}, Name: "once"}
	window := func(id node.NodeID, state node.TaskState, attempt uint64) RecordedEvent {
		return RecordedEvent{Node: id, At: at(0), Kind: RecStart, Durable: true, Snapshot: true,
			Known: []node.TaskStatus{{Task: task, State: state, Attempt: attempt}}}
	}
	run := func(second uint64, secondAt, firstEnds int) []RecordedEvent {
		evs := []RecordedEvent{
			window("n1", node.StateClaimed, 1),
			{Node: "n1", At: at(0), Kind: RecInFlight, Delivery: node.Delivery{Task: task, Attempt: 1}},
			window("n2", node.StateScheduled, 1),
			{Node: "n3", At: at(0), Kind: RecStart, Durable: true},
		}
		first := RecordedEvent{Node: "n1", At: at(firstEnds), Kind: RecResult, Task: task, Attempt: 1, Status: 500}
		next := RecordedEvent{Node: "n2", At: at(secondAt), Kind: RecDispatch, Delivery: node.Delivery{Task: task, Attempt: second}}
		if firstEnds < secondAt {
			return append(evs, first, next)
		}
		return append(evs, next, first)
	}
	res := CheckRecorded(recordedCl, run(2, 3000, 100))
	require.Empty(t, res.Violations, "a task created before the windows")
	require.Equal(t, 1, res.Tasks)
	require.Equal(t, 2, res.Deliveries)

	res = CheckRecorded(recordedCl, run(2, 100, 200))
	require.Contains(t, res.ViolationCounts, "S1", "%v", res.Violations)
	res = CheckRecorded(recordedCl, run(1, 300, 100))
	require.Contains(t, res.ViolationCounts, "S2", "%v", res.Violations)
}
