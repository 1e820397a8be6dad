// Package webhook calls task URLs: the production node.Dispatcher.
//
// Each delivery runs on its own goroutine, waits for one of MaxConcurrent slots, and
// makes one HTTP request through a pooled keep-alive client with the delivery's
// deadline (counted from the Dispatch call). Redirects are not followed: a 3xx is a
// failed attempt, like any answer that is not 2xx. The result is handed to the post
// function given to New, exactly once per Dispatch; it must not block.
//
// With a Signer, every delivery is signed the Standard Webhooks way (see Signer).
// With a urlpolicy.Policy, the default client refuses to connect to the addresses
// the policy denies, checked at connect time (see NewClient); such a refusal is a
// failed attempt like any connection error.
//
// Every result says, when no answer came, why (Classify), and carries the first
// node.MaxAttemptBody bytes of the answer, for the task's attempt history.
//
// It must never retry by itself: retries are the node's decision.
package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/miyamotohq/miyamoto/net/urlpolicy"
	"github.com/miyamotohq/miyamoto/node"
)

// Version goes into the User-Agent header: miyamoto/<Version>.
const Version = "0.2"

// Config tunes a Dispatcher. Zero fields get defaults.
type Config struct {
	MaxConcurrent int64  // webhooks in flight at once; default 256
	NodeID        string // sent as X-Miyamoto-Node, so a worker can tell who called
	// Client defaults to NewClient(Policy): pooled keep-alive connections, no
	// redirects.
	Client *http.Client
	// MaxResponseBody is read from each answer (then dropped) so that the
	// connection can be reused; default 64 KiB.
	MaxResponseBody int64
	// Signer signs every delivery (webhook-id, webhook-timestamp and
	// webhook-signature headers); nil sends them unsigned.
	Signer *Signer
	// Policy, when set, is enforced at connect time by the default client, which
	// then uses no HTTP proxy (see NewClient). It cannot be enforced on a client
	// built elsewhere: New panics if Client is set too. nil: any address.
	Policy *urlpolicy.Policy
}

// DefaultMaxConcurrent is how many deliveries a Dispatcher runs at once unless
// told otherwise.
const DefaultMaxConcurrent = 256

// Dispatcher implements node.Dispatcher over HTTP.
type Dispatcher struct {
	client *http.Client
	// transport is client's, when client is NewClient's own: send skips Do then.
	transport http.RoundTripper
	sem       *semaphore.Weighted
	post      func(node.DeliveryResult)
	maxBody   int64
	nodeID    string
	// nodeIDValue is X-Miyamoto-Node's value, shared by every delivery (net/http
	// only reads a request's headers).
	nodeIDValue []string
	signer      *Signer

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // deliveries not yet posted
	// work hands a delivery to an idle worker; workers counts the worker
	// goroutines, which Close waits for after cancelling ctx.
	work    chan node.Delivery
	workers sync.WaitGroup
}

// workerIdle is how long a worker goroutine waits for another delivery before it
// ends, so the pool shrinks back after a burst.
const workerIdle = 10 * time.Second

var _ node.Dispatcher = (*Dispatcher)(nil)

// NewClient is the default client: keep-alive connections pooled per host, and
// redirects returned as they are instead of followed.
//
// With a policy (nil: none), every connection is dialed by policy.DialContext,
// which resolves the host itself and connects only to addresses the policy allows,
// so a name that resolves elsewhere since the enqueue check (DNS rebinding) is
// refused. The client then ignores HTTP_PROXY and friends: through a proxy, the
// address checked would be the proxy's, and the proxy would reach the target
// unchecked.
func NewClient(policy *urlpolicy.Policy) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// As many idle connections as calls in flight: the daemon keeps descriptors
	// for both (net/daemon's fdReserve).
	tr.MaxIdleConns = DefaultMaxConcurrent
	tr.MaxIdleConnsPerHost = 256
	tr.IdleConnTimeout = 90 * time.Second
	tr.DisableCompression = true // the body is the worker's business; send no Accept-Encoding
	if policy != nil {
		tr.Proxy = nil
		tr.DialContext = policy.DialContext
	}
	return &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// New returns a Dispatcher that hands results to post. It panics if cfg sets both
