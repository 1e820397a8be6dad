package daemon_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/net/daemon"
)

// clusterView is what the test reads of GET /v1/cluster.
type clusterView struct {
	Epoch   uint64 `json:"epoch"`
	Leader  string `json:"leader"`
	Healthy bool   `json:"healthy"`
	Members []struct {
		ID        string `json:"id"`
		Reachable bool   `json:"reachable"`
	} `json:"members"`
}

func cluster(t *testing.T, base string) clusterView {
	t.Helper()
	resp, err := client.Get(base + "/v1/cluster")
	require.NoError(t, err)
	defer resp.Body.Close()
	var c clusterView
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&c))
	return c
}

// eventuallyCluster polls base's /v1/cluster until ok accepts it, at most within.
func eventuallyCluster(t *testing.T, base string, within time.Duration, what string, ok func(clusterView) bool) clusterView {
	t.Helper()
	deadline := time.Now().Add(within)
	var c clusterView
	for time.Now().Before(deadline) {
		if c = cluster(t, base); ok(c) {
			return c
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s; last /v1/cluster of %s: %+v", what, within, base, c)
	return c
}

// A node alone grows to three with --join (the third asking a member that does not
// lead); when the leader stops, another member leads within a lease and a few
// seconds, and enqueues through the others keep working.
func TestJoinAndLeaderFailover(t *testing.T) {
	t.Parallel()
	w := newWorker(t, 0)
	const lease = 3 * time.Second
	ids := []string{"n1", "n2", "n3"}
	bases := map[string]string{}
	daemons := map[string]*daemon.Daemon{}
	for i, id := range ids {
		cfg := daemon.Config{NodeID: id, HTTPAddr: "127.0.0.1:0", PeerAddr: freeAddr(t), Lease: lease, MaxClockDrift: 500 * time.Millisecond}
		if i == 1 {
			cfg.Join = bases["n1"]
		}
		if i == 2 {
			cfg.Join = bases["n2"]
		}
		d, err := daemon.Start(cfg)
		require.NoError(t, err)
		shutdownAtEnd(t, d)
		daemons[id], bases[id] = d, "http://"+d.HTTPAddr()
		if i == 0 {
			waitHealthy(t, bases[id])
		}
		eventuallyCluster(t, bases[id], time.Minute, id+" joins", func(c clusterView) bool { return len(c.Members) == i+1 && c.Healthy })
	}
	c := eventuallyCluster(t, bases["n3"], 30*time.Second, "every member reachable from n3, a leader known", func(c clusterView) bool {
		return c.Leader != "" && len(c.Members) == 3 && c.Members[0].Reachable && c.Members[1].Reachable && c.Members[2].Reachable
	})
	old := c.Leader
	t.Logf("leader %s at epoch %d", old, c.Epoch)

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	require.NoError(t, daemons[old].Shutdown(ctx))
	stopped := time.Now()
	var other string
	for _, id := range ids {
		if id != old {
			other = id
		}
	}
	c = eventuallyCluster(t, bases[other], lease+10*time.Second, "a new leader", func(c clusterView) bool { return c.Leader != "" && c.Leader != old })
	t.Logf("new leader %s at epoch %d, %v after the old one stopped", c.Leader, c.Epoch, time.Since(stopped).Round(100*time.Millisecond))

	resp, err := client.Get(bases[c.Leader] + "/metrics")
	require.NoError(t, err)
	metricsText, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Contains(t, string(metricsText), fmt.Sprintf("miyamoto_leader{node=%q} 1", c.Leader))
	// A new leader may commit a roster of its own epoch between the two reads.
	m := regexp.MustCompile(fmt.Sprintf(`miyamoto_roster_epoch\{node=%q\} (\d+)`, c.Leader)).FindStringSubmatch(string(metricsText))
	require.NotNil(t, m, "miyamoto_roster_epoch of %s", c.Leader)
	epoch, _ := strconv.ParseUint(m[1], 10, 64)
	require.GreaterOrEqual(t, epoch, c.Epoch, "the epoch the metrics show is no older than the one /v1/cluster showed before")
	require.Contains(t, string(metricsText), fmt.Sprintf("miyamoto_roster_members{node=%q} 3", c.Leader))

	code, body, _ := post(t, bases[other], "", url.Values{"task.url": {w.srv.URL + "/after"}})
	require.Equal(t, http.StatusOK, code, "%v", body)
	w.waitFor(t, body["id"].(string), 30*time.Second)
}

// A member of three is removed through a member that does not lead: the others'
// roster drops it, it says it was removed (/healthz 503 "removed", /v1/cluster
// removed), refuses enqueues, and enqueues through the others keep working.
func TestRemoveMember(t *testing.T) {
	t.Parallel()
	w := newWorker(t, 0)
	ids := []string{"n1", "n2", "n3"}
	bases := map[string]string{}
	for i, id := range ids {
		cfg := daemon.Config{NodeID: id, HTTPAddr: "127.0.0.1:0", PeerAddr: freeAddr(t), Lease: 3 * time.Second, MaxClockDrift: 500 * time.Millisecond}
		if i > 0 {
			cfg.Join = bases["n1"]
		}
		d, err := daemon.Start(cfg)
		require.NoError(t, err)
		shutdownAtEnd(t, d)
		bases[id] = "http://" + d.HTTPAddr()
		if i == 0 {
			waitHealthy(t, bases[id])
		}
		eventuallyCluster(t, bases[id], time.Minute, id+" joins", func(c clusterView) bool { return len(c.Members) == i+1 && c.Healthy })
	}
	c := eventuallyCluster(t, bases["n2"], 30*time.Second, "a leader known", func(c clusterView) bool { return c.Leader != "" && len(c.Members) == 3 })
	via, gone := "n2", "n3"
	if c.Leader == via {
		via = "n1"
	}
	if c.Leader == gone {
		gone = "n1"
	}

	// A task due after the removal: its replica list names the member removed, so
	// it is moved to the members left before it fires.
	code, before, _ := post(t, bases[via], "", url.Values{"task.url": {w.srv.URL + "/before"}, "task.countdown": {"6"}})
	require.Equal(t, http.StatusOK, code, "%v", before)

	status := map[string]any{}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && status["status"] != "removed" {
		var code int
		code, status = postRemove(t, bases[via], gone)
		require.Contains(t, []int{http.StatusOK, http.StatusAccepted}, code, "%v", status)
		time.Sleep(200 * time.Millisecond)
	}
	require.Equal(t, "removed", status["status"], "%v", status)
	for _, id := range ids {
		if id == gone {
			continue
		}
		eventuallyCluster(t, bases[id], 10*time.Second, id+" drops "+gone, func(c clusterView) bool { return len(c.Members) == 2 && c.Healthy })
	}

	eventuallyCluster(t, bases[gone], 10*time.Second, gone+" learns it was removed", func(c clusterView) bool { return !c.Healthy })
	resp, err := client.Get(bases[gone] + "/healthz")
	require.NoError(t, err)
	var h map[string]string
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&h))
	resp.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.Equal(t, "removed", h["status"], "%v", h)
	w.waitFor(t, before["id"].(string), 30*time.Second)
	moves := 0
	for _, id := range ids {
		if id == gone {
			continue
		}
		resp, err := client.Get(bases[id] + "/metrics")
		require.NoError(t, err)
		text, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var n int
		if i := strings.Index(string(text), fmt.Sprintf("miyamoto_moves_total{node=%q} ", id)); i >= 0 {
			fmt.Sscanf(string(text[i:]), fmt.Sprintf("miyamoto_moves_total{node=%q} %%d", id), &n)
		}
		moves += n
	}
	require.GreaterOrEqual(t, moves, 1, "the task due after the removal was moved")

	code, body, _ := post(t, bases[gone], "", url.Values{"task.url": {w.srv.URL + "/refused"}})
	require.Equal(t, http.StatusServiceUnavailable, code, "%v", body)
	require.Equal(t, "removed", body["status"], "%v", body)

	code, body, _ = post(t, bases[via], "", url.Values{"task.url": {w.srv.URL + "/after"}})
	require.Equal(t, http.StatusOK, code, "%v", body)
	w.waitFor(t, body["id"].(string), 30*time.Second)
	resp, err = client.Get(bases[via] + "/metrics")
	require.NoError(t, err)
	metricsText, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Contains(t, string(metricsText), fmt.Sprintf("miyamoto_roster_members{node=%q} 2", via))
	require.Contains(t, string(metricsText), fmt.Sprintf("miyamoto_tasks_on_removed_members{node=%q} 0", via))
	require.Contains(t, string(metricsText), fmt.Sprintf("miyamoto_moves_in_flight{node=%q} 0", via))

	code, body = postRemove(t, bases[via], "nobody")
	require.Equal(t, http.StatusOK, code, "removing a non-member is idempotent: %v", body)
}

