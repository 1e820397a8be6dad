// Command mutate measures how well the simulator's invariants and node/'s unit tests
// catch protocol bugs: Miyamoto's mutation score. It applies a catalogue of mutants
// of node/ (catalogue.go: each the kind of slip a careful engineer makes, written as
// exact-text edits), one at a time, each to a temporary copy of the module (the
// working tree is never modified), and for each:
//
//   - builds this command inside the copy, so that it links the mutated node, and runs
//     that build as a worker (-worker) that sweeps the scenarios (default
//     scenarios/*.json; seeds 1..N plus each scenario's regression seeds, as
//     "miyamoto sim --seeds 1-N" would) through package sim directly, printing one
//     JSON line per scenario;
//   - runs go test ./node/ in the copy.
//
// The sweep catches a mutant when a scenario that expects "pass" has a violation, a
// negative control stops being caught, a seed panics, a scenario errs, or the worker
// hangs (no result for --timeout), runs past --max-memory of heap (a livelocked
// simulated cluster grows its event queue without end) or crashes; the worker is then
// restarted on the remaining scenarios. Before the mutants, the unmutated copy is
// swept once (--baseline): a scenario that fails there is left out of the catches.
//
// Run it from the module root:
//
//	go run ./bench/cmd/mutate                          # whole catalogue, 200 seeds
//	go run ./bench/cmd/mutate --list                   # the catalogue, with each edit
//	go run ./bench/cmd/mutate --unit=false --first       # quick score: each mutant stops at its first catch
//	go run ./bench/cmd/mutate --only quorum-half --seeds 20
//	go run ./bench/cmd/mutate --json run.json          # also keep every result
//	go run ./bench/cmd/mutate --from run.json --markdown  # re-print a kept run as Markdown
//	go run ./bench/cmd/mutate --scenarios 'scenarios/partition-*.json' --only grant-during-lease
//
// It prints one line per mutant as it finishes (on stderr), then the table (stdout):
// for each mutant, the scenario that caught it on the most seeds, by which
// invariants, on how many seeds of how many, the first such seed, and whether the
// unit tests caught it; then the scores: caught by the sweep / mutants scored, by the
// unit tests, and by either. Mutants judged equivalent (Mutant.Equivalent) are run
// but not scored; mutants whose anchor is lost (an edit's text is not found exactly
// once in the current sources: rewrite the mutant) and mutants that do not build are
// reported and not scored. The test in this package checks every anchor against the
// current sources, so a lost anchor shows in go test ./... first.
//
// Exit status: 0 when the table was printed, 1 when some mutant's anchor was lost or
// it did not build, 2 on bad flags or when the unmutated module does not build.
//
// A mutant takes one and a half to three minutes on two cores (the 200-seed sweep is
// most of it and already uses every core, so --parallel helps little there); the
// whole catalogue about 75 minutes.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miyamotohq/miyamoto/sim"
)

const modulePath = "github.com/miyamotohq/miyamoto"

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

