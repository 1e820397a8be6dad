package webhook

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/node"
)

// seenRequest is what a worker received.
type seenRequest struct {
	method, path, query, body string
	contentLength             int64
	header                    http.Header
}

func recordingWorker(t *testing.T) (*httptest.Server, chan seenRequest) {
	got := make(chan seenRequest, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seenRequest{r.Method, r.URL.Path, r.URL.RawQuery, string(b), r.ContentLength, r.Header.Clone()}
		w.WriteHeader(200)
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

// A GET, HEAD or DELETE task's params reach the worker in the query string, after
// the URL's own query and before its fragment, with no body and no Content-Type;
// POST, PUT and PATCH send them as the form body, as before.
func TestParamsInQueryForBodylessMethods(t *testing.T) {
	srv, got := recordingWorker(t)
	res := newResults()
	d := New(Config{}, res.post)
	closeDispatcher(t, d)
	form := "application/x-www-form-urlencoded"
	cases := []struct {
		method, path, contentType, body string
		query, sentBody, sentType       string
	}{
		{"GET", "/w", form, "a=1&b=x+y", "a=1&b=x+y", "", ""},
		{"get", "/w?x=1", form, "a=1", "x=1&a=1", "", ""},
		{"HEAD", "/w?", form, "a=1", "a=1", "", ""},
		{"DELETE", "/w?x=1#frag", form + "; charset=utf-8", "a=%2F", "x=1&a=%2F", "", ""},
		{"GET", "/w?x=1", form, "", "x=1", "", ""},
		{"GET", "/w", "", "", "", "", ""},
		{"POST", "/w?x=1", form, "a=1", "x=1", "a=1", form},
		{"PUT", "/w", form, "a=1", "", "a=1", form},
		{"PATCH", "/w", "application/json", `{"a":1}`, "", `{"a":1}`, "application/json"},
		// Stored before the API refused bodies for GET: the body stays a body.
		{"GET", "/w", "application/json", `{"a":1}`, "", `{"a":1}`, "application/json"},
	}
	for i, c := range cases {
		tk := task("t", srv.URL+c.path)
		tk.Method, tk.ContentType, tk.Body = c.method, c.contentType, []byte(c.body)
		d.Dispatch(node.Delivery{Task: tk, Attempt: uint64(i + 1), Deadline: 5 * time.Second})
		r := res.next(t, 10*time.Second)
		require.NoError(t, r.Err, "case %d", i)
		s := <-got
		require.Equal(t, c.method, s.method, "case %d: sent as stored", i)
		require.Equal(t, "/w", s.path, "case %d", i)
		require.Equal(t, c.query, s.query, "case %d", i)
		require.Equal(t, c.sentBody, s.body, "case %d", i)
		require.Equal(t, c.sentType, s.header.Get("Content-Type"), "case %d", i)
		if c.sentBody == "" && c.method != "HEAD" {
			require.Zero(t, s.contentLength, "case %d: no body is sent", i)
		}
	}
}

// A signed GET delivery signs the body it sends: none (Standard Webhooks signs
// the body, and a verifier sees an empty one).
func TestSignedGetSignsTheEmptyBody(t *testing.T) {
	key := []byte("key-0123456789abcdefghijklmnop")
	signer, err := ParseSecrets([]string{secretOf(key)})
	require.NoError(t, err)
	srv, got := recordingWorker(t)
	res := newResults()
	d := New(Config{Signer: signer}, res.post)
	closeDispatcher(t, d)
	tk := task("t", srv.URL+"/w")
	tk.Method, tk.ContentType, tk.Body = "GET", "application/x-www-form-urlencoded", []byte("a=1")
	d.Dispatch(node.Delivery{Task: tk, Attempt: 1, Deadline: 5 * time.Second})
	require.NoError(t, res.next(t, 10*time.Second).Err)
	s := <-got
	require.Equal(t, "a=1", s.query)
	ts, sig := s.header.Get("webhook-timestamp"), s.header.Get("webhook-signature")
	require.True(t, verifyV1(key, "t", ts, nil, sig), "the signature covers the empty body sent")
	require.False(t, verifyV1(key, "t", ts, []byte("a=1"), sig))
}
