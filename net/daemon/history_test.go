package daemon_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/net/daemon"
)

// syncBuffer is a bytes.Buffer that the daemon's goroutines may write at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type attemptView struct {
	Attempt  uint64  `json:"attempt"`
	Node     string  `json:"node"`
	Start    float64 `json:"start"`
	Duration float64 `json:"duration"`
	Status   int     `json:"status"`
	Error    string  `json:"error"`
	Message  string  `json:"message"`
	Body     string  `json:"body"`
}

type historyView struct {
	State      string        `json:"state"`
	DeadReason string        `json:"dead_reason"`
	History    []attemptView `json:"attempts_history"`
}

// A task that keeps failing dies saying why; GET /v1/tasks/{id} lists each attempt
// with its status and the answer's first bytes, or why no answer came; the node
// logs the death at info level; /metrics counts the attempts by queue and outcome.
func TestDeadTaskHistoryLogAndMetrics(t *testing.T) {
	logs := &syncBuffer{}
	d, err := daemon.Start(daemon.Config{HTTPAddr: "127.0.0.1:0", Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	require.NoError(t, err)
	shutdownAtEnd(t, d)
	base := "http://" + d.HTTPAddr()
	waitHealthy(t, base)

	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(500)
		io.WriteString(w, "database is down")
	}))
	t.Cleanup(failing.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := "http://" + ln.Addr().String() + "/hook"
	ln.Close() // nothing listens there: the connection is refused

	req, err := http.NewRequest("PUT", base+"/v1/queues/failing", strings.NewReader(`{"retry": {"task_retry_limit": 1, "min_backoff": "100ms"}}`))
	require.NoError(t, err)
	resp, err := client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)

	enqueueTo := func(u string) string {
		resp, err := client.PostForm(base+"/failing", url.Values{"task.url": {u}})
		require.NoError(t, err)
		defer resp.Body.Close()
		var out struct{ ID string }
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
		require.NotEmpty(t, out.ID)
		return out.ID
	}
	id500, idRefused := enqueueTo(failing.URL+"/work"), enqueueTo(closed)

	v := waitHistory(t, base, id500, "dead")
	require.Len(t, v.History, 2, "task_retry_limit 1: the second failure kills it")
	for i, a := range v.History {
		require.Equal(t, "n1", a.Node)
		require.Equal(t, 500, a.Status)
		require.Equal(t, "database is down", a.Body)
		require.Empty(t, a.Error)
		require.Greater(t, a.Start, float64(time.Now().Add(-time.Minute).Unix()))
		require.Greater(t, a.Duration, 0.0)
		if i > 0 {
			require.Greater(t, a.Attempt, v.History[i-1].Attempt)
			require.GreaterOrEqual(t, a.Start, v.History[i-1].Start+0.1, "the backoff was waited out")
		}
	}
	require.Contains(t, v.DeadReason, "retry limits reached (task_retry_limit 1) after 2 failed deliveries; last: HTTP 500: database is down")

	v = waitHistory(t, base, idRefused, "dead")
	require.Len(t, v.History, 2)
	require.Equal(t, "refused", v.History[1].Error)
	require.Contains(t, v.History[1].Message, "connection refused")
	require.Zero(t, v.History[1].Status)
	require.Contains(t, v.DeadReason, "last: refused:")

	// One info line per death, on this node, which decided them.
	var deaths []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &m), "a JSON log line: %q", line)
		if m["msg"] == "task ended dead" {
			deaths = append(deaths, m)
		}
	}
	require.Len(t, deaths, 2)
	for _, m := range deaths {
		require.Equal(t, "INFO", m["level"])
		require.Equal(t, "failing", m["queue"])
		require.Contains(t, m["reason"], "retry limits reached")
	}

	resp, err = client.Get(base + "/metrics")
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	metrics := string(b)
	require.Contains(t, metrics, `miyamoto_delivery_attempts_total{node="n1",queue="failing",outcome="5xx"} 2`+"\n")
	require.Contains(t, metrics, `miyamoto_delivery_attempts_total{node="n1",queue="failing",outcome="refused"} 2`+"\n")
	require.Contains(t, metrics, `miyamoto_delivery_lateness_seconds_count{node="n1",queue="failing"} 4`+"\n")
	require.Contains(t, metrics, `miyamoto_delivery_duration_seconds_bucket{node="n1",queue="failing",le="+Inf"} 4`+"\n")
	require.Contains(t, metrics, `miyamoto_deliveries_total{node="n1",class="5xx"} 2`+"\n", "the older metric still counts")
	require.Contains(t, metrics, `miyamoto_queue_tasks{node="n1",queue="failing",state="dead"} 2`+"\n", "depth from the node's counters")
	require.Contains(t, metrics, `miyamoto_queue_tasks{node="n1",queue="failing",state="scheduled"} 0`+"\n")
}

// waitHistory polls GET /v1/tasks/{id} until the task reaches state.
func waitHistory(t *testing.T, base, id, state string) historyView {
	t.Helper()
	var v historyView
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		v = historyView{}
		require.Equal(t, 200, call(t, "GET", base+"/v1/tasks/"+id, &v))
		if v.State == state {
			return v
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("task %s is %q, not %q, after 10 s", id, v.State, state)
	return v
}
