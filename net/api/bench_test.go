package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/miyamotohq/miyamoto/node"
)

// countingBackend answers every enqueue at once, keeping nothing but a count.
type countingBackend struct {
	fakeBackend
	n int
}

func (c *countingBackend) Enqueue(context.Context, node.EnqueueRequest) (string, error) {
	c.n++
	return "7e998f34-bed7-44f4-80cd-49620b0ab562", nil
}

// BenchmarkEnqueue is the API's cost of one enqueue as bench/cmd/compare sends it (a
// form with the worker's URL and one field), without the node: parsing, checks,
// and the answer.
func BenchmarkEnqueue(b *testing.B) {
	backend := &countingBackend{}
	h := NewHandler(backend, Config{})
	const body = "task.url=http%3A%2F%2F127.0.0.1%3A38211%2Fsink&n=123456&p=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	r := httptest.NewRequest(http.MethodPost, "/default", nil)
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	b.ReportAllocs()
	for b.Loop() {
		r.Body = nopCloser{strings.NewReader(body)}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			b.Fatalf("answered %d: %s", w.Code, w.Body)
		}
	}
	if backend.n == 0 {
		b.Fatal("nothing enqueued")
	}
}

type nopCloser struct{ *strings.Reader }

func (nopCloser) Close() error { return nil }
