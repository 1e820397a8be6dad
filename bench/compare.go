package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// CompareConfig is a comparison: the same workload against each target in turn, each
// with a fresh sink, in this process, on loopback.
type CompareConfig struct {
	// Targets to run, in order; default AllTargets. The baseline's delivered rate is
	// what the others' ratios are taken against.
	Targets []string
	// Load is the workload. Target, Targets and WorkerURL are set per target (a
	// cluster's load rotates over all its nodes); the rest is used as it is.
	Load LoadConfig
	// DrainTimeout bounds the wait, after the load, for every acknowledged task to
	// reach the sink; default 60s.
	DrainTimeout time.Duration
	// Settle is how long to keep counting once every task arrived, so that a late
	// duplicate is seen; default 1s, negative for none.
	Settle time.Duration
	// ShutdownTimeout is each Miyamoto node's daemon.Config.ShutdownTimeout and
	// bounds every shutdown; default 5s.
	ShutdownTimeout time.Duration
	// Progress, when set, gets one line as each phase starts and ends.
	Progress io.Writer
	// CPUSplit profiles each round over the span CPUPerTask measures and reports
	// where its CPU went (Result.CPUSplit). No other CPU profile may run meanwhile.
	CPUSplit bool
	// Rounds runs the whole list of targets this many times, round-robin, and
	// reports for each target the round with the median delivered rate (in an open
	// loop with a countdown, the median lateness p99: the rate is the offered one): on a shared
	// machine one round varies by ±10%, and interleaving spreads slow spells over
	// every target alike. Default 1.
	Rounds int
}

