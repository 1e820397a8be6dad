package daemon_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/net/daemon"
)

// received is one request a worker got.
type received struct {
	id, node, body string
	method, query  string
	header         http.Header
}

// worker records what it receives and answers 200 after delay.
type worker struct {
	srv      *httptest.Server
	delay    time.Duration
	mu       sync.Mutex
	got      []received
	arrived  chan string // task IDs, as they arrive
	finished atomic.Int32
}

func newWorker(t *testing.T, delay time.Duration) *worker {
	w := &worker{delay: delay, arrived: make(chan string, 100)}
	w.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		id := r.Header.Get("X-Task-Id")
		w.mu.Lock()
		w.got = append(w.got, received{id: id, node: r.Header.Get("X-Miyamoto-Node"), body: string(b), method: r.Method, query: r.URL.RawQuery, header: r.Header.Clone()})
		w.mu.Unlock()
		w.arrived <- id
		time.Sleep(w.delay) // deliberately not cut by the request's context
		w.finished.Add(1)
		rw.WriteHeader(200)
	}))
	t.Cleanup(w.srv.Close)
	return w
}

func (w *worker) count(id string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, r := range w.got {
		if r.id == id {
			n++
		}
	}
	return n
}

// waitFor waits (bounded) until the worker received id.
func (w *worker) waitFor(t *testing.T, id string, within time.Duration) received {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case got := <-w.arrived:
			if got == id {
				w.mu.Lock()
				defer w.mu.Unlock()
				for _, r := range w.got {
					if r.id == id {
						return r
					}
				}
			}
		case <-deadline:
			t.Fatalf("the worker did not receive task %s within %s", id, within)
		}
	}
}

// start runs a single node on a free loopback port, shut down when the test ends.
func start(t *testing.T) (*daemon.Daemon, string) {
	t.Helper()
	d, err := daemon.Start(daemon.Config{HTTPAddr: "127.0.0.1:0"})
	require.NoError(t, err)
	var once sync.Once
	t.Cleanup(func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			d.Shutdown(ctx)
		})
	})
	base := "http://" + d.HTTPAddr()
	waitHealthy(t, base)
	return d, base
}

// shutdownAtEnd shuts d down (bounded) when the test ends.
func shutdownAtEnd(t *testing.T, d *daemon.Daemon) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		d.Shutdown(ctx)
	})
}

func waitHealthy(t *testing.T, base string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("the node did not become healthy")
}

var client = &http.Client{Timeout: 10 * time.Second}

func enqueue(t *testing.T, base string, form url.Values) string {
	t.Helper()
	resp, err := client.PostForm(base+"/queue", form)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	require.Equal(t, 200, resp.StatusCode, string(b))
	var out struct{ Status, ID string }
	require.NoError(t, json.Unmarshal(b, &out), string(b))
	require.Equal(t, "scheduled", out.Status)
	require.NotEmpty(t, out.ID)
	return out.ID
}

// call sends a request without a body and decodes the JSON answer into out (when
// not nil).
func call(t *testing.T, method, u string, out any) int {
	t.Helper()
	return send(t, method, u, "", out)
}

type taskView struct {
	ID       string   `json:"id"`
	Queue    string   `json:"queue"`
	URL      string   `json:"url"`
	State    string   `json:"state"`
	Attempts uint64   `json:"attempts"`
	Replicas []string `json:"replicas"`
}

