package sim

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/node"
)

// validScenario is a small scenario that ParseScenario accepts; the error table
// breaks it one field at a time.
const validScenario = `{
  "name": "valid",
  "cluster": {"nodes": 3, "replicas": 3, "replica_offset": "1s"},
  "network": {"latency": {"min": "1ms", "max": "5ms"}},
  "workload": {"tasks": 10, "rate": 10, "countdown": {"min": "0s", "max": "2s"}},
  "workers": {"latency": {"min": "5ms", "max": "20ms"}},
  "faults": {"schedule": [{"at": "1s", "kind": "isolate", "nodes": ["n1"], "duration": "2s"}]},
  "duration": "5s",
  "liveness_bound": "1m",
  "expect": {"outcome": "pass"}
}`

// mustParse parses a scenario written in a test.
func mustParse(t testing.TB, js string) *Scenario {
	t.Helper()
	sc, err := ParseScenario([]byte(js))
	require.NoError(t, err)
	return sc
}

// patched returns validScenario with change applied to its decoded form.
func patched(t *testing.T, change func(m map[string]any)) string {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(validScenario), &m))
	change(m)
	b, err := json.Marshal(m)
	require.NoError(t, err)
	return string(b)
}

func obj(m map[string]any, key string) map[string]any { return m[key].(map[string]any) }

func firstFault(m map[string]any) map[string]any {
	return obj(m, "faults")["schedule"].([]any)[0].(map[string]any)
}

func TestParseScenarioValid(t *testing.T) {
	sc := mustParse(t, validScenario)
	require.Equal(t, "quorum", sc.Cluster.Protocol)
	require.Equal(t, "memory", sc.Cluster.Storage)
	require.Equal(t, "30s", sc.Cluster.Lease.D().String())
	require.Equal(t, "1s", sc.Cluster.MaxClockDrift.D().String())
	require.Equal(t, "200ms", sc.Network.ReorderDelay.D().String())
	require.Equal(t, []QueueSpec{{Name: "default", Weight: 1}}, sc.Workload.Queues)
	require.Equal(t, Range{Duration(5e9), Duration(20e9)}, sc.Workers.SlowLatency)
}

