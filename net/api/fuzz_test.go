package api

// Fuzz targets for the enqueue parsers and handler. Run one with
//
//	go test -run '^$' -fuzz=FuzzParseForm -fuzztime=30s ./net/api/
//
// (or FuzzParseJSON, FuzzEnqueueHandler); a plain go test runs their seeds and
// every input kept in testdata/fuzz/<target>/ as regression cases.

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/node"
)

// fuzzLimits are small, so that the fuzzer crosses them often.
var fuzzLimits = limits{url: 64, params: 4, headers: 3, headerBytes: 64}

// parseBudget bounds one parse of a fuzz input (a few KiB): linear work takes
// microseconds, so only a blow-up or a hang reaches it.
const parseBudget = 2 * time.Second

// Form seeds: the seed README's example and the tests' forms.
var formSeeds = []string{
	"task.url=http://localhost:9099/worker&task.countdown=5&foo=bar",
	"task.url=http://w/&task.name=welcome-1",
	"foo=bar",
	"task.url=ftp://x/y",
	"task.url=http://w/&task.countdown=-1",
	"task.url=http://w/&task.eta=tomorrow",
	"task.url=http://w/&task.eta=1900000000.5&task.method=PUT",
	"task.url=http://w/&task.colour=red",
	"task.url=http://w/&task.url=http://x/",
	"task%2Eurl=http%3A%2F%2Fw%2F&a=1&a=2&&b=%20",
	"task.url=http://w.test/%25zz",
	"task.url=http://:80/",
	"task.url=http://w/&task.method=GET%20/x",
	"%zz=1",
	"a=%zz&task.url=http://w/",
	"task.url=http://w/&a&b&c&d&e",
	"task.url=http://w/" + strings.Repeat("a", 60),
	"",
}

// JSON seeds: the seed README's example and the tests' JSON tasks.
var jsonSeeds = []string{
	`{"url": "http://localhost:9099/worker", "params": {"foo": "bar"}}`,
	`{"url": "https://example.test/x", "method": "PUT", "name": "welcome-42", "countdown": 1.5, "headers": {"X-B": "2", "X-A": "1"}, "body": {"k": [1, 2]}}`,
	`{"url": "http://w.test/", "eta": 1900000000, "body": "raw text"}`,
	`{"params": {}}`,
	`{"url": "/worker"}`,
	`{"url": "http://w/", "countdown": "soon"}`,
	`{"url": "http://w/"`,
	`{"url": "http://w/", "colour": 1}`,
	`{"url": "http://w/", "params": {"a": 1}, "body": "x"}`,
	`{"url": "http://w/", "params": {"a": {"b": 1}}}`,
	`{"url": "http://w.test/", "params": {"b": [1, "x y", true, null], "a": 2, "a": "z", "e": []}, "headers": {"X-B": "1", "X-A": null, "X-B": "2", "content-type": "text/csv"}}`,
	`{"url": "http://w.test/", "params": null, "headers": null, "body": "x"}`,
	`{"url": "http://w.test/", "params": [1]}`,
	`{"url": "http://w.test/", "headers": {"X A": "1"}}`,
	`{"url": "http://w.test/", "headers": {"X-A": "1\r\nX-Evil: 2"}}`,
	`{"url": "http://w.test/", "headers": {"X-A": 1}}`,
	`{"url": "http://w.test/", "method": "GET /x"}`,
	`{"URL": "http://w.test/", "Params": {"a": 1}, "params": {"b": 2}}`,
	`{"url": "http://w.test/"} {}`,
	`{"url": null}`,
	`{"url": "http://w.test/", "params": {"a": 2, "a": "z", "b": [1, null]}, "headers": {"X-A": "1", "X-A": null}}`,
	`{"": ""}`,
}

// tchar is RFC 9110's token, written apart from node.ValidHeaderName to check it.
var tchar = regexp.MustCompile("^[!#$%&'*+\\-.^_`|~0-9A-Za-z]+$")

// requireParseError checks that a parser's error is a *node.FieldError naming a
// field: anything else would answer 503 instead of 400.
func requireParseError(t *testing.T, err error) {
	t.Helper()
	var fe *node.FieldError
	require.True(t, errors.As(err, &fe), "not a FieldError: %T %v", err, err)
	require.NotEmpty(t, fe.Field, err.Error())
}

