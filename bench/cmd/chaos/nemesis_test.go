package main

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func testSchedule(seed uint64, nodes int, d time.Duration) ScheduleConfig {
	return ScheduleConfig{Seed: seed, Nodes: nodes, Duration: d, Lease: 3 * time.Second, Kinds: AllKinds}
}

// everyKind is every fault the nemesis knows, the opt-in ones too.
var everyKind = append(slices.Clone(AllKinds), OptInKinds...)

// The same config gives the same schedule; another seed another one.
func TestScheduleDeterministic(t *testing.T) {
	a := Schedule(testSchedule(42, 5, 5*time.Minute))
	b := Schedule(testSchedule(42, 5, 5*time.Minute))
	require.Equal(t, a, b)
	require.NotEqual(t, a, Schedule(testSchedule(43, 5, 5*time.Minute)))
}

// Seed 1's schedule, as the README's CI run draws it: a change to how schedules
// are drawn shows here, since it changes what every printed seed replays.
func TestScheduleGolden(t *testing.T) {
	var b strings.Builder
	for _, f := range Schedule(testSchedule(1, 3, time.Minute)) {
		b.WriteString(f.String() + "\n")
	}
	require.Equal(t, `    5.0s  bridge     {n3} | {n2} bridged by n1 (refuse) for 5.2s
   14.1s  power-loss every node for 3.6s
   22.4s  isolate    n3 (blackhole) for 5.3s
   32.7s  one-way    n3 → others cut (its messages reach nobody) (blackhole) for 6.9s
   44.0s  pause      n1 for 4.6s
   52.0s  kill       n3 for 1.2s
   56.0s  split      {n2} | {n1 n3} (blackhole) for 3.8s
`, b.String())
}

// Faults follow one another, all healed before the load ends; each kind appears
// once before any repeats; every fault has the shape its kind says.
func TestScheduleShape(t *testing.T) {
	for seed := uint64(1); seed <= 50; seed++ {
		for _, nodes := range []int{3, 4, 5, 7} {
			c := testSchedule(seed, nodes, 5*time.Minute)
			c.Kinds = everyKind
			faults := Schedule(c)
			require.Greater(t, len(faults), len(everyKind), "seed %d", seed)
			seen := map[FaultKind]bool{}
			members := map[int]bool{}
			for i := range nodes {
				members[i] = true
			}
			next := nodes
			for i, f := range faults {
				if i < len(everyKind) {
					require.False(t, seen[f.Kind], "seed %d: %s twice before every kind ran", seed, f.Kind)
				}
				seen[f.Kind] = true
				require.GreaterOrEqual(t, f.At, warmup)
				require.LessOrEqual(t, f.At+f.For, c.Duration)
				if i > 0 {
					prev := faults[i-1]
					require.GreaterOrEqual(t, f.At, prev.At+prev.For+minGap, "seed %d: faults overlap", seed)
				}
				checkFaultShape(t, f, members, c.Lease)
				if f.Kind == KindReplace {
					require.Equal(t, next, f.Joiner, "seed %d: a replace's new node is the next index", seed)
					delete(members, f.Nodes[0])
					members[f.Joiner] = true
					next++
				}
			}
		}
	}
}

// checkFaultShape checks f against the members of the moment: it touches only
// them, and has the shape its kind says.
func checkFaultShape(t *testing.T, f Fault, members map[int]bool, lease time.Duration) {
	t.Helper()
	nodes := len(members)
	for _, l := range f.Cuts {
		require.NotEqual(t, l.From, l.To)
		require.True(t, members[l.From] && members[l.To], "%v cuts a node that is not a member (%v)", l, members)
	}
	for _, n := range f.Nodes {
		require.True(t, members[n], "%s hits %s, not a member (%v)", f, nodeName(n), members)
	}
	touched := map[int]bool{}
	for _, l := range f.Cuts {
		touched[l.From], touched[l.To] = true, true
	}
	switch f.Kind {
	case KindKill:
		require.Len(t, f.Nodes, 1)
	case KindPause:
		require.Len(t, f.Nodes, 1)
		require.Greater(t, f.For, lease, "a pause outlasts the lease")
	case KindPowerLoss:
		require.Len(t, f.Nodes, nodes)
		require.IsIncreasing(t, f.Nodes)
	case KindReplace:
		require.Len(t, f.Nodes, 1)
		require.True(t, members[f.Via] && f.Via != f.Nodes[0], "%s joins through a live member", f)
		require.False(t, members[f.Joiner], "%s: the new node is new", f)
	case KindIsolate:
		require.Len(t, f.Cuts, 2*(nodes-1))
	case KindSplit:
		minority := max(1, (nodes-1)/2)
		require.Len(t, f.Cuts, 2*minority*(nodes-minority))
	case KindOneWay:
		require.Len(t, f.Cuts, nodes-1)
		for _, l := range f.Cuts[1:] {
			require.True(t, l.From == f.Cuts[0].From || l.To == f.Cuts[0].To, "one node's links, one way: %v", f.Cuts)
		}
	case KindBridge:
		require.Len(t, touched, nodes-1, "the bridge keeps every link: %v", f.Cuts)
	}
	if f.Kind.isProcess() {
		require.Empty(t, f.Cuts)
	} else {
		require.Empty(t, f.Nodes)
		require.GreaterOrEqual(t, f.For, minCut)
	}
}

