package daemon_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/net/daemon"
)

func startCfg(t *testing.T, cfg daemon.Config) string {
	t.Helper()
	cfg.HTTPAddr = "127.0.0.1:0"
	d, err := daemon.Start(cfg)
	require.NoError(t, err)
	shutdownAtEnd(t, d)
	base := "http://" + d.HTTPAddr()
	waitHealthy(t, base)
	return base
}

// post sends a form enqueue with an optional bearer token and returns the status,
// the decoded body and the Retry-After header.
func post(t *testing.T, base, token string, form url.Values) (int, map[string]any, string) {
	t.Helper()
	req, err := http.NewRequest("POST", base+"/queue", strings.NewReader(form.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var out map[string]any
	b, _ := io.ReadAll(resp.Body)
	require.NoError(t, json.Unmarshal(b, &out), "every answer is JSON: %q", b)
	return resp.StatusCode, out, resp.Header.Get("Retry-After")
}

// TestSecurityFlagsWired: a daemon with tokens, a signing secret and --deny-private
// refuses a request without the token, refuses the metadata address, and delivers
// to an allowed worker with a signature that an independent HMAC verifies.
func TestSecurityFlagsWired(t *testing.T) {
	key := []byte("0123456789abcdef01234567") // 24 bytes
	secret := "whsec_" + base64.StdEncoding.EncodeToString(key)
	w := newWorker(t, 0)
	base := startCfg(t, daemon.Config{
		APITokens: []string{"old-token", "new-token"}, SigningSecrets: []string{secret},
		DenyPrivate: true, AllowURLs: "127.0.0.1/32",
	})

	code, body, _ := post(t, base, "", url.Values{"task.url": {w.srv.URL}})
	require.Equal(t, http.StatusUnauthorized, code)
	require.Equal(t, "Authorization", body["field"])
	code, _, _ = post(t, base, "wrong-token", url.Values{"task.url": {w.srv.URL}})
	require.Equal(t, http.StatusUnauthorized, code)
	req, err := http.NewRequest("GET", base+"/metrics", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer new-token")
	mresp, err := client.Do(req)
	require.NoError(t, err)
	mbody, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	require.Contains(t, string(mbody), `miyamoto_http_unauthorized_total{node="n1"} 2`+"\n", "both refusals are counted")
	resp, err := client.Get(base + "/healthz")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode, "/healthz stays open for load balancers")

	for _, u := range []string{"http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/", "http://[::1]:8080/", "http://0x7f000002/"} {
		code, body, _ = post(t, base, "new-token", url.Values{"task.url": {u}})
		require.Equal(t, http.StatusBadRequest, code, u)
		require.Equal(t, "url", body["field"], u)
	}

	code, body, _ = post(t, base, "old-token", url.Values{"task.url": {w.srv.URL + "/hook"}, "k": {"v"}})
	require.Equal(t, 200, code, "%v", body)
	id := body["id"].(string)
	got := w.waitFor(t, id, 10*time.Second)
	require.Equal(t, id, got.header.Get("webhook-id"))
	ts := got.header.Get("webhook-timestamp")
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "." + got.body))
	require.Equal(t, "v1,"+base64.StdEncoding.EncodeToString(mac.Sum(nil)), got.header.Get("webhook-signature"))
}

