package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/miyamotohq/miyamoto/node"
)

// QueueBackend is what the queue endpoints need of the node.
type QueueBackend interface {
	QueueSetting(ctx context.Context, queue string) (node.QueueSetting, error)
	SetQueue(ctx context.Context, queue string, cfg node.QueueConfig, paused bool) (node.QueueSetting, error)
	// Queues lists the queues this node knows, with their settings (no counts).
	Queues(ctx context.Context) ([]QueueView, error)
	// ClusterCounts counts every queue's tasks across the cluster, by queue and state
	// (see node.CountCluster); missing names the members that did not answer.
	ClusterCounts(ctx context.Context) (counts map[string]map[string]int, missing []string, err error)
	PurgeQueue(ctx context.Context, queue string) (node.QueueSetting, error)
	// ListTasks lists a queue's tasks across the cluster (see node.ListCluster);
	// missing names the members that did not answer.
	ListTasks(ctx context.Context, queue string, state node.TaskState, after string, limit int) (list []node.TaskStatus, missing []string, err error)
}

// QueueSettings is a queue's settings in JSON, App Engine's queue.yaml names;
// durations are Go duration strings ("1.5s", "10m").
type QueueSettings struct {
	Rate             *float64     `json:"rate,omitempty"`
	BucketSize       *int         `json:"bucket_size,omitempty"`
	MaxConcurrent    *int         `json:"max_concurrent,omitempty"`
	Retry            *RetryParams `json:"retry,omitempty"`
	DispatchDeadline *string      `json:"dispatch_deadline,omitempty"`
	Delivery         *string      `json:"delivery,omitempty"`
	Paused           *bool        `json:"paused,omitempty"`
}

// RetryParams is queue.yaml's retry_parameters.
type RetryParams struct {
	TaskRetryLimit *int    `json:"task_retry_limit,omitempty"`
	TaskAgeLimit   *string `json:"task_age_limit,omitempty"`
	MinBackoff     *string `json:"min_backoff,omitempty"`
	MaxBackoff     *string `json:"max_backoff,omitempty"`
	MaxDoublings   *int    `json:"max_doublings,omitempty"`
}

// QueueView is one queue in GET /v1/queues and GET/PUT /v1/queues/{queue}.
type QueueView struct {
	Name     string         `json:"name"`
	Settings map[string]any `json:"settings"`
	Paused   bool           `json:"paused"`
	Version  uint64         `json:"version,omitempty"`
	// Counts counts the queue's tasks across the cluster by state (each task once,
	// on the lowest-ranked of its replicas that answered; see node.CountCluster).
	// Partial, in GET /v1/queues/{queue}, when some member did not answer: Missing
	// names them, and tasks held only by them are not counted. GET /v1/queues says
	// the same once for every queue.
	Counts  map[string]int `json:"counts,omitempty"`
	Partial bool           `json:"partial,omitempty"`
	Missing []string       `json:"missing,omitempty"`
}

// SettingsView renders a queue's settings as JSON with every field.
func SettingsView(c node.QueueConfig) map[string]any {
	return map[string]any{
		"rate":           c.Rate,
		"bucket_size":    c.BucketSize,
		"max_concurrent": c.MaxConcurrent,
		"retry": map[string]any{
			"task_retry_limit": c.Retry.TaskRetryLimit,
			"task_age_limit":   c.Retry.TaskAgeLimit.String(),
			"min_backoff":      c.Retry.MinBackoff.String(),
			"max_backoff":      c.Retry.MaxBackoff.String(),
			"max_doublings":    c.Retry.MaxDoublings,
		},
		"dispatch_deadline": c.DispatchDeadline.String(),
		"delivery":          c.Delivery.String(),
	}
}

func viewOf(s node.QueueSetting) QueueView {
	return QueueView{Name: s.Queue, Settings: SettingsView(s.Config), Paused: s.Paused, Version: s.Version}
}