type options struct {
	root      string
	seeds     int
	scenarios string
	list      bool
	markdown  bool
	parallel  int
	timeout   time.Duration
	maxMemory int64
	unit      bool
	baseline  bool
	keep      bool
	first     bool
	jsonOut   string
	from      string
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("mutate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	var only string
	worker := fs.Bool("worker", false, "internal: sweep the scenario files named as arguments on this build and print JSON lines")
	workerSeeds := fs.Int("worker-seeds", 200, "internal: with -worker, seeds 1..N")
	workerParallel := fs.Int("worker-parallel", 0, "internal: with -worker, seeds at once (0: one per CPU)")
	workerMemory := fs.Int64("worker-max-memory", 0, "internal: with -worker, exit 3 once the heap passes this many bytes (0: no limit)")
	fs.StringVar(&o.root, "root", "", "module root (default: the directory holding go.mod, from the current one up)")
	fs.IntVar(&o.seeds, "seeds", 200, "sweep seeds 1..N (plus each scenario's regression seeds)")
	fs.StringVar(&o.scenarios, "scenarios", "scenarios/*.json", "scenario files, a glob relative to the module root")
	fs.StringVar(&only, "only", "", "run only these mutants (comma-separated names)")
	fs.BoolVar(&o.list, "list", false, "list the catalogue and exit")
	fs.BoolVar(&o.markdown, "markdown", false, "print the table as Markdown")
	fs.IntVar(&o.parallel, "parallel", 1, "mutants run at once")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Minute, "longest sweep of one scenario; one that takes longer is stopped and counts as caught (hung)")
	fs.Int64Var(&o.maxMemory, "max-memory", 4<<30, "bytes of heap a sweep may use; past it the sweep stops and counts as caught (out of memory)")
	fs.BoolVar(&o.unit, "unit", true, "also run go test ./node/ on each mutant")
	fs.BoolVar(&o.baseline, "baseline", true, "sweep the unmutated copy first and leave out scenarios that fail there")
	fs.BoolVar(&o.first, "first", false, "stop each mutant's sweep at the first scenario that catches it (a quick score; the table then shows that scenario only)")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary copies (their paths are printed)")
	fs.StringVar(&o.jsonOut, "json", "", "also write every result, with each scenario's report, as JSON to this file")
	fs.StringVar(&o.from, "from", "", "run nothing: print the table of a run saved with --json")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *worker {
		if *workerSeeds < 1 || fs.NArg() == 0 {
			fmt.Fprintln(stderr, "mutate -worker: give -worker-seeds N >= 1 and scenario files")
			return 2
		}
		return runWorker(stdout, stderr, fs.Args(), sim.SeedRange(1, uint64(*workerSeeds)), *workerParallel, *workerMemory)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "mutate: unexpected arguments %q (flags only)\n", fs.Args())
		return 2
	}
	if o.seeds < 1 || o.parallel < 1 || o.timeout <= 0 || o.maxMemory <= 0 {
		fmt.Fprintln(stderr, "mutate: --seeds and --parallel must be at least 1, --timeout and --max-memory positive")
		return 2
	}
	mutants := Catalogue
	if only != "" {
		mutants = nil
		for _, name := range strings.Split(only, ",") {
			m := find(strings.TrimSpace(name))
			if m == nil {
				fmt.Fprintf(stderr, "mutate: --only: no mutant %q (see --list)\n", name)
				return 2
			}
			mutants = append(mutants, *m)
		}
	}
	if o.list {
		printList(stdout, mutants)
		return 0
	}
	if o.from != "" {
		return printSaved(o, stdout, stderr)
	}
	if o.root == "" {
		root, err := findRoot()
		if err != nil {
			fmt.Fprintf(stderr, "mutate: %v (use --root)\n", err)
			return 2
		}
		o.root = root
	}
	return runCatalogue(o, mutants, stdout, stderr)
}

func find(name string) *Mutant {
	for i := range Catalogue {
		if Catalogue[i].Name == name {
			return &Catalogue[i]
		}
	}
	return nil
}

func printList(w io.Writer, mutants []Mutant) {
	for _, m := range mutants {
		fmt.Fprintf(w, "%-32s %s\n", m.Name, m.Desc)
		for _, ed := range m.Edits {
			fmt.Fprintf(w, "%-32s   %s: %q -> %q\n", "", ed.File, ed.Old, ed.New)
		}
		if m.Equivalent != "" {
			fmt.Fprintf(w, "%-32s   equivalent: %s\n", "", m.Equivalent)
		}
	}
}

// findRoot walks up from the current directory to the go.mod of this module.
func findRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil {
			if strings.Contains(string(b), "module "+modulePath+"\n") {
				return dir, nil
			}
			return "", fmt.Errorf("%s/go.mod is not module %s", dir, modulePath)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the current directory")
		}
		dir = parent
	}
}

// Status is what became of a mutant.
type Status string

