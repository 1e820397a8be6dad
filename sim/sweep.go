package sim

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"time"

	"golang.org/x/sync/errgroup"
)

// SweepOptions say which seeds to run and how.
type SweepOptions struct {
	Seeds            []uint64
	Protocol         string // overrides the scenario's when not empty
	CheckDeterminism bool   // run every seed twice and compare trace hashes (D1)
	Parallel         int    // seeds at once; default GOMAXPROCS
	ScenarioPath     string
}

// Summary is what a sweep of one scenario showed.
type Summary struct {
	Scenario   string
	Path       string
	Expect     Expectation
	Seeds      int
	SeedsRun   []uint64 // the seeds run, in the order run (regression seeds last)
	Enqueued   int
	Tasks      int // acknowledged
	Deliveries int
	Excused    int // excused duplicates
	Violating  int // S1–S4 violations (duplicates the protocol must not allow)
	Lost       int // acknowledged tasks lost or stuck, excused by state loss
	// NameRefused counts enqueues refused because their name was taken (409);
	// NamesExcused names accepted twice after state loss (Q3's exception).
	NameRefused, NamesExcused int
	FullRefused               int // enqueues refused with a 503 (full, starting, disk)
	// Forgotten counts retries that would have broken Q4 had they counted failures
	// that every replica able to know of them had lost (excused, kind "forgotten").
	Forgotten int
	// Failing counts tasks still pending at the end because their worker failed every
	// delivery of the liveness phase while retries kept pace (L1's exception).
	Failing int
	// Lookups counts the clients' lookups (workload.lookups), LookupsFinal those
	// answered with a final state, each judged by V1.
	Lookups, LookupsFinal int
	SimTime               time.Duration
	Events                uint64
	Wall                  time.Duration // elapsed for the whole sweep
	CPU                   time.Duration // sum of the runs' own durations
	Failed                []*Result     // seeds with a violation
	// Caught lists the seeds whose violations include one the expectation names.
	Caught []*Result
	// Nondeterministic lists seeds whose two runs gave different traces.
	Nondeterministic []uint64
}

// Met reports whether the scenario showed what it expects.
func (s *Summary) Met() bool {
	if len(s.Nondeterministic) > 0 {
		return false
	}
	if s.Expect.Outcome == "violation" {
		return len(s.Caught) > 0
	}
	return len(s.Failed) == 0
}

// EventsPerSecond is simulated events per second of the runs' own time.
func (s *Summary) EventsPerSecond() float64 {
	if s.CPU <= 0 {
		return 0
	}
	return float64(s.Events) / s.CPU.Seconds()
}

// Speedup is simulated time over the runs' own time.
func (s *Summary) Speedup() float64 {
	if s.CPU <= 0 {
		return 0
	}
	return s.SimTime.Seconds() / s.CPU.Seconds()
}

// Sweep runs sc once per seed (twice with CheckDeterminism), spread over Parallel
// goroutines; results are gathered in seed order, so the summary is the same however
// the runs were scheduled.
func Sweep(sc *Scenario, opts SweepOptions) (*Summary, error) {
	par := opts.Parallel
	if par <= 0 {
		par = runtime.GOMAXPROCS(0)
	}
	start := time.Now()
	for _, r := range sc.RegressionSeeds {
		if !slices.Contains(opts.Seeds, r) {
			opts.Seeds = append(slices.Clip(opts.Seeds), r)
		}
	}
	results := make([]*Result, len(opts.Seeds))
	nondet := make([]bool, len(opts.Seeds))
	g, _ := errgroup.WithContext(context.Background())
	g.SetLimit(par)
	for i, seed := range opts.Seeds {
		g.Go(func() error {
			ro := Options{Protocol: opts.Protocol, ScenarioPath: opts.ScenarioPath, Hash: opts.CheckDeterminism}
			r, err := Run(sc, seed, ro)
			if err != nil {
				return fmt.Errorf("seed %d: %w", seed, err)
			}
			if opts.CheckDeterminism {
				again, err := Run(sc, seed, ro)
				if err != nil {
					return fmt.Errorf("seed %d: %w", seed, err)
				}
				nondet[i] = again.TraceHash != r.TraceHash
			}
			results[i] = r
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	s := &Summary{Scenario: sc.Name, Path: opts.ScenarioPath, Expect: sc.Expect}
	for i, r := range results {
		s.Add(r)
		if nondet[i] {
			s.Nondeterministic = append(s.Nondeterministic, r.Seed)
		}
	}
	s.Wall = time.Since(start)
	return s, nil
}

// Add folds one seed's result into the summary.
func (s *Summary) Add(r *Result) {
	s.Seeds++
	s.SeedsRun = append(s.SeedsRun, r.Seed)
	s.Enqueued += r.Enqueued
	s.Tasks += r.Acked
	s.Deliveries += r.Deliveries
	s.NameRefused += r.NameRefused
	s.FullRefused += r.FullRefused
	s.Lookups += r.Lookups
	s.LookupsFinal += r.LookupsFinal
	for _, e := range r.Excused {
		switch e.Kind {
		case "duplicate":
			s.Excused++
		case "name":
			s.NamesExcused++
		case "forgotten":
			s.Forgotten++
		case "failing":
			s.Failing++
		default:
			s.Lost++
		}
	}
	for _, inv := range []string{"S1", "S2", "S3", "S4"} {
		s.Violating += r.ViolationCounts[inv]
	}
	s.SimTime += r.SimTime
	s.Events += r.Events
	s.CPU += r.Wall
	if r.Failed() {
		s.Failed = append(s.Failed, r)
		for _, inv := range s.Expect.Invariants {
			if slices.Contains(r.Invariants(), inv) {
				s.Caught = append(s.Caught, r)
				break
			}
		}
	}
}

// SeedRange returns the seeds from a to b inclusive.
func SeedRange(a, b uint64) []uint64 {
	out := make([]uint64, 0, b-a+1)
	for s := a; s <= b; s++ {
		out = append(out, s)
	}
	return out
}
