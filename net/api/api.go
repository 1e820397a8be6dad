// Package api is Miyamoto's HTTP interface for clients, compatible with the original:
//
//	POST   /{queue}          enqueue a task (form or JSON; see parseTask), or a JSON array of them (see MaxBatch)
//	GET    /v1/tasks/{id}    a task's state, attempts, last status code, replicas, attempt history and why it died
//	DELETE /v1/tasks/{id}    cancel a task
//	POST   /v1/tasks/{id}/retry  re-queue a dead task as a new task
//	GET    /v1/cluster       roster epoch, leader, members, this node, reachability
//	POST   /v1/cluster/join  add a node (serve --join): {"id", "peer_addr"}
//	POST   /v1/cluster/members/{id}/remove  remove a member: 200 "removed" once the roster no longer lists it, 202 "pending"
//	GET    /v1/queues        queues, their settings, their tasks across the cluster by state
//	GET    /v1/queues/{q}    a queue's settings (set and effective) and counts; PUT changes them (JSON, partial); DELETE removes them
//	POST   /v1/queues/{q}/pause, /resume, /purge
//	GET    /v1/queues/{q}/tasks?state=&limit=&after=  tasks across the cluster, paged
//	GET    /v1/schedules     cron schedules in force, with their next ticks
//	GET    /v1/schedules/{name}  one schedule; PUT creates or replaces it (JSON: cron,
//	                         time_zone, queue, task, missed); DELETE deletes it
//	GET    /metrics          counters in the Prometheus text format
//	GET    /healthz          200 {"status": "ok"} while the node can take a task; 503 {"status": "starting"|"unavailable"|"removed", "reason"} otherwise
//	GET    /livez            200 {"status": "alive"} while the process serves HTTP
//
// Cluster-wide answers (counts, task lists) come within node.Config.ListTimeout even
// when members are down: then with "partial": true and "missing" naming them.
//
// Errors are JSON objects {"error": "...", "field": "..."} with a 4xx code naming
// the field at fault, or 503 when the cluster could not answer in time (with a
// Retry-After header when waiting helps). Internal details never reach the client.
// It must never touch the node but through Backend.
//
// # Authentication
//
// With Config.Tokens set, every endpoint but GET /healthz and /livez, /metrics included,
// needs "Authorization: Bearer <token>" with one of the tokens (several allow
// rotation: add the new one, move the clients, drop the old one). A missing or
// wrong token answers 401 {"error": ..., "field": "Authorization"} with a
// WWW-Authenticate: Bearer challenge. Tokens are compared in constant time (their
// SHA-256 against every configured token's, without an early exit), and a
// presented token is never logged. Without tokens the API is open, as the
// original was: keep it then on a trusted network.
//
// # Limits
//
// An enqueue is bounded by Config (zero means the default):
//
//	MaxBody             1 MiB   413, field "body"; nothing beyond it is read
//	MaxURL              2048    bytes of the task URL; 400, field "url"
//	MaxParams           1000    form params (a JSON array counts each element); 400, field "params"
//	MaxTaskHeaders      100     entries in a JSON task's headers; 400, field "headers"
//	MaxTaskHeaderBytes  16 KiB  bytes of those names and values; 400, field "headers"
//
// and by fixed rules: a queue name has 1-100 characters, a task name at most 500
// (node.ValidateRequest), a method is one of GET, HEAD, POST, PUT, DELETE and PATCH
// (a GET, HEAD or DELETE task carries params only, sent in the query string, and
// its URL with them has at most 8 KiB), header names are HTTP tokens and header
// values hold no control characters, and a batch holds at most MaxBatch tasks. Every count
// is enforced while the body is parsed, so an oversized body costs no more than
// its bytes. Config.CheckURL, when set, vets each task URL (say against private
// addresses) after parsing, on enqueue and on retry; its error answers 400, field
// "url", with the error's text.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
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
	// NotReady says why the node takes no new task now ("" when it does): it is
	// starting, learning the queue settings, or its disk cannot write.
	NotReady(ctx context.Context) string
	// WriteMetrics writes the node's metrics in the Prometheus text format.
	WriteMetrics(w io.Writer)
}

