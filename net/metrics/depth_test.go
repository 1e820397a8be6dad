package metrics

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/node"
)

// Depth comes from the counters as given, every state of a queue shown (zeros
// too), and queues past MaxQueueLabels are summed under OtherQueue.
func TestWriteDepth(t *testing.T) {
	counts := map[string]map[node.TaskState]int{
		"emails": {node.StateScheduled: 3, node.StateDead: 1},
	}
	for i := range MaxQueueLabels + 2 {
		counts[fmt.Sprintf("q%03d", i)] = map[node.TaskState]int{node.StateScheduled: 1}
	}
	var b strings.Builder
	WriteDepth(&b, "n1", counts)
	out := b.String()
	require.Contains(t, out, `miyamoto_queue_tasks{node="n1",queue="emails",state="scheduled"} 3`+"\n")
	require.Contains(t, out, `miyamoto_queue_tasks{node="n1",queue="emails",state="dead"} 1`+"\n")
	require.Contains(t, out, `miyamoto_queue_tasks{node="n1",queue="emails",state="succeeded"} 0`+"\n")
	// "emails" sorts first, so q000..q098 get labels and q099..q101 are "other".
	require.Contains(t, out, `miyamoto_queue_tasks{node="n1",queue="q098",state="scheduled"} 1`+"\n")
	require.NotContains(t, out, `queue="q099"`)
	require.Contains(t, out, `miyamoto_queue_tasks{node="n1",queue="_other",state="scheduled"} 3`+"\n")
}
