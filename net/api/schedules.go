package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/miyamotohq/miyamoto/node"
)

// ScheduleBackend is what the schedule endpoints need of the node:
//
//	GET    /v1/schedules          the schedules in force, with their next ticks
//	GET    /v1/schedules/{name}   one of them
//	PUT    /v1/schedules/{name}   create or replace it (JSON, whole)
//	DELETE /v1/schedules/{name}   delete it
type ScheduleBackend interface {
	Schedules(ctx context.Context) ([]node.Schedule, error)
	// Schedule answers node.ErrScheduleNotFound when none of that name is in force.
	Schedule(ctx context.Context, name string) (node.Schedule, error)
	PutSchedule(ctx context.Context, s node.Schedule) (node.Schedule, error)
	DeleteSchedule(ctx context.Context, name string) (node.Schedule, error)
}

// scheduleBody is PUT /v1/schedules/{name}'s body.
type scheduleBody struct {
	Cron     *string         `json:"cron"`
	TimeZone string          `json:"time_zone"`
	Queue    string          `json:"queue"`
	Task     json.RawMessage `json:"task"`
	Missed   string          `json:"missed"`
}

// scheduleFields names the fields of scheduleBody, for errors.
const scheduleFields = "cron, time_zone, queue, task, missed"

// ScheduleView is one schedule in the schedule endpoints' answers.
type ScheduleView struct {
	Name     string       `json:"name"`
	Cron     string       `json:"cron"`
	TimeZone string       `json:"time_zone"`
	Queue    string       `json:"queue"`
	Missed   string       `json:"missed"`
	Task     TemplateView `json:"task"`
	// Created is when the schedule was made (Unix seconds); its first tick is the
	// first after it.
	Created float64 `json:"created"`
	Version uint64  `json:"version"`
	// Next are its next ticks, RFC 3339 in its time zone.
	Next []string `json:"next"`
}

// TemplateView is the task every tick enqueues.
type TemplateView struct {
	URL         string            `json:"url"`
	Method      string            `json:"method"`
	Headers     map[string]string `json:"headers,omitempty"`
	ContentType string            `json:"content_type,omitempty"`
	Body        string            `json:"body,omitempty"`
}

// nextShown is how many next ticks a schedule's view lists.
const nextShown = 5

func scheduleView(s node.Schedule, now time.Time) ScheduleView {
	zone := s.TimeZone
	if zone == "" {
		zone = "UTC"
	}
	v := ScheduleView{Name: s.Name, Cron: s.Cron, TimeZone: zone, Queue: s.Queue, Missed: s.Missed.String(),
		Task:    TemplateView{URL: s.URL, Method: s.Method, ContentType: s.ContentType, Body: string(s.Body)},
		Created: unix(s.Created), Version: s.Version, Next: []string{}}
	if len(s.Headers) > 0 {
		v.Task.Headers = map[string]string{}
		for _, h := range s.Headers {
			v.Task.Headers[h.Name] = h.Value
		}
	}
	loc, err := time.LoadLocation(zone)
	if err != nil {
		loc = time.UTC
	}
	for _, t := range s.NextTicks(now, nextShown) {
		v.Next = append(v.Next, t.In(loc).Format(time.RFC3339))
	}
	return v
}

func (s *server) scheduleRoutes(mux *http.ServeMux, sb ScheduleBackend) {
	mux.HandleFunc("GET /v1/schedules", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
		defer cancel()
		list, err := sb.Schedules(ctx)
		if err != nil {
			writeNodeError(w, err)
			return
		}
		now := time.Now()
		views := make([]ScheduleView, 0, len(list))
		for _, sc := range list {
			views = append(views, scheduleView(sc, now))
		}
		writeJSON(w, http.StatusOK, map[string]any{"schedules": views})
	})
	mux.HandleFunc("GET /v1/schedules/{name}", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
		defer cancel()
		sc, err := sb.Schedule(ctx, r.PathValue("name"))
		if err != nil {
			writeNodeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, scheduleView(sc, time.Now()))
	})
	mux.HandleFunc("PUT /v1/schedules/{name}", func(w http.ResponseWriter, r *http.Request) {
		body, ok := readBody(w, r, s.cfg.MaxBody)
		if !ok {
			return
		}
		sc, err := s.parseSchedule(r.PathValue("name"), body)
		if err != nil {
			writeNodeError(w, err)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
		defer cancel()
		if !s.checkURL(ctx, w, sc.URL) {
			return
		}
		set, err := sb.PutSchedule(ctx, sc)
		if errors.Is(err, node.ErrNotEveryMember) {
			setRetryAfter(w, time.Second)
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": err.Error(), "schedule": scheduleView(set, time.Now())})
			return
		}
		if err != nil {
			writeNodeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, scheduleView(set, time.Now()))
	})
	mux.HandleFunc("DELETE /v1/schedules/{name}", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
		defer cancel()
		name := r.PathValue("name")
		_, err := sb.DeleteSchedule(ctx, name)
		if errors.Is(err, node.ErrNotEveryMember) {
			setRetryAfter(w, time.Second)
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": err.Error(), "name": name, "status": "deleted"})
			return
		}
		if err != nil {
			writeNodeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"name": name, "status": "deleted"})
	})
}

