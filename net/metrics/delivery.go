package metrics

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miyamotohq/miyamoto/node"
)

// Per-queue delivery metrics: lateness (start − due) and duration as histograms,
// attempts by outcome. Queue names are chosen by clients (a queue is created on
// first use), so the first MaxQueueLabels queues a node delivers for get their own
// label and the rest share OtherQueue: a scrape stays bounded however many queues
// there are.

// MaxQueueLabels is how many queues get their own label in the delivery metrics.
const MaxQueueLabels = 100

// OtherQueue is the queue label of every queue past MaxQueueLabels. No queue can
// have this name (queue names start with a letter or digit).
const OtherQueue = "_other"

// Histogram buckets, in seconds. Lateness includes the replica offsets (a replica
// of rank k fires k × --replica-offset late when those before it did not) and
// waits for a rate limit, so it reaches further.
var (
	latenessBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800}
	durationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}
)

// outcomes are the values of the outcome label: an answer's status class, or why
// no answer came (node.ErrorKind's names).
var outcomes = [...]string{"2xx", "3xx", "4xx", "5xx", "1xx_or_other_status", "timeout", "refused", "dns", "tls", "policy", "reset", "other_error"}

// outcomeOf is the index in outcomes of an attempt's result.
func outcomeOf(a node.DeliveryAttempt) int {
	switch {
	case a.Status >= 200 && a.Status < 600:
		return a.Status/100 - 2
	case a.Status != 0:
		return 4
	case a.Error >= node.ErrorTimeout && a.Error <= node.ErrorReset:
		return 5 + int(a.Error-node.ErrorTimeout)
	}
	return len(outcomes) - 1
}

// histogram counts observations into fixed buckets. Counts are per bucket (not
// cumulative) until written.
type histogram struct {
	bounds  []float64
	buckets []atomic.Uint64 // len(bounds)+1: the last is above every bound
	sumNS   atomic.Int64
}

func newHistogram(bounds []float64) *histogram {
	return &histogram{bounds: bounds, buckets: make([]atomic.Uint64, len(bounds)+1)}
}

func (h *histogram) observe(d time.Duration) {
	d = max(d, 0)
	s := d.Seconds()
	i := sort.SearchFloat64s(h.bounds, s) // the first bound >= s
	h.buckets[i].Add(1)
	h.sumNS.Add(int64(d))
}

// write writes h as a Prometheus histogram named name with the labels in labels
// (already formatted, without braces).
func (h *histogram) write(w io.Writer, name, labels string) {
	var cum uint64
	for i, b := range h.bounds {
		cum += h.buckets[i].Load()
		fmt.Fprintf(w, "%s_bucket{%s,le=%q} %d\n", name, labels, strconv.FormatFloat(b, 'g', -1, 64), cum)
	}
	cum += h.buckets[len(h.bounds)].Load()
	fmt.Fprintf(w, "%s_bucket{%s,le=\"+Inf\"} %d\n", name, labels, cum)
	fmt.Fprintf(w, "%s_sum{%s} %s\n", name, labels, strconv.FormatFloat(time.Duration(h.sumNS.Load()).Seconds(), 'g', -1, 64))
	fmt.Fprintf(w, "%s_count{%s} %d\n", name, labels, cum)
}

// queueStats is one queue label's delivery metrics.
type queueStats struct {
	lateness, duration *histogram
	outcomes           [len(outcomes)]atomic.Uint64
}

// queues holds the delivery metrics by queue label.
type queues struct {
	mu     sync.RWMutex
	byName map[string]*queueStats
}

// of returns the stats of queue's label, creating them on first sight.
func (q *queues) of(queue string) *queueStats {
	q.mu.RLock()
	s := q.byName[queue]
	q.mu.RUnlock()
	if s != nil {
		return s
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.byName == nil {
		q.byName = map[string]*queueStats{}
	}
	if s = q.byName[queue]; s != nil {
		return s
	}
	if len(q.byName) >= MaxQueueLabels {
		if s = q.byName[OtherQueue]; s != nil {
			return s
		}
		queue = OtherQueue
	}
	s = &queueStats{lateness: newHistogram(latenessBuckets), duration: newHistogram(durationBuckets)}
	q.byName[queue] = s
	return s
}

// names returns the queue labels in use, sorted.
func (q *queues) names() ([]string, []*queueStats) {
	q.mu.RLock()
	defer q.mu.RUnlock()
	names := make([]string, 0, len(q.byName))
	for n := range q.byName {
		names = append(names, n)
	}
	sort.Strings(names)
	stats := make([]*queueStats, len(names))
	for i, n := range names {
		stats[i] = q.byName[n]
	}
	return names, stats
}

var _ node.DeliveryObserver = (*Node)(nil)

// DeliveryEnded implements node.DeliveryObserver: the attempt's lateness (its start
// less due, at least 0), duration and outcome, under its queue's label.
func (m *Node) DeliveryEnded(t *node.Task, a node.DeliveryAttempt, due time.Time) {
	s := m.queues.of(t.Queue)
	s.lateness.observe(a.Start.Sub(due))
	s.duration.observe(a.Duration)
	s.outcomes[outcomeOf(a)].Add(1)
}

// writeDeliveries writes the per-queue delivery metrics.
func (m *Node) writeDeliveries(w io.Writer, self string) {
	names, stats := m.queues.names()
	fmt.Fprintf(w, "# HELP miyamoto_delivery_lateness_seconds How late deliveries started: start less the due time (the task's, or its backoff's end), by queue.\n# TYPE miyamoto_delivery_lateness_seconds histogram\n")
	for i, q := range names {
		stats[i].lateness.write(w, "miyamoto_delivery_lateness_seconds", fmt.Sprintf("node=%q,queue=%q", self, q))
	}
	fmt.Fprintf(w, "# HELP miyamoto_delivery_duration_seconds How long webhook calls took, until the answer or the error, by queue.\n# TYPE miyamoto_delivery_duration_seconds histogram\n")
	for i, q := range names {
		stats[i].duration.write(w, "miyamoto_delivery_duration_seconds", fmt.Sprintf("node=%q,queue=%q", self, q))
	}
	fmt.Fprintf(w, "# HELP miyamoto_delivery_attempts_total Deliveries this node made, by queue and outcome (status class, or why no answer came).\n# TYPE miyamoto_delivery_attempts_total counter\n")
	for i, q := range names {
		for o, name := range outcomes {
			if v := stats[i].outcomes[o].Load(); v > 0 {
				fmt.Fprintf(w, "miyamoto_delivery_attempts_total{node=%q,queue=%q,outcome=%q} %d\n", self, q, name, v)
			}
		}
	}
}
