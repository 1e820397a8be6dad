package metrics

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/node"
)

func written(m *Node) string {
	var b strings.Builder
	m.Write(&b, "n1", nil, nil, nil)
	return b.String()
}

// Lateness and duration are histograms per queue (cumulative buckets, +Inf, sum,
// count) and attempts are counted by outcome.
func TestDeliveryHistogramsAndOutcomes(t *testing.T) {
	m := &Node{}
	due := time.Unix(1000, 0)
	q := &node.Task{Queue: "emails"}
	m.DeliveryEnded(q, node.DeliveryAttempt{Start: due.Add(30 * time.Millisecond), Duration: 20 * time.Millisecond, Status: 200}, due)
	m.DeliveryEnded(q, node.DeliveryAttempt{Start: due.Add(3 * time.Second), Duration: 10 * time.Second, Error: node.ErrorTimeout}, due)
	m.DeliveryEnded(q, node.DeliveryAttempt{Start: due.Add(-time.Second), Duration: time.Millisecond, Status: 503}, due)
	m.DeliveryEnded(&node.Task{Queue: "other"}, node.DeliveryAttempt{Start: due, Error: node.ErrorRefused}, due)
	out := written(m)
	for _, want := range []string{
		"# TYPE miyamoto_delivery_lateness_seconds histogram",
		`miyamoto_delivery_lateness_seconds_bucket{node="n1",queue="emails",le="0.005"} 1`, // the early one counts as 0
		`miyamoto_delivery_lateness_seconds_bucket{node="n1",queue="emails",le="0.025"} 1`,
		`miyamoto_delivery_lateness_seconds_bucket{node="n1",queue="emails",le="0.05"} 2`,
		`miyamoto_delivery_lateness_seconds_bucket{node="n1",queue="emails",le="2.5"} 2`,
		`miyamoto_delivery_lateness_seconds_bucket{node="n1",queue="emails",le="5"} 3`,
		`miyamoto_delivery_lateness_seconds_bucket{node="n1",queue="emails",le="+Inf"} 3`,
		`miyamoto_delivery_lateness_seconds_sum{node="n1",queue="emails"} 3.03`,
		`miyamoto_delivery_lateness_seconds_count{node="n1",queue="emails"} 3`,
		"# TYPE miyamoto_delivery_duration_seconds histogram",
		`miyamoto_delivery_duration_seconds_bucket{node="n1",queue="emails",le="0.005"} 1`,
		`miyamoto_delivery_duration_seconds_bucket{node="n1",queue="emails",le="10"} 3`,
		`miyamoto_delivery_duration_seconds_sum{node="n1",queue="emails"} 10.021`,
		`miyamoto_delivery_duration_seconds_count{node="n1",queue="other"} 1`,
	} {
		require.Contains(t, out, want+"\n")
	}
	for _, want := range []string{
		`miyamoto_delivery_attempts_total{node="n1",queue="emails",outcome="2xx"} 1`,
		`miyamoto_delivery_attempts_total{node="n1",queue="emails",outcome="5xx"} 1`,
		`miyamoto_delivery_attempts_total{node="n1",queue="emails",outcome="timeout"} 1`,
		`miyamoto_delivery_attempts_total{node="n1",queue="other",outcome="refused"} 1`,
	} {
		require.Contains(t, out, want+"\n")
	}
	require.NotContains(t, out, `queue="emails",outcome="4xx"`, "outcomes never seen are left out")
	require.Less(t, strings.Index(out, `queue="emails"`), strings.Index(out, `queue="other"`), "queues in name order")
}

// Past MaxQueueLabels queues, the rest share one label: a client that makes up
// queue names cannot blow up the scrape.
func TestQueueLabelsAreCapped(t *testing.T) {
	m := &Node{}
	for i := range MaxQueueLabels + 50 {
		m.DeliveryEnded(&node.Task{Queue: fmt.Sprintf("q%03d", i)}, node.DeliveryAttempt{Status: 200}, time.Time{})
	}
	out := written(m)
	require.Equal(t, MaxQueueLabels+1, strings.Count(out, "miyamoto_delivery_duration_seconds_count{"), "MaxQueueLabels queues, then OtherQueue")
	require.Contains(t, out, `miyamoto_delivery_attempts_total{node="n1",queue="_other",outcome="2xx"} 50`+"\n")
	require.Contains(t, out, `queue="q000"`)
	require.NotContains(t, out, fmt.Sprintf(`queue="q%03d"`, MaxQueueLabels))
}

// Every outcome has a name of its own, and an attempt's status or error finds it.
func TestOutcomeOf(t *testing.T) {
	cases := map[string]node.DeliveryAttempt{
		"2xx": {Status: 204}, "3xx": {Status: 302}, "4xx": {Status: 429}, "5xx": {Status: 599},
		"1xx_or_other_status": {Status: 100}, "timeout": {Error: node.ErrorTimeout}, "refused": {Error: node.ErrorRefused},
		"dns": {Error: node.ErrorDNS}, "tls": {Error: node.ErrorTLS}, "policy": {Error: node.ErrorPolicy},
		"reset": {Error: node.ErrorReset}, "other_error": {Error: node.ErrorOther},
	}
	require.Len(t, cases, len(outcomes))
	for want, a := range cases {
		require.Equal(t, want, outcomes[outcomeOf(a)])
	}
}