const (
	StatusCaught   Status = "caught"
	StatusSurvived Status = "survived"
	StatusAnchor   Status = "anchor lost"
	StatusNoBuild  Status = "does not build"
)

// Catch is one scenario that caught a mutant.
type Catch struct {
	Scenario string   `json:"scenario"`
	Why      []string `json:"why"`   // invariants, most seeds first; or "panic", "error", ...
	Seeds    int      `json:"seeds"` // seeds that caught it
	Run      int      `json:"run"`   // seeds run
	First    uint64   `json:"first"` // lowest such seed (0 when none applies)
	Detail   string   `json:"detail,omitempty"`
}

// Result is one mutant's outcome.
type Result struct {
	Name       string  `json:"name"`
	Desc       string  `json:"desc"`
	Equivalent string  `json:"equivalent,omitempty"`
	Status     Status  `json:"status"`
	Error      string  `json:"error,omitempty"` // anchor lost, build output, sweep failure
	Catches    []Catch `json:"catches,omitempty"`
	TimedOut   bool    `json:"timed_out,omitempty"`
	UnitCaught bool    `json:"unit_caught"`
	UnitDetail string  `json:"unit_detail,omitempty"`
	// Shifts: figures the invariants allow that moved well away from the baseline
	// (excused duplicates, excused losses): hints for a survivor.
	Shifts  []string          `json:"shifts,omitempty"`
	Reports []*ScenarioReport `json:"reports,omitempty"`
	WallS   float64           `json:"wall_s"`
}

// Best is the catch with the most seeds (the first such in scenario order).
func (r *Result) Best() *Catch {
	var best *Catch
	for i := range r.Catches {
		if best == nil || r.Catches[i].Seeds > best.Seeds {
			best = &r.Catches[i]
		}
	}
	return best
}

type runner struct {
	o      options
	tmp    string
	base   string   // the unmutated snapshot of the module
	files  []string // scenario files, relative to the root
	broken map[string]string
	// baseline holds the unmutated sweep's reports, by path.
	baseline map[string]*ScenarioReport
	stderr   io.Writer
	mu       sync.Mutex
}

func runCatalogue(o options, mutants []Mutant, stdout, stderr io.Writer) int {
	tmp, err := os.MkdirTemp("", "miyamoto-mutate-")
	if err != nil {
		fmt.Fprintf(stderr, "mutate: %v\n", err)
		return 2
	}
	if o.keep {
		fmt.Fprintf(stderr, "mutate: copies kept under %s\n", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}
	r := &runner{o: o, tmp: tmp, base: filepath.Join(tmp, "base"), broken: map[string]string{}, stderr: stderr}
	// One snapshot for the whole run: every mutant starts from the same sources even
	// if the working tree changes meanwhile.
	if err := copyTree(o.root, r.base); err != nil {
		fmt.Fprintf(stderr, "mutate: copying %s: %v\n", o.root, err)
		return 2
	}
	files, err := filepath.Glob(filepath.Join(r.base, filepath.FromSlash(o.scenarios)))
	if err != nil || len(files) == 0 {
		fmt.Fprintf(stderr, "mutate: --scenarios %q matches no file under %s\n", o.scenarios, o.root)
		return 2
	}
	for _, f := range files {
		rel, _ := filepath.Rel(r.base, f)
		r.files = append(r.files, filepath.ToSlash(rel))
	}
	sort.Strings(r.files)
	fmt.Fprintf(stderr, "mutate: %d mutants, %d scenarios, seeds 1-%d, module %s\n", len(mutants), len(r.files), o.seeds, o.root)

	if o.baseline {
		start := time.Now()
		reps, buildErr := r.sweep(r.base, "baseline")
		if buildErr != "" {
			fmt.Fprintf(stderr, "mutate: the unmutated module does not build: %s\n", buildErr)
			return 2
		}
		r.baseline = map[string]*ScenarioReport{}
		for _, rep := range reps {
			r.baseline[rep.Path] = rep
			if c := scenarioCatch(rep); c != nil {
				r.broken[rep.Path] = strings.Join(c.Why, ",")
				fmt.Fprintf(stderr, "mutate: WARNING: %s fails without any mutant (%s on %d/%d seeds): left out of the catches\n", rep.Path, strings.Join(c.Why, ","), c.Seeds, c.Run)
			}
		}
		fmt.Fprintf(stderr, "mutate: baseline swept in %s\n", time.Since(start).Round(time.Second))
	}

	results := make([]*Result, len(mutants))
	sem := make(chan struct{}, o.parallel)
	var wg sync.WaitGroup
	for i := range mutants {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			res := r.one(&mutants[i])
			results[i] = res
			r.mu.Lock()
			fmt.Fprintf(stderr, "mutate: %-32s %s\n", res.Name, progressLine(res))
			r.mu.Unlock()
		}()
	}
	wg.Wait()

	if o.jsonOut != "" {
		b, _ := json.MarshalIndent(savedRun{Seeds: o.seeds, Unit: o.unit, Scenarios: r.files, Results: results}, "", "  ")
		if err := os.WriteFile(o.jsonOut, append(b, '\n'), 0o644); err != nil {
			fmt.Fprintf(stderr, "mutate: --json: %v\n", err)
		}
	}
	if o.markdown {
		printMarkdown(stdout, results, o)
	} else {
		printTable(stdout, results, o)
	}
	for _, res := range results {
		if res.Status == StatusAnchor || res.Status == StatusNoBuild {
			return 1
		}
	}
	return 0
}

