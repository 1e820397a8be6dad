package main

// miyamoto timeline's page in a real headless browser, opened from a file: the
// lanes, a negative control's violations (listed and drawn), the task filter, zoom,
// and a 60 s swarm trace that stays light.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/sim/timeline"
)

// makeTimeline runs a seed of a scenario file with --trace, draws the trace with
// miyamoto timeline, and returns the page's path and what the page was given.
func makeTimeline(t *testing.T, dir, file string, seed uint64) (string, *timeline.Data) {
	t.Helper()
	tr := filepath.Join(dir, strings.TrimSuffix(file, ".json")+".jsonl")
	html := filepath.Join(dir, strings.TrimSuffix(file, ".json")+".html")
	code, stdout, stderr := runCmd("sim", "--seed", fmt.Sprint(seed), "--trace", tr, "../../scenarios/"+file)
	require.Equal(t, exitOK, code, "%s\n%s", stdout, stderr)
	code, stdout, stderr = runCmd("timeline", tr, "-o", html)
	require.Equal(t, exitOK, code, stderr)
	require.Contains(t, stdout, "written to "+html)
	f, err := os.Open(tr)
	require.NoError(t, err)
	defer f.Close()
	d, err := timeline.Parse(f)
	require.NoError(t, err)
	return html, d
}

// openTimeline loads the page from its file and waits for it to draw.
func openTimeline(pg page, path string) {
	pg.t.Helper()
	pg.do("opening "+path, chromedp.Navigate("file://"+path))
	deadline := time.Now().Add(15 * time.Second)
	for !eval[bool](pg, `typeof window.timeline === "object"`) {
		require.True(pg.t, time.Now().Before(deadline), "the page never set window.timeline: %s", pg.text("body"))
		time.Sleep(50 * time.Millisecond)
	}
}

// canvasPixel is the colour the canvas shows at page coordinates (px, py).
func canvasPixel(pg page, px, py string) []int {
	return eval[[]int](pg, fmt.Sprintf(`(() => {
		const c = document.getElementById("canvas"), r = window.devicePixelRatio || 1;
		return Array.from(c.getContext("2d").getImageData(Math.round((%s) * r), Math.round((%s) * r), 1, 1).data);
	})()`, px, py))
}

