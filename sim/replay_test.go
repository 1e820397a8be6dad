package sim

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// swarmScenario: 3 nodes, R 3, 50 tasks, a swarm of faults.
func swarmScenario(t testing.TB, regression string) *Scenario {
	t.Helper()
	return mustParse(t, `{
  "name": "test-swarm",
  "cluster": {"nodes": 3, "replicas": 3, "replica_offset": "1s"},
  "network": {"latency": {"min": "1ms", "max": "10ms"}},
  "clocks": {"max_offset": "100ms", "max_drift": 0.001},
  "workload": {"tasks": 50, "rate": 10, "countdown": {"min": "0s", "max": "5s"},
    "queues": [{"name": "default", "weight": 3}, {"name": "once", "delivery": "at-most-once"}]},
  "workers": {"server_error": 0.1, "never": 0.02, "latency": {"min": "5ms", "max": "200ms"}},
  "faults": {"swarm": {"kinds": ["crash", "crash_holder", "pause", "isolate", "split", "oneway", "bridge", "drop", "duplicate", "reorder", "clock"], "rate": 1, "max_duration": "5s"}},
  "duration": "15s",
  "liveness_bound": "3m"`+regression+`
}`)
}

func TestDeterminism(t *testing.T) {
	sc := swarmScenario(t, "")
	a, err := Run(sc, 7, Options{Hash: true})
	require.NoError(t, err)
	b, err := Run(sc, 7, Options{Hash: true})
	require.NoError(t, err)
	require.Len(t, a.TraceHash, 64)
	require.Equal(t, a.TraceHash, b.TraceHash, "D1: same seed, same trace")
	require.Equal(t, a.Events, b.Events)
	require.Equal(t, a.Swarm, b.Swarm)
	require.NotEmpty(t, a.Swarm, "a swarm enables at least one kind")

	c, err := Run(sc, 8, Options{Hash: true})
	require.NoError(t, err)
	require.NotEqual(t, a.TraceHash, c.TraceHash, "another seed, another trace")

	// Writing the trace does not change it.
	var buf bytes.Buffer
	d, err := Run(sc, 7, Options{Trace: &buf})
	require.NoError(t, err)
	require.Equal(t, a.TraceHash, d.TraceHash)

	// Without Trace or Hash there is no hash.
	e, err := Run(sc, 7, Options{})
	require.NoError(t, err)
	require.Empty(t, e.TraceHash)
	require.Equal(t, a.Events, e.Events)
}

func traceOf(t *testing.T, sc *Scenario, seed uint64) []byte {
	t.Helper()
	var buf bytes.Buffer
	_, err := Run(sc, seed, Options{Trace: &buf})
	require.NoError(t, err)
	return buf.Bytes()
}

func TestReplayReproduces(t *testing.T) {
	sc := swarmScenario(t, "")
	trace := traceOf(t, sc, 3)
	lines := bytes.Count(trace, []byte("\n"))
	require.Greater(t, lines, 100)
	require.True(t, strings.HasPrefix(string(trace), `{"type":"header","seed":3,`))

	rr, err := Replay(bytes.NewReader(trace))
	require.NoError(t, err)
	require.True(t, rr.Reproduced, "diverged at line %d:\nwant %s\ngot  %s", rr.DivergedAt, rr.Want, rr.Got)
	require.Equal(t, lines, rr.Lines)
	require.Zero(t, rr.DivergedAt)
	require.Equal(t, uint64(3), rr.Header.Seed)
	require.Equal(t, "quorum", rr.Header.Protocol)
	require.Equal(t, sc.Name, rr.Header.Scenario.Name)
	require.NotNil(t, rr.Result)
}

func TestReplayDetectsTampering(t *testing.T) {
	trace := traceOf(t, swarmScenario(t, ""), 3)
	lines := strings.Split(strings.TrimSuffix(string(trace), "\n"), "\n")
	n := len(lines) / 2 // 0-based index of the line to tamper with
	const prefix = `{"t":`
	require.True(t, strings.HasPrefix(lines[n], prefix), lines[n])
	digit := lines[n][len(prefix)]
	other := byte('1')
	if digit == '1' {
		other = '2'
	}
	lines[n] = prefix + string(other) + lines[n][len(prefix)+1:]
	tampered := strings.Join(lines, "\n") + "\n"

	rr, err := Replay(strings.NewReader(tampered))
	require.NoError(t, err)
	require.False(t, rr.Reproduced)
	require.Equal(t, n+1, rr.DivergedAt, "line numbers are 1-based")
	require.Equal(t, lines[n], rr.Want)
	require.NotEqual(t, rr.Want, rr.Got)
}