// parseSchedule reads PUT /v1/schedules/{name}'s body into a schedule, checked as
// the node checks it (node.ValidateSchedule) and its task as an enqueue's JSON task
// is (without name, countdown and eta: the schedule sets them). Every error is a
// *node.FieldError; the task's fields are named "task.url", "task.params.x", ....
func (s *server) parseSchedule(name string, body []byte) (node.Schedule, error) {
	sc := node.Schedule{Name: name}
	var b scheduleBody
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return sc, scheduleJSONError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return sc, &node.FieldError{Field: "body", Message: "has data after the JSON object"}
	}
	if b.Cron == nil {
		return sc, &node.FieldError{Field: "cron", Message: "is required (e.g. \"*/10 * * * * *\", \"0 3 * * *\", \"@hourly\", \"@every 30s\")"}
	}
	if b.Queue != "" && (!node.ValidQueueName(b.Queue) || reserved[b.Queue]) {
		return sc, &node.FieldError{Field: "queue", Message: fmt.Sprintf("%q is not a queue name: 1-100 letters, digits, '_', '-' or '.', not v1, healthz or metrics", b.Queue)}
	}
	missed, err := node.ParseMissedPolicy(b.Missed)
	if err != nil {
		return sc, &node.FieldError{Field: "missed", Message: err.Error()}
	}
	req, err := s.parseTemplate(b.Task)
	if err != nil {
		return sc, err
	}
	sc.Cron, sc.TimeZone, sc.Queue, sc.Missed = *b.Cron, b.TimeZone, b.Queue, missed
	sc.URL, sc.Method, sc.Headers, sc.ContentType, sc.Body = req.URL, req.Method, req.Headers, req.ContentType, req.Body
	if _, err := node.ValidateSchedule(&sc, time.Now()); err != nil {
		return sc, err
	}
	if err := checkParsedURL(sc.URL); err != nil {
		return sc, taskField(err)
	}
	return sc, nil
}

// parseTemplate reads a schedule's task: an enqueue's JSON task without the fields
// the schedule sets.
func (s *server) parseTemplate(raw json.RawMessage) (node.EnqueueRequest, error) {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || isNull(trimmed) {
		return node.EnqueueRequest{}, &node.FieldError{Field: "task", Message: "is required: the task every tick enqueues, as POST /{queue} takes it in JSON (url, method, params, headers, body)"}
	}
	if trimmed[0] != '{' {
		return node.EnqueueRequest{}, &node.FieldError{Field: "task", Message: "must be a JSON object (url, method, params, headers, body)"}
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(trimmed, &keys); err == nil {
		for _, k := range []string{"name", "countdown", "eta"} {
			if _, ok := keys[k]; ok {
				return node.EnqueueRequest{}, &node.FieldError{Field: "task." + k, Message: "is set by the schedule: each tick's task is named <schedule>-<unix seconds> and due at its tick"}
			}
		}
	}
	req, err := parseJSON(trimmed, s.lim)
	return req, taskField(err)
}

// taskField renames a task's field error into the schedule's task.
func taskField(err error) error {
	var fe *node.FieldError
	if errors.As(err, &fe) && !strings.HasPrefix(fe.Field, "task") {
		return &node.FieldError{Field: "task." + fe.Field, Message: fe.Message}
	}
	return err
}

// scheduleJSONError is jsonFieldError for a schedule's body.
func scheduleJSONError(err error) error {
	if strings.HasPrefix(err.Error(), "json: unknown field ") {
		f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		if f == "" {
			f = "body"
		}
		return &node.FieldError{Field: f, Message: "is not a schedule field (" + scheduleFields + ")"}
	}
	return jsonFieldError(err)
}
