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
