package main

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/net/api"
)

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func at(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

// views are three nodes' answers, each the task in state.
func views(state string, history ...api.AttemptView) []NodeView {
	var out []NodeView
	for i := 0; i < 3; i++ {
		out = append(out, NodeView{Node: nodeName(i), Found: true, Task: &api.TaskView{State: state, Replicas: []string{"n1", "n2", "n3"}, AttemptsHistory: history}})
	}
	return out
}

func ack(id string, amo bool) Ack {
	q := queueAtLeastOnce
	if amo {
		q = queueAtMostOnce
	}
	return Ack{Task: id, Queue: q, AtMostOnce: amo, At: t0}
}

func call(id, node string, attempt uint64, s float64, status int) Delivery {
	return Delivery{Task: id, Node: node, Attempt: attempt, At: at(s), Status: status}
}

// history builds a History of one acknowledged task.
func history(a Ack, vs []NodeView, faults []FaultSpan, ds ...Delivery) History {
	return History{Nodes: 3, Acked: []Ack{a}, Deliveries: ds, Faults: faults, Views: map[string][]NodeView{a.Task: vs}}
}

func printed(r *Report) string {
	var b strings.Builder
	r.Print(&b)
	return b.String()
}

// A task delivered once, final everywhere: nothing to report, exit 0.
func TestCheckClean(t *testing.T) {
	r := Check(history(ack("a", false), views("succeeded"), nil, call("a", "n1", 1, 1, 200)))
	require.False(t, r.Failed(), printed(r))
	require.Equal(t, exitOK, exitCodeFor(r))
	require.Equal(t, 1, r.Delivered)
	require.Empty(t, r.Mismatches)

	// A failure, then a success: a retry, not a duplicate.
	r = Check(history(ack("a", false), views("succeeded"), nil, call("a", "n1", 1, 1, 500), call("a", "n2", 2, 2, 200)))
	require.False(t, r.Failed(), printed(r))
	require.Equal(t, 1, r.WorkerFailures)
}

func TestCheckLoss(t *testing.T) {
	notFound := []NodeView{{Node: "n1"}, {Node: "n2"}, {Node: "n3"}}
	r := Check(history(ack("a", false), notFound, nil))
	require.True(t, r.Failed())
	require.Equal(t, exitFailed, exitCodeFor(r))
	require.Len(t, r.Lost, 1)
	require.Contains(t, printed(r), "LOST: task a (chaos-alo): never delivered successfully; worker saw nothing; nodes say n1: not found")

	// Succeeded on every node, but the worker never answered a 2xx: lost, and the
	// nodes' word disagrees with the worker's.
	r = Check(history(ack("a", false), views("succeeded"), nil, call("a", "n1", 1, 1, 500)))
	require.Len(t, r.Lost, 1)
	require.Len(t, r.Mismatches, 1)
	require.Equal(t, 3, strings.Count(r.Mismatches[0].What, "succeeded, but the worker answered no delivery with a 2xx"))

	// At-most-once: never seen and not unknown is lost; never seen and unknown is
	// what at-most-once allows.
	r = Check(history(ack("b", true), notFound, nil))
	require.Len(t, r.Lost, 1)
	r = Check(history(ack("b", true), views("unknown"), nil))
	require.False(t, r.Failed(), printed(r))
	require.Equal(t, 1, r.UnknownUndelivered)
}

func killSpan(node int, from, to float64) FaultSpan {
	return FaultSpan{Fault: Fault{Kind: KindKill, Nodes: []int{node}, Note: nodeName(node)}, Start: at(from), End: at(to)}
}

func isolateSpan(node int, from, to float64) FaultSpan {
	var others []int
	for i := 0; i < 3; i++ {
		if i != node {
			others = append(others, i)
		}
	}
	return FaultSpan{Fault: Fault{Kind: KindIsolate, Cuts: cutBetween([]int{node}, others), Note: nodeName(node)}, Start: at(from), End: at(to)}
}

func TestCheckDuplicates(t *testing.T) {
	first, again := call("a", "n1", 1, 10, 200), call("a", "n2", 2, 15, 200)
	cases := []struct {
		name        string
		faults      []FaultSpan
		views       []NodeView
		again       Delivery
		explained   bool
		reasonHints string
	}{
		{name: "no fault", views: views("succeeded"), again: again},
		{name: "the first deliverer killed just after", faults: []FaultSpan{killSpan(0, 10.1, 12)}, views: views("succeeded"), again: again, explained: true, reasonHints: "kill n1"},
		{name: "the first deliverer isolated", faults: []FaultSpan{isolateSpan(0, 8, 14)}, views: views("succeeded"), again: again, explained: true, reasonHints: "isolate n1"},
		{name: "another node killed", faults: []FaultSpan{killSpan(2, 9, 12)}, views: views("succeeded"), again: again},
		{name: "another node isolated: n1 still reaches a majority", faults: []FaultSpan{isolateSpan(2, 9, 12)}, views: views("succeeded"), again: again},
		{name: "a kill long before", faults: []FaultSpan{killSpan(0, 1, 8.5)}, views: views("succeeded"), again: again},
		{name: "a kill long after", faults: []FaultSpan{killSpan(0, 12.5, 14)}, views: views("succeeded"), again: again},
		{name: "the node recorded a timeout", views: views("succeeded", api.AttemptView{Attempt: 1, Node: "n1", Error: "timeout"}), again: again, explained: true, reasonHints: "recorded attempt 1 as timeout"},
		{name: "the same attempt twice, even with a fault", faults: []FaultSpan{killSpan(0, 10.1, 12)}, views: views("succeeded"), again: call("a", "n2", 1, 15, 200)},
	}
	for _, c := range cases {
		r := Check(history(ack("a", false), c.views, c.faults, first, c.again))
		if c.explained {
			require.False(t, r.Failed(), "%s: %s", c.name, printed(r))
			require.Len(t, r.Explained, 1, c.name)
			require.Contains(t, r.Explained[0].Reason, c.reasonHints, c.name)
			require.Contains(t, printed(r), "explained duplicate: task a", c.name)
			continue
		}
		require.True(t, r.Failed(), c.name)
		require.Equal(t, exitFailed, exitCodeFor(r), c.name)
		require.Len(t, r.Unexplained, 1, c.name)
		require.Contains(t, printed(r), "UNEXPLAINED DUPLICATE: task a (chaos-alo): attempt", c.name)
	}
}

func TestCheckAtMostOnceDuplicate(t *testing.T) {
	r := Check(history(ack("b", true), views("succeeded"), []FaultSpan{killSpan(0, 10.1, 12)},
		call("b", "n1", 1, 10, 200), call("b", "n2", 2, 15, 200)))
	require.True(t, r.Failed(), "a fault never excuses an at-most-once duplicate")
	require.Equal(t, exitFailed, exitCodeFor(r))
	require.Len(t, r.AtMostOnceDup, 1)
	require.Contains(t, printed(r), "AT-MOST-ONCE DUPLICATE: task b (chaos-amo): delivered 2 times")
}

func TestCheckStuck(t *testing.T) {
	vs := views("succeeded")
	vs[1].Task.State = "claimed"
	r := Check(history(ack("a", false), vs, nil, call("a", "n1", 1, 1, 200)))
	require.True(t, r.Failed())
	require.Equal(t, exitFailed, exitCodeFor(r))
	require.Len(t, r.Stuck, 1)
	require.Contains(t, printed(r), "STUCK: task a (chaos-alo): not final after the drain (n2 says claimed)")
	require.Empty(t, r.Lost, "a stuck task is not counted lost as well")

	unanswered := []NodeView{{Node: "n1", Err: "no answer"}, {Node: "n2", Err: "no answer"}, {Node: "n3", Err: "no answer"}}
	r = Check(history(ack("a", false), unanswered, nil))
	require.Len(t, r.Stuck, 1, "no node answering is no proof of an end")
}

// A mismatch fails the run: replicas must agree on a task's final state (the
// simulator's L3), and with what the worker saw.
func TestCheckMismatch(t *testing.T) {
	vs := views("succeeded")
	vs[2].Task.State = "dead"
	r := Check(history(ack("a", false), vs, nil, call("a", "n1", 1, 1, 200)))
	require.True(t, r.Failed(), printed(r))
	require.Equal(t, exitFailed, exitCodeFor(r))
	require.Len(t, r.Mismatches, 1)
	require.Contains(t, printed(r), "mismatch: task a (chaos-alo): n3: dead, but the worker answered a delivery with a 2xx; nodes disagree on its final state")

	// At-most-once: a 2xx then unknown is allowed (the node died before it learnt
	// the answer); a 2xx then dead is not.
	r = Check(history(ack("b", true), views("unknown"), nil, call("b", "n1", 1, 1, 200)))
	require.Empty(t, r.Mismatches)
	require.Equal(t, 1, r.Unknown)
	r = Check(history(ack("b", true), views("dead"), nil, call("b", "n1", 1, 1, 200)))
	require.Len(t, r.Mismatches, 1)
	require.Contains(t, r.Mismatches[0].What, "n1: dead, but the worker answered its delivery with a 2xx; n2: dead")
}

// Calls for tasks never acknowledged are counted, never judged.
func TestCheckUnacked(t *testing.T) {
	h := history(ack("a", false), views("succeeded"), nil, call("a", "n1", 1, 1, 200), call("x", "n1", 1, 1, 200), call("x", "n2", 2, 3, 200))
	r := Check(h)
	require.False(t, r.Failed())
	require.Equal(t, 2, r.UnackedDeliveries)
	require.Equal(t, 3, r.Deliveries)
}

func TestTouches(t *testing.T) {
	all := []int{0, 1, 2}
	oneWay := Fault{Kind: KindOneWay, Cuts: []Link{{0, 1}, {0, 2}}}
	require.True(t, touches(oneWay, 0, all), "n1's messages reach nobody")
	require.False(t, touches(oneWay, 1, all), "n2 still talks with n3 both ways")
	bridge := Fault{Kind: KindBridge, Cuts: []Link{{1, 2}, {2, 1}}}
	require.False(t, touches(bridge, 0, all), "the bridge reaches everyone")
	require.False(t, touches(bridge, 1, all), "n2 and n1 are a majority")
	require.True(t, touches(Fault{Kind: KindPowerLoss, Nodes: all}, 2, all))
	require.False(t, touches(Fault{Kind: KindPause, Nodes: []int{1}}, 2, all))
}

// Two deliveries at once are a duplicate too, even when the first failed; and the
// window of a fault that explains one runs until the earlier call was answered.
func TestCheckOverlapAndSlowAnswers(t *testing.T) {
	first := call("a", "n1", 1, 10, 500)
	first.Answered = at(10.3)
	overlapping := call("a", "n2", 2, 10.1, 200)
	r := Check(history(ack("a", false), views("succeeded"), nil, first, overlapping))
	require.Len(t, r.Unexplained, 1, printed(r))
	pause := FaultSpan{Fault: Fault{Kind: KindPause, Nodes: []int{0}, Note: "n1"}, Start: at(9.5), End: at(14)}
	r = Check(history(ack("a", false), views("succeeded"), []FaultSpan{pause}, first, overlapping))
	require.Len(t, r.Explained, 1, printed(r))

	slow := call("a", "n1", 1, 10, 200)
	slow.Answered = at(13)
	again := call("a", "n2", 2, 20, 200)
	r = Check(history(ack("a", false), views("succeeded"), []FaultSpan{killSpan(0, 14.5, 16)}, slow, again))
	require.Len(t, r.Explained, 1, "a kill soon after the answer explains it: %s", printed(r))
	r = Check(history(ack("a", false), views("succeeded"), []FaultSpan{killSpan(0, 15.5, 16)}, slow, again))
	require.Len(t, r.Unexplained, 1, "a kill well after the answer does not: %s", printed(r))
}

// A node process that ended without being killed fails the run.
func TestCheckCrash(t *testing.T) {
	h := history(ack("a", false), views("succeeded"), nil, call("a", "n1", 1, 1, 200))
	h.Crashes = []string{"n2 (pid 42) exited by itself at 03:04:07.000: exit status 2 (see n2.log)"}
	r := Check(h)
	require.True(t, r.Failed())
	require.Equal(t, exitFailed, exitCodeFor(r))
	require.Contains(t, printed(r), "CRASH: n2 (pid 42) exited by itself")
}

// A replace counts as a fault of the node it killed: a delivery that node made just
// before it may be repeated (by the nodes the task moved to), as after a kill; a
// delivery by a node the replace did not kill is not explained by it.
func TestCheckReplaceExplains(t *testing.T) {
	replace := FaultSpan{Fault: Fault{Kind: KindReplace, Nodes: []int{2}, Joiner: 3, Via: 0, Note: "n3 by n4 (joins through n1)"}, Start: at(10.5), End: at(25)}
	first, again := call("a", "n3", 1, 10, 200), call("a", "n4", 2, 20, 200)
	first.Answered = at(10.2)
	r := Check(history(ack("a", false), views("succeeded"), []FaultSpan{replace}, first, again))
	require.Len(t, r.Explained, 1, printed(r))
	require.Contains(t, r.Explained[0].Reason, "replace n3 by n4")

	first.Node = "n2"
	r = Check(history(ack("a", false), views("succeeded"), []FaultSpan{replace}, first, again))
	require.Len(t, r.Unexplained, 1, "n2 was not killed: %s", printed(r))
	require.True(t, touches(replace.Fault, 2, []int{0, 1, 2}))
	require.False(t, touches(replace.Fault, 3, []int{0, 1, 3}), "the new node is not hit")
}

// membersViews are the answers of the members n1, n2, n4 after n3 was replaced by
// n4: found (with the given replica list) or not.
func membersViews(state string, replicas []string, found ...bool) []NodeView {
	var out []NodeView
	for i, name := range []string{"n1", "n2", "n4"} {
		v := NodeView{Node: name}
		if found[i] {
			v.Found, v.Task = true, &api.TaskView{State: state, Replicas: replicas}
		}
		out = append(out, v)
	}
	return out
}

// After a replace, the drain and the checker ask the members only. A member off
// the task's replica list may not know it (a task final before the removal is not
// moved), and a task no member knows is counted, not failed, when the worker saw it
// end; one on the list that does not know it is a mismatch, as is a task no node
// knows in a run without a replace, and a replace that did not finish fails the run.
func TestCheckAfterReplace(t *testing.T) {
	replace := FaultSpan{Fault: Fault{Kind: KindReplace, Nodes: []int{2}, Joiner: 3, Via: 0}, Start: at(10), End: at(25)}
	old := []string{"n1", "n2", "n3"}
	delivered := call("a", "n1", 1, 1, 200)
	h := func(vs []NodeView, faults ...FaultSpan) History {
		hh := history(ack("a", false), vs, faults, delivered)
		hh.Nodes, hh.Members = 4, []string{"n1", "n2", "n4"}
		return hh
	}

	offList := membersViews("succeeded", old, true, true, false)
	require.True(t, finalEverywhere(offList, true), "n4 is not a replica of a task final before the replace")
	require.False(t, finalEverywhere(offList, false), "without a replace every node must know it")
	r := Check(h(offList, replace))
	require.False(t, r.Failed(), printed(r))

	onList := membersViews("succeeded", []string{"n1", "n2", "n4"}, true, true, false)
	require.False(t, finalEverywhere(onList, true), "n4 is a replica: it must know the moved task")
	r = Check(h(onList, replace))
	require.True(t, r.Failed(), printed(r))
	require.Contains(t, r.Mismatches[0].What, "n4: not found")

	none := membersViews("", nil, false, false, false)
	require.True(t, finalEverywhere(none, true))
	r = Check(h(none, replace))
	require.False(t, r.Failed(), printed(r))
	require.Equal(t, 1, r.Forgotten, printed(r))
	r = Check(h(none))
	require.True(t, r.Failed(), "no replace: a task no node knows is a mismatch: %s", printed(r))
	require.Contains(t, r.Mismatches[0].What, "no node knows it")

	notDelivered := history(ack("a", false), none, []FaultSpan{replace})
	r = Check(notDelivered)
	require.Len(t, r.Lost, 1, "known to no member and never delivered: lost; %s", printed(r))

	unfinished := replace
	unfinished.Problem = "membership: n3's tasks not moved: not done in 1m0s: n1: 2 tasks on removed members"
	r = Check(h(offList, unfinished))
	require.True(t, r.Failed())
	require.Contains(t, printed(r), "FAULT NOT FINISHED: membership: n3's tasks not moved")
}

// A member that does not answer for a task holds the drain, replica or not, and a
// lookup still unanswered after it fails the run (every member of a healed cluster
// answers GET /v1/tasks/{id}; one that joined after a removal did not, until
// dfd7ffc, for tasks final before it).
func TestCheckUnanswered(t *testing.T) {
	vs := membersViews("succeeded", []string{"n1", "n2", "n3"}, true, true, false)
	vs[2].Err = "HTTP 503"
	require.False(t, finalEverywhere(vs, true))
	require.False(t, finalEverywhere(vs, false))

	h := history(ack("a", false), vs, []FaultSpan{{Fault: Fault{Kind: KindReplace, Nodes: []int{2}, Joiner: 3}, Start: at(10), End: at(20)}}, call("a", "n1", 1, 1, 200))
	r := Check(h)
	require.True(t, r.Failed(), printed(r))
	require.Equal(t, 1, r.Unanswered)
	require.Equal(t, 1, r.UnansweredOffList)
}

// After a replace, an at-most-once task never delivered that no member knows is
// lost, unless a node's log says it ended it unknown (its claimant died holding
// its one attempt, then every replica was replaced: a final task is not moved).
func TestCheckForgottenUnknown(t *testing.T) {
	replace := FaultSpan{Fault: Fault{Kind: KindReplace, Nodes: []int{2}, Joiner: 3, Via: 0}, Start: at(10), End: at(25)}
	h := history(ack("a", true), membersViews("", nil, false, false, false), []FaultSpan{replace})
	r := Check(h)
	require.Len(t, r.Lost, 1, printed(r))

	h.EndedUnknown = []string{"other", "a"}
	r = Check(h)
	require.False(t, r.Failed(), printed(r))
	require.Equal(t, 1, r.Unknown)
	require.Equal(t, 1, r.UnknownUndelivered)

	h.Faults = nil
	r = Check(h)
	require.True(t, r.Failed(), "without a replace no node may forget it: %s", printed(r))
}

// The daemon's log line for a task it ended unknown names the task.
func TestEndedUnknownFromLogs(t *testing.T) {
	path := t.TempDir() + "/n1.log"
	require.NoError(t, os.WriteFile(path, []byte(`time=2026-11-30T10:25:43.051Z level=INFO msg="task ended unknown" id=96cc2fe3-ea0c-5fb9-92aa-79a11d4bbc25 queue=chaos-amo name=t000079 reason="at-most-once: n3 held its one attempt"
time=2026-11-30T10:25:44.000Z level=INFO msg="task ended dead" id=dead-one queue=chaos-amo
=== chaos: start 2 of n1
`), 0o644))
	require.Equal(t, []string{"96cc2fe3-ea0c-5fb9-92aa-79a11d4bbc25"}, endedUnknown([]string{path, path + ".missing"}))
}

// capCall is a call of the capped queue from s to e seconds.
func capCall(id string, s, e float64) Delivery {
	d := call(id, "n1", 1, s, 200)
	d.Queue, d.Answered = queueCapped, at(e)
	return d
}

// The cap in force: initialCap, then each flip's cap once its PUT answered (and
// capSlack more), the higher of old and new until then; a PUT never answered
// allows the higher for good.
func TestCapAllowed(t *testing.T) {
	flip := func(c int, start, answered float64) FaultSpan {
		f := FaultSpan{Fault: Fault{Kind: KindSettings, Cap: c}, Start: at(start)}
		if answered > 0 {
			f.Answered = at(answered)
		}
		return f
	}
	faults := []FaultSpan{flip(1, 10, 10.5), flip(3, 20, 21), flip(1, 30, 0)}
	for _, c := range []struct {
		t    float64
		want int
	}{{5, 2}, {10.2, 2}, {11.4, 2}, {11.6, 1}, {19, 1}, {20.5, 3}, {22.5, 3}, {29, 3}, {31, 3}, {100, 3}} {
		require.Equal(t, c.want, capAllowed(faults, at(c.t)), "at %gs", c.t)
	}
	require.Equal(t, 1, capAllowed(faults[:2][:1], at(50)))
}

// More calls of the capped queue in flight at once than the cap allowed fail the
// run; as many as it allowed do not.
func TestCheckCap(t *testing.T) {
	lowered := FaultSpan{Fault: Fault{Kind: KindSettings, Cap: 1}, Start: at(10), Answered: at(10.5)}
	h := History{Nodes: 3, Faults: []FaultSpan{lowered},
		Deliveries: []Delivery{capCall("a", 1, 3), capCall("b", 2, 4), capCall("c", 12, 14), capCall("d", 14, 15)}}
	r := Check(h)
	require.False(t, r.Failed(), printed(r))
	require.Equal(t, 4, r.CappedCalls)
	require.Equal(t, 2, r.MaxCappedInFlight)
	require.Contains(t, printed(r), "capped queue             4 calls, at most 2 in flight; 0 over the cap in force")

	h.Deliveries = append(h.Deliveries, capCall("e", 13, 13.5))
	r = Check(h)
	require.True(t, r.Failed(), printed(r))
	require.Len(t, r.OverCap, 1)
	require.Contains(t, r.OverCap[0].What, "started with 2 calls in flight, max_concurrent allowed 1")

	h.Deliveries = append(h.Deliveries[:4], capCall("e", 2.5, 3.5))
	r = Check(h)
	require.True(t, r.Failed(), "3 in flight under a cap of 2: %s", printed(r))
}

// A name answered 200 twice was accepted twice (the late Store answers bug of
// names-late-store-answers); a 200 then 409s, or a name of its own, is fine.
func TestCheckNamesTwice(t *testing.T) {
	named := func(id, name string, scheduled bool) Ack {
		a := ack(id, false)
		a.Name, a.Scheduled = name, scheduled
		return a
	}
	h := history(named("a", "t1", true), views("succeeded"), nil, call("a", "n1", 1, 1, 200))
	h.Acked = append(h.Acked, named("a", "t1", false), named("a", "t1", false))
	r := Check(h)
	require.False(t, r.Failed(), printed(r))
	require.Contains(t, printed(r), "names accepted twice     0\n")

	h.Acked = append(h.Acked, named("a", "t1", true))
	r = Check(h)
	require.True(t, r.Failed())
	require.Len(t, r.NamesTwice, 1)
	require.Contains(t, printed(r), "NAME ACCEPTED TWICE: task a (chaos-alo): name t1 answered 200 (scheduled) 2 times, task IDs a a")

	// The same name on another queue is another name.
	h.Acked = h.Acked[:3]
	other := named("b", "t1", true)
	other.Queue = queueAtMostOnce
	h.Acked = append(h.Acked, other)
	h.Views["b"] = views("succeeded")
	h.Deliveries = append(h.Deliveries, call("b", "n1", 1, 1, 200))
	r = Check(h)
	require.Empty(t, r.NamesTwice, printed(r))
}
