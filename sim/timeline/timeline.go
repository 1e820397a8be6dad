// Package timeline draws a simulator trace (package sim's JSON Lines) as one
// self-contained HTML page: one lane per node with its deliveries as bars, its
// claims, grants, releases and outcomes as marks, crashes, pauses and partitions as
// shaded spans, each node's clock, and the violations with their tasks. The page
// holds its script, style and data inline: it opens from a file, with no server and
// no network. It draws on a canvas, so a large trace (a 60 s swarm, tens of
// thousands of lines) stays a few elements of DOM.
//
// The package only reads a trace; it never runs the simulator.
package timeline

import (
	"bufio"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"

	"github.com/miyamotohq/miyamoto/sim"
)

//go:embed timeline.html
var page string

// dataMarker is where the page's script expects the data.
const dataMarker = "/*TIMELINE_DATA*/null"

// Data is what the page draws, built from a trace by Parse. Times are nanoseconds
// of true time since the run began; tasks and nodes are indexes into Tasks and Nodes
// (node -1 is the cluster lane: faults and events of no one node).
type Data struct {
	Scenario    string   `json:"scenario"`
	Description string   `json:"description"`
	Seed        uint64   `json:"seed"`
	Protocol    string   `json:"protocol"`
	Build       string   `json:"build"`
	End         int64    `json:"end"`      // the last event's time
	Liveness    int64    `json:"liveness"` // when the liveness phase began; -1 if it did not
	Nodes       []Node   `json:"nodes"`
	Tasks       []string `json:"tasks"`
	// Deliveries are [start, end, node, task, attempt, status]; status 0: no answer
	// by the deadline, -1: cut short by its node's crash (end: the crash), -2: still
	// running when the trace ended (end: the trace's end).
	Deliveries [][6]int64 `json:"deliveries"`
	// Marks are [t, node, kind, task, attempt]; kind indexes MarkKinds.
	Marks     [][5]int64 `json:"marks"`
	MarkKinds []string   `json:"markKinds"`
	// Spans are shaded intervals: crashes, pauses, partitions, message and disk faults.
	Spans []Span `json:"spans"`
	// Events are instants of the cluster lane: clients' queue changes, the swarm's draw.
	Events     []Event     `json:"events"`
	Violations []Violation `json:"violations"`
}

// Node is one lane: a node and its clock.
type Node struct {
	ID     string  `json:"id"`
	Offset int64   `json:"offset"` // ns its clock is ahead of true time at the start
	Drift  float64 `json:"drift"`  // its clock runs at 1+Drift
}

// Span is a shaded interval of one lane.
type Span struct {
	Start int64  `json:"start"`
	End   int64  `json:"end"`
	Node  int    `json:"node"` // -1: the cluster lane
	Kind  string `json:"kind"` // crash, pause, or the fault's kind
	Label string `json:"label"`
}

// Event is an instant of the cluster lane.
type Event struct {
	T    int64  `json:"t"`
	Text string `json:"text"`
}

// Violation is one invariant the checker found broken.
type Violation struct {
	T         int64  `json:"t"`
	Invariant string `json:"invariant"`
	Task      int    `json:"task"`  // the first task involved; -1: none named
	Tasks     []int  `json:"tasks"` // every task involved
	Nodes     []int  `json:"nodes"` // the nodes involved
	Detail    string `json:"detail"`
}

// markKinds are the marks drawn, in the order of their index.
var markKinds = []string{"claim", "grant", "reject", "release", "outcome", "succeeded", "dead", "cancelled", "unknown", "ack", "naive_cancel", "naive_push_back"}

// line is the union of the keys of every trace line (see scenarios/README.md).
type line struct {
	T         int64    `json:"t"`
	Node      string   `json:"node"`
	Kind      string   `json:"kind"`
	Task      string   `json:"task"`
	Attempt   int64    `json:"attempt"`
	Msg       string   `json:"msg"`
	From      string   `json:"from"`
	Grant     string   `json:"grant"`
	Reject    int64    `json:"reject"`
	Status    int64    `json:"status"`
	To        string   `json:"to"`
	Fault     string   `json:"fault"`
	Detail    string   `json:"detail"`
	Invariant string   `json:"invariant"`
	Tasks     []string `json:"tasks"` // a violation's, when more than one
	Involved  []string `json:"nodes"` // a violation's nodes
	Offset    int64    `json:"offset"`
	Drift     float64  `json:"drift"`
}

// builder turns trace lines into Data.
type builder struct {
	d      *Data
	nodes  map[string]int
	tasks  map[string]int
	kinds  map[string]int64
	open   map[string]int // (node, task, attempt) → index of its delivery
	down   map[int]int64  // node → when it crashed (still down)
	paused map[int]int64  // node → when it paused (still paused)
	// faults maps a fault's kind and detail to its open instances, oldest first, each
	// the range [from, to) of its spans (one per lane it shades).
	faults map[string][][2]int
}