// apply overlays the fields given in qs on cfg (a PUT changes only what it names).
func (qs QueueSettings) apply(cfg node.QueueConfig, paused bool) (node.QueueConfig, bool, error) {
	dur := func(field string, p *string, dst *time.Duration) error {
		if p == nil {
			return nil
		}
		d, err := time.ParseDuration(*p)
		if err != nil {
			return &node.FieldError{Field: field, Message: fmt.Sprintf("must be a duration such as \"1.5s\" or \"10m\", not %q", *p)}
		}
		*dst = d
		return nil
	}
	if qs.Rate != nil {
		cfg.Rate = *qs.Rate
	}
	if qs.BucketSize != nil {
		cfg.BucketSize = *qs.BucketSize
	}
	if qs.MaxConcurrent != nil {
		cfg.MaxConcurrent = *qs.MaxConcurrent
	}
	if err := dur("dispatch_deadline", qs.DispatchDeadline, &cfg.DispatchDeadline); err != nil {
		return cfg, paused, err
	}
	if qs.Delivery != nil {
		d, err := node.ParseDeliveryMode(*qs.Delivery)
		if err != nil {
			return cfg, paused, &node.FieldError{Field: "delivery", Message: err.Error()}
		}
		cfg.Delivery = d
	}
	if r := qs.Retry; r != nil {
		if r.TaskRetryLimit != nil {
			cfg.Retry.TaskRetryLimit = *r.TaskRetryLimit
		}
		if r.MaxDoublings != nil {
			cfg.Retry.MaxDoublings = *r.MaxDoublings
		}
		for _, f := range []struct {
			name string
			p    *string
			dst  *time.Duration
		}{{"retry.task_age_limit", r.TaskAgeLimit, &cfg.Retry.TaskAgeLimit}, {"retry.min_backoff", r.MinBackoff, &cfg.Retry.MinBackoff}, {"retry.max_backoff", r.MaxBackoff, &cfg.Retry.MaxBackoff}} {
			if err := dur(f.name, f.p, f.dst); err != nil {
				return cfg, paused, err
			}
		}
	}
	if qs.Paused != nil {
		paused = *qs.Paused
	}
	if cfg.Rate > 0 && cfg.BucketSize == 0 && qs.BucketSize == nil {
		cfg.BucketSize = 1
	}
	if err := cfg.Validate(); err != nil {
		var fe *node.FieldError
		if errors.As(err, &fe) {
			return cfg, paused, fe
		}
		return cfg, paused, &node.FieldError{Field: "settings", Message: err.Error()}
	}
	return cfg, paused, nil
}

