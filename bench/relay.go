package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sync/semaphore"
)

// Relay is the baseline Miyamoto is measured against: it takes exactly Miyamoto's
// enqueue request (POST /{queue}, a form with task.url or a JSON object with url and
// params), answers {"status": "scheduled", "id": "<uuid>"} at once, and forwards the
// task's body to its URL with one POST, asynchronously, through a pooled keep-alive
// client with at most MaxConcurrent forwards in flight. It stores nothing, replicates
// nothing, honours no countdown and never retries: what it reaches is the limit of
// HTTP in, HTTP out on the machine, which no task queue can beat.
//
// It must never be used as a task queue: a task whose forward fails is lost.
type Relay struct {
	cfg    RelayConfig
	client *http.Client
	sem    *semaphore.Weighted
	srv    *http.Server
	ln     net.Listener

	ctx    context.Context // cancelled by Close to cut forwards still waiting
	cancel context.CancelFunc
	wg     sync.WaitGroup // forwards in flight
	served chan struct{}

	accepted, forwarded, failed atomic.Int64
}

// RelayConfig tunes a Relay. Zero fields get the defaults, which match Miyamoto's
// webhook dispatcher (net/webhook) so that the two send alike.
type RelayConfig struct {
	Addr           string        // listen address; default 127.0.0.1:0
	MaxConcurrent  int64         // forwards in flight at once; default 256
	MaxBody        int64         // largest enqueue body in bytes; default 1 MiB
	ForwardTimeout time.Duration // bound on one forward, waiting for a slot included; default 10s
}

// RelayStats are a Relay's counters.
type RelayStats struct {
	Accepted  int64 // enqueues answered "scheduled"
	Forwarded int64 // forwards answered 2xx
	Failed    int64 // forwards that failed or were answered otherwise
}

func (c *RelayConfig) fillDefaults() {
	if c.Addr == "" {
		c.Addr = "127.0.0.1:0"
	}
	if c.MaxConcurrent <= 0 {
		c.MaxConcurrent = 256
	}
	if c.MaxBody <= 0 {
		c.MaxBody = 1 << 20
	}
	if c.ForwardTimeout <= 0 {
		c.ForwardTimeout = 10 * time.Second
	}
}

// newClient is a pooled keep-alive client that returns redirects as they are, set up
// like net/webhook's.
func newClient(maxIdlePerHost int) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = max(1024, maxIdlePerHost)
	tr.MaxIdleConnsPerHost = maxIdlePerHost
	tr.IdleConnTimeout = 90 * time.Second
	tr.DisableCompression = true
	return &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// StartRelay listens on cfg.Addr and serves until Close.
func StartRelay(cfg RelayConfig) (*Relay, error) {
	cfg.fillDefaults()
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Relay{
		cfg:    cfg,
		client: newClient(int(min(cfg.MaxConcurrent, 4096))),
		sem:    semaphore.NewWeighted(cfg.MaxConcurrent),
		ln:     ln,
		ctx:    ctx,
		cancel: cancel,
		served: make(chan struct{}),
	}
	r.srv = serveEnqueues(ln, r.handleEnqueue, r.served)
	return r, nil
}

// serveEnqueues serves, on ln, POST /{queue} with enqueue and GET /healthz, until
// its server is closed; then it closes served. The relay and the peers' frontends
// share it, so that every target takes the load's requests the same way.
func serveEnqueues(ln net.Listener, enqueue http.HandlerFunc, served chan struct{}) *http.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /{queue}", enqueue)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"status": "ok"}` + "\n"))
	})
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	go func() {
		defer close(served)
		srv.Serve(ln) // http.ErrServerClosed after Close
	}()
	return srv
}

// URL is the relay's base URL, e.g. http://127.0.0.1:41234.
func (r *Relay) URL() string { return "http://" + r.ln.Addr().String() }

// Stats returns the relay's counters.
func (r *Relay) Stats() RelayStats {
	return RelayStats{Accepted: r.accepted.Load(), Forwarded: r.forwarded.Load(), Failed: r.failed.Load()}
}

func (r *Relay) handleEnqueue(w http.ResponseWriter, req *http.Request) {
	t, ok := readRelayTask(w, req, r.cfg.MaxBody)
	if !ok {
		return
	}
	id := uuid.NewString()
	queue := req.PathValue("queue")
	r.accepted.Add(1)
	r.wg.Add(1)
	go r.forward(id, queue, t)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	fmt.Fprintf(w, "{\"status\": \"scheduled\", \"id\": %q}\n", id)
}

func (r *Relay) forward(id, queue string, t relayTask) {
	defer r.wg.Done()
	ctx, cancel := context.WithTimeout(r.ctx, r.cfg.ForwardTimeout)
	defer cancel()
	if err := r.sem.Acquire(ctx, 1); err != nil {
		r.failed.Add(1)
		return
	}
	defer r.sem.Release(1)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(t.body))
	if err != nil {
		r.failed.Add(1)
		return
	}
	req.Header.Set("Content-Type", t.contentType)
	req.Header.Set("User-Agent", "miyamoto-bench-relay")
	req.Header.Set("X-Task-Id", id)
	req.Header.Set("X-Task-Queue", queue)
	resp, err := r.client.Do(req)
	if err != nil {
		r.failed.Add(1)
		return
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		r.failed.Add(1)
		return
	}
	r.forwarded.Add(1)
}