// nodeFaults are fault kinds whose effect the node's own crash, restart, pause and
// resume lines already show.
var nodeFaults = map[string]bool{"crash": true, "crash_holder": true, "pause": true, "pause_holder": true, "kill": true, "corrupt": true, "stop": true, "stop_holder": true}

// clientOps are fault lines that are a client's request, drawn as instants.
var clientOps = regexp.MustCompile(`^(set_queue|pause_queue|resume_queue|purge_queue|delete_queue|cancel_task|requeue_task|put_schedule|delete_schedule)(_answer)?$`)

var nodeName = regexp.MustCompile(`\bn[0-9]+\b`)

// Parse reads a trace and returns what the page draws.
func Parse(r io.Reader) (*Data, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return nil, err
		}
		return nil, errors.New("empty trace")
	}
	var h sim.TraceHeader
	if err := json.Unmarshal(sc.Bytes(), &h); err != nil || h.Type != "header" || h.Scenario == nil {
		return nil, errors.New("line 1 is not a trace header (type \"header\" with seed and scenario): is this a trace written by miyamoto sim --trace?")
	}
	b := &builder{
		d: &Data{Scenario: h.Scenario.Name, Description: h.Scenario.Description, Seed: h.Seed, Protocol: h.Protocol, Build: h.Build,
			Liveness: -1, Tasks: []string{}, Deliveries: [][6]int64{}, Marks: [][5]int64{}, MarkKinds: markKinds,
			Spans: []Span{}, Events: []Event{}, Violations: []Violation{}},
		nodes: map[string]int{}, tasks: map[string]int{}, kinds: map[string]int64{}, open: map[string]int{},
		down: map[int]int64{}, paused: map[int]int64{}, faults: map[string][][2]int{},
	}
	for i, k := range markKinds {
		b.kinds[k] = int64(i)
	}
	for i := range h.Scenario.Cluster.Nodes {
		b.node(fmt.Sprintf("n%d", i+1))
	}
	n := 1
	for sc.Scan() {
		n++
		var l line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return nil, fmt.Errorf("line %d: %v", n, err)
		}
		if l.T < 0 {
			return nil, fmt.Errorf("line %d: negative time %d", n, l.T)
		}
		b.d.End = max(b.d.End, l.T)
		b.add(l)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %v", n+1, err)
	}
	b.finish()
	return b.d, nil
}

func (b *builder) node(id string) int {
	if i, ok := b.nodes[id]; ok {
		return i
	}
	b.nodes[id] = len(b.d.Nodes)
	b.d.Nodes = append(b.d.Nodes, Node{ID: id})
	return len(b.d.Nodes) - 1
}

func (b *builder) task(id string) int {
	if id == "" {
		return -1
	}
	if i, ok := b.tasks[id]; ok {
		return i
	}
	b.tasks[id] = len(b.d.Tasks)
	b.d.Tasks = append(b.d.Tasks, id)
	return len(b.d.Tasks) - 1
}

func (b *builder) mark(l line, kind string) {
	b.d.Marks = append(b.d.Marks, [5]int64{l.T, int64(b.node(l.Node)), b.kinds[kind], int64(b.task(l.Task)), l.Attempt})
}

func (b *builder) add(l line) {
	switch l.Kind {
	case "clock":
		nd := &b.d.Nodes[b.node(l.Node)]
		nd.Offset, nd.Drift = l.Offset, l.Drift
	case "deliver_start":
		key := fmt.Sprint(l.Node, "/", l.Task, "/", l.Attempt)
		b.open[key] = len(b.d.Deliveries)
		b.d.Deliveries = append(b.d.Deliveries, [6]int64{l.T, -1, int64(b.node(l.Node)), int64(b.task(l.Task)), l.Attempt, 0})
	case "deliver_end":
		key := fmt.Sprint(l.Node, "/", l.Task, "/", l.Attempt)
		if i, ok := b.open[key]; ok {
			b.d.Deliveries[i][1], b.d.Deliveries[i][5] = l.T, l.Status
			delete(b.open, key)
		}
	case "recv":
		b.message(l)
	case "state":
		switch l.To {
		case "succeeded", "dead", "cancelled", "unknown":
			b.mark(l, l.To)
		}
	case "ack", "tick_ack":
		b.mark(l, "ack")
	case "crash":
		b.down[b.node(l.Node)] = l.T
		b.cutDeliveries(b.node(l.Node), l.T, -1)
	case "restart":
		b.closeNode(b.down, b.node(l.Node), l.T, "crash", "down")
	case "pause", "stop":
		// A stopping node drains (sim's stop fault): drawn as a pause, labelled.
		b.paused[b.node(l.Node)] = l.T
	case "stopped":
		b.closeNode(b.paused, b.node(l.Node), l.T, "pause", "stopping")
		b.down[b.node(l.Node)] = l.T
	case "resume":
		b.closeNode(b.paused, b.node(l.Node), l.T, "pause", "paused")
	case "fault":
		b.fault(l)
	case "violation":
		b.violation(l)
	}
}

