package node

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The compaction policy keeps every record of a task not forgotten, and of the
// records about no task only the newest setting of each queue and the newest forget
// mark, or newer ones logged after the policy was taken.
func TestCompactionPolicyKeeps(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	p := CompactionPolicy{
		forgotten: map[string]bool{"gone": true},
		settings:  map[string]uint64{"q": 5},
		mark:      t0,
	}
	setting := func(v uint64) *Record {
		return &Record{Kind: RecSetting, Setting: &QueueSetting{Queue: "q", Version: v}}
	}
	require.False(t, p.Keep(setting(4)), "an older setting is superseded")
	require.True(t, p.Keep(setting(5)), "the setting held")
	require.True(t, p.Keep(setting(6)), "a setting adopted after the policy was taken")
	require.True(t, p.Keep(&Record{Kind: RecSetting, Setting: &QueueSetting{Queue: "other", Version: 1}}))
	require.False(t, p.Keep(&Record{Kind: RecForgotten, NextETA: t0.Add(-time.Second)}))
	require.True(t, p.Keep(&Record{Kind: RecForgotten, NextETA: t0}))
	require.False(t, p.Keep(&Record{Kind: RecTask, Task: &Task{ID: "gone"}}))
	require.False(t, p.Keep(&Record{Kind: RecGrant, TaskID: "gone"}))
	require.True(t, p.Keep(&Record{Kind: RecGrant, TaskID: "kept"}))
}

// A task forgotten after its dedup window is not brought back by an Outcome: a
// straggler that asks its replicas about it hears only that they forgot it, ends
// it unknown, and tells them so; holding that unknown again, a replica would say
// "unknown" of a task that succeeded (L3 on seeds 47 and 50 of replace-by-stop).
func TestForgottenTaskIsNotBroughtBackByAnOutcome(t *testing.T) {
	h := newHarness(t, 3, 1, func(c *Config) { c.DedupWindow = 10 * time.Second })
	r := h.enqueue("n1", req(0))
	h.run(h.elapsed() + time.Second)
	id := acked(t, r)
	st, ok := h.node("n1").Task(id)
	require.True(t, ok)
	require.Equal(t, StateSucceeded, st.State)
	task := st.Task
	h.run(h.elapsed() + 30*time.Second)
	_, ok = h.node("n1").Task(id)
	require.False(t, ok, "forgotten after the dedup window")

	h.node("n1").Step(Message{Type: MsgOutcome, From: "n2", To: "n1", TaskID: id, Task: task, State: StateUnknown})
	h.run(h.elapsed() + time.Second)
	_, ok = h.node("n1").Task(id)
	require.False(t, ok, "a forgotten task came back as unknown")
}
