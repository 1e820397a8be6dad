package main

import (
	"encoding/binary"
	"hash/fnv"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Worker is the webhook every task calls: it records each call (task, attempt,
// calling node, time) and answers 200, or 500 for a seeded share of the calls
// (FailRate) so that retries happen too, after a seeded delay of up to MaxDelay (so
// that a fault can hit a delivery in flight). It listens on loopback only.
type Worker struct {
	seed     uint64
	failRate float64
	maxDelay time.Duration
	srv      *http.Server
	ln       net.Listener

	mu         sync.Mutex
	deliveries []Delivery
}

// NewWorker starts a worker on a free loopback port.
func NewWorker(seed uint64, failRate float64, maxDelay time.Duration) (*Worker, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	w := &Worker{seed: seed, failRate: failRate, maxDelay: maxDelay, ln: ln}
	w.srv = &http.Server{Handler: w, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 30 * time.Second}
	go w.srv.Serve(ln)
	return w, nil
}

// URL is where tasks call the worker.
func (w *Worker) URL() string { return "http://" + w.ln.Addr().String() + "/hook" }

// ServeHTTP records the call, then answers.
func (w *Worker) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
	attempt, _ := strconv.ParseUint(r.Header.Get("X-Task-Attempt"), 10, 64)
	d := Delivery{Task: r.Header.Get("X-Task-Id"), Queue: r.Header.Get("X-Task-Queue"), Name: r.Header.Get("X-Task-Name"),
		Node: r.Header.Get("X-Miyamoto-Node"), Attempt: attempt, At: time.Now(), Status: http.StatusOK}
	draw := w.draw(d.Task, attempt)
	if float64(draw%1_000_000) < w.failRate*1_000_000 {
		d.Status = http.StatusInternalServerError
	}
	if w.maxDelay > 0 {
		select {
		case <-time.After(time.Duration((draw >> 20) % uint64(w.maxDelay+1))):
		case <-r.Context().Done(): // the node gave up, or the worker is closing
		}
	}
	d.Answered = time.Now()
	w.mu.Lock()
	w.deliveries = append(w.deliveries, d)
	w.mu.Unlock()
	rw.WriteHeader(d.Status)
}

// draw is the call's random number, from the seed, the task and the attempt alone:
// the same run answers the same way, as fast.
func (w *Worker) draw(task string, attempt uint64) uint64 {
	h := fnv.New64a()
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], w.seed)
	binary.LittleEndian.PutUint64(b[8:], attempt)
	h.Write(b[:])
	h.Write([]byte(task))
	return h.Sum64()
}

// Deliveries is a copy of every call recorded so far.
func (w *Worker) Deliveries() []Delivery {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Delivery(nil), w.deliveries...)
}

// Count is how many calls were recorded so far.
func (w *Worker) Count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.deliveries)
}

// Close stops the worker at once.
func (w *Worker) Close() error { return w.srv.Close() }
