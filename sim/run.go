package sim

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/miyamotohq/miyamoto/net/disk"
	"github.com/miyamotohq/miyamoto/net/version"
	"github.com/miyamotohq/miyamoto/node"
)

// Options tune one run without changing the scenario.
type Options struct {
	// Protocol overrides the scenario's protocol when not empty.
	Protocol string
	// Trace receives the JSON Lines trace when not nil.
	Trace io.Writer
	// Hash computes the trace's SHA-256 (Result.TraceHash) even without Trace.
	Hash bool
	// ScenarioPath is named in the replay command of a failure.
	ScenarioPath string
	// lineSink receives every trace line (replay compares them as they come).
	lineSink func([]byte) bool
	// inject: messages a hostile member sends, stepped into a node at a true time
	// as if they came off the wire (fuzz_test.go). Unexported: no flag or
	// scenario reaches it.
	inject []injection
	// liveQueue, when set, limits L1 to that queue's tasks: a hostile member may
	// rightly pause another queue for good, or schedule ticks into one.
	liveQueue string
	// applied, when set, receives every fault as it was applied, its draws resolved
	// (nodes named, a holder's kind made plain): the swarm's faults as a schedule
	// (shrink.go).
	applied *[]FaultEvent
	// tweak, when set, changes each node's config, and started sees each node
	// made (compact_test.go: the compact forms' knobs, which change no trace).
	tweak   func(*node.Config)
	started func(*node.Node)
}

// injection is one message stepped into node index to at true time at.
type injection struct {
	at time.Duration
	to int
	m  node.Message
}

// Result is what one seed showed.
type Result struct {
	Scenario string
	Seed     uint64
	Protocol string
	Enqueued int // requests sent
	Acked    int // tasks acknowledged to the client
	// NameRefused counts enqueues refused because another task had their name.
	NameRefused int
	// FullRefused counts enqueues refused with a 503: the admission limits (full),
	// a node still starting, or one whose disk cannot write.
	FullRefused int
	Deliveries  int
	Succeeded   int // acknowledged tasks that ended succeeded
	Duplicates  int // deliveries after a success, excused or not
	Excused     []Excuse
	Violations  []Violation
	// ViolationCounts counts every violation by invariant (Violations keeps the first 50).
	ViolationCounts map[string]int
	// Lookups counts the clients' lookups made (workload.lookups), LookupsFinal those
	// answered with a final state (V1 judged each).
	Lookups, LookupsFinal int
	SimTime               time.Duration
	Events                uint64
	Wall                  time.Duration
	TraceHash             string
	Swarm                 []string // fault kinds this seed enabled
	Command               string   // replays this run
}

// Failed reports whether any invariant was violated.
func (r *Result) Failed() bool { return len(r.ViolationCounts) > 0 }

// Invariants lists the violated invariants, sorted.
func (r *Result) Invariants() []string { return sortedKeys(r.ViolationCounts) }

