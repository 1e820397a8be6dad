package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/miyamotohq/miyamoto/node"
	"github.com/miyamotohq/miyamoto/sim"
)

// runShrink: miyamoto shrink [--seed N] [--protocol P] [--invariant INV]
// [--budget 60s] [-o FILE] SCENARIO_FILE|TRACE_FILE.
func runShrink(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("shrink", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	seed := fs.String("seed", "", "the failing seed (not with a trace, whose header names it)")
	protocol := fs.String("protocol", "", "override the scenario's protocol: quorum or naive")
	invariant := fs.String("invariant", "", "the invariant to keep violated (default: the one the scenario expects, else the first violated)")
	budget := fs.Duration("budget", time.Minute, "wall time the search may take")
	out := fs.String("o", "", "write the smaller scenario to FILE (default: NAME-shrunk-SEED.json)")
	bad := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "miyamoto shrink: "+format+"\n", a...)
		return exitBadArgs
	}
	files, err := parseInterspersed(fs, args, "usage: miyamoto shrink [--seed N] [--protocol P] [--invariant INV] [--budget 60s] [-o FILE] SCENARIO_FILE|TRACE_FILE", stdout)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		return bad("%v", err)
	}
	if len(files) != 1 {
		return bad("give one scenario file with --seed N, or one trace file, e.g. miyamoto shrink --seed 3 scenarios/negative-S4-naive-at-most-once.json")
	}
	if *budget <= 0 {
		return bad("--budget must be positive, e.g. 60s")
	}
	if *protocol != "" {
		if _, err := node.ParseProtocol(*protocol); err != nil {
			return bad("--protocol: %v", err)
		}
	}
	sc, n, traced, err := shrinkInput(files[0], *seed, *protocol)
	if err != nil {
		return bad("%v", err)
	}
	if traced != "" && *protocol == "" {
		*protocol = traced
	}
	res, err := sim.Shrink(sc, sim.ShrinkOptions{Seed: n, Protocol: *protocol, Invariant: *invariant, Budget: *budget, Log: stdout})
	if errors.Is(err, sim.ErrNotViolated) {
		return bad("%v", err)
	}
	if err != nil {
		fmt.Fprintf(stderr, "miyamoto shrink: %v\n", err)
		return exitFailed
	}
	if *out == "" {
		*out = fmt.Sprintf("%s-%d.json", res.Scenario.Name, n)
	}
	b, err := json.MarshalIndent(res.Scenario, "", "  ")
	if err == nil {
		err = os.WriteFile(*out, append(b, '\n'), 0o644)
	}
	if err != nil {
		fmt.Fprintf(stderr, "miyamoto shrink: -o: %v\n", err)
		return exitFailed
	}
	fmt.Fprintf(stdout, "before: %s\nafter:  %s\n", res.Before, res.After)
	fmt.Fprintf(stdout, "still violates %s with seed %d: %s\n", res.Invariant, res.Seed, res.Violation)
	if res.CutShort {
		fmt.Fprintf(stdout, "the budget (%s) ran out: a longer --budget may shrink it further\n", *budget)
	}
	fmt.Fprintf(stdout, "%d runs; written to %s (run it: go run ./cmd/miyamoto sim --seed %d %s)\n", res.Runs, *out, n, *out)
	return exitOK
}

// shrinkInput reads a scenario file (seed from --seed) or a trace (scenario, seed and
// protocol from its header).
func shrinkInput(path, seed, protocol string) (*sim.Scenario, uint64, string, error) {
	h, isTrace, err := traceHeader(path)
	if err != nil {
		return nil, 0, "", err
	}
	if isTrace {
		if seed != "" {
			return nil, 0, "", fmt.Errorf("%s is a trace: its header names the seed (%d); leave out --seed", path, h.Seed)
		}
		b, _ := json.Marshal(h.Scenario)
		sc, err := sim.ParseScenario(b)
		if err != nil {
			return nil, 0, "", fmt.Errorf("%s: the trace's scenario: %v", path, err)
		}
		return sc, h.Seed, h.Protocol, nil
	}
	if seed == "" {
		return nil, 0, "", errors.New("--seed N is needed with a scenario file: the seed that fails (sim prints it)")
	}
	n, err := strconv.ParseUint(seed, 10, 64)
	if err != nil {
		return nil, 0, "", fmt.Errorf("--seed must be a non-negative integer, not %q", seed)
	}
	sc, err := sim.LoadScenario(path)
	return sc, n, "", err
}

// traceHeader reads path's first line as a trace header, if it is one.
func traceHeader(path string) (sim.TraceHeader, bool, error) {
	var h sim.TraceHeader
	f, err := os.Open(path)
	if err != nil {
		return h, false, err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<16)
	line, err := r.ReadBytes('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return h, false, err
	}
	if json.Unmarshal(line, &h) != nil || h.Type != "header" || h.Scenario == nil {
		return h, false, nil
	}
	return h, true, nil
}
