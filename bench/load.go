package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Load modes.
const (
	// ModeOpen sends requests at LoadConfig.Rate whatever the answers, as
	// independent clients would; requests it cannot start because MaxInFlight are
	// already waiting are counted as shed. Request i is due at start + i/Rate, and its
	// latency counts from then, so that a stalled sender or a full connection pool
	// shows in the latency instead of hiding it.
	ModeOpen = "open"
	// ModeClosed runs LoadConfig.Concurrency clients, each sending its next request
	// as soon as the previous one is answered.
	ModeClosed = "closed"
)

// LoadConfig is one enqueue workload. Zero optional fields get the defaults below.
type LoadConfig struct {
	Target string // base URL of the node to enqueue at, e.g. http://127.0.0.1:8088
	// Targets, when not empty, replaces Target: requests rotate over these base URLs
	// (to spread the load over the nodes of a cluster).
	Targets     []string
	Queue       string        // queue name; default "bench"
	WorkerURL   string        // the task URL every task is sent to
	Mode        string        // ModeOpen or ModeClosed
	Rate        float64       // open loop: requests per second
	Concurrency int           // closed loop: clients
	Duration    time.Duration // how long requests are started for
	Countdown   time.Duration // task.countdown of every task; 0 sends none (due at once)
	// MaxInFlight bounds the requests an open loop has due and not yet answered,
	// waiting for a client included; default 1024.
	MaxInFlight int
	// Connections is the number of clients an open loop sends with, each on its own
	// keep-alive connection, per target; default 64. A closed loop uses one
	// connection per client.
	Connections int
	// RequestTimeout bounds one enqueue request; default 10s.
	RequestTimeout time.Duration
	// Payload is the size in bytes of the one form field sent to the worker besides
	// the request's sequence number; default 0.
	Payload int
}

// LoadResult is what a workload measured.
type LoadResult struct {
	Mode     string
	Sent     int            // requests started
	Acked    int            // answered 200 {"status": "scheduled", "id": ...}
	Shed     int            // open loop: requests not started (MaxInFlight waiting)
	Errors   map[string]int // failed requests by HTTP status ("503") or "transport" / "bad-answer"
	Start    time.Time      // first request sent
	End      time.Time      // last answer read (or given up)
	Elapsed  time.Duration  // End - Start
	Rate     float64        // Acked per second of Elapsed
	P50, P99 time.Duration  // enqueue latency of acknowledged requests
	Max      time.Duration
	// Acks lists every acknowledged task, in the order the answers arrived.
	Acks []Ack
}

// Ack is one acknowledged enqueue.
type Ack struct {
	ID   string
	Sent time.Time // when the request was sent (open loop: when it was due)
}

// ErrorCount is the number of failed requests (not counting shed ones).
func (r LoadResult) ErrorCount() int {
	n := 0
	for _, c := range r.Errors {
		n += c
	}
	return n
}

// IDs returns the acknowledged task IDs.
func (r LoadResult) IDs() []string {
	ids := make([]string, len(r.Acks))
	for i, a := range r.Acks {
		ids[i] = a.ID
	}
	return ids
}