// postRemove posts POST /v1/cluster/members/{id}/remove to base.
func postRemove(t *testing.T, base, id string) (int, map[string]any) {
	t.Helper()
	resp, err := client.Post(base+"/v1/cluster/members/"+id+"/remove", "application/json", nil)
	require.NoError(t, err)
	defer resp.Body.Close()
	var out map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	return resp.StatusCode, out
}

// A node removed within a second of being listed (before its --join loop looked
// again) stays removed: the loop stops once a roster listed the node, so it does not
// ask to be added back. TestRemoveMember failed in CI that way: the removed node took
// an enqueue again, listed by a later roster.
func TestRemovedRightAfterJoiningStaysRemoved(t *testing.T) {
	t.Parallel()
	n1 := daemon.Config{NodeID: "n1", HTTPAddr: "127.0.0.1:0", PeerAddr: freeAddr(t), Lease: 3 * time.Second, MaxClockDrift: 500 * time.Millisecond}
	d1, err := daemon.Start(n1)
	require.NoError(t, err)
	shutdownAtEnd(t, d1)
	base1 := "http://" + d1.HTTPAddr()
	waitHealthy(t, base1)
	d2, err := daemon.Start(daemon.Config{NodeID: "n2", HTTPAddr: "127.0.0.1:0", PeerAddr: freeAddr(t), Lease: 3 * time.Second, MaxClockDrift: 500 * time.Millisecond, Join: base1})
	require.NoError(t, err)
	shutdownAtEnd(t, d2)
	base2 := "http://" + d2.HTTPAddr()

	// Remove n2 the moment n1's roster lists it, polling every 10 ms.
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && len(cluster(t, base1).Members) < 2 {
		time.Sleep(10 * time.Millisecond)
	}
	require.Len(t, cluster(t, base1).Members, 2, "n2 joined")
	status := map[string]any{}
	for time.Now().Before(deadline) && status["status"] != "removed" {
		var code int
		code, status = postRemove(t, base1, "n2")
		require.Contains(t, []int{http.StatusOK, http.StatusAccepted}, code, "%v", status)
		time.Sleep(20 * time.Millisecond)
	}
	require.Equal(t, "removed", status["status"], "%v", status)

	// Three of its join loop's periods later, it is still out, and says so.
	time.Sleep(3 * time.Second)
	require.Len(t, cluster(t, base1).Members, 1, "n2 was added back: %+v", cluster(t, base1))
	eventuallyCluster(t, base2, 5*time.Second, "n2 learns it was removed", func(c clusterView) bool { return !c.Healthy })
}

