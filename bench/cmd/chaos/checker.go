package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/miyamotohq/miyamoto/net/api"
)

// Ack is a task a node acknowledged: a 200 "scheduled", or a 409 naming the task
// an earlier try of the same enqueue stored.
type Ack struct {
	Task       string    `json:"task"`
	Queue      string    `json:"queue"`
	Name       string    `json:"name"`
	AtMostOnce bool      `json:"at_most_once,omitempty"`
	At         time.Time `json:"at"`
	// Scheduled: the node answered 200 (it stored the task for this enqueue), not
	// 409 (the name was taken). A name answered 200 twice was accepted twice.
	Scheduled bool `json:"scheduled,omitempty"`
}

// Delivery is one call the worker received, and what it answered.
type Delivery struct {
	Task     string    `json:"task"`
	Queue    string    `json:"queue"`
	Name     string    `json:"name,omitempty"`
	Node     string    `json:"node"`
	Attempt  uint64    `json:"attempt"`
	At       time.Time `json:"at"`       // when the call came
	Answered time.Time `json:"answered"` // when the worker answered it
	Status   int       `json:"status"`
}

func (d Delivery) ok() bool { return d.Status >= 200 && d.Status < 300 }

func (d Delivery) String() string {
	return fmt.Sprintf("attempt %d by %s at %s answered %d", d.Attempt, d.Node, d.At.Format("15:04:05.000"), d.Status)
}

// FaultSpan is a fault as it happened: from Start until it was healed at End.
type FaultSpan struct {
	Fault
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// Problem: a replace step that did not end in its time (the join, the
	// removal, the moves), or a settings PUT not answered 200 in its time, which
	// fails the run.
	Problem string `json:"problem,omitempty"`
	// Answered: when a settings flip's PUT answered 200 (every member has it).
	Answered time.Time `json:"answered,omitzero"`
}

// NodeView is one node's answer to GET /v1/tasks/{id} after the drain: the task
// (Found), 404 (not Found), or no answer (Err).
type NodeView struct {
	Node  string        `json:"node"`
	Found bool          `json:"found"`
	Err   string        `json:"err,omitempty"`
	Task  *api.TaskView `json:"task,omitempty"`
}

// History is everything a run saw: what was acknowledged, what the worker got,
// which faults were injected, and what every node says of every acknowledged task
// at the end.
type History struct {
	Nodes      int                   `json:"nodes"`             // nodes started, joiners included
	Members    []string              `json:"members,omitempty"` // the roster at the end: the nodes the drain asked
	Enqueued   int                   `json:"enqueued"`          // enqueues the load started
	Acked      []Ack                 `json:"acked"`
	NotAcked   int                   `json:"not_acked"` // enqueues that never got an answer saying stored
	Deliveries []Delivery            `json:"deliveries"`
	Faults     []FaultSpan           `json:"faults"`
	Views      map[string][]NodeView `json:"views"` // by task ID, one per node
	// EndedUnknown are the tasks a node's log says it ended unknown ("task ended
	// unknown"), every node's log, replaced ones included: after a replace, an
	// at-most-once task that ended unknown and was then forgotten (no member knows
	// it) is told from a lost one by them.
	EndedUnknown []string `json:"ended_unknown,omitempty"`
	// Crashes are the node processes that ended without being killed.
	Crashes []string `json:"crashes,omitempty"`
}

// How near a fault must be to the first successful delivery to explain a later
// one: it was active from explainBefore before that delivery's answer until
// explainAfter after it (long enough for Done to reach a majority many times
// over, on loopback).
const (
	explainBefore = 1 * time.Second
	explainAfter  = 2 * time.Second
)

// Problem is one task the checker finds wrong, and why.
type Problem struct {
	Task  string
	Queue string
	What  string
}

