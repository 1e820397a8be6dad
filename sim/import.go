package sim

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/miyamotohq/miyamoto/node"
)

// ImportOptions is what ImportRecorded needs besides the events.
type ImportOptions struct {
	Name          string
	Replicas      int
	ReplicaOffset time.Duration
	Lease         time.Duration
	Protocol      node.Protocol
	Durable       bool
}

// isolationMin is the fewest messages in a row to and from a live node that must
// have been lost before ImportRecorded calls it cut off (a partition) rather than
// unlucky.
const isolationMin = 3

// ImportRecorded turns what production nodes did (CheckRecorded's events, merged)
// into a scenario whose fixed fault schedule replays the incident in the simulator:
// the members become n1..nN in ID order; their clocks' offsets, measured from the
// messages' send and receive readings (clockOffsets), become clocks.offsets, and
// every time below is on true time (a reading less its clock's offset); each gap
// between two runs of a node (its process stopped, then started again) is a kill
// (durable storage) or a crash of that long; a stretch in which every message to
// and from a live node was lost, both ways, with more than one peer, is an isolate
// of that node; a stretch of messages lost on one link (from one node to another)
// outside those is a oneway of that link (oneways); the network's latency is the
// range of the delays seen (send to receive, on true time: at least 100 µs), and
// its drop rate the share of other messages lost; the workload has as many tasks,
// at the rate they were created, with their countdowns' range and their queues; the
// workers answer with the latencies and the shares of 4xx, 5xx and no answer seen.
// The end of a run at the end of the recording is not a fault.
func ImportRecorded(cl RecordedCluster, opts ImportOptions, events []RecordedEvent) (*Scenario, error) {
	if len(events) == 0 {
		return nil, fmt.Errorf("the recordings hold no event")
	}
	members := slices.Sorted(slices.Values(cl.Members))
	offsets := clockOffsets(members, events)
	im := newImporter(cl, onTrueTime(events, offsets))
	sc := &Scenario{Name: opts.Name}
	names := make([]string, len(im.members))
	for i, m := range im.members {
		names[i] = fmt.Sprintf("%s=%s", nodeName(i), m)
	}
	sc.Description = fmt.Sprintf("Imported from the flight recordings of %s (%s to %s).", strings.Join(names, ", "),
		im.origin.UTC().Format(time.RFC3339), im.end.UTC().Format(time.RFC3339))
	sc.Cluster = ClusterSpec{Nodes: len(im.members), Replicas: min(max(opts.Replicas, 1), len(im.members)),
		ReplicaOffset: Duration(opts.ReplicaOffset), Protocol: opts.Protocol.String(), Lease: Duration(opts.Lease),
		MaxClockDrift: Duration(cl.MaxClockDrift), PermitValidity: Duration(cl.PermitValidity), DedupWindow: Duration(cl.DedupWindow), Storage: "memory"}
	if opts.Durable {
		sc.Cluster.Storage = "durable"
	}
	sc.Duration = Duration(max(im.end.Sub(im.origin).Round(time.Second)+time.Second, time.Second))
	sc.LivenessBound = Duration(2 * time.Minute)
	sc.Expect = Expectation{Outcome: "pass"}
	for m, off := range offsets {
		if sc.Clocks.Offsets == nil {
			sc.Clocks.Offsets = map[string]Duration{}
		}
		sc.Clocks.Offsets[im.name[m]] = Duration(off)
	}
	isolations := im.isolations()
	oneways := im.oneways(isolations)
	sc.Faults.Schedule = slices.Concat(im.crashes(opts.Durable), isolations, oneways)
	sort.SliceStable(sc.Faults.Schedule, func(i, j int) bool { return sc.Faults.Schedule[i].At < sc.Faults.Schedule[j].At })
	sc.Network = im.network(slices.Concat(isolations, oneways))
	sc.Workload = im.workload()
	sc.Workers = im.workers()
	sc.fillDefaults()
	if err := sc.Validate(); err != nil {
		return nil, fmt.Errorf("the imported scenario is not valid: %w", err)
	}
	return sc, nil
}

