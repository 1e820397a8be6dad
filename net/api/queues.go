package api

import (
	"context"
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
	// SetQueue makes cfg the queue's settings (explicit: the fields a client set)
	// and paused its pause, on every member.
	SetQueue(ctx context.Context, queue string, cfg node.QueueConfig, explicit node.SettingFields, paused bool) (node.QueueSetting, error)
	// Queues lists the queues this node knows, with their settings (no counts).
	Queues(ctx context.Context) ([]QueueView, error)
	// ClusterCounts counts every queue's tasks across the cluster, by queue and state
	// (see node.CountCluster); missing names the members that did not answer.
	ClusterCounts(ctx context.Context) (counts map[string]map[string]int, missing []string, err error)
	// PurgeQueue cancels the queue's tasks and counts them (see node.PurgeQueue).
	PurgeQueue(ctx context.Context, queue string) (node.QueueSetting, int, error)
	// DeleteQueue removes the queue's settings, purging it first when asked (see
	// node.DeleteQueue).
	DeleteQueue(ctx context.Context, queue string, purge bool) (node.QueueSetting, int, error)
	// ListTasks lists a queue's tasks across the cluster (see node.ListCluster);
	// missing names the members that did not answer.
	ListTasks(ctx context.Context, queue string, state node.TaskState, after string, limit int) (list []node.TaskStatus, missing []string, err error)
}

// QueueView is one queue in GET /v1/queues and GET/PUT /v1/queues/{queue}.
type QueueView struct {
	Name string `json:"name"`
	// Settings are those a client set (see ExplicitView); Effective every setting
	// as the queue runs (see EffectiveView).
	Settings  map[string]any `json:"settings"`
	Effective map[string]any `json:"effective"`
	Paused    bool           `json:"paused"`
	Version   uint64         `json:"version,omitempty"`
	// Counts counts the queue's tasks across the cluster by state (each task once,
	// on the lowest-ranked of its replicas that answered; see node.CountCluster).
	// Partial, in GET /v1/queues/{queue}, when some member did not answer: Missing
	// names them, and tasks held only by them are not counted. GET /v1/queues says
	// the same once for every queue.
	Counts  map[string]int `json:"counts,omitempty"`
	Partial bool           `json:"partial,omitempty"`
	Missing []string       `json:"missing,omitempty"`
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
		v := ViewOf(set)
		v.Counts = counts[name]
		v.Partial, v.Missing = len(missing) > 0, missing
		writeJSON(w, http.StatusOK, v)
	})
	// change applies the patch read from the request (an answered error stops it)
	// to the queue's settings, cluster-wide.
	change := func(w http.ResponseWriter, r *http.Request, patchOf func(*http.Request) (settingsPatch, bool)) {
		name, ok := s.queueParam(w, r)
		if !ok {
			return
		}
		patch, ok := patchOf(r)
		if !ok {
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
		defer cancel()
		cur, err := qb.QueueSetting(ctx, name)
		if err != nil {
			writeNodeError(w, err)
			return
		}
		cfg, explicit, paused, err := patch.apply(cur, node.DefaultQueueConfig())
		if err != nil {
			writeNodeError(w, err)
			return
		}
		set, err := qb.SetQueue(ctx, name, cfg, explicit, paused)
		if errors.Is(err, node.ErrNotEveryMember) {
			setRetryAfter(w, time.Second)
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": err.Error(), "queue": ViewOf(set)})
			return
		}
		if err != nil {
			writeNodeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, ViewOf(set))
	}
	mux.HandleFunc("PUT /v1/queues/{queue}", func(w http.ResponseWriter, r *http.Request) {
		change(w, r, func(r *http.Request) (settingsPatch, bool) {
			body, ok := readBody(w, r, 64<<10)
			if !ok {
				return settingsPatch{}, false
			}
			p, err := parseSettings(body)
			if err != nil {
				writeNodeError(w, err)
				return p, false
			}
			return p, true
		})
	})
	mux.HandleFunc("POST /v1/queues/{queue}/purge", func(w http.ResponseWriter, r *http.Request) {
		name, ok := s.queueParam(w, r)
		if !ok {
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
		defer cancel()
		set, cancelled, err := qb.PurgeQueue(ctx, name)
		if writeChangeError(w, name, cancelled, err) {
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"queue": name, "status": "purged", "cancelled": cancelled, "purged_before": unix(set.PurgedBefore)})
	})
	mux.HandleFunc("DELETE /v1/queues/{queue}", func(w http.ResponseWriter, r *http.Request) {
		s.deleteQueue(w, r, qb)
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
		if !s.takeListing(r.Context()) {
			setRetryAfter(w, time.Second)
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "busy", "error": fmt.Sprintf("%d listings are running on this node; retry shortly", cap(s.listings))})
			return
		}
		defer func() { <-s.listings }()
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
			change(w, r, func(*http.Request) (settingsPatch, bool) { return settingsPatch{paused: &paused}, true })
		})
	}
}

// takeListing waits up to ListingWait for a listing's turn; false when none came
// (the caller answers 503).
func (s *server) takeListing(ctx context.Context) bool {
	select {
	case s.listings <- struct{}{}:
		return true
	default:
	}
	t := time.NewTimer(ListingWait)
	defer t.Stop()
	select {
	case s.listings <- struct{}{}:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
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
		v := ViewOf(set)
		v.Counts = counts[name]
		qs = append(qs, v)
	}
	slices.SortFunc(qs, func(a, b QueueView) int { return strings.Compare(a.Name, b.Name) })
	return qs, nil
}

func (s *server) queueParam(w http.ResponseWriter, r *http.Request) (string, bool) {
	name := r.PathValue("queue")
	if !node.ValidQueueName(name) || reserved[name] {
		writeError(w, http.StatusBadRequest, "queue", fmt.Sprintf("%q is not a queue name", name))
		return "", false
	}
	return name, true
}
