package main

// miyamoto sim's machine-readable reports (--junit, --json), parsed as CI would parse
// them, and compared with what a sweep of the same seeds really found.

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/sim"
)

// junitDoc is the part of a JUnit XML report the tests read.
type junitDoc struct {
	XMLName  xml.Name `xml:"testsuites"`
	Tests    int      `xml:"tests,attr"`
	Failures int      `xml:"failures,attr"`
	Suites   []struct {
		Cases []struct {
			Name     string `xml:"name,attr"`
			Failures []struct {
				Message string `xml:"message,attr"`
				Type    string `xml:"type,attr"`
				Body    string `xml:",chardata"`
			} `xml:"failure"`
			SystemOut string `xml:"system-out"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

func readJUnit(t *testing.T, path string) junitDoc {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var doc junitDoc
	require.NoError(t, xml.Unmarshal(b, &doc), "the JUnit report is not XML:\n%s", b)
	require.Len(t, doc.Suites, 1)
	return doc
}

func readJSONReport(t *testing.T, b []byte) sim.JSONReport {
	t.Helper()
	var rep sim.JSONReport
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&rep), "the JSON report does not decode:\n%s", b)
	return rep
}

// sweep runs the scenario file as the command does, for the ground truth.
func sweep(t *testing.T, path, protocol string, seeds []uint64) *sim.Summary {
	t.Helper()
	sc, err := sim.LoadScenario(path)
	require.NoError(t, err)
	sum, err := sim.Sweep(sc, sim.SweepOptions{Seeds: seeds, Protocol: protocol, ScenarioPath: path})
	require.NoError(t, err)
	return sum
}

func runCmd(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// A negative control that is caught passes in JUnit, and every seed that caught it
// is listed, with its invariants and replay command, in both reports.
func TestSimReportsListNegativeControlsCaughtSeeds(t *testing.T) {
	const file = "../../scenarios/negative-S4-naive-at-most-once.json"
	dir := t.TempDir()
	junitPath, jsonPath := filepath.Join(dir, "sim.xml"), filepath.Join(dir, "sim.json")
	code, stdout, stderr := runCmd("sim", "--seeds", "1-4", "--junit", junitPath, "--json", jsonPath, file)
	require.Equal(t, exitOK, code, "%s\n%s", stdout, stderr)

	truth := sweep(t, file, "", sim.SeedRange(1, 4))
	require.NotEmpty(t, truth.Caught, "the negative control caught nothing: the test proves nothing")

	doc := readJUnit(t, junitPath)
	require.Equal(t, 1, doc.Tests)
	require.Zero(t, doc.Failures, "a caught negative control is a passing test case")
	c := doc.Suites[0].Cases[0]
	require.Equal(t, "negative-S4-naive-at-most-once seeds 1-4", c.Name)
	require.Empty(t, c.Failures)
	for _, r := range truth.Caught {
		require.Contains(t, c.SystemOut, fmt.Sprintf("seed %d (protocol naive): ", r.Seed), "seed %d caught S4 but the JUnit report omits it", r.Seed)
		require.Contains(t, c.SystemOut, "replay: "+r.Command)
	}

	b, err := os.ReadFile(jsonPath)
	require.NoError(t, err)
	rep := readJSONReport(t, b)
	require.True(t, rep.Met)
	require.Len(t, rep.Scenarios, 1)
	s := rep.Scenarios[0]
	require.Equal(t, "1-4", s.Seeds)
	require.Equal(t, 4, s.SeedsRun)
	require.Equal(t, len(truth.Caught), s.Caught)
	require.Equal(t, 4-len(truth.Failed), s.Passed)
	require.Len(t, s.Failures, len(truth.Failed), "every failing seed is listed")
	for i, r := range truth.Failed {
		f := s.Failures[i]
		require.Equal(t, r.Seed, f.Seed)
		require.Equal(t, r.Invariants(), f.Invariants)
		require.Contains(t, f.Invariants, "S4")
		require.True(t, f.Expected)
		require.Equal(t, r.Command, f.Replay)
		require.Equal(t, len(r.Violations), len(f.Violations))
		require.NotEmpty(t, f.Violations[0].Tasks)
	}
	require.Equal(t, truth.Excused, s.Excused.Duplicates)
}

// A scenario that must pass gets one failure element per failing seed, naming the
// seed, its invariants, the first violation's time and tasks, and the replay command.
func TestSimJUnitFailurePerFailingSeed(t *testing.T) {
	const file = "../../scenarios/at-most-once-faults.json"
	junitPath := filepath.Join(t.TempDir(), "sim.xml")
	code, stdout, stderr := runCmd("sim", "--seeds", "1-2", "--protocol", "naive", "--junit", junitPath, file)
	require.Equal(t, exitFailed, code, "%s\n%s", stdout, stderr)

	truth := sweep(t, file, "naive", sim.SeedRange(1, 2))
	require.NotEmpty(t, truth.Failed, "the naive protocol broke nothing: the test proves nothing")

	doc := readJUnit(t, junitPath)
	require.Equal(t, 1, doc.Failures)
	c := doc.Suites[0].Cases[0]
	require.Equal(t, "at-most-once-faults seeds "+sim.SeedRanges(truth.SeedsRun), c.Name, "the regression seeds are named too")
	require.Len(t, c.Failures, len(truth.Failed), "one failure element per failing seed")
	for i, r := range truth.Failed {
		f := c.Failures[i]
		v := r.Violations[0]
		require.Equal(t, strings.Join(r.Invariants(), ","), f.Type)
		require.Contains(t, f.Message, fmt.Sprintf("seed %d: ", r.Seed))
		require.Contains(t, f.Message, fmt.Sprintf("first %s at %s (tasks %s)", v.Invariant, v.At, strings.Join(v.Tasks, ",")))
		require.Contains(t, f.Message, "replay: "+r.Command)
		require.Contains(t, r.Command, "--protocol naive")
		require.Contains(t, f.Body, v.Detail)
	}
}

// A negative control that is not caught (here: the fixed protocol, which S4's
// control needs broken) fails with one failure saying so.
func TestSimJUnitNegativeControlNotCaught(t *testing.T) {
	junitPath := filepath.Join(t.TempDir(), "sim.xml")
	code, stdout, stderr := runCmd("sim", "--seed", "1", "--protocol", "quorum", "--junit", junitPath, "../../scenarios/negative-S4-naive-at-most-once.json")
	require.Equal(t, exitFailed, code, "%s\n%s", stdout, stderr)
	c := readJUnit(t, junitPath).Suites[0].Cases[0]
	require.Len(t, c.Failures, 1)
	require.Equal(t, "NOT caught", c.Failures[0].Type)
	require.Contains(t, c.Failures[0].Message, "no seed violated S4")
}

// --json - puts the JSON alone on stdout and the human report on stderr.
func TestSimJSONToStdout(t *testing.T) {
	code, stdout, stderr := runCmd("sim", "--seed", "2", "--json", "-", "../../scenarios/baseline.json")
	require.Equal(t, exitOK, code, stderr)
	rep := readJSONReport(t, []byte(stdout))
	require.True(t, rep.Met)
	require.Len(t, rep.Scenarios, 1)
	require.Equal(t, "baseline", rep.Scenarios[0].Scenario)
	require.Equal(t, 1, rep.Scenarios[0].Passed)
	require.Empty(t, rep.Scenarios[0].Failures)
	require.Contains(t, stderr, "baseline")
	require.Contains(t, stderr, " ok ")
}

// With --trace, the one run's reports are written too.
func TestSimReportsWithTrace(t *testing.T) {
	dir := t.TempDir()
	jsonPath := filepath.Join(dir, "r.json")
	code, stdout, stderr := runCmd("sim", "--seed", "1", "--trace", filepath.Join(dir, "t.jsonl"), "--json", jsonPath, "../../scenarios/negative-S4-naive-at-most-once.json")
	require.Equal(t, exitOK, code, "%s\n%s", stdout, stderr)
	b, err := os.ReadFile(jsonPath)
	require.NoError(t, err)
	rep := readJSONReport(t, b)
	require.Len(t, rep.Scenarios[0].Failures, 1)
	require.Equal(t, uint64(1), rep.Scenarios[0].Failures[0].Seed)
}

func TestSimReportsBadArguments(t *testing.T) {
	code, _, stderr := runCmd("sim", "--seed", "1", "--junit", "-", "../../scenarios/baseline.json")
	require.Equal(t, exitBadArgs, code)
	require.Contains(t, stderr, "--junit needs a file name")

	code, _, stderr = runCmd("sim", "--seed", "1", "--junit", filepath.Join(t.TempDir(), "no", "such", "dir.xml"), "../../scenarios/baseline.json")
	require.Equal(t, exitFailed, code)
	require.Contains(t, stderr, "miyamoto sim: --junit: ")
	require.Equal(t, 1, strings.Count(strings.TrimSpace(stderr), "\n")+1, "one line: %q", stderr)
}