// waitState polls GET /v1/tasks/{id} until the task reaches state.
func waitState(t *testing.T, base, id, state string) taskView {
	t.Helper()
	var v taskView
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		v = taskView{}
		code := call(t, "GET", base+"/v1/tasks/"+id, &v)
		require.Equal(t, 200, code)
		if v.State == state {
			return v
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("task %s is %q, not %q, after 10 s", id, v.State, state)
	return v
}

func TestSingleNodeDeliversAndReports(t *testing.T) {
	_, base := start(t)
	w := newWorker(t, 0)

	id := enqueue(t, base, url.Values{"task.url": {w.srv.URL + "/work"}, "task.countdown": {"0.2"}, "foo": {"bar"}})
	got := w.waitFor(t, id, 10*time.Second)
	require.Equal(t, id, got.id)
	require.Equal(t, "n1", got.node)
	require.Equal(t, "foo=bar", got.body)
	require.Equal(t, "queue", got.header.Get("X-Task-Queue"))

	v := waitState(t, base, id, "succeeded")
	require.Equal(t, id, v.ID)
	require.Equal(t, "queue", v.Queue)
	require.Equal(t, w.srv.URL+"/work", v.URL)
	require.GreaterOrEqual(t, v.Attempts, uint64(1))
	require.Equal(t, []string{"n1"}, v.Replicas)

	// A task that already succeeded cannot be cancelled.
	var conflict map[string]string
	require.Equal(t, http.StatusConflict, call(t, "DELETE", base+"/v1/tasks/"+id, &conflict))
	require.Equal(t, "succeeded", conflict["state"])
	require.Equal(t, 1, w.count(id))
}

func TestCancelBeforeDue(t *testing.T) {
	_, base := start(t)
	w := newWorker(t, 0)

	id := enqueue(t, base, url.Values{"task.url": {w.srv.URL + "/work"}, "task.countdown": {"1"}})
	var out map[string]string
	require.Equal(t, 200, call(t, "DELETE", base+"/v1/tasks/"+id, &out))
	require.Equal(t, map[string]string{"id": id, "status": "cancelled"}, out)

	time.Sleep(2 * time.Second) // past the due time
	require.Zero(t, w.count(id), "a cancelled task reached the worker")
	v := waitState(t, base, id, "cancelled")
	require.Equal(t, []string{"n1"}, v.Replicas)
}

func TestUnknownTask(t *testing.T) {
	_, base := start(t)
	var out map[string]string
	require.Equal(t, 404, call(t, "GET", base+"/v1/tasks/6f1c1bde-52d7-4c55-9b0f-6c1a2e9b6f00", &out))
	require.Equal(t, "id", out["field"])
	require.Equal(t, 404, call(t, "DELETE", base+"/v1/tasks/6f1c1bde-52d7-4c55-9b0f-6c1a2e9b6f00", nil))
}

func TestClusterOfOne(t *testing.T) {
	_, base := start(t)
	var c struct {
		Self     string `json:"self"`
		Replicas int    `json:"replicas"`
		Members  []struct {
			ID        string `json:"id"`
			Self      bool   `json:"self"`
			Reachable bool   `json:"reachable"`
		} `json:"members"`
	}
	require.Equal(t, 200, call(t, "GET", base+"/v1/cluster", &c))
	require.Equal(t, "n1", c.Self)
	require.Equal(t, 1, c.Replicas, "R is capped by the cluster size")
	require.Len(t, c.Members, 1)
	require.Equal(t, "n1", c.Members[0].ID)
	require.True(t, c.Members[0].Self)
	require.True(t, c.Members[0].Reachable)
}

func TestShutdownFinishesDeliveryInFlight(t *testing.T) {
	d, base := start(t)
	w := newWorker(t, time.Second)

	id := enqueue(t, base, url.Values{"task.url": {w.srv.URL + "/slow"}, "task.countdown": {"0"}})
	w.waitFor(t, id, 10*time.Second)
	require.Zero(t, w.finished.Load())

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	began := time.Now()
	require.NoError(t, d.Shutdown(ctx))
	took := time.Since(began)
	require.Equal(t, int32(1), w.finished.Load(), "Shutdown returned before the delivery in flight finished")
	require.Less(t, took, 10*time.Second)
	require.Equal(t, 1, w.count(id))

	// The API is closed.
	_, err := http.Get(base + "/healthz")
	require.Error(t, err)
}

func TestParsePeers(t *testing.T) {
	good := []struct {
		in   string
		want map[string]string
	}{
		{"", map[string]string{}},
		{"  ", map[string]string{}},
		{"n1=127.0.0.1:7001", map[string]string{"n1": "127.0.0.1:7001"}},
		{"n1=127.0.0.1:7001,n2=localhost:7002, n3=[::1]:7003", map[string]string{"n1": "127.0.0.1:7001", "n2": "localhost:7002", "n3": "[::1]:7003"}},
		{"n9=10.0.0.9:65535", map[string]string{"n9": "10.0.0.9:65535"}},
	}
	for _, c := range good {
		got, err := daemon.ParsePeers(c.in)
		require.NoError(t, err, "%q", c.in)
		require.Equal(t, c.want, got, "%q", c.in)
	}
	bad := []struct{ in, want string }{
		{"n1", "not id=host:port"},
		{"n1=127.0.0.1:7001,n2", "not id=host:port"},
		{"=127.0.0.1:7001", "not id=host:port"},
		{"n1=", "not id=host:port"},
		{"n1=127.0.0.1", "missing port"},
		{"n1=127.0.0.1:1:2", "too many colons"},
		{"n1=127.0.0.1:abc", `port "abc"`},
		{"n1=127.0.0.1:", `port ""`},
		{"n1=127.0.0.1:0", `port "0"`},
		{"n1=127.0.0.1:65536", `port "65536"`},
		{"n1=127.0.0.1:-1", `port "-1"`},
		{"n1=127.0.0.1:7001,n1=127.0.0.1:7002", "listed twice"},
		{"n1=127.0.0.1:7001,", "not id=host:port"},
	}
	for _, c := range bad {
		_, err := daemon.ParsePeers(c.in)
		require.Error(t, err, "%q", c.in)
		require.Contains(t, err.Error(), c.want, "%q", c.in)
		require.NotContains(t, err.Error(), "\n")
	}
}

// Bad requests get a 4xx JSON error, and neither crash the node nor disturb the
// tasks it already holds: a task enqueued before them is still delivered once, and
// one enqueued after them too.
func TestBadRequestsLoseNothing(t *testing.T) {
	_, base := start(t)
	w := newWorker(t, 0)
	before := enqueue(t, base, url.Values{"task.url": {w.srv.URL}, "task.countdown": {"0.5"}})
	bad := []struct{ ct, body string }{
		{"application/x-www-form-urlencoded", "foo=bar"},
		{"application/x-www-form-urlencoded", "task.url=ftp://x/y"},
		{"application/x-www-form-urlencoded", "task.url=http://w/&task.countdown=-1"},
		{"application/x-www-form-urlencoded", "task.url=http://w/&task.eta=never"},
		{"application/json", `{"url": "http://w/"`},
		{"application/json", `{"url": 12}`},
		{"application/json", "\x00\x01\x02"},
		{"application/x-www-form-urlencoded", "task.url=http://w/&pad=" + strings.Repeat("x", 2<<20)},
	}
	for _, b := range bad {
		resp, err := http.Post(base+"/q", b.ct, strings.NewReader(b.body))
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.GreaterOrEqual(t, resp.StatusCode, 400, string(body))
		require.Less(t, resp.StatusCode, 500, string(body))
		var e map[string]string
		require.NoError(t, json.Unmarshal(body, &e), string(body))
		require.NotEmpty(t, e["error"])
	}
	after := enqueue(t, base, url.Values{"task.url": {w.srv.URL}})
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && (w.count(before) == 0 || w.count(after) == 0) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	require.Equal(t, 1, w.count(before))
	require.Equal(t, 1, w.count(after))
}

// With a data directory, a node restarted on it still holds its tasks; and a task
// forgotten after its dedup window is compacted out of the log, so that a restart
// does not bring it back.
func TestDataDirSurvivesRestartAndCompacts(t *testing.T) {
	dir := t.TempDir()
	w := newWorker(t, 0)
	cfg := daemon.Config{HTTPAddr: "127.0.0.1:0", DataDir: dir, DedupWindow: 300 * time.Millisecond, CompactInterval: 200 * time.Millisecond}
	d, err := daemon.Start(cfg)
	require.NoError(t, err)
	base := "http://" + d.HTTPAddr()
	waitHealthy(t, base)
	done := enqueue(t, base, url.Values{"task.url": {w.srv.URL}})
	later := enqueue(t, base, url.Values{"task.url": {w.srv.URL}, "task.countdown": {"3600"}})
	waitState(t, base, done, "succeeded")
	time.Sleep(1500 * time.Millisecond) // dedup window, then a compaction
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	require.NoError(t, d.Shutdown(ctx))

	d, err = daemon.Start(cfg)
	require.NoError(t, err)
	shutdownAtEnd(t, d)
	base = "http://" + d.HTTPAddr()
	waitHealthy(t, base)
	var v taskView
	require.Equal(t, 200, call(t, "GET", base+"/v1/tasks/"+later, &v), "the scheduled task did not survive the restart")
	require.Equal(t, "scheduled", v.State)
	require.Equal(t, 404, call(t, "GET", base+"/v1/tasks/"+done, nil), "the forgotten task came back from the log")
	require.Equal(t, 1, w.count(done))

	enqueue(t, base, url.Values{"task.url": {w.srv.URL}, "task.countdown": {"3600"}}) // synced before its answer
	resp, err := client.Get(base + "/metrics")
	require.NoError(t, err)
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Regexp(t, `miyamoto_disk_syncs_total\{node="n1",kind="fsync"\} [1-9]`, string(m), "the log's fsyncs are exported")
}

// TestDataDirLockAndLossMarker: a second daemon on a directory in use refuses to
// start, naming it; a new directory starts marked LOST (it cannot be told from a
// wiped one) and the mark goes once the node no longer acts as one that forgot.
func TestDataDirLockAndLossMarker(t *testing.T) {
	dir := t.TempDir()
	cfg := daemon.Config{HTTPAddr: "127.0.0.1:0", DataDir: dir}
	d, err := daemon.Start(cfg)
	require.NoError(t, err)
	shutdownAtEnd(t, d)
	require.FileExists(t, filepath.Join(dir, "LOST"))

	_, err = daemon.Start(cfg)
	require.ErrorContains(t, err, dir+" is in use by another process")

	require.Eventually(t, func() bool {
		_, err := os.Stat(filepath.Join(dir, "LOST"))
		return os.IsNotExist(err)
	}, 10*time.Second, 50*time.Millisecond, "a cluster of one has nothing to wait for: the mark must go")
}
