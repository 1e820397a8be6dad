package sim

import (
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
