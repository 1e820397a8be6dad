package sim

import (
	"testing"
	"time"

	"github.com/miyamotohq/miyamoto/net/wire"
	"github.com/miyamotohq/miyamoto/node"
)

// FuzzPeerMessage decodes arbitrary bytes with the production wire codec and steps
// every message it yields into n1 of a simulated three-node cluster, as if n2 or
// n3 had sent it, among honest nodes running a workload. The run must not panic
// and the checker must find no broken invariant: whatever a member sends, the
// door (node/door.go) and the handlers keep the cluster safe and its acknowledged
// tasks live.
//
// The hostile member's votes are taken out (a grant, a store's or an outcome's
// acknowledgement): the protocol tolerates crashes, not a member that grants one
// attempt to two claimants or acknowledges what it never stored, and no rule at
// a door can tell such a lie from the truth. Peers prove membership with the
// cluster secret; this target checks what a member can do with values.
func FuzzPeerMessage(f *testing.F) {
	sc, err := ParseScenario([]byte(fuzzScenario))
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range fuzzSeeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		inject := decodeInjections(data)
		res, err := Run(sc, 1, Options{inject: inject, liveQueue: fuzzQueue})
		if err != nil {
			t.Fatal(err)
		}
		if res.Acked == 0 {
			t.Fatal("the workload had no task acknowledged: the run checks nothing")
		}
		if res.Failed() {
			for _, in := range inject {
				t.Logf("injected at %s: %+v", in.at, in.m)
			}
			t.Fatalf("a hostile member's messages broke an invariant:\n%s", res.Report())
		}
	})
}

// fuzzScenario is small, so that each input runs in a few milliseconds. Its
// queue's name is one a fuzzer does not guess: settings for the workload's queue
// from a member (a pause, say) would be obeyed, as they should.
const fuzzScenario = `{
  "name": "fuzz-peer-message",
  "cluster": {"nodes": 3, "replicas": 3, "replica_offset": "300ms", "lease": "3s", "max_clock_drift": "100ms"},
  "network": {"latency": {"min": "1ms", "max": "5ms"}},
  "workload": {"tasks": 12, "rate": 6, "countdown": {"min": "0s", "max": "2s"}, "queues": [{"name": "` + fuzzQueue + `"}]},
  "workers": {"latency": {"min": "2ms", "max": "20ms"}},
  "duration": "5s",
  "liveness_bound": "40s"
}`

// fuzzQueue is the workload's queue, the one whose tasks L1 judges: a member may
// rightly pause any other for good (or schedule ticks into a paused one), which
// would leave acknowledged tasks pending as a client's pause does.
const fuzzQueue = "w0rkl0ad-9f3c1e"

// maxInjected bounds the messages one input yields.
const maxInjected = 24

// decodeInjections reads frames from data until one does not decode, and makes
// each a message from n2 or n3 (in turn) to n1, 200 ms apart, without votes.
func decodeInjections(data []byte) []injection {
	var out []injection
	for len(data) > 0 && len(out) < maxInjected {
		m, n, err := wire.DecodeFrame(data)
		if err != nil {
			break
		}
		data = data[n:]
		m.From = node.NodeID(nodeName(1 + len(out)%2))
		m.To = "n1"
		out = append(out, injection{at: time.Duration(len(out)+1) * 200 * time.Millisecond, to: 0, m: withoutVotes(m)})
	}
	return out
}

// withoutVotes takes a hostile member's votes out of m (see FuzzPeerMessage).
func withoutVotes(m node.Message) node.Message {
	switch m.Type {
	case node.MsgClaimResp, node.MsgPermitResp:
		m.Granted = false
	case node.MsgStoreResp:
		if m.Reject == node.RejectNone {
			m.Reject = node.RejectFull
		}
	case node.MsgOutcomeResp:
		m.State = node.StateNone
	}
	return m
}

// fuzzSeeds are frames of every kind of message, valid for the fuzz scenario (a
// task n1 holds, a setting, a schedule), alone and all together.
func fuzzSeeds() [][]byte {
	at := func(d time.Duration) time.Time { return epoch.Add(d) }
	replicas := []node.NodeID{"n1", "n2", "n3"}
	task := &node.Task{ID: "7f1c2a9e-5b3d-4e8f-a1b2-c3d4e5f60718", Queue: "other", URL: "http://w/x", Method: "POST",
		Headers: []node.Header{{Name: "X-A", Value: "1"}}, Body: []byte("b=1"), ContentType: "application/x-www-form-urlencoded",
		ETA: at(2 * time.Second), Created: at(0), Nonce: 9, Replicas: replicas}
	setting := &node.QueueSetting{Queue: "other", Config: node.DefaultQueueConfig(), Paused: true, Version: uint64(at(time.Second).UnixMilli()), Origin: "n2"}
	sched := &node.Schedule{Name: "beat", Cron: "@every 2s", Queue: "other", URL: "http://w/beat", Method: "POST", Created: at(0), Version: uint64(at(time.Second).UnixMilli()), Origin: "n2"}
	msgs := []node.Message{
		{Type: node.MsgStore, TaskID: task.ID, Task: task},
		{Type: node.MsgClaim, TaskID: task.ID, Task: task, Attempt: 1, Lease: 3 * time.Second, Promised: 5},
		{Type: node.MsgClaimResp, TaskID: task.ID, Attempt: 1, Granted: true},
		{Type: node.MsgRelease, TaskID: task.ID, Attempt: 1, Promised: 5, NextETA: at(3 * time.Second), Retries: 1, Failed: 1, FailedBits: 1, Status: 503},
		{Type: node.MsgRelease, TaskID: task.ID, Attempt: 3, Promised: 6, NextETA: at(4 * time.Second), Retries: 2, Failed: 3, FailedBits: 0b101, Status: 503},
		{Type: node.MsgOutcome, TaskID: task.ID, Task: task, Attempt: 1, State: node.StateSucceeded},
		{Type: node.MsgOutcome, TaskID: task.ID, State: node.StateCancelled},
		{Type: node.MsgStatus, TaskID: task.ID},
		{Type: node.MsgStatusResp, TaskID: task.ID, Task: task, State: node.StateScheduled, Attempts: []node.DeliveryAttempt{{Number: 1, Node: "n2", Start: at(time.Second), Status: 500}}},
		{Type: node.MsgQueueSet, Setting: setting},
		{Type: node.MsgQueueSync, Promised: 1},
		{Type: node.MsgQueueSyncResp, Setting: setting, Promised: 1},
		{Type: node.MsgScheduleSet, Schedule: sched},
		{Type: node.MsgPermit, TaskID: task.ID, Queue: "other", Attempt: 1},
		{Type: node.MsgPermitDone, TaskID: task.ID, Queue: "other", Attempt: 1},
		{Type: node.MsgList, Queue: "other", Attempt: 10, Promised: 3},
		{Type: node.MsgListResp, Task: task, TaskID: task.ID, State: node.StateScheduled, Promised: 3},
		{Type: node.MsgCount, Promised: 4},
		{Type: node.MsgCountResp, Promised: 4, Counts: []node.QueueCount{{Queue: "other", State: node.StateScheduled, N: 3}}},
		{Type: node.MsgNaivePushBack, TaskID: task.ID, Attempt: 1, NextETA: at(4 * time.Second)},
	}
	var all []byte
	seeds := [][]byte{nil}
	for _, m := range msgs {
		m.From, m.To = "n2", "n1"
		frame := wire.AppendFrame(nil, m)
		seeds = append(seeds, frame)
		all = append(all, frame...)
	}
	return append(seeds, all)
}
