package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/sim"
	"github.com/miyamotohq/miyamoto/sim/timeline"
)

// The README's "Research tools" commands, run as written by bash from a copy of the
// repository's layout, with the binary this test built in place of go run. The sweep
// of every negative control must leave reports that name each one as caught.
func TestREADMEResearchTools(t *testing.T) {
	t.Parallel()
	bin := binary(t) // skips with -short
	requireTools(t, "bash")
	dir := workTree(t)
	script := replaceAll(t, readmeBlock(t, "### Research tools"), "go run ./cmd/miyamoto ", bin+" ")
	runShell(t, dir, "set -e\n"+script, nil, 120*time.Second)

	negatives, err := filepath.Glob(filepath.Join(moduleRoot(t), "scenarios", "negative-*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, negatives)

	doc := readJUnit(t, filepath.Join(dir, "sim.xml"))
	require.Equal(t, len(negatives), doc.Tests, "one test case per scenario")
	require.Zero(t, doc.Failures, "every negative control is caught")
	for _, c := range doc.Suites[0].Cases {
		require.Contains(t, c.SystemOut, "caught as expected: scenario ", "%s lists no caught seed", c.Name)
		require.Contains(t, c.SystemOut, "replay: go run ./cmd/miyamoto sim --seed ")
	}

	b, err := os.ReadFile(filepath.Join(dir, "sim.json"))
	require.NoError(t, err)
	rep := readJSONReport(t, b)
	require.True(t, rep.Met)
	require.Len(t, rep.Scenarios, len(negatives))
	for _, s := range rep.Scenarios {
		require.True(t, strings.HasPrefix(s.Scenario, "negative-"), s.Scenario)
		require.Positive(t, s.Caught, "%s: nothing caught", s.Scenario)
		require.NotEmpty(t, s.Failures, "%s: its caught seeds are not listed", s.Scenario)
	}

	// The timeline of the S4 negative control's trace holds its violations (the
	// browser test, TestTimelineInBrowser, shows them drawn).
	page, err := os.ReadFile(filepath.Join(dir, "run.html"))
	require.NoError(t, err)
	_, data, ok := strings.Cut(string(page), "const DATA = ")
	require.True(t, ok, "run.html holds no data")
	data, _, _ = strings.Cut(data, ";\n")
	var d timeline.Data
	require.NoError(t, json.Unmarshal([]byte(data), &d))
	require.Equal(t, "negative-S4-naive-at-most-once", d.Scenario)
	require.Len(t, d.Nodes, 5)
	require.NotEmpty(t, d.Violations)
	require.Contains(t, d.Violations[0].Invariant+d.Violations[1].Invariant, "S4")

	// The shrunk scenario is smaller and (the last command) still caught.
	small, err := sim.LoadScenario(filepath.Join(dir, "s4-small.json"))
	require.NoError(t, err)
	require.Less(t, small.Workload.Tasks, 100)
	require.Equal(t, []uint64{1}, small.RegressionSeeds)
	require.Equal(t, []string{"S4"}, small.Expect.Invariants)
}
