package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseFlags(t *testing.T) {
	cfg, err := parseFlags([]string{"-base", "096cb31", "-targets", " cluster3,single ", "-benchtime", "2s", "-sim-bench", ""}, &strings.Builder{})
	require.NoError(t, err)
	require.Equal(t, []string{"cluster3", "single"}, cfg.targets)
	require.Equal(t, "2s", cfg.benchtime)
	require.Equal(t, 3, cfg.rounds)
	require.Equal(t, 5.0, cfg.tolerance)

	cfg, err = parseFlags([]string{"-base", "HEAD", "-targets", ""}, &strings.Builder{})
	require.NoError(t, err)
	require.Empty(t, cfg.targets, "no throughput runs")
	require.Equal(t, "Sim5NodeR3", cfg.simBench)
}

// Bad flags exit 2 with one line naming the flag, before anything is built.
func TestBadFlags(t *testing.T) {
	for args, want := range map[string]string{
		"":                                  "-base: required",
		"-rounds 3":                         "-base: required",
		"-base --rounds":                    `-base: "--rounds" is not a commit`,
		"-base no-such-commit-here":         `-base: "no-such-commit-here" is not a commit of this repository`,
		"-base HEAD -rounds 0":              "-rounds: must be between 1 and 50",
		"-base HEAD -benchtime fast":        `-benchtime: "fast" is neither Nx`,
		"-base HEAD -benchtime 0x":          `-benchtime: "0x" is neither Nx`,
		"-base HEAD -benchtime -1s":         `-benchtime: "-1s" is neither Nx`,
		"-base HEAD -sim-bench (":           "-sim-bench: not a regular expression",
		"-base HEAD -targets single,mars":   `-targets: "mars" is not a target`,
		"-base HEAD -targets single,single": `-targets: "single" is listed twice`,
		"-base HEAD -targets baseline":      `-targets: "baseline" is not a target`,
		"-base HEAD -duration 0s":           "-duration: must be between",
		"-base HEAD -concurrency 0":         "-concurrency: must be between",
		"-base HEAD -tolerance -1":          "-tolerance: must be a percentage",
		"-base HEAD -tolerance 100":         "-tolerance: must be a percentage",
		"-base HEAD -nope":                  "flag provided but not defined: -nope",
		"-base HEAD extra":                  `unexpected argument "extra"`,
	} {
		var out, errOut strings.Builder
		code := run(strings.Fields(args), &out, &errOut)
		require.Equal(t, exitBadArgs, code, args)
		require.Empty(t, out.String(), args)
		require.Equal(t, 1, strings.Count(errOut.String(), "\n"), "%s: %q", args, errOut.String())
		require.Contains(t, errOut.String(), want, args)
	}
	var out, errOut strings.Builder
	require.Equal(t, exitBadArgs, run([]string{"-base", "HEAD", "-sim-bench", "", "-targets", ""}, &out, &errOut))
	require.Contains(t, errOut.String(), "nothing to measure")
}

// The table of compare at the base commit (096cb31, no "late p99" column) and today's,
// with the lines compare prints under it.
func TestParseCompareTable(t *testing.T) {
	base := `         target  nodes/R  acked  errors  shed  enqueue/s     p50     p99     max  delivered/s  e2e p50  e2e p99  missing  dups  vs baseline
       baseline      1/1  20833       0     0      20819  1.25ms  6.28ms  15.2ms        20818   1.24ms   6.27ms        0     0       100.0%
       cluster3      3/3   8914       0     0       8897  2.95ms  12.6ms  28.2ms         8894   3.65ms   16.7ms        2     1        42.7%
`
	current := `   target  nodes/R  acked  errors  shed  enqueue/s     p50     p99     max  delivered/s  e2e p50  e2e p99  late p99  missing  dups  vs baseline
 baseline      1/1  20833       0     0      20819  1.25ms  6.28ms  15.2ms        20818   1.24ms   6.27ms       n/a        0     0       100.0%
   single      1/1  14411       0     0      14393  1.89ms  9.08ms  16.1ms        14393   1.97ms   8.22ms       n/a        0     0        69.1%
single errors by kind: map[timeout:3]
asynq: skipped: redis-server is not installed
`
	rows, err := parseCompareTable(base)
	require.NoError(t, err)
	require.Equal(t, map[string]compareRow{"baseline": {delivered: 20818, acked: 20833}, "cluster3": {delivered: 8894, acked: 8914, missing: 2, dups: 1}}, rows)
	rows, err = parseCompareTable(current)
	require.NoError(t, err)
	require.Equal(t, map[string]compareRow{"baseline": {delivered: 20818, acked: 20833}, "single": {delivered: 14393, acked: 14411}}, rows)

	_, err = parseCompareTable("")
	require.ErrorContains(t, err, "no table")
	_, err = parseCompareTable("target  acked\nsingle  3\n")
	require.ErrorContains(t, err, `no column "delivered/s"`)
	_, err = parseCompareTable("target  acked  delivered/s  missing  dups\nsingle  3  fast  0  0\n")
	require.ErrorContains(t, err, "cannot read the row")
}

