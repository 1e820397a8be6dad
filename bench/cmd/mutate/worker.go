package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miyamotohq/miyamoto/sim"
)

// ScenarioReport is what the worker prints, one JSON line per scenario: the sweep of
// one scenario file on the build the worker was compiled from.
type ScenarioReport struct {
	Path             string   `json:"path"`
	Name             string   `json:"name"`
	Expect           string   `json:"expect"` // "pass" or "violation"
	ExpectInvariants []string `json:"expect_invariants,omitempty"`
	// Error: the scenario could not be loaded or a run returned an error (the CLI
	// would exit 2 or 1); with Abort, what stopped the worker.
	Error string `json:"error,omitempty"`
	// Abort is set by the parent, not the worker, when the worker stopped during this
	// scenario: "hung", "out of memory" or "crash".
	Abort string `json:"abort,omitempty"`
	Seeds int    `json:"seeds"` // seeds run, regression seeds included
	// Met: the scenario showed what it expects (sim.Summary.Met), panicking seeds
	// aside; a panic is reported in Panics.
	Met        bool                `json:"met"`
	Failed     []uint64            `json:"failed,omitempty"`     // seeds with any violation, ascending
	Caught     int                 `json:"caught"`               // violation scenarios: seeds that showed an expected invariant
	Invariants map[string]*InvStat `json:"invariants,omitempty"` // violated invariants
	Panics     []Panic             `json:"panics,omitempty"`
	First      string              `json:"first,omitempty"` // the lowest failing seed's first violation
	// Excused counts excused duplicates, Lost acknowledged tasks lost or stuck and
	// excused (sim.Summary's figures): a mutant that survives may still move them.
	Excused    int   `json:"excused"`
	Lost       int   `json:"lost"`
	Deliveries int   `json:"deliveries"`
	WallMS     int64 `json:"wall_ms"`
}

// InvStat counts one invariant's violations over a sweep.
type InvStat struct {
	Seeds int    `json:"seeds"` // seeds that violated it
	First uint64 `json:"first"` // lowest such seed
	Count int    `json:"count"` // violations in all
}

// Panic is a seed whose run panicked (in the node, most likely, under a mutant).
type Panic struct {
	Seed  uint64 `json:"seed"`
	Value string `json:"value"`
	Where string `json:"where,omitempty"` // the innermost frame in the module's node or sim package
}

// exitOutOfMemory is the worker's exit status when its heap passed the limit.
const exitOutOfMemory = 3

// runWorker sweeps each scenario file over seeds and writes one ScenarioReport line
// per file to w, each as soon as it is known. It returns 0, or 2 when a scenario
// could not be swept (the report says why). With maxMemory > 0 it exits
// (exitOutOfMemory) once the heap passes maxMemory bytes: a mutant that livelocks the
// simulated cluster grows its event queue without end, and must not take the machine
// down with it.
func runWorker(w, stderr io.Writer, files []string, seeds []uint64, parallel int, maxMemory int64) int {
	var current atomic.Value
	current.Store("")
	if maxMemory > 0 {
		debug.SetMemoryLimit(maxMemory * 3 / 4) // collect harder before giving up
		go watchMemory(maxMemory, func(heap uint64) {
			fmt.Fprintf(stderr, "heap %d MiB passed the limit of %d MiB during %s, seeds %s running\n",
				heap>>20, maxMemory>>20, current.Load(), running.list())
			os.Exit(exitOutOfMemory)
		})
	}
	code := 0
	enc := json.NewEncoder(w)
	for _, f := range files {
		current.Store(f)
		rep := sweepScenario(f, seeds, parallel)
		if rep.Error != "" {
			code = 2
		}
		if err := enc.Encode(rep); err != nil {
			return 2
		}
	}
	return code
}

