package webhook

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/net/urlpolicy"
	"github.com/miyamotohq/miyamoto/node"
)

// The first MaxAttemptBody bytes of a worker's answer come back with its status,
// and the rest is still read (the connection stays reusable).
func TestResultCarriesTheAnswersFirstBytes(t *testing.T) {
	long := strings.Repeat("é", 1000) // 2000 bytes
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/short" {
			w.WriteHeader(500)
			w.Write([]byte("database is down"))
			return
		}
		w.Write([]byte(long))
	}))
	defer srv.Close()
	res := newResults()
	d := New(Config{}, res.post)
	closeDispatcher(t, d)
	d.Dispatch(node.Delivery{Task: task("short", srv.URL+"/short"), Attempt: 1, Deadline: 5 * time.Second})
	r := res.next(t, 10*time.Second)
	require.Equal(t, 500, r.Status)
	require.Equal(t, "database is down", r.Body)
	require.Equal(t, node.NoError, r.ErrorKind)
	d.Dispatch(node.Delivery{Task: task("long", srv.URL+"/long"), Attempt: 1, Deadline: 5 * time.Second})
	r = res.next(t, 10*time.Second)
	require.Equal(t, 200, r.Status)
	require.Equal(t, long[:node.MaxAttemptBody], r.Body)
}

// Each way a delivery can fail without an answer has its kind.
func TestFailuresAreClassified(t *testing.T) {
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer tlsSrv.Close()
	// A worker that closes the connection without answering.
	hangUp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			c.Close()
		}
	}))
	defer hangUp.Close()
	_, port, err := net.SplitHostPort(hangUp.Listener.Addr().String())
	require.NoError(t, err)

	policy := &urlpolicy.Policy{Resolver: &rebinder{}, Allow: mustAllow(t, "127.0.0.0/8")}
	res := newResults()
	d := New(Config{Policy: policy}, res.post)
	closeDispatcher(t, d)
	cases := map[string]struct {
		url  string
		want node.ErrorKind
	}{
		"tls":   {tlsSrv.URL, node.ErrorTLS},
		"reset": {hangUp.URL, node.ErrorReset},
		"dns":   {"http://no-such-host.example:" + port + "/", node.ErrorDNS},
	}
	for id, c := range cases {
		d.Dispatch(node.Delivery{Task: task(id, c.url), Attempt: 1, Deadline: 5 * time.Second})
	}
	for range cases {
		r := res.next(t, 10*time.Second)
		require.Equal(t, 0, r.Status, r.TaskID)
		require.Equal(t, cases[r.TaskID].want, r.ErrorKind, "%s: %v", r.TaskID, r.Err)
	}
}

func mustAllow(t *testing.T, s string) urlpolicy.Allow {
	a, err := urlpolicy.ParseAllow(s)
	require.NoError(t, err)
	return a
}

func TestClassifyWithoutAnError(t *testing.T) {
	require.Equal(t, node.NoError, Classify(nil))
	require.Equal(t, node.ErrorTimeout, Classify(ErrNoSlot))
	require.Equal(t, node.ErrorTimeout, Classify(context.DeadlineExceeded))
	require.Equal(t, node.ErrorOther, Classify(context.Canceled))
}
