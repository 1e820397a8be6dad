// Package metrics counts what a production node does and writes it in the
// Prometheus text format for GET /metrics. Counters are atomic: they are bumped from
// the node's goroutine, the webhook workers and the HTTP handlers.
//
// The exposition is written by hand rather than with prometheus/client_golang:
// most values are read at scrape time from the transport's and the log's own
// counters, which client_golang would need a custom Collector for, and the only
// histograms (delivery lateness and duration) are fixed-bucket ones that take a
// few lines; so the module needs no dependency tree for them.
//
// It must never block the caller for long or allocate per event (a queue label's
// metrics are allocated once, on its first delivery).
package metrics

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"sync/atomic"

	"github.com/miyamotohq/miyamoto/node"
)

// Node counts task state changes and delivery outcomes.
type Node struct {
	transitions [8]atomic.Uint64 // tasks entering each node.TaskState
	deliveries  [6]atomic.Uint64 // by class: see deliveryClass
	enqueued    atomic.Uint64
	rejected    atomic.Uint64
	full        atomic.Uint64
	unauth      atomic.Uint64
	queues      queues // per-queue delivery metrics (see delivery.go)
	// refused counts peer messages the node's door refused, by node.Refusal.
	refused [16]atomic.Uint64
}

var _ node.RefusalObserver = (*Node)(nil)

// MessageRefused implements node.RefusalObserver.
func (m *Node) MessageRefused(_ node.Message, reason node.Refusal, _ string) {
	if int(reason) < len(m.refused) {
		m.refused[reason].Add(1)
	}
}

// Unauthorized counts a request refused for its bearer token.
func (m *Node) Unauthorized() { m.unauth.Add(1) }

var _ node.Observer = (*Node)(nil)

// TaskStateChanged implements node.Observer.
func (m *Node) TaskStateChanged(_ *node.Task, _, to node.TaskState, _ uint64) {
	if int(to) < len(m.transitions) {
		m.transitions[to].Add(1)
	}
}

// Enqueued counts an enqueue answer: accepted (nil), refused under the admission
// limits (node.ErrNodeFull, node.ErrQueueFull), or failed otherwise.
func (m *Node) Enqueued(err error) {
	switch {
	case err == nil:
		m.enqueued.Add(1)
	case errors.Is(err, node.ErrNodeFull) || errors.Is(err, node.ErrQueueFull):
		m.full.Add(1)
	default:
		m.rejected.Add(1)
	}
}

// DiskStat is the log's counters and state, as net/disk reports them.
type DiskStat struct {
	Syncs, Fsyncs, Bytes, Compactions, Retries uint64
	Lost                                       bool // the LOST marker is present
	// Error is 1 while the log is retrying a full disk or too many open files
	// (writes wait), 2 once a failed write or fsync stopped it (restart the node),
	// 0 while it is healthy.
	Error int
}

var classes = [...]string{"2xx", "3xx", "4xx", "5xx", "error", "other"}

// Delivered counts one webhook result.
func (m *Node) Delivered(r node.DeliveryResult) {
	c := 5
	switch {
	case r.Status == 0:
		c = 4
	case r.Status >= 200 && r.Status < 600:
		c = r.Status/100 - 2
	}
	m.deliveries[c].Add(1)
}

// PeerConns is the transport's count of refused inbound connections: all of them,
// and those whose hello named a node outside the roster.
type PeerConns struct{ Refused, NotMember uint64 }

// PeerStat is one peer's transport counters, as the transport reports them.
type PeerStat struct {
	Peer                    string
	Sent, Received, Dropped uint64
	Queued                  int
	Connected               bool
}

