package node

import (
	"slices"
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

// A replica holding unknown under a list a move replaced (it was down during the
// move) learns the list in force from its old list's answers, asks that list's
// replicas (its Outcome still under the old list, which they do not adopt), and
// takes what the delivery did from them (seed 56 of settings-flip-replacements:
// L3, a member holding unknown beside the list in force's succeeded, for good).
func TestUnknownUnderAReplacedListAsksTheListInForce(t *testing.T) {
	h := newHarness(t, 5, 13, nil)
	r := h.enqueue("n1", req(time.Hour))
	h.run(h.elapsed() + time.Second)
	id := acked(t, r)
	self := h.replicas(id)[2]
	n := h.node(self)
	e := n.tasks[id]
	require.NotNil(t, e)
	require.Len(t, e.task.Replicas, 3)
	n.adoptFinal(e, StateUnknown, nil)
	h.run(h.elapsed() + 100*time.Millisecond)
	oldVersion, oldList := e.task.ListVersion, slices.Clone(e.task.Replicas)
	newer := *e.task
	newer.ListVersion++
	newer.Replicas = []NodeID{self}
	for _, m := range h.order {
		if !slices.Contains(oldList, m) {
			newer.Replicas = append(newer.Replicas, m) // the two members outside the old list
		}
	}
	sent := len(h.sent)
	n.Step(Message{Type: MsgOutcomeResp, From: oldList[0], To: self, TaskID: id, Task: &newer, State: StateScheduled})
	h.run(h.elapsed() + 10*time.Millisecond)
	asked := map[NodeID]bool{}
	for _, s := range h.sent[sent:] {
		if s.Msg.Type == MsgOutcome && s.Msg.TaskID == id && s.Msg.From == self && !slices.Contains(oldList, s.Msg.To) {
			asked[s.Msg.To] = true
			require.Equal(t, oldVersion, s.Msg.Task.ListVersion, "asked under the list the list in force replaced")
		}
	}
	require.Equal(t, map[NodeID]bool{newer.Replicas[1]: true, newer.Replicas[2]: true}, asked)
	n.Step(Message{Type: MsgOutcomeResp, From: newer.Replicas[1], To: self, TaskID: id, Task: &newer, State: StateSucceeded})
	h.run(h.elapsed() + 10*time.Millisecond)
	st, ok := n.Task(id)
	require.True(t, ok)
	require.Equal(t, StateSucceeded, st.State)
	require.Equal(t, newer.ListVersion, st.Task.ListVersion)
}
