package daemon_test

import (
	"bytes"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/net/daemon"
	"github.com/miyamotohq/miyamoto/net/wire"
	"github.com/miyamotohq/miyamoto/node"
)

// The security review's three attacks on the peer port of a cluster without a
// cluster secret (loopback only, as the daemon allows), made by a client that
// speaks net/wire: a task injected past the API token and --deny-private, a forged
// Done for an existing task, a queue frozen with a setting of version 2^64-1 and
// a purge in year 9999. Each is refused at the node's door and counted; the cluster
// still works as before. A stranger's hello is refused before any of it.

// peerClient is an attacker on a node's peer port: it says hello as id, then
// writes frames. What it would read (heartbeats) is drained.
type peerClient struct {
	t    *testing.T
	c    net.Conn
	id   node.NodeID
	to   node.NodeID
	done chan struct{}
}

func dialPeer(t *testing.T, addr string, id, to node.NodeID) *peerClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	require.NoError(t, err)
	hello := append([]byte("MIYA"), wire.Version, byte(len(id)))
	hello = append(hello, id...)
	_, err = c.Write(hello)
	require.NoError(t, err)
	p := &peerClient{t: t, c: c, id: id, to: to, done: make(chan struct{})}
	go func() { io.Copy(io.Discard, c); close(p.done) }()
	t.Cleanup(func() { c.Close(); <-p.done })
	return p
}

func (p *peerClient) send(m node.Message) {
	p.t.Helper()
	m.From, m.To = p.id, p.to
	_, err := p.c.Write(wire.AppendFrame(nil, m))
	require.NoError(p.t, err)
}

// metric returns the value of one sample of base's /metrics, or -1.
func metric(t *testing.T, base, sample string) float64 {
	t.Helper()
	resp, err := client.Get(base + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			require.NoError(t, err)
			return f
		}
	}
	return -1
}

func waitMetric(t *testing.T, base, sample string, want float64) {
	t.Helper()
	require.Eventually(t, func() bool { return metric(t, base, sample) == want }, 5*time.Second, 10*time.Millisecond, "%s never reached %v", sample, want)
}

