package main

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/bench"
)

func TestParseFlags(t *testing.T) {
	cfg, _, err := parseFlags([]string{"-mode", "open", "-rate", "500", "-duration", "2s", "-targets", "single, baseline"}, &strings.Builder{})
	require.NoError(t, err)
	require.Equal(t, []string{"single", "baseline"}, cfg.Targets)
	require.Equal(t, bench.LoadConfig{Mode: "open", Rate: 500, Concurrency: 32, Duration: 2 * time.Second, MaxInFlight: 1024, Connections: 64}, cfg.Load)

	cfg, _, err = parseFlags([]string{"-settle", "0"}, &strings.Builder{})
	require.NoError(t, err)
	require.Negative(t, cfg.Settle, "zero settle means none, not the default")
}

// Bad flags exit 2 with one line naming the flag.
func TestBadFlags(t *testing.T) {
	for args, want := range map[string]string{
		"-mode fast":                   "-mode: must be open or closed",
		"-mode open -concurrency 3":    "-concurrency: applies to -mode closed only",
		"-rate 10":                     "-rate: applies to -mode open only",
		"-mode open -rate 0":           "-rate: must be between",
		"-concurrency 0":               "-concurrency: must be between",
		"-duration 0s":                 "-duration: must be between",
		"-targets single,mars":         `-targets: "mars" is not a target`,
		"-targets single,single":       `-targets: "single" is listed twice`,
		"-countdown -1s":               "-countdown: must not be negative",
		"-connections 0 -mode open":    "-connections: must be between",
		"-nope":                        "flag provided but not defined: -nope",
		"extra":                        `unexpected argument "extra"`,
		"-drain-timeout 0s":            "-drain-timeout: must be positive",
		"-max-in-flight 0 -mode open":  "-max-in-flight: must be positive",
		"-rounds 0":                    "-rounds: must be between 1 and 100",
		"-cpusplit -cpuprofile x.prof": "-cpusplit: profiles each round itself",
	} {
		var out, errOut strings.Builder
		code := run(strings.Fields(args), &out, &errOut)
		require.Equal(t, exitBadArgs, code, args)
		require.Empty(t, out.String(), args)
		require.Equal(t, 1, strings.Count(errOut.String(), "\n"), "%s: %q", args, errOut.String())
		require.Contains(t, errOut.String(), want, args)
	}
}

// -cpusplit prints, after the table, each target's CPU per delivered task by part:
// the relay has no node goroutines, a single node has, and each column adds up to
// about the cpu/task the table measured over the same span.
func TestCPUSplit(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two targets: skipped with -short")
	}
	var out, errOut strings.Builder
	code := run([]string{"-targets", "baseline,single", "-duration", "500ms", "-settle", "0", "-q", "-cpusplit"}, &out, &errOut)
	require.Equal(t, exitOK, code, errOut.String())
	_, split, ok := strings.Cut(out.String(), "where the CPU went")
	require.True(t, ok, out.String())
	row := func(name string) []float64 {
		for _, line := range strings.Split(split, "\n") {
			if rest, ok := strings.CutPrefix(line, name); ok {
				var v []float64
				for _, f := range strings.Fields(rest) {
					x, err := strconv.ParseFloat(f, 64)
					require.NoError(t, err, line)
					v = append(v, x)
				}
				require.Len(t, v, 2, line)
				return v
			}
		}
		t.Fatalf("no row %q in\n%s", name, split)
		return nil
	}
	node := row("target: node goroutines")
	require.Zero(t, node[0], "the relay has no node")
	require.Positive(t, node[1], "a single node's goroutine did the node's work")
	all := row("profiled in all")
	for i, target := range []string{"baseline", "single"} {
		var cpu time.Duration
		for _, line := range strings.Split(out.String(), "\n") {
			f := strings.Fields(line)
			if len(f) > 3 && f[0] == target {
				d, err := time.ParseDuration(strings.Replace(f[len(f)-2], "us", "µs", 1))
				require.NoError(t, err, line)
				cpu = d
			}
		}
		require.Positive(t, cpu, out.String())
		// The profiler samples at 100 Hz, so a short run's sum is rough.
		require.InDelta(t, float64(cpu.Microseconds()), all[i], 0.5*float64(cpu.Microseconds()), "%s: profiled %.1f µs a task, measured %v", target, all[i], cpu)
	}
}