func TestParseScenarioErrors(t *testing.T) {
	cases := []struct {
		name string
		json string
		want string // the error must contain this (the field at fault)
	}{
		{"unknown top-level field", patched(t, func(m map[string]any) { m["colour"] = "red" }), `unknown field "colour"`},
		{"unknown nested field", patched(t, func(m map[string]any) { obj(m, "cluster")["zones"] = 2 }), `unknown field "zones"`},
		{"unknown field in a queue", patched(t, func(m map[string]any) {
			obj(m, "workload")["queues"] = []any{map[string]any{"name": "q", "priority": 1}}
		}), `unknown field "priority"`},
		{"negative rate", patched(t, func(m map[string]any) { obj(m, "workload")["rate"] = -1 }), "workload.rate"},
		{"replicas above nodes", patched(t, func(m map[string]any) { obj(m, "cluster")["replicas"] = 4 }), "cluster.replicas"},
		{"probability above 1", patched(t, func(m map[string]any) { obj(m, "network")["drop"] = 1.5 }), "network.drop"},
		{"worker probability above 1", patched(t, func(m map[string]any) { obj(m, "workers")["slow"] = 2 }), "workers.slow"},
		{"fault value above 1", patched(t, func(m map[string]any) {
			f := firstFault(m)
			f["kind"], f["value"] = "drop", 1.01
			delete(f, "nodes")
		}), "faults.schedule[0].value"},
		{"bad duration string", patched(t, func(m map[string]any) { obj(m, "cluster")["replica_offset"] = "2 seconds" }), "cluster.replica_offset"},
		{"bad top-level duration", patched(t, func(m map[string]any) { m["duration"] = "forever" }), `"duration"`},
		{"duration as a number", patched(t, func(m map[string]any) { m["liveness_bound"] = 60 }), "liveness_bound"},
		{"bad nested duration", patched(t, func(m map[string]any) { obj(obj(m, "workload"), "countdown")["max"] = "1x" }), "workload.countdown.max"},
		{"unknown fault kind", patched(t, func(m map[string]any) { firstFault(m)["kind"] = "meteor" }), "faults.schedule[0].kind"},
		{"clock is swarm only", patched(t, func(m map[string]any) { firstFault(m)["kind"] = "clock" }), "faults.schedule[0].kind"},
		{"unknown swarm kind", patched(t, func(m map[string]any) {
			obj(m, "faults")["swarm"] = map[string]any{"kinds": []any{"crash", "meteor"}, "rate": 1, "max_duration": "1s"}
		}), "faults.swarm.kinds"},
		{"fault after the safety phase", patched(t, func(m map[string]any) { firstFault(m)["at"] = "6s" }), "faults.schedule[0].at"},
		{"unknown moment", patched(t, func(m map[string]any) { firstFault(m)["on"] = "lunch" }), "faults.schedule[0].on"},
		{"moment with a kind it does not take", patched(t, func(m map[string]any) {
			f := firstFault(m)
			f["kind"], f["on"] = "crash", "roster_committed"
		}), "faults.schedule[0].on"},
		{"fault before time 0", patched(t, func(m map[string]any) { firstFault(m)["at"] = "-1s" }), "faults.schedule[0].at"},
		{"violation without invariants", patched(t, func(m map[string]any) { m["expect"] = map[string]any{"outcome": "violation"} }), "expect.invariants"},
		{"unknown invariant", patched(t, func(m map[string]any) {
			m["expect"] = map[string]any{"outcome": "violation", "invariants": []any{"S9"}}
		}), "expect.invariants"},
		{"unknown outcome", patched(t, func(m map[string]any) { m["expect"] = map[string]any{"outcome": "maybe"} }), "expect.outcome"},
		{"unknown node", patched(t, func(m map[string]any) { firstFault(m)["nodes"] = []any{"n4"} }), "faults.schedule[0].nodes"},
		{"node named by index", patched(t, func(m map[string]any) { firstFault(m)["nodes"] = []any{"0"} }), "faults.schedule[0].nodes"},
		{"max_down a majority", patched(t, func(m map[string]any) {
			obj(m, "faults")["swarm"] = map[string]any{"kinds": []any{"crash"}, "rate": 1, "max_duration": "1s", "max_down": 3}
		}), "faults.swarm.max_down"},
		{"trailing data", validScenario + ` {}`, "trailing data"},
		{"trailing garbage", validScenario + `x`, "trailing data"},
		{"wrong JSON type", patched(t, func(m map[string]any) { obj(m, "cluster")["nodes"] = "three" }), "cluster.nodes"},
		{"wrong JSON type in a list", patched(t, func(m map[string]any) { firstFault(m)["nodes"] = "n1" }), "faults.schedule.nodes"},
		{"unknown unsafe switch", patched(t, func(m map[string]any) {
			obj(m, "cluster")["unsafe"] = []any{"skip_everything"}
			m["expect"] = map[string]any{"outcome": "violation", "invariants": []any{"S1"}}
		}), `cluster.unsafe: unknown switch "skip_everything"`},
		{"unsafe in a passing scenario", patched(t, func(m map[string]any) { obj(m, "cluster")["unsafe"] = []any{"ignore_pause"} }),
			"cluster.unsafe: deliberate slips are for negative controls only"},
		{"unsafe with the default outcome", patched(t, func(m map[string]any) {
			obj(m, "cluster")["unsafe"] = []any{"ignore_pause"}
			delete(m, "expect")
		}), "cluster.unsafe: deliberate slips are for negative controls only"},
		{"torn_writes above 1", patched(t, func(m map[string]any) { m["disk"] = map[string]any{"torn_writes": 1.5} }), "disk.torn_writes"},
		{"segment too small", patched(t, func(m map[string]any) { m["disk"] = map[string]any{"segment_size": 100} }), "disk.segment_size"},
		{"negative compaction interval", patched(t, func(m map[string]any) { m["disk"] = map[string]any{"compact_every": "-1s"} }), "disk.compact_every"},
		{"sync latency max below min", patched(t, func(m map[string]any) {
			m["disk"] = map[string]any{"sync_latency": map[string]any{"min": "5ms", "max": "1ms"}}
		}), "disk.sync_latency"},
		{"unknown disk field", patched(t, func(m map[string]any) { m["disk"] = map[string]any{"iops": 100} }), `unknown field "iops"`},
		{"disk fault without durable storage", patched(t, func(m map[string]any) { firstFault(m)["kind"] = "disk_full" }),
			"faults.schedule[0].kind: disk_full needs cluster.storage durable"},
		{"corrupt without durable storage", patched(t, func(m map[string]any) { firstFault(m)["kind"] = "corrupt" }),
			"faults.schedule[0].kind: corrupt needs cluster.storage durable"},
		{"swarm disk fault without durable storage", patched(t, func(m map[string]any) {
			obj(m, "faults")["swarm"] = map[string]any{"kinds": []any{"fsync_error"}, "rate": 1, "max_duration": "1s"}
		}), "faults.swarm.kinds: fsync_error needs cluster.storage durable"},
		{"disk_slow without a value", patched(t, func(m map[string]any) {
			obj(m, "cluster")["storage"] = "durable"
			firstFault(m)["kind"] = "disk_slow"
		}), "faults.schedule[0].value: disk_slow"},
		{"negative dedup window", patched(t, func(m map[string]any) { obj(m, "cluster")["dedup_window"] = "-1s" }), "cluster.dedup_window"},
		{"cancel_task of an unknown queue", patched(t, func(m map[string]any) {
			f := firstFault(m)
			f["kind"], f["queue"] = "cancel_task", "nope"
		}), "faults.schedule[0].queue"},
		{"purge_queue without a queue", patched(t, func(m map[string]any) { firstFault(m)["kind"] = "purge_queue" }), "faults.schedule[0].queue"},
		{"management request in a swarm", patched(t, func(m map[string]any) {
			obj(m, "faults")["swarm"] = map[string]any{"kinds": []any{"requeue_task"}, "rate": 1, "max_duration": "1s"}
		}), "faults.swarm.kinds"},
		{"clock offset of an unknown node", patched(t, func(m map[string]any) { m["clocks"] = map[string]any{"offsets": map[string]any{"n9": "1s"}} }),
			`clocks.offsets: no node "n9"`},
		{"clock offset beyond the cap", patched(t, func(m map[string]any) { m["clocks"] = map[string]any{"offsets": map[string]any{"n2": "-200h"}} }),
			"clocks.offsets.n2: must be within"},
		{"clock offset as a number", patched(t, func(m map[string]any) { m["clocks"] = map[string]any{"offsets": map[string]any{"n2": 5}} }),
			"clocks.offsets"},
		{"oneway link to itself", patched(t, func(m map[string]any) {
			f := firstFault(m)
			f["kind"], f["nodes"] = "oneway", []any{"n1", "n1"}
		}), "faults.schedule[0].nodes: oneway takes one node"},
		{"oneway of three nodes", patched(t, func(m map[string]any) {
			f := firstFault(m)
			f["kind"], f["nodes"] = "oneway", []any{"n1", "n2", "n3"}
		}), "faults.schedule[0].nodes: oneway takes one node"},
		{"bridge of two nodes", patched(t, func(m map[string]any) {
			f := firstFault(m)
			f["kind"], f["nodes"] = "bridge", []any{"n1", "n2"}
		}), "faults.schedule[0].nodes: bridge takes one node"},
		{"bad queue retry", patched(t, func(m map[string]any) {
			obj(m, "workload")["queues"] = []any{map[string]any{"name": "q", "retry": map[string]any{"min_backoff": "-1s"}}}
		}), "workload.queues[0]: retry.min_backoff"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var err error
			require.NotPanics(t, func() { _, err = ParseScenario([]byte(c.json)) })
			require.Error(t, err)
			require.Contains(t, err.Error(), c.want)
			require.NotContains(t, err.Error(), "\n", "errors are one line")
		})
	}
}