func (c *CompareConfig) fillDefaults() error {
	if len(c.Targets) == 0 {
		c.Targets = slices.Clone(AllTargets)
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 60 * time.Second
	}
	if c.Settle == 0 {
		c.Settle = time.Second
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 5 * time.Second
	}
	var errs []error
	seen := map[string]bool{}
	for _, t := range c.Targets {
		if !slices.Contains(KnownTargets, t) {
			errs = append(errs, fmt.Errorf("Targets: unknown target %q (want %s)", t, strings.Join(KnownTargets, ", ")))
		} else if seen[t] {
			errs = append(errs, fmt.Errorf("Targets: %q is listed twice", t))
		}
		seen[t] = true
	}
	if c.DrainTimeout < 0 || c.ShutdownTimeout < 0 {
		errs = append(errs, errors.New("DrainTimeout and ShutdownTimeout must not be negative"))
	}
	// Check the workload with stand-in addresses: the real ones exist only later.
	probe := c.Load
	probe.Target, probe.Targets, probe.WorkerURL = "http://127.0.0.1:1", nil, "http://127.0.0.1:1/work"
	if err := probe.fillDefaults(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Result is what one target measured.
type Result struct {
	Target string
	// Skipped, when not empty, says why the target did not run on this machine (a
	// program it needs is missing); the other fields are then zero.
	Skipped string
	Rounds  int // rounds run; this is the one with the median delivered rate
	// RoundRates are every round's delivered rate, in increasing order.
	RoundRates []float64
	// MedianByLateness: the round shown is the one of median lateness p99 (an open
	// loop with a countdown), not of median delivered rate.
	MedianByLateness bool
	// RoundLateP99 are every round's lateness p99 (with a countdown), in the order
	// of RoundRates.
	RoundLateP99 []time.Duration
	// RoundRatios are, round by round in the order run, the delivered rate over the
	// baseline's in the same round (the two ran minutes apart at most, so a slow
	// spell of the machine weighs on both); PairedRatio is their median. Empty and
	// NaN without a baseline or with one round.
	RoundRatios []float64
	PairedRatio float64
	Load        LoadResult // the enqueue side
	Sink        SinkStats  // the delivery side, at the end
	Nodes       int
	Replicas    int
	// Delivered counts acknowledged tasks that reached the sink; Missing those that
	// did not within DrainTimeout.
	Delivered, Missing int
	// Duplicates counts deliveries beyond a task's first; Unacked counts tasks that
	// reached the sink although their enqueue was never acknowledged (it failed or
	// timed out at the client after the node took it).
	Duplicates, Unacked int
	// EnqueueRate is acknowledged enqueues per second of the load.
	EnqueueRate float64
	// DeliveredRate is Delivered over the time from the first enqueue sent to the last
	// acknowledged task's arrival at the sink.
	DeliveredRate float64
	LastDelivery  time.Time
	// E2EP50 and E2EP99 are percentiles of the time from sending an enqueue to the
	// task's first arrival at the sink (the countdown included).
	E2EP50, E2EP99 time.Duration
	// Lateness is measured when the load sets a countdown (HasLateness): the time from
	// a task's due time (when its enqueue was sent, plus the countdown) to its first
	// arrival at the sink. Early counts tasks that arrived before their due time.
	HasLateness      bool
	LateP50, LateP99 time.Duration
	Early            int
	// Ratio is DeliveredRate over the baseline's; NaN when the baseline did not run.
	Ratio float64
	// CPUPerTask is the CPU time this whole process (load generator, sink and
	// target alike) used from the first enqueue until every acknowledged task had
	// arrived, over the tasks delivered; 0 where it cannot be read. On a machine
	// shared with other work it moves much less than the rates: other processes take
	// wall time from a run, not CPU time from its tasks.
	CPUPerTask time.Duration
	// RunQueueWait is, over the same span as CPUPerTask, how long this process's
	// threads were runnable but waiting for a CPU on the kernel's run queues, per
	// second of the span (processRunQueueWait; 0 where it cannot be read). A
	// machine busy with other work keeps the process waiting, and a round with a
	// slow tail and a high wait was slowed by the machine, not by itself.
	RunQueueWait time.Duration
	// CPUSplit, with CompareConfig.CPUSplit, is where the CPU of the same span went
	// (see WriteCPUSplit).
	CPUSplit *CPUSplit
}

// Report is a whole comparison.
type Report struct {
	Config  CompareConfig
	Results []Result
}

// Result returns the named target's result.
func (r Report) Result(target string) (Result, bool) {
	for _, res := range r.Results {
		if res.Target == target {
			return res, true
		}
	}
	return Result{}, false
}

// Compare runs cfg.Load against each target in turn and reports what each measured.
// Every server it starts is stopped before it returns. On an error it returns the
// results of the targets that finished.
func Compare(ctx context.Context, cfg CompareConfig) (Report, error) {
	if err := cfg.fillDefaults(); err != nil {
		return Report{Config: cfg}, err
	}
	rep := Report{Config: cfg}
	rounds := map[string][]Result{}
	for round := range max(cfg.Rounds, 1) {
		for _, name := range cfg.Targets {
			if rs := rounds[name]; len(rs) > 0 && rs[0].Skipped != "" {
				continue // it cannot run on this machine in any round
			}
			if cfg.Rounds > 1 {
				cfg.progress("round %d of %d", round+1, cfg.Rounds)
			}
			res, err := runTarget(ctx, name, cfg)
			if err != nil {
				return rep, fmt.Errorf("%s: %w", name, err)
			}
			rounds[name] = append(rounds[name], res)
			// Leave the next target a clean heap.
			runtime.GC()
		}
	}
	for _, name := range cfg.Targets {
		rs := rounds[name]
		ratios := roundRatios(rs, rounds[TargetBaseline])
		rs = slices.Clone(rs)
		byLateness := sortRounds(rs, cfg.Load.Mode)
		med := rs[len(rs)/2]
		med.Rounds = len(rs)
		med.MedianByLateness = byLateness && len(rs) > 1
		for _, r := range rs {
			med.RoundRates = append(med.RoundRates, r.DeliveredRate)
			if r.HasLateness {
				med.RoundLateP99 = append(med.RoundLateP99, r.LateP99)
			}
		}
		med.RoundRatios, med.PairedRatio = ratios, math.NaN()
		if len(ratios) > 1 && name != TargetBaseline {
			sorted := slices.Sorted(slices.Values(ratios))
			med.PairedRatio = sorted[len(sorted)/2]
		} else {
			med.RoundRatios = nil
		}
		rep.Results = append(rep.Results, med)
	}
	base, ok := rep.Result(TargetBaseline)
	for i := range rep.Results {
		rep.Results[i].Ratio = math.NaN()
		if ok && base.DeliveredRate > 0 && rep.Results[i].Skipped == "" {
			rep.Results[i].Ratio = rep.Results[i].DeliveredRate / base.DeliveredRate
		}
	}
	return rep, nil
}

// sortRounds orders one target's rounds by delivered rate, so that the middle one
// is the median round; in an open loop with a countdown, where the rate is the one
// offered (give or take a few tasks' timing), by lateness p99 instead.
func sortRounds(rs []Result, mode string) (byLateness bool) {
	byLateness = mode == ModeOpen
	for _, r := range rs {
		byLateness = byLateness && r.HasLateness
	}
	slices.SortFunc(rs, func(a, b Result) int {
		if byLateness {
			return cmp.Or(cmp.Compare(a.LateP99, b.LateP99), cmp.Compare(a.DeliveredRate, b.DeliveredRate))
		}
		return cmp.Or(cmp.Compare(a.DeliveredRate, b.DeliveredRate), cmp.Compare(a.LateP99, b.LateP99))
	})
	return byLateness
}

// roundRatios is, for each round in the order run, target's delivered rate over
// the baseline's of the same round; nil unless both ran every round.
func roundRatios(target, base []Result) []float64 {
	if len(target) == 0 || len(base) != len(target) || target[0].Skipped != "" {
		return nil
	}
	out := make([]float64, len(target))
	for i := range target {
		if base[i].DeliveredRate <= 0 {
			return nil
		}
		out[i] = target[i].DeliveredRate / base[i].DeliveredRate
	}
	return out
}

func (c CompareConfig) progress(format string, a ...any) {
	if c.Progress != nil {
		fmt.Fprintf(c.Progress, format+"\n", a...)
	}
}

// runTarget starts a sink and the target, runs the load, waits for the deliveries,
// and stops both.
func runTarget(ctx context.Context, name string, cfg CompareConfig) (res Result, err error) {
	res.Target = name
	switch name {
	case TargetBaseline, TargetSingle, TargetSingleDisk, TargetSingleDiskRecord:
		res.Nodes, res.Replicas = 1, 1
	case TargetCluster3, TargetCluster3Disk, TargetCluster3DiskRecord:
		res.Nodes, res.Replicas = 3, 3
	default: // a peer: one process (asynq's redis-server besides), no replication
		res.Nodes, res.Replicas = 1, 1
	}
	var sink *Sink
	labelled(ctx, roleSink, func(context.Context) { sink, err = StartSink() })
	if err != nil {
		return res, err
	}
	defer sink.Close() // after the target stopped: see the defer below
	cfg.progress("%s: starting", name)
	var sys *system
	labelled(ctx, roleTarget, func(ctx context.Context) { sys, err = startTarget(ctx, name, cfg) })
	var skip *skipError
	if errors.As(err, &skip) {
		cfg.progress("%s: skipped: %s", name, skip.reason)
		return Result{Target: name, Skipped: skip.reason}, nil
	}
	if err != nil {
		return res, err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout+5*time.Second)
		defer cancel()
		if cerr := sys.close(sctx); cerr != nil && err == nil {
			err = fmt.Errorf("shutdown: %w", cerr)
		}
	}()

	load := cfg.Load
	load.Target, load.Targets, load.WorkerURL = sys.urls[0], sys.urls, sink.URL()+"/work"
	cfg.progress("%s: load %s for %v", name, describeLoad(load), load.Duration)
	var prof *cpuProfiler
	if cfg.CPUSplit {
		if prof, err = startCPUSplit(); err != nil {
			return res, err
		}
		defer func() {
			if prof != nil {
				prof.stop() // only after an error: the span's end stops it otherwise
			}
		}()
	}
	cpuStart, waitStart, spanStart := processCPU(), processRunQueueWait(), time.Now()
	var lr LoadResult
	labelled(ctx, roleLoad, func(ctx context.Context) { lr, err = RunLoad(ctx, load) })
	if err != nil {
		return res, err
	}
	res.Load = lr
	res.EnqueueRate = lr.Rate
	ids := lr.IDs()
	cfg.progress("%s: %d acknowledged (%.0f/s), waiting for deliveries", name, lr.Acked, lr.Rate)
	res.Missing = sink.WaitFor(ctx, ids, cfg.DrainTimeout)
	cpu := processCPU() - cpuStart
	if prof != nil {
		split, err := prof.stop()
		prof = nil
		if err != nil {
			return res, err
		}
		res.CPUSplit = &split
	}
	if w := processRunQueueWait(); waitStart > 0 && w >= waitStart {
		res.RunQueueWait = time.Duration(float64(w-waitStart) / time.Since(spanStart).Seconds())
	}
	if res.Missing == 0 && cfg.Settle > 0 {
		select {
		case <-time.After(cfg.Settle):
		case <-ctx.Done():
		}
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}

	arrivals := sink.Snapshot()
	res.Sink = sink.Stats()
	res.Duplicates = res.Sink.Duplicates
	acked := make(map[string]bool, len(ids))
	e2e := make([]time.Duration, 0, len(ids))
	var late []time.Duration
	res.HasLateness = load.Countdown > 0
	for _, a := range lr.Acks {
		acked[a.ID] = true
		arr, ok := arrivals[a.ID]
		if !ok {
			continue
		}
		res.Delivered++
		if arr.First.After(res.LastDelivery) {
			res.LastDelivery = arr.First
		}
		e2e = append(e2e, max(arr.First.Sub(a.Sent), 0))
		if res.HasLateness {
			l := arr.First.Sub(a.Sent.Add(load.Countdown))
			late = append(late, l)
			if l < 0 {
				res.Early++
			}
		}
	}
	for id := range arrivals {
		if !acked[id] {
			res.Unacked++
		}
	}
	if res.Delivered > 0 {
		res.DeliveredRate = float64(res.Delivered) / res.LastDelivery.Sub(lr.Start).Seconds()
		res.CPUPerTask = cpu / time.Duration(res.Delivered)
	}
	res.E2EP50, res.E2EP99, _ = percentiles(e2e)
	res.LateP50, res.LateP99, _ = percentiles(late)
	cfg.progress("%s: %d delivered (%.0f/s), %d missing, %d duplicates", name, res.Delivered, res.DeliveredRate, res.Missing, res.Duplicates)
	return res, nil
}

// The roles of a comparison's goroutines, as the profiler label "bench" names them
// in a CPU profile (compare -cpuprofile; go tool pprof -tags, or -tagfocus
// bench=target): the load generator and its HTTP client (load), the sink and its
// HTTP server (sink), and everything the target runs, its HTTP servers and clients
// included (target). A goroutine inherits the labels of the one that started it, so
// net/http's connection goroutines carry their server's or client's role; the
// runtime's own (the garbage collector's workers) carry none.
const (
	roleLoad   = "load"
	roleSink   = "sink"
	roleTarget = "target"
)

// labelled runs f with the goroutine labelled bench=role, and every goroutine it
// starts with it.
func labelled(ctx context.Context, role string, f func(context.Context)) {
	pprof.Do(ctx, pprof.Labels("bench", role), f)
}

func describeLoad(l LoadConfig) string {
	s := fmt.Sprintf("open loop at %g/s", l.Rate)
	if l.Mode == ModeClosed {
		s = fmt.Sprintf("closed loop with %d clients", l.Concurrency)
	}
	if l.Countdown > 0 {
		s += fmt.Sprintf(", countdown %v", l.Countdown)
	}
	return s
}

// WriteTable prints the report as an aligned table, one row per target.
func (r Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\tnodes/R\tacked\terrors\tshed\tenqueue/s\tp50\tp99\tmax\tdelivered/s\te2e p50\te2e p99\tlate p99\tmissing\tdups\tvs baseline\tcpu/task\trunq wait\t")
	for _, res := range r.Results {
		if res.Skipped != "" {
			continue // listed below the table
		}
		late := "n/a" // no countdown: the due time is the send
		if res.HasLateness {
			late = ms(res.LateP99)
		}
		ratio := "-"
		if !math.IsNaN(res.Ratio) {
			ratio = fmt.Sprintf("%.1f%%", 100*res.Ratio)
		}
		fmt.Fprintf(tw, "%s\t%d/%d\t%d\t%d\t%d\t%.0f\t%s\t%s\t%s\t%.0f\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t\n",
			res.Target, res.Nodes, res.Replicas, res.Load.Acked, res.Load.ErrorCount(), res.Load.Shed,
			res.EnqueueRate, ms(res.Load.P50), ms(res.Load.P99), ms(res.Load.Max),
			res.DeliveredRate, ms(res.E2EP50), ms(res.E2EP99), late, res.Missing, res.Duplicates, ratio, us(res.CPUPerTask),
			perSecond(res.RunQueueWait))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, res := range r.Results {
		if res.Skipped != "" {
			fmt.Fprintf(w, "%s: skipped: %s\n", res.Target, res.Skipped)
		}
		if res.Early > 0 {
			fmt.Fprintf(w, "%s: %d tasks delivered before their due time\n", res.Target, res.Early)
		}
		if len(res.Load.Errors) > 0 {
			fmt.Fprintf(w, "%s errors by kind: %v\n", res.Target, res.Load.Errors)
		}
		if res.Unacked > 0 {
			fmt.Fprintf(w, "%s: %d tasks delivered whose enqueue was not acknowledged\n", res.Target, res.Unacked)
		}
		if res.Rounds > 1 {
			shown := "(the median is shown)"
			if res.MedianByLateness {
				shown = "(in the order of their lateness below)"
			}
			rates := spaced(res.RoundRates, func(v float64) string { return fmt.Sprintf("%.0f", v) })
			fmt.Fprintf(w, "%s: delivered/s in each of %d rounds: %s %s\n", res.Target, res.Rounds, rates, shown)
		}
		if len(res.RoundLateP99) > 1 {
			shown := "in the order above"
			if res.MedianByLateness {
				shown = "the median is shown"
			}
			fmt.Fprintf(w, "%s: lateness p99 in each of %d rounds: %s (%s)\n", res.Target, res.Rounds, spaced(res.RoundLateP99, ms), shown)
		}
		if len(res.RoundRatios) > 1 {
			ratios := spaced(res.RoundRatios, func(v float64) string { return fmt.Sprintf("%.1f%%", 100*v) })
			fmt.Fprintf(w, "%s: against the baseline in the same round, round by round: %s (median %.1f%%)\n",
				res.Target, ratios, 100*res.PairedRatio)
		}
	}
	return nil
}

// spaced formats each of vs with f, separated by spaces.
func spaced[T any](vs []T, f func(T) string) string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = f(v)
	}
	return strings.Join(out, " ")
}

// us prints a CPU time per task in microseconds; "-" when it was not measured.
func us(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0fus", float64(d)/float64(time.Microsecond))
}

// perSecond prints a wait per second of a run in milliseconds per second; "-"
// when it was not measured.
func perSecond(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0fms/s", float64(d)/float64(time.Millisecond))
}

// ms prints a duration in milliseconds with enough digits for sub-millisecond values.
func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	switch {
	case v < 10:
		return fmt.Sprintf("%.2fms", v)
	case v < 100:
		return fmt.Sprintf("%.1fms", v)
	}
	return fmt.Sprintf("%.0fms", v)
}
