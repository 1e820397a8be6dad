package daemon

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/miyamotohq/miyamoto/node"
)

// CheckPeerExposure refuses a cluster whose peer port listens beyond loopback
// without a cluster secret: the peer port carries tasks, outcomes and queue
// settings past the API token, so without a secret anyone who reaches it can claim
// to be a member. A single node (no Peers, no Join) listens on no peer port until
// a node joins it (then the same rule refuses the join). The error is
// one line saying what to do; InsecurePeers overrides it (Start then warns).
func CheckPeerExposure(cfg Config) error {
	if cfg.ClusterSecret != "" || cfg.PeerTLS.Enabled() || !hasOtherPeers(cfg) && cfg.Join == "" {
		return nil
	}
	addr := cfg.PeerAddr
	if addr == "" {
		addr = "127.0.0.1:7088"
	}
	if isLoopbackAddr(addr) {
		return nil
	}
	return fmt.Errorf("--peer-addr %s is not a loopback address and neither --cluster-secret nor --peer-tls-cert is set: give every node the same --cluster-secret (say, openssl rand -hex 32) or certificates (--peer-tls-cert, --peer-tls-key, --peer-tls-ca), or pass --insecure-peers to run without either on a network you trust", addr)
}

func hasOtherPeers(cfg Config) bool {
	for id := range cfg.Peers {
		if id != cfg.NodeID {
			return true
		}
	}
	return false
}

// isLoopbackAddr reports whether host:port listens on loopback only: an IP
// loopback address or localhost. An empty host, 0.0.0.0, :: and any other name
// listen (or may) beyond it.
func isLoopbackAddr(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// refusalLog logs the peer messages the node's door refused: at warning level at
// most once a minute per reason, with how many were refused since, so that a peer
// sending garbage cannot flood the log; every one at debug level. It runs on the
// node's goroutine.
type refusalLog struct {
	log   *slog.Logger
	clock clock.Clock
	last  map[node.Refusal]time.Time
	since map[node.Refusal]int
}

func newRefusalLog(log *slog.Logger, c clock.Clock) *refusalLog {
	return &refusalLog{log: log, clock: c, last: map[node.Refusal]time.Time{}, since: map[node.Refusal]int{}}
}

// refusalLogEvery is the least time between two warnings of one reason.
const refusalLogEvery = time.Minute

func (r *refusalLog) TaskStateChanged(*node.Task, node.TaskState, node.TaskState, uint64) {}

func (r *refusalLog) MessageRefused(m node.Message, reason node.Refusal, detail string) {
	r.log.Debug("peer message refused", "reason", reason.String(), "field", detail, "type", m.Type.String(), "from", string(m.From), "task", m.TaskID)
	now := r.clock.Now()
	if last, ok := r.last[reason]; ok && now.Sub(last) < refusalLogEvery {
		r.since[reason]++
		return
	}
	r.log.Warn("peer message refused", "reason", reason.String(), "field", detail, "type", m.Type.String(), "from", string(m.From), "task", m.TaskID, "suppressed", r.since[reason])
	r.last[reason] = now
	r.since[reason] = 0
}