// TestPendingLimitUnderLoad is the load test of the admission limit: clients keep
// enqueueing into a node that holds its limit of pending tasks. It answers 503 with
// Retry-After (never a hang, never a crash), keeps delivering what it holds (every
// acknowledged task exactly once), and the refused requests leave no memory behind.
func TestPendingLimitUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	const limit = 300
	var mu sync.Mutex
	delivered := map[string]int{}
	worker := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		delivered[r.Header.Get("X-Task-Id")]++
		mu.Unlock()
	}))
	t.Cleanup(worker.Close)
	base := startCfg(t, daemon.Config{MaxPending: limit})

	body := strings.Repeat("x", 4096)
	var acked sync.Map
	var ok200, full503 atomic.Int64
	var badRetryAfter atomic.Value
	enqueueMany := func(n int, countdown string) {
		var wg sync.WaitGroup
		for c := range 8 {
			wg.Go(func() {
				for i := c; i < n; i += 8 {
					code, out, ra := post(t, base, "", url.Values{"task.url": {worker.URL}, "task.countdown": {countdown}, "b": {body}})
					switch code {
					case 200:
						ok200.Add(1)
						acked.Store(out["id"].(string), true)
					case 503:
						full503.Add(1)
						if ra == "" || out["status"] != "full" {
							badRetryAfter.Store(fmt.Sprintf("503 with Retry-After %q and body %v", ra, out))
						}
					default:
						badRetryAfter.Store(fmt.Sprintf("unexpected %d %v", code, out))
					}
				}
			})
		}
		wg.Wait()
	}

	// Fill the node with tasks due in 3 s, then keep offering more than it takes.
	enqueueMany(2*limit, "3")
	require.EqualValues(t, limit, ok200.Load(), "exactly the limit is taken")
	require.EqualValues(t, limit, full503.Load())
	require.Nil(t, badRetryAfter.Load())

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	ok200.Store(0)
	enqueueMany(5000, "3") // 20 MB of bodies offered, all refused while full
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	require.Nil(t, badRetryAfter.Load())
	growth := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("heap %d KB before, %d KB after 5000 refused enqueues (%d taken meanwhile)", before.HeapAlloc>>10, after.HeapAlloc>>10, ok200.Load())
	require.Less(t, growth, int64(8<<20), "refused tasks must not stay in memory")

	// It keeps delivering what it holds: every acknowledged task exactly once.
	var ids []string
	acked.Range(func(k, _ any) bool { ids = append(ids, k.(string)); return true })
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, id := range ids {
			if delivered[id] == 0 {
				return false
			}
		}
		return true
	}, 30*time.Second, 50*time.Millisecond, "the full node stopped delivering")
	mu.Lock()
	for _, id := range ids {
		require.Equal(t, 1, delivered[id], "task %s", id)
	}
	mu.Unlock()

	// Every refusal is counted for the operator.
	resp, err := client.Get(base + "/metrics")
	require.NoError(t, err)
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Contains(t, string(m), fmt.Sprintf("miyamoto_enqueue_total{node=\"n1\",result=\"full\"} %d\n", full503.Load()))

	// Once delivered, the capacity is back.
	code, _, _ := post(t, base, "", url.Values{"task.url": {worker.URL}})
	require.Equal(t, 200, code)
}

// handedOut holds every address freeAddr returned in this test process.
var handedOut = struct {
	sync.Mutex
	addrs map[string]bool
}{addrs: map[string]bool{}}

// freeAddr returns a loopback address nobody listens on right now, never the same
// one twice in this test process: the cluster tests run in parallel, and an address
// closed here until a daemon binds it could otherwise go to another test meanwhile.
func freeAddr(t *testing.T) string {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	for range 100 {
		srv := httptest.NewServer(http.NotFoundHandler())
		addr := srv.Listener.Addr().String()
		srv.Close()
		if !handedOut.addrs[addr] {
			handedOut.addrs[addr] = true
			return addr
		}
	}
	t.Fatal("no loopback address that this test process had not handed out already, in 100 tries")
	return ""
}