// Duplicate is a delivery that came after a successful one of the same task, or
// while an earlier one was unanswered, and the fault (or the node's own record)
// that explains it, if any.
type Duplicate struct {
	Task   string
	Queue  string
	First  Delivery // the earlier delivery: successful, or unanswered when Again came
	Again  Delivery
	Reason string // empty: unexplained
}

// Report is the checker's verdict on a History.
type Report struct {
	Enqueued                                 int
	Acked, AckedAtLeastOnce, AckedAtMostOnce int
	NotAcked                                 int
	Delivered                                int // acknowledged tasks the worker saw at least once
	Deliveries                               int // calls the worker received, for any task
	WorkerFailures                           int // calls the worker answered with a failure on purpose
	UnackedDeliveries                        int // calls for tasks no node acknowledged (an enqueue that timed out may still be stored)
	Faults                                   int
	FaultKinds                               string

	Lost          []Problem
	Explained     []Duplicate
	Unexplained   []Duplicate
	AtMostOnceDup []Problem
	Stuck         []Problem
	Mismatches    []Problem // one per task, naming each node at odds
	Crashes       []string
	Membership    []string // faults that did not finish: a join, removal or move, or a settings PUT, not done in time
	// CappedCalls counts the calls of queueCapped the worker got (a run with the
	// settings fault), MaxCappedInFlight the most it had in flight at once, and
	// OverCap the calls that started with more in flight than the cap allowed.
	CappedCalls, MaxCappedInFlight int
	OverCap                        []Problem
	// NamesTwice lists names a node answered 200 for more than once: every name is
	// taken for the nodes' dedup window (an hour), longer than any run, so a
	// second enqueue of it, or a retry after a try that stored it, must get a 409.
	NamesTwice []Problem
	// Forgotten counts tasks no member knows after the drain (see forgotten).
	Forgotten int
	// Unanswered counts a member's last lookup of a task that gave no answer (an
	// error, a 5xx, a timeout) after the drain, which fails the run: every member
	// of a healed cluster answers for every task (GET /v1/tasks/{id} on any node).
	// UnansweredOffList counts those of members not on the task's replica list.
	Unanswered, UnansweredOffList int
	// UnknownUndelivered counts at-most-once tasks that ended unknown without the
	// worker seeing them: their claimant died or was cut off after winning its
	// claim, which at-most-once allows (never retried).
	Unknown, UnknownUndelivered int
}

// Failed tells whether the run broke a promise: a loss, an unexplained duplicate,
// a second delivery of an at-most-once task, a task stuck after the drain, a node
// that crashed, a replace that did not finish, or a member that did not answer for
// a task after the drain.
func (r *Report) Failed() bool {
	return len(r.Lost)+len(r.Unexplained)+len(r.AtMostOnceDup)+len(r.Stuck)+len(r.Mismatches)+len(r.Crashes)+len(r.Membership)+r.Unanswered+len(r.OverCap)+len(r.NamesTwice) > 0
}

// Check judges h.
func Check(h History) *Report {
	r := &Report{Enqueued: h.Enqueued, Acked: len(h.Acked), NotAcked: h.NotAcked, Deliveries: len(h.Deliveries), Faults: len(h.Faults), Crashes: h.Crashes}
	faults := make([]Fault, len(h.Faults))
	for i, f := range h.Faults {
		faults[i] = f.Fault
		if f.Problem != "" {
			r.Membership = append(r.Membership, f.Problem)
		}
	}
	r.FaultKinds = countKinds(faults)
	byTask := map[string][]Delivery{}
	for _, d := range h.Deliveries {
		byTask[d.Task] = append(byTask[d.Task], d)
		if !d.ok() {
			r.WorkerFailures++
		}
	}
	endedUnknown := map[string]bool{}
	for _, id := range h.EndedUnknown {
		endedUnknown[id] = true
	}
	acked := map[string]bool{}
	for _, a := range h.Acked {
		if acked[a.Task] {
			continue
		}
		acked[a.Task] = true
		ds := byTask[a.Task]
		sort.SliceStable(ds, func(i, j int) bool { return ds[i].At.Before(ds[j].At) })
		r.checkTask(a, ds, h.Views[a.Task], h, endedUnknown)
	}
	for id, ds := range byTask {
		if !acked[id] {
			r.UnackedDeliveries += len(ds)
		}
	}
	r.checkCap(h)
	r.checkNames(h)
	return r
}