func (b *builder) violation(l line) {
	v := Violation{T: l.T, Invariant: l.Invariant, Task: b.task(l.Task), Tasks: []int{}, Nodes: []int{}, Detail: l.Detail}
	tasks := l.Tasks
	if len(tasks) == 0 && l.Task != "" {
		tasks = []string{l.Task}
	}
	for _, id := range tasks {
		v.Tasks = append(v.Tasks, b.task(id))
	}
	for _, id := range l.Involved {
		if nd := b.node(id); !slices.Contains(v.Nodes, nd) {
			v.Nodes = append(v.Nodes, nd)
		}
	}
	b.d.Violations = append(b.d.Violations, v)
}

// message marks the protocol's messages that show a task's life: claims where they
// arrive, answers at the claimant, releases and outcomes at the replicas.
func (b *builder) message(l line) {
	switch l.Msg {
	case "claim", "release", "outcome", "naive_cancel", "naive_push_back":
		b.mark(l, l.Msg)
	case "claim_resp":
		if l.Grant == "yes" {
			b.mark(l, "grant")
		} else {
			b.mark(l, "reject")
		}
	}
}

func (b *builder) closeNode(open map[int]int64, nd int, at int64, kind, label string) {
	start, ok := open[nd]
	if !ok {
		return
	}
	delete(open, nd)
	b.d.Spans = append(b.d.Spans, Span{Start: start, End: at, Node: nd, Kind: kind, Label: label})
}

// fault opens a span at a fault's line and closes it at its end_ line (or when the
// liveness phase ends every fault); a fault that names nodes shades their lanes, any
// other the cluster lane.
func (b *builder) fault(l line) {
	switch {
	case l.Fault == "liveness_phase":
		b.d.Liveness = l.T
		b.closeFaults(l.T)
		return
	case l.Fault == "swarm":
		b.d.Events = append(b.d.Events, Event{T: l.T, Text: "swarm enabled: " + l.Detail})
		return
	case clientOps.MatchString(l.Fault):
		b.d.Events = append(b.d.Events, Event{T: l.T, Text: strings.TrimSpace(l.Fault + " " + l.Detail)})
		return
	}
	if kind, ok := strings.CutPrefix(l.Fault, "end_"); ok {
		key := kind + " " + l.Detail
		if open := b.faults[key]; len(open) > 0 {
			b.endSpans(open[0], l.T)
			b.faults[key] = open[1:]
		}
		return
	}
	if nodeFaults[l.Fault] {
		return
	}
	label := strings.TrimSpace(l.Fault + " " + l.Detail)
	lanes := []int{-1}
	if names := nodeName.FindAllString(l.Detail, -1); len(names) > 0 {
		lanes = lanes[:0]
		for _, name := range names {
			lanes = append(lanes, b.node(name))
		}
	}
	from := len(b.d.Spans)
	for _, nd := range lanes {
		b.d.Spans = append(b.d.Spans, Span{Start: l.T, End: -1, Node: nd, Kind: l.Fault, Label: label})
	}
	key := l.Fault + " " + l.Detail
	b.faults[key] = append(b.faults[key], [2]int{from, len(b.d.Spans)})
}

func (b *builder) endSpans(r [2]int, at int64) {
	for i := r[0]; i < r[1]; i++ {
		b.d.Spans[i].End = at
	}
}

// closeFaults ends every fault still open at at.
func (b *builder) closeFaults(at int64) {
	for key, open := range b.faults {
		for _, r := range open {
			b.endSpans(r, at)
		}
		delete(b.faults, key)
	}
}

// finish ends, at the trace's end, what was still going on.
func (b *builder) finish() {
	b.closeFaults(b.d.End)
	for nd := range b.d.Nodes {
		b.closeNode(b.down, nd, b.d.End, "crash", "down")
		b.closeNode(b.paused, nd, b.d.End, "pause", "paused")
		b.cutDeliveries(nd, b.d.End, -2)
	}
}

// cutDeliveries ends the calls of node nd still open at at, with status.
func (b *builder) cutDeliveries(nd int, at, status int64) {
	for key, i := range b.open {
		if d := &b.d.Deliveries[i]; d[2] == int64(nd) {
			d[1], d[5] = at, status
			delete(b.open, key)
		}
	}
}

// Write writes the page for data to w.
func Write(w io.Writer, data *Data) error {
	js, err := json.Marshal(data) // escapes <, > and &: the data cannot end the script
	if err != nil {
		return err
	}
	before, after, ok := strings.Cut(page, dataMarker)
	if !ok {
		panic("timeline: the page has no data marker " + dataMarker)
	}
	for _, part := range []string{before, string(js), after} {
		if _, err := io.WriteString(w, part); err != nil {
			return err
		}
	}
	return nil
}
