package node

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// repliesLog is a Replies that keeps every answer by its ID.
type repliesLog map[ReplyID][]Answer

func (r repliesLog) Reply(id ReplyID, a Answer) { r[id] = append(r[id], a) }

// A node with Env.Replies takes requests by the caller's IDs and answers each
// once, to its ID; it refuses reply functions, as a node without refuses IDs.
func TestRequestsByIDAreAnsweredToTheirIDs(t *testing.T) {
	got := repliesLog{}
	h := newHarnessEnv(t, 1, 1, nil, func(_ *harness, _ NodeID, env *Env) { env.Replies = got })
	n := h.node("n1")
	n.EnqueueFor(7, EnqueueRequest{URL: "http://w/", Countdown: time.Hour})
	n.EnqueueFor(8, EnqueueRequest{URL: ""})
	h.run(time.Second)
	require.Len(t, got[7], 1)
	id := got[7][0].Enqueue.ID
	require.NotEmpty(t, id)
	require.NoError(t, got[7][0].Enqueue.Err)
	require.Len(t, got[8], 1)
	require.Error(t, got[8][0].Enqueue.Err, "a request without its URL is refused")

	n.LookupFor(9, id)
	n.CancelFor(10, id)
	n.CountClusterFor(11)
	h.run(2 * time.Second)
	require.Len(t, got[9], 1)
	require.Equal(t, id, got[9][0].Status.Task.ID)
	require.Len(t, got[10], 1)
	require.Equal(t, StateCancelled, got[10][0].State)
	require.Len(t, got[11], 1)
	require.Equal(t, 1, got[11][0].Counts.Queues["default"][StateCancelled])
	require.Len(t, got, 5, "no answer to another ID: %v", got)

	require.Panics(t, func() { n.Enqueue(EnqueueRequest{URL: "http://w/"}, func(EnqueueResult) {}) })
	require.Panics(t, func() { n.EnqueueFor(0, EnqueueRequest{URL: "http://w/"}) })
	other := newHarness(t, 1, 1, nil).node("n1")
	require.Panics(t, func() { other.EnqueueFor(1, EnqueueRequest{URL: "http://w/"}) })
}
