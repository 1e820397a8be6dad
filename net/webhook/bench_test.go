package webhook

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/node"
)

// BenchmarkDispatch delivers tasks to a worker on loopback, 32 in flight at a time
// as under bench/cmd/compare's closed loop, and waits for every result. ns/op,
// B/op and allocs/op are per delivery, the worker's side included.
func BenchmarkDispatch(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
	}))
	b.Cleanup(srv.Close)
	const inFlight = 32
	var wg sync.WaitGroup
	slots := make(chan struct{}, inFlight)
	var failed atomic.Int64
	d := New(Config{MaxConcurrent: 100}, func(res node.DeliveryResult) {
		if res.Status != http.StatusOK {
			failed.Add(1)
		}
		<-slots
		wg.Done()
	})
	b.Cleanup(func() { d.Close(context.Background()) })
	tk := task("t", srv.URL)
	b.ReportAllocs()
	for b.Loop() {
		slots <- struct{}{}
		wg.Add(1)
		d.Dispatch(node.Delivery{Task: tk, Attempt: 1, Deadline: 5 * time.Second})
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d deliveries failed", n)
	}
}

// goid is the current goroutine's ID, read from its stack header.
func goid() string {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	return string(b[:bytes.IndexByte(b, ' ')])
}

// Deliveries one after the other run on a worker goroutine kept between them, and
// Close ends the idle worker. (A delivery dispatched while the worker is still
// posting the last result gets a new worker, so a few may differ.)
func TestWorkerReused(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(srv.Close)
	results := make(chan string, 1)
	d := New(Config{}, func(res node.DeliveryResult) { results <- goid() })
	ran := map[string]bool{}
	for range 20 {
		time.Sleep(5 * time.Millisecond) // the worker goes back to waiting
		d.Dispatch(node.Delivery{Task: task("t", srv.URL), Attempt: 1, Deadline: 5 * time.Second})
		select {
		case g := <-results:
			ran[g] = true
		case <-time.After(5 * time.Second):
			t.Fatal("no result")
		}
	}
	require.Less(t, len(ran), 10, "a new goroutine per delivery")
	closed := make(chan error, 1)
	go func() { closed <- d.Close(context.Background()) }()
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the idle worker")
	}
}
