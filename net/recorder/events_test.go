package recorder

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A receive read on a clock behind its sender's is merged after its send, at the
// send's time, and keeps its own reading in Read and its Bound; a send that no
// recording shows received is Lost.
func TestMergeKeepsTheNodesOwnReadings(t *testing.T) {
	t0 := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	n1 := Observed{Events: []Event{
		{Node: NodeRun{ID: "n1"}, At: t0.Add(time.Second), Kind: EventSend, Key: 7},
		{Node: NodeRun{ID: "n1"}, At: t0.Add(2 * time.Second), Kind: EventSend, Key: 8},
	}}
	n1.NodeID = "n1"
	n2 := Observed{Events: []Event{
		{Node: NodeRun{ID: "n2"}, At: t0.Add(500 * time.Millisecond), Bound: t0.Add(500 * time.Millisecond), Kind: EventReceive, Key: 7}, // n2's clock is behind
	}}
	n2.NodeID = "n2"
	out := Merge([]Observed{n1, n2})
	require.Len(t, out, 3)
	require.Equal(t, EventReceive, out[1].Kind)
	require.Equal(t, 0, out[1].SendIndex)
	require.Equal(t, t0.Add(time.Second), out[1].At, "received no earlier than sent")
	require.Equal(t, t0.Add(500*time.Millisecond), out[1].Read, "as n2 read its clock")
	require.Equal(t, t0.Add(500*time.Millisecond), out[1].Bound)
	require.Equal(t, t0.Add(time.Second), out[0].Read)
	require.True(t, out[2].Lost)
	require.False(t, out[0].Lost)
}
