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
// (FailRate) so that retries happen too. It listens on loopback only.
type Worker struct {
	seed     uint64
	failRate float64
	srv      *http.Server
	ln       net.Listener

	mu         sync.Mutex
	deliveries []Delivery
}

// NewWorker starts a worker on a free loopback port.
func NewWorker(seed uint64, failRate float64) (*Worker, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	w := &Worker{seed: seed, failRate: failRate, ln: ln}
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
	if w.fails(d.Task, attempt) {
		d.Status = http.StatusInternalServerError
	}
	w.mu.Lock()
	w.deliveries = append(w.deliveries, d)
	w.mu.Unlock()
	rw.WriteHeader(d.Status)
}

// fails decides, from the seed, the task and the attempt alone, whether a call
// fails: the same run answers the same way.
func (w *Worker) fails(task string, attempt uint64) bool {
	if w.failRate <= 0 {
		return false
	}
	h := fnv.New64a()
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], w.seed)
	binary.LittleEndian.PutUint64(b[8:], attempt)
	h.Write(b[:])
	h.Write([]byte(task))
	return float64(h.Sum64()%1_000_000) < w.failRate*1_000_000
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
