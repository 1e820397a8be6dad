package sim

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// splitScenario: 3 nodes, R 3; n1 is cut off from n2 and n3 while the tasks enqueued
// before the cut come due. Under the naive protocol both sides fire them.
func splitScenario(t testing.TB, protocol string, claimQuorum int) *Scenario {
	t.Helper()
	return mustParse(t, fmt.Sprintf(`{
  "name": "test-split",
  "cluster": {"nodes": 3, "replicas": 3, "replica_offset": "1s", "protocol": %q, "claim_quorum": %d},
  "network": {"latency": {"min": "1ms", "max": "5ms"}},
  "workload": {"tasks": 60, "rate": 30, "countdown": {"min": "3s", "max": "6s"}},
  "workers": {"latency": {"min": "5ms", "max": "50ms"}},
  "faults": {"schedule": [{"at": "2500ms", "kind": "split", "nodes": ["n1"], "duration": "10s"}]},
  "duration": "15s",
  "liveness_bound": "2m"
}`, protocol, claimQuorum))
}

func TestCheckerCatchesNaiveUnderSplit(t *testing.T) {
	res, err := Run(splitScenario(t, "naive", 0), 1, Options{})
	require.NoError(t, err)
	require.True(t, res.Failed(), "the naive protocol must be caught under a split")
	require.Contains(t, res.Invariants(), "S2")
	var s2 bool
	for _, v := range res.Violations {
		if v.Invariant == "S2" {
			s2 = true
			require.Len(t, v.Nodes, 2)
			require.NotEqual(t, v.Nodes[0], v.Nodes[1])
			require.Len(t, v.Tasks, 1)
		}
	}
	require.True(t, s2)
}

func TestCheckerPassesQuorumUnderSplit(t *testing.T) {
	for seed := uint64(1); seed <= 3; seed++ {
		res, err := Run(splitScenario(t, "quorum", 0), seed, Options{})
		require.NoError(t, err)
		require.False(t, res.Failed(), res.Report())
		require.Equal(t, res.Acked, res.Succeeded, "seed %d", seed)
	}
}

// The protocol override of Options beats the scenario's.
func TestCheckerProtocolOverride(t *testing.T) {
	res, err := Run(splitScenario(t, "quorum", 0), 1, Options{Protocol: "naive"})
	require.NoError(t, err)
	require.Equal(t, "naive", res.Protocol)
	require.True(t, res.Failed())
	require.Contains(t, res.Command, "--protocol naive")
}

func TestCheckerCatchesClaimQuorumOne(t *testing.T) {
	res, err := Run(splitScenario(t, "quorum", 1), 1, Options{})
	require.NoError(t, err)
	require.True(t, res.Failed(), "a claim quorum of 1 must be caught under a split")
	require.Contains(t, res.Invariants(), "S2")
}

func TestFaultFreeBaseline(t *testing.T) {
	sc := mustParse(t, `{
  "name": "test-baseline",
  "cluster": {"nodes": 3, "replicas": 3, "replica_offset": "1s"},
  "workload": {"tasks": 100, "rate": 50, "countdown": {"min": "0s", "max": "3s"}},
  "duration": "5s",
  "liveness_bound": "1m"
}`)
	for seed := uint64(1); seed <= 2; seed++ {
		res, err := Run(sc, seed, Options{})
		require.NoError(t, err)
		require.False(t, res.Failed(), res.Report())
		require.Equal(t, 100, res.Enqueued)
		require.Equal(t, 100, res.Acked)
		require.Equal(t, res.Acked, res.Deliveries)
		require.Equal(t, res.Acked, res.Succeeded)
		require.Zero(t, res.Duplicates)
		require.Empty(t, res.Excused)
		require.Empty(t, res.Report())
	}
}

func TestReportOfFailingRun(t *testing.T) {
	sc := splitScenario(t, "naive", 0)
	failed := 0
	for seed := uint64(1); seed <= 4; seed++ {
		res, err := Run(sc, seed, Options{ScenarioPath: "scenarios/x.json"})
		require.NoError(t, err)
		if !res.Failed() {
			require.Empty(t, res.Report())
			continue
		}
		failed++
		rep := res.Report()
		require.Contains(t, rep, fmt.Sprintf("seed %d", seed))
		require.Contains(t, rep, fmt.Sprintf("replay: go run ./cmd/miyamoto sim --seed %d ", seed))
		require.Contains(t, rep, "scenarios/x.json")
		require.True(t, strings.HasSuffix(rep, "\n"))
		for _, inv := range res.Invariants() {
			require.Contains(t, rep, inv)
		}
	}
	require.Positive(t, failed)
}