// Close stops taking enqueues, lets forwards in flight finish until ctx is done, then
// cuts the rest.
func (r *Relay) Close(ctx context.Context) error {
	err := r.srv.Shutdown(ctx)
	if err != nil {
		r.srv.Close()
	}
	<-r.served
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		r.cancel()
		<-done
		err = errors.Join(err, ctx.Err())
	}
	r.cancel()
	r.client.CloseIdleConnections()
	return err
}

// relayTask is what the relay keeps of an enqueue: where to send what (and, for the
// peers' frontends, when: the relay itself ignores the countdown).
type relayTask struct {
	url         string
	body        []byte
	contentType string
	countdown   time.Duration
}

type relayFieldError struct{ field, msg string }

func (e *relayFieldError) Error() string { return e.field + " " + e.msg }

// readRelayTask reads and parses an enqueue request's body (at most maxBody bytes),
// or answers 400 naming the field and reports false.
func readRelayTask(w http.ResponseWriter, req *http.Request, maxBody int64) (relayTask, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, maxBody))
	if err != nil {
		writeRelayError(w, http.StatusBadRequest, "body", "could not be read")
		return relayTask{}, false
	}
	t, err := parseRelayTask(body)
	if err != nil {
		var fe *relayFieldError
		if errors.As(err, &fe) {
			writeRelayError(w, http.StatusBadRequest, fe.field, fe.msg)
		} else {
			writeRelayError(w, http.StatusBadRequest, "body", err.Error())
		}
		return relayTask{}, false
	}
	return t, true
}

// parseRelayTask is a minimal form of Miyamoto's parser (net/api/parse.go): a form
// gives task.url and forwards every field not named task.* as the body, in the order
// sent; a JSON object gives url and forwards params, form-encoded. A countdown
// (task.countdown or countdown, in seconds) is read for the peers' frontends; the
// other task fields are read and ignored.
func parseRelayTask(body []byte) (relayTask, error) {
	if trimmed := bytes.TrimSpace(body); len(trimmed) > 0 && trimmed[0] == '{' {
		return parseRelayJSON(trimmed)
	}
	t := relayTask{contentType: "application/x-www-form-urlencoded"}
	var rest []string
	for _, pair := range strings.Split(string(body), "&") {
		if pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		key, err := url.QueryUnescape(k)
		if err != nil {
			return t, &relayFieldError{k, "is not valid form encoding"}
		}
		if !strings.HasPrefix(key, "task.") {
			rest = append(rest, pair)
			continue
		}
		switch key {
		case "task.url":
			if t.url, err = url.QueryUnescape(v); err != nil {
				return t, &relayFieldError{key, "is not valid form encoding"}
			}
		case "task.countdown":
			if t.countdown, err = parseCountdown(v); err != nil {
				return t, &relayFieldError{key, err.Error()}
			}
		}
	}
	if t.url == "" {
		return t, &relayFieldError{"task.url", "is required"}
	}
	t.body = []byte(strings.Join(rest, "&"))
	return t, nil
}

func parseRelayJSON(b []byte) (relayTask, error) {
	t := relayTask{contentType: "application/x-www-form-urlencoded"}
	var jt struct {
		URL       string         `json:"url"`
		Params    map[string]any `json:"params"`
		Countdown *float64       `json:"countdown"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&jt); err != nil {
		return t, &relayFieldError{"body", "is not a valid JSON object"}
	}
	if jt.URL == "" {
		return t, &relayFieldError{"url", "is required"}
	}
	t.url = jt.URL
	if jt.Countdown != nil {
		var err error
		if t.countdown, err = parseCountdown(strconv.FormatFloat(*jt.Countdown, 'f', -1, 64)); err != nil {
			return t, &relayFieldError{"countdown", err.Error()}
		}
	}
	v := url.Values{}
	for k, val := range jt.Params {
		switch x := val.(type) {
		case []any:
			for _, e := range x {
				v.Add(k, fmt.Sprint(e))
			}
		case nil:
			v.Add(k, "")
		default:
			v.Add(k, fmt.Sprint(x))
		}
	}
	t.body = []byte(v.Encode())
	return t, nil
}

// parseCountdown reads a countdown in seconds, at most a day.
func parseCountdown(s string) (time.Duration, error) {
	secs, err := strconv.ParseFloat(s, 64)
	if err != nil || secs < 0 || secs > 86400 {
		return 0, errors.New("must be a number of seconds between 0 and 86400")
	}
	return time.Duration(secs * float64(time.Second)), nil
}

func writeRelayError(w http.ResponseWriter, code int, field, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": field + " " + msg, "field": field})
}
