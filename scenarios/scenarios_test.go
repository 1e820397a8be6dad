// Package scenarios holds the simulator's scenario files (JSON, documented in
// README.md). This test runs every file for a few seeds, plus its regression seeds,
// and asserts its expectation: "pass" scenarios must show no violation on any seed,
// negative controls must be caught. CI's .ci/run sweeps 200 seeds of each.
package scenarios_test

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/sim"
)

// seedsPerScenario keeps `go test ./...` quick; MIYAMOTO_SEEDS raises it.
func seedsPerScenario(t *testing.T) uint64 {
	if s := os.Getenv("MIYAMOTO_SEEDS"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		require.NoError(t, err, "MIYAMOTO_SEEDS must be a positive integer")
		return n
	}
	if testing.Short() {
		return 2
	}
	return 5
}

func TestScenarios(t *testing.T) {
	files, err := filepath.Glob("*.json")
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(files), 12, "the issue asks for at least twelve scenarios")
	negative := 0
	for _, f := range files {
		sc, err := sim.LoadScenario(f)
		require.NoError(t, err)
		if sc.Expect.Outcome == "violation" {
			negative++
		}
	}
	require.GreaterOrEqual(t, negative, 2, "want at least two negative controls")
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			t.Parallel()
			sc, err := sim.LoadScenario(f)
			require.NoError(t, err)
			sum, err := sim.Sweep(sc, sim.SweepOptions{Seeds: sim.SeedRange(1, seedsPerScenario(t)), ScenarioPath: "scenarios/" + f, Parallel: 1})
			require.NoError(t, err)
			require.Positive(t, sum.Tasks, "no task was acknowledged: the scenario tests nothing")
			if sc.Expect.Outcome == "violation" {
				require.NotEmpty(t, sum.Caught, "negative control %s was not caught on any seed", sc.Name)
				// Each invariant it names must be seen failing, not only one of them.
				seen := map[string]bool{}
				for _, r := range sum.Failed {
					for _, inv := range r.Invariants() {
						seen[inv] = true
					}
				}
				for _, inv := range sc.Expect.Invariants {
					require.True(t, seen[inv], "negative control %s never caught %s", sc.Name, inv)
				}
				return
			}
			for _, r := range sum.Failed {
				t.Error(r.Report())
			}
		})
	}
}

// The fault-free baseline must deliver every task exactly once: no duplicate, not
// even an excused one, and every acknowledged task succeeded.
func TestBaselineExactlyOnce(t *testing.T) {
	sc, err := sim.LoadScenario("baseline.json")
	require.NoError(t, err)
	for seed := uint64(1); seed <= 3; seed++ {
		r, err := sim.Run(sc, seed, sim.Options{})
		require.NoError(t, err)
		require.False(t, r.Failed(), r.Report())
		require.Equal(t, sc.Workload.Tasks, r.Acked, "seed %d", seed)
		require.Equal(t, r.Acked, r.Succeeded, "seed %d", seed)
		require.Equal(t, r.Acked, r.Deliveries, "seed %d", seed)
		require.Zero(t, r.Duplicates, "seed %d", seed)
		require.Empty(t, r.Excused, "seed %d", seed)
	}
}

// D1 on every scenario: one seed, run twice, the same trace hash.
func TestScenariosDeterministic(t *testing.T) {
	files, err := filepath.Glob("*.json")
	require.NoError(t, err)
	for _, f := range files {
		sc, err := sim.LoadScenario(f)
		require.NoError(t, err)
		a, err := sim.Run(sc, 7, sim.Options{Hash: true})
		require.NoError(t, err)
		b, err := sim.Run(sc, 7, sim.Options{Hash: true})
		require.NoError(t, err)
		require.Equal(t, a.TraceHash, b.TraceHash, "%s: seed 7 gave two different traces", f)
	}
}

// goNegativeControls are the invariants whose negative control is a Go test rather
// than a scenario (a scenario cannot break them honestly), with the file that holds
// the test. D1: a scenario cannot make the simulator nondeterministic, and a sweep
// that finds nondeterminism never meets its expectation.
var goNegativeControls = map[string]struct{ file, test string }{
	"D1": {"../sim/sweep_test.go", "TestD1NegativeControl"},
}

// Every invariant the checker knows has a negative control: a scenario that expects
// a violation naming it, or a Go test in goNegativeControls. An invariant nobody has
// seen fail proves nothing, so adding one without a control fails the build. Every
// deliberate slip (sim.UnsafeSwitches) is exercised by a scenario that expects the
// invariant it breaks, and files named negative-<invariant>-... expect that invariant.
func TestEveryInvariantHasANegativeControl(t *testing.T) {
	files, err := filepath.Glob("*.json")
	require.NoError(t, err)
	controls := map[string][]string{} // invariant -> scenario files
	switches := map[string]bool{}
	for _, f := range files {
		sc, err := sim.LoadScenario(f)
		require.NoError(t, err)
		if sc.Expect.Outcome != "violation" {
			require.False(t, strings.HasPrefix(f, "negative-"), "%s: a negative-* scenario must expect a violation", f)
			continue
		}
		for _, inv := range sc.Expect.Invariants {
			controls[inv] = append(controls[inv], f)
		}
		if rest, ok := strings.CutPrefix(f, "negative-"); ok {
			inv, _, _ := strings.Cut(rest, "-")
			require.Contains(t, sc.Expect.Invariants, inv, "%s: named for %s, so it must expect it", f, inv)
		}
		for _, u := range sc.Cluster.Unsafe {
			switches[u] = true
			require.Contains(t, sc.Expect.Invariants, sim.UnsafeSwitches[u].Invariant,
				"%s: switch %s breaks %s, so the scenario must expect it", f, u, sim.UnsafeSwitches[u].Invariant)
		}
	}
	for _, inv := range sim.Invariants() {
		if g, ok := goNegativeControls[inv]; ok {
			src, err := os.ReadFile(g.file)
			require.NoError(t, err, "%s: the Go negative control's file", inv)
			require.Contains(t, string(src), "func "+g.test+"(t *testing.T)", "%s: negative control %s not in %s", inv, g.test, g.file)
			continue
		}
		require.NotEmpty(t, controls[inv], "invariant %s has no negative control: add scenarios/negative-%s-<what>.json expecting it, or a Go test to goNegativeControls", inv, inv)
	}
	for inv := range goNegativeControls {
		require.True(t, slices.Contains(sim.Invariants(), inv), "goNegativeControls names %s, which the checker does not know", inv)
	}
	for _, u := range sim.UnsafeNames() {
		require.True(t, switches[u], "unsafe switch %s is used by no scenario: a slip nobody switches on is dead code", u)
	}
}

// The scenarios under open/ are bugs not fixed yet (open/README.md): each must
// still fail, on seeds 1-3 or the seeds its file lists as failing
// (regression_seeds, which the sweep adds), so that the hole stays in sight; one
// that passes was fixed, and belongs up in this directory with its failing seeds as
// regression seeds.
func TestOpenBugsStillFail(t *testing.T) {
	files, err := filepath.Glob("open/*.json")
	require.NoError(t, err)
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			t.Parallel()
			sc, err := sim.LoadScenario(f)
			require.NoError(t, err)
			sum, err := sim.Sweep(sc, sim.SweepOptions{Seeds: sim.SeedRange(1, 3), ScenarioPath: "scenarios/" + f, Parallel: 1})
			require.NoError(t, err)
			require.NotEmpty(t, sum.Failed, "%s passed seeds 1-3: if its bug is fixed, move it out of open/ with its failing seeds as regression seeds", f)
		})
	}
}
