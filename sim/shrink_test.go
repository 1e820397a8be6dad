package sim

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestDDMin(t *testing.T) {
	items := make([]int, 40)
	for i := range items {
		items[i] = i
	}
	runs := 0
	got := ddmin(items, func(s []int) bool {
		runs++
		return slices.Contains(s, 3) && slices.Contains(s, 17) && slices.Contains(s, 31)
	})
	require.Equal(t, []int{3, 17, 31}, got)
	require.Less(t, runs, 120, "ddmin should need far fewer tests than subsets")

	require.Empty(t, ddmin(items, func([]int) bool { return true }), "nothing needed: nothing kept")
	require.Equal(t, []int{5}, ddmin([]int{5}, func(s []int) bool { return len(s) == 1 }))
}

// firstCaught is the first seed of 1-20 on which the negative control fails as it
// expects.
func firstCaught(t *testing.T, sc *Scenario) uint64 {
	t.Helper()
	for seed := uint64(1); seed <= 20; seed++ {
		r, err := Run(sc, seed, Options{})
		require.NoError(t, err)
		if pickInvariant(sc.Expect, r) != "" && slices.Contains(sc.Expect.Invariants, pickInvariant(sc.Expect, r)) {
			return seed
		}
	}
	t.Fatalf("%s: no seed of 1-20 caught", sc.Name)
	return 0
}

// Every negative control shrinks to a scenario that still fails on its invariant by
// itself (after a round trip through JSON, as a file), with at most a quarter of
// the faults (or the one fault it needs) and of the tasks (half for M2's); and that scenario passes
// once its deliberate slip is taken away (the quorum protocol, no unsafe switches;
// L1's control has none: a queue paused for good is its fault).
func TestShrinkNegativeControls(t *testing.T) {
	if testing.Short() {
		// -short is CI's race step: the shrinker and the simulator start no
		// goroutine, so -race adds nothing here, and the test runs in full in CI's
		// plain go test (about 53 s under -race; its budget is a minute).
		t.Skip("single-goroutine and a minute's budget under -race: skipped with -short")
	}
	files, err := filepath.Glob("../scenarios/negative-*.json")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		sc, err := LoadScenario(f)
		require.NoError(t, err)
		t.Run(sc.Name, func(t *testing.T) {
			seed := firstCaught(t, sc)
			res, err := Shrink(sc, ShrinkOptions{Seed: seed, Budget: time.Minute})
			require.NoError(t, err)
			require.False(t, res.CutShort)
			require.Contains(t, sc.Expect.Invariants, res.Invariant)
			t.Logf("seed %d, %s: %s -> %s (%d runs)", seed, res.Invariant, res.Before, res.After, res.Runs)

			// A quarter of the faults and of the tasks; half of the tasks and three
			// fifths of the faults for the M2 control, whose failure needs a chain of
			// replacements (each joins the node the next one removes) and a lost link
			// beside one of them, so the shrink keeps three to six faults of eight to
			// ten, and the tasks up to the replacement that caught it (stop 26: 5 of
			// 10 faults and 220 of 600 tasks on seed 2; stop 27: 6 of 10 and 211,
			// once a joiner no longer refused a removed member's Stores of the moves
			// it finished, which had been one of the ways the control went wrong).
			part := 4
			faults := max(1, res.Before.Faults/part)
			if slices.Contains(sc.Expect.Invariants, "M2") {
				part = 2
				faults = res.Before.Faults * 3 / 5
			}
			require.LessOrEqual(t, res.After.Faults, faults, "faults")
			require.Less(t, res.After.Tasks, res.Before.Tasks, "tasks")
			require.LessOrEqual(t, res.After.Tasks*part, res.Before.Tasks, "at most a quarter (M2: half) of the tasks")
			require.LessOrEqual(t, res.After.Nodes, res.Before.Nodes)
			if sw := res.Scenario.Faults.Swarm; sw != nil {
				require.Zero(t, sw.Rate, "a fixed schedule: the swarm kept only draws its kinds (for the clocks)")
			}

			b, err := json.Marshal(res.Scenario)
			require.NoError(t, err)
			shrunk, err := ParseScenario(b)
			require.NoError(t, err, "the result is a valid scenario file:\n%s", b)
			require.Equal(t, []uint64{seed}, shrunk.RegressionSeeds)
			r, err := Run(shrunk, seed, Options{})
			require.NoError(t, err)
			require.Positive(t, r.ViolationCounts[res.Invariant], "the shrunk scenario no longer fails on its own")

			if sc.Name == "negative-L1-paused-forever" {
				return // no slip to take away: its fault (a queue paused for good) breaks L1
			}
			fixed := *shrunk
			fixed.Cluster.Unsafe, fixed.Cluster.Protocol = nil, "quorum"
			for s := uint64(1); s <= 5; s++ {
				r, err := Run(&fixed, s, Options{})
				require.NoError(t, err)
				require.Zero(t, r.ViolationCounts[res.Invariant], "seed %d: the shrunk scenario fails on the fixed protocol too: %s", s, r.Report())
			}
		})
	}
}