// Describer is an optional ability of a Backend: Describe is Lookup with the
// attempt history of every replica merged in (node.Node.Describe). GET
// /v1/tasks/{id} uses it when the Backend has it.
type Describer interface {
	Describe(ctx context.Context, id string) (node.TaskStatus, error)
}

// Cluster is GET /v1/cluster's answer.
type Cluster struct {
	Self     string `json:"self"`
	Replicas int    `json:"replicas"`
	// Epoch is the roster's (1: the static --peers list, or a node alone; 0: a
	// node that is joining); Leader the member this node knows holds the roster
	// lease (empty: none known, as in a cluster whose roster never changed).
	Epoch   uint64   `json:"epoch"`
	Leader  string   `json:"leader,omitempty"`
	Members []Member `json:"members"`
	// Healthy is what GET /healthz says of this node: it can take a task (it reaches
	// a majority of the members among other things); Reason says why not.
	Healthy bool   `json:"healthy"`
	Reason  string `json:"reason,omitempty"`
	// Removed: this node learnt that the roster no longer lists it (POST
	// /v1/cluster/members/{id}/remove); it takes no task.
	Removed bool `json:"removed,omitempty"`
	// TasksOnRemoved counts the tasks this node holds, not final, whose replica
	// list names a removed member (absent when none).
	TasksOnRemoved int `json:"tasks_on_removed,omitempty"`
}

// Member is one node as this node sees it.
type Member struct {
	ID   string `json:"id"`
	Addr string `json:"addr,omitempty"`
	Self bool   `json:"self"`
	// Reachable: this node heard from it lately (itself: always).
	Reachable bool `json:"reachable"`
	// LastHeard is when this node last heard from it, in Unix seconds (0: never).
	LastHeard float64 `json:"last_heard,omitempty"`
}

// Config tunes the handler. A zero (or negative) limit means its default; see
// the package doc for what each limit answers.
type Config struct {
	// Tokens, when not empty, are the bearer tokens every endpoint but /healthz and /livez
	// requires; any one of them is accepted. Each must be non-empty printable
	// ASCII without spaces (see Validate); use long random ones (32+ bytes).
	Tokens []string

	MaxBody            int64 // largest request body in bytes; default 1 MiB
	MaxRequestHeader   int   // largest request target, and request headers, in bytes; default 64 KiB
	MaxURL             int   // longest task URL in bytes; default 2048
	MaxParams          int   // most form params in one task; default 1000
	MaxTaskHeaders     int   // most headers in one JSON task; default 100
	MaxTaskHeaderBytes int   // most bytes of those headers' names and values; default 16 KiB

	// CheckURL, when set, vets a task's URL (absolute http or https, already
	// checked by node.ValidateRequest) before it is enqueued or a dead task is
	// re-queued; a non-nil error answers 400, field "url", with the error's text,
	// so that text must be fit for clients. An error wrapping a context error
	// (the check ran out of time) answers 503 instead. It is called concurrently.
	CheckURL func(ctx context.Context, rawURL string) error

	// MaxListings is how many task listings (GET /v1/queues/{q}/tasks) run at
	// once; more wait up to ListingWait, then answer 503 "busy". Default 8.
	MaxListings int

	// Timeout bounds each request's wait for the cluster (and for CheckURL); default 10 s.
	Timeout time.Duration
	Logger  *slog.Logger
	// Unauthorized, when set, is called for every request refused for its token
	// (for a metric: refusals are logged at debug level only). It must not block.
	Unauthorized func()
}

// Defaults of Config's limits.
const (
	DefaultMaxBody            = 1 << 20
	DefaultMaxRequestHeader   = 64 << 10
	DefaultMaxURL             = 2048
	DefaultMaxParams          = 1000
	DefaultMaxTaskHeaders     = 100
	DefaultMaxTaskHeaderBytes = 16 << 10
	DefaultTimeout            = 10 * time.Second
	DefaultMaxListings        = 8
)

// ListingWait is how long a listing waits for a turn when MaxListings run.
const ListingWait = 2 * time.Second

