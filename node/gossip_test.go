package node

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// manyQueues is n queue settings, q00000 ... .
func manyQueues(n int) map[string]QueueConfig {
	qs := map[string]QueueConfig{}
	cfg := DefaultQueueConfig()
	for i := range n {
		qs[fmt.Sprintf("q%05d", i)] = cfg
	}
	return qs
}

// gossipLoad counts the gossip messages (digests, settings, schedules and their
// answers) sent in the harness's log, and the most any node sent one member within
// one SyncInterval.
func gossipLoad(h *harness, interval time.Duration) (total, peakPerPeer int) {
	perWindow := map[[3]string]int{}
	for _, s := range h.sent {
		switch s.Msg.Type {
		case MsgGossip, MsgGossipResp, MsgQueueSet, MsgQueueSetResp, MsgScheduleSet, MsgScheduleSetResp:
		default:
			continue
		}
		total++
		k := [3]string{string(s.Msg.From), string(s.Msg.To), fmt.Sprint(s.At / interval)}
		perWindow[k]++
		peakPerPeer = max(peakPerPeer, perWindow[k])
	}
	return total, peakPerPeer
}

// With 20,000 settings every member agrees on, gossip costs one digest per node per
// SyncInterval, not a message per setting (which overflowed the peer queues: 4096
// messages each, in net/peer).
func TestGossipOfAgreeingMembersIsADigest(t *testing.T) {
	h := newHarness(t, 3, 11, nil)
	h.setQueues(manyQueues(20_000))
	h.sent = nil
	h.run(h.elapsed() + 20*time.Second)
	total, peak := gossipLoad(h, 2*time.Second)
	t.Logf("20 s of gossip with 20,000 settings: %d messages, at most %d from a node to a member in 2 s", total, peak)
	require.LessOrEqual(t, total, 3*10+3, "a digest per node per 2 s")
	require.LessOrEqual(t, peak, 2)
}

// A member that missed 2,000 changes gets them all from gossip, a chunk at a time:
// no node ever sends one member more than a peer queue holds.
func TestGossipRepairsAMemberThatMissedChanges(t *testing.T) {
	h := newHarness(t, 3, 12, nil)
	h.setQueues(manyQueues(20_000))
	h.isolate("n3")
	cfg := DefaultQueueConfig()
	cfg.MaxConcurrent = 7
	for i := range 2000 {
		h.node("n1").SetQueue(fmt.Sprintf("q%05d", i*10), cfg, FieldMaxConcurrent, false, func(QueueSetting, error) {})
	}
	h.run(h.elapsed() + 6*time.Second)
	h.heal()
	h.sent = nil
	h.run(h.elapsed() + 150*time.Second)
	for i := range 2000 {
		s, ok := h.node("n3").QueueSetting(fmt.Sprintf("q%05d", i*10))
		require.True(t, ok && s.Config.MaxConcurrent == 7, "n3 did not learn q%05d: %+v", i*10, s)
	}
	s1, c1 := h.node("n1").digest()
	s3, c3 := h.node("n3").digest()
	require.Equal(t, [2]any{s1, c1}, [2]any{s3, c3}, "the digests should agree once repaired")
	total, peak := gossipLoad(h, 2*time.Second)
	t.Logf("repair: %d gossip messages, at most %d from a node to a member in 2 s", total, peak)
	require.LessOrEqual(t, peak, 4*gossipChunk+4, "two chunks and the answers to two per 2 s")
	require.Less(t, peak, 4096, "a peer queue holds 4096 messages")
}
