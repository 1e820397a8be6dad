package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/node"
)

const (
	oldToken = "old-3f9c1e7a5b2d4c6e8f0a1b3c5d7e9f1a"
	newToken = "new-8e2d4f6a0c1b3d5e7f9a2c4e6b8d0f1c"
)

// doReq sends one request with the given headers (name, value pairs).
func doReq(t *testing.T, h http.Handler, method, path, body string, headers ...string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Set(headers[i], headers[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// requireError checks a JSON error answer: its code, and the field it names.
func requireError(t *testing.T, w *httptest.ResponseRecorder, code int, field string) map[string]string {
	t.Helper()
	require.Equal(t, code, w.Code, w.Body.String())
	require.Equal(t, "application/json", w.Header().Get("Content-Type"))
	var e map[string]string
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &e), w.Body.String())
	require.Equal(t, field, e["field"], w.Body.String())
	require.NotEmpty(t, e["error"])
	return e
}

const formCT = "application/x-www-form-urlencoded"

func TestAuthRequiresABearerToken(t *testing.T) {
	b := &fakeBackend{}
	var logs bytes.Buffer
	h := NewHandler(b, Config{Tokens: []string{oldToken, newToken},
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	const task = "task.url=http://w.test/"

	refused := map[string][]string{
		"missing":           nil,
		"empty bearer":      {"Authorization", "Bearer "},
		"other scheme":      {"Authorization", "Basic " + oldToken},
		"token alone":       {"Authorization", oldToken},
		"wrong":             {"Authorization", "Bearer not-the-token"},
		"a token's prefix":  {"Authorization", "Bearer " + oldToken[:len(oldToken)-1]},
		"a token and more":  {"Authorization", "Bearer " + oldToken + "x"},
		"both tokens glued": {"Authorization", "Bearer " + oldToken + newToken},
	}
	for name, hdr := range refused {
		t.Run(name, func(t *testing.T) {
			w := doReq(t, h, "POST", "/q", task, append([]string{"Content-Type", formCT}, hdr...)...)
			requireError(t, w, http.StatusUnauthorized, "Authorization")
			require.True(t, strings.HasPrefix(w.Header().Get("WWW-Authenticate"), "Bearer"), w.Header().Get("WWW-Authenticate"))
		})
	}
	require.Empty(t, b.got, "a refused request must not reach the node")
	require.Contains(t, logs.String(), "wrong bearer token")
	require.NotContains(t, logs.String(), "not-the-token", "a presented token must never be logged")
	require.NotContains(t, logs.String(), oldToken[:20])

	for i, tok := range []string{oldToken, newToken} {
		w := doReq(t, h, "POST", "/q", task, "Content-Type", formCT, "Authorization", "Bearer "+tok)
		require.Equal(t, http.StatusOK, w.Code, w.Body.String())
		require.Len(t, b.got, i+1)
	}
	// The scheme is case-insensitive (RFC 9110), spaces around the token are not part of it.
	require.Equal(t, http.StatusOK, doReq(t, h, "POST", "/q", task, "Content-Type", formCT, "Authorization", "bearer  "+newToken+" ").Code)
}

func TestAuthCoversEveryEndpointButHealthz(t *testing.T) {
	b := &fakeBackend{tasks: map[string]node.TaskStatus{"t1": {Task: &node.Task{ID: "t1", Queue: "q", URL: "http://w/"}, State: node.StateScheduled}}}
	h := NewHandler(b, Config{Tokens: []string{oldToken}})

	w := doReq(t, h, "GET", "/healthz", "")
	require.Equal(t, http.StatusOK, w.Code, "the health check stays open")
	require.Equal(t, http.StatusOK, doReq(t, h, "HEAD", "/healthz", "").Code)
	w = doReq(t, h, "GET", "/livez", "")
	require.Equal(t, http.StatusOK, w.Code, "so does the liveness check")
	require.JSONEq(t, `{"status": "alive"}`, w.Body.String())

	for _, c := range []struct{ method, path string }{
		{"GET", "/metrics"}, {"GET", "/v1/cluster"}, {"GET", "/v1/tasks/t1"}, {"DELETE", "/v1/tasks/t1"},
		{"POST", "/v1/tasks/t1/retry"}, {"GET", "/v1/nothing"}, {"POST", "/healthz"}, {"GET", "/healthz/"}, {"POST", "/livez"},
		{"GET", "/x/../metrics"}, {"POST", "/q"},
	} {
		w := doReq(t, h, c.method, c.path, "")
		requireError(t, w, http.StatusUnauthorized, "Authorization")
		require.NotContains(t, w.Body.String(), "miyamoto_up", "%s %s", c.method, c.path)
	}
	w = doReq(t, h, "GET", "/metrics", "", "Authorization", "Bearer "+oldToken)
	require.Equal(t, http.StatusOK, w.Code)
	require.Equal(t, "miyamoto_up 1\n", w.Body.String())
	require.Equal(t, http.StatusOK, doReq(t, h, "GET", "/v1/tasks/t1", "", "Authorization", "Bearer "+oldToken).Code)
}

func TestConfigValidateRefusesUnusableTokens(t *testing.T) {
	require.NoError(t, Config{}.Validate())
	require.NoError(t, Config{Tokens: []string{oldToken, newToken}}.Validate())
	for _, bad := range [][]string{{""}, {oldToken, ""}, {"secret with-space"}, {"secret\n"}, {"sécret"}} {
		err := Config{Tokens: bad}.Validate()
		require.Error(t, err, "%q", bad)
		require.NotContains(t, err.Error(), "secret", "a token must not show in errors")
		require.Panics(t, func() { NewHandler(&fakeBackend{}, Config{Tokens: bad}) }, "an unusable token must not leave the API open or locked unnoticed")
	}
}

// Each limit answers its 4xx naming the field, and nothing reaches the node.
func TestLimits(t *testing.T) {
	url := func(n int) string { return "http://w.test/" + strings.Repeat("a", n-len("http://w.test/")) }
	formParams := func(n int) string {
		var s strings.Builder
		s.WriteString("task.url=http://w.test/")
		for i := range n {
			fmt.Fprintf(&s, "&p%d=%d", i, i)
		}
		return s.String()
	}
	jsonParams := func(n int) string {
		ps := make([]string, n)
		for i := range ps {
			ps[i] = fmt.Sprintf(`"p%d": %d`, i, i)
		}
		return `{"url": "http://w.test/", "params": {` + strings.Join(ps, ", ") + `}}`
	}
	jsonHeaders := func(n, valueLen int) string {
		hs := make([]string, n)
		for i := range hs {
			hs[i] = fmt.Sprintf(`"X-H%d": %q`, i, strings.Repeat("v", valueLen))
		}
		return `{"url": "http://w.test/", "headers": {` + strings.Join(hs, ", ") + `}}`
	}
	small := Config{MaxBody: 1000, MaxURL: 40, MaxParams: 3, MaxTaskHeaders: 2, MaxTaskHeaderBytes: 30}
	cases := []struct {
		name     string
		cfg      Config
		path, ct string
		body     string
		code     int
		field    string // "" when the request must pass
	}{
		{"url at the default limit", Config{}, "/q", formCT, "task.url=" + url(2048), 200, ""},
		{"url over the default limit (form)", Config{}, "/q", formCT, "task.url=" + url(2049), 400, "url"},
		{"url over the default limit (json)", Config{}, "/q", "application/json", `{"url": "` + url(2049) + `"}`, 400, "url"},
		{"escaped url counts unescaped", Config{MaxURL: 20}, "/q", formCT, "task.url=http%3A%2F%2Fw.test%2F12345", 200, ""},
		{"url over a set limit", small, "/q", formCT, "task.url=" + url(41), 400, "url"},
		{"params at the default limit (form)", Config{}, "/q", formCT, formParams(1000), 200, ""},
		{"params over the default limit (form)", Config{}, "/q", formCT, formParams(1001), 400, "params"},
		{"params at the default limit (json)", Config{}, "/q", "application/json", jsonParams(1000), 200, ""},
		{"params over the default limit (json)", Config{}, "/q", "application/json", jsonParams(1001), 400, "params"},
		{"params over a set limit (form)", small, "/q", formCT, formParams(4), 400, "params"},
		{"array elements count (json)", small, "/q", "application/json", `{"url": "http://w.test/", "params": {"a": [1, 2], "b": [3, 4]}}`, 400, "params"},
		{"empty arrays count (json)", small, "/q", "application/json", `{"url": "http://w.test/", "params": {"a": [], "b": [], "c": [], "d": []}}`, 400, "params"},
		{"task fields are not params", small, "/q", formCT, "task.url=http://w.test/&task.name=n&task.method=PUT&task.countdown=1&a=1&b=2&c=3", 200, ""},
		{"headers at the default limit", Config{}, "/q", "application/json", jsonHeaders(100, 1), 200, ""},
		{"headers over the default count", Config{}, "/q", "application/json", jsonHeaders(101, 1), 400, "headers"},
		{"headers over the default size", Config{}, "/q", "application/json", jsonHeaders(2, 9000), 400, "headers"},
		{"headers over a set count", small, "/q", "application/json", jsonHeaders(3, 1), 400, "headers"},
		{"headers over a set size", small, "/q", "application/json", jsonHeaders(1, 30), 400, "headers"},
		{"content-type header counts", small, "/q", "application/json", `{"url": "http://w.test/", "headers": {"X-A": "1", "Content-Type": "text/plain"}, "body": "x"}`, 200, ""},
		{"header name not a token", Config{}, "/q", "application/json", `{"url": "http://w.test/", "headers": {"X A": "1"}}`, 400, "headers"},
		{"header value with a line break", Config{}, "/q", "application/json", `{"url": "http://w.test/", "headers": {"X-A": "1\r\nX-Evil: 2"}}`, 400, "headers.X-A"},
		{"header value not a string", Config{}, "/q", "application/json", `{"url": "http://w.test/", "headers": {"X-A": 1}}`, 400, "headers.X-A"},
		{"headers not an object", Config{}, "/q", "application/json", `{"url": "http://w.test/", "headers": ["X-A"]}`, 400, "headers"},
		{"method not a token (form)", Config{}, "/q", formCT, "task.url=http://w.test/&task.method=GET%20/x", 400, "task.method"},
		{"method too long (json)", Config{}, "/q", "application/json", `{"url": "http://w.test/", "method": "` + strings.Repeat("P", 33) + `"}`, 400, "method"},
		{"url net/url cannot parse", Config{}, "/q", formCT, "task.url=http://w.test/%25zz", 400, "url"},
		{"url with a bad port", Config{}, "/q", "application/json", `{"url": "http://w.test:port/"}`, 400, "url"},
		{"url without a host name", Config{}, "/q", formCT, "task.url=http://:80/", 400, "url"},
		{"name too long", Config{}, "/q", formCT, "task.url=http://w.test/&task.name=" + strings.Repeat("n", 501), 400, "name"},
		{"queue name too long", Config{}, "/" + strings.Repeat("q", 101), formCT, "task.url=http://w.test/", 400, "queue"},
		{"body over a set limit", small, "/q", formCT, "task.url=http://w.test/&pad=" + strings.Repeat("x", 1000), 413, "body"},
		{"body at a set limit", small, "/q", formCT, "task.url=http://w.test/&pad=" + strings.Repeat("x", 1000-len("task.url=http://w.test/&pad=")), 200, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := &fakeBackend{}
			w := doReq(t, NewHandler(b, c.cfg), "POST", c.path, c.body, "Content-Type", c.ct)
			if c.field == "" {
				require.Equal(t, c.code, w.Code, w.Body.String())
				require.Len(t, b.got, 1)
				return
			}
			requireError(t, w, c.code, c.field)
			require.Empty(t, b.got, "a refused request must not reach the node")
		})
	}
}

// countingReader yields x forever and counts what it gave.
type countingReader struct{ n int64 }

func (r *countingReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	r.n += int64(len(p))
	return len(p), nil
}

func TestOversizedBodyIsNotReadBeyondTheLimit(t *testing.T) {
	const limit = 4096
	h := NewHandler(&fakeBackend{}, Config{MaxBody: limit})

	// No Content-Length (chunked): it stops one byte past the limit.
	src := &countingReader{}
	r := httptest.NewRequest("POST", "/q", io.MultiReader(strings.NewReader("task.url=http://w.test/&pad="), src))
	r.ContentLength = -1
	r.Header.Set("Content-Type", formCT)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	requireError(t, w, http.StatusRequestEntityTooLarge, "body")
	require.LessOrEqual(t, src.n, int64(limit+1), "read past the limit")

	// A Content-Length over the limit: nothing is read at all.
	src = &countingReader{}
	r = httptest.NewRequest("POST", "/q", src)
	r.ContentLength = 10 << 20
	w = httptest.NewRecorder()
	h.ServeHTTP(w, r)
	requireError(t, w, http.StatusRequestEntityTooLarge, "body")
	require.Zero(t, src.n)

	// The queue settings endpoint too.
	src = &countingReader{}
	r = httptest.NewRequest("PUT", "/v1/queues/q", src)
	r.ContentLength = -1
	w = httptest.NewRecorder()
	NewHandler(&queueFake{}, Config{}).ServeHTTP(w, r)
	requireError(t, w, http.StatusRequestEntityTooLarge, "body")
	require.LessOrEqual(t, src.n, int64(64<<10+1))
}

// queueFake is a fakeBackend with the queue endpoints.
type queueFake struct{ fakeBackend }

func (*queueFake) QueueSetting(context.Context, string) (node.QueueSetting, error) {
	return node.QueueSetting{}, nil
}
func (*queueFake) SetQueue(context.Context, string, node.QueueConfig, node.SettingFields, bool) (node.QueueSetting, error) {
	return node.QueueSetting{}, nil
}
func (*queueFake) Queues(context.Context) ([]QueueView, error) { return nil, nil }
func (*queueFake) ClusterCounts(context.Context) (map[string]map[string]int, []string, error) {
	return nil, nil, nil
}
func (*queueFake) PurgeQueue(context.Context, string) (node.QueueSetting, int, error) {
	return node.QueueSetting{}, 0, nil
}
func (*queueFake) DeleteQueue(context.Context, string, bool) (node.QueueSetting, int, error) {
	return node.QueueSetting{}, 0, nil
}

var _ QueueBackend = (*queueFake)(nil)

func (*queueFake) ListTasks(context.Context, string, node.TaskState, string, int) ([]node.TaskStatus, []string, error) {
	return nil, nil, nil
}

// allocated returns the bytes f allocates.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// A body of a million (or 200,000) tiny params stops at the limit: it costs a few times its
// own size (a JSON body is copied by the decoder), not a million entries: a
// strings.Split of the form allocates 9 times its size, a map decode of the JSON
// 22 times.
func TestMillionParamsStopAtTheLimit(t *testing.T) {
	lim := limits{url: DefaultMaxURL, params: DefaultMaxParams, headers: DefaultMaxTaskHeaders, headerBytes: DefaultMaxTaskHeaderBytes}
	form := []byte("task.url=http://w.test/" + strings.Repeat("&a", 1_000_000))
	var err error
	n := allocated(func() { _, err = parseTask(formCT, form, lim) })
	requireField(t, err, "params")
	t.Logf("form: %d bytes allocated for %d bytes", n, len(form))
	require.Less(t, n, uint64(2*len(form)), "parsing allocated %d bytes for a %d-byte form", n, len(form))

	var js bytes.Buffer
	js.WriteString(`{"url": "http://w.test/", "params": {`)
	for i := range 200_000 {
		if i > 0 {
			js.WriteByte(',')
		}
		fmt.Fprintf(&js, `"%d":1`, i)
	}
	js.WriteString(`}}`)
	n = allocated(func() { _, err = parseTask("application/json", js.Bytes(), lim) })
	requireField(t, err, "params")
	t.Logf("JSON params: %d bytes allocated for %d bytes", n, js.Len())
	require.Less(t, n, uint64(8*js.Len()), "parsing allocated %d bytes for a %d-byte JSON task", n, js.Len())

	js.Reset()
	js.WriteString(`{"url": "http://w.test/", "headers": {`)
	for i := range 200_000 {
		if i > 0 {
			js.WriteByte(',')
		}
		fmt.Fprintf(&js, `"%d":""`, i)
	}
	js.WriteString(`}}`)
	n = allocated(func() { _, err = parseTask("application/json", js.Bytes(), lim) })
	requireField(t, err, "headers")
	t.Logf("JSON headers: %d bytes allocated for %d bytes", n, js.Len())
	require.Less(t, n, uint64(8*js.Len()), "parsing allocated %d bytes for a %d-byte JSON task", n, js.Len())
}

func requireField(t *testing.T, err error, field string) {
	t.Helper()
	var fe *node.FieldError
	require.ErrorAs(t, err, &fe)
	require.Equal(t, field, fe.Field, fe.Error())
}

// The JSON walkers keep what map decoding did: sorted keys, arrays in order, the
// last of two equal keys, null as an empty value.
func TestJSONParamsAndHeadersKeepTheirMeaning(t *testing.T) {
	lim := limits{url: 100, params: 10, headers: 10, headerBytes: 1000}
	req, err := parseTask("application/json", []byte(`{"url": "http://w.test/", "params": {"b": [1, "x y", true, null], "a": 2, "a": "z", "e": []}, "headers": {"X-B": "1", "X-A": null, "X-B": "2", "content-type": "text/csv"}}`), lim)
	require.NoError(t, err)
	require.Equal(t, "a=z&b=1&b=x+y&b=true&b=", string(req.Body))
	require.Equal(t, "text/csv", req.ContentType)
	require.Equal(t, []node.Header{{Name: "X-A", Value: ""}, {Name: "X-B", Value: "2"}}, req.Headers)

	req, err = parseTask("application/json", []byte(`{"url": "http://w.test/", "params": null, "headers": null, "body": "x"}`), lim)
	require.NoError(t, err)
	require.Equal(t, "x", string(req.Body))
	require.Nil(t, req.Headers)

	_, err = parseTask("application/json", []byte(`{"url": "http://w.test/", "params": [1]}`), lim)
	requireField(t, err, "params")
	_, err = parseTask("application/json", []byte(`{"url": "http://w.test/", "params": {"a": [[1]]}}`), lim)
	requireField(t, err, "params.a")
}

func TestCheckURLHook(t *testing.T) {
	var seen []string
	check := func(_ context.Context, u string) error {
		seen = append(seen, u)
		switch {
		case strings.Contains(u, "10.0.0.1"):
			return errors.New("resolves to a private address (10.0.0.1)")
		case strings.Contains(u, "slow"):
			return fmt.Errorf("resolving slow.test: %w", context.DeadlineExceeded)
		}
		return nil
	}
	b := &fakeBackend{tasks: map[string]node.TaskStatus{
		"dead": {Task: &node.Task{ID: "dead", Queue: "q", URL: "http://10.0.0.1/old", Method: "POST"}, State: node.StateDead},
	}}
	h := NewHandler(b, Config{CheckURL: check})

	w := doReq(t, h, "POST", "/q", "task.url=http://10.0.0.1/x", "Content-Type", formCT)
	e := requireError(t, w, http.StatusBadRequest, "url")
	require.Equal(t, "url: resolves to a private address (10.0.0.1)", e["error"])
	w = doReq(t, h, "POST", "/q", `{"url": "http://10.0.0.1/x"}`, "Content-Type", "application/json")
	requireError(t, w, http.StatusBadRequest, "url")

	w = doReq(t, h, "POST", "/q", "task.url=http://slow.test/", "Content-Type", formCT)
	requireError(t, w, http.StatusServiceUnavailable, "url")
	require.Equal(t, "1", w.Header().Get("Retry-After"))

	w = doReq(t, h, "POST", "/v1/tasks/dead/retry", "")
	requireError(t, w, http.StatusBadRequest, "url")
	require.Empty(t, b.got, "a refused URL must not reach the node")

	// It sees only URLs the parser and node.ValidateRequest accepted.
	seen = nil
	requireError(t, doReq(t, h, "POST", "/q", "task.url=ftp://w.test/", "Content-Type", formCT), http.StatusBadRequest, "url")
	require.Empty(t, seen)
	require.Equal(t, http.StatusOK, doReq(t, h, "POST", "/q", "task.url=http://w.test/ok", "Content-Type", formCT).Code)
	require.Equal(t, []string{"http://w.test/ok"}, seen)
	require.Len(t, b.got, 1)
}

// A sentinel added to the table answers its code, its own text and Retry-After,
// never the text of an error wrapping it.
func TestSentinelTable(t *testing.T) {
	errFull := errors.New("this node holds its limit of pending tasks")
	saved := sentinels
	sentinels = append(sentinels[:len(sentinels):len(sentinels)],
		struct {
			err                error
			code               int
			retryAfter         time.Duration
			field, status, msg string
		}{err: errFull, code: http.StatusServiceUnavailable, retryAfter: 4500 * time.Millisecond, status: "full"})
	t.Cleanup(func() { sentinels = saved })

	h := NewHandler(&fakeBackend{err: fmt.Errorf("node n3 at 10.1.2.3: %w", errFull)}, Config{})
	w := doReq(t, h, "POST", "/q", "task.url=http://w.test/", "Content-Type", formCT)
	require.Equal(t, http.StatusServiceUnavailable, w.Code)
	require.Equal(t, "5", w.Header().Get("Retry-After"))
	require.JSONEq(t, `{"error": "this node holds its limit of pending tasks", "status": "full"}`, w.Body.String())

	// The existing ones answer as before.
	w = doReq(t, NewHandler(&fakeBackend{err: fmt.Errorf("wrapped: %w", node.ErrOutcomeUnknown)}, Config{}), "POST", "/q", "task.url=http://w.test/", "Content-Type", formCT)
	require.Equal(t, http.StatusServiceUnavailable, w.Code)
	require.Equal(t, "1", w.Header().Get("Retry-After"))
	require.JSONEq(t, `{"error": "`+node.ErrOutcomeUnknown.Error()+`", "status": "unknown"}`, w.Body.String())
	w = doReq(t, NewHandler(&fakeBackend{}, Config{}), "GET", "/v1/tasks/nope", "")
	require.JSONEq(t, `{"error": "id: no such task", "field": "id"}`, w.Body.String())
	require.Equal(t, http.StatusNotFound, w.Code)
}

// A full node or queue answers 503 with Retry-After and says nothing was stored.
func TestFullAnswers503(t *testing.T) {
	w := doReq(t, NewHandler(&fakeBackend{err: fmt.Errorf("replica n2: %w", node.ErrNodeFull)}, Config{}), "POST", "/q", "task.url=http://w.test/", "Content-Type", formCT)
	require.Equal(t, http.StatusServiceUnavailable, w.Code)
	require.Equal(t, "1", w.Header().Get("Retry-After"))
	require.JSONEq(t, `{"error": "`+node.ErrNodeFull.Error()+`", "status": "full"}`, w.Body.String())

	w = doReq(t, NewHandler(&fakeBackend{err: fmt.Errorf("%w (10 tasks in queue %q)", node.ErrQueueFull, "q")}, Config{}), "POST", "/q", "task.url=http://w.test/", "Content-Type", formCT)
	require.Equal(t, http.StatusServiceUnavailable, w.Code)
	require.Equal(t, "1", w.Header().Get("Retry-After"))
	require.JSONEq(t, `{"error": "queue: `+node.ErrQueueFull.Error()+`", "field": "queue", "status": "full"}`, w.Body.String())
}

// Oversized request targets and headers get JSON answers naming what is too large,
// before the token check reads them.
func TestRequestHeaderLimits(t *testing.T) {
	h := NewHandler(&fakeBackend{}, Config{MaxRequestHeader: 1024, Tokens: []string{"tok"}})
	w := doReq(t, h, "GET", "/v1/tasks/"+strings.Repeat("a", 2000), "")
	require.Equal(t, http.StatusRequestURITooLong, w.Code)
	require.JSONEq(t, `{"error": "path: the request target is 2010 bytes; at most 1024", "field": "path"}`, w.Body.String())

	w = doReq(t, h, "GET", "/healthz", "", "X-Big", strings.Repeat("b", 2000))
	require.Equal(t, http.StatusRequestHeaderFieldsTooLarge, w.Code)
	require.Contains(t, w.Body.String(), `"field": "headers"`)

	w = doReq(t, h, "GET", "/healthz", "", "X-Small", strings.Repeat("b", 500))
	require.Equal(t, http.StatusOK, w.Code, "within the limit")
}

// A CheckURL error wrapping ErrCheckLater (a DNS timeout) is not bad input: 503.
func TestCheckURLLater(t *testing.T) {
	h := NewHandler(&fakeBackend{}, Config{CheckURL: func(context.Context, string) error {
		return fmt.Errorf("%w: lookup timed out", ErrCheckLater)
	}})
	w := doReq(t, h, "POST", "/q", "task.url=http://w.test/", "Content-Type", formCT)
	require.Equal(t, http.StatusServiceUnavailable, w.Code)
	require.Equal(t, "1", w.Header().Get("Retry-After"))
	require.Contains(t, w.Body.String(), `"field": "url"`)
}