// Report is a human summary of the violations with the command that replays them.
func (r *Result) Report() string {
	if !r.Failed() {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "scenario %s seed %d (protocol %s): %d violation(s) of %s\n", r.Scenario, r.Seed, r.Protocol, sum(r.ViolationCounts), strings.Join(r.Invariants(), ", "))
	for i, v := range r.Violations {
		if i == 5 {
			fmt.Fprintf(&b, "  ... %d more kept, see the trace\n", len(r.Violations)-5)
			break
		}
		fmt.Fprintf(&b, "  seed %d: %s\n", r.Seed, v)
	}
	fmt.Fprintf(&b, "  replay: %s\n", r.Command)
	return b.String()
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// testTraceNote is D1's negative control, a hook for tests of this package only
// (sweep_test.go): when set, every run writes what it returns into its trace, so a
// test can let something the seed does not decide (a draw from the process-wide
// random source) reach the trace and show that Sweep's CheckDeterminism catches it. Unexported and nil in
// every build of the command: no flag or scenario reaches it.
var testTraceNote func() string

// Run simulates one seed of a scenario.
func Run(sc *Scenario, seed uint64, opts Options) (*Result, error) {
	protoName := sc.Cluster.Protocol
	if opts.Protocol != "" {
		protoName = opts.Protocol
	}
	proto, err := node.ParseProtocol(protoName)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	w := &world{sc: sc, seed: seed, proto: proto, byID: map[node.NodeID]*simNode{}, changeGen: map[string]int{}, liveQueue: opts.liveQueue, applied: opts.applied, tweak: opts.tweak, started: opts.started}
	split := func(k uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, k)) }
	w.rngNet, w.rngFault, w.rngWork, w.rngWorker, w.rngClock, w.rngSwarm = split(1), split(2), split(3), split(4), split(5), split(6)
	w.rngLook = split(lookupStream)
	w.net = netState{drop: sc.Network.Drop, duplicate: sc.Network.Duplicate, reorder: sc.Network.Reorder}
	if opts.Trace != nil || opts.Hash || opts.lineSink != nil {
		w.trace = newTracer(opts.Trace)
		w.trace.sink = opts.lineSink
		w.trace.header(TraceHeader{Type: "header", Seed: seed, Protocol: protoName, Build: version.String(), Scenario: sc})
		if testTraceNote != nil {
			w.trace.fault(0, "test_note", testTraceNote())
		}
	}
	w.check = newChecker(w)

	var sw *swarm
	if sc.Faults.Swarm != nil {
		sw = w.startSwarm(sc.Faults.Swarm)
	}
	clocks := sc.Clocks.drawn() && (sw == nil || !contains(sc.Faults.Swarm.Kinds, "clock") || sw.clockEnabled())
	for i := range sc.Cluster.Nodes + sc.Cluster.Spares {
		s := &simNode{w: w, idx: i, id: node.NodeID(nodeName(i)), spare: i >= sc.Cluster.Nodes}
		if clocks {
			if sc.Clocks.MaxOffset > 0 {
				s.offset = w.rngClock.Int64N(2*int64(sc.Clocks.MaxOffset)+1) - int64(sc.Clocks.MaxOffset)
			}
			s.drift = (2*w.rngClock.Float64() - 1) * sc.Clocks.MaxDrift
		}
		fixed, isFixed := sc.Clocks.Offsets[string(s.id)]
		if isFixed {
			s.offset = int64(fixed)
		}
		if sc.Cluster.Storage == "durable" {
			s.disk = newSimDisk(s)
		}
		w.nodes = append(w.nodes, s)
		w.byID[s.id] = s
		if (clocks || isFixed) && w.trace != nil {
			w.trace.clock(s.id, s.offset, s.drift)
		}
	}
	for _, s := range w.nodes {
		w.boot(s)
	}
	for _, f := range sc.Faults.Schedule {
		f := f
		w.at(int64(f.At), func() { w.applyFault(f) })
	}
	for _, in := range opts.inject {
		w.at(int64(in.at), func() { w.injectMessage(in) })
	}
	wl := w.startWorkload()
	w.wl = wl
	w.startSchedules()
	if lk := sc.Workload.Lookups; lk != nil {
		w.startLookups(lk)
	}
	safetyEnd := int64(sc.Duration)
	hardEnd := safetyEnd + int64(sc.LivenessBound)
	w.at(safetyEnd, w.beginLiveness)
	settle := int64(sc.Cluster.Lease.D() + time.Duration(sc.Cluster.Replicas)*sc.Cluster.ReplicaOffset.D() + 2*time.Second)
	var quietSince int64 = -1
	var watch func()
	watch = func() {
		if w.liveness && wl.done() && w.schedulesDone() && w.check.pendingFinal() == 0 {
			if quietSince < 0 {
				quietSince = w.now
			}
			if w.now-quietSince >= settle {
				w.stopped = true
				return
			}
		} else {
			quietSince = -1
		}
		w.after(time.Second, watch)
	}
	w.at(safetyEnd, watch)
	limits := sc.Cluster.MaxPending > 0 || sc.Cluster.MaxQueuePending > 0

	var instantEvents uint64 // events run at the current instant
	for len(w.queue) > 0 && !w.stopped {
		e := w.queue.pop()
		if e.at > hardEnd {
			break
		}
		if e.at == w.now {
			instantEvents++
		} else {
			instantEvents = 0
		}
		w.now = e.at
		w.events++
		e.fn()
		if limits {
			w.checkLimits()
		}
		if instantEvents > maxInstantEvents || w.events > maxEvents {
			// A livelock (timers re-arming for now, a storm of rounds): the run would
			// never end, or not in useful time. That is a liveness failure in itself.
			w.check.violate("L1", nil, nil, "the cluster livelocked: %d events in all, %d at true time %s; the run was stopped",
				w.events, instantEvents, time.Duration(w.now))
			w.check.livelocked = true
			break
		}
	}
	for _, sn := range w.nodes {
		// The admission limits' bookkeeping must match the tasks the node holds.
		if sn.up && sn.n != nil {
			if tracked, actual := sn.n.Pending(); tracked != actual {
				w.check.violate("S6", nil, []node.NodeID{sn.id}, "node tracks %d pending tasks but holds %d", tracked, actual)
			}
			if err := sn.n.CheckCounts(); err != nil {
				w.check.violate("S6", nil, []node.NodeID{sn.id}, "%v", err)
			}
		}
	}
	w.check.finish()

	res := &Result{
		Scenario:        sc.Name,
		Seed:            seed,
		Protocol:        protoName,
		Enqueued:        wl.sent,
		NameRefused:     wl.duplicates,
		FullRefused:     wl.full,
		Acked:           w.check.acked,
		Deliveries:      len(w.check.deliveries),
		Excused:         w.check.excused,
		Violations:      w.check.violations,
		ViolationCounts: w.check.nViolation,
		Lookups:         w.check.lookups,
		LookupsFinal:    w.check.lookupsFinal,
		SimTime:         time.Duration(w.now),
		Events:          w.events,
		Command:         replayCommand(opts.ScenarioPath, sc.Name, seed, opts.Protocol),
	}
	if sw != nil {
		res.Swarm = sw.enabled
	}
	for _, r := range w.check.order {
		if r.acked && r.finalState == node.StateSucceeded && r.finalAt >= 0 {
			res.Succeeded++
		}
		if r.success >= 0 {
			for _, di := range r.deliveries {
				if d := w.check.deliveries[di]; di != r.success && d.start >= w.check.deliveries[r.success].start {
					res.Duplicates++
				}
			}
		}
	}
	if w.trace != nil {
		res.TraceHash = w.trace.sum()
		if err := w.trace.flush(); err != nil {
			return res, fmt.Errorf("writing trace: %w", err)
		}
	}
	res.Wall = time.Since(start)
	return res, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func replayCommand(path, name string, seed uint64, proto string) string {
	if path == "" {
		path = "scenarios/" + name + ".json"
	}
	cmd := fmt.Sprintf("go run ./cmd/miyamoto sim --seed %d", seed)
	if proto != "" {
		cmd += " --protocol " + proto
	}
	return cmd + " --trace " + name + "-" + fmt.Sprint(seed) + ".jsonl " + path
}