// capSlack is how long after a settings PUT answered 200 a call may still have
// started under the cap before it: the worker sees a call when it arrives, a
// moment after the node was given its permit.
const capSlack = time.Second

// capAllowed is the max_concurrent of queueCapped a call arriving at t may have
// started under: initialCap, then each settings flip's cap once its PUT answered
// (plus capSlack), the higher of the old and the new one until then (a member may
// not have it yet); for ever, when a PUT was never answered.
func capAllowed(faults []FaultSpan, t time.Time) int {
	cur := initialCap
	for _, f := range faults {
		if f.Kind != KindSettings || t.Before(f.Start) {
			continue
		}
		if f.Answered.IsZero() || t.Before(f.Answered.Add(capSlack)) {
			cur = max(cur, f.Cap)
			if f.Answered.IsZero() {
				continue
			}
			return cur
		}
		cur = f.Cap
	}
	return cur
}

// checkCap is Q2 from the worker's side, for a run with the settings fault: at no
// call's arrival did the worker have more calls of queueCapped in flight (that one
// included) than the cap allowed then. The worker's in-flight span of a call lies
// within the node's (it asked the token node before calling and gives the permit
// back after the answer), so the worker never sees more than the token node counts.
func (r *Report) checkCap(h History) {
	var calls []Delivery
	for _, d := range h.Deliveries {
		if d.Queue == queueCapped {
			calls = append(calls, d)
		}
	}
	sort.SliceStable(calls, func(i, j int) bool { return calls[i].At.Before(calls[j].At) })
	r.CappedCalls = len(calls)
	for i, d := range calls {
		inFlight := 1
		var others []string
		for _, e := range calls[:i] {
			if e.Answered.After(d.At) {
				inFlight++
				others = append(others, e.Task+" "+e.String())
			}
		}
		r.MaxCappedInFlight = max(r.MaxCappedInFlight, inFlight)
		if allowed := capAllowed(h.Faults, d.At); inFlight > allowed {
			r.OverCap = append(r.OverCap, Problem{Task: d.Task, Queue: d.Queue,
				What: fmt.Sprintf("%s started with %d calls in flight, max_concurrent allowed %d; in flight: %s", d, inFlight, allowed, strings.Join(others, ", "))})
		}
	}
}

// replaced tells whether the run replaced a node.
func (h History) replaced() bool {
	for _, f := range h.Faults {
		if f.Kind == KindReplace {
			return true
		}
	}
	return false
}

// finalStates are the states a task ends in.
var finalStates = map[string]bool{"succeeded": true, "dead": true, "unknown": true, "cancelled": true}

// checkTask judges one acknowledged task by its deliveries (oldest first) and what
// each node says of it.
func (r *Report) checkTask(a Ack, ds []Delivery, views []NodeView, h History, endedUnknown map[string]bool) {
	if a.AtMostOnce {
		r.AckedAtMostOnce++
	} else {
		r.AckedAtLeastOnce++
	}
	if len(ds) > 0 && (a.AtMostOnce || firstSuccess(ds) >= 0) {
		r.Delivered++
	}
	problem := func(what string, args ...any) Problem {
		return Problem{Task: a.Task, Queue: a.Queue, What: fmt.Sprintf(what, args...) + "; worker saw " + describeDeliveries(ds) + "; nodes say " + describeViews(views)}
	}
	replicas := replicaNames(views)
	for _, v := range views {
		if v.Err != "" {
			r.Unanswered++
			if len(replicas) > 0 && !replicas[v.Node] {
				r.UnansweredOffList++
			}
		}
	}
	if forgotten(views) && h.replaced() {
		r.Forgotten++
	}
	state := agreedState(views)
	if state == "" && forgotten(views) && h.replaced() && endedUnknown[a.Task] {
		state = "unknown" // by the log of the node that ended it, since replaced
	}
	if stuck := stuckReason(views); stuck != "" {
		r.Stuck = append(r.Stuck, problem("%s", stuck))
	} else if lost := lostReason(a, ds, state); lost != "" {
		r.Lost = append(r.Lost, problem("%s", lost))
	}
	if ms := mismatches(a, ds, views, h.replaced()); len(ms) > 0 {
		r.Mismatches = append(r.Mismatches, problem("%s", strings.Join(ms, "; ")))
	}
	if a.AtMostOnce {
		r.checkAtMostOnce(ds, state, problem)
		return
	}
	r.checkDuplicates(a, ds, views, h)
}

