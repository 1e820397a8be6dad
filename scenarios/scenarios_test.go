// Package scenarios holds the simulator's scenario files (JSON, documented in
// README.md). This test runs every file for a few seeds, plus its regression seeds,
// and asserts its expectation: "pass" scenarios must show no violation on any seed,
// negative controls must be caught. CI's .ci/run sweeps 200 seeds of each.
package scenarios_test

import (
	"os"
	"path/filepath"
	"strconv"
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
