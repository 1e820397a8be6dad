package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/google/uuid"
)

// A peer is a task queue users compare Miyamoto with (asynq on redis-server, River on
// SQLite). Each runs behind a peerFrontend, which takes exactly Miyamoto's enqueue
// request, as the Relay does, and hands the task to the library's client; the
// library's worker then POSTs the task's body to its URL with deliverPeerTask, so
// that the sink counts every target's deliveries, duplicates and losses alike.

// peerTask is what a peer stores of an enqueue: the task's ID (sent to the worker as
// X-Task-Id, as Miyamoto sends it), its queue, and where to send what.
type peerTask struct {
	ID          string `json:"id"`
	Queue       string `json:"queue"`
	URL         string `json:"url"`
	ContentType string `json:"content_type"`
	Body        []byte `json:"body"`
}

// peerEnqueuer stores one task in a peer, to run at due, and returns once the peer
// has acknowledged it.
type peerEnqueuer func(ctx context.Context, t peerTask, due time.Time) error

// skipError says a target cannot run on this machine (a program it needs is
// missing); Compare reports it as skipped rather than failing.
type skipError struct{ reason string }

func (e *skipError) Error() string { return "skipped: " + e.reason }

// peerFrontend is the HTTP enqueue endpoint in front of a peer's client.
type peerFrontend struct {
	enqueue peerEnqueuer
	srv     *http.Server
	ln      net.Listener
	served  chan struct{}
}

// startPeerFrontend serves POST /{queue} (Miyamoto's enqueue request, parsed as the
// Relay parses it, task.countdown included) and GET /healthz on a free loopback port.
// A task is answered {"status": "scheduled", "id": ...} once enqueue returned.
func startPeerFrontend(enqueue peerEnqueuer) (*peerFrontend, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("peer frontend: %w", err)
	}
	f := &peerFrontend{enqueue: enqueue, ln: ln, served: make(chan struct{})}
	f.srv = serveEnqueues(ln, f.handleEnqueue, f.served)
	return f, nil
}

// URL is the frontend's base URL.
func (f *peerFrontend) URL() string { return "http://" + f.ln.Addr().String() }

func (f *peerFrontend) handleEnqueue(w http.ResponseWriter, req *http.Request) {
	received := time.Now()
	t, ok := readRelayTask(w, req, 1<<20)
	if !ok {
		return
	}
	task := peerTask{ID: uuid.NewString(), Queue: req.PathValue("queue"), URL: t.url, ContentType: t.contentType, Body: t.body}
	if err := f.enqueue(req.Context(), task, received.Add(t.countdown)); err != nil {
		writeRelayError(w, http.StatusServiceUnavailable, "queue", "did not take the task: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	fmt.Fprintf(w, "{\"status\": \"scheduled\", \"id\": %q}\n", task.ID)
}

// Close stops taking enqueues, waiting for requests in flight until ctx is done.
func (f *peerFrontend) Close(ctx context.Context) error {
	err := f.srv.Shutdown(ctx)
	if err != nil {
		f.srv.Close()
	}
	<-f.served
	return err
}

// deliverPeerTask POSTs the task's body to its URL with the headers Miyamoto's
// dispatcher sends, and fails unless the answer is 2xx, so that the peer retries.
func deliverPeerTask(ctx context.Context, client *http.Client, t peerTask) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.URL, bytes.NewReader(t.Body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", t.ContentType)
	req.Header.Set("User-Agent", "miyamoto-bench-peer")
	req.Header.Set("X-Task-Id", t.ID)
	req.Header.Set("X-Task-Queue", t.Queue)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("worker answered %s", resp.Status)
	}
	return nil
}

// encodePeerTask and decodePeerTask are how a task travels through a peer that
// stores bytes (asynq's payload).
func encodePeerTask(t peerTask) ([]byte, error) { return json.Marshal(t) }

func decodePeerTask(b []byte) (peerTask, error) {
	var t peerTask
	err := json.Unmarshal(b, &t)
	return t, err
}