func (r *Report) checkAtMostOnce(ds []Delivery, state string, problem func(string, ...any) Problem) {
	if len(ds) > 1 {
		r.AtMostOnceDup = append(r.AtMostOnceDup, problem("delivered %d times", len(ds)))
	}
	if state == "unknown" {
		r.Unknown++
		if len(ds) == 0 {
			r.UnknownUndelivered++
		}
	}
}

// checkDuplicates finds the deliveries of an at-least-once task that should not
// have happened, each with what explains it: one that came after a successful
// delivery, or while an earlier one was still unanswered (two at once).
func (r *Report) checkDuplicates(a Ack, ds []Delivery, views []NodeView, h History) {
	for i := 1; i < len(ds); i++ {
		prior := priorConflict(ds[:i], ds[i])
		if prior < 0 {
			continue
		}
		d := Duplicate{Task: a.Task, Queue: a.Queue, First: ds[prior], Again: ds[i]}
		d.Reason = explain(ds[prior], ds[i], views, h)
		if d.Reason == "" {
			r.Unexplained = append(r.Unexplained, d)
		} else {
			r.Explained = append(r.Explained, d)
		}
	}
}

// priorConflict is the first of earlier that again should not have followed: a
// successful delivery, or one still unanswered when again came; -1 when none.
func priorConflict(earlier []Delivery, again Delivery) int {
	for j, d := range earlier {
		if d.ok() || d.Answered.After(again.At) {
			return j
		}
	}
	return -1
}

func firstSuccess(ds []Delivery) int {
	for i, d := range ds {
		if d.ok() {
			return i
		}
	}
	return -1
}

// explain says why again may follow first, or "" when nothing does. A second call
// of one attempt is never explained: each attempt belongs to one claim. Otherwise
// a duplicate is explained when the node that made the first delivery did not see
// its answer (its own record of the attempt is an error: the answer came too
// late), or when a fault active while first was delivered (from explainBefore
// before the call until explainAfter after the answer) hit that node or cut it off
// from a majority of the task's replicas, so that its Done, or its word that it
// still held the claim, may not have reached them.
func explain(first, again Delivery, views []NodeView, h History) string {
	if again.Attempt == first.Attempt {
		return ""
	}
	if e := recordedFailure(first, views); e != "" {
		return fmt.Sprintf("%s recorded attempt %d as %s: the worker's answer did not reach it", first.Node, first.Attempt, e)
	}
	replicas := replicaIndexes(views, h.Nodes)
	node := nodeIndex(first.Node)
	answered := first.Answered
	if answered.Before(first.At) {
		answered = first.At
	}
	from, to := first.At.Add(-explainBefore), answered.Add(explainAfter)
	for _, f := range h.Faults {
		if f.End.Before(from) || f.Start.After(to) {
			continue
		}
		if touches(f.Fault, node, replicas) {
			return fmt.Sprintf("%s %s from %s to %s, while %s delivered attempt %d", f.Kind, f.Note, f.Start.Format("15:04:05.000"), f.End.Format("15:04:05.000"), first.Node, first.Attempt)
		}
	}
	return ""
}

