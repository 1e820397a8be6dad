package timeline

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/sim"
)

// trace runs a scenario file's seed and returns its trace and result.
func trace(t *testing.T, file string, seed uint64) ([]byte, *sim.Result) {
	t.Helper()
	sc, err := sim.LoadScenario("../../scenarios/" + file)
	require.NoError(t, err)
	var buf bytes.Buffer
	res, err := sim.Run(sc, seed, sim.Options{Trace: &buf})
	require.NoError(t, err)
	return buf.Bytes(), res
}

// The negative control's trace: every violation the checker counted, every delivery
// the worker saw, and the split of n1 and n2 as spans on their lanes.
func TestParseNegativeControl(t *testing.T) {
	tr, res := trace(t, "negative-S4-naive-at-most-once.json", 1)
	require.True(t, res.Failed(), "the negative control must fail for this test to mean anything")
	d, err := Parse(bytes.NewReader(tr))
	require.NoError(t, err)

	require.Equal(t, "negative-S4-naive-at-most-once", d.Scenario)
	require.Equal(t, uint64(1), d.Seed)
	require.Equal(t, "naive", d.Protocol)
	require.Len(t, d.Nodes, 5)
	require.Equal(t, "n1", d.Nodes[0].ID)
	require.LessOrEqual(t, d.End, int64(res.SimTime), "the last event is within the run")
	require.Greater(t, d.End, int64(15*time.Second), "the liveness phase is in the trace")

	total := 0
	for _, n := range res.ViolationCounts {
		total += n
	}
	require.Len(t, d.Violations, total, "every violation")
	first := res.Violations[0]
	require.Equal(t, first.Invariant, d.Violations[0].Invariant)
	require.Equal(t, int64(first.At), d.Violations[0].T)
	require.Equal(t, first.Tasks[0], d.Tasks[d.Violations[0].Task])

	require.Len(t, d.Deliveries, res.Deliveries)
	for _, dl := range d.Deliveries {
		require.GreaterOrEqual(t, dl[1], dl[0], "a delivery ends after it starts: %v", dl)
	}
	// The S4 task was delivered twice, by two nodes.
	var by []int64
	for _, dl := range d.Deliveries {
		if dl[3] == int64(d.Violations[0].Task) {
			by = append(by, dl[2])
		}
	}
	require.Len(t, by, 2)
	require.NotEqual(t, by[0], by[1])

	var split []Span
	for _, s := range d.Spans {
		if s.Kind == "split" {
			split = append(split, s)
		}
	}
	require.Len(t, split, 2, "one span on each lane the split cut off")
	for i, s := range split {
		require.Equal(t, i, s.Node)
		require.Equal(t, int64(2*time.Second), s.Start)
		require.Equal(t, int64(12*time.Second), s.End)
		require.Equal(t, "split n1,n2", s.Label)
	}
	require.Positive(t, d.Liveness)
	require.NotEmpty(t, d.Marks)
}

// A violation with several tasks and nodes keeps them all.
func TestParseViolationTasksAndNodes(t *testing.T) {
	tr, res := trace(t, "negative-SC1-tick-task-per-node.json", 1)
	d, err := Parse(bytes.NewReader(tr))
	require.NoError(t, err)
	want := res.Violations[0]
	require.Greater(t, len(want.Tasks), 1, "SC1's violation names two tasks")
	got := d.Violations[0]
	require.Len(t, got.Tasks, len(want.Tasks))
	for i, ti := range got.Tasks {
		require.Equal(t, want.Tasks[i], d.Tasks[ti])
	}
	require.Len(t, got.Nodes, len(want.Nodes))
	for i, ni := range got.Nodes {
		require.Equal(t, string(want.Nodes[i]), d.Nodes[ni].ID)
	}
}

// A swarm trace: crashes become down spans ended by the restart, and deliveries
// a crash cut short end at the crash.
func TestParseSwarmCrashes(t *testing.T) {
	tr, _ := trace(t, "swarm.json", 3)
	d, err := Parse(bytes.NewReader(tr))
	require.NoError(t, err)
	var crashes, restarts int
	for _, l := range strings.Split(string(tr), "\n") {
		crashes += strings.Count(l, `"kind":"crash"`)
		restarts += strings.Count(l, `"kind":"restart"`)
	}
	require.Positive(t, crashes, "seed 3 of the swarm crashes nodes; pick another seed if it no longer does")
	var down []Span
	for _, s := range d.Spans {
		if s.Kind == "crash" {
			down = append(down, s)
			require.Less(t, s.Start, s.End)
		}
	}
	require.Len(t, down, crashes)
	for _, dl := range d.Deliveries {
		if dl[5] == -1 {
			found := false
			for _, s := range down {
				found = found || (int64(s.Node) == dl[2] && s.Start == dl[1])
			}
			require.True(t, found, "a delivery cut short by a crash ends at that crash: %v", dl)
		}
	}
}

// Skewed clocks reach the lanes.
func TestParseClocks(t *testing.T) {
	tr, _ := trace(t, "clock-drift.json", 1)
	d, err := Parse(bytes.NewReader(tr))
	require.NoError(t, err)
	skewed := 0
	for _, n := range d.Nodes {
		if n.Offset != 0 || n.Drift != 0 {
			skewed++
		}
	}
	require.Equal(t, len(d.Nodes), skewed, "every node of clock-drift has its own clock: %+v", d.Nodes)
}

func TestParseRefusesWhatIsNotATrace(t *testing.T) {
	_, err := Parse(strings.NewReader(""))
	require.ErrorContains(t, err, "empty trace")
	_, err = Parse(strings.NewReader(`{"t":1,"kind":"crash"}` + "\n"))
	require.ErrorContains(t, err, "line 1 is not a trace header")
	tr, _ := trace(t, "baseline.json", 1)
	first, _, _ := bytes.Cut(tr, []byte("\n"))
	_, err = Parse(bytes.NewReader(append(append(first, '\n'), "{not json\n"...)))
	require.ErrorContains(t, err, "line 2: ")
}

// The page is one file: the data inline (a script cannot be ended by it), and
// nothing loaded from anywhere.
func TestWriteSelfContained(t *testing.T) {
	tr, _ := trace(t, "negative-S4-naive-at-most-once.json", 1)
	d, err := Parse(bytes.NewReader(tr))
	require.NoError(t, err)
	d.Description = "</script><script>alert(1)</script>" // must stay data
	var page bytes.Buffer
	require.NoError(t, Write(&page, d))
	html := page.String()
	require.NotContains(t, html, dataMarker)
	require.Equal(t, 1, strings.Count(html, "</script>"), "the data closed the script")
	for _, ref := range []string{"src=", "href=", "http://", "https://", "@import", "url("} {
		require.NotContains(t, html, ref, "the page must load nothing")
	}
	_, data, ok := strings.Cut(html, "const DATA = ")
	require.True(t, ok)
	data, _, _ = strings.Cut(data, ";\n")
	var back Data
	require.NoError(t, json.Unmarshal([]byte(data), &back))
	require.Equal(t, len(d.Deliveries), len(back.Deliveries))
	require.Equal(t, d.Description, back.Description)
}
