package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// Sink is a worker that does nothing: it answers every request 200 at once, and
// counts what arrived by X-Task-Id, so that a benchmark can tell when every task was
// delivered and whether any was delivered twice. It is safe for concurrent use.
//
//	s, err := StartSink()     // listens on 127.0.0.1:0
//	url := s.URL() + "/work"  // give this to tasks as their URL
//	st := s.Stats()           // totals so far
//	s.Close()
type Sink struct {
	srv *http.Server
	ln  net.Listener

	mu      sync.Mutex
	total   int                 // requests received
	noID    int                 // requests without X-Task-Id
	got     map[string]*Arrival // by X-Task-Id
	dups    int                 // deliveries beyond the first of their task
	first   time.Time           // first request
	last    time.Time           // last request
	stopped chan struct{}
}

// Arrival is what the sink knows of one task ID.
type Arrival struct {
	Count int       // deliveries of this ID
	First time.Time // when the first arrived
	Last  time.Time // when the last arrived
}

// SinkStats is a snapshot of a Sink's counters.
type SinkStats struct {
	Total      int       // requests received
	Distinct   int       // distinct X-Task-Id values
	Duplicates int       // requests beyond the first for their ID (Total - Distinct - NoID)
	NoID       int       // requests without X-Task-Id
	First      time.Time // first request (zero when none)
	Last       time.Time // last request (zero when none)
}

var _ http.Handler = (*Sink)(nil)

// NewSink returns a Sink that is only a handler (serve it yourself).
func NewSink() *Sink {
	return &Sink{got: make(map[string]*Arrival), stopped: make(chan struct{})}
}

// StartSink returns a Sink serving on a free loopback port until Close.
func StartSink() (*Sink, error) {
	s := NewSink()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("sink: %w", err)
	}
	s.ln = ln
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       time.Minute,
	}
	go func() {
		defer close(s.stopped)
		s.srv.Serve(ln) // http.ErrServerClosed after Close
	}()
	return s, nil
}

// URL is the sink's base URL, e.g. http://127.0.0.1:41234 (only after StartSink).
func (s *Sink) URL() string { return "http://" + s.ln.Addr().String() }

// ServeHTTP counts the request and answers 200.
func (s *Sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Read the body so that the connection can be reused.
	io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
	now := time.Now()
	id := r.Header.Get("X-Task-Id")
	s.mu.Lock()
	s.total++
	if s.first.IsZero() {
		s.first = now
	}
	s.last = now
	switch a := s.got[id]; {
	case id == "":
		s.noID++
	case a == nil:
		s.got[id] = &Arrival{Count: 1, First: now, Last: now}
	default:
		a.Count++
		a.Last = now
		s.dups++
	}
	s.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// Stats returns the counters so far.
func (s *Sink) Stats() SinkStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return SinkStats{Total: s.total, Distinct: len(s.got), Duplicates: s.dups, NoID: s.noID, First: s.first, Last: s.last}
}

// Arrival returns what arrived for one ID.
func (s *Sink) Arrival(id string) (Arrival, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.got[id]
	if !ok {
		return Arrival{}, false
	}
	return *a, true
}

// Missing returns how many of ids have not arrived yet.
func (s *Sink) Missing(ids []string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	missing := 0
	for _, id := range ids {
		if s.got[id] == nil {
			missing++
		}
	}
	return missing
}

// WaitFor waits until every one of ids has arrived, polling every few milliseconds,
// or until ctx is done or timeout passes; it returns how many are still missing.
func (s *Sink) WaitFor(ctx context.Context, ids []string, timeout time.Duration) int {
	deadline := time.Now().Add(timeout)
	for {
		// The exact check walks every ID under the lock; skip it while the sink has
		// plainly not seen enough distinct IDs yet.
		if st := s.Stats(); st.Distinct >= len(ids) || !time.Now().Before(deadline) || ctx.Err() != nil {
			missing := s.Missing(ids)
			if missing == 0 || !time.Now().Before(deadline) || ctx.Err() != nil {
				return missing
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(min(10*time.Millisecond, time.Until(deadline))):
		}
	}
}

// Snapshot returns a copy of every arrival by ID.
func (s *Sink) Snapshot() map[string]Arrival {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]Arrival, len(s.got))
	for id, a := range s.got {
		out[id] = *a
	}
	return out
}

// Close stops the server at once, cutting requests in progress: stop whatever sends
// to the sink first. (A graceful shutdown would wait up to 5 s for connections a
// client dialled but never used, which http.Server counts as active.)
func (s *Sink) Close() error {
	if s.srv == nil {
		return nil
	}
	err := s.srv.Close()
	<-s.stopped
	return err
}
