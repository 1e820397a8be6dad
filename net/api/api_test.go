package api

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/node"
)

// fakeBackend records what reached it. Enqueue may be called concurrently (a
// batch enqueues its items so).
type fakeBackend struct {
	mu       sync.Mutex
	got      []node.EnqueueRequest
	err      error
	tasks    map[string]node.TaskStatus
	notReady string // what NotReady says
}

func (f *fakeBackend) Enqueue(_ context.Context, req node.EnqueueRequest) (string, error) {
	if f.err != nil {
		return "", f.err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, req)
	return "7e998f34-bed7-44f4-80cd-49620b0ab562", nil
}

func (f *fakeBackend) Lookup(_ context.Context, id string) (node.TaskStatus, error) {
	st, ok := f.tasks[id]
	if !ok {
		return st, node.ErrNotFound
	}
	return st, nil
}

func (f *fakeBackend) Cancel(_ context.Context, id string) (node.TaskState, error) {
	st, ok := f.tasks[id]
	if !ok {
		return 0, node.ErrNotFound
	}
	if st.State.Final() {
		return st.State, nil
	}
	return node.StateCancelled, nil
}

func (f *fakeBackend) NotReady(context.Context) string { return f.notReady }

func (f *fakeBackend) WriteMetrics(w io.Writer) { io.WriteString(w, "miyamoto_up 1\n") }

func (f *fakeBackend) Cluster() Cluster {
	return Cluster{Self: "n1", Replicas: 1, Members: []Member{{ID: "n1", Self: true, Reachable: true}}}
}