// A node that joins with PeerAdvertise is listed at that address, not at its
// PeerAddr, by every member, in the roster and in /v1/cluster (here a forwarder in
// the test stands between the members, as a NAT or the chaos test's proxies would):
// the members reach it only through the forwarder, and the join commits.
func TestJoinWithPeerAdvertise(t *testing.T) {
	t.Parallel()
	cfg := daemon.Config{NodeID: "n1", HTTPAddr: "127.0.0.1:0", PeerAddr: freeAddr(t), Lease: 3 * time.Second, MaxClockDrift: 500 * time.Millisecond}
	d1, err := daemon.Start(cfg)
	require.NoError(t, err)
	shutdownAtEnd(t, d1)
	base1 := "http://" + d1.HTTPAddr()
	waitHealthy(t, base1)

	listen := freeAddr(t)
	fwd, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { fwd.Close() })
	var forwarded atomic.Int64
	go func() {
		for {
			down, err := fwd.Accept()
			if err != nil {
				return
			}
			forwarded.Add(1)
			go func() {
				defer down.Close()
				up, err := net.Dial("tcp", listen)
				if err != nil {
					return
				}
				defer up.Close()
				go io.Copy(up, down)
				io.Copy(down, up)
			}()
		}
	}()
	cfg = daemon.Config{NodeID: "n2", HTTPAddr: "127.0.0.1:0", PeerAddr: listen, PeerAdvertise: fwd.Addr().String(), Join: base1,
		Lease: 3 * time.Second, MaxClockDrift: 500 * time.Millisecond}
	d2, err := daemon.Start(cfg)
	require.NoError(t, err)
	shutdownAtEnd(t, d2)
	base2 := "http://" + d2.HTTPAddr()
	for _, base := range []string{base1, base2} {
		eventuallyCluster(t, base, time.Minute, "n2 joined, seen from "+base, func(c clusterView) bool { return len(c.Members) == 2 && c.Healthy })
		resp, err := client.Get(base + "/v1/cluster")
		require.NoError(t, err)
		var view struct{ Members []struct{ ID, Addr string } }
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&view))
		resp.Body.Close()
		for _, m := range view.Members {
			if m.ID == "n2" {
				require.Equal(t, fwd.Addr().String(), m.Addr, "%s lists n2 at its advertised address", base)
			}
		}
	}
	require.Positive(t, forwarded.Load(), "n1 reached n2 through the advertised address")
}

