package sim

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

// Shrinking: from a seed that violates an invariant, search for a smaller scenario
// that, run with the same seed, still violates it. The swarm's draws are first made
// explicit (the faults it applied become a fixed schedule); then the tasks are cut
// (to none, else by binary search), delta debugging (Zeller's ddmin) removes faults
// and cron schedules, faults are shortened, nodes removed and the safety phase cut.
// Every step is a run of the simulator, in a fixed order, so the result is the same
// on every machine unless the budget cuts the search short.

// ShrinkOptions say what to shrink.
type ShrinkOptions struct {
	Seed     uint64
	Protocol string // overrides the scenario's; the result then names it
	// Invariant to keep violated; default: the first the expectation names that the
	// seed violates, else the first the seed violates.
	Invariant string
	Budget    time.Duration // wall time for the search; 0: one minute
	Log       io.Writer     // one line per step that made the scenario smaller; nil: none
}

// ShrinkSize is how big a scenario is, in what shrinking reduces.
type ShrinkSize struct {
	Faults    int           // fault events (the swarm's, as applied, for a swarm)
	FaultTime time.Duration // their durations added up
	Tasks     int
	Nodes     int
	Duration  time.Duration // the safety phase
}

func (s ShrinkSize) String() string {
	return fmt.Sprintf("%d faults (%s in all), %d tasks, %d nodes, safety phase %s", s.Faults, s.FaultTime, s.Tasks, s.Nodes, s.Duration)
}

// ShrinkResult is a smaller scenario that still fails.
type ShrinkResult struct {
	Scenario  *Scenario // fails on Invariant with Seed; its fault schedule is fixed
	Seed      uint64
	Invariant string
	Before    ShrinkSize // the original run's
	After     ShrinkSize
	Runs      int  // simulator runs the search made
	CutShort  bool // the budget ran out before the search ended
	Violation Violation
}

// maxShrinkPasses bounds the passes of Shrink's steps (each pass is short: the
// scenario is already small after the first).
const maxShrinkPasses = 5

// ErrNotViolated is returned when the seed does not violate the invariant to keep.
var ErrNotViolated = errors.New("the seed does not violate the invariant")

type shrinker struct {
	opts     ShrinkOptions
	inv      string
	deadline time.Time
	runs     int
	cut      bool
	last     *Result
}

