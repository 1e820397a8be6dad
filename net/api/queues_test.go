package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/node"
)

// memQueues is a one-node queue backend in memory: settings as the node keeps
// them, and pending tasks per queue.
type memQueues struct {
	fakeBackend
	settings map[string]node.QueueSetting
	pending  map[string]int // queue -> scheduled tasks
	missing  []string       // members that do not answer listings
	version  uint64
}

var _ QueueBackend = (*memQueues)(nil)

func newMemQueues() *memQueues {
	return &memQueues{settings: map[string]node.QueueSetting{}, pending: map[string]int{}}
}

func (m *memQueues) QueueSetting(_ context.Context, q string) (node.QueueSetting, error) {
	if s, ok := m.settings[q]; ok {
		return s, nil
	}
	return node.QueueSetting{Queue: q, Config: node.DefaultQueueConfig()}, nil
}

func (m *memQueues) change(s node.QueueSetting) node.QueueSetting {
	m.version++
	s.Version = m.version
	m.settings[s.Queue] = s
	return s
}

func (m *memQueues) SetQueue(_ context.Context, q string, cfg node.QueueConfig, explicit node.SettingFields, paused bool) (node.QueueSetting, error) {
	return m.change(node.QueueSetting{Queue: q, Config: cfg, Explicit: explicit, Paused: paused}), nil
}

func (m *memQueues) Queues(context.Context) ([]QueueView, error) { return nil, nil }

// ClusterCounts counts the pending tasks as scheduled, missing the members that do
// not answer listings either.
func (m *memQueues) ClusterCounts(context.Context) (map[string]map[string]int, []string, error) {
	out := map[string]map[string]int{}
	for q, n := range m.pending {
		out[q] = map[string]int{"scheduled": n}
	}
	return out, m.missing, nil
}

func (m *memQueues) PurgeQueue(_ context.Context, q string) (node.QueueSetting, int, error) {
	n := m.pending[q]
	delete(m.pending, q)
	s, _ := m.QueueSetting(context.Background(), q)
	s.PurgedBefore = time.Unix(1_900_000_000, 0)
	return m.change(s), n, nil
}

func (m *memQueues) DeleteQueue(_ context.Context, q string, purge bool) (node.QueueSetting, int, error) {
	n := 0
	if purge {
		n = m.pending[q]
		delete(m.pending, q)
	}
	return m.change(node.QueueSetting{Queue: q, Config: node.DefaultQueueConfig(), Deleted: true}), n, nil
}

func (m *memQueues) ListTasks(_ context.Context, q string, state node.TaskState, _ string, limit int) ([]node.TaskStatus, []string, error) {
	var out []node.TaskStatus
	if state == node.StateScheduled {
		for i := 0; i < min(m.pending[q], limit); i++ {
			out = append(out, node.TaskStatus{Task: &node.Task{Queue: q}, State: state})
		}
	}
	return out, m.missing, nil
}

// answer decodes a JSON answer.
func answer(t *testing.T, w *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	var out map[string]any
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &out), w.Body.String())
	return out
}

func put(t *testing.T, h http.Handler, queue, body string) *httptest.ResponseRecorder {
	t.Helper()
	return do(t, h, "PUT", "/v1/queues/"+queue, "application/json", body)
}

// A setting that does not exist is named, with the list of the settings that do
// (not the task fields).
func TestUnknownQueueSettingListsTheSettings(t *testing.T) {
	h := NewHandler(newMemQueues(), Config{})
	for body, field := range map[string]string{
		`{"rate": 5, "colour": "red"}`:             "colour",
		`{"url": "http://w/"}`:                     "url",
		`{"retry": {"max_retries": 3}}`:            "retry.max_retries",
		`{"retry_parameters": {"min_backoff": 1}}`: "retry_parameters",
	} {
		w := put(t, h, "q", body)
		requireError(t, w, 400, field)
		msg := answer(t, w)["error"].(string)
		require.NotContains(t, msg, "task field", body)
		if strings.HasPrefix(field, "retry.") {
			require.Contains(t, msg, "task_retry_limit, task_age_limit, min_backoff, max_backoff, max_doublings", body)
		} else {
			require.Contains(t, msg, "rate, bucket_size, max_concurrent, retry, dispatch_deadline, delivery, paused", body)
		}
	}
	for body, field := range map[string]string{
		`[1]`:                      "body",
		`{"rate": 5`:               "body",
		`{"rate": 5} {}`:           "body",
		`{"retry": 3}`:             "retry",
		`{"paused": "yes"}`:        "paused",
		`{"bucket_size": 1.5}`:     "bucket_size",
		`{"max_concurrent": "4"}`:  "max_concurrent",
		`{"delivery": "twice"}`:    "delivery",
		`{"dispatch_deadline": 0}`: "dispatch_deadline",
	} {
		requireError(t, put(t, h, "q", body), 400, field)
	}
}

