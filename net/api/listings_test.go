package api

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/node"
)

// blockingLists is a queueFake whose listings wait for release.
type blockingLists struct {
	queueFake
	started chan struct{}
	release chan struct{}
}

func (b *blockingLists) ListTasks(context.Context, string, node.TaskState, string, int) ([]node.TaskStatus, []string, error) {
	b.started <- struct{}{}
	<-b.release
	return nil, nil, nil
}

// At most MaxListings listings run at once; the next waits ListingWait for a turn,
// then answers 503 "busy" with Retry-After, and gets its turn once one ends.
func TestListingsAreBounded(t *testing.T) {
	b := &blockingLists{started: make(chan struct{}, 10), release: make(chan struct{})}
	h := NewHandler(b, Config{MaxListings: 2})
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			doReq(t, h, "GET", "/v1/queues/q/tasks?limit=1", "")
		}()
	}
	<-b.started
	<-b.started
	start := time.Now()
	w := doReq(t, h, "GET", "/v1/queues/q/tasks?limit=1", "")
	require.Equal(t, http.StatusServiceUnavailable, w.Code, w.Body.String())
	require.Contains(t, w.Body.String(), `"busy"`)
	require.Equal(t, "1", w.Header().Get("Retry-After"))
	require.GreaterOrEqual(t, time.Since(start), ListingWait)

	close(b.release)
	wg.Wait()
	b.started = make(chan struct{}, 1)
	w = doReq(t, h, "GET", "/v1/queues/q/tasks?limit=1", "")
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
}

// A new queue past the node's cap answers 409, field "queue", naming the queue.
func TestTooManyQueuesAnswers409NamingTheQueue(t *testing.T) {
	b := &fakeBackend{err: fmt.Errorf("%w: queue %q would be a new one", node.ErrTooManyQueues, "q")}
	w := doReq(t, NewHandler(b, Config{}), "POST", "/q", "task.url=http://w.test/", "Content-Type", formCT)
	e := requireError(t, w, http.StatusConflict, "queue")
	require.Contains(t, e["error"], `"q"`)
}