// The same input gives the same output, and a seed that does not violate the
// invariant is refused.
func TestShrinkDeterministicAndRefusesPassingSeeds(t *testing.T) {
	sc, err := LoadScenario("../scenarios/negative-L3-keep-unknown.json")
	require.NoError(t, err)
	seed := firstCaught(t, sc)
	a, err := Shrink(sc, ShrinkOptions{Seed: seed})
	require.NoError(t, err)
	b, err := Shrink(sc, ShrinkOptions{Seed: seed})
	require.NoError(t, err)
	ja, _ := json.Marshal(a.Scenario)
	jb, _ := json.Marshal(b.Scenario)
	require.JSONEq(t, string(ja), string(jb))
	require.Equal(t, a.Runs, b.Runs)
	require.Greater(t, a.Before.Faults, 4, "the swarm's faults were made explicit")

	base, err := LoadScenario("../scenarios/baseline.json")
	require.NoError(t, err)
	_, err = Shrink(base, ShrinkOptions{Seed: 1})
	require.ErrorIs(t, err, ErrNotViolated)
	_, err = Shrink(sc, ShrinkOptions{Seed: seed, Invariant: "Q2"})
	require.ErrorIs(t, err, ErrNotViolated)
}

// A budget too small for the search still gives a scenario that fails, and says
// it was cut short.
func TestShrinkBudget(t *testing.T) {
	sc, err := LoadScenario("../scenarios/negative-L3-keep-unknown.json")
	require.NoError(t, err)
	seed := firstCaught(t, sc)
	res, err := Shrink(sc, ShrinkOptions{Seed: seed, Budget: time.Nanosecond})
	require.NoError(t, err)
	require.True(t, res.CutShort)
	r, err := Run(res.Scenario, seed, Options{})
	require.NoError(t, err)
	require.Positive(t, r.ViolationCounts[res.Invariant])
}

// A swarm's faults written down as a fixed schedule replay the run exactly: the
// swarm draws from its own stream, so the other draws (clients' queue changes, the
// nodes of faults, the network) do not move. Same trace, event for event, but for
// the header.
func TestExplicitScheduleReplaysTheSwarmExactly(t *testing.T) {
	for _, c := range []struct {
		file     string
		seed     uint64
		protocol string
	}{{"../scenarios/at-most-once-faults.json", 2, "naive"}, {"../scenarios/swarm.json", 1, ""}, {"../scenarios/swarm-durable.json", 3, ""}} {
		sc, err := LoadScenario(c.file)
		require.NoError(t, err)
		var applied []FaultEvent
		var swarmTrace, fixedTrace bytes.Buffer
		r, err := Run(sc, c.seed, Options{Protocol: c.protocol, applied: &applied, Trace: &swarmTrace})
		require.NoError(t, err)
		require.NotEmpty(t, applied, c.file)
		_, err = Run(explicit(sc, r, applied, c.protocol), c.seed, Options{Protocol: c.protocol, Trace: &fixedTrace})
		require.NoError(t, err)
		swarmLines := strings.Split(swarmTrace.String(), "\n")[1:]
		fixedLines := strings.Split(fixedTrace.String(), "\n")[1:]
		require.Equal(t, len(swarmLines), len(fixedLines), c.file)
		for i := range swarmLines {
			require.Equal(t, swarmLines[i], fixedLines[i], "%s seed %d: line %d differs", c.file, c.seed, i+1)
		}
	}
}

// Fewer nodes: faults lose the nodes that are gone, a one-way link with an end gone
// goes, and so do the clock offsets of nodes gone.
func TestWithNodes(t *testing.T) {
	sc := mustParse(t, patched(t, func(m map[string]any) {
		obj(m, "cluster")["nodes"] = 5
		m["clocks"] = map[string]any{"offsets": map[string]any{"n2": "10ms", "n5": "20ms"}}
		obj(m, "faults")["schedule"] = []any{
			map[string]any{"at": "1s", "kind": "oneway", "nodes": []any{"n1", "n4"}},
			map[string]any{"at": "1s", "kind": "oneway", "nodes": []any{"n1", "n2"}},
			map[string]any{"at": "1s", "kind": "isolate", "nodes": []any{"n2", "n5"}},
			map[string]any{"at": "1s", "kind": "crash", "nodes": []any{"n4"}},
			map[string]any{"at": "1s", "kind": "drop", "value": 0.1},
		}
	}))
	c := withNodes(sc, 3)
	require.NoError(t, c.Validate())
	require.Equal(t, 3, c.Cluster.Nodes)
	require.Equal(t, []FaultEvent{
		{At: Duration(time.Second), Kind: "oneway", Nodes: []string{"n1", "n2"}},
		{At: Duration(time.Second), Kind: "isolate", Nodes: []string{"n2"}},
		{At: Duration(time.Second), Kind: "drop", Value: 0.1},
	}, c.Faults.Schedule)
	require.Equal(t, map[string]Duration{"n2": Duration(10 * time.Millisecond)}, c.Clocks.Offsets)
	require.Len(t, sc.Clocks.Offsets, 2, "the original is left as it was")
}