func TestReplayDetectsTruncation(t *testing.T) {
	trace := traceOf(t, swarmScenario(t, ""), 3)
	lines := strings.Split(strings.TrimSuffix(string(trace), "\n"), "\n")
	short := strings.Join(lines[:len(lines)-1], "\n") + "\n"
	rr, err := Replay(strings.NewReader(short))
	require.NoError(t, err)
	require.False(t, rr.Reproduced, "the replay has a line the recording lacks")
	require.Equal(t, len(lines), rr.DivergedAt)

	long := string(trace) + lines[len(lines)-1] + "\n"
	rr, err = Replay(strings.NewReader(long))
	require.NoError(t, err)
	require.False(t, rr.Reproduced, "the recording has a line the replay lacks")
	require.Equal(t, len(lines)+1, rr.DivergedAt)
}

func TestReplayRejectsNonTrace(t *testing.T) {
	trace := traceOf(t, swarmScenario(t, ""), 3)
	_, after, _ := strings.Cut(string(trace), "\n")
	for name, in := range map[string]string{
		"header missing":   after,
		"empty":            "",
		"not JSON":         "hello\n",
		"header of a kind": `{"type":"event","seed":1,"scenario":{}}` + "\n",
		"no scenario":      `{"type":"header","seed":1}` + "\n",
		"bad scenario":     `{"type":"header","seed":1,"scenario":{"name":"x"}}` + "\n",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Replay(strings.NewReader(in))
			require.Error(t, err)
		})
	}
}

func TestSweepDeterministic(t *testing.T) {
	sc := swarmScenario(t, "")
	s, err := Sweep(sc, SweepOptions{Seeds: SeedRange(1, 3), CheckDeterminism: true, Parallel: 3})
	require.NoError(t, err)
	require.Equal(t, 3, s.Seeds)
	require.Empty(t, s.Nondeterministic)
	require.Positive(t, s.Events)
	require.True(t, s.Met(), "failed seeds: %d", len(s.Failed))
}

func TestSweepRunsRegressionSeeds(t *testing.T) {
	sc := swarmScenario(t, `, "regression_seeds": [2, 40]`)
	seeds := []uint64{1, 2}
	s, err := Sweep(sc, SweepOptions{Seeds: seeds, Parallel: 2})
	require.NoError(t, err)
	require.Equal(t, 3, s.Seeds, "seeds 1, 2 and regression seed 40; 2 only once")
	require.Equal(t, []uint64{1, 2}, seeds, "the caller's slice is left alone")

	one, err := Run(sc, 40, Options{})
	require.NoError(t, err)
	serial, err := Sweep(sc, SweepOptions{Seeds: []uint64{1, 2}, Parallel: 1})
	require.NoError(t, err)
	require.Equal(t, s.Events, serial.Events, "the sweep is the same however it is scheduled")
	plain := *sc
	plain.RegressionSeeds = nil
	base, err := Sweep(&plain, SweepOptions{Seeds: []uint64{1, 2}})
	require.NoError(t, err)
	require.Equal(t, base.Events+one.Events, s.Events, "seed 40 was run")
}

// A sweep of a negative control meets its expectation only when caught.
func TestSweepMetExpectation(t *testing.T) {
	naive := splitScenario(t, "naive", 0)
	s, err := Sweep(naive, SweepOptions{Seeds: SeedRange(1, 2)})
	require.NoError(t, err)
	require.NotEmpty(t, s.Failed)
	require.False(t, s.Met(), "expects pass, but failed")

	naive.Expect = Expectation{Outcome: "violation", Invariants: []string{"S2"}}
	s, err = Sweep(naive, SweepOptions{Seeds: SeedRange(1, 2)})
	require.NoError(t, err)
	require.NotEmpty(t, s.Caught)
	require.True(t, s.Met())

	naive.Expect = Expectation{Outcome: "violation", Invariants: []string{"S5"}}
	s, err = Sweep(naive, SweepOptions{Seeds: SeedRange(1, 2)})
	require.NoError(t, err)
	require.Empty(t, s.Caught, "violations of other invariants do not count")
	require.False(t, s.Met())
}