// recordedFailure is the error or non-2xx status first's node recorded for its
// attempt, if any node's history holds it.
func recordedFailure(first Delivery, views []NodeView) string {
	for _, v := range views {
		if v.Task == nil {
			continue
		}
		for _, at := range v.Task.AttemptsHistory {
			if at.Attempt != first.Attempt || at.Node != first.Node || at.InFlight {
				continue
			}
			if at.Error != "" {
				return at.Error
			}
			if at.Status != 0 && (at.Status < 200 || at.Status >= 300) {
				return fmt.Sprintf("HTTP %d", at.Status)
			}
		}
	}
	return ""
}

// touches tells whether f hit node: a process fault on it, or links cut so that it
// cannot exchange messages both ways with a majority of replicas (itself counted).
func touches(f Fault, node int, replicas []int) bool {
	if f.Kind.isProcess() {
		for _, n := range f.Nodes {
			if n == node {
				return true
			}
		}
		return false
	}
	cut := map[Link]bool{}
	for _, l := range f.Cuts {
		cut[l] = true
	}
	reach := 0
	for _, r := range replicas {
		if r == node || (!cut[Link{node, r}] && !cut[Link{r, node}]) {
			reach++
		}
	}
	return reach < len(replicas)/2+1
}

// replicaIndexes is the task's replica list as the nodes report it, or every node
// when none does.
func replicaIndexes(views []NodeView, nodes int) []int {
	for _, v := range views {
		if v.Task != nil && len(v.Task.Replicas) > 0 {
			out := make([]int, 0, len(v.Task.Replicas))
			for _, id := range v.Task.Replicas {
				out = append(out, nodeIndex(id))
			}
			return out
		}
	}
	out := make([]int, nodes)
	for i := range out {
		out[i] = i
	}
	return out
}

// replicaNames is the task's replica list as the nodes that found it report it
// (empty when none did).
func replicaNames(views []NodeView) map[string]bool {
	out := map[string]bool{}
	for _, v := range views {
		if v.Task != nil && len(v.Task.Replicas) > 0 {
			for _, id := range v.Task.Replicas {
				out[id] = true
			}
			return out
		}
	}
	return out
}

// nodeIndex is the index of node "nK" (K-1), or -1.
func nodeIndex(id string) int {
	var k int
	if _, err := fmt.Sscanf(id, "n%d", &k); err != nil || k < 1 {
		return -1
	}
	return k - 1
}

// forgotten tells whether every member answered that it does not know the task:
// after a replace, a task that was final before every one of its replicas was
// replaced (only tasks not final are moved). Whether the worker saw it end is
// judged as for any task (lost, if it did not).
func forgotten(views []NodeView) bool {
	for _, v := range views {
		if v.Found || v.Err != "" {
			return false
		}
	}
	return len(views) > 0
}

// stuckReason says why the task is not over after the drain, or "".
func stuckReason(views []NodeView) string {
	answered := 0
	var notFinal []string
	for _, v := range views {
		if v.Err != "" {
			continue
		}
		answered++
		if v.Found && !finalStates[v.Task.State] {
			notFinal = append(notFinal, v.Node+" says "+v.Task.State)
		}
	}
	if answered == 0 {
		return "no node answered for it after the drain"
	}
	if len(notFinal) > 0 {
		return "not final after the drain (" + strings.Join(notFinal, ", ") + ")"
	}
	return ""
}

// lostReason says why an acknowledged task that is not stuck counts as lost, or "";
// state is the final state the nodes agree on ("" when they do not, or none knows
// it).
// An at-least-once task is lost unless the worker answered one of its deliveries
// with a 2xx. An at-most-once task is lost when the worker never saw it, unless it
// ended unknown (its one claim was won and its outcome never known).
func lostReason(a Ack, ds []Delivery, state string) string {
	if !a.AtMostOnce {
		if firstSuccess(ds) < 0 {
			return "never delivered successfully"
		}
		return ""
	}
	if len(ds) > 0 {
		return ""
	}
	if state == "unknown" {
		return ""
	}
	return "never delivered, and not unknown"
}