// TestClusterSecretWired: two nodes with the same --cluster-secret form a majority
// and deliver; a third with another secret is refused by both and never reachable.
func TestClusterSecretWired(t *testing.T) {
	t.Parallel()
	ids := []string{"n1", "n2", "n3"}
	peerAddrs := map[string]string{}
	for _, id := range ids {
		peerAddrs[id] = freeAddr(t)
	}
	bases := map[string]string{}
	for _, id := range ids {
		secret := "the-right-cluster-secret"
		if id == "n3" {
			secret = "an-impostor-s-cluster-secret"
		}
		d, err := daemon.Start(daemon.Config{NodeID: id, HTTPAddr: "127.0.0.1:0", PeerAddr: peerAddrs[id], Peers: peerAddrs,
			ClusterSecret: secret, Lease: 3 * time.Second, MaxClockDrift: 100 * time.Millisecond, ReplicaOffset: 200 * time.Millisecond})
		require.NoError(t, err)
		shutdownAtEnd(t, d)
		bases[id] = "http://" + d.HTTPAddr()
	}
	waitHealthy(t, bases["n1"])
	waitHealthy(t, bases["n2"])
	type cluster struct {
		Members []struct {
			ID        string `json:"id"`
			Reachable bool   `json:"reachable"`
		} `json:"members"`
	}
	reach := func(from string) map[string]bool {
		var c cluster
		require.Equal(t, 200, call(t, "GET", bases[from]+"/v1/cluster", &c))
		m := map[string]bool{}
		for _, mem := range c.Members {
			m[mem.ID] = mem.Reachable
		}
		return m
	}
	require.Eventually(t, func() bool { r := reach("n1"); return r["n2"] }, 10*time.Second, 20*time.Millisecond, "n1 and n2 share the secret")
	time.Sleep(500 * time.Millisecond)
	require.False(t, reach("n1")["n3"], "n1 must not connect to a peer that cannot prove the secret")
	require.False(t, reach("n3")["n1"], "n3 must be refused")
	require.False(t, reach("n3")["n2"], "n3 must be refused")

	w := newWorker(t, 0)
	id := enqueue(t, bases["n1"], url.Values{"task.url": {w.srv.URL}})
	w.waitFor(t, id, 15*time.Second)
	// n3 can reach no majority: it cannot even learn the queue settings, so it is
	// not healthy and its enqueues are refused (503) rather than stored.
	resp, err := http.Get(bases["n3"] + "/healthz")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "a node that reaches no majority is not healthy")
	code, out, _ := post(t, bases["n3"], "", url.Values{"task.url": {w.srv.URL}})
	require.Equal(t, http.StatusServiceUnavailable, code, "%v", out)
}

// TestConsoleBesideTheAPI: the console's files are served without the token, and
// what they would show is not: the data endpoints still answer 401 without it.
func TestConsoleBesideTheAPI(t *testing.T) {
	const token = "console-test-token-0123456789abcdef"
	base := startCfg(t, daemon.Config{APITokens: []string{token}})
	noRedirect := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(path, token string) *http.Response {
		req, err := http.NewRequest("GET", base+path, nil)
		require.NoError(t, err)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := noRedirect.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp
	}
	page := get("/ui/", "")
	require.Equal(t, 200, page.StatusCode)
	require.Contains(t, page.Header.Get("Content-Type"), "text/html")
	require.NotEmpty(t, page.Header.Get("Content-Security-Policy"))
	require.Equal(t, 200, get("/ui/app.js", "").StatusCode)
	bare := get("/ui", "")
	require.Contains(t, []int{http.StatusMovedPermanently, http.StatusTemporaryRedirect}, bare.StatusCode)
	require.Equal(t, "/ui/", bare.Header.Get("Location"))
	for _, path := range []string{"/v1/cluster", "/v1/queues", "/metrics"} {
		require.Equal(t, 401, get(path, "").StatusCode, path)
		require.Equal(t, 200, get(path, token).StatusCode, path)
	}
	// A queue may still be called "ui": enqueueing is a POST, which the console never takes.
	req, err := http.NewRequest("POST", base+"/ui", strings.NewReader(url.Values{"task.url": {"http://127.0.0.1:1/x"}, "task.countdown": {"3600"}}.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode, string(b))
	require.Contains(t, string(b), `"status": "scheduled"`)
}