// savedRun is what --json writes and --from reads.
type savedRun struct {
	Seeds     int       `json:"seeds"`
	Unit      bool      `json:"unit"`
	Scenarios []string  `json:"scenarios"`
	Results   []*Result `json:"results"`
}

// printSaved prints the table of a saved run (a savedRun, or a bare list of results
// with the seeds taken from --seeds).
func printSaved(o options, stdout, stderr io.Writer) int {
	b, err := os.ReadFile(o.from)
	if err != nil {
		fmt.Fprintf(stderr, "mutate: --from: %v\n", err)
		return 2
	}
	var saved savedRun
	if err := json.Unmarshal(b, &saved); err != nil {
		saved = savedRun{Seeds: o.seeds, Unit: o.unit}
		if err := json.Unmarshal(b, &saved.Results); err != nil {
			fmt.Fprintf(stderr, "mutate: --from %s: %v\n", o.from, err)
			return 2
		}
	}
	o.seeds, o.unit = saved.Seeds, saved.Unit
	if o.markdown {
		printMarkdown(stdout, saved.Results, o)
	} else {
		printTable(stdout, saved.Results, o)
	}
	return 0
}

// one runs one mutant end to end.
func (r *runner) one(m *Mutant) *Result {
	start := time.Now()
	res := &Result{Name: m.Name, Desc: m.Desc, Equivalent: m.Equivalent}
	defer func() { res.WallS = time.Since(start).Seconds() }()
	mutated, err := m.mutatedFiles(r.base)
	if err != nil {
		res.Status, res.Error = StatusAnchor, err.Error()
		return res
	}
	dir := filepath.Join(r.tmp, "m-"+m.Name)
	if err := copyTree(r.base, dir); err != nil {
		res.Status, res.Error = StatusNoBuild, "copying: "+err.Error()
		return res
	}
	if !r.o.keep {
		defer os.RemoveAll(dir)
	}
	for f, s := range mutated {
		if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(f)), []byte(s), 0o644); err != nil {
			res.Status, res.Error = StatusNoBuild, err.Error()
			return res
		}
	}
	reps, buildErr := r.sweep(dir, m.Name)
	res.Reports = reps
	if buildErr != "" {
		res.Status, res.Error = StatusNoBuild, buildErr
		return res
	}
	for _, rep := range reps {
		if rep.Abort == "hung" {
			res.TimedOut = true
		}
		if _, bad := r.broken[rep.Path]; bad {
			continue
		}
		if c := scenarioCatch(rep); c != nil {
			res.Catches = append(res.Catches, *c)
		}
	}
	res.Status = StatusSurvived
	if len(res.Catches) > 0 {
		res.Status = StatusCaught
	}
	res.Shifts = shifts(r.baseline, reps)
	if r.o.unit {
		res.UnitCaught, res.UnitDetail = unitTests(dir)
	}
	return res
}