// Client and Policy: the policy would silently not apply.
func New(cfg Config, post func(node.DeliveryResult)) *Dispatcher {
	if cfg.MaxConcurrent <= 0 {
		cfg.MaxConcurrent = DefaultMaxConcurrent
	}
	if cfg.Client != nil && cfg.Policy != nil {
		panic("webhook: Config sets both Client and Policy; build the client with NewClient(policy)")
	}
	var transport http.RoundTripper // set when the client is NewClient's
	if cfg.Client == nil {
		cfg.Client = NewClient(cfg.Policy)
		transport = cfg.Client.Transport
	}
	if cfg.MaxResponseBody <= 0 {
		cfg.MaxResponseBody = 64 << 10
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Dispatcher{client: cfg.Client, sem: semaphore.NewWeighted(cfg.MaxConcurrent), post: post, maxBody: cfg.MaxResponseBody, nodeID: cfg.NodeID, nodeIDValue: []string{cfg.NodeID}, signer: cfg.Signer, ctx: ctx, cancel: cancel, transport: transport,
		work: make(chan node.Delivery)}
}

// ErrNoSlot: the deadline passed while every slot was busy; nothing was sent.
var ErrNoSlot = errors.New("no free delivery slot before the deadline")

// Dispatch starts one delivery and returns at once: an idle worker goroutine takes
// it, or a new one. Workers are kept between deliveries (up to workerIdle) because a
// new goroutine per delivery grew its stack through net/http's calls each time.
func (d *Dispatcher) Dispatch(dl node.Delivery) {
	d.wg.Add(1)
	select {
	case d.work <- dl:
	default:
		d.workers.Add(1)
		go d.runWorker(dl)
	}
}

// runWorker delivers dl, then every delivery handed to it, until it has waited
// workerIdle for one or the Dispatcher is closed.
func (d *Dispatcher) runWorker(dl node.Delivery) {
	defer d.workers.Done()
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		d.post(d.deliver(dl))
		d.wg.Done()
		idle.Reset(workerIdle)
		select {
		case dl = <-d.work:
		case <-idle.C:
			return
		case <-d.ctx.Done():
			return
		}
	}
}

func (d *Dispatcher) deliver(dl node.Delivery) node.DeliveryResult {
	res := node.DeliveryResult{TaskID: dl.Task.ID, Attempt: dl.Attempt}
	ctx, cancel := context.WithTimeout(d.ctx, dl.Deadline)
	defer cancel()
	if err := d.sem.Acquire(ctx, 1); err != nil {
		return failed(res, ErrNoSlot)
	}
	defer d.sem.Release(1)
	// A slot freed at the deadline (say by a delivery cut at the same deadline) can be
	// acquired before ctx.Done is closed: send nothing once the deadline has passed.
	if deadline, _ := ctx.Deadline(); ctx.Err() != nil || !time.Now().Before(deadline) {
		return failed(res, ErrNoSlot)
	}
	req, err := NewRequest(ctx, dl)
	if err != nil {
		return failed(res, err)
	}
	if d.nodeID != "" {
		req.Header[hdrMiyamotoNode] = d.nodeIDValue
	}
	if d.signer != nil {
		d.signer.setHeaders(req.Header, dl.Task.ID, time.Now(), sentBody(dl.Task))
	}
	resp, err := d.send(req)
	if err != nil {
		return failed(res, err)
	}
	res.Body = readPrefix(resp.Body, min(node.MaxAttemptBody, d.maxBody), d.maxBody)
	resp.Body.Close()
	res.Status = resp.StatusCode
	if v := resp.Header.Get("Retry-After"); v != "" {
		res.RetryAfter = RetryAfter(v, time.Now())
	}
	return res
}

// send makes one request. Through the default client it goes to the client's
// transport directly: http.Client.Do would copy every header for redirects that are
// never followed (NewClient returns them as they are) and run its redirect loop
// once, on every delivery. What Do does that matters here is done the same way: the
// URL's user and password become Basic authorization unless the task set its own,
// and an error is wrapped as Do wraps it ("Post \"URL\": ..."), so the attempt
// history reads alike. A client from Config.Client goes through its Do, whatever
// it was set up to do.
func (d *Dispatcher) send(req *http.Request) (*http.Response, error) {
	if d.transport == nil {
		return d.client.Do(req)
	}
	if u := req.URL.User; u != nil && req.Header.Get("Authorization") == "" {
		password, _ := u.Password()
		req.SetBasicAuth(u.Username(), password)
	}
	resp, err := d.transport.RoundTrip(req)
	if err != nil {
		return nil, &url.Error{Op: urlErrorOp(req.Method), URL: stripPassword(req.URL), Err: err}
	}
	return resp, nil
}