func (s *server) queueRoutes(mux *http.ServeMux, qb QueueBackend) {
	mux.HandleFunc("GET /v1/queues", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
		defer cancel()
		qs, err := qb.Queues(ctx)
		if err != nil {
			writeNodeError(w, err)
			return
		}
		counts, missing, err := qb.ClusterCounts(ctx)
		if err != nil {
			writeNodeError(w, err)
			return
		}
		qs, err = withCounts(ctx, qb, qs, counts)
		if err != nil {
			writeNodeError(w, err)
			return
		}
		out := map[string]any{"queues": qs}
		if len(missing) > 0 {
			out["partial"] = true
			out["missing"] = missing // these members did not answer: tasks only they hold are not counted
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("GET /v1/queues/{queue}", func(w http.ResponseWriter, r *http.Request) {
		name, ok := s.queueParam(w, r)
		if !ok {
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
		defer cancel()
		set, err := qb.QueueSetting(ctx, name)
		if err != nil {
			writeNodeError(w, err)
			return
		}
		counts, missing, err := qb.ClusterCounts(ctx)
		if err != nil {
			writeNodeError(w, err)
			return
		}
		v := viewOf(set)
		v.Counts = counts[name]
		v.Partial, v.Missing = len(missing) > 0, missing
		writeJSON(w, http.StatusOK, v)
	})
	change := func(w http.ResponseWriter, r *http.Request, edit func(QueueSettings) QueueSettings) {
		name, ok := s.queueParam(w, r)
		if !ok {
			return
		}
		var qs QueueSettings
		body, ok := readBody(w, r, 64<<10)
		if !ok {
			return
		}
		if len(bytes.TrimSpace(body)) > 0 {
			dec := json.NewDecoder(bytes.NewReader(body))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&qs); err != nil {
				writeNodeError(w, jsonFieldError(err))
				return
			}
		}
		qs = edit(qs)
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
		defer cancel()
		cur, err := qb.QueueSetting(ctx, name)
		if err != nil {
			writeNodeError(w, err)
			return
		}
		cfg, paused, err := qs.apply(cur.Config, cur.Paused)
		if err != nil {
			writeNodeError(w, err)
			return
		}
		set, err := qb.SetQueue(ctx, name, cfg, paused)
		if errors.Is(err, node.ErrNotEveryMember) {
			setRetryAfter(w, time.Second)
			v := viewOf(set)
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": err.Error(), "queue": v})
			return
		}
		if err != nil {
			writeNodeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, viewOf(set))
	}
	mux.HandleFunc("PUT /v1/queues/{queue}", func(w http.ResponseWriter, r *http.Request) {
		change(w, r, func(qs QueueSettings) QueueSettings { return qs })
	})
	mux.HandleFunc("POST /v1/queues/{queue}/purge", func(w http.ResponseWriter, r *http.Request) {
		name, ok := s.queueParam(w, r)
		if !ok {
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
		defer cancel()
		set, err := qb.PurgeQueue(ctx, name)
		v := viewOf(set)
		if errors.Is(err, node.ErrNotEveryMember) {
			setRetryAfter(w, time.Second)
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": err.Error(), "queue": v})
			return
		}
		if err != nil {
			writeNodeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"queue": v, "purged_before": unix(set.PurgedBefore)})
	})
	mux.HandleFunc("GET /v1/queues/{queue}/tasks", func(w http.ResponseWriter, r *http.Request) {
		name, ok := s.queueParam(w, r)
		if !ok {
			return
		}
		q := r.URL.Query()
		state := node.StateNone
		if v := q.Get("state"); v != "" {
			st, ok := node.ParseTaskState(v)
			if !ok {
				writeError(w, http.StatusBadRequest, "state", fmt.Sprintf("%q is not a state (scheduled, claimed, succeeded, dead, unknown, cancelled)", v))
				return
			}
			state = st
		}
		limit := 100
		if v := q.Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 1000 {
				writeError(w, http.StatusBadRequest, "limit", fmt.Sprintf("must be a number from 1 to 1000, not %q", v))
				return
			}
			limit = n
		}
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
		defer cancel()
		list, missing, err := qb.ListTasks(ctx, name, state, q.Get("after"), limit)
		if err != nil {
			writeNodeError(w, err)
			return
		}
		views := make([]TaskView, 0, len(list))
		for _, st := range list {
			views = append(views, taskView(st))
		}
		next := ""
		if len(list) == limit {
			next = list[len(list)-1].Task.ID
		}
		out := map[string]any{"tasks": views, "next": next}
		if len(missing) > 0 {
			out["partial"] = true
			out["missing"] = missing // these members did not answer: tasks only they hold are absent
		}
		writeJSON(w, http.StatusOK, out)
	})
	for _, verb := range []string{"pause", "resume"} {
		paused := verb == "pause"
		mux.HandleFunc("POST /v1/queues/{queue}/"+verb, func(w http.ResponseWriter, r *http.Request) {
			change(w, r, func(QueueSettings) QueueSettings { return QueueSettings{Paused: &paused} })
		})
	}
}

// withCounts adds cluster-wide counts to the views of qs, and views (with their
// settings) of the queues that only other members know of, sorted by name.
func withCounts(ctx context.Context, qb QueueBackend, qs []QueueView, counts map[string]map[string]int) ([]QueueView, error) {
	known := map[string]bool{}
	for i := range qs {
		known[qs[i].Name] = true
		qs[i].Counts = counts[qs[i].Name]
	}
	var others []string
	for name := range counts {
		if !known[name] {
			others = append(others, name)
		}
	}
	for _, name := range others {
		set, err := qb.QueueSetting(ctx, name)
		if err != nil {
			return nil, err
		}
		v := viewOf(set)
		v.Counts = counts[name]
		qs = append(qs, v)
	}
	slices.SortFunc(qs, func(a, b QueueView) int { return strings.Compare(a.Name, b.Name) })
	return qs, nil
}

func (s *server) queueParam(w http.ResponseWriter, r *http.Request) (string, bool) {
	name := r.PathValue("queue")
	if !queueName.MatchString(name) || reserved[name] {
		writeError(w, http.StatusBadRequest, "queue", fmt.Sprintf("%q is not a queue name", name))
		return "", false
	}
	return name, true
}