// Validate reports every problem with c at once (joined), nil when there is none.
// NewHandler panics on a Config that fails it: call it where the flags are read.
// Its messages never show a token.
func (c Config) Validate() error {
	var errs []error
	for i, t := range c.Tokens {
		if t == "" {
			errs = append(errs, fmt.Errorf("api token %d is empty", i+1))
			continue
		}
		for j := 0; j < len(t); j++ {
			if t[j] <= ' ' || t[j] >= 0x7f {
				errs = append(errs, fmt.Errorf("api token %d holds a space, a control or a non-ASCII character (at byte %d): it could not be sent as a bearer token", i+1, j))
				break
			}
		}
	}
	return errors.Join(errs...)
}

// withDefaults fills in the zero fields.
func (c Config) withDefaults() Config {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	if c.MaxBody <= 0 {
		c.MaxBody = DefaultMaxBody
	}
	def(&c.MaxURL, DefaultMaxURL)
	def(&c.MaxParams, DefaultMaxParams)
	def(&c.MaxTaskHeaders, DefaultMaxTaskHeaders)
	def(&c.MaxTaskHeaderBytes, DefaultMaxTaskHeaderBytes)
	def(&c.MaxRequestHeader, DefaultMaxRequestHeader)
	def(&c.MaxListings, DefaultMaxListings)
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return c
}

type server struct {
	b   Backend
	cfg Config
	lim limits
	log *slog.Logger
	// listings holds a token per listing running: each one asks every member
	// and has every member walk its index, so they are bounded.
	listings chan struct{}
}

// reserved path segments that are not queues.
var reserved = map[string]bool{"v1": true, "healthz": true, "livez": true, "metrics": true}

// NewHandler returns the API's http.Handler.
// It panics if cfg fails Validate.
func NewHandler(b Backend, cfg Config) http.Handler {
	if err := cfg.Validate(); err != nil {
		panic("api.NewHandler: " + err.Error())
	}
	cfg = cfg.withDefaults()
	s := &server{b: b, cfg: cfg, log: cfg.Logger, listings: make(chan struct{}, cfg.MaxListings), lim: limits{
		url: cfg.MaxURL, params: cfg.MaxParams, headers: cfg.MaxTaskHeaders, headerBytes: cfg.MaxTaskHeaderBytes}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if why := s.b.NotReady(ctx); why != "" {
			setRetryAfter(w, time.Second)
			status := "unavailable"
			switch {
			case strings.HasPrefix(why, "starting"):
				status = "starting"
			case strings.HasPrefix(why, "removed"):
				status = "removed" // it will not take tasks again unless it joins again
			}
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": status, "reason": why})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	// A liveness probe: the process answers. It asks nothing of the node, so that a
	// node that is merely cut off from the cluster is not restarted for it.
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "alive"})
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
	if sb, ok := b.(ScheduleBackend); ok {
		s.scheduleRoutes(mux, sb)
	}
	if mb, ok := b.(MembershipBackend); ok {
		s.clusterRoutes(mux, mb)
	}
	mux.HandleFunc("GET /v1/tasks/{id}", s.getTask)
	mux.HandleFunc("DELETE /v1/tasks/{id}", s.cancelTask)
	mux.HandleFunc("POST /v1/tasks/{id}/retry", s.retryTask)
	mux.HandleFunc("POST /{queue}", s.enqueue)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "path", fmt.Sprintf("no such endpoint: %s %s (enqueue with POST /{queue})", r.Method, r.URL.Path))
	})
	var h http.Handler = mux
	if len(cfg.Tokens) > 0 {
		a := newAuth(cfg.Tokens, s.log, mux)
		a.refused = cfg.Unauthorized
		h = a
	}
	return limitRequest(cfg.MaxRequestHeader, h)
}