func TestTimelineInBrowser(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("browser test: skipped with -short")
	}
	browser := requireBrowser(t)
	dir := t.TempDir()
	negPath, neg := makeTimeline(t, dir, "negative-S4-naive-at-most-once.json", 1)
	swarmPath, swarm := makeTimeline(t, dir, "swarm.json", 3)
	require.NotEmpty(t, neg.Violations, "the negative control must fail for this test to mean anything")
	require.Empty(t, swarm.Violations)
	pg, thrown := openBrowser(t, browser)
	lanes := []string{"cluster", "n1", "n2", "n3", "n4", "n5"}

	t.Run("negative control", func(t *testing.T) {
		pg := page{t: t, ctx: pg.ctx}
		openTimeline(pg, negPath)
		require.Equal(t, lanes, eval[[]string](pg, `window.timeline.lanes`))
		require.Contains(t, pg.text("h1"), "negative-S4-naive-at-most-once, seed 1")

		// Every violation is listed, with its invariant and task.
		require.Equal(t, len(neg.Violations), eval[int](pg, `document.querySelectorAll("#violations li").length`))
		require.Equal(t, fmt.Sprint(len(neg.Violations)), pg.text("#violation-count"))
		var s4 timeline.Violation
		for _, v := range neg.Violations {
			if v.Invariant == "S4" {
				s4 = v
				break
			}
		}
		require.Equal(t, "S4", s4.Invariant, "the trace has no S4 violation")
		task := neg.Tasks[s4.Task]
		listed := eval[string](pg, `Array.from(document.querySelectorAll("#violations li")).map(li => li.textContent).join("\n")`)
		require.Contains(t, listed, "S4 at ")
		require.Contains(t, listed, "task "+task)
		require.Equal(t, len(neg.Violations), eval[int](pg, `window.timeline.drawn.violations`), "every violation drawn")

		// It is drawn: the canvas is red where the S4 line crosses the cluster lane.
		at := fmt.Sprintf(`window.timeline.x(%d)`, s4.T)
		rgba := canvasPixel(pg, at, `window.timeline.laneY(0) + 30`)
		require.True(t, rgba[0] > 180 && rgba[1] < 120 && rgba[2] < 120, "no red violation line at the S4's time: pixel %v", rgba)
		// ... and flagged on the lanes of the nodes involved (the two that delivered).
		require.Len(t, s4.Nodes, 2)
		for _, nd := range s4.Nodes {
			rgba := canvasPixel(pg, at+" + 3", fmt.Sprintf(`window.timeline.laneY(%d) + 3`, nd+1))
			require.True(t, rgba[0] > 180 && rgba[1] < 120 && rgba[2] < 120, "no red flag on n%d's lane: pixel %v", nd+1, rgba)
		}
		require.Contains(t, listed, " on "+neg.Nodes[s4.Nodes[0]].ID+", "+neg.Nodes[s4.Nodes[1]].ID+": ")

		// The filter keeps that task's deliveries (two, by two nodes) and its violations.
		wantViolations := 0
		for _, v := range neg.Violations {
			if v.Task == s4.Task {
				wantViolations++
			}
		}
		pg.do("typing a task ID", chromedp.SendKeys(chromedp.CSS("#filter"), task))
		require.Equal(t, 2, eval[int](pg, `window.timeline.drawn.deliveries`))
		require.Equal(t, wantViolations, eval[int](pg, `window.timeline.drawn.violations`))
		require.Positive(t, eval[int](pg, `window.timeline.drawn.marks`))
		require.Equal(t, len(neg.Violations)-wantViolations, eval[int](pg, `document.querySelectorAll("#violations li.dim").length`))

		// A click on the violation zooms to its task; + halves the view; "whole run" undoes it.
		span := func() float64 { return eval[float64](pg, `(v => v.t1 - v.t0)(window.timeline.view())`) }
		whole := span()
		pg.click(fmt.Sprintf(`#violations li[data-task="%d"]`, s4.Task))
		fitted := span()
		require.Less(t, fitted, whole/2, "clicking a violation zooms to its task")
		pg.click("#zoom-in")
		require.InDelta(t, fitted/2, span(), fitted/100)
		pg.click("#filter-clear")
		require.InDelta(t, whole, span(), 1)
		require.Equal(t, len(neg.Deliveries), eval[int](pg, `window.timeline.drawn.deliveries`))
		pg.screenshot(dir, "timeline-negative.png")
	})

	t.Run("swarm", func(t *testing.T) {
		pg := page{t: t, ctx: pg.ctx}
		openTimeline(pg, swarmPath)
		require.Equal(t, lanes, eval[[]string](pg, `window.timeline.lanes`))
		require.Equal(t, "no invariant was violated", pg.text("#violations li"))
		require.Equal(t, len(swarm.Deliveries), eval[int](pg, `window.timeline.drawn.deliveries`))
		require.Equal(t, len(swarm.Marks), eval[int](pg, `window.timeline.drawn.marks`))
		require.Positive(t, eval[int](pg, `window.timeline.drawn.spans`), "crashes and partitions are shaded")
		// Drawn on a canvas: thousands of marks, a few dozen elements.
		require.Less(t, eval[int](pg, `document.getElementsByTagName("*").length`), 200)
		// The wheel zooms in around the mouse; a redraw of the whole run stays quick.
		before := eval[float64](pg, `(v => v.t1 - v.t0)(window.timeline.view())`)
		eval[bool](pg, `(() => { const c = document.getElementById("canvas"), r = c.getBoundingClientRect();
			c.dispatchEvent(new WheelEvent("wheel", {deltaY: -400, clientX: r.left + r.width / 2, clientY: r.top + 80, bubbles: true, cancelable: true})); return true; })()`)
		after := eval[float64](pg, `(v => v.t1 - v.t0)(window.timeline.view())`)
		require.Less(t, after, before/2, "the wheel did not zoom in")
		ms := eval[float64](pg, `(() => { const t0 = performance.now(); for (let i = 0; i < 5; i++) window.timeline.setView(0, 1e12); return (performance.now() - t0) / 5; })()`)
		t.Logf("drawing the whole swarm run: %.1f ms", ms)
		require.Less(t, ms, 500.0, "drawing the whole swarm run takes %.0f ms", ms)
		pg.screenshot(dir, "timeline-swarm.png")
	})

	// Skewed clocks head their lanes.
	t.Run("clocks", func(t *testing.T) {
		pg := page{t: t, ctx: pg.ctx}
		clockPath, clock := makeTimeline(t, dir, "clock-drift.json", 1)
		openTimeline(pg, clockPath)
		clocks := eval[[]string](pg, `window.timeline.clocks`)
		require.Len(t, clocks, len(clock.Nodes)+1)
		require.Empty(t, clocks[0], "the cluster lane has no clock")
		for i, n := range clock.Nodes {
			want := fmt.Sprintf("clock %+.1f ms, ", float64(n.Offset)/1e6)
			require.True(t, strings.HasPrefix(clocks[i+1], want), "lane %s shows %q, want it to start %q", n.ID, clocks[i+1], want)
			require.Contains(t, clocks[i+1], " ppm")
		}
	})
	require.Empty(t, thrown(), "the page threw")
}

