package node

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A replica claims ClaimAhead before a task is due and delivers at the due time,
// so that the claim's round trip is not added to the delivery's lateness; without
// it the delivery starts a round trip late. Either way no delivery starts before
// the due time. (A node alone claims from its own inbox at once: only its
// delivery's time is checked.)
func TestClaimAheadDeliversAtTheDueTime(t *testing.T) {
	for _, nodes := range []int{1, 3} {
		lateness := func(ahead time.Duration) (time.Duration, time.Duration) {
			h := newHarness(t, nodes, 1, func(c *Config) { c.ClaimAhead = ahead })
			h.latency = 10 * time.Millisecond // a round trip of 20 ms
			due := h.elapsed() + time.Second
			r := h.enqueue(h.order[0], req(time.Second))
			h.run(h.elapsed() + 500*time.Millisecond)
			acked(t, r)
			h.run(h.elapsed() + 5*time.Second)
			require.Len(t, h.deliveries, 1)
			var claimAt time.Duration = -1
			for _, sm := range h.sent {
				if sm.Msg.Type == MsgClaim && sm.Msg.TaskID == r.ID && claimAt < 0 {
					claimAt = sm.At
				}
			}
			return h.deliveries[0].At - due, due - claimAt
		}
		late, ahead := lateness(0) // the default
		require.Zero(t, late, "%d nodes: delivered at the due time", nodes)
		if nodes == 1 {
			continue // a node alone claims through its own inbox, at once: nothing to see
		}
		require.Equal(t, DefaultClaimAhead, ahead, "claimed ahead")
		late, ahead = lateness(-1)
		require.Zero(t, ahead, "without ClaimAhead the claim starts at the due time")
		require.GreaterOrEqual(t, late, 20*time.Millisecond, "without it the delivery waits for the grants")
	}
}