// limitRequest answers 414 or 431, in JSON, to a request whose target or headers
// exceed max bytes, before anything else (the token check included) reads them. The
// http.Server's own MaxHeaderBytes should be larger: it answers in plain text.
func limitRequest(max int, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.RequestURI) > max {
			writeError(w, http.StatusRequestURITooLong, "path", fmt.Sprintf("the request target is %d bytes; at most %d", len(r.RequestURI), max))
			return
		}
		n := 0
		for k, vs := range r.Header {
			for _, v := range vs {
				n += len(k) + len(v) + 4 // ": " and CRLF
			}
		}
		if n > max {
			writeError(w, http.StatusRequestHeaderFieldsTooLarge, "headers", fmt.Sprintf("the request headers are %d bytes; at most %d", n, max))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *server) enqueue(w http.ResponseWriter, r *http.Request) {
	queue := r.PathValue("queue")
	if !node.ValidQueueName(queue) || reserved[queue] {
		writeError(w, http.StatusBadRequest, "queue", fmt.Sprintf("%q is not a queue name: 1-100 letters, digits, '_', '-' or '.', not v1, healthz, livez or metrics", queue))
		return
	}
	body, ok := readBody(w, r, s.cfg.MaxBody)
	if !ok {
		return
	}
	if isBatch(body) {
		s.enqueueBatch(w, r, queue, body)
		return
	}
	req, err := decodeTask(queue, r.Header.Get("Content-Type"), body, s.lim)
	if err != nil {
		writeNodeError(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
	defer cancel()
	if !s.checkURL(ctx, w, req.URL) {
		return
	}
	id, err := s.b.Enqueue(ctx, req)
	if err != nil {
		s.log.Warn("enqueue failed", "queue", queue, "err", err)
		writeNodeError(w, err)
		return
	}
	// The original's exact answer, spacing included; built without fmt, as it
	// answers every enqueue.
	// Set directly under its canonical key with a shared value (never changed:
	// WriteHeader copies the values), instead of a new one-element slice each time.
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(http.StatusOK)
	w.Write(scheduledAnswer(id))
}

// jsonContentType is the Content-Type header's value of an enqueue's answer.
var jsonContentType = []string{"application/json"}

// scheduledAnswer is the body of an enqueue's answer:
// {"status": "scheduled", "id": "<id>"} and a newline, the ID quoted as %q quotes it.
func scheduledAnswer(id string) []byte {
	b := make([]byte, 0, len(`{"status": "scheduled", "id": ""}`)+len(id)+8)
	b = append(b, `{"status": "scheduled", "id": `...)
	b = strconv.AppendQuote(b, id)
	return append(b, "}\n"...)
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
	// DeadReason (state dead) and UnknownReason (state unknown) say why the task
	// ended so.
	DeadReason    string `json:"dead_reason,omitempty"`
	UnknownReason string `json:"unknown_reason,omitempty"`
	// AttemptsHistory lists the deliveries the replicas that answered made, oldest
	// first (each replica keeps its latest node.MaxAttemptHistory, in memory).
	AttemptsHistory []AttemptView `json:"attempts_history"`
}

// AttemptView is one delivery of a task: when (Unix seconds) and by which node it
// started, how long it took (seconds), and the worker's status, or why no answer
// came (Error: timeout, refused, dns, tls, policy, reset or other, with the
// error's text in Message); Body is the first bytes of the answer.
type AttemptView struct {
	Attempt  uint64  `json:"attempt"`
	Node     string  `json:"node"`
	Start    float64 `json:"start"`
	Duration float64 `json:"duration"`
	InFlight bool    `json:"in_flight,omitempty"`
	Status   int     `json:"status,omitempty"`
	Error    string  `json:"error,omitempty"`
	Message  string  `json:"message,omitempty"`
	Body     string  `json:"body,omitempty"`
}

func (s *server) getTask(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
	defer cancel()
	lookup := s.b.Lookup
	if d, ok := s.b.(Describer); ok {
		lookup = d.Describe
	}
	st, err := lookup(ctx, r.PathValue("id"))
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
	switch st.State {
	case node.StateDead:
		v.DeadReason = st.Reason
	case node.StateUnknown:
		v.UnknownReason = st.Reason
	}
	v.AttemptsHistory = make([]AttemptView, 0, len(st.Attempts))
	for _, a := range st.Attempts {
		v.AttemptsHistory = append(v.AttemptsHistory, AttemptView{Attempt: a.Number, Node: string(a.Node), Start: unix(a.Start),
			Duration: a.Duration.Seconds(), InFlight: a.InFlight, Status: a.Status, Error: a.Error.String(), Message: a.Message, Body: a.Body})
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
	req, err := node.RequeueRequest(st)
	if err != nil {
		writeJSON(w, http.StatusConflict, map[string]string{"error": err.Error(), "field": "id", "id": id, "state": st.State.String()})
		return
	}
	if !s.checkURL(ctx, w, req.URL) {
		return
	}
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

// ErrCheckLater, wrapped in an error of Config.CheckURL, says the URL could not be
// checked now (a DNS timeout, say) rather than that it is bad: 503 with Retry-After.
var ErrCheckLater = errors.New("the task URL could not be checked now")

// checkURL runs Config.CheckURL on a task URL; when it refuses the URL it
// answers (400, or 503 if the check ran out of time or ErrCheckLater) and returns
// false.
func (s *server) checkURL(ctx context.Context, w http.ResponseWriter, rawURL string) bool {
	code, body := s.urlRefusal(ctx, rawURL)
	if code == 0 {
		return true
	}
	if code == http.StatusServiceUnavailable {
		setRetryAfter(w, time.Second)
	}
	writeJSON(w, code, body)
	return false
}

// urlRefusal runs Config.CheckURL on a task URL and returns the answer that
// refuses it (code 0: the URL passed).
func (s *server) urlRefusal(ctx context.Context, rawURL string) (code int, body map[string]string) {
	if s.cfg.CheckURL == nil {
		return 0, nil
	}
	err := s.cfg.CheckURL(ctx, rawURL)
	switch {
	case err == nil:
		return 0, nil
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled), errors.Is(err, ErrCheckLater):
		s.log.Warn("task URL check did not finish", "err", err)
		return http.StatusServiceUnavailable, map[string]string{"error": "url: the task URL could not be checked now (its host name did not resolve in time); retry later", "field": "url"}
	default:
		return http.StatusBadRequest, errorBody("url", err.Error())
	}
}

// readBody reads r's body, at most limit bytes of it. A larger body answers 413
// naming "body": at once when Content-Length says so, else after limit+1 bytes, and
// the buffer never grows beyond limit+1 bytes. http.MaxBytesReader also tells the
// server to close the connection rather than drain the rest.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, bool) {
	tooLarge := func() ([]byte, bool) {
		writeError(w, http.StatusRequestEntityTooLarge, "body", fmt.Sprintf("is larger than %d bytes", limit))
		return nil, false
	}
	if r.ContentLength > limit {
		return tooLarge()
	}
	body := http.MaxBytesReader(w, r.Body, limit)
	size := int64(512)
	if r.ContentLength >= 0 {
		size = r.ContentLength + 1 // +1: room to read the EOF without growing
	}
	buf := make([]byte, 0, min(size, limit+1))
	for {
		if len(buf) == cap(buf) {
			grown := make([]byte, len(buf), min(2*int64(cap(buf))+512, limit+1))
			copy(grown, buf)
			buf = grown
		}
		n, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		switch {
		case err == io.EOF:
			return buf, true
		case int64(len(buf)) > limit || err != nil && isMaxBytes(err):
			return tooLarge()
		case err != nil:
			writeError(w, http.StatusBadRequest, "body", "could not be read")
			return nil, false
		}
	}
}

// isMaxBytes reports whether err is http.MaxBytesReader's error. Its own function,
// called only on an error: the target errors.As is given escapes to the heap, and
// declared in readBody's loop it cost an allocation for every read of every body.
func isMaxBytes(err error) bool {
	var mbe *http.MaxBytesError
	return errors.As(err, &mbe)
}

// sentinels maps the node's expected outcomes, its sentinel errors, to HTTP
// answers: writeNodeError tries them in order with errors.Is. This is the one
// place to add a sentinel. The answer is {"error": msg, "field": field, "status":
// status}, without the empty members; msg defaults to the sentinel's own text
// (sentinel texts are written for clients; a wrapping error's text is never
// shown). retryAfter, when not zero, is sent as Retry-After in whole seconds.
var sentinels = []struct {
	err                error
	code               int
	retryAfter         time.Duration
	field, status, msg string
}{
	{err: node.ErrNotFound, code: http.StatusNotFound, field: "id", msg: "no such task"},
	{err: node.ErrScheduleNotFound, code: http.StatusNotFound, field: "name", msg: "no such schedule"},
	{err: node.ErrOutcomeUnknown, code: http.StatusServiceUnavailable, retryAfter: time.Second, status: "unknown"},
	// A node (or a majority of the task's replicas) or a queue at its limit of
	// pending tasks: nothing was stored.
	{err: node.ErrNodeFull, code: http.StatusServiceUnavailable, retryAfter: time.Second, status: "full"},
	{err: node.ErrQueueFull, code: http.StatusServiceUnavailable, retryAfter: time.Second, field: "queue", status: "full"},
	// The node is learning the queue settings, or cannot write its disk: nothing
	// was stored; another node (or this one, a little later) takes it.
	{err: node.ErrStarting, code: http.StatusServiceUnavailable, retryAfter: time.Second, status: "starting"},
	{err: node.ErrStorage, code: http.StatusServiceUnavailable, retryAfter: time.Second, status: "unavailable"},
	// The node has not been added to the cluster yet (serve --join).
	{err: node.ErrJoining, code: http.StatusServiceUnavailable, retryAfter: time.Second, status: "joining"},
	// The node was removed from the cluster: another member takes it.
	{err: node.ErrRemoved, code: http.StatusServiceUnavailable, retryAfter: time.Second, status: "removed"},
	// A queue change that a newer one (by version) replaced before every member had
	// it: it does not stand; read the queue and change it again.
	{err: node.ErrSuperseded, code: http.StatusConflict, field: "queue", status: "superseded"},
}

// writeNodeError maps the node's errors to HTTP answers.
func writeNodeError(w http.ResponseWriter, err error) {
	code, body, retryAfter := nodeErrorAnswer(err)
	if retryAfter > 0 {
		setRetryAfter(w, retryAfter)
	}
	writeJSON(w, code, body)
}

// nodeErrorAnswer is the HTTP answer to one of the node's errors: its code, its
// JSON body, and the Retry-After to send (0: none).
func nodeErrorAnswer(err error) (code int, body map[string]string, retryAfter time.Duration) {
	var fe *node.FieldError
	var dup *node.DuplicateNameError
	switch {
	case errors.As(err, &dup):
		return http.StatusConflict, map[string]string{"error": dup.Error(), "field": "name", "id": dup.ID, "status": "exists"}, 0
	case errors.As(err, &fe):
		return http.StatusBadRequest, errorBody(fe.Field, fe.Error()), 0
	case errors.Is(err, node.ErrTooManyQueues):
		// A new queue past --max-queues: the message names it.
		return http.StatusConflict, errorBody("queue", err.Error()), 0
	}
	for _, e := range sentinels {
		if !errors.Is(err, e.err) {
			continue
		}
		msg := e.msg
		if msg == "" {
			msg = e.err.Error()
		}
		body := map[string]string{"error": msg}
		if e.field != "" {
			body["field"] = e.field
			if !strings.HasPrefix(msg, e.field) {
				body["error"] = e.field + ": " + msg
			}
		}
		if e.status != "" {
			body["status"] = e.status
		}
		return e.code, body, e.retryAfter
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable, map[string]string{"error": "the node did not answer in time; the outcome is unknown", "status": "unknown"}, time.Second
	default:
		return http.StatusServiceUnavailable, map[string]string{"error": "the node is shutting down or unavailable"}, 0
	}
}

// setRetryAfter sets Retry-After to d in whole seconds, rounded up, at least 1.
func setRetryAfter(w http.ResponseWriter, d time.Duration) {
	w.Header().Set("Retry-After", strconv.FormatInt(max(1, int64((d+time.Second-1)/time.Second)), 10))
}

func writeError(w http.ResponseWriter, code int, field, msg string) {
	writeJSON(w, code, errorBody(field, msg))
}

// errorBody is the JSON body of an error about field: the message starts with
// the field's name.
func errorBody(field, msg string) map[string]string {
	if field != "" && !strings.HasPrefix(msg, field) {
		msg = field + ": " + msg
	}
	return map[string]string{"error": msg, "field": field}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
