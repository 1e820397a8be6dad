// Package api is Miyamoto's HTTP interface for clients, compatible with the original:
//
//	POST   /{queue}          enqueue a task (form or JSON; see parseTask)
//	GET    /v1/tasks/{id}    a task's state, attempts, last status code and replicas
//	DELETE /v1/tasks/{id}    cancel a task
//	POST   /v1/tasks/{id}/retry  re-queue a dead task as a new task
//	GET    /v1/cluster       members, this node, reachability
//	GET    /v1/queues        queues, their settings, tasks held here by state
//	GET    /v1/queues/{q}    a queue's settings; PUT changes them (JSON, partial)
//	POST   /v1/queues/{q}/pause, /resume, /purge
//	GET    /v1/queues/{q}/tasks?state=&limit=&after=  tasks held here, paged
//	GET    /metrics          counters in the Prometheus text format
//	GET    /healthz          200 {"status": "ok"} once the node takes tasks; 503 "starting" before
//
// Errors are JSON objects {"error": "...", "field": "..."} with a 4xx code naming
// the field at fault, or 503 when the cluster could not answer in time. Internal
// details never reach the client. It must never touch the node but through Backend.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/miyamotohq/miyamoto/node"
)

// Backend is what the API needs of the node it fronts.
type Backend interface {
	Enqueue(ctx context.Context, req node.EnqueueRequest) (string, error)
	Lookup(ctx context.Context, id string) (node.TaskStatus, error)
	Cancel(ctx context.Context, id string) (node.TaskState, error)
	Cluster() Cluster
	// Ready reports whether the node takes new tasks (false while it starts).
	Ready(ctx context.Context) bool
	// WriteMetrics writes the node's metrics in the Prometheus text format.
	WriteMetrics(w io.Writer)
}

// Cluster is GET /v1/cluster's answer.
type Cluster struct {
	Self     string   `json:"self"`
	Replicas int      `json:"replicas"`
	Members  []Member `json:"members"`
}

// Member is one node as this node sees it.
type Member struct {
	ID        string `json:"id"`
	Addr      string `json:"addr,omitempty"`
	Self      bool   `json:"self"`
	Reachable bool   `json:"reachable"`
}

// Config tunes the handler.
type Config struct {
	MaxBody int64 // largest request body; default 1 MiB
	// Timeout bounds each request's wait for the cluster; default 10 s.
	Timeout time.Duration
	Logger  *slog.Logger
}

type server struct {
	b   Backend
	cfg Config
	log *slog.Logger
}

