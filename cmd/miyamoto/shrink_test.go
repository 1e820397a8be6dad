package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/sim"
)

// shrink from a scenario file and a seed, and from a trace: the result is a scenario
// file that fails by itself on the same invariant, smaller than the original.
func TestShrinkCommand(t *testing.T) {
	dir := t.TempDir()
	const file = "../../scenarios/negative-S4-naive-at-most-once.json"
	out := filepath.Join(dir, "small.json")
	code, stdout, stderr := runCmd("shrink", "--seed", "1", "-o", out, file)
	require.Equal(t, exitOK, code, "%s\n%s", stdout, stderr)
	require.Contains(t, stdout, "before: 1 faults (10s in all), 100 tasks, 5 nodes")
	require.Contains(t, stdout, "still violates S4 with seed 1: S4 at ")
	require.Contains(t, stdout, "written to "+out+" (run it: go run ./cmd/miyamoto sim --seed 1 "+out+")")
	small, err := sim.LoadScenario(out)
	require.NoError(t, err)
	require.Less(t, small.Workload.Tasks, 100)
	require.Equal(t, "naive", small.Cluster.Protocol)
	code, stdout, stderr = runCmd("sim", "--seed", "1", out)
	require.Equal(t, exitOK, code, "the shrunk negative control is still caught:\n%s\n%s", stdout, stderr)
	require.Contains(t, stdout, "caught on 1 of 1 seeds")

	// From a trace: seed and protocol from its header (here the protocol was
	// overridden on the command line: the result names it).
	tr := filepath.Join(dir, "t.jsonl")
	code, _, stderr = runCmd("sim", "--seed", "2", "--protocol", "naive", "--trace", tr, "../../scenarios/at-most-once-faults.json")
	require.Equal(t, exitFailed, code, stderr)
	out2 := filepath.Join(dir, "from-trace.json")
	code, stdout, stderr = runCmd("shrink", "-o", out2, tr)
	require.Equal(t, exitOK, code, "%s\n%s", stdout, stderr)
	require.Contains(t, stdout, "with seed 2: ")
	small, err = sim.LoadScenario(out2)
	require.NoError(t, err)
	require.Equal(t, "naive", small.Cluster.Protocol)
	require.Equal(t, "pass", small.Expect.Outcome, "a scenario that must pass still must: the result fails until the bug is fixed")
	code, _, _ = runCmd("sim", "--seed", "2", out2)
	require.Equal(t, exitFailed, code)
}

func TestShrinkBadArguments(t *testing.T) {
	dir := t.TempDir()
	tr := filepath.Join(dir, "t.jsonl")
	code, _, stderr := runCmd("sim", "--seed", "1", "--trace", tr, "../../scenarios/negative-S4-naive-at-most-once.json")
	require.Equal(t, exitOK, code, stderr)
	for _, c := range []struct {
		args []string
		says string
	}{
		{nil, "give one scenario file with --seed N, or one trace file"},
		{[]string{"../../scenarios/baseline.json"}, "--seed N is needed with a scenario file"},
		{[]string{"--seed", "x", "../../scenarios/baseline.json"}, "--seed must be a non-negative integer"},
		{[]string{"--seed", "1", tr}, "is a trace: its header names the seed (1); leave out --seed"},
		{[]string{"--seed", "1", "../../scenarios/baseline.json"}, "the seed does not violate the invariant: seed 1 violates nothing"},
		{[]string{"--seed", "1", "--invariant", "Q2", "../../scenarios/negative-S4-naive-at-most-once.json"}, "seed 1 violates S2, S3, S4, not Q2"},
		{[]string{"--seed", "1", "--budget", "0s", "../../scenarios/baseline.json"}, "--budget must be positive"},
		{[]string{"--seed", "1", "--protocol", "raft", "../../scenarios/baseline.json"}, "--protocol: "},
		{[]string{"--seed", "1", filepath.Join(dir, "missing.json")}, "no such file"},
	} {
		code, stdout, stderr := runCmd(append([]string{"shrink"}, c.args...)...)
		require.Equal(t, exitBadArgs, code, "%v: %s %s", c.args, stdout, stderr)
		require.Contains(t, stderr, c.says, "%v", c.args)
		require.True(t, strings.HasPrefix(stderr, "miyamoto shrink: "), stderr)
		require.Equal(t, 1, strings.Count(stderr, "\n"), "one line: %q", stderr)
	}
	_, err := os.Stat("negative-S4-naive-at-most-once-shrunk-1.json")
	require.True(t, os.IsNotExist(err), "a refused shrink wrote nothing")
}