// fillDefaults sets the optional fields and checks the rest, reporting every problem.
func (c *LoadConfig) fillDefaults() error {
	if c.Queue == "" {
		c.Queue = "bench"
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 1024
	}
	if c.Connections == 0 {
		c.Connections = 64
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 10 * time.Second
	}
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, a...)))
	}
	if c.Target == "" && len(c.Targets) == 0 {
		bad("Target", "is required")
	}
	for _, t := range append([]string{c.Target}, c.Targets...) {
		if t == "" {
			continue
		}
		if u, err := url.Parse(t); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("Target", "%q is not a base URL like http://127.0.0.1:8088", t)
		}
	}
	if u, err := url.Parse(c.WorkerURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("WorkerURL", "%q is not an absolute http URL", c.WorkerURL)
	}
	switch c.Mode {
	case ModeOpen:
		if !(c.Rate > 0) || c.Rate > 1e7 {
			bad("Rate", "must be between 0 and 1e7 requests per second in open loop, not %v", c.Rate)
		}
	case ModeClosed:
		if c.Concurrency < 1 || c.Concurrency > 100000 {
			bad("Concurrency", "must be between 1 and 100000 clients in closed loop, not %d", c.Concurrency)
		}
	default:
		bad("Mode", "must be %q or %q, not %q", ModeOpen, ModeClosed, c.Mode)
	}
	if c.Duration <= 0 {
		bad("Duration", "must be positive, not %v", c.Duration)
	}
	if c.Countdown < 0 {
		bad("Countdown", "must not be negative, not %v", c.Countdown)
	}
	if c.MaxInFlight < 1 {
		bad("MaxInFlight", "must be positive, not %d", c.MaxInFlight)
	}
	if c.Connections < 1 || c.Connections > 10000 {
		bad("Connections", "must be between 1 and 10000, not %d", c.Connections)
	}
	if c.RequestTimeout < 0 {
		bad("RequestTimeout", "must be positive, not %v", c.RequestTimeout)
	}
	if c.Payload < 0 || c.Payload > 1<<20 {
		bad("Payload", "must be between 0 and 1 MiB, not %d", c.Payload)
	}
	return errors.Join(errs...)
}

// loadRun is one RunLoad in progress.
type loadRun struct {
	cfg     LoadConfig
	client  *http.Client
	urls    []string // enqueue URLs, rotated over
	next    atomic.Uint64
	prefix  string // form fields every request shares
	payload string

	mu        sync.Mutex
	latencies []time.Duration
	acks      []Ack
	errors    map[string]int
	lastEnd   time.Time
}

// RunLoad runs the workload until cfg.Duration has passed and every request it sent
// was answered or timed out (or until ctx is done), and reports what it measured.
func RunLoad(ctx context.Context, cfg LoadConfig) (LoadResult, error) {
	if err := cfg.fillDefaults(); err != nil {
		return LoadResult{}, err
	}
	targets := cfg.Targets
	if len(targets) == 0 {
		targets = []string{cfg.Target}
	}
	conns := cfg.Concurrency // closed loop: one connection per client
	if cfg.Mode == ModeOpen {
		conns = cfg.Connections // per target
	}
	r := &loadRun{cfg: cfg, client: newClient(conns), errors: map[string]int{}}
	r.client.Transport.(*http.Transport).MaxConnsPerHost = conns
	defer r.client.CloseIdleConnections()
	for _, t := range targets {
		r.urls = append(r.urls, strings.TrimRight(t, "/")+"/"+url.PathEscape(cfg.Queue))
	}
	// Dial the connections before the clock starts, so that the first requests do not
	// pay for a storm of handshakes.
	r.warmUp(ctx, targets, conns)
	form := url.Values{"task.url": {cfg.WorkerURL}}
	if cfg.Countdown > 0 {
		form.Set("task.countdown", strconv.FormatFloat(cfg.Countdown.Seconds(), 'f', -1, 64))
	}
	r.prefix = form.Encode() + "&n="
	if cfg.Payload > 0 {
		r.payload = "&payload=" + strings.Repeat("x", cfg.Payload)
	}

	start := time.Now()
	var sent, shed int
	switch cfg.Mode {
	case ModeClosed:
		sent = r.runClosed(ctx, start)
	case ModeOpen:
		sent, shed = r.runOpen(ctx, start)
	}

	res := LoadResult{Mode: cfg.Mode, Sent: sent, Shed: shed, Start: start, End: r.lastEnd, Errors: r.errors, Acks: r.acks}
	if res.End.Before(start) {
		res.End = time.Now()
	}
	res.Acked = len(r.acks)
	res.Elapsed = res.End.Sub(start)
	if res.Elapsed > 0 {
		res.Rate = float64(res.Acked) / res.Elapsed.Seconds()
	}
	res.P50, res.P99, res.Max = percentiles(r.latencies)
	return res, ctx.Err()
}