// Write writes every metric in the Prometheus text format. disk is nil without
// storage, conns without a peer transport.
func (m *Node) Write(w io.Writer, self string, peers []PeerStat, conns *PeerConns, disk *DiskStat) {
	fmt.Fprintf(w, "# HELP miyamoto_enqueue_total Enqueue requests answered, by result.\n# TYPE miyamoto_enqueue_total counter\n")
	fmt.Fprintf(w, "miyamoto_enqueue_total{node=%q,result=\"scheduled\"} %d\n", self, m.enqueued.Load())
	fmt.Fprintf(w, "miyamoto_enqueue_total{node=%q,result=\"full\"} %d\n", self, m.full.Load())
	fmt.Fprintf(w, "miyamoto_enqueue_total{node=%q,result=\"failed\"} %d\n", self, m.rejected.Load())
	fmt.Fprintf(w, "# HELP miyamoto_http_unauthorized_total Requests refused for a missing or wrong bearer token.\n# TYPE miyamoto_http_unauthorized_total counter\n")
	fmt.Fprintf(w, "miyamoto_http_unauthorized_total{node=%q} %d\n", self, m.unauth.Load())
	if disk != nil {
		fmt.Fprintf(w, "# HELP miyamoto_disk_syncs_total Syncs the node asked of its log, and fsyncs that served them (group commit).\n# TYPE miyamoto_disk_syncs_total counter\n")
		fmt.Fprintf(w, "miyamoto_disk_syncs_total{node=%q,kind=\"requested\"} %d\n", self, disk.Syncs)
		fmt.Fprintf(w, "miyamoto_disk_syncs_total{node=%q,kind=\"fsync\"} %d\n", self, disk.Fsyncs)
		fmt.Fprintf(w, "# HELP miyamoto_disk_written_bytes_total Record bytes appended to the log.\n# TYPE miyamoto_disk_written_bytes_total counter\n")
		fmt.Fprintf(w, "miyamoto_disk_written_bytes_total{node=%q} %d\n", self, disk.Bytes)
		fmt.Fprintf(w, "# HELP miyamoto_disk_compactions_total Log compactions.\n# TYPE miyamoto_disk_compactions_total counter\n")
		fmt.Fprintf(w, "miyamoto_disk_compactions_total{node=%q} %d\n", self, disk.Compactions)
		lost := 0
		if disk.Lost {
			lost = 1
		}
		fmt.Fprintf(w, "# HELP miyamoto_disk_lost Whether the log may lack records it acknowledged (LOST marker: the node still acts as one that forgot).\n# TYPE miyamoto_disk_lost gauge\n")
		fmt.Fprintf(w, "miyamoto_disk_lost{node=%q} %d\n", self, lost)
		fmt.Fprintf(w, "# HELP miyamoto_disk_retries_total Group commits that failed with a full disk or too many open files and were tried again.\n# TYPE miyamoto_disk_retries_total counter\n")
		fmt.Fprintf(w, "miyamoto_disk_retries_total{node=%q} %d\n", self, disk.Retries)
		fmt.Fprintf(w, "# HELP miyamoto_disk_error 0: the log writes; 1: it retries a full disk or too many open files (no new task is taken); 2: a failed write or fsync stopped it (restart the node).\n# TYPE miyamoto_disk_error gauge\n")
		fmt.Fprintf(w, "miyamoto_disk_error{node=%q} %d\n", self, disk.Error)
	}
	fmt.Fprintf(w, "# HELP miyamoto_task_transitions_total Tasks entering each state on this node.\n# TYPE miyamoto_task_transitions_total counter\n")
	for s := node.StateScheduled; s <= node.StateCancelled; s++ {
		fmt.Fprintf(w, "miyamoto_task_transitions_total{node=%q,state=%q} %d\n", self, s.String(), m.transitions[s].Load())
	}
	fmt.Fprintf(w, "# HELP miyamoto_deliveries_total Webhook calls this node made, by answer class.\n# TYPE miyamoto_deliveries_total counter\n")
	for i, c := range classes {
		fmt.Fprintf(w, "miyamoto_deliveries_total{node=%q,class=%q} %d\n", self, c, m.deliveries[i].Load())
	}
	m.writeDeliveries(w, self)
	sort.Slice(peers, func(i, j int) bool { return peers[i].Peer < peers[j].Peer })
	fmt.Fprintf(w, "# HELP miyamoto_peer_messages_total Messages to and from each peer.\n# TYPE miyamoto_peer_messages_total counter\n")
	for _, p := range peers {
		fmt.Fprintf(w, "miyamoto_peer_messages_total{node=%q,peer=%q,dir=\"sent\"} %d\n", self, p.Peer, p.Sent)
		fmt.Fprintf(w, "miyamoto_peer_messages_total{node=%q,peer=%q,dir=\"received\"} %d\n", self, p.Peer, p.Received)
		fmt.Fprintf(w, "miyamoto_peer_messages_total{node=%q,peer=%q,dir=\"dropped\"} %d\n", self, p.Peer, p.Dropped)
	}
	fmt.Fprintf(w, "# HELP miyamoto_peer_queued Messages waiting to be sent to each peer.\n# TYPE miyamoto_peer_queued gauge\n")
	for _, p := range peers {
		fmt.Fprintf(w, "miyamoto_peer_queued{node=%q,peer=%q} %d\n", self, p.Peer, p.Queued)
	}
	fmt.Fprintf(w, "# HELP miyamoto_peer_connected Whether the outbound connection to each peer is up.\n# TYPE miyamoto_peer_connected gauge\n")
	for _, p := range peers {
		v := 0
		if p.Connected {
			v = 1
		}
		fmt.Fprintf(w, "miyamoto_peer_connected{node=%q,peer=%q} %d\n", self, p.Peer, v)
	}
	m.writeRefused(w, self, conns)
}

// writeRefused writes what the peer port refused. Labels are a fixed set (the
// node's refusal reasons), never a peer's word.
func (m *Node) writeRefused(w io.Writer, self string, conns *PeerConns) {
	fmt.Fprintf(w, "# HELP miyamoto_peer_messages_refused_total Peer messages the node dropped at its door, by the rule they broke.\n# TYPE miyamoto_peer_messages_refused_total counter\n")
	for _, r := range node.Refusals() {
		fmt.Fprintf(w, "miyamoto_peer_messages_refused_total{node=%q,reason=%q} %d\n", self, r.String(), m.refused[r].Load())
	}
	if conns == nil {
		return
	}
	fmt.Fprintf(w, "# HELP miyamoto_peer_connections_refused_total Inbound peer connections refused: a hello naming a node outside the roster, or a bad hello, handshake or frame.\n# TYPE miyamoto_peer_connections_refused_total counter\n")
	fmt.Fprintf(w, "miyamoto_peer_connections_refused_total{node=%q,reason=\"not_member\"} %d\n", self, conns.NotMember)
	fmt.Fprintf(w, "miyamoto_peer_connections_refused_total{node=%q,reason=\"other\"} %d\n", self, conns.Refused-min(conns.Refused, conns.NotMember))
}