func do(t *testing.T, h http.Handler, method, path, ct, body string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	if ct != "" {
		r.Header.Set("Content-Type", ct)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// The original README's two curl commands, as curl sends them.
func TestSeedREADMEExamples(t *testing.T) {
	b := &fakeBackend{}
	h := NewHandler(b, Config{})
	w := do(t, h, "POST", "/queue", "application/x-www-form-urlencoded", "task.url=http://localhost:9099/worker&task.countdown=5&foo=bar")
	require.Equal(t, 200, w.Code, w.Body.String())
	require.Equal(t, `{"status": "scheduled", "id": "7e998f34-bed7-44f4-80cd-49620b0ab562"}`+"\n", w.Body.String())
	got := b.got[0]
	require.Equal(t, "queue", got.Queue)
	require.Equal(t, "http://localhost:9099/worker", got.URL)
	require.Equal(t, 5*time.Second, got.Countdown)
	require.Equal(t, "foo=bar", string(got.Body))
	require.Equal(t, "application/x-www-form-urlencoded", got.ContentType)
	require.Equal(t, "POST", got.Method)

	w = do(t, h, "POST", "/queue", "applicatoin/json", `{"url": "http://localhost:9099/worker", "params": {"foo": "bar"}}`)
	require.Equal(t, 200, w.Code, w.Body.String())
	got = b.got[1]
	require.Equal(t, "foo=bar", string(got.Body))
	require.Zero(t, got.Countdown)
	require.Equal(t, "application/x-www-form-urlencoded", got.ContentType)
}

func TestJSONBodiesAndHeaders(t *testing.T) {
	b := &fakeBackend{}
	h := NewHandler(b, Config{})
	w := do(t, h, "POST", "/emails", "application/json", `{"url": "https://example.test/x", "method": "PUT", "name": "welcome-42", "countdown": 1.5, "headers": {"X-B": "2", "X-A": "1"}, "body": {"k": [1, 2]}}`)
	require.Equal(t, 200, w.Code, w.Body.String())
	got := b.got[0]
	require.Equal(t, "PUT", got.Method)
	require.Equal(t, "welcome-42", got.Name)
	require.Equal(t, 1500*time.Millisecond, got.Countdown)
	require.Equal(t, []node.Header{{Name: "X-A", Value: "1"}, {Name: "X-B", Value: "2"}}, got.Headers)
	require.JSONEq(t, `{"k": [1, 2]}`, string(got.Body))
	require.Equal(t, "application/json", got.ContentType)

	w = do(t, h, "POST", "/q", "application/json", `{"url": "http://w.test/", "eta": 1900000000, "body": "raw text"}`)
	require.Equal(t, 200, w.Code, w.Body.String())
	require.Equal(t, time.Unix(1900000000, 0), b.got[1].ETA)
	require.Equal(t, "raw text", string(b.got[1].Body))
}

// Bad requests get a 4xx JSON error naming the field, and nothing reaches the node.
func TestBadRequests(t *testing.T) {
	cases := []struct {
		name, path, ct, body string
		code                 int
		field                string
	}{
		{"no url (form)", "/q", "application/x-www-form-urlencoded", "foo=bar", 400, "task.url"},
		{"no url (json)", "/q", "application/json", `{"params": {}}`, 400, "url"},
		{"ftp url", "/q", "application/x-www-form-urlencoded", "task.url=ftp://x/y", 400, "url"},
		{"relative url", "/q", "application/json", `{"url": "/worker"}`, 400, "url"},
		{"negative countdown", "/q", "application/x-www-form-urlencoded", "task.url=http://w/&task.countdown=-1", 400, "task.countdown"},
		{"countdown not a number", "/q", "application/json", `{"url": "http://w/", "countdown": "soon"}`, 400, "countdown"},
		{"unparseable eta", "/q", "application/x-www-form-urlencoded", "task.url=http://w/&task.eta=tomorrow", 400, "task.eta"},
		{"malformed json", "/q", "application/json", `{"url": "http://w/"`, 400, "body"},
		{"unknown json field", "/q", "application/json", `{"url": "http://w/", "colour": 1}`, 400, "colour"},
		{"unnamed json field", "/q", "application/json", `{"url": "http://w/", "": 1}`, 400, "body"},
		{"unknown task field", "/q", "application/x-www-form-urlencoded", "task.url=http://w/&task.colour=red", 400, "task.colour"},
		{"params and body", "/q", "application/json", `{"url": "http://w/", "params": {"a": 1}, "body": "x"}`, 400, "body"},
		{"nested param", "/q", "application/json", `{"url": "http://w/", "params": {"a": {"b": 1}}}`, 400, "params.a"},
		{"bad queue name", "/bad%20queue", "application/x-www-form-urlencoded", "task.url=http://w/", 400, "queue"},
		{"reserved queue", "/v1", "application/x-www-form-urlencoded", "task.url=http://w/", 400, "queue"},
		{"oversize body", "/q", "application/x-www-form-urlencoded", "task.url=http://w/&pad=" + strings.Repeat("x", 2<<20), 413, "body"},
		{"unknown endpoint", "/v1/nothing", "", "", 404, "path"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := &fakeBackend{}
			w := do(t, NewHandler(b, Config{}), "POST", c.path, c.ct, c.body)
			if c.name == "unknown endpoint" {
				w = do(t, NewHandler(b, Config{}), "GET", c.path, "", "")
			}
			require.Equal(t, c.code, w.Code, w.Body.String())
			var e map[string]string
			require.NoError(t, json.Unmarshal(w.Body.Bytes(), &e), w.Body.String())
			require.Equal(t, c.field, e["field"], w.Body.String())
			require.NotEmpty(t, e["error"])
			require.Empty(t, b.got, "a bad request must not reach the node")
		})
	}
}

func TestUnavailableIs503(t *testing.T) {
	h := NewHandler(&fakeBackend{err: node.ErrOutcomeUnknown}, Config{})
	w := do(t, h, "POST", "/q", "application/x-www-form-urlencoded", "task.url=http://w/")
	require.Equal(t, 503, w.Code)
	require.Contains(t, w.Body.String(), "re-sending it with a task name is safe")
	require.Equal(t, "1", w.Header().Get("Retry-After"))
}

func TestTaskLookupAndCancel(t *testing.T) {
	task := &node.Task{ID: "t1", Queue: "q", URL: "http://w/", Method: "POST", ETA: time.Unix(100, 0), Replicas: []node.NodeID{"n1", "n2"}}
	b := &fakeBackend{tasks: map[string]node.TaskStatus{
		"t1":   {Task: task, State: node.StateScheduled, Attempt: 2, Retries: 1, LastStatus: 503},
		"done": {Task: task, State: node.StateSucceeded},
	}}
	h := NewHandler(b, Config{})
	w := do(t, h, "GET", "/v1/tasks/t1", "", "")
	require.Equal(t, 200, w.Code)
	var v TaskView
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &v))
	require.Equal(t, "scheduled", v.State)
	require.EqualValues(t, 2, v.Attempts)
	require.Equal(t, 503, v.LastStatus)
	require.Equal(t, []string{"n1", "n2"}, v.Replicas)

	require.Equal(t, 404, do(t, h, "GET", "/v1/tasks/nope", "", "").Code)
	require.Equal(t, 200, do(t, h, "DELETE", "/v1/tasks/t1", "", "").Code)
	w = do(t, h, "DELETE", "/v1/tasks/done", "", "")
	require.Equal(t, 409, w.Code)
	require.Contains(t, w.Body.String(), "succeeded")
	require.Equal(t, 200, do(t, h, "GET", "/healthz", "", "").Code)
	require.Equal(t, "miyamoto_up 1\n", do(t, h, "GET", "/metrics", "", "").Body.String())
	require.Contains(t, do(t, h, "GET", "/v1/cluster", "", "").Body.String(), `"self": "n1"`)
}