// beginLiveness stops every fault: partitions heal, message faults stop, crashed
// nodes restart and paused ones resume.
func (w *world) beginLiveness() {
	w.liveness, w.livenessAt = true, w.now
	if w.trace != nil {
		w.trace.fault(w.now, "liveness_phase", "")
	}
	w.check.rulesEnding(w.net.rules...)
	w.net.rules, w.net.active, w.net.delays = nil, nil, nil
	w.net.drop, w.net.duplicate, w.net.reorder = 0, 0, 0
	w.releaseHeld() // before the restarts below: a node that was up keeps its connections
	for _, s := range w.nodes {
		w.resume(s)
		w.restart(s)
		if d := s.disk; d != nil {
			d.stallUntil, d.slowUntil, d.fullUntil, d.emfileUntil, d.fsyncErr = 0, 0, 0, 0, false
			if d.log != nil && d.log.Err() != nil && !errors.Is(d.log.Err(), disk.ErrRetrying) {
				// A log stopped by a failed fsync: the operator restarts the process.
				w.crash(s, true)
				w.restart(s)
			}
		}
	}
}

// workload sends the scenario's enqueue requests, Poisson arrivals at Rate.
type workload struct {
	w          *world
	sent       int
	duplicates int // enqueues refused because their name was taken
	full       int // enqueues refused with a 503: full, starting, or a disk that cannot write
	requeued   int // re-queues of dead tasks (requeue_task), counted in sent
	resent     int // named enqueues sent again after a failure (NameSpec.Resend), counted in sent
	answered   int
	weights    float64
	remaining  int // requests not yet taken from workload.tasks
	waiting    int // requests taken, waiting for a node that is up to send them to
}

func (wl *workload) done() bool {
	return wl.remaining == 0 && wl.waiting == 0 && wl.answered == wl.sent
}

func (w *world) startWorkload() *workload {
	wl := &workload{w: w, remaining: w.sc.Workload.Tasks}
	for _, q := range w.sc.Workload.Queues {
		wl.weights += q.Weight
	}
	// Clients begin once the queues are set up (their PUTs answered), and once a
	// node that starts without durable storage takes tasks: it takes only tasks
	// surely created after its start (node.Config.RecoveryWait), so after
	// max_clock_drift has passed on every clock.
	earliest := int64(w.sc.Cluster.MaxClockDrift) + int64(w.sc.Clocks.maxOffset()) + int64(time.Millisecond)
	w.setUpQueues(func() {
		if wl.remaining > 0 {
			w.at(earliest, wl.next)
		}
	})
	return wl
}

func (wl *workload) next() {
	w := wl.w
	if wl.remaining == 0 {
		return
	}
	wl.remaining--
	wl.waiting++
	wl.send()
	if wl.remaining > 0 {
		gap := time.Duration(w.rngWork.ExpFloat64() / w.sc.Workload.Rate * float64(time.Second))
		w.after(gap, wl.next)
	}
}