// urlErrorOp is the Op of the *url.Error that http.Client.Do would return.
func urlErrorOp(method string) string {
	if method == "" {
		return "Get"
	}
	return method[:1] + strings.ToLower(method[1:])
}

// stripPassword is u as http.Client.Do names it in an error: a password as ***.
func stripPassword(u *url.URL) string {
	if _, set := u.User.Password(); set {
		return strings.Replace(u.String(), u.User.String()+"@", u.User.Username()+":***@", 1)
	}
	return u.String()
}

// failed is res with no answer because of err.
func failed(res node.DeliveryResult, err error) node.DeliveryResult {
	res.Err, res.ErrorKind = err, Classify(err)
	return res
}

// readPrefix returns the first keep bytes (at most node.MaxAttemptBody) of body
// and reads (then drops) the rest up to max bytes in all, so that the connection
// can be reused. An answer shorter than keep was read to its end already: most
// are (an empty 200), and they cost no buffer and no second read.
func readPrefix(body io.Reader, keep, max int64) string {
	bp := prefixBufs.Get().(*[node.MaxAttemptBody]byte)
	defer prefixBufs.Put(bp)
	buf := bp[:min(keep, node.MaxAttemptBody)]
	n, err := io.ReadFull(body, buf)
	if err == nil {
		io.Copy(io.Discard, io.LimitReader(body, max-int64(n)))
	}
	return string(buf[:n])
}

// prefixBufs holds readPrefix's buffers between deliveries.
var prefixBufs = sync.Pool{New: func() any { return new([node.MaxAttemptBody]byte) }}

// NewRequest builds the HTTP request for a delivery: the task's method, URL, body and
// headers, then Miyamoto's own headers (which win over the task's). A GET, HEAD or
// DELETE task's params (its form body) go into the URL's query string, after any
// query the URL has, and it is sent with no body and no Content-Type, as App
// Engine sends them.
func NewRequest(ctx context.Context, dl node.Delivery) (*http.Request, error) {
	t := dl.Task
	target, body, contentType := t.URL, sentBody(t), t.ContentType
	if paramsInQuery(t) {
		target, contentType = withQuery(t.URL, string(t.Body)), ""
	}
	// A task's body is never changed once stored: the request reads it in place.
	req, err := http.NewRequestWithContext(ctx, t.Method, target, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("task url: %w", err)
	}
	// Sized for every header at once, so the map never grows while filled.
	h := make(http.Header, len(t.Headers)+maxOwnHeaders)
	req.Header = h
	for _, th := range t.Headers {
		h.Add(th.Name, th.Value)
	}
	// Miyamoto's own headers win over the task's: each replaces the canonical key.
	// Their values share one backing array, and the numbers one string, instead of
	// an allocation each: this runs once per delivery.
	own := ownHeaders{h: h, vals: make([]string, 0, maxOwnHeaders)}
	if contentType != "" {
		own.set(hdrContentType, contentType)
	}
	own.set(hdrUserAgent, userAgent)
	own.set(hdrTaskID, t.ID)
	own.set(hdrTaskQueue, t.Queue)
	if t.Name != "" {
		own.set(hdrTaskName, t.Name)
	}
	var buf [96]byte
	nums := strconv.AppendUint(buf[:0], dl.Attempt, 10)
	attemptEnd := len(nums)
	nums = strconv.AppendInt(nums, int64(dl.Retries), 10)
	retriesEnd := len(nums)
	nums = strconv.AppendFloat(nums, float64(t.ETA.UnixNano())/1e9, 'f', 3, 64)
	etaEnd := len(nums)
	// The worker should stop by then: after it another replica may run the task.
	nums = strconv.AppendFloat(nums, dl.Deadline.Seconds(), 'f', 3, 64)
	deadlineEnd := len(nums)
	if dl.PreviousStatus != 0 {
		nums = strconv.AppendInt(nums, int64(dl.PreviousStatus), 10)
	}
	str := string(nums)
	own.set(hdrTaskAttempt, str[:attemptEnd])
	own.set(hdrTaskRetryCount, str[attemptEnd:retriesEnd])
	own.set(hdrTaskETA, str[retriesEnd:etaEnd])
	if dl.PreviousStatus != 0 {
		own.set(hdrTaskPreviousResponse, str[deadlineEnd:])
	}
	own.set(hdrTaskDeadline, str[etaEnd:deadlineEnd])
	return req, nil
}