// sweep builds the worker in dir and runs it over the scenario files, one report
// per file. buildErr is the compiler's output when the build failed. A worker that
// stops during a scenario (it hung past --timeout, ran past --max-memory, or
// crashed) leaves a report with Abort set for that scenario, and a new worker goes on
// with the next.
func (r *runner) sweep(dir, name string) (reps []*ScenarioReport, buildErr string) {
	bin := filepath.Join(r.tmp, "worker-"+name)
	if runtime.GOOS == "windows" {
		bin += ".exe"
	}
	defer os.Remove(bin)
	// -trimpath keeps build cache entries independent of the copy's path, so that
	// only the mutated package and those above it are compiled again.
	build := exec.Command("go", "build", "-trimpath", "-o", bin, "./bench/cmd/mutate")
	build.Dir = dir
	build.Env = append(os.Environ(), "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		return nil, firstLines(string(out), 6)
	}
	remaining := r.files
	for len(remaining) > 0 {
		got, abort, detail := r.worker(bin, dir, remaining)
		reps = append(reps, got...)
		remaining = remaining[len(got):]
		if len(remaining) == 0 || abort == abortFirst {
			break
		}
		if abort == "" {
			abort, detail = "crash", "the worker ended without reporting this scenario"
		}
		reps = append(reps, &ScenarioReport{Path: remaining[0], Abort: abort, Error: detail})
		if _, bad := r.broken[remaining[0]]; r.o.first && !bad {
			break // an abort is a catch
		}
		remaining = remaining[1:]
	}
	return reps, ""
}

// abortFirst is worker's abort when --first stopped it after a catch.
const abortFirst = "first"

// worker runs one worker over files and returns the reports it printed; abort says
// why it stopped early ("hung", "out of memory", "crash", or abortFirst), with a detail.
func (r *runner) worker(bin, dir string, files []string) (reps []*ScenarioReport, abort, detail string) {
	args := append([]string{"-worker", "-worker-seeds", strconv.Itoa(r.o.seeds), "-worker-max-memory", strconv.FormatInt(r.o.maxMemory, 10)}, files...)
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "crash", err.Error()
	}
	if err := cmd.Start(); err != nil {
		return nil, "crash", err.Error()
	}
	// The watchdog: no report for --timeout kills the worker.
	var hung atomic.Bool
	stopped := false // --first: a scenario caught the mutant, the rest need not run
	watchdog := time.AfterFunc(r.o.timeout, func() {
		hung.Store(true)
		cmd.Process.Kill()
	})
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var rep ScenarioReport
		if err := json.Unmarshal(sc.Bytes(), &rep); err != nil {
			continue
		}
		reps = append(reps, &rep)
		watchdog.Reset(r.o.timeout)
		if _, bad := r.broken[rep.Path]; r.o.first && !bad && scenarioCatch(&rep) != nil {
			stopped = true
			cmd.Process.Kill()
			break
		}
	}
	werr := cmd.Wait()
	watchdog.Stop()
	var exit *exec.ExitError
	switch {
	case stopped:
		return reps, abortFirst, ""
	case hung.Load():
		return reps, "hung", fmt.Sprintf("no result within %s (the baseline sweeps any scenario in seconds)", r.o.timeout)
	case errors.As(werr, &exit) && exit.ExitCode() == exitOutOfMemory:
		return reps, "out of memory", firstLines(stderr.String(), 1)
	case werr == nil || errors.As(werr, &exit) && exit.ExitCode() == 2:
		return reps, "", "" // exit 2: a scenario erred, and its report says so
	}
	return reps, "crash", fmt.Sprintf("worker: %v: %s", werr, firstLines(stderr.String(), 4))
}

