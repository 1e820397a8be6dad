package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// figures are one side's measurements of one round, by metric key.
type figures map[string]float64

// compareTrees builds both sides, runs the rounds and returns the report; on an error
// the report holds what the rounds before it measured.
func compareTrees(ctx context.Context, repo, commit string, cfg config, progress io.Writer) (rep report, err error) {
	start := time.Now()
	rep = report{tolerance: cfg.tolerance, rounds: cfg.rounds, base: shortHash(commit), current: describeWorkTree(ctx, repo)}
	say := func(format string, a ...any) { fmt.Fprintf(progress, "versus: "+format+"\n", a...) }
	loadBefore := loadAverage()

	tmp, err := os.MkdirTemp("", "miyamoto-versus-")
	if err != nil {
		return rep, err
	}
	defer os.RemoveAll(tmp)
	base := &tree{side: "base", root: filepath.Join(tmp, "base")}
	cur := &tree{side: "current", root: repo}
	if err := os.Mkdir(base.root, 0o755); err != nil {
		return rep, err
	}
	say("writing the tree of %s into %s", rep.base, base.root)
	if err := materialise(ctx, repo, commit, base.root); err != nil {
		return rep, err
	}
	withSim, withThroughput := cfg.simBench != "", len(cfg.targets) > 0
	for _, t := range []*tree{base, cur} {
		say("building the %s side's benchmarks", t.side)
		if err := t.build(ctx, tmp, withSim, withThroughput); err != nil {
			return rep, err
		}
	}
	var benches []string
	if withSim {
		if benches, err = sameBenchmarks(ctx, base, cur, cfg.simBench); err != nil {
			return rep, err
		}
		copied, err := alignWorkload(base, cur)
		if err != nil {
			return rep, fmt.Errorf("copying the scenario files to the base: %v", err)
		}
		if len(copied) > 0 {
			rep.notes = append(rep.notes, fmt.Sprintf("the base ran the current bench/testdata/%s (its own differed), so both ran the same workload", strings.Join(copied, ", ")))
		}
	}
	rep.metrics = metricsFor(benches, cfg.targets)
	samples := map[string][]figures{}
	defer func() { rep.rows = rowsFrom(rep.metrics, samples[base.side], samples[cur.side]) }()

	for round := range cfg.rounds {
		// The sides take turns going first, so that a drift of the machine's load
		// over a round weighs on both alike.
		order := []*tree{base, cur}
		if round%2 == 1 {
			order = []*tree{cur, base}
		}
		figs := map[string]figures{base.side: {}, cur.side: {}}
		for _, t := range order {
			if !withSim {
				break
			}
			say("round %d of %d: %s side, simulator benchmarks", round+1, cfg.rounds, t.side)
			if err := runSim(ctx, t, cfg, figs[t.side]); err != nil {
				return rep, err
			}
		}
		for _, t := range order {
			if !withThroughput {
				break
			}
			say("round %d of %d: %s side, throughput", round+1, cfg.rounds, t.side)
			warnings, err := runThroughput(ctx, t, cfg, figs[t.side])
			for _, w := range warnings {
				rep.notes = append(rep.notes, fmt.Sprintf("%s side, round %d: %s", t.side, round+1, w))
			}
			if err != nil {
				return rep, err
			}
		}
		for side, f := range figs {
			samples[side] = append(samples[side], f)
		}
	}
	rep.notes = append(rep.notes, fmt.Sprintf("the run took %s", time.Since(start).Round(time.Second)))
	if before, after := loadBefore, loadAverage(); before != "" && after != "" {
		rep.notes = append(rep.notes, fmt.Sprintf("load average (1 min) %s at the start, %s at the end", before, after))
	}
	return rep, nil
}

// runSim runs the side's simulator benchmarks once and adds their figures to figs.
func runSim(ctx context.Context, t *tree, cfg config, figs figures) error {
	// The benchmarks read their scenario files from testdata/, relative to the package.
	out, err := runCmd(ctx, filepath.Join(t.root, "bench"), t.simTest,
		"-test.run", "^$", "-test.bench", cfg.simBench, "-test.benchtime", cfg.benchtime, "-test.benchmem")
	if err != nil {
		return fmt.Errorf("%s side: simulator benchmarks: %v", t.side, err)
	}
	results, err := parseBenchOutput(out)
	if err != nil {
		return fmt.Errorf("%s side: %v", t.side, err)
	}
	for name, units := range results {
		for unit, v := range units {
			figs[simKey(name, unit)] = v
		}
	}
	return nil
}

// runThroughput runs the side's bench/cmd/compare once for the relay baseline and
// once for each asked target, one process each (so that the process's CPU time is
// that target's, with the load generator's and the sink's), and adds to figs each
// target's delivered rate, its share of the baseline's, and its acknowledged tasks
// per CPU second: the figure a busy machine moves least, as other work takes wall
// time from a run but not its CPU time. It returns warnings about lost or
// duplicated tasks.
func runThroughput(ctx context.Context, t *tree, cfg config, figs figures) ([]string, error) {
	var warnings []string
	var baseline float64
	for _, target := range append([]string{"baseline"}, cfg.targets...) {
		r, err := runCompare(ctx, t, cfg, target)
		if err != nil {
			return warnings, err
		}
		figs[throughputKey(target, "delivered")] = r.delivered
		figs[throughputKey(target, "per-cpu")] = float64(r.acked) / r.cpu.Seconds()
		if target == "baseline" {
			baseline = r.delivered
			continue
		}
		figs[throughputKey(target, "share")] = r.delivered / baseline
		if r.missing > 0 || r.dups > 0 {
			warnings = append(warnings, fmt.Sprintf("%s: %d missing, %d duplicates", target, r.missing, r.dups))
		}
	}
	return warnings, nil
}

