package webhook

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/node"
)

// results collects what the dispatcher posts, and counts posts per task.
type results struct {
	mu    sync.Mutex
	got   []node.DeliveryResult
	count map[string]int
	ch    chan node.DeliveryResult
}

func newResults() *results {
	return &results{count: map[string]int{}, ch: make(chan node.DeliveryResult, 100)}
}

func (r *results) post(res node.DeliveryResult) {
	r.mu.Lock()
	r.got = append(r.got, res)
	r.count[res.TaskID]++
	r.mu.Unlock()
	r.ch <- res // buffered: post must not block
}

// next waits (bounded) for the next result.
func (r *results) next(t *testing.T, within time.Duration) node.DeliveryResult {
	t.Helper()
	select {
	case res := <-r.ch:
		return res
	case <-time.After(within):
		t.Fatalf("no delivery result within %s", within)
		return node.DeliveryResult{}
	}
}

// requireOncePer checks that each of ids was posted exactly once and nothing else was.
func (r *results) requireOncePer(t *testing.T, ids ...string) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	want := map[string]int{}
	for _, id := range ids {
		want[id] = 1
	}
	require.Equal(t, want, r.count, "post must run exactly once per Dispatch")
}

func task(id, url string) *node.Task {
	return &node.Task{ID: id, Queue: "q", URL: url, Method: "POST", ETA: time.Unix(1700000000, 250_000_000)}
}

// closeDispatcher closes d at the end of the test, bounded.
func closeDispatcher(t *testing.T, d *Dispatcher) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		d.Close(ctx)
	})
}

func TestDeliveryCarriesRequestAndHeaders(t *testing.T) {
	type seen struct {
		method, path, query, body string
		header                    http.Header
	}
	got := make(chan seen, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.Method, r.URL.Path, r.URL.RawQuery, string(b), r.Header.Clone()}
		w.WriteHeader(204)
	}))
	defer srv.Close()

	res := newResults()
	d := New(Config{NodeID: "n7"}, res.post)
	closeDispatcher(t, d)
	tk := &node.Task{
		ID: "task-1", Queue: "emails", Name: "welcome-42", URL: srv.URL + "/work/here?x=1", Method: "PUT",
		ContentType: "application/x-www-form-urlencoded", Body: []byte("a=1&b=2"),
		ETA: time.Unix(1700000000, 250_000_000),
		Headers: []node.Header{
			{Name: "X-Custom", Value: "mine"},
			{Name: "X-Task-Id", Value: "forged"},
			{Name: "User-Agent", Value: "forged/1"},
			{Name: "X-Miyamoto-Node", Value: "forged"},
		},
	}
	d.Dispatch(node.Delivery{Task: tk, Attempt: 3, Retries: 2, Deadline: 5 * time.Second, PreviousStatus: 503})

	r := res.next(t, 10*time.Second)
	require.NoError(t, r.Err)
	require.Equal(t, 204, r.Status)
	require.Equal(t, "task-1", r.TaskID)
	require.Equal(t, uint64(3), r.Attempt)
	require.True(t, r.OK())

	s := <-got
	require.Equal(t, "PUT", s.method)
	require.Equal(t, "/work/here", s.path)
	require.Equal(t, "x=1", s.query)
	require.Equal(t, "a=1&b=2", s.body)
	h := s.header
	require.Equal(t, "application/x-www-form-urlencoded", h.Get("Content-Type"))
	require.Equal(t, []string{"miyamoto/" + Version}, h.Values("User-Agent"))
	require.Equal(t, []string{"task-1"}, h.Values("X-Task-Id"), "Miyamoto's header wins over the task's")
	require.Equal(t, "emails", h.Get("X-Task-Queue"))
	require.Equal(t, "welcome-42", h.Get("X-Task-Name"))
	require.Equal(t, "3", h.Get("X-Task-Attempt"))
	require.Equal(t, "2", h.Get("X-Task-Retry-Count"))
	require.Equal(t, "1700000000.250", h.Get("X-Task-ETA"))
	require.Equal(t, "503", h.Get("X-Task-Previous-Response"))
	require.Equal(t, []string{"n7"}, h.Values("X-Miyamoto-Node"))
	require.Equal(t, "mine", h.Get("X-Custom"))
	require.Equal(t, "5.000", h.Get("X-Task-Deadline"))
	res.requireOncePer(t, "task-1")
}