// requireWithinLimits checks what the parsers promise of a request they return.
func requireWithinLimits(t *testing.T, req node.EnqueueRequest, lim limits) {
	t.Helper()
	require.LessOrEqual(t, len(req.URL), lim.url)
	if req.Method != "" {
		require.Contains(t, taskMethods, req.Method)
	}
	require.GreaterOrEqual(t, req.Countdown, time.Duration(0))
	require.LessOrEqual(t, req.Countdown, 365*24*time.Hour)
	if !req.ETA.IsZero() {
		require.False(t, req.ETA.Before(time.Unix(0, 0)) || req.ETA.After(time.Unix(1e11, 0)), "%v", req.ETA)
	}
	require.LessOrEqual(t, len(req.Headers), lim.headers)
	size := 0
	for _, h := range req.Headers {
		require.Regexp(t, tchar, h.Name)
		size += len(h.Name) + len(h.Value)
	}
	require.LessOrEqual(t, size, lim.headerBytes)
	require.LessOrEqual(t, len(req.ContentType), max(lim.headerBytes, len("text/plain; charset=utf-8")))
	for _, v := range append(headerValues(req.Headers), req.ContentType) {
		require.NotRegexp(t, "[\x00-\x08\x0a-\x1f\x7f]", v)
	}
}

func headerValues(hs []node.Header) []string {
	var vs []string
	for _, h := range hs {
		vs = append(vs, h.Value)
	}
	return vs
}

// requireDeliverable checks a request decodeTask accepted: valid for the node,
// and one net/http can send.
func requireDeliverable(t *testing.T, req node.EnqueueRequest) {
	t.Helper()
	cp := req
	require.NoError(t, node.ValidateRequest(&cp))
	hr, err := http.NewRequest(req.Method, req.URL, nil)
	require.NoError(t, err, "a delivery could never be sent")
	require.NotEmpty(t, hr.URL.Hostname())
}

// formPairs are the non-empty &-separated pairs of a form.
func formPairs(s string) []string {
	var out []string
	for _, p := range strings.Split(s, "&") {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

func timed(t *testing.T, f func()) {
	t.Helper()
	start := time.Now()
	f()
	require.Less(t, time.Since(start), parseBudget, "parsing took too long")
}

func FuzzParseForm(f *testing.F) {
	for _, s := range formSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var req node.EnqueueRequest
		var err error
		timed(t, func() { req, err = parseForm(body, fuzzLimits) })
		if err != nil {
			requireParseError(t, err)
			return
		}
		requireWithinLimits(t, req, fuzzLimits)
		require.Equal(t, "application/x-www-form-urlencoded", req.ContentType)
		// The worker's body is the input's pairs but the task fields, in order:
		// the same as a plain split of the whole form.
		var want []string
		for _, p := range formPairs(string(body)) {
			k, _, _ := strings.Cut(p, "=")
			key, err := url.QueryUnescape(k)
			require.NoError(t, err)
			if !strings.HasPrefix(key, "task.") {
				want = append(want, p)
			}
		}
		require.LessOrEqual(t, len(want), fuzzLimits.params)
		require.Equal(t, strings.Join(want, "&"), string(req.Body))

		var dec node.EnqueueRequest
		timed(t, func() { dec, err = decodeTask("q", "application/x-www-form-urlencoded", body, fuzzLimits) })
		if err != nil {
			requireParseError(t, err)
			return
		}
		require.NotEmpty(t, dec.URL)
		requireDeliverable(t, dec)
	})
}

func FuzzParseJSON(f *testing.F) {
	for _, s := range jsonSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var req node.EnqueueRequest
		var err error
		timed(t, func() { req, err = parseJSON(body, fuzzLimits) })
		if err != nil {
			requireParseError(t, err)
			return
		}
		requireWithinLimits(t, req, fuzzLimits)

		// Differential: params and headers mean what a plain map decode of them
		// meant before the bounded walkers replaced it.
		var jt jsonTask
		require.NoError(t, json.Unmarshal(body, &jt))
		if jt.Params != nil && !isNull(jt.Params) {
			var m map[string]any
			dec := json.NewDecoder(bytes.NewReader(jt.Params))
			dec.UseNumber()
			require.NoError(t, dec.Decode(&m))
			v := url.Values{}
			pairs := 0
			for k, val := range m {
				vals, isArray := val.([]any)
				if !isArray {
					vals = []any{val}
				}
				pairs += max(1, len(vals))
				for _, e := range vals {
					s, ok := scalar(e)
					require.True(t, ok, "params.%s accepted but not a scalar: %v", k, e)
					v.Add(k, s)
				}
			}
			require.LessOrEqual(t, pairs, fuzzLimits.params)
			require.Equal(t, v.Encode(), string(req.Body))
			_, err := url.ParseQuery(string(req.Body))
			require.NoError(t, err, "params must be sent as a valid form")
		}
		if jt.Headers != nil && !isNull(jt.Headers) {
			var m map[string]string
			require.NoError(t, json.Unmarshal(jt.Headers, &m))
			got := map[string]string{}
			for _, h := range req.Headers {
				got[h.Name] = h.Value
			}
			for k, v := range m {
				if strings.EqualFold(k, "Content-Type") {
					continue // the last one in sorted order is req.ContentType
				}
				require.Equal(t, v, got[k], "header %q", k)
			}
		}

		var dr node.EnqueueRequest
		timed(t, func() { dr, err = decodeTask("q", "application/json", body, fuzzLimits) })
		if err != nil {
			requireParseError(t, err)
			return
		}
		requireDeliverable(t, dr)
	})
}