// agreedState is the state every node that found the task gives it, or "" when
// none found it or they disagree.
func agreedState(views []NodeView) string {
	state := ""
	for _, v := range views {
		if !v.Found {
			continue
		}
		if state != "" && v.Task.State != state {
			return ""
		}
		state = v.Task.State
	}
	return state
}

// mismatches compares each node's final state of the task with what the worker saw.
func mismatches(a Ack, ds []Delivery, views []NodeView, replaced bool) []string {
	success := firstSuccess(ds) >= 0
	failed := len(ds) > 0 && !success
	var out []string
	found := 0
	for _, v := range views {
		if v.Found {
			found++
		}
	}
	for _, v := range views {
		switch {
		case v.Err != "":
			continue
		case !v.Found:
			if found > 0 && (!replaced || replicaNames(views)[v.Node]) {
				out = append(out, v.Node+": not found, while other nodes know it")
			}
			continue
		case !finalStates[v.Task.State]:
			continue // stuck, reported as such
		}
		state := v.Task.State
		switch {
		case state == "succeeded" && !success:
			out = append(out, v.Node+": succeeded, but the worker answered no delivery with a 2xx")
		case state == "cancelled":
			out = append(out, v.Node+": cancelled, but nothing cancels tasks in this run")
		case !a.AtMostOnce && success && state != "succeeded":
			out = append(out, v.Node+": "+state+", but the worker answered a delivery with a 2xx")
		case a.AtMostOnce && success && state == "dead":
			out = append(out, v.Node+": dead, but the worker answered its delivery with a 2xx")
		case a.AtMostOnce && failed && state == "succeeded":
			out = append(out, v.Node+": succeeded, but the worker answered its delivery with a failure")
		case a.AtMostOnce && len(ds) == 0 && state == "dead":
			out = append(out, v.Node+": dead, but the worker never saw it")
		}
	}
	if !replaced && forgotten(views) {
		out = append(out, "no node knows it")
	}
	if found > 1 && agreedState(views) == "" {
		out = append(out, "nodes disagree on its final state")
	}
	return out
}

func describeDeliveries(ds []Delivery) string {
	if len(ds) == 0 {
		return "nothing"
	}
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = d.String()
	}
	return strings.Join(parts, ", ")
}

func describeViews(views []NodeView) string {
	parts := make([]string, 0, len(views))
	for _, v := range views {
		switch {
		case v.Err != "":
			parts = append(parts, v.Node+": no answer ("+v.Err+")")
		case !v.Found:
			parts = append(parts, v.Node+": not found")
		default:
			parts = append(parts, v.Node+": "+v.Task.State)
		}
	}
	if len(parts) == 0 {
		return "nothing (not asked)"
	}
	return strings.Join(parts, ", ")
}

// checkNames finds the names answered 200 more than once (NamesTwice).
func (r *Report) checkNames(h History) {
	type key struct{ queue, name string }
	scheduled := map[key][]Ack{}
	var order []key
	for _, a := range h.Acked {
		if !a.Scheduled || a.Name == "" {
			continue
		}
		k := key{a.Queue, a.Name}
		if scheduled[k] == nil {
			order = append(order, k)
		}
		scheduled[k] = append(scheduled[k], a)
	}
	for _, k := range order {
		as := scheduled[k]
		if len(as) < 2 {
			continue
		}
		ids := make([]string, len(as))
		for i, a := range as {
			ids[i] = a.Task
		}
		r.NamesTwice = append(r.NamesTwice, Problem{Task: as[0].Task, Queue: k.queue,
			What: fmt.Sprintf("name %s answered 200 (scheduled) %d times, task IDs %s", k.name, len(as), strings.Join(ids, " "))})
	}
}

