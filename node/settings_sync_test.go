package node

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A node restarted without memory counts a member as answered only when one answer
// arrived whole: an end marker of one ask ("I sent 1 setting", from before that
// member learnt a second) must not be matched with a setting of a later answer whose
// other setting was lost. Seed 309 of settings-learning-chain: the restarted node
// ended its round without the queue's setting and delivered under the defaults (Q6).
func TestSettingsSyncCountsOneAnswerWhole(t *testing.T) {
	env := &acceptorEnv{now: epoch, lossy: true, loss: epoch}
	n := bootAcceptor(t, env, 1)
	require.False(t, n.settingsKnown(), "a node that lost its memory learns the settings first")
	var round uint64
	for _, m := range env.take() {
		if m.Type == MsgQueueSync && m.To == "n1" {
			round = m.Promised
			require.Equal(t, uint64(1), m.Attempt, "the first ask")
		}
	}
	require.NotZero(t, round)
	env.now = epoch.Add(time.Minute) // past EnqueueTimeout: a majority (n1 and itself) will do

	cfg := DefaultQueueConfig()
	cfg.DispatchDeadline = 3 * time.Second
	q := &QueueSetting{Queue: "q", Config: cfg, Version: 1000, Origin: "n2"}
	held := &QueueSetting{Queue: "held", Config: DefaultQueueConfig(), Paused: true, Version: 2000, Origin: "n2"}

	// Ask 1's answer: q was lost, the marker says 1.
	step(env, n, Message{Type: MsgQueueSyncResp, From: "n1", To: "n3", Promised: round, Attempt: 1, Retries: 1})
	n.askSettings()
	env.take()
	// Ask 2's answer: n1 learnt "held" meanwhile; only "held" arrives.
	step(env, n, Message{Type: MsgQueueSyncResp, From: "n1", To: "n3", Promised: round, Attempt: 2, Setting: held})
	require.False(t, n.settingsKnown(), "one setting of ask 2 does not complete ask 1's count")

	// Ask 2's answer, whole.
	step(env, n, Message{Type: MsgQueueSyncResp, From: "n1", To: "n3", Promised: round, Attempt: 2, Setting: q})
	require.False(t, n.settingsKnown(), "no end marker of ask 2 yet")
	step(env, n, Message{Type: MsgQueueSyncResp, From: "n1", To: "n3", Promised: round, Attempt: 2, Retries: 2})
	require.True(t, n.settingsKnown())
	got, ok := n.QueueSetting("q")
	require.True(t, ok)
	require.Equal(t, 3*time.Second, got.Config.DispatchDeadline)
}