// /healthz answers 503 with the backend's reason while the node cannot take a task,
// "starting" when it is starting and "unavailable" otherwise; /livez answers 200
// all along.
func TestHealthzSaysWhyAndLivezStaysUp(t *testing.T) {
	for _, c := range []struct{ reason, status string }{
		{"2 of 3 members unreachable: n2, n3", "unavailable"},
		{"2 of 3 members unreachable: n2, n3; starting: learning the queue settings from the other members", "unavailable"},
		{"starting: learning the queue settings from the other members", "starting"},
	} {
		h := NewHandler(&fakeBackend{notReady: c.reason}, Config{})
		w := do(t, h, "GET", "/healthz", "", "")
		require.Equal(t, http.StatusServiceUnavailable, w.Code)
		require.NotEmpty(t, w.Header().Get("Retry-After"))
		require.JSONEq(t, `{"status": "`+c.status+`", "reason": "`+c.reason+`"}`, w.Body.String())
		w = do(t, h, "GET", "/livez", "", "")
		require.Equal(t, http.StatusOK, w.Code)
		require.JSONEq(t, `{"status": "alive"}`, w.Body.String())
	}
	w := do(t, NewHandler(&fakeBackend{}, Config{}), "GET", "/healthz", "", "")
	require.Equal(t, http.StatusOK, w.Code)
	require.JSONEq(t, `{"status": "ok"}`, w.Body.String())
	// livez is not a queue.
	requireError(t, do(t, NewHandler(&fakeBackend{}, Config{}), "POST", "/livez", "application/x-www-form-urlencoded", "task.url=http://w/"), http.StatusBadRequest, "queue")
}

func TestDuplicateNameIs409(t *testing.T) {
	h := NewHandler(&fakeBackend{err: &node.DuplicateNameError{Queue: "q", Name: "welcome-1", ID: "abc"}}, Config{})
	w := do(t, h, "POST", "/q", "application/x-www-form-urlencoded", "task.url=http://w/&task.name=welcome-1")
	require.Equal(t, 409, w.Code)
	var e map[string]string
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &e))
	require.Equal(t, "abc", e["id"])
	require.Equal(t, "name", e["field"])
}

// describingBackend answers Describe with the history and Lookup without.
type describingBackend struct{ fakeBackend }

func (d *describingBackend) Describe(ctx context.Context, id string) (node.TaskStatus, error) {
	st, err := d.Lookup(ctx, id)
	st.Attempts = []node.DeliveryAttempt{
		{Number: 1, Node: "n2", Start: time.Unix(101, 500_000_000), Duration: 1500 * time.Millisecond, Status: 500, Body: "database is down"},
		{Number: 2, Node: "n1", Start: time.Unix(110, 0), Duration: 10 * time.Second, Error: node.ErrorTimeout, Message: "context deadline exceeded"},
	}
	return st, err
}

// GET /v1/tasks/{id} shows each attempt and why a dead task died; a task with no
// attempt shows an empty list, never null.
func TestTaskShowsItsAttemptsAndWhyItDied(t *testing.T) {
	task := &node.Task{ID: "t1", Queue: "q", URL: "http://w/", Method: "POST", ETA: time.Unix(100, 0), Replicas: []node.NodeID{"n1", "n2"}}
	b := &describingBackend{fakeBackend{tasks: map[string]node.TaskStatus{
		"t1": {Task: task, State: node.StateDead, Attempt: 2, Retries: 2, Reason: "retry limits reached (task_retry_limit 1) after 2 failed deliveries; last: timeout"},
	}}}
	w := do(t, NewHandler(b, Config{}), "GET", "/v1/tasks/t1", "", "")
	require.Equal(t, 200, w.Code)
	var v map[string]any
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &v))
	require.Equal(t, "retry limits reached (task_retry_limit 1) after 2 failed deliveries; last: timeout", v["dead_reason"])
	require.NotContains(t, v, "unknown_reason")
	require.Equal(t, []any{
		map[string]any{"attempt": 1.0, "node": "n2", "start": 101.5, "duration": 1.5, "status": 500.0, "body": "database is down"},
		map[string]any{"attempt": 2.0, "node": "n1", "start": 110.0, "duration": 10.0, "error": "timeout", "message": "context deadline exceeded"},
	}, v["attempts_history"])

	plain := &fakeBackend{tasks: map[string]node.TaskStatus{"t1": {Task: task, State: node.StateScheduled}}}
	w = do(t, NewHandler(plain, Config{}), "GET", "/v1/tasks/t1", "", "")
	require.Contains(t, w.Body.String(), `"attempts_history": []`)
	require.NotContains(t, w.Body.String(), "dead_reason")
}
