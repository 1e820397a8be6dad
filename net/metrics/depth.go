package metrics

import (
	"fmt"
	"io"
	"sort"

	"github.com/miyamotohq/miyamoto/node"
)

// WriteDepth writes miyamoto_queue_tasks: the tasks this node holds, by queue and
// state, from the node's counters (node.Node.Counts; no listing). Each node reports
// what it holds, so a task is counted once per replica: sum by queue and divide by
// the replication factor, or use GET /v1/queues for cluster-wide counts. The first
// MaxQueueLabels queue names in order get their own label; the rest are summed under
// OtherQueue, so that a scrape stays bounded.
func WriteDepth(w io.Writer, self string, counts map[string]map[node.TaskState]int) {
	names := make([]string, 0, len(counts))
	for q := range counts {
		names = append(names, q)
	}
	sort.Strings(names)
	byLabel := map[string]map[node.TaskState]int{}
	var labels []string
	for i, q := range names {
		label := q
		if i >= MaxQueueLabels {
			label = OtherQueue
		}
		if byLabel[label] == nil {
			byLabel[label] = map[node.TaskState]int{}
			labels = append(labels, label)
		}
		for st, n := range counts[q] {
			byLabel[label][st] += n
		}
	}
	fmt.Fprintf(w, "# HELP miyamoto_queue_tasks Tasks this node holds, by queue and state (a replica of each).\n# TYPE miyamoto_queue_tasks gauge\n")
	for _, label := range labels {
		for st := node.StateScheduled; st <= node.StateCancelled; st++ {
			fmt.Fprintf(w, "miyamoto_queue_tasks{node=%q,queue=%q,state=%q} %d\n", self, label, st.String(), byLabel[label][st])
		}
	}
}