// The canonical names of the headers Miyamoto sets on every delivery (a header map
// is keyed by canonical names; setting the key directly skips canonicalising it).
var (
	hdrContentType          = http.CanonicalHeaderKey("Content-Type")
	hdrUserAgent            = http.CanonicalHeaderKey("User-Agent")
	hdrTaskID               = http.CanonicalHeaderKey("X-Task-Id")
	hdrTaskQueue            = http.CanonicalHeaderKey("X-Task-Queue")
	hdrTaskName             = http.CanonicalHeaderKey("X-Task-Name")
	hdrTaskAttempt          = http.CanonicalHeaderKey("X-Task-Attempt")
	hdrTaskRetryCount       = http.CanonicalHeaderKey("X-Task-Retry-Count")
	hdrTaskETA              = http.CanonicalHeaderKey("X-Task-ETA")
	hdrTaskPreviousResponse = http.CanonicalHeaderKey("X-Task-Previous-Response")
	hdrTaskDeadline         = http.CanonicalHeaderKey("X-Task-Deadline")
	hdrMiyamotoNode         = http.CanonicalHeaderKey("X-Miyamoto-Node")
)

const userAgent = "miyamoto/" + Version

// maxOwnHeaders is how many headers NewRequest and deliver set at most (the ten
// above NewRequest's and X-Miyamoto-Node).
const maxOwnHeaders = 11

// ownHeaders sets single-valued headers whose values share one backing array.
type ownHeaders struct {
	h    http.Header
	vals []string
}

// set replaces key (canonical) with the one value v. Each value's slice is capped
// at its one element, so that an Add to it later copies instead of overwriting the
// next header's value.
func (o *ownHeaders) set(key, v string) {
	if len(o.vals) == cap(o.vals) {
		o.h[key] = []string{v}
		return
	}
	o.vals = append(o.vals, v)
	n := len(o.vals)
	o.h[key] = o.vals[n-1 : n : n]
}

// paramsInQuery reports whether t's body is params to send in the query string: a
// GET, HEAD or DELETE task with a form body (or none). A task of such a method
// stored with another body (before the API refused them) keeps it as its body.
func paramsInQuery(t *node.Task) bool {
	ct, _, _ := strings.Cut(t.ContentType, ";")
	ct = strings.TrimSpace(strings.ToLower(ct))
	return node.ParamsInQuery(t.Method) && (ct == "" || ct == "application/x-www-form-urlencoded")
}

// sentBody is the body a delivery of t sends (and signs).
func sentBody(t *node.Task) []byte {
	if paramsInQuery(t) {
		return nil
	}
	return t.Body
}

// withQuery appends params to rawURL's query string, before any fragment.
func withQuery(rawURL, params string) string {
	if params == "" {
		return rawURL
	}
	base, frag, hasFrag := strings.Cut(rawURL, "#")
	switch {
	case !strings.Contains(base, "?"):
		base += "?" + params
	case strings.HasSuffix(base, "?") || strings.HasSuffix(base, "&"):
		base += params
	default:
		base += "&" + params
	}
	if hasFrag {
		base += "#" + frag
	}
	return base
}

// RetryAfter reads a Retry-After header: seconds, or an HTTP date relative to now.
// Zero when absent or unreadable.
func RetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil || errors.Is(err, strconv.ErrRange) {
		if s < 0 {
			return 0
		}
		if s > int(math.MaxInt64/int64(time.Second)) {
			return math.MaxInt64 // saturate, as t.Sub does for a far date, instead of wrapping
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// Close waits for the deliveries in flight until ctx is done, then cuts the rest
// (their results report the cut). It returns ctx's error if it had to cut, once
// every worker goroutine has ended.
func (d *Dispatcher) Close(ctx context.Context) error {
	done := make(chan struct{})
	go func() { d.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	d.cancel()
	<-done
	d.workers.Wait()
	return err
}