// Shrink searches for a smaller scenario than sc that still violates the invariant
// with opts.Seed.
func Shrink(sc *Scenario, opts ShrinkOptions) (*ShrinkResult, error) {
	if opts.Budget <= 0 {
		opts.Budget = time.Minute
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	s := &shrinker{opts: opts, deadline: time.Now().Add(opts.Budget)}
	var applied []FaultEvent
	first, err := Run(sc, opts.Seed, Options{Protocol: opts.Protocol, applied: &applied})
	if err != nil {
		return nil, err
	}
	s.runs++
	s.inv = opts.Invariant
	if s.inv == "" {
		s.inv = pickInvariant(sc.Expect, first)
	}
	if s.inv == "" || first.ViolationCounts[s.inv] == 0 {
		return nil, fmt.Errorf("%w: seed %d violates %s, not %s", ErrNotViolated, opts.Seed, orNone(first.Invariants()), orNone([]string{s.inv}))
	}
	cur := explicit(sc, first, applied, opts.Protocol)
	before := sizeOf(cur)
	if !s.check(cur) { // whatever the budget: without it there is no result
		return nil, fmt.Errorf("the run changed once the swarm's %d faults were made a fixed schedule: it no longer violates %s, so there is nothing to shrink from", len(applied), s.inv)
	}
	// Passes until one changes nothing: a step can open the way for another (fewer
	// nodes, then fewer tasks suffice).
	for pass := 0; pass < maxShrinkPasses && !s.cut; pass++ {
		size := sizeOf(cur)
		for _, step := range []func(*Scenario) *Scenario{s.tasks, s.faults, s.schedules, s.tasks, s.shorten, s.nodes, s.safetyPhase} {
			cur = step(cur)
		}
		if sizeOf(cur) == size {
			break
		}
	}
	// The last run of cur (every step leaves its last failing candidate in s.last
	// only when it kept it): run it once more for the violation to report.
	if !s.check(cur) {
		return nil, errors.New("sim: shrink: the result no longer fails; this is a bug of the shrinker")
	}
	var v Violation
	for _, x := range s.last.Violations {
		if x.Invariant == s.inv {
			v = x
			break
		}
	}
	finish(cur, sc, s.inv, opts.Seed, before, sizeOf(cur))
	return &ShrinkResult{Scenario: cur, Seed: opts.Seed, Invariant: s.inv, Before: before, After: sizeOf(cur), Runs: s.runs, CutShort: s.cut, Violation: v}, nil
}

func orNone(list []string) string {
	if len(list) == 0 || list[0] == "" {
		return "nothing"
	}
	return strings.Join(list, ", ")
}

// pickInvariant is the invariant a shrink keeps by default.
func pickInvariant(e Expectation, r *Result) string {
	for _, inv := range e.Invariants {
		if r.ViolationCounts[inv] > 0 {
			return inv
		}
	}
	if invs := r.Invariants(); len(invs) > 0 {
		return invs[0]
	}
	return ""
}

// explicit is sc with its faults as the run applied them: a fixed schedule instead
// of the swarm's draws, the protocol fixed. A swarm stays, with rate 0: it draws the
// same kinds from its own stream (so the clocks are set, or not, as in the run) and
// schedules nothing, and every other draw of the run is as it was (see
// world.rngSwarm): the fixed schedule replays the run exactly.
func explicit(sc *Scenario, r *Result, applied []FaultEvent, protocol string) *Scenario {
	out := clone(sc)
	if sw := sc.Faults.Swarm; sw != nil {
		quiet := *sw
		quiet.Kinds = slices.Clone(sw.Kinds)
		quiet.Rate, quiet.MaxDown = 0, 0
		out.Faults.Swarm = &quiet
	}
	out.Faults.Schedule = slices.Clone(applied)
	if protocol != "" {
		out.Cluster.Protocol = protocol
	}
	return out
}

// clone deep-copies what shrinking changes.
func clone(sc *Scenario) *Scenario {
	out := *sc
	out.Faults.Schedule = slices.Clone(sc.Faults.Schedule)
	out.Workload.Schedules = slices.Clone(sc.Workload.Schedules)
	out.RegressionSeeds = nil
	return &out
}

func sizeOf(sc *Scenario) ShrinkSize {
	s := ShrinkSize{Tasks: sc.Workload.Tasks, Nodes: sc.Cluster.Nodes, Duration: sc.Duration.D()}
	for _, f := range sc.Faults.Schedule {
		if !countsAsFault(f) {
			continue
		}
		s.Faults++
		s.FaultTime += f.Duration.D()
	}
	return s
}

// countsAsFault: a member joining or leaving is not a fault (see scenarios/README.md).
func countsAsFault(f FaultEvent) bool {
	return f.Kind != "join" && f.Kind != "remove" && f.Kind != "replace"
}

// finish names the result and says where it came from; it keeps the original's
// expectation (a negative control still expects its violation; a scenario that must
// pass still must, so the result fails until the bug is fixed).
func finish(cur, orig *Scenario, inv string, seed uint64, before, after ShrinkSize) {
	cur.Name = orig.Name + "-shrunk"
	cur.Description = fmt.Sprintf("Shrunk by miyamoto shrink from %s, seed %d, keeping a violation of %s: %s before, %s after.", orig.Name, seed, inv, before, after)
	if orig.Expect.Outcome == "violation" {
		cur.Expect = Expectation{Outcome: "violation", Invariants: []string{inv}}
	}
	cur.RegressionSeeds = []uint64{seed}
}

// fails runs candidate c and reports whether it still violates the invariant; out
// of budget, or invalid, it does not.
func (s *shrinker) fails(c *Scenario) bool {
	if time.Now().After(s.deadline) {
		s.cut = true
		return false
	}
	return s.check(c)
}

func (s *shrinker) check(c *Scenario) bool {
	if err := c.Validate(); err != nil {
		return false
	}
	s.runs++
	r, err := Run(c, s.opts.Seed, Options{})
	if err != nil {
		return false
	}
	if r.ViolationCounts[s.inv] > 0 {
		s.last = r
		return true
	}
	return false
}

func (s *shrinker) logf(format string, a ...any) {
	fmt.Fprintf(s.opts.Log, format+"\n", a...)
}

// tasks finds the fewest tasks that still fail: none at all first (a violation of
// the cluster's own state, M1 say, may need no task), then by binary search. The
// count is not monotone (fewer tasks draw the network's delays differently), so
// the search finds a small count that fails, not always the smallest.
func (s *shrinker) tasks(cur *Scenario) *Scenario {
	if cur.Workload.Tasks == 0 {
		return cur
	}
	c := clone(cur)
	c.Workload.Tasks = 0
	if s.fails(c) {
		s.logf("tasks: %d -> 0", cur.Workload.Tasks)
		return c
	}
	lo, hi := 1, cur.Workload.Tasks
	for lo < hi {
		mid := lo + (hi-lo)/2
		c := clone(cur)
		c.Workload.Tasks = mid
		if s.fails(c) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	if hi < cur.Workload.Tasks {
		s.logf("tasks: %d -> %d", cur.Workload.Tasks, hi)
		cur = clone(cur)
		cur.Workload.Tasks = hi
	}
	return cur
}

// schedules removes the workload's cron schedules by delta debugging (each is a
// client's PUT of a schedule and the tasks of its ticks).
func (s *shrinker) schedules(cur *Scenario) *Scenario {
	return ddminField(s, cur, "schedules", func(c *Scenario) *[]ScheduleSpec { return &c.Workload.Schedules })
}

// faults removes faults by delta debugging.
func (s *shrinker) faults(cur *Scenario) *Scenario {
	return ddminField(s, cur, "faults", func(c *Scenario) *[]FaultEvent { return &c.Faults.Schedule })
}

// ddminField removes elements of the list field picks out of cur by delta debugging,
// keeping what the run still fails without, and logs the sizes under what.
func ddminField[T any](s *shrinker, cur *Scenario, what string, field func(*Scenario) *[]T) *Scenario {
	before := len(*field(cur))
	if before == 0 {
		return cur
	}
	kept := ddmin(*field(cur), func(xs []T) bool {
		c := clone(cur)
		*field(c) = slices.Clone(xs)
		return s.fails(c)
	})
	if len(kept) < before {
		s.logf("%s: %d -> %d", what, before, len(kept))
		cur = clone(cur)
		*field(cur) = kept
	}
	return cur
}

// shorten halves each fault's duration while that still fails (a fault without a
// duration lasts until the liveness phase: it is given one first).
func (s *shrinker) shorten(cur *Scenario) *Scenario {
	before := sizeOf(cur).FaultTime
	for i := range cur.Faults.Schedule {
		f := cur.Faults.Schedule[i]
		if managementKinds[f.Kind] || !countsAsFault(f) {
			continue // a client's request or a member's change: its duration means nothing
		}
		d := f.Duration.D()
		if d == 0 {
			d = cur.Duration.D() - f.At.D() // it lasts until the liveness phase
		}
		for d > 100*time.Millisecond {
			c := clone(cur)
			c.Faults.Schedule[i].Duration = Duration(d / 2)
			if !s.fails(c) {
				break
			}
			cur, d = c, d/2
		}
	}
	if after := sizeOf(cur).FaultTime; after != before {
		s.logf("fault time: %s -> %s", before, after)
	}
	return cur
}

// nodes tries clusters of fewer nodes, from the fewest (the replicas) up (see
// withNodes).
func (s *shrinker) nodes(cur *Scenario) *Scenario {
	for n := cur.Cluster.Replicas; n < cur.Cluster.Nodes; n++ {
		if c := withNodes(cur, n); s.fails(c) {
			s.logf("nodes: %d -> %d", cur.Cluster.Nodes, n)
			return c
		}
	}
	return cur
}

// withNodes is sc with its first n nodes: faults that name a node that is gone lose
// it, and those left naming none are dropped, as is a one-way link with an end gone
// (it is not every link of the other end); clock offsets of nodes gone are dropped.
func withNodes(sc *Scenario, n int) *Scenario {
	gone := func(id string) bool {
		var i int
		_, err := fmt.Sscanf(id, "n%d", &i)
		return err != nil || i > n
	}
	c := clone(sc)
	c.Cluster.Nodes = n
	c.Faults.Schedule = c.Faults.Schedule[:0]
	for _, f := range sc.Faults.Schedule {
		named, link := len(f.Nodes) > 0, f.Kind == "oneway" && len(f.Nodes) == 2
		f.Nodes = slices.DeleteFunc(slices.Clone(f.Nodes), gone)
		if named && len(f.Nodes) == 0 || link && len(f.Nodes) < 2 {
			continue
		}
		c.Faults.Schedule = append(c.Faults.Schedule, f)
	}
	if len(sc.Clocks.Offsets) > 0 {
		c.Clocks.Offsets = maps.Clone(sc.Clocks.Offsets)
		maps.DeleteFunc(c.Clocks.Offsets, func(id string, _ Duration) bool { return gone(id) })
	}
	return c
}

// safetyPhase cuts the safety phase to just past the violation (and the last
// fault), when that still fails.
func (s *shrinker) safetyPhase(cur *Scenario) *Scenario {
	if s.last == nil {
		return cur
	}
	end := time.Duration(0)
	for _, v := range s.last.Violations {
		if v.Invariant == s.inv {
			end = v.At
			break
		}
	}
	for _, f := range cur.Faults.Schedule {
		end = max(end, f.At.D()+f.Duration.D())
	}
	end = (end + time.Second).Truncate(time.Second)
	if end >= cur.Duration.D() {
		return cur
	}
	c := clone(cur)
	c.Duration = Duration(end)
	if s.fails(c) {
		s.logf("safety phase: %s -> %s", cur.Duration.D(), c.Duration.D())
		return c
	}
	return cur
}

// ddmin is Zeller's delta debugging: a 1-minimal subset of items for which test
// holds (test(items) is taken to hold).
func ddmin[T any](items []T, test func([]T) bool) []T {
	if len(items) == 0 {
		return items
	}
	if test(nil) {
		return nil
	}
	n := 2
	for len(items) >= 2 {
		chunks := split(items, n)
		reduced := false
		for _, c := range chunks {
			if test(c) {
				items, n, reduced = c, 2, true
				break
			}
		}
		if !reduced {
			for i := range chunks {
				comp := complement(chunks, i)
				if test(comp) {
					items, n, reduced = comp, max(n-1, 2), true
					break
				}
			}
		}
		if !reduced {
			if n >= len(items) {
				break
			}
			n = min(2*n, len(items))
		}
	}
	return items
}

// split cuts items into n nearly equal consecutive chunks.
func split[T any](items []T, n int) [][]T {
	out := make([][]T, 0, n)
	for i := 0; i < n; i++ {
		lo, hi := i*len(items)/n, (i+1)*len(items)/n
		if lo < hi {
			out = append(out, slices.Clone(items[lo:hi]))
		}
	}
	return out
}

func complement[T any](chunks [][]T, skip int) []T {
	var out []T
	for i, c := range chunks {
		if i != skip {
			out = append(out, c...)
		}
	}
	return out
}