// send enqueues one request taken by next through a random live node, or waits for
// one (every 100 ms): a waiting client holds its request, it does not send another.
func (wl *workload) send() {
	w := wl.w
	var live []*simNode
	for _, s := range w.nodes {
		if s.up && !s.paused && !s.stopping && s.member() { // a stopping node's API is shut
			live = append(live, s)
		}
	}
	if len(live) == 0 {
		w.after(100*time.Millisecond, wl.send)
		return
	}
	s := live[w.rngWork.IntN(len(live))]
	q := w.sc.Workload.Queues[0]
	x := w.rngWork.Float64() * wl.weights
	for _, cand := range w.sc.Workload.Queues {
		if x < cand.Weight {
			q = cand
			break
		}
		x -= cand.Weight
	}
	n := wl.sent
	wl.sent++
	wl.waiting--
	req := node.EnqueueRequest{
		Queue:       q.Name,
		URL:         "http://worker.sim/" + q.Name,
		ContentType: "application/x-www-form-urlencoded",
		Body:        []byte(fmt.Sprintf("n=%d", n)),
		Countdown:   w.uniform(w.rngWork, w.sc.Workload.Countdown),
	}
	if nm := w.sc.Workload.Names; nm != nil && w.rngWork.Float64() < nm.Fraction {
		req.Name = fmt.Sprintf("name-%d", w.rngWork.IntN(nm.Pool))
	}
	wl.submit(s, req, n)
}

// resend sends a named enqueue that failed again, unchanged, through another node
// that is up (any node if it is the only one), a second later: what a client does
// with the 503 "re-sending it with a task name is safe". tries counts the sends so far.
func (wl *workload) resend(from *simNode, req node.EnqueueRequest, n, tries int) {
	nm := wl.w.sc.Workload.Names
	if req.Name == "" || nm == nil || tries > nm.Resend {
		return
	}
	w := wl.w
	wl.resent++
	wl.sent++
	w.after(time.Second, func() {
		var live []*simNode
		for _, s := range w.nodes {
			if s.up && s.n != nil && s != from {
				live = append(live, s)
			}
		}
		if len(live) == 0 {
			if !from.up || from.n == nil {
				wl.answered++ // nobody to send it to: the client gives up
				return
			}
			live = []*simNode{from}
		}
		wl.send1(live[w.rngWork.IntN(len(live))], req, n, tries+1)
	})
}

// submit sends one enqueue request through s, as a client: request n of the
// workload, or -1 for a re-queue (not counted in workload.tasks).
func (wl *workload) submit(s *simNode, req node.EnqueueRequest, n int) {
	if n < 0 {
		wl.requeued++
		wl.sent++
	}
	wl.send1(s, req, n, 1)
}

// send1 is one send of a client's enqueue request (tries: this is the tries-th),
// counted in sent by the caller.
func (wl *workload) send1(s *simNode, req node.EnqueueRequest, n, tries int) {
	w := wl.w
	if w.trace != nil {
		w.trace.enqueue(w.now, s.id, "enqueue", "", n)
	}
	sentAt := w.now
	answered, gaveUp := false, false
	s.n.Enqueue(req, func(r node.EnqueueResult) {
		if answered {
			panic("sim: enqueue answered twice")
		}
		answered = true
		if !gaveUp {
			wl.answered++
		}
		var dup *node.DuplicateNameError
		switch {
		case r.Err == nil:
			w.check.enqueueAcked(r.Task, sentAt)
		case errors.As(r.Err, &dup):
			wl.duplicates++
		case errRefused(r.Err):
			wl.full++
			if r.ID != "" {
				w.check.cancelRequested(r.ID) // replicas that stored it are told it is cancelled
			}
		}
		if r.Err != nil && !errors.As(r.Err, &dup) && !gaveUp {
			wl.resend(s, req, n, tries)
		}
		if w.trace != nil {
			kind := "ack"
			if r.Err != nil {
				kind = "enqueue_failed"
			}
			w.trace.enqueue(w.now, s.id, kind, r.ID, n)
		}
	})
	// A coordinator that crashes or stalls before answering leaves the client waiting:
	// it gives up after clientTimeout. A late answer still counts as acknowledged.
	w.after(clientTimeout, func() {
		if !answered {
			gaveUp = true
			wl.answered++
			wl.resend(s, req, n, tries)
		}
	})
}

const clientTimeout = 30 * time.Second

// Bounds past which a run is a livelock (see Run): no scenario comes near them (the
// largest run about 200,000 events) unless the nodes spin.
const (
	maxInstantEvents = 1_000_000
	maxEvents        = 50_000_000
)

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// injectMessage steps in.m into its node, if it is up, as a message from the wire.
func (w *world) injectMessage(in injection) {
	s := w.nodes[in.to]
	if !s.up || s.n == nil {
		return
	}
	if w.trace != nil {
		w.trace.message(w.now, "inject", in.m, "")
	}
	s.input(s.incarnation, func() { s.n.Step(in.m) })
}