// FuzzEnqueueHandler sends any body with any Content-Type to POST /q: the answer
// is 200, 400 or 413 with a JSON body, and only a 200 reaches the node, with a
// request within the limits.
func FuzzEnqueueHandler(f *testing.F) {
	for _, s := range formSeeds {
		f.Add("application/x-www-form-urlencoded", []byte(s))
		f.Add("", []byte(s))
	}
	for _, s := range jsonSeeds {
		f.Add("application/json", []byte(s))
		f.Add("applicatoin/json", []byte(s))
		f.Add("text/plain", []byte(s))
	}
	f.Add("application/json", []byte("["+strings.Join(jsonSeeds, ",")+"]"))
	f.Add("application/json", []byte(`[{"url": "http://w.test/"}, 1, null, [], {"url": "http://w.test/", "method": "GET", "params": {"a": 1}}]`))
	f.Add("", []byte(`[]`))
	f.Add("application/json", []byte(`[{"url": "http://w.test/"},`))
	f.Add("multipart/form-data; boundary=x", []byte("--x\r\n\r\n--x--"))
	f.Add("application/x-www-form-urlencoded", bytes.Repeat([]byte("a=1&"), 1100))
	cfg := Config{MaxBody: 4096, MaxURL: fuzzLimits.url, MaxParams: fuzzLimits.params,
		MaxTaskHeaders: fuzzLimits.headers, MaxTaskHeaderBytes: fuzzLimits.headerBytes}
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		b := &fakeBackend{}
		r := httptest.NewRequest("POST", "/q", bytes.NewReader(body))
		r.Header.Set("Content-Type", contentType)
		w := httptest.NewRecorder()
		timed(t, func() { NewHandler(b, cfg).ServeHTTP(w, r) })

		require.Contains(t, []int{200, 400, 413}, w.Code, w.Body.String())
		require.Equal(t, "application/json", w.Header().Get("Content-Type"))
		require.True(t, json.Valid(w.Body.Bytes()), "not JSON: %q", w.Body.String())
		if w.Code == 200 && isBatch(body) {
			requireBatchAnswer(t, w.Body.Bytes(), b)
			return
		}
		var ans map[string]string
		require.NoError(t, json.Unmarshal(w.Body.Bytes(), &ans), w.Body.String())
		if w.Code != 200 {
			require.NotEmpty(t, ans["field"], w.Body.String())
			require.NotEmpty(t, ans["error"], w.Body.String())
			require.Empty(t, b.got, "a refused request reached the node")
			require.Equal(t, w.Code == 413, len(body) > int(cfg.MaxBody))
			return
		}
		require.Equal(t, "scheduled", ans["status"])
		require.Len(t, b.got, 1)
		require.Equal(t, "q", b.got[0].Queue)
		requireWithinLimits(t, b.got[0], fuzzLimits)
		requireDeliverable(t, b.got[0])
	})
}

// requireBatchAnswer checks a batch's answer: at most MaxBatch results, each
// scheduled or a 400, 409 or 503 error with a message; exactly the scheduled ones
// reached the node, each within the limits.
func requireBatchAnswer(t *testing.T, answer []byte, b *fakeBackend) {
	t.Helper()
	var ans struct {
		Results   []map[string]any
		Scheduled int
	}
	require.NoError(t, json.Unmarshal(answer, &ans), string(answer))
	require.LessOrEqual(t, len(ans.Results), MaxBatch)
	scheduled := 0
	for _, r := range ans.Results {
		if r["status"] == "scheduled" {
			scheduled++
			require.NotEmpty(t, r["id"], "%v", r)
			continue
		}
		require.Contains(t, []float64{400, 409, 503}, r["code"], "%v", r)
		require.NotEmpty(t, r["error"], "%v", r)
	}
	require.Equal(t, scheduled, ans.Scheduled)
	require.Len(t, b.got, scheduled, "what reached the node is what was scheduled")
	for _, req := range b.got {
		require.Equal(t, "q", req.Queue)
		requireWithinLimits(t, req, fuzzLimits)
		requireDeliverable(t, req)
	}
}