type importer struct {
	events      []RecordedEvent
	members     []node.NodeID
	name        map[node.NodeID]string
	origin, end time.Time
	down        map[node.NodeID][][2]time.Time // per node: when its process was not running
	runs        map[node.NodeID][][2]time.Time // per node: when its process ran (a run's start and stop)
}

// liveMargin: a message sent to a node less than this before its process stopped
// (or its recording ends) is not counted as received or lost: the receipt may be in
// the part of the recording a killed process never wrote.
const liveMargin = 500 * time.Millisecond

func newImporter(cl RecordedCluster, events []RecordedEvent) *importer {
	im := &importer{events: events, members: slices.Clone(cl.Members), name: map[node.NodeID]string{},
		down: map[node.NodeID][][2]time.Time{}, runs: map[node.NodeID][][2]time.Time{}}
	slices.Sort(im.members)
	for i, m := range im.members {
		im.name[m] = nodeName(i)
	}
	im.origin, im.end = events[0].At, events[0].At
	for _, e := range events {
		if e.At.Before(im.origin) {
			im.origin = e.At
		}
		if e.At.After(im.end) {
			im.end = e.At
		}
	}
	stopped := map[node.NodeID]time.Time{}
	started := map[node.NodeID]time.Time{}
	for _, e := range events {
		switch e.Kind {
		case RecStop:
			stopped[e.Node] = e.At
			im.runs[e.Node] = append(im.runs[e.Node], [2]time.Time{started[e.Node], e.At})
		case RecStart:
			started[e.Node] = e.At
			if t, ok := stopped[e.Node]; ok {
				im.down[e.Node] = append(im.down[e.Node], [2]time.Time{t, e.At})
				delete(stopped, e.Node)
			}
		}
	}
	return im
}

func (im *importer) since(t time.Time) Duration { return Duration(max(t.Sub(im.origin), 0)) }

// crashes: each gap between two runs of a node.
func (im *importer) crashes(durable bool) []FaultEvent {
	kind := "crash"
	if durable {
		kind = "kill"
	}
	var out []FaultEvent
	for _, m := range im.members {
		for _, d := range im.down[m] {
			out = append(out, FaultEvent{At: im.since(d[0]), Kind: kind, Nodes: []string{im.name[m]}, Duration: Duration(max(d[1].Sub(d[0]), time.Millisecond))})
		}
	}
	return out
}

// receiving reports whether id's process ran from t until liveMargin after it, so
// that a message sent to it at t was received if its recording does not say so.
func (im *importer) receiving(id node.NodeID, t time.Time) bool {
	for _, r := range im.runs[id] {
		if !t.Before(r[0]) && !t.Add(liveMargin).After(r[1]) {
			return true
		}
	}
	return false
}

// peerSends are the messages to and from each node, in order, with whether each
// arrived, leaving out those to a node whose process was not running (see
// receiving).
func (im *importer) peerSends() map[node.NodeID][]RecordedEvent {
	out := map[node.NodeID][]RecordedEvent{}
	for _, e := range im.events {
		if e.Kind != RecSend || e.Message.To == e.Node || !im.receiving(e.Message.To, e.At) {
			continue
		}
		out[e.Node] = append(out[e.Node], e)
		out[e.Message.To] = append(out[e.Message.To], e)
	}
	return out
}