// A negative control may switch on every slip node.Unsafe has, and each reaches the
// nodes' configuration; each switch names an invariant the checker knows.
func TestUnsafeSwitches(t *testing.T) {
	js := patched(t, func(m map[string]any) {
		var names []any
		for _, nm := range UnsafeNames() {
			names = append(names, nm)
		}
		obj(m, "cluster")["unsafe"] = names
		m["expect"] = map[string]any{"outcome": "violation", "invariants": []any{"S1"}}
	})
	sc := mustParse(t, js)
	u := unsafeConfig(sc.Cluster.Unsafe)
	v := reflect.ValueOf(u)
	require.Equal(t, v.NumField(), len(UnsafeSwitches), "every field of node.Unsafe has a name in UnsafeSwitches")
	for i := range v.NumField() {
		require.True(t, v.Field(i).Bool(), "node.Unsafe.%s is not set by any switch", v.Type().Field(i).Name)
	}
	for nm, sw := range UnsafeSwitches {
		require.True(t, knownInvariant(sw.Invariant), "switch %s breaks unknown invariant %s", nm, sw.Invariant)
	}
	require.Equal(t, node.Unsafe{}, unsafeConfig(mustParse(t, validScenario).Cluster.Unsafe), "no switch: the protocol")
}

// Several problems come back at once, on one line.
func TestParseScenarioReportsEveryProblem(t *testing.T) {
	js := patched(t, func(m map[string]any) {
		obj(m, "workload")["rate"] = 0
		obj(m, "network")["duplicate"] = -0.5
		m["name"] = ""
	})
	_, err := ParseScenario([]byte(js))
	require.Error(t, err)
	for _, f := range []string{"name", "workload.rate", "network.duplicate"} {
		require.Contains(t, err.Error(), f)
	}
	require.NotContains(t, err.Error(), "\n")
}