// Bad input: one line saying what to fix, exit 2 (1 when the page cannot be written).
func TestTimelineBadArguments(t *testing.T) {
	dir := t.TempDir()
	notTrace := filepath.Join(dir, "scenario.json")
	require.NoError(t, os.WriteFile(notTrace, []byte(`{"name": "x"}`+"\n"), 0o644))
	tr := filepath.Join(dir, "t.jsonl")
	code, _, stderr := runCmd("sim", "--seed", "1", "--trace", tr, "../../scenarios/baseline.json")
	require.Equal(t, exitOK, code, stderr)

	for _, c := range []struct {
		args []string
		code int
		says string
	}{
		{nil, exitBadArgs, "give exactly one trace file"},
		{[]string{tr, tr}, exitBadArgs, "give exactly one trace file"},
		{[]string{filepath.Join(dir, "missing.jsonl")}, exitBadArgs, "no such file"},
		{[]string{notTrace}, exitBadArgs, "line 1 is not a trace header"},
		{[]string{tr, "--width", "3"}, exitBadArgs, "flag provided but not defined: -width"},
		{[]string{tr, "-o", filepath.Join(dir, "no", "such", "dir.html")}, exitFailed, "miyamoto timeline: -o: "},
	} {
		code, stdout, stderr := runCmd(append([]string{"timeline"}, c.args...)...)
		require.Equal(t, c.code, code, "%v: %s %s", c.args, stdout, stderr)
		require.Contains(t, stderr, c.says, "%v", c.args)
		require.True(t, strings.HasPrefix(stderr, "miyamoto timeline: "), stderr)
		require.Equal(t, 1, strings.Count(stderr, "\n"), "one line: %q", stderr)
	}

	// Without -o the page goes beside the trace; with -o - to stdout, alone.
	code, stdout, stderr := runCmd("timeline", tr)
	require.Equal(t, exitOK, code, stderr)
	require.Contains(t, stdout, "written to "+strings.TrimSuffix(tr, ".jsonl")+".html")
	_, err := os.Stat(strings.TrimSuffix(tr, ".jsonl") + ".html")
	require.NoError(t, err)
	code, stdout, stderr = runCmd("timeline", "-o", "-", tr)
	require.Equal(t, exitOK, code, stderr)
	require.True(t, strings.HasPrefix(stdout, "<!doctype html>"), stdout[:min(len(stdout), 100)])
	require.True(t, strings.HasSuffix(stdout, "</html>\n"))
	require.Contains(t, stderr, "written to -")
}