// sweepScenario runs one scenario like sim.Sweep (the same seeds, regression seeds
// added, the same verdict through sim.Summary), except that a panicking seed is
// recovered and reported instead of ending the process.
func sweepScenario(path string, seeds []uint64, parallel int) *ScenarioReport {
	start := time.Now()
	rep := &ScenarioReport{Path: path}
	sc, err := sim.LoadScenario(path)
	if err != nil {
		rep.Error = err.Error()
		return rep
	}
	rep.Name, rep.Expect, rep.ExpectInvariants = sc.Name, sc.Expect.Outcome, sc.Expect.Invariants
	if rep.Expect == "" {
		rep.Expect = "pass"
	}
	seeds = slices.Clone(seeds)
	for _, r := range sc.RegressionSeeds {
		if !slices.Contains(seeds, r) {
			seeds = append(seeds, r)
		}
	}
	if parallel <= 0 {
		parallel = runtime.GOMAXPROCS(0)
	}
	results := make([]*sim.Result, len(seeds))
	panics := make([]*Panic, len(seeds))
	errs := make([]error, len(seeds))
	var wg sync.WaitGroup
	sem := make(chan struct{}, parallel)
	for i, seed := range seeds {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			running.set(seed, true)
			defer running.set(seed, false)
			defer func() {
				if v := recover(); v != nil {
					panics[i] = &Panic{Seed: seed, Value: firstLine(fmt.Sprint(v)), Where: panicFrame(string(debug.Stack()))}
				}
			}()
			results[i], errs[i] = sim.Run(sc, seed, sim.Options{ScenarioPath: path})
		}()
	}
	wg.Wait()

	sum := &sim.Summary{Scenario: sc.Name, Path: path, Expect: sc.Expect}
	rep.Invariants = map[string]*InvStat{}
	var firstSeed uint64
	for i, r := range results {
		rep.Seeds++
		if p := panics[i]; p != nil {
			rep.Panics = append(rep.Panics, *p)
			continue
		}
		if errs[i] != nil && rep.Error == "" {
			rep.Error = fmt.Sprintf("seed %d: %v", seeds[i], errs[i])
		}
		if r == nil {
			continue
		}
		sum.Add(r)
		if !r.Failed() {
			continue
		}
		rep.Failed = append(rep.Failed, r.Seed)
		for _, inv := range r.Invariants() {
			st := rep.Invariants[inv]
			if st == nil {
				st = &InvStat{First: r.Seed}
				rep.Invariants[inv] = st
			}
			st.Seeds++
			st.First = min(st.First, r.Seed)
			st.Count += r.ViolationCounts[inv]
		}
		if len(r.Violations) > 0 && (rep.First == "" || r.Seed < firstSeed) {
			firstSeed = r.Seed
			rep.First = fmt.Sprintf("seed %d: %s", r.Seed, r.Violations[0])
		}
	}
	slices.Sort(rep.Failed)
	rep.Met = sum.Met()
	rep.Excused, rep.Lost, rep.Deliveries = sum.Excused, sum.Lost, sum.Deliveries
	rep.Caught = len(sum.Caught)
	if len(rep.Invariants) == 0 {
		rep.Invariants = nil
	}
	rep.WallMS = time.Since(start).Milliseconds()
	return rep
}

// running is the set of seeds being run, named when the worker gives up.
var running = &seedSet{m: map[uint64]bool{}}

type seedSet struct {
	mu sync.Mutex
	m  map[uint64]bool
}

func (s *seedSet) set(seed uint64, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if on {
		s.m[seed] = true
	} else {
		delete(s.m, seed)
	}
}

func (s *seedSet) list() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var seeds []uint64
	for seed := range s.m {
		seeds = append(seeds, seed)
	}
	slices.Sort(seeds)
	return strings.Trim(fmt.Sprint(seeds), "[]")
}

// watchMemory calls over when the heap's objects pass limit bytes, checking every
// 50 ms (runtime/metrics reads without stopping the world).
func watchMemory(limit int64, over func(heap uint64)) {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	for range time.Tick(50 * time.Millisecond) {
		metrics.Read(sample)
		if heap := sample[0].Value.Uint64(); heap > uint64(limit) {
			over(heap)
			return
		}
	}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

// panicFrame finds the innermost frame of the module's node or sim package in a
// stack trace, as "file:line" (the runtime's and this worker's frames skipped).
func panicFrame(stack string) string {
	lines := strings.Split(stack, "\n")
	for i := 0; i+1 < len(lines); i++ {
		fn := lines[i]
		if !strings.HasPrefix(fn, "github.com/miyamotohq/miyamoto/node.") && !strings.HasPrefix(fn, "github.com/miyamotohq/miyamoto/sim.") {
			continue
		}
		loc := strings.TrimSpace(lines[i+1])
		loc, _, _ = strings.Cut(loc, " +0x")
		name := strings.TrimPrefix(fn, "github.com/miyamotohq/miyamoto/")
		if i := strings.LastIndex(name, "("); i > 0 {
			name = name[:i] // the arguments
		}
		return name + " at " + loc
	}
	return ""
}