func (r *loadRun) runClosed(ctx context.Context, start time.Time) int {
	stop := start.Add(r.cfg.Duration)
	var sent atomic.Int64
	var wg sync.WaitGroup
	for c := 0; c < r.cfg.Concurrency; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && time.Now().Before(stop) {
				sent.Add(1)
				r.enqueue(ctx, time.Now())
			}
		}()
	}
	wg.Wait()
	return int(sent.Load())
}

// runOpen makes request i due at start + i/Rate and hands it to a pool of
// Connections clients per target; a request that finds MaxInFlight others due and
// unanswered is shed.
func (r *loadRun) runOpen(ctx context.Context, start time.Time) (sent, shed int) {
	clients := r.cfg.Connections * len(r.urls)
	queue := make(chan time.Time, max(r.cfg.MaxInFlight-clients, 0))
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for due := range queue {
				r.enqueue(ctx, due)
			}
		}()
	}
	total := int(r.cfg.Rate * r.cfg.Duration.Seconds())
	interval := time.Duration(float64(time.Second) / r.cfg.Rate)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for i := 0; i < total && ctx.Err() == nil; {
		// Hand out every request that is due by now.
		due := min(total, int(time.Since(start).Seconds()*r.cfg.Rate)+1)
		for ; i < due; i++ {
			select {
			case queue <- start.Add(time.Duration(i) * interval):
				sent++
			default:
				shed++
			}
		}
		if i >= total {
			break
		}
		timer.Reset(max(time.Until(start.Add(time.Duration(i)*interval)), 0))
		select {
		case <-timer.C:
		case <-ctx.Done():
		}
	}
	close(queue)
	wg.Wait()
	return sent, shed
}

// enqueue sends one request and records its outcome; its latency counts from due.
func (r *loadRun) enqueue(ctx context.Context, due time.Time) {
	seq := r.next.Add(1) - 1
	target := r.urls[seq%uint64(len(r.urls))]
	body := r.prefix + strconv.FormatUint(seq, 10) + r.payload
	ctx, cancel := context.WithTimeout(ctx, r.cfg.RequestTimeout)
	defer cancel()
	id, failure := r.post(ctx, target, body)
	end := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if end.After(r.lastEnd) {
		r.lastEnd = end
	}
	if failure != "" {
		r.errors[failure]++
		return
	}
	r.latencies = append(r.latencies, end.Sub(due))
	r.acks = append(r.acks, Ack{ID: id, Sent: due})
}

// warmUp opens up to n keep-alive connections to each target with concurrent
// GET /healthz requests (which enqueue nothing), bounded in time. Whatever fails is
// left for the load to dial.
func (r *loadRun) warmUp(ctx context.Context, targets []string, n int) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, t := range targets {
		u := strings.TrimRight(t, "/") + "/healthz"
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
				if err != nil {
					return
				}
				if resp, err := r.client.Do(req); err == nil {
					io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
					resp.Body.Close()
				}
			}()
		}
	}
	wg.Wait()
}

// post sends one enqueue and returns the task ID, or what went wrong.
func (r *loadRun) post(ctx context.Context, target, body string) (id, failure string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, strings.NewReader(body))
	if err != nil {
		return "", "transport"
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := r.client.Do(req)
	if err != nil {
		return "", "transport"
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if err != nil {
		return "", "transport"
	}
	if resp.StatusCode != http.StatusOK {
		return "", strconv.Itoa(resp.StatusCode)
	}
	var ans struct {
		Status string `json:"status"`
		ID     string `json:"id"`
	}
	if err := json.NewDecoder(bytes.NewReader(b)).Decode(&ans); err != nil || ans.Status != "scheduled" || ans.ID == "" {
		return "", "bad-answer"
	}
	return ans.ID, ""
}

// percentiles returns the 50th and 99th percentiles and the maximum (nearest rank).
func percentiles(ds []time.Duration) (p50, p99, mx time.Duration) {
	if len(ds) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return rank(s, 0.50), rank(s, 0.99), s[len(s)-1]
}

// rank is the nearest-rank percentile of sorted s.
func rank(s []time.Duration, p float64) time.Duration {
	i := int(p*float64(len(s))+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}