// Every scenario file in the repository parses, and a parsed scenario survives the
// trip through a trace header (Marshal, then Unmarshal, fillDefaults, Validate).
func TestScenarioFilesParse(t *testing.T) {
	files, err := filepath.Glob("../scenarios/*.json")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		sc, err := LoadScenario(f)
		require.NoError(t, err, f)
		require.Equal(t, strings.TrimSuffix(filepath.Base(f), ".json"), sc.Name, "a scenario's name is its file name")
		requireRoundTrip(t, sc)
	}
}

func requireRoundTrip(t testing.TB, sc *Scenario) {
	t.Helper()
	b, err := json.Marshal(sc)
	require.NoError(t, err)
	again, err := ParseScenario(b)
	require.NoError(t, err, "re-parsing %s", b)
	b2, err := json.Marshal(again)
	require.NoError(t, err)
	require.JSONEq(t, string(b), string(b2)) // nil and empty lists marshal alike
}

func FuzzParseScenario(f *testing.F) {
	files, err := filepath.Glob("../scenarios/*.json")
	require.NoError(f, err)
	for _, file := range files {
		b, err := os.ReadFile(file)
		require.NoError(f, err)
		f.Add(b)
	}
	f.Add([]byte(validScenario))
	f.Add([]byte(`{"name":"x"} {}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		sc, err := ParseScenario(b)
		if err != nil {
			require.NotContains(t, err.Error(), "\n", "errors are one line")
			return
		}
		requireRoundTrip(t, sc)
	})
}

// A schedule's problems name its field; its defaults are filled.
func TestParseScenarioSchedules(t *testing.T) {
	withSchedule := func(s map[string]any) string {
		return patched(t, func(m map[string]any) { obj(m, "workload")["schedules"] = []any{s} })
	}
	sc := mustParse(t, withSchedule(map[string]any{"name": "beat", "cron": "* * * * * *"}))
	sp := sc.Workload.Schedules[0]
	require.Equal(t, "default", sp.Queue)
	require.Equal(t, sc.Duration+Duration(time.Minute), sp.Until)
	for _, c := range []struct {
		s    map[string]any
		want string
	}{
		{map[string]any{"name": "b b", "cron": "@hourly"}, "workload.schedules[0].name"},
		{map[string]any{"name": "b", "cron": "61 * * * * *"}, "workload.schedules[0].cron"},
		{map[string]any{"name": "b", "cron": "@hourly", "time_zone": "Nowhere/Land"}, "workload.schedules[0].time_zone"},
		{map[string]any{"name": "b", "cron": "@hourly", "missed": "all"}, "workload.schedules[0].missed"},
		{map[string]any{"name": "b", "cron": "@hourly", "queue": "other"}, "workload.schedules[0].queue"},
		{map[string]any{"name": "b", "cron": "@hourly", "from": "6s"}, "workload.schedules[0].from"},
		{map[string]any{"name": "b", "cron": "@hourly", "until": "2m"}, "workload.schedules[0].until"},
	} {
		_, err := ParseScenario([]byte(withSchedule(c.s)))
		require.ErrorContains(t, err, c.want, "%v", c.s)
	}
}
