// Package client calls a Miyamoto node's HTTP API (see package api) for the
// management commands of cmd/miyamoto and for any Go program that manages a
// cluster. Each method is one request; it returns the server's JSON answer as it
// came, so that a caller can print it unchanged or decode what it needs.
//
// Errors are of two kinds: *Error when the server answered 4xx or 5xx (with its
// message, field and status), and *UnreachableError when no answer came. Neither
// ever shows the token.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// DefaultServer is the API address of a node started with serve's defaults.
const DefaultServer = "http://127.0.0.1:8088"

// maxAnswer bounds how much of an answer is read: listings are paged, so a larger
// one is not an answer of this API.
const maxAnswer = 64 << 20

// Client is a node's API. The zero value is not usable: use New.
type Client struct {
	server string // scheme://host[:port][/prefix], without a trailing slash
	token  string
	http   *http.Client
}

// New returns a client of the node at server (an http or https URL; a bare
// host:port means http), sending token as a bearer token when it is not empty.
// Each request gives up after timeout.
func New(server, token string, timeout time.Duration) (*Client, error) {
	if !strings.Contains(server, "://") {
		server = "http://" + server
	}
	u, err := url.Parse(server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("%q is not a server URL such as %s", server, DefaultServer)
	}
	return &Client{server: strings.TrimRight(server, "/"), token: token, http: &http.Client{
		Timeout: timeout,
		// An API answer is never a redirect; following one would resend the token.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}, nil
}

// Server is the URL requests go to.
func (c *Client) Server() string { return c.server }

// Error is a 4xx or 5xx answer: the API's {"error", "field", "status"}.
type Error struct {
	Code    int    // the HTTP status code
	Message string // the server's "error", or the status text when it sent none
	Field   string // the request field at fault, when the server named one
	Status  string // the server's "status" (e.g. "unknown", "full"), when given
	Body    []byte // the answer as it came
}

func (e *Error) Error() string {
	msg := e.Message
	var notes []string
	notes = append(notes, fmt.Sprintf("HTTP %d", e.Code))
	if e.Field != "" && !strings.HasPrefix(msg, e.Field+":") {
		notes = append(notes, "field "+e.Field)
	}
	if e.Status != "" {
		notes = append(notes, "status "+e.Status)
	}
	return msg + " (" + strings.Join(notes, ", ") + ")"
}

// UnreachableError is a request that got no answer: the server is down, the
// address is wrong, or it did not answer in time.
type UnreachableError struct {
	Server string
	Err    error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cannot reach %s: %v", e.Server, rootCause(e.Err))
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// rootCause drops url.Error's repetition of the method and URL.
func rootCause(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		if ue.Timeout() {
			return errors.New("no answer in time")
		}
		return ue.Err
	}
	return err
}

// Do sends one request (body, when not nil, with contentType) to path under the
// server, with query when not empty, and returns the answer's body when its code
// is 2xx.
func (c *Client) Do(ctx context.Context, method, path string, query url.Values, body []byte, contentType string) ([]byte, error) {
	target := c.server + path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, &UnreachableError{Server: c.server, Err: err}
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, &UnreachableError{Server: c.server, Err: fmt.Errorf("reading the answer: %w", err)}
	}
	if resp.StatusCode >= 300 {
		return nil, answerError(resp, answer)
	}
	return answer, nil
}

// answerError reads the API's error object, or makes one of the status line for
// an answer that is not one (a proxy's page, say).
func answerError(resp *http.Response, body []byte) *Error {
	e := &Error{Code: resp.StatusCode, Body: body}
	var fields struct{ Error, Field, Status string }
	if json.Unmarshal(body, &fields) == nil && fields.Error != "" {
		e.Message, e.Field, e.Status = fields.Error, fields.Field, fields.Status
		return e
	}
	e.Message = http.StatusText(resp.StatusCode)
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		e.Message = "the server answered a redirect to " + resp.Header.Get("Location") + ": --server should name a node's API"
	}
	return e
}

func (c *Client) getJSON(ctx context.Context, path string, query url.Values) ([]byte, error) {
	return c.Do(ctx, http.MethodGet, path, query, nil, "")
}

func (c *Client) postJSON(ctx context.Context, path string, v any) ([]byte, error) {
	var body []byte
	if v != nil {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		body = b
	}
	return c.Do(ctx, http.MethodPost, path, nil, body, "application/json")
}