// A rate is a number per second or App Engine's "N/s", "N/m", "N/h", "N/d"; a bad
// one says which forms are accepted, and one too small to mean anything is
// refused with its bound.
func TestQueueRateForms(t *testing.T) {
	for body, want := range map[string]float64{
		`{"rate": 2.5}`:       2.5,
		`{"rate": "5/s"}`:     5,
		`{"rate": "100/m"}`:   100.0 / 60,
		`{"rate": "1/h"}`:     1.0 / 3600,
		`{"rate": "1/d"}`:     1.0 / 86400,
		`{"rate": "7"}`:       7,
		`{"rate": " 3 / m "}`: 3.0 / 60,
	} {
		b := newMemQueues()
		w := put(t, NewHandler(b, Config{}), "q", body)
		require.Equal(t, 200, w.Code, "%s: %s", body, w.Body.String())
		require.InDelta(t, want, b.settings["q"].Config.Rate, 1e-12, body)
		require.Equal(t, 1, b.settings["q"].Config.BucketSize, "a rate without a bucket gets a bucket of 1")
	}
	h := NewHandler(newMemQueues(), Config{})
	for _, body := range []string{`{"rate": "5/x"}`, `{"rate": "fast"}`, `{"rate": true}`, `{"rate": "5/s/s"}`, `{"rate": "NaN"}`} {
		w := put(t, h, "q", body)
		requireError(t, w, 400, "rate")
		msg := answer(t, w)["error"].(string)
		require.Contains(t, msg, `"5/s", "100/m", "1/h" or "1/d"`, body)
		require.NotContains(t, msg, "float64", body)
	}
	for _, body := range []string{`{"rate": 1e-12}`, `{"rate": "1e-9/s"}`, `{"rate": -1}`, `{"rate": 2e6}`} {
		w := put(t, h, "q", body)
		requireError(t, w, 400, "rate")
		require.Contains(t, answer(t, w)["error"], "one a day", body)
	}
	w := put(t, h, "q", `{"rate": "1/d", "bucket_size": 1000}`)
	requireError(t, w, 400, "bucket_size")
	require.Contains(t, answer(t, w)["error"], "to refill")
}