func TestDeliveryOmitsUnsetOptionalHeaders(t *testing.T) {
	got := make(chan http.Header, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Clone()
	}))
	defer srv.Close()
	res := newResults()
	d := New(Config{}, res.post)
	closeDispatcher(t, d)
	d.Dispatch(node.Delivery{Task: task("t", srv.URL), Attempt: 1, Deadline: 5 * time.Second})
	r := res.next(t, 10*time.Second)
	require.Equal(t, 200, r.Status)
	h := <-got
	for _, name := range []string{"X-Task-Name", "X-Task-Previous-Response", "X-Miyamoto-Node"} {
		_, present := h[http.CanonicalHeaderKey(name)]
		require.False(t, present, "%s must be absent when unset", name)
	}
	require.Equal(t, "1", h.Get("X-Task-Attempt"))
	require.Equal(t, "0", h.Get("X-Task-Retry-Count"))
}

func TestRedirectIsNotFollowed(t *testing.T) {
	var targetHits atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		targetHits.Add(1)
	}))
	defer target.Close()
	src := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+"/elsewhere", http.StatusFound)
	}))
	defer src.Close()

	res := newResults()
	d := New(Config{}, res.post)
	closeDispatcher(t, d)
	d.Dispatch(node.Delivery{Task: task("r", src.URL), Attempt: 1, Deadline: 5 * time.Second})
	r := res.next(t, 10*time.Second)
	require.Equal(t, http.StatusFound, r.Status)
	require.NoError(t, r.Err)
	require.False(t, r.OK())
	time.Sleep(100 * time.Millisecond)
	require.Zero(t, targetHits.Load(), "the redirect target must receive nothing")
}

func TestDeadlineCutsSlowWorker(t *testing.T) {
	srv, _ := stuckWorker(t, nil)

	res := newResults()
	d := New(Config{}, res.post)
	closeDispatcher(t, d)
	const deadline = 300 * time.Millisecond
	start := time.Now()
	d.Dispatch(node.Delivery{Task: task("slow", srv.URL), Attempt: 1, Deadline: deadline})
	r := res.next(t, 10*time.Second)
	took := time.Since(start)
	require.Equal(t, 0, r.Status)
	require.Error(t, r.Err)
	require.ErrorIs(t, r.Err, context.DeadlineExceeded)
	require.Equal(t, node.ErrorTimeout, r.ErrorKind)
	require.GreaterOrEqual(t, took, deadline-10*time.Millisecond)
	require.Less(t, took, deadline+time.Second, "the result must come no later than the deadline plus a little slack")
	res.requireOncePer(t, "slow")
}

func TestRefusedConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now

	res := newResults()
	d := New(Config{}, res.post)
	closeDispatcher(t, d)
	d.Dispatch(node.Delivery{Task: task("refused", "http://"+addr+"/"), Attempt: 1, Deadline: 5 * time.Second})
	r := res.next(t, 10*time.Second)
	require.Equal(t, 0, r.Status)
	require.Error(t, r.Err)
	require.Equal(t, node.ErrorRefused, r.ErrorKind)
	require.False(t, r.OK())
	res.requireOncePer(t, "refused")
}

func TestBadURLIsAResult(t *testing.T) {
	res := newResults()
	d := New(Config{}, res.post)
	closeDispatcher(t, d)
	d.Dispatch(node.Delivery{Task: task("bad", "http://[::1"), Attempt: 1, Deadline: time.Second})
	r := res.next(t, 10*time.Second)
	require.Equal(t, 0, r.Status)
	require.Error(t, r.Err)
	res.requireOncePer(t, "bad")
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		name, v string
		want    time.Duration
	}{
		{"absent", "", 0},
		{"seconds", "120", 120 * time.Second},
		{"zero seconds", "0", 0},
		{"spaces", " 7 ", 7 * time.Second},
		{"negative", "-5", 0},
		{"garbage", "soon", 0},
		{"fraction", "1.5", 0},
		{"http date", now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{"rfc850 date", now.Add(30 * time.Second).Format(time.RFC850), 30 * time.Second},
		{"asctime date", now.Add(45 * time.Second).Format(time.ANSIC), 45 * time.Second},
		{"date in the past", now.Add(-time.Hour).Format(http.TimeFormat), 0},
		{"date now", now.Format(http.TimeFormat), 0},
		{"huge seconds do not wrap", "9999999999", time.Duration(1<<63 - 1)},
		{"beyond int saturates", "99999999999999999999999", time.Duration(1<<63 - 1)},
		{"far below int", "-99999999999999999999999", 0},
		{"far date saturates", "Fri, 31 Dec 9999 23:59:59 GMT", time.Duration(1<<63 - 1)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			require.Equal(t, c.want, RetryAfter(c.v, now), "Retry-After: %q", c.v)
		})
	}
}

