package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/miyamotohq/miyamoto/net/version"
	"github.com/miyamotohq/miyamoto/node"
	"github.com/miyamotohq/miyamoto/sim"
)

func runSim(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sim", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	seeds := fs.String("seeds", "", "run seeds A to B inclusive, as A-B (default 1-20)")
	seed := fs.String("seed", "", "run this one seed")
	protocol := fs.String("protocol", "", "override the scenarios' protocol: quorum or naive")
	tracePath := fs.String("trace", "", "write the JSON Lines trace to FILE (one seed, one scenario)")
	determinism := fs.Bool("check-determinism", false, "run every seed twice and compare the trace hashes (D1)")
	parallel := fs.Int("parallel", 0, "seeds run at once (default: one per CPU)")
	verbose := fs.Bool("v", false, "print every seed's figures")
	junitPath := fs.String("junit", "", "also write a JUnit XML report to FILE")
	jsonPath := fs.String("json", "", "also write a JSON summary to FILE (- for stdout; the human report then goes to stderr)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(stdout)
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return exitOK
		}
		fmt.Fprintf(stderr, "miyamoto sim: %v\n", err)
		return exitBadArgs
	}
	bad := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "miyamoto sim: "+format+"\n", a...)
		return exitBadArgs
	}
	list, err := parseSeeds(*seeds, *seed)
	if err != nil {
		return bad("%v", err)
	}
	if *protocol != "" {
		if _, err := node.ParseProtocol(*protocol); err != nil {
			return bad("--protocol: %v", err)
		}
	}
	files := fs.Args()
	if len(files) == 0 {
		return bad("name at least one scenario file, e.g. scenarios/baseline.json")
	}
	if *tracePath != "" && (len(list) != 1 || len(files) != 1) {
		return bad("--trace writes one run: use it with --seed N and one scenario file")
	}
	if *parallel < 0 {
		return bad("--parallel must not be negative")
	}
	if *junitPath == "-" {
		return bad("--junit needs a file name (only --json writes to stdout with -)")
	}
	var scenarios []*sim.Scenario
	for _, f := range files {
		sc, err := sim.LoadScenario(f)
		if err != nil {
			return bad("%v", err)
		}
		scenarios = append(scenarios, sc)
	}

	reports := simReports{junit: *junitPath, json: *jsonPath, meta: sim.ReportMeta{Build: version.String(), Protocol: *protocol}, stdout: stdout}
	if *jsonPath == "-" {
		stdout = stderr // stdout carries the JSON alone
	}
	fmt.Fprintf(stdout, "miyamoto sim, build %s\n", version.String())
	if *tracePath != "" {
		sum, code := simTraced(scenarios[0], files[0], list[0], *protocol, *tracePath, *determinism, stdout, stderr)
		if sum != nil {
			code = max(code, reports.write([]*sim.Summary{sum}, stderr))
		}
		return code
	}
	code := exitOK
	var sums []*sim.Summary
	for i, sc := range scenarios {
		sum, err := sim.Sweep(sc, sim.SweepOptions{Seeds: list, Protocol: *protocol, CheckDeterminism: *determinism, Parallel: *parallel, ScenarioPath: files[i]})
		if err != nil {
			fmt.Fprintf(stderr, "miyamoto sim: %s: %v\n", files[i], err)
			return exitFailed
		}
		printSummary(stdout, sum, *verbose)
		sums = append(sums, sum)
		if !sum.Met() {
			code = exitFailed
		}
	}
	return max(code, reports.write(sums, stderr))
}

// simReports writes the machine-readable reports a sweep was asked for.
type simReports struct {
	junit, json string // file names; json "-" is stdout
	meta        sim.ReportMeta
	stdout      io.Writer
}

