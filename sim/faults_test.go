package sim

import (
	"bufio"
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// traceLines runs sc with seed 1 and returns its trace's events (not the header).
func traceLines(t *testing.T, sc *Scenario) []map[string]any {
	t.Helper()
	var buf bytes.Buffer
	_, err := Run(sc, 1, Options{Trace: &buf})
	require.NoError(t, err)
	var out []map[string]any
	lines := bufio.NewScanner(&buf)
	lines.Buffer(nil, 1<<20)
	for first := true; lines.Scan(); first = false {
		if first {
			continue
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal(lines.Bytes(), &m))
		out = append(out, m)
	}
	return out
}

// clocks.offsets fixes a node's clock offset (and only its): the trace's clock line
// says so, and the nodes it does not name keep exact clocks.
func TestFixedClockOffsets(t *testing.T) {
	sc := mustParse(t, patched(t, func(m map[string]any) {
		m["clocks"] = map[string]any{"offsets": map[string]any{"n2": "300ms", "n3": "-1.5s"}}
		obj(m, "cluster")["max_clock_drift"] = "2s"
		obj(m, "cluster")["lease"] = "10s"
	}))
	require.Equal(t, Duration(1500e6), sc.Clocks.maxOffset())
	offsets := map[string]float64{}
	for _, l := range traceLines(t, sc) {
		if l["kind"] == "clock" {
			offsets[l["node"].(string)] = l["offset"].(float64)
		}
	}
	require.Equal(t, map[string]float64{"n2": 300e6, "n3": -1500e6}, offsets)
}

// A oneway fault that names two nodes cuts one link, one way: every message from
// the first to the second is dropped by the partition, and none other is.
func TestOnewayLink(t *testing.T) {
	sc := mustParse(t, patched(t, func(m map[string]any) {
		f := firstFault(m)
		f["kind"], f["nodes"], f["at"], f["duration"] = "oneway", []any{"n1", "n2"}, "0s", "5s"
	}))
	partitioned, n2ToN1 := 0, 0
	for _, l := range traceLines(t, sc) {
		if l["kind"] == "drop" && l["why"] == "partition" {
			partitioned++
			require.Equal(t, "n1", l["from"], "%v", l)
			require.Equal(t, "n2", l["node"], "%v", l)
		}
		if l["kind"] == "recv" && l["from"] == "n2" && l["node"] == "n1" {
			n2ToN1++
		}
	}
	require.Positive(t, partitioned, "n1's messages to n2 were dropped")
	require.Positive(t, n2ToN1, "n2's messages to n1 arrived")
}

// A delay fault holds back every message sent to its node while it lasts by its
// value, and no other node's: n1 hears nothing for the 2 s after it starts (past
// one latency), then hears what was sent from its start on, while the others go on
// hearing each other.
func TestDelayFaultHoldsMessagesToItsNode(t *testing.T) {
	sc := mustParse(t, patched(t, func(m map[string]any) {
		f := firstFault(m)
		f["kind"], f["nodes"], f["at"], f["duration"], f["value"] = "delay", []any{"n1"}, "1s", "0s", 2 // until the liveness phase (5 s)
	}))
	var n1Early, n1Late, others int
	for _, l := range traceLines(t, sc) {
		if l["kind"] != "recv" {
			continue
		}
		at := time.Duration(l["t"].(float64))
		switch {
		case l["node"] == "n1" && at > time.Second+5*time.Millisecond && at < 3*time.Second:
			n1Early++
		case l["node"] == "n1" && at >= 3*time.Second && at < 4*time.Second:
			n1Late++
		case l["node"] != "n1" && at > time.Second && at < 3*time.Second:
			others++
		}
	}
	require.Zero(t, n1Early, "what was sent to n1 while the fault lasted is 2 s late")
	require.Positive(t, n1Late, "and arrives then")
	require.Positive(t, others, "the others' messages are not held")
}

// A fault aimed at a moment (on: roster_committed) strikes the node that reached it
// inside that input: the leader that commits a roster is cut off before the roster
// messages that tell the members reach anyone, and a fault whose moment never comes
// is not applied.
func TestFaultAimedAtRosterCommit(t *testing.T) {
	sc, err := LoadScenario("../scenarios/leader-cut-at-commit.json")
	require.NoError(t, err)
	sc.Faults.Schedule = sc.Faults.Schedule[:2] // the first join and the first cut
	var cutAt float64
	var cut string
	rosterDropped := 0
	for _, l := range traceLines(t, sc) {
		switch {
		case l["kind"] == "fault" && l["fault"] == "isolate_leader":
			require.Zero(t, cutAt, "the fault is applied once")
			cutAt, cut = l["t"].(float64), l["detail"].(string)
		case l["kind"] == "drop" && l["msg"] == "roster" && l["why"] == "partition" && l["t"] == cutAt:
			require.Equal(t, cut, l["from"])
			rosterDropped++
		}
	}
	require.NotZero(t, cutAt, "the leader committed a roster, so the fault was applied")
	require.Equal(t, 4, rosterDropped, "the commit's roster message to each other member of five is cut")

	sc.Faults.Schedule = sc.Faults.Schedule[1:2] // no join: no leader, no commit
	for _, l := range traceLines(t, sc) {
		require.NotEqual(t, "isolate_leader", l["fault"], "no roster was committed, so nothing is cut")
	}
}

// A silent partition (network.partition "hold") loses nothing on a link whose two
// ends stay up: every message it blocked arrives, late, after it heals, in the order
// held; a message held for a node that crashed meanwhile is lost with its connection.
func TestSilentPartitionHoldsMessages(t *testing.T) {
	run := func(crashN2 bool) (held, arrivedLate, lost int) {
		sc := mustParse(t, patched(t, func(m map[string]any) {
			obj(m, "network")["partition"] = "hold"
			f := firstFault(m)
			f["kind"], f["nodes"], f["at"], f["duration"] = "oneway", []any{"n1", "n2"}, "0s", "3s"
			if crashN2 {
				obj(m, "faults")["schedule"] = []any{f, map[string]any{"at": "1s", "kind": "crash", "nodes": []any{"n2"}, "duration": "1s"}}
			}
		}))
		var heldAt []float64
		for _, l := range traceLines(t, sc) {
			fromN1ToN2 := l["from"] == "n1" && l["node"] == "n2"
			switch {
			case l["kind"] == "hold":
				require.True(t, fromN1ToN2, "only the cut link holds: %v", l)
				require.Less(t, l["t"].(float64), 3e9)
				heldAt = append(heldAt, l["t"].(float64))
			case l["kind"] == "drop" && l["why"] == "partition":
				require.True(t, fromN1ToN2, "%v", l)
				require.GreaterOrEqual(t, l["t"].(float64), 3e9, "held messages are lost at the heal, not before")
				lost++
			case l["kind"] == "recv" && fromN1ToN2 && l["t"].(float64) >= 3e9 && l["t"].(float64) < 3e9+float64(time.Second):
				arrivedLate++
			}
		}
		return len(heldAt), arrivedLate, lost
	}
	held, late, lost := run(false)
	require.Positive(t, held)
	require.Zero(t, lost, "both ends stayed up: nothing held is lost")
	require.GreaterOrEqual(t, late, held, "every held message arrives after the heal")

	held, _, lost = run(true)
	require.Positive(t, lost, "n2 restarted: what was held for its old process is lost")
	require.Less(t, lost, held+1)
}

// A stop is the daemon's SIGTERM: the node drains, its webhooks in flight run for
// the shutdown timeout and are then cut (the node takes them as failed calls), and
// the process ends and starts again once down, the fault's end having come first.
func TestStopDrainsCutsAndRestarts(t *testing.T) {
	sc := mustParse(t, patched(t, func(m map[string]any) {
		f := firstFault(m)
		f["kind"], f["at"], f["duration"] = "stop_holder", "1500ms", "2s"
		delete(f, "nodes")
		obj(m, "workers")["latency"] = map[string]any{"min": "20s", "max": "20s"}
		obj(m, "workload")["queues"] = []any{map[string]any{"name": "default", "dispatch_deadline": "25s"}}
		m["liveness_bound"] = "5m"
	}))
	var stopAt, stoppedAt, restartAt float64
	var who string
	failedAt := map[float64]int{} // a claimed task of the stopping node back to scheduled
	for _, l := range traceLines(t, sc) {
		at, _ := l["t"].(float64)
		switch {
		case l["kind"] == "stop":
			who, stopAt = l["node"].(string), at
		case who != "" && l["node"] == who && l["kind"] == "stopped":
			stoppedAt = at
		case who != "" && l["node"] == who && l["kind"] == "restart" && restartAt == 0:
			restartAt = at
		case who != "" && l["node"] == who && l["kind"] == "state" && l["from"] == "claimed" && l["to"] == "scheduled":
			failedAt[at]++
		}
	}
	cut := failedAt[stoppedAt]
	require.NotEmpty(t, who, "no stop in the trace")
	require.InDelta(t, stopAt+float64(stopTimeout), stoppedAt, float64(2*stopPoll), "the stop waited for its deliveries, then cut them at the shutdown timeout")
	require.Positive(t, cut, "the node took the cut deliveries' results")
	require.Equal(t, stoppedAt, restartAt, "the fault ended first: the node restarts once down")
}