// maxListed bounds how many tasks of each kind of problem Print lists.
const maxListed = 20

// Print writes the report: the figures, then the problems.
func (r *Report) Print(w io.Writer) {
	fmt.Fprintf(w, "faults injected          %d (%s)\n", r.Faults, r.FaultKinds)
	fmt.Fprintf(w, "acknowledged             %d of %d enqueues (at-least-once %d, at-most-once %d); never acknowledged %d\n", r.Acked, r.Enqueued, r.AckedAtLeastOnce, r.AckedAtMostOnce, r.NotAcked)
	fmt.Fprintf(w, "delivered                %d tasks (%d calls, %d answered with a failure on purpose, %d for tasks never acknowledged)\n", r.Delivered, r.Deliveries, r.WorkerFailures, r.UnackedDeliveries)
	fmt.Fprintf(w, "lost                     %d\n", len(r.Lost))
	fmt.Fprintf(w, "duplicates               %d explained, %d unexplained\n", len(r.Explained), len(r.Unexplained))
	fmt.Fprintf(w, "at-most-once duplicates  %d\n", len(r.AtMostOnceDup))
	fmt.Fprintf(w, "stuck                    %d\n", len(r.Stuck))
	fmt.Fprintf(w, "at-most-once unknown     %d (%d never delivered)\n", r.Unknown, r.UnknownUndelivered)
	fmt.Fprintf(w, "final-state mismatches   %d tasks\n", len(r.Mismatches))
	fmt.Fprintf(w, "lookups unanswered       %d (%d by members off the task's replica list)\n", r.Unanswered, r.UnansweredOffList)
	fmt.Fprintf(w, "known to no member       %d (after a replace: a task final before its replicas were all replaced is not moved)\n", r.Forgotten)
	fmt.Fprintf(w, "node crashes             %d\n", len(r.Crashes))
	fmt.Fprintf(w, "faults not finished      %d\n", len(r.Membership))
	fmt.Fprintf(w, "names accepted twice     %d\n", len(r.NamesTwice))
	if r.CappedCalls > 0 {
		fmt.Fprintf(w, "capped queue             %d calls, at most %d in flight; %d over the cap in force\n", r.CappedCalls, r.MaxCappedInFlight, len(r.OverCap))
	}
	for _, c := range r.Crashes {
		fmt.Fprintf(w, "CRASH: %s\n", c)
	}
	for _, m := range r.Membership {
		fmt.Fprintf(w, "FAULT NOT FINISHED: %s\n", m)
	}
	printProblems(w, "LOST", r.Lost)
	printDuplicates(w, "UNEXPLAINED DUPLICATE", r.Unexplained)
	printProblems(w, "AT-MOST-ONCE DUPLICATE", r.AtMostOnceDup)
	printProblems(w, "STUCK", r.Stuck)
	printProblems(w, "OVER THE CAP", r.OverCap)
	printProblems(w, "NAME ACCEPTED TWICE", r.NamesTwice)
	printProblems(w, "mismatch", r.Mismatches)
	printDuplicates(w, "explained duplicate", r.Explained)
}

func printProblems(w io.Writer, label string, ps []Problem) {
	for i, p := range ps {
		if i == maxListed {
			fmt.Fprintf(w, "%s: ... and %d more\n", label, len(ps)-maxListed)
			return
		}
		fmt.Fprintf(w, "%s: task %s (%s): %s\n", label, p.Task, p.Queue, p.What)
	}
}

func printDuplicates(w io.Writer, label string, ds []Duplicate) {
	for i, d := range ds {
		if i == maxListed {
			fmt.Fprintf(w, "%s: ... and %d more\n", label, len(ds)-maxListed)
			return
		}
		why := d.Reason
		if why == "" {
			why = "no fault near the earlier delivery explains it"
		}
		fmt.Fprintf(w, "%s: task %s (%s): %s after %s: %s\n", label, d.Task, d.Queue, d.Again, d.First, why)
	}
}