// runCompare runs the side's bench/cmd/compare on one target and returns its row.
func runCompare(ctx context.Context, t *tree, cfg config, target string) (compareRow, error) {
	out, cpu, err := runCmdCPU(ctx, t.root, t.compare, "-q", "-mode", "closed",
		"-concurrency", strconv.Itoa(cfg.conc), "-duration", cfg.duration.String(), "-rounds", "1", "-targets", target)
	if err != nil {
		return compareRow{}, fmt.Errorf("%s side: bench/cmd/compare: %v", t.side, err)
	}
	rows, err := parseCompareTable(out)
	if err != nil {
		return compareRow{}, fmt.Errorf("%s side: bench/cmd/compare: %v", t.side, err)
	}
	r, ok := rows[target]
	if !ok || r.delivered <= 0 || r.acked <= 0 || cpu <= 0 {
		return compareRow{}, fmt.Errorf("%s side: bench/cmd/compare measured no delivered rate for %s:\n%s", t.side, target, out)
	}
	r.cpu = cpu
	return r, nil
}

// compareRow is what this command reads of one row of compare's table.
type compareRow struct {
	delivered            float64
	acked, missing, dups int
	cpu                  time.Duration // the compare process's, set by runCompare
}

// columnGap separates the columns of compare's table (a tabwriter with a padding of
// two); a header such as "e2e p50" has single spaces inside.
var columnGap = regexp.MustCompile(`\s{2,}`)

// parseCompareTable reads compare's table by its header, so that columns added since
// the base (such as "late p99") do not matter. Lines after the table (errors by kind,
// skipped targets) are left out.
func parseCompareTable(out string) (map[string]compareRow, error) {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) < 2 {
		return nil, fmt.Errorf("no table in its output:\n%s", out)
	}
	cols := columnGap.Split(strings.TrimSpace(lines[0]), -1)
	idx := map[string]int{}
	for i, c := range cols {
		idx[c] = i
	}
	for _, need := range []string{"target", "acked", "delivered/s", "missing", "dups"} {
		if _, ok := idx[need]; !ok {
			return nil, fmt.Errorf("its table has no column %q: %q", need, lines[0])
		}
	}
	rows := map[string]compareRow{}
	for _, line := range lines[1:] {
		fields := strings.Fields(line)
		if len(fields) != len(cols) {
			break // the table ended
		}
		delivered, err1 := strconv.ParseFloat(fields[idx["delivered/s"]], 64)
		acked, err2 := strconv.Atoi(fields[idx["acked"]])
		missing, err3 := strconv.Atoi(fields[idx["missing"]])
		dups, err4 := strconv.Atoi(fields[idx["dups"]])
		if err := errors.Join(err1, err2, err3, err4); err != nil {
			return nil, fmt.Errorf("cannot read the row %q", line)
		}
		rows[fields[idx["target"]]] = compareRow{delivered: delivered, acked: acked, missing: missing, dups: dups}
	}
	return rows, nil
}

// benchSuffix is the -GOMAXPROCS suffix go test adds to a benchmark's name.
var benchSuffix = regexp.MustCompile(`-\d+$`)

// parseBenchOutput reads go test's benchmark lines ("BenchmarkX-2  20  74707867 ns/op
// 37712 events/run ...") into each benchmark's figures by unit.
func parseBenchOutput(out string) (map[string]map[string]float64, error) {
	results := map[string]map[string]float64{}
	for _, line := range strings.Split(out, "\n") {
		fields := strings.Fields(line)
		if len(fields) < 4 || !strings.HasPrefix(fields[0], "Benchmark") {
			continue
		}
		if _, err := strconv.Atoi(fields[1]); err != nil {
			continue // not a result line (a benchmark's log)
		}
		name := benchSuffix.ReplaceAllString(fields[0], "")
		units := map[string]float64{}
		for i := 2; i+1 < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				return nil, fmt.Errorf("cannot read the benchmark line %q", line)
			}
			units[fields[i+1]] = v
		}
		results[name] = units
	}
	if len(results) == 0 {
		return nil, fmt.Errorf("no benchmark results in:\n%s", lastLines(out, 10))
	}
	return results, nil
}

func simKey(bench, unit string) string         { return "sim " + bench + " " + unit }
func throughputKey(target, what string) string { return "throughput " + target + " " + what }

// loadAverage is the machine's one-minute load average, or "" where there is none to
// read.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	fields := strings.Fields(string(b))
	if len(fields) == 0 {
		return ""
	}
	return fields[0]
}

func shortHash(commit string) string { return commit[:min(len(commit), 7)] }