func TestPeerPortAttacksAreRefused(t *testing.T) {
	ids := []string{"n1", "n2", "n3"}
	peerAddrs := map[string]string{}
	for _, id := range ids {
		peerAddrs[id] = freeAddr(t)
	}
	var logs syncBuffer
	bases := map[string]string{}
	for _, id := range ids {
		cfg := daemon.Config{NodeID: id, HTTPAddr: "127.0.0.1:0", PeerAddr: peerAddrs[id], Peers: peerAddrs, DenyPrivate: true,
			Lease: 3 * time.Second, MaxClockDrift: 100 * time.Millisecond, ReplicaOffset: 200 * time.Millisecond}
		if id == "n1" {
			cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		}
		d, err := daemon.Start(cfg)
		require.NoError(t, err)
		shutdownAtEnd(t, d)
		bases[id] = "http://" + d.HTTPAddr()
	}
	for _, id := range ids {
		waitHealthy(t, bases[id])
	}
	n1 := bases["n1"]
	refused := func(reason string) string {
		return `miyamoto_peer_messages_refused_total{node="n1",reason="` + reason + `"}`
	}

	// A task that exists, due in an hour (never delivered: no traffic leaves the
	// machine), named so that its ID is derivable.
	const publicURL = "http://93.184.216.34/work"
	id := enqueueTo(t, n1, "jobs", url.Values{"task.url": {publicURL}, "task.countdown": {"3600"}, "task.name": {"nightly"}})
	require.Equal(t, uuid.NewSHA1(uuid.MustParse("6d69796d-616d-6f74-6f2d-7461736b6e6d"), []byte("jobs\x00nightly")).String(), id)

	// A stranger's hello is refused at once: not one of --peers.
	stranger := dialPeer(t, peerAddrs["n1"], "evil", "n1")
	select {
	case <-stranger.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the stranger's connection stayed open")
	}
	waitMetric(t, n1, `miyamoto_peer_connections_refused_total{node="n1",reason="not_member"}`, 1)

	// Without a secret, a member's ID is only a claim: the attacker says it is n2.
	a := dialPeer(t, peerAddrs["n1"], "n2", "n1")
	now := time.Now()
	// settle gives n1 the time to handle what was sent (a message applied would show
	// by then; the checks that follow see whether it was).
	settle := func() { time.Sleep(300 * time.Millisecond) }

	// 1. Injection: a task to loopback (refused by --deny-private at enqueue) with
	// the attacker's headers and body.
	injected := &node.Task{ID: uuid.NewString(), Queue: "jobs", URL: "http://127.0.0.1:6379/", Method: "POST",
		Headers: []node.Header{{Name: "X-Evil", Value: "1"}}, Body: []byte("FLUSHALL"),
		ETA: now, Created: now, Nonce: 1, Replicas: []node.NodeID{"n1", "n2", "n3"}}
	a.send(node.Message{Type: node.MsgStore, TaskID: injected.ID, Task: injected})
	settle()
	require.Equal(t, http.StatusNotFound, call(t, "GET", n1+"/v1/tasks/"+injected.ID, nil), "the injected task is not held")
	waitMetric(t, n1, refused("url_policy"), 1)

	// 2. A forged Done for the named task: its ID is derivable, the task held on the
	// replicas (its nonce) is not. Without the task, or with a made-up one, it is
	// refused; the task stays scheduled.
	a.send(node.Message{Type: node.MsgOutcome, TaskID: id, State: node.StateSucceeded, Attempt: 1})
	forged := &node.Task{ID: id, Queue: "jobs", Name: "nightly", URL: publicURL, Method: "POST",
		ETA: now.Add(time.Hour), Created: now, Nonce: 42, Replicas: []node.NodeID{"n1", "n2", "n3"}}
	a.send(node.Message{Type: node.MsgOutcome, TaskID: id, Task: forged, State: node.StateSucceeded, Attempt: 1})
	settle()
	for _, b := range bases {
		var v taskView
		require.Equal(t, 200, call(t, "GET", b+"/v1/tasks/"+id, &v))
		require.Equal(t, "scheduled", v.State)
	}
	waitMetric(t, n1, refused("forged"), 2)

	// 3. A frozen queue: version 2^64-1, paused, everything purged until 9999.
	frozen := &node.QueueSetting{Queue: "jobs", Config: node.DefaultQueueConfig(), Paused: true,
		PurgedBefore: time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC), Version: math.MaxUint64, Origin: "n2"}
	a.send(node.Message{Type: node.MsgQueueSet, Setting: frozen})
	settle()
	var q queueView
	require.Equal(t, 200, send(t, "GET", n1+"/v1/queues/jobs", "", &q))
	require.False(t, q.Paused, "the forged pause was not taken")
	var v taskView
	require.Equal(t, 200, call(t, "GET", n1+"/v1/tasks/"+id, &v))
	require.Equal(t, "scheduled", v.State, "the forged purge cancelled nothing")
	waitMetric(t, n1, refused("future"), 1)
	// Pause and resume still work, as the client asks.
	require.Equal(t, 200, send(t, "POST", n1+"/v1/queues/jobs/pause", "", &q))
	require.True(t, q.Paused)
	require.Equal(t, 200, send(t, "POST", n1+"/v1/queues/jobs/resume", "", &q))
	require.False(t, q.Paused)
	require.Equal(t, 200, send(t, "GET", bases["n2"]+"/v1/queues/jobs", "", &q))
	require.False(t, q.Paused, "n2 saw the resume")

	// The cluster still takes tasks, and the log says why messages were refused,
	// once per reason.
	enqueueTo(t, n1, "jobs", url.Values{"task.url": {publicURL}, "task.countdown": {"3600"}})
	require.Equal(t, 1, strings.Count(logs.String(), `msg="peer message refused" reason=forged`), logs.String())
	require.Contains(t, logs.String(), "suppressed=0")
}

// --insecure-peers lets a peer port beyond loopback start without a secret, with
// one warning; without it Start refuses. (The address cannot be bound here, so
// nothing listens beyond loopback: Start fails right after the warning.)
func TestInsecurePeersWarns(t *testing.T) {
	cfg := daemon.Config{HTTPAddr: "127.0.0.1:0", PeerAddr: "192.0.2.1:7088", Peers: map[string]string{"n2": "192.0.2.2:7088"}}
	_, err := daemon.Start(cfg)
	require.ErrorContains(t, err, "--cluster-secret")
	require.ErrorContains(t, err, "--insecure-peers")

	var logs bytes.Buffer
	cfg.InsecurePeers = true
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	d, err := daemon.Start(cfg)
	if err == nil {
		shutdownAtEnd(t, d)
	}
	require.Equal(t, 1, strings.Count(logs.String(), "without --cluster-secret"), logs.String())
	require.Contains(t, logs.String(), "level=WARN")
}