// A task that ended before a member of its replica list was removed keeps that list
// (only tasks not final are moved). A node that joined after the removal never knew
// the removed member; asked for the task (GET /v1/tasks/{id}, which any node
// answers), it must still take the replicas' answers naming it, and answer 200 with
// the task, not time out. The chaos test's replace found it (seed 1, --faults
// replace: 381 lookups through a later joiner answered 503 after 5 s).
func TestLookupThroughNodeJoinedAfterRemoval(t *testing.T) {
	t.Parallel()
	w := newWorker(t, 0)
	bases := map[string]string{}
	startNode := func(id, join string) {
		cfg := daemon.Config{NodeID: id, HTTPAddr: "127.0.0.1:0", PeerAddr: freeAddr(t), Join: join, Lease: 3 * time.Second, MaxClockDrift: 500 * time.Millisecond}
		d, err := daemon.Start(cfg)
		require.NoError(t, err)
		shutdownAtEnd(t, d)
		bases[id] = "http://" + d.HTTPAddr()
	}
	startNode("n1", "")
	waitHealthy(t, bases["n1"])
	for i, id := range []string{"n2", "n3"} {
		startNode(id, bases["n1"])
		eventuallyCluster(t, bases[id], time.Minute, id+" joins", func(c clusterView) bool { return len(c.Members) == i+2 && c.Healthy })
	}
	code, task, _ := post(t, bases["n1"], "", url.Values{"task.url": {w.srv.URL + "/early"}})
	require.Equal(t, http.StatusOK, code, "%v", task)
	id := task["id"].(string)
	w.waitFor(t, id, 30*time.Second)
	require.Eventually(t, func() bool {
		resp, err := client.Get(bases["n1"] + "/v1/tasks/" + id)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var v struct{ State string }
		json.NewDecoder(resp.Body).Decode(&v)
		return v.State == "succeeded"
	}, 30*time.Second, 100*time.Millisecond, "the task ends succeeded")

	status := map[string]any{}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && status["status"] != "removed" {
		_, status = postRemove(t, bases["n1"], "n3")
		time.Sleep(200 * time.Millisecond)
	}
	require.Equal(t, "removed", status["status"], "%v", status)
	startNode("n4", bases["n1"])
	eventuallyCluster(t, bases["n4"], time.Minute, "n4 joins after n3's removal", func(c clusterView) bool { return len(c.Members) == 3 && c.Healthy })

	resp, err := client.Get(bases["n4"] + "/v1/tasks/" + id)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "n4 answers for a task whose replica list names n3, removed before it joined: %s", body)
	require.Contains(t, string(body), `"succeeded"`)
}