// queueName is what a queue may be called: it is a path segment.
var queueName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$`)

// reserved path segments that are not queues.
var reserved = map[string]bool{"v1": true, "healthz": true, "metrics": true}

// NewHandler returns the API's http.Handler.
func NewHandler(b Backend, cfg Config) http.Handler {
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 1 << 20
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &server{b: b, cfg: cfg, log: cfg.Logger}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if !s.b.Ready(ctx) {
			w.Header().Set("Retry-After", "1")
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "starting"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /v1/cluster", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.b.Cluster())
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		s.b.WriteMetrics(w)
	})
	if qb, ok := b.(QueueBackend); ok {
		s.queueRoutes(mux, qb)
	}
	mux.HandleFunc("GET /v1/tasks/{id}", s.getTask)
	mux.HandleFunc("DELETE /v1/tasks/{id}", s.cancelTask)
	mux.HandleFunc("POST /v1/tasks/{id}/retry", s.retryTask)
	mux.HandleFunc("POST /{queue}", s.enqueue)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "path", fmt.Sprintf("no such endpoint: %s %s (enqueue with POST /{queue})", r.Method, r.URL.Path))
	})
	return mux
}

func (s *server) enqueue(w http.ResponseWriter, r *http.Request) {
	queue := r.PathValue("queue")
	if !queueName.MatchString(queue) || reserved[queue] {
		writeError(w, http.StatusBadRequest, "queue", fmt.Sprintf("%q is not a queue name: 1-100 letters, digits, '_', '-' or '.', not v1, healthz or metrics", queue))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, "body", fmt.Sprintf("is larger than %d bytes", s.cfg.MaxBody))
			return
		}
		writeError(w, http.StatusBadRequest, "body", "could not be read")
		return
	}
	req, err := parseTask(r.Header.Get("Content-Type"), body)
	if err == nil {
		req.Queue = queue
		err = node.ValidateRequest(&req)
	}
	if err != nil {
		writeNodeError(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
	defer cancel()
	id, err := s.b.Enqueue(ctx, req)
	if err != nil {
		s.log.Warn("enqueue failed", "queue", queue, "err", err)
		writeNodeError(w, err)
		return
	}
	// The original's exact answer, spacing included.
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	fmt.Fprintf(w, "{\"status\": \"scheduled\", \"id\": %q}\n", id)
}

// TaskView is GET /v1/tasks/{id}'s answer.
type TaskView struct {
	ID         string   `json:"id"`
	Queue      string   `json:"queue"`
	Name       string   `json:"name,omitempty"`
	URL        string   `json:"url"`
	Method     string   `json:"method"`
	State      string   `json:"state"`
	Attempts   uint64   `json:"attempts"`
	Retries    int      `json:"retries"`
	LastStatus int      `json:"last_status,omitempty"`
	ETA        float64  `json:"eta"`
	NextETA    float64  `json:"next_eta,omitempty"`
	Delivery   string   `json:"delivery"`
	Replicas   []string `json:"replicas"`
}

func (s *server) getTask(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
	defer cancel()
	st, err := s.b.Lookup(ctx, r.PathValue("id"))
	if err != nil {
		writeNodeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, taskView(st))
}

func taskView(st node.TaskStatus) TaskView {
	t := st.Task
	v := TaskView{ID: t.ID, Queue: t.Queue, Name: t.Name, URL: t.URL, Method: t.Method, State: st.State.String(),
		Attempts: st.Attempt, Retries: st.Retries, LastStatus: st.LastStatus, ETA: unix(t.ETA), Delivery: t.Delivery.String()}
	if !st.State.Final() && !st.NextETA.IsZero() {
		v.NextETA = unix(st.NextETA)
	}
	for _, rep := range t.Replicas {
		v.Replicas = append(v.Replicas, string(rep))
	}
	return v
}

// retryTask re-queues a dead task as a new task with the same queue, URL, method,
// headers and body (and no name: the dead one keeps its name until its dedup window
// ends). The dead task stays as it is, for the record.
func (s *server) retryTask(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
	defer cancel()
	id := r.PathValue("id")
	st, err := s.b.Lookup(ctx, id)
	if err != nil {
		writeNodeError(w, err)
		return
	}
	if st.State != node.StateDead {
		writeJSON(w, http.StatusConflict, map[string]string{"error": "only a dead task can be re-queued; this one is " + st.State.String(), "field": "id", "id": id, "state": st.State.String()})
		return
	}
	t := st.Task
	req := node.EnqueueRequest{Queue: t.Queue, URL: t.URL, Method: t.Method, Headers: t.Headers, ContentType: t.ContentType, Body: t.Body}
	newID, err := s.b.Enqueue(ctx, req)
	if err != nil {
		writeNodeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "scheduled", "id": newID, "requeued_from": id})
}

func (s *server) cancelTask(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
	defer cancel()
	id := r.PathValue("id")
	state, err := s.b.Cancel(ctx, id)
	if err != nil {
		writeNodeError(w, err)
		return
	}
	if state != node.StateCancelled {
		writeJSON(w, http.StatusConflict, map[string]string{"error": "the task is already " + state.String(), "field": "id", "id": id, "state": state.String()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"id": id, "status": "cancelled"})
}

func unix(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// writeNodeError maps the node's errors to HTTP answers.
func writeNodeError(w http.ResponseWriter, err error) {
	var fe *node.FieldError
	var dup *node.DuplicateNameError
	switch {
	case errors.As(err, &dup):
		writeJSON(w, http.StatusConflict, map[string]string{"error": dup.Error(), "field": "name", "id": dup.ID, "status": "exists"})
	case errors.As(err, &fe):
		writeError(w, http.StatusBadRequest, fe.Field, fe.Error())
	case errors.Is(err, node.ErrNotFound):
		writeError(w, http.StatusNotFound, "id", "no such task")
	case errors.Is(err, node.ErrOutcomeUnknown):
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": node.ErrOutcomeUnknown.Error(), "status": "unknown"})
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "the node did not answer in time; the outcome is unknown", "status": "unknown"})
	default:
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "the node is shutting down or unavailable"})
	}
}

func writeError(w http.ResponseWriter, code int, field, msg string) {
	if field != "" && !strings.HasPrefix(msg, field) {
		msg = field + ": " + msg
	}
	writeJSON(w, code, map[string]string{"error": msg, "field": field})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