func TestParseBenchOutput(t *testing.T) {
	out := `goos: linux
BenchmarkSim5NodeR3-2          	      20	  74707867 ns/op	     37712 events/run	    504800 events/s	      1548 x-realtime	32415527 B/op	  400510 allocs/op
BenchmarkSim5NodeR3Durable     	      20	 111790242 ns/op	     46657 events/run
    sim_test.go:30: BenchmarkSim5NodeR3 a log line
PASS
`
	got, err := parseBenchOutput(out)
	require.NoError(t, err)
	require.Equal(t, map[string]map[string]float64{
		"BenchmarkSim5NodeR3":        {"ns/op": 74707867, "events/run": 37712, "events/s": 504800, "x-realtime": 1548, "B/op": 32415527, "allocs/op": 400510},
		"BenchmarkSim5NodeR3Durable": {"ns/op": 111790242, "events/run": 46657},
	}, got)
	_, err = parseBenchOutput("PASS\n")
	require.ErrorContains(t, err, "no benchmark results")
	_, err = parseBenchOutput("BenchmarkX-2  20  many ns/op\n")
	require.ErrorContains(t, err, "cannot read the benchmark line")
}

func TestMedian(t *testing.T) {
	require.Equal(t, 3.0, median([]float64{5, 1, 3}))
	require.Equal(t, 2.5, median([]float64{4, 1, 2, 3}))
	require.Equal(t, 7.0, median([]float64{7}))
}

func TestThousands(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 999.4: "999", 1000: "1,000", 504800: "504,800", 1234567.8: "1,234,568", -2500: "-2,500"} {
		require.Equal(t, want, thousands(v), "%v", v)
	}
}

// Rows take the median of each side's rounds; a judged figure more than the
// tolerance worse is marked and, with -strict only, fails the run.
func TestReportVerdicts(t *testing.T) {
	ms := metricsFor([]string{"BenchmarkSim5NodeR3"}, []string{"single"})
	base := []figures{
		{simKey("BenchmarkSim5NodeR3", "events/s"): 100, throughputKey("single", "share"): 0.70, throughputKey("single", "delivered"): 7000},
		{simKey("BenchmarkSim5NodeR3", "events/s"): 120, throughputKey("single", "share"): 0.80, throughputKey("single", "delivered"): 8000},
		{simKey("BenchmarkSim5NodeR3", "events/s"): 110, throughputKey("single", "share"): 0.75, throughputKey("single", "delivered"): 7500},
	}
	current := []figures{
		{simKey("BenchmarkSim5NodeR3", "events/s"): 105, throughputKey("single", "share"): 0.60, throughputKey("single", "delivered"): 9000},
		{simKey("BenchmarkSim5NodeR3", "events/s"): 90, throughputKey("single", "share"): 0.65, throughputKey("single", "delivered"): 9000},
		{simKey("BenchmarkSim5NodeR3", "events/s"): 107, throughputKey("single", "share"): 0.70, throughputKey("single", "delivered"): 9000},
	}
	rep := report{base: "096cb31", current: "abc1234 with uncommitted changes", rounds: 3, tolerance: 5, rows: rowsFrom(ms, base, current)}
	require.Len(t, rep.rows, 3, "only the metrics both sides measured")
	require.Equal(t, []string{"single delivered/s ÷ relay"}, rep.outOfTolerance(), "events/s 105 of 110 is within 5%%; a share of 65%% of 75%% is not")

	var out strings.Builder
	require.NoError(t, rep.writeTable(&out))
	lines := strings.Split(out.String(), "\n")
	require.Regexp(t, `^\s*metric\s+base 096cb31\s+current abc1234\s+current/base\s+within 5%$`, lines[0])
	require.Regexp(t, `^\s*Sim5NodeR3 events/s\s+110\s+105\s+0\.955\s+yes$`, lines[1])
	require.Regexp(t, `^\s*single delivered/s ÷ relay\s+75\.0%\s+65\.0%\s+0\.867\s+NO \(-13\.3%\)$`, lines[2])
	require.Regexp(t, `^\s*single delivered/s\s+7,500\s+9,000\s+1\.200\s+yes$`, lines[3])
	require.Contains(t, out.String(), "current abc1234 with uncommitted changes")
	require.Contains(t, out.String(), "\nEach round, in order ")
	require.Regexp(t, `\n\s*Sim5NodeR3 events/s\s+100 / 120 / 110\s+105 / 90 / 107\n`, out.String())

	var errOut strings.Builder
	require.Equal(t, exitOK, exitCode(rep, nil, false, &errOut), "out of tolerance without -strict")
	require.Equal(t, exitFailed, exitCode(rep, nil, true, &errOut))
	require.Equal(t, "versus: -strict: single delivered/s ÷ relay more than 5% worse than the base\n", errOut.String())
	require.Equal(t, exitFailed, exitCode(report{}, errors.New("boom"), false, &strings.Builder{}))
	rep.tolerance = 20
	require.Equal(t, exitOK, exitCode(rep, nil, true, &strings.Builder{}))
}

// The base runs the current scenario files where its own differ or are missing.
func TestAlignWorkload(t *testing.T) {
	base, cur := &tree{side: "base", root: t.TempDir()}, &tree{side: "current", root: t.TempDir()}
	write := func(root, name, text string) {
		path := filepath.Join(root, "bench", "testdata", name)
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, []byte(text), 0o644))
	}
	write(cur.root, "same.json", "{}")
	write(base.root, "same.json", "{}")
	write(cur.root, "changed.json", `{"tasks": 2}`)
	write(base.root, "changed.json", `{"tasks": 1}`)
	write(cur.root, "new.json", "[]")
	copied, err := alignWorkload(base, cur)
	require.NoError(t, err)
	require.Equal(t, []string{"changed.json", "new.json"}, copied)
	for _, name := range []string{"same.json", "changed.json", "new.json"} {
		want, err := os.ReadFile(filepath.Join(cur.root, "bench", "testdata", name))
		require.NoError(t, err)
		got, err := os.ReadFile(filepath.Join(base.root, "bench", "testdata", name))
		require.NoError(t, err)
		require.Equal(t, string(want), string(got), name)
	}
}