// shifts lists the scenarios whose excused duplicates or excused losses grew well
// past the baseline's (by half and by at least 10): the invariants allow them, but a
// mutant that multiplies them is doing something.
func shifts(baseline map[string]*ScenarioReport, reps []*ScenarioReport) []string {
	var out []string
	for _, rep := range reps {
		b := baseline[rep.Path]
		if b == nil || rep.Abort != "" || rep.Error != "" {
			continue
		}
		name := strings.TrimSuffix(filepath.Base(rep.Path), ".json")
		grew := func(before, after int) bool { return after >= before+10 && after*2 >= before*3 }
		if grew(b.Excused, rep.Excused) {
			out = append(out, fmt.Sprintf("excused duplicates %d→%d in %s", b.Excused, rep.Excused, name))
		}
		if grew(b.Lost, rep.Lost) {
			out = append(out, fmt.Sprintf("excused lost-or-stuck %d→%d in %s", b.Lost, rep.Lost, name))
		}
	}
	return out
}

// scenarioCatch decides whether one scenario's sweep caught something, and what.
func scenarioCatch(rep *ScenarioReport) *Catch {
	c := &Catch{Scenario: strings.TrimSuffix(filepath.Base(rep.Path), ".json"), Run: rep.Seeds}
	switch {
	case rep.Abort != "":
		c.Why, c.Detail = []string{rep.Abort}, rep.Error
		return c
	case rep.Error != "":
		c.Why, c.Detail = []string{"error"}, rep.Error
		return c
	case len(rep.Panics) > 0:
		c.Why, c.Seeds, c.First = []string{"panic"}, len(rep.Panics), rep.Panics[0].Seed
		for _, p := range rep.Panics {
			c.First = min(c.First, p.Seed)
		}
		c.Detail = rep.Panics[0].Value
		if rep.Panics[0].Where != "" {
			c.Detail += " (" + rep.Panics[0].Where + ")"
		}
		return c
	case rep.Expect == "violation" && !rep.Met:
		c.Why = []string{"control missed"}
		c.Detail = "negative control no longer caught: no seed violated " + strings.Join(rep.ExpectInvariants, "/")
		return c
	case rep.Expect == "violation" || len(rep.Failed) == 0:
		return nil
	}
	c.Seeds, c.First, c.Detail = len(rep.Failed), rep.Failed[0], rep.First
	for inv := range rep.Invariants {
		c.Why = append(c.Why, inv)
	}
	sort.Slice(c.Why, func(i, j int) bool {
		a, b := rep.Invariants[c.Why[i]], rep.Invariants[c.Why[j]]
		if a.Seeds != b.Seeds {
			return a.Seeds > b.Seeds
		}
		return c.Why[i] < c.Why[j]
	})
	return c
}

// unitTests runs go test ./node/ in dir: caught when it fails, with the failing tests.
func unitTests(dir string) (bool, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "test", "-trimpath", "-count=1", "-timeout", "5m", "./node/")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off")
	out, err := cmd.CombinedOutput()
	if err == nil {
		return false, ""
	}
	var failed []string
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		if name, ok := strings.CutPrefix(line, "--- FAIL: "); ok {
			name, _, _ = strings.Cut(name, " ")
			if !strings.Contains(name, "/") {
				failed = append(failed, name)
			}
		}
	}
	switch {
	case len(failed) > 2:
		return true, fmt.Sprintf("%s, %s +%d more", failed[0], failed[1], len(failed)-2)
	case len(failed) > 0:
		return true, strings.Join(failed, ", ")
	case strings.Contains(string(out), "panic:"):
		return true, "panic"
	case strings.Contains(string(out), "[build failed]") || strings.Contains(string(out), "[setup failed]"):
		return true, "tests do not build"
	}
	return true, firstLines(string(out), 1)
}

func firstLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, " | ")
}