func TestScheduleKinds(t *testing.T) {
	require.Empty(t, Schedule(ScheduleConfig{Seed: 1, Nodes: 3, Duration: time.Minute, Lease: time.Second}), "no kinds, no faults")
	only := Schedule(ScheduleConfig{Seed: 1, Nodes: 3, Duration: time.Minute, Lease: time.Second, Kinds: []FaultKind{KindPause}})
	require.NotEmpty(t, only)
	for _, f := range only {
		require.Equal(t, KindPause, f.Kind)
	}
}

// A schedule of replaces only: each kills a member of the moment and starts the
// next node, joining through another member, so the cluster keeps its size; the
// same faults in a schedule without replaces keep drawing the first nodes.
func TestScheduleReplaces(t *testing.T) {
	faults := Schedule(ScheduleConfig{Seed: 3, Nodes: 3, Duration: 2 * time.Minute, Lease: 3 * time.Second, Kinds: []FaultKind{KindReplace}})
	require.GreaterOrEqual(t, len(faults), 3)
	members := map[int]bool{0: true, 1: true, 2: true}
	for i, f := range faults {
		require.Equal(t, KindReplace, f.Kind)
		require.Equal(t, 3+i, f.Joiner)
		require.True(t, members[f.Nodes[0]], "%s kills a member", f)
		require.True(t, members[f.Via] && f.Via != f.Nodes[0], "%s joins through another member", f)
		delete(members, f.Nodes[0])
		members[f.Joiner] = true
		require.Len(t, members, 3)
	}
	for _, f := range Schedule(ScheduleConfig{Seed: 3, Nodes: 3, Duration: 2 * time.Minute, Lease: 3 * time.Second, Kinds: []FaultKind{KindKill, KindIsolate}}) {
		for _, n := range f.Nodes {
			require.Less(t, n, 3, "%s", f)
		}
	}
}

// A settings flip sets the capped queue's cap to 1 or 3 through a member; it is
// drawn only when named (not part of all).
func TestScheduleSettings(t *testing.T) {
	faults := Schedule(ScheduleConfig{Seed: 2, Nodes: 3, Duration: 2 * time.Minute, Lease: 3 * time.Second, Kinds: []FaultKind{KindSettings, KindReplace}})
	caps := map[int]int{}
	for _, f := range faults {
		if f.Kind == KindSettings {
			caps[f.Cap]++
			require.Empty(t, f.Nodes)
			require.Empty(t, f.Cuts)
			require.GreaterOrEqual(t, f.For, minCut)
			require.Contains(t, f.String(), "chaos-capped max_concurrent")
		}
	}
	require.Positive(t, caps[1]+caps[3])
	require.Equal(t, caps[1]+caps[3], len(faults)-len(slices.DeleteFunc(slices.Clone(faults), func(f Fault) bool { return f.Kind == KindSettings })))
	require.NotContains(t, AllKinds, KindSettings)
	require.NotContains(t, AllKinds, KindReplace)
	k, err := ParseKinds("settings,kill")
	require.NoError(t, err)
	require.Equal(t, []FaultKind{KindSettings, KindKill}, k)
	k, err = ParseKinds("all,replace,kill")
	require.NoError(t, err)
	require.Equal(t, append(slices.Clone(AllKinds), KindReplace), k, "all within a list is every kind of all, in order")
}

func TestParseKinds(t *testing.T) {
	k, err := ParseKinds("all")
	require.NoError(t, err)
	require.Equal(t, AllKinds, k)
	k, err = ParseKinds("none")
	require.NoError(t, err)
	require.Empty(t, k)
	k, err = ParseKinds("kill, pause,kill")
	require.NoError(t, err)
	require.Equal(t, []FaultKind{KindKill, KindPause}, k)
	_, err = ParseKinds("kill,meteor")
	require.ErrorContains(t, err, `"meteor" is not a fault`)
}