// isolations: stretches of at least isolationMin messages to and from a node, all
// lost, with more than one of its peers (in a cluster of more than two).
func (im *importer) isolations() []FaultEvent {
	var out []FaultEvent
	sends := im.peerSends()
	for _, m := range im.members {
		var run []RecordedEvent
		flush := func(next time.Time) {
			// Cut off from one peer only, it is the peer that is cut off, or a
			// link (oneways).
			peers := map[node.NodeID]bool{}
			to, from := false, false
			for _, e := range run {
				peers[e.Node], peers[e.Message.To] = true, true
				to, from = to || e.Message.To == m, from || e.Node == m
			}
			// Lost one way only, it is one-way links (oneways), not a cut-off node.
			if len(run) >= isolationMin && len(peers)-1 >= min(2, len(im.members)-1) && to && from {
				end := next
				if end.IsZero() {
					end = run[len(run)-1].At.Add(time.Second)
				}
				out = append(out, FaultEvent{At: im.since(run[0].At), Kind: "isolate", Nodes: []string{im.name[m]}, Duration: Duration(max(end.Sub(run[0].At), time.Millisecond))})
			}
			run = nil
		}
		for _, e := range sends[m] {
			if e.Lost {
				run = append(run, e)
				continue
			}
			flush(e.At)
		}
		flush(time.Time{})
	}
	return out
}

// oneways: a link from a to b whose messages were all lost, at least isolationMin in
// a row, outside an isolation of either end (which explains them), is a oneway
// fault of that link, until the next message from a to b arrived. A link lost both
// ways gives two; a node that could send to none of its peers, one per peer.
func (im *importer) oneways(isolations []FaultEvent) []FaultEvent {
	links := map[nodeLink][]RecordedEvent{}
	for _, e := range im.events {
		if e.Kind == RecSend && e.Message.To != e.Node && im.receiving(e.Message.To, e.At) {
			l := nodeLink{e.Node, e.Message.To}
			links[l] = append(links[l], e)
		}
	}
	var out []FaultEvent
	for _, l := range slices.SortedFunc(maps.Keys(links), func(a, b nodeLink) int {
		return cmp.Or(cmp.Compare(a.from, b.from), cmp.Compare(a.to, b.to))
	}) {
		var run []RecordedEvent
		flush := func(next time.Time) {
			if len(run) >= isolationMin {
				end := next
				if end.IsZero() {
					end = run[len(run)-1].At.Add(time.Second)
				}
				out = append(out, FaultEvent{At: im.since(run[0].At), Kind: "oneway", Nodes: []string{im.name[l.from], im.name[l.to]},
					Duration: Duration(max(end.Sub(run[0].At), time.Millisecond))})
			}
			run = nil
		}
		for _, e := range links[l] {
			switch {
			case im.cut(isolations, e.Node, e.Message.To, e.At):
				flush(e.At)
			case e.Lost:
				run = append(run, e)
			default:
				flush(e.At)
			}
		}
		flush(time.Time{})
	}
	return out
}

// cut reports whether one of the faults (isolations and one-way links) drops a
// message from one node to another sent at t.
func (im *importer) cut(faults []FaultEvent, from, to node.NodeID, t time.Time) bool {
	at := im.since(t)
	for _, f := range faults {
		if at < f.At || at >= f.At+f.Duration {
			continue
		}
		switch f.Kind {
		case "isolate":
			if f.Nodes[0] == im.name[from] || f.Nodes[0] == im.name[to] {
				return true
			}
		case "oneway":
			if f.Nodes[0] == im.name[from] && f.Nodes[1] == im.name[to] {
				return true
			}
		}
	}
	return false
}

// network: the delays seen and the share of messages lost outside the faults
// (isolations and one-way links).
func (im *importer) network(faults []FaultEvent) NetworkSpec {
	var delays []time.Duration
	lost, sent := 0, 0
	for _, e := range im.events {
		switch {
		case e.Kind == RecReceive && e.SendIndex >= 0:
			delays = append(delays, e.At.Sub(im.events[e.SendIndex].At))
		case e.Kind == RecSend && e.Message.To != e.Node && im.receiving(e.Message.To, e.At) &&
			!im.cut(faults, e.Node, e.Message.To, e.At):
			sent++
			if e.Lost {
				lost++
			}
		}
	}
	spec := NetworkSpec{Latency: spread(delays, 100*time.Microsecond, Range{Duration(time.Millisecond), Duration(5 * time.Millisecond)})}
	if sent > 0 && float64(lost)/float64(sent) > 0.01 {
		spec.Drop = math.Round(1000*float64(lost)/float64(sent)) / 1000
	}
	return spec
}