// write writes each report asked for, returning exitFailed if one could not be.
func (r simReports) write(sums []*sim.Summary, stderr io.Writer) int {
	code := exitOK
	for _, rep := range []struct {
		flag, path string
		write      func(io.Writer, sim.ReportMeta, []*sim.Summary) error
	}{{"--junit", r.junit, sim.WriteJUnit}, {"--json", r.json, sim.WriteJSON}} {
		if rep.path == "" {
			continue
		}
		if err := writeReport(rep.path, r.stdout, func(w io.Writer) error { return rep.write(w, r.meta, sums) }); err != nil {
			fmt.Fprintf(stderr, "miyamoto sim: %s: %v\n", rep.flag, err)
			code = exitFailed
		}
	}
	return code
}

// writeReport writes to the file path ("-": stdout), replacing it.
func writeReport(path string, stdout io.Writer, write func(io.Writer) error) error {
	if path == "-" {
		return write(stdout)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	err = write(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func parseSeeds(seeds, seed string) ([]uint64, error) {
	switch {
	case seeds != "" && seed != "":
		return nil, errors.New("give --seeds or --seed, not both")
	case seed != "":
		n, err := strconv.ParseUint(seed, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("--seed must be a non-negative integer, not %q", seed)
		}
		return []uint64{n}, nil
	case seeds == "":
		return sim.SeedRange(1, 20), nil
	}
	a, b, ok := strings.Cut(seeds, "-")
	lo, err1 := strconv.ParseUint(a, 10, 64)
	hi, err2 := strconv.ParseUint(b, 10, 64)
	if !ok || err1 != nil || err2 != nil || hi < lo {
		return nil, fmt.Errorf("--seeds must be A-B with integers A <= B, not %q", seeds)
	}
	if hi-lo >= 10_000_000 {
		return nil, fmt.Errorf("--seeds %q: at most 10,000,000 seeds at once", seeds)
	}
	return sim.SeedRange(lo, hi), nil
}

// simTraced runs one seed and writes its trace; it returns the run's summary (nil
// when it could not run) and the exit code.
func simTraced(sc *sim.Scenario, path string, seed uint64, protocol, tracePath string, determinism bool, stdout, stderr io.Writer) (*sim.Summary, int) {
	f, err := os.Create(tracePath)
	if err != nil {
		fmt.Fprintf(stderr, "miyamoto sim: --trace: %v\n", err)
		return nil, exitBadArgs
	}
	res, err := sim.Run(sc, seed, sim.Options{Protocol: protocol, Trace: f, ScenarioPath: path})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		fmt.Fprintf(stderr, "miyamoto sim: %v\n", err)
		return nil, exitFailed
	}
	sum := &sim.Summary{Scenario: sc.Name, Path: path, Expect: sc.Expect, Wall: res.Wall}
	sum.Add(res)
	if determinism {
		again, err := sim.Run(sc, seed, sim.Options{Protocol: protocol, Hash: true})
		if err != nil {
			fmt.Fprintf(stderr, "miyamoto sim: %v\n", err)
			return sum, exitFailed
		}
		if again.TraceHash != res.TraceHash {
			sum.Nondeterministic = append(sum.Nondeterministic, seed)
		}
		fmt.Fprintf(stdout, "trace hash %s, second run %s\n", res.TraceHash, again.TraceHash)
	}
	printSummary(stdout, sum, true)
	fmt.Fprintf(stdout, "trace written to %s (replay: go run ./cmd/miyamoto replay %s)\n", tracePath, tracePath)
	if !sum.Met() {
		return sum, exitFailed
	}
	return sum, exitOK
}

func printSummary(w io.Writer, s *sim.Summary, verbose bool) {
	verdict := "ok"
	if !s.Met() {
		verdict = "FAILED"
	}
	expect := s.Expect.Outcome
	if expect == "violation" {
		expect += " of " + strings.Join(s.Expect.Invariants, "/")
	}
	fmt.Fprintf(w, "%-28s %s  expect %s: seeds %d, tasks %d/%d acknowledged, deliveries %d, duplicates %d excused / %d violating, lost-or-stuck %d excused, sim time %s, wall %s, %.0f events/s, %.0fx real time\n",
		s.Scenario, verdict, expect, s.Seeds, s.Tasks, s.Enqueued, s.Deliveries, s.Excused, s.Violating, s.Lost,
		s.SimTime.Round(1e6), s.Wall.Round(1e6), s.EventsPerSecond(), s.Speedup())
	if s.FullRefused > 0 {
		fmt.Fprintf(w, "  refused: %d enqueues answered 503 (full, starting, or a disk that cannot write)\n", s.FullRefused)
	}
	if s.NameRefused > 0 || s.NamesExcused > 0 {
		fmt.Fprintf(w, "  task names: %d enqueues refused as duplicates (409), %d names accepted twice after state loss (excused)\n", s.NameRefused, s.NamesExcused)
	}
	if s.Lookups > 0 {
		fmt.Fprintf(w, "  lookups: %d made, %d answered with a final state (V1 judged each)\n", s.Lookups, s.LookupsFinal)
	}
	if s.Forgotten > 0 {
		fmt.Fprintf(w, "  retries: %d started early for failures every replica that knew of them lost (excused)\n", s.Forgotten)
	}
	if s.Failing > 0 {
		fmt.Fprintf(w, "  pending: %d tasks still failing at their worker when the liveness phase ended, retried at pace (excused)\n", s.Failing)
	}
	for _, seed := range s.Nondeterministic {
		fmt.Fprintf(w, "  D1 violated: seed %d gave two different traces (replay: go run ./cmd/miyamoto sim --seed %d --check-determinism %s)\n", seed, seed, s.Path)
	}
	if s.Expect.Outcome == "violation" {
		if len(s.Caught) > 0 {
			r := s.Caught[0]
			fmt.Fprintf(w, "  caught on %d of %d seeds as expected; first:\n", len(s.Caught), s.Seeds)
			indent(w, r.Report())
		} else {
			fmt.Fprintf(w, "  NOT caught: no seed violated %s; the checker missed this negative control\n", strings.Join(s.Expect.Invariants, "/"))
		}
		return
	}
	for i, r := range s.Failed {
		if i == 10 && !verbose {
			fmt.Fprintf(w, "  ... %d more failing seeds\n", len(s.Failed)-10)
			break
		}
		indent(w, r.Report())
	}
}

func indent(w io.Writer, text string) {
	for _, line := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		fmt.Fprintf(w, "    %s\n", line)
	}
}

func runReplay(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 || strings.HasPrefix(args[0], "-") {
		fmt.Fprintln(stderr, "miyamoto replay: give exactly one trace file or recording directory: miyamoto replay TRACE_FILE|DIR")
		return exitBadArgs
	}
	if info, err := os.Stat(args[0]); err == nil && info.IsDir() {
		return replayRecording(args[0], stdout, stderr)
	}
	f, err := os.Open(args[0])
	if err != nil {
		fmt.Fprintf(stderr, "miyamoto replay: %v\n", err)
		return exitBadArgs
	}
	defer f.Close()
	rr, err := sim.Replay(f)
	if err != nil {
		fmt.Fprintf(stderr, "miyamoto replay: %s: %v\n", args[0], err)
		return exitBadArgs
	}
	h := rr.Header
	fmt.Fprintf(stdout, "trace %s: scenario %s, seed %d, protocol %s, recorded by build %s, %d lines\n", args[0], h.Scenario.Name, h.Seed, h.Protocol, h.Build, rr.Lines)
	if rr.Result.Failed() {
		indent(stdout, rr.Result.Report())
	}
	if !rr.Reproduced {
		fmt.Fprintf(stdout, "NOT reproduced: first difference at line %d\n  recorded: %s\n  replayed: %s\n", rr.DivergedAt, rr.Want, rr.Got)
		return exitFailed
	}
	fmt.Fprintf(stdout, "reproduced event for event (%d lines)\n", rr.Lines)
	return exitOK
}

// parseInterspersed parses fs over args, flags before or after the positional
// arguments (timeline TRACE -o run.html), and returns the positional ones. After -h
// it prints usage and the flags to stdout and returns flag.ErrHelp.
func parseInterspersed(fs *flag.FlagSet, args []string, usage string, stdout io.Writer) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fmt.Fprintln(stdout, usage)
				fs.SetOutput(stdout)
				fs.PrintDefaults()
			}
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}