// GET shows under "settings" only what a client set, and under "effective" every
// setting as the queue runs, with null for a limit that is off; null in a PUT unsets
// a setting.
func TestQueueSettingsShowWhatWasSet(t *testing.T) {
	b := newMemQueues()
	h := NewHandler(b, Config{})
	w := put(t, h, "emails", `{"rate": "5/s", "retry": {"min_backoff": "2s", "task_age_limit": "2d"}, "delivery": "at-least-once"}`)
	require.Equal(t, 200, w.Code, w.Body.String())
	require.JSONEq(t, `{"rate": 5, "retry": {"min_backoff": "2s", "task_age_limit": "48h0m0s"}, "delivery": "at-least-once"}`, jsonOf(t, answer(t, w)["settings"]))

	w = do(t, h, "GET", "/v1/queues/emails", "", "")
	require.Equal(t, 200, w.Code)
	v := answer(t, w)
	require.JSONEq(t, `{"rate": 5, "retry": {"min_backoff": "2s", "task_age_limit": "48h0m0s"}, "delivery": "at-least-once"}`, jsonOf(t, v["settings"]))
	require.JSONEq(t, `{"rate": 5, "bucket_size": 1, "max_concurrent": null,
		"retry": {"task_retry_limit": null, "task_age_limit": "48h0m0s", "min_backoff": "2s", "max_backoff": "1h0m0s", "max_doublings": 16},
		"dispatch_deadline": "10s", "delivery": "at-least-once"}`, jsonOf(t, v["effective"]))

	// Unset: null for one setting, or for the whole retry object.
	w = put(t, h, "emails", `{"rate": null, "retry": {"min_backoff": null}, "max_concurrent": 3}`)
	require.Equal(t, 200, w.Code, w.Body.String())
	v = answer(t, w)
	require.JSONEq(t, `{"retry": {"task_age_limit": "48h0m0s"}, "delivery": "at-least-once", "max_concurrent": 3}`, jsonOf(t, v["settings"]))
	eff := v["effective"].(map[string]any)
	require.Nil(t, eff["rate"])
	require.Nil(t, eff["bucket_size"], "no bucket without a rate")
	require.Equal(t, "100ms", eff["retry"].(map[string]any)["min_backoff"], "back to the default")
	require.Equal(t, 0, b.settings["emails"].Config.BucketSize)

	w = put(t, h, "emails", `{"retry": null, "dispatch_deadline": 30}`)
	require.Equal(t, 200, w.Code, w.Body.String())
	require.JSONEq(t, `{"delivery": "at-least-once", "max_concurrent": 3, "dispatch_deadline": "30s"}`, jsonOf(t, answer(t, w)["settings"]))

	// A pause keeps the settings.
	w = do(t, h, "POST", "/v1/queues/emails/pause", "", "")
	require.Equal(t, 200, w.Code, w.Body.String())
	v = answer(t, w)
	require.Equal(t, true, v["paused"])
	require.JSONEq(t, `{"delivery": "at-least-once", "max_concurrent": 3, "dispatch_deadline": "30s"}`, jsonOf(t, v["settings"]))

	// A queue never set shows no settings and the defaults.
	v = answer(t, do(t, h, "GET", "/v1/queues/fresh", "", ""))
	require.JSONEq(t, `{}`, jsonOf(t, v["settings"]))
	require.Nil(t, v["effective"].(map[string]any)["retry"].(map[string]any)["task_retry_limit"], "no retry limit: shown as null, not 0")
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

// Purge answers how many tasks it cancelled.
func TestPurgeAnswersTheCount(t *testing.T) {
	b := newMemQueues()
	b.pending["old"] = 7
	w := do(t, NewHandler(b, Config{}), "POST", "/v1/queues/old/purge", "", "")
	require.Equal(t, 200, w.Code, w.Body.String())
	v := answer(t, w)
	require.Equal(t, "old", v["queue"])
	require.Equal(t, "purged", v["status"])
	require.EqualValues(t, 7, v["cancelled"])
	require.EqualValues(t, 1_900_000_000, v["purged_before"])
}

// DELETE refuses a queue with pending tasks (409, with their count) unless forced,
// which purges them; it answers 503 when a member could not say; it is idempotent.
func TestDeleteQueue(t *testing.T) {
	b := newMemQueues()
	h := NewHandler(b, Config{})
	require.Equal(t, 200, put(t, h, "emial", `{"rate": 5}`).Code)
	b.pending["emial"] = 3

	w := do(t, h, "DELETE", "/v1/queues/emial", "", "")
	v := requireErrorAny(t, w, 409, "queue")
	require.EqualValues(t, 3, v["pending"])
	require.Contains(t, v["error"], "?force=true")
	require.False(t, b.settings["emial"].Deleted)

	b.missing = []string{"n3", "n2"}
	w = do(t, h, "DELETE", "/v1/queues/emial", "", "")
	v = requireErrorAny(t, w, 503, "queue")
	require.Contains(t, v["error"], "n2, n3")
	b.missing = nil

	requireError(t, do(t, h, "DELETE", "/v1/queues/emial?force=maybe", "", ""), 400, "force")
	requireError(t, do(t, h, "DELETE", "/v1/queues/v1", "", ""), 400, "queue")

	w = do(t, h, "DELETE", "/v1/queues/emial?force=true", "", "")
	require.Equal(t, 200, w.Code, w.Body.String())
	require.JSONEq(t, `{"queue": "emial", "status": "deleted", "cancelled": 3}`, w.Body.String())
	require.True(t, b.settings["emial"].Deleted)

	w = do(t, h, "DELETE", "/v1/queues/emial", "", "")
	require.Equal(t, 200, w.Code, w.Body.String())
	require.JSONEq(t, `{"queue": "emial", "status": "deleted", "cancelled": 0}`, w.Body.String())

	v = answer(t, do(t, h, "GET", "/v1/queues/emial", "", ""))
	require.JSONEq(t, `{}`, jsonOf(t, v["settings"]))
}

// requireErrorAny is requireError for answers with members that are not strings.
func requireErrorAny(t *testing.T, w *httptest.ResponseRecorder, code int, field string) map[string]any {
	t.Helper()
	require.Equal(t, code, w.Code, w.Body.String())
	v := answer(t, w)
	require.Equal(t, field, v["field"], w.Body.String())
	require.NotEmpty(t, v["error"])
	return v
}