// spread is the range of ds (the 95th percentile as its top, so that one outlier
// does not set it), each at least floor; def when there is none.
func spread(ds []time.Duration, floor time.Duration, def Range) Range {
	if len(ds) == 0 {
		return def
	}
	slices.Sort(ds)
	lo := max(ds[0], floor)
	hi := max(ds[min(len(ds)-1, len(ds)*95/100)], lo)
	return Range{Duration(lo), Duration(hi)}
}

// workload: the tasks as they were created.
func (im *importer) workload() WorkloadSpec {
	type seen struct {
		created time.Time
		task    *node.Task
	}
	tasks := map[string]seen{}
	var order []string
	add := func(at time.Time, t *node.Task) {
		if _, ok := tasks[t.ID]; !ok {
			tasks[t.ID] = seen{at, t}
			order = append(order, t.ID)
		}
	}
	for _, e := range im.events {
		switch {
		case e.Kind == RecState && e.Task != nil && e.From == node.StateNone:
			add(e.At, e.Task)
		case e.Kind == RecStart && e.Snapshot:
			// A window's tasks were created before it: still pending, they are
			// part of the incident's work, taken as created at the window.
			for _, k := range e.Known {
				if !k.State.Final() {
					add(e.At, k.Task)
				}
			}
		}
	}
	w := WorkloadSpec{Tasks: len(order), Rate: 1, Countdown: Range{}}
	if len(order) == 0 {
		return w
	}
	first, last := tasks[order[0]].created, tasks[order[0]].created
	var countdowns []time.Duration
	queues := map[string]node.DeliveryMode{}
	for _, id := range order {
		s := tasks[id]
		first, last = minTime(first, s.created), maxTime(last, s.created)
		countdowns = append(countdowns, max(s.task.ETA.Sub(s.task.Created), 0))
		queues[s.task.Queue] = s.task.Delivery
	}
	if span := last.Sub(first).Seconds(); span > 0 {
		w.Rate = math.Round(100*float64(len(order))/span) / 100
	} else {
		w.Rate = float64(len(order))
	}
	w.Rate = max(w.Rate, 0.01)
	w.Countdown = spread(countdowns, 0, Range{})
	w.Countdown.Max = Duration(slices.Max(countdowns)) // every countdown seen, not the 95th percentile
	for _, q := range slices.Sorted(maps.Keys(queues)) {
		spec := QueueSpec{Name: q}
		if queues[q] == node.AtMostOnce {
			spec.Delivery = "at-most-once"
		}
		w.Queues = append(w.Queues, spec)
	}
	return w
}

// workers: the latencies and answers the deliveries got.
func (im *importer) workers() WorkerSpec {
	type key struct {
		node    node.NodeID
		task    string
		attempt uint64
	}
	started := map[key]time.Time{}
	var latencies []time.Duration
	answers, client, server, never := 0, 0, 0, 0
	for _, e := range im.events {
		switch e.Kind {
		case RecDispatch:
			started[key{e.Node, e.Delivery.Task.ID, e.Delivery.Attempt}] = e.At
		case RecResult:
			k := key{e.Node, e.Task.ID, e.Attempt}
			at, ok := started[k]
			if !ok {
				continue
			}
			delete(started, k)
			answers++
			switch {
			case e.Status == 0:
				never++
				continue
			case e.Status >= 500:
				server++
			case e.Status >= 400:
				client++
			}
			latencies = append(latencies, e.At.Sub(at))
		}
	}
	spec := WorkerSpec{Latency: spread(latencies, time.Millisecond, Range{Duration(5 * time.Millisecond), Duration(50 * time.Millisecond)})}
	if answers > 0 {
		share := func(n int) float64 { return math.Round(1000*float64(n)/float64(answers)) / 1000 }
		spec.ClientError, spec.ServerError, spec.Never = share(client), share(server), share(never)
	}
	return spec
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