// seg escapes one path segment (a queue name or a task ID).
func seg(s string) string { return url.PathEscape(s) }

// Enqueue posts task, the JSON form of a task (see package api: url, method,
// params, countdown, eta, name, headers, body), to queue.
func (c *Client) Enqueue(ctx context.Context, queue string, task map[string]any) ([]byte, error) {
	return c.postJSON(ctx, "/"+seg(queue), task)
}

// Task is GET /v1/tasks/{id}: a task's state.
func (c *Client) Task(ctx context.Context, id string) ([]byte, error) {
	return c.getJSON(ctx, "/v1/tasks/"+seg(id), nil)
}

// CancelTask is DELETE /v1/tasks/{id}.
func (c *Client) CancelTask(ctx context.Context, id string) ([]byte, error) {
	return c.Do(ctx, http.MethodDelete, "/v1/tasks/"+seg(id), nil, nil, "")
}

// RetryTask is POST /v1/tasks/{id}/retry: a dead task re-queued as a new one.
func (c *Client) RetryTask(ctx context.Context, id string) ([]byte, error) {
	return c.postJSON(ctx, "/v1/tasks/"+seg(id)+"/retry", nil)
}

// Cluster is GET /v1/cluster.
func (c *Client) Cluster(ctx context.Context) ([]byte, error) {
	return c.getJSON(ctx, "/v1/cluster", nil)
}

// RemoveMember is POST /v1/cluster/members/{id}/remove, once: its answer says
// "removed" (200) or "pending" (202: ask again until it says removed).
func (c *Client) RemoveMember(ctx context.Context, id string) ([]byte, error) {
	return c.postJSON(ctx, "/v1/cluster/members/"+seg(id)+"/remove", nil)
}

// Queues is GET /v1/queues: every queue with its settings and counts.
func (c *Client) Queues(ctx context.Context) ([]byte, error) {
	return c.getJSON(ctx, "/v1/queues", nil)
}

// Queue is GET /v1/queues/{queue}.
func (c *Client) Queue(ctx context.Context, queue string) ([]byte, error) {
	return c.getJSON(ctx, "/v1/queues/"+seg(queue), nil)
}

// SetQueue is PUT /v1/queues/{queue} with settings, the JSON object of the
// settings to change (the others keep their values).
func (c *Client) SetQueue(ctx context.Context, queue string, settings map[string]any) ([]byte, error) {
	b, err := json.Marshal(settings)
	if err != nil {
		return nil, err
	}
	return c.Do(ctx, http.MethodPut, "/v1/queues/"+seg(queue), nil, b, "application/json")
}

// PauseQueue, ResumeQueue and PurgeQueue are POST /v1/queues/{queue}/pause,
// /resume and /purge.
func (c *Client) PauseQueue(ctx context.Context, queue string) ([]byte, error) {
	return c.postJSON(ctx, "/v1/queues/"+seg(queue)+"/pause", nil)
}

// ResumeQueue: see PauseQueue.
func (c *Client) ResumeQueue(ctx context.Context, queue string) ([]byte, error) {
	return c.postJSON(ctx, "/v1/queues/"+seg(queue)+"/resume", nil)
}

// PurgeQueue: see PauseQueue.
func (c *Client) PurgeQueue(ctx context.Context, queue string) ([]byte, error) {
	return c.postJSON(ctx, "/v1/queues/"+seg(queue)+"/purge", nil)
}

// DeleteQueue is DELETE /v1/queues/{queue}, with ?force=true when force is set
// (purge the queue's pending tasks first rather than refuse).
func (c *Client) DeleteQueue(ctx context.Context, queue string, force bool) ([]byte, error) {
	var q url.Values
	if force {
		q = url.Values{"force": {"true"}}
	}
	return c.Do(ctx, http.MethodDelete, "/v1/queues/"+seg(queue), q, nil, "")
}

// QueueTasks is GET /v1/queues/{queue}/tasks: a page of the queue's tasks, only
// those in state when it is not empty, after the task ID after, at most limit
// (the server's default when 0).
func (c *Client) QueueTasks(ctx context.Context, queue, state, after string, limit int) ([]byte, error) {
	q := url.Values{}
	if state != "" {
		q.Set("state", state)
	}
	if after != "" {
		q.Set("after", after)
	}
	if limit > 0 {
		q.Set("limit", fmt.Sprint(limit))
	}
	return c.getJSON(ctx, "/v1/queues/"+seg(queue)+"/tasks", q)
}