func TestRetryAfterCarriedInto429And503(t *testing.T) {
	date := time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/429":
			w.Header().Set("Retry-After", "42")
			w.WriteHeader(429)
		case "/503":
			w.Header().Set("Retry-After", date)
			w.WriteHeader(503)
		case "/500":
			w.WriteHeader(500)
		}
	}))
	defer srv.Close()

	res := newResults()
	d := New(Config{}, res.post)
	closeDispatcher(t, d)
	for _, p := range []string{"429", "503", "500"} {
		d.Dispatch(node.Delivery{Task: task(p, srv.URL+"/"+p), Attempt: 1, Deadline: 5 * time.Second})
	}
	byID := map[string]node.DeliveryResult{}
	for range 3 {
		r := res.next(t, 10*time.Second)
		byID[r.TaskID] = r
	}
	require.Equal(t, 429, byID["429"].Status)
	require.Equal(t, 42*time.Second, byID["429"].RetryAfter)
	require.Equal(t, 503, byID["503"].Status)
	// The date has second precision: within (59 min, 60 min].
	require.Greater(t, byID["503"].RetryAfter, 59*time.Minute)
	require.LessOrEqual(t, byID["503"].RetryAfter, time.Hour)
	require.Equal(t, 500, byID["500"].Status)
	require.Zero(t, byID["500"].RetryAfter)
	res.requireOncePer(t, "429", "503", "500")
}

func TestMaxConcurrentBoundsInFlight(t *testing.T) {
	var inFlight, peak atomic.Int32
	var mu sync.Mutex
	reached := map[string]bool{}
	arrived := make(chan string, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		mu.Lock()
		reached[r.Header.Get("X-Task-Id")] = true
		mu.Unlock()
		arrived <- r.Header.Get("X-Task-Id")
		select {
		case <-time.After(300 * time.Millisecond):
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()

	res := newResults()
	d := New(Config{MaxConcurrent: 2}, res.post)
	closeDispatcher(t, d)
	dispatch := func(i int, deadline time.Duration) string {
		id := "c" + strconv.Itoa(i)
		d.Dispatch(node.Delivery{Task: task(id, srv.URL), Attempt: 1, Deadline: deadline})
		return id
	}
	// Two fill the slots (300 ms each at the worker); once they are in flight, four
	// more with room to wait for a slot and four whose deadline (100 ms) passes
	// while both slots are still busy. The long deadlines keep every outcome away
	// from the instant a deadline passes.
	var ids, starved []string
	for i := range 2 {
		ids = append(ids, dispatch(i, 10*time.Second))
	}
	for range 2 {
		select {
		case <-arrived:
		case <-time.After(10 * time.Second):
			t.Fatal("the first deliveries never reached the worker")
		}
	}
	for i := 2; i < 10; i++ {
		if i%2 == 0 {
			ids = append(ids, dispatch(i, 10*time.Second))
		} else {
			id := dispatch(i, 100*time.Millisecond)
			ids = append(ids, id)
			starved = append(starved, id)
		}
	}
	var ok, noSlot []string
	for range 10 {
		r := res.next(t, 10*time.Second)
		switch {
		case r.Status == 200:
			ok = append(ok, r.TaskID)
		case errors.Is(r.Err, ErrNoSlot):
			require.Equal(t, 0, r.Status)
			noSlot = append(noSlot, r.TaskID)
		default:
			t.Fatalf("task %s: unexpected result %+v", r.TaskID, r)
		}
	}
	require.LessOrEqual(t, peak.Load(), int32(2), "more than MaxConcurrent requests in flight")
	require.Equal(t, int32(2), peak.Load(), "both slots should have been used at once")
	require.ElementsMatch(t, starved, noSlot, "exactly the deliveries whose deadline passed while the slots were busy end with ErrNoSlot")
	require.Len(t, ok, 6)
	mu.Lock()
	for _, id := range noSlot {
		require.False(t, reached[id], "task %s ended with ErrNoSlot but reached the worker", id)
	}
	require.Len(t, reached, 6)
	mu.Unlock()
	res.requireOncePer(t, ids...)
}

// lateRoundTrips counts HTTP requests started after their context's deadline.
type lateRoundTrips struct {
	rt   http.RoundTripper
	late atomic.Int32
}

func (l *lateRoundTrips) RoundTrip(r *http.Request) (*http.Response, error) {
	if dl, ok := r.Context().Deadline(); ok && !time.Now().Before(dl) {
		l.late.Add(1)
	}
	return l.rt.RoundTrip(r)
}

// A slot freed at the very moment a waiting delivery's deadline passes (here by a
// delivery cut at the same deadline) must not be used to send that delivery: it ends
// with ErrNoSlot instead of a request started after its deadline. The check is
// statistical: the runtime may close a context's Done a little after its deadline,
// and before the fix about four in ten rounds started such a request; a request can
// still, rarely, start a few microseconds late after passing the check.
func TestSlotFreedAtTheDeadlineSendsNothing(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(5 * time.Second):
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	client := NewClient(nil)
	lr := &lateRoundTrips{rt: client.Transport}
	client.Transport = lr
	const rounds = 20
	for range rounds {
		res := newResults()
		d := New(Config{MaxConcurrent: 1, Client: client}, res.post)
		d.Dispatch(node.Delivery{Task: task("a", srv.URL), Attempt: 1, Deadline: 50 * time.Millisecond})
		d.Dispatch(node.Delivery{Task: task("b", srv.URL), Attempt: 1, Deadline: 50 * time.Millisecond})
		for range 2 {
			r := res.next(t, 5*time.Second)
			require.Equal(t, 0, r.Status)
			require.Error(t, r.Err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		require.NoError(t, d.Close(ctx))
		cancel()
		res.requireOncePer(t, "a", "b")
	}
	require.LessOrEqual(t, lr.late.Load(), int32(3), "requests started after their deadline in %d of %d rounds", lr.late.Load(), rounds)
}

func TestCloseWaitsForInFlight(t *testing.T) {
	started := make(chan struct{}, 1)
	var finished atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		time.Sleep(300 * time.Millisecond)
		finished.Store(true)
	}))
	defer srv.Close()

	res := newResults()
	d := New(Config{}, res.post)
	d.Dispatch(node.Delivery{Task: task("w", srv.URL), Attempt: 1, Deadline: 5 * time.Second})
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the worker never received the delivery")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, d.Close(ctx))
	require.True(t, finished.Load(), "Close returned before the delivery finished")
	// The result was posted before Close returned.
	select {
	case r := <-res.ch:
		require.Equal(t, 200, r.Status)
	default:
		t.Fatal("Close returned before the result was posted")
	}
	res.requireOncePer(t, "w")
}

func TestCloseCutsWhenItsContextExpires(t *testing.T) {
	started := make(chan struct{}, 1)
	srv, _ := stuckWorker(t, started)

	res := newResults()
	d := New(Config{}, res.post)
	d.Dispatch(node.Delivery{Task: task("stuck", srv.URL), Attempt: 1, Deadline: 10 * time.Second})
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the worker never received the delivery")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := d.Close(ctx)
	took := time.Since(start)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Less(t, took, 2*time.Second, "Close must cut the deliveries once its context expires")
	select {
	case r := <-res.ch:
		require.Equal(t, 0, r.Status)
		require.Error(t, r.Err, "a cut delivery reports the cut")
	default:
		t.Fatal("Close returned before the cut delivery's result was posted")
	}
	res.requireOncePer(t, "stuck")
}

// A slot wait is cut by Close too: nothing is sent, and the result is still posted once.
func TestCloseCutsDeliveriesWaitingForASlot(t *testing.T) {
	started := make(chan struct{}, 4)
	srv, hits := stuckWorker(t, started)

	res := newResults()
	d := New(Config{MaxConcurrent: 1}, res.post)
	d.Dispatch(node.Delivery{Task: task("a", srv.URL), Attempt: 1, Deadline: 10 * time.Second})
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the worker never received the delivery")
	}
	d.Dispatch(node.Delivery{Task: task("b", srv.URL), Attempt: 1, Deadline: 10 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, d.Close(ctx), context.DeadlineExceeded)
	require.Equal(t, int32(1), hits.Load())
	res.requireOncePer(t, "a", "b")
	for range 2 {
		r := <-res.ch
		require.Equal(t, 0, r.Status)
		require.Error(t, r.Err)
	}
}

// stuckWorker starts a worker that holds each request until the test ends, the
// request is cut, or 10 s pass. It counts arrivals and, when started is not nil,
// signals each on it.
func stuckWorker(t *testing.T, started chan struct{}) (*httptest.Server, *atomic.Int32) {
	release := make(chan struct{})
	hits := &atomic.Int32{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if started != nil {
			started <- struct{}{}
		}
		select {
		case <-release:
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs first: lets the handlers return
	return srv, hits
}
