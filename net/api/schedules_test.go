package api

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/node"
)

// scheduleBackend keeps schedules in a map, as one node would.
type scheduleBackend struct {
	fakeBackend
	scheds map[string]node.Schedule
	putErr error
}

func (b *scheduleBackend) Schedules(context.Context) ([]node.Schedule, error) {
	var out []node.Schedule
	for _, s := range b.scheds {
		out = append(out, s)
	}
	return out, nil
}

func (b *scheduleBackend) Schedule(_ context.Context, name string) (node.Schedule, error) {
	s, ok := b.scheds[name]
	if !ok {
		return s, node.ErrScheduleNotFound
	}
	return s, nil
}

func (b *scheduleBackend) PutSchedule(_ context.Context, s node.Schedule) (node.Schedule, error) {
	s.Version, s.Created = 7, time.Unix(1_900_000_000, 0)
	b.scheds[s.Name] = s
	return s, b.putErr
}

func (b *scheduleBackend) DeleteSchedule(_ context.Context, name string) (node.Schedule, error) {
	s, ok := b.scheds[name]
	if !ok {
		return s, node.ErrScheduleNotFound
	}
	delete(b.scheds, name)
	return s, nil
}

func TestSchedulePutGetDelete(t *testing.T) {
	b := &scheduleBackend{scheds: map[string]node.Schedule{}}
	h := NewHandler(b, Config{})
	w := do(t, h, "PUT", "/v1/schedules/nightly", "application/json",
		`{"cron": "0 30 3 * * *", "time_zone": "Europe/Paris", "queue": "reports", "missed": "one",
		  "task": {"url": "http://worker:8080/report", "params": {"kind": "daily"}, "headers": {"X-Team": "ops"}}}`)
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	var v ScheduleView
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &v))
	require.Equal(t, "nightly", v.Name)
	require.Equal(t, "Europe/Paris", v.TimeZone)
	require.Equal(t, "one", v.Missed)
	require.Equal(t, "POST", v.Task.Method)
	require.Equal(t, "kind=daily", v.Task.Body)
	require.Equal(t, "application/x-www-form-urlencoded", v.Task.ContentType)
	require.Equal(t, map[string]string{"X-Team": "ops"}, v.Task.Headers)
	require.Len(t, v.Next, nextShown)
	first, err := time.Parse(time.RFC3339, v.Next[0])
	require.NoError(t, err)
	_, offset := first.Zone()
	require.Contains(t, []int{3600, 7200}, offset, "next ticks are shown in Paris time")
	require.Equal(t, 3, first.Hour())
	require.Equal(t, 30, first.Minute())

	stored := b.scheds["nightly"]
	require.Equal(t, "reports", stored.Queue)
	require.Equal(t, node.MissedOne, stored.Missed)

	w = do(t, h, "GET", "/v1/schedules/nightly", "", "")
	require.Equal(t, http.StatusOK, w.Code)
	w = do(t, h, "GET", "/v1/schedules", "", "")
	require.Equal(t, http.StatusOK, w.Code)
	var list struct{ Schedules []ScheduleView }
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &list))
	require.Len(t, list.Schedules, 1)

	w = do(t, h, "DELETE", "/v1/schedules/nightly", "", "")
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	require.JSONEq(t, `{"name": "nightly", "status": "deleted"}`, w.Body.String())
	for _, m := range []string{"GET", "DELETE"} {
		w = do(t, h, m, "/v1/schedules/nightly", "", "")
		require.Equal(t, http.StatusNotFound, w.Code)
		require.JSONEq(t, `{"error": "name: no such schedule", "field": "name"}`, w.Body.String())
	}
}

// Every bad schedule answers 400 naming its field.
func TestScheduleBadInputNamesTheField(t *testing.T) {
	h := NewHandler(&scheduleBackend{scheds: map[string]node.Schedule{}}, Config{})
	task := `"task": {"url": "http://w/x"}`
	cases := []struct{ name, body, field string }{
		{"bad%20name", `{"cron": "@hourly", ` + task + `}`, "name"},
		{"nightly", `{` + task + `}`, "cron"},
		{"nightly", `{"cron": "* * *", ` + task + `}`, "cron"},
		{"nightly", `{"cron": "@fortnightly", ` + task + `}`, "cron"},
		{"nightly", `{"cron": 5, ` + task + `}`, "cron"},
		{"nightly", `{"cron": "@hourly", "time_zone": "Mars/Base", ` + task + `}`, "time_zone"},
		{"nightly", `{"cron": "@hourly", "missed": "all", ` + task + `}`, "missed"},
		{"nightly", `{"cron": "@hourly", "queue": "v1", ` + task + `}`, "queue"},
		{"nightly", `{"cron": "@hourly", "every": "1s", ` + task + `}`, "every"},
		{"nightly", `{"cron": "@hourly"}`, "task"},
		{"nightly", `{"cron": "@hourly", "task": "http://w/x"}`, "task"},
		{"nightly", `{"cron": "@hourly", "task": {}}`, "task.url"},
		{"nightly", `{"cron": "@hourly", "task": {"url": "ftp://w/x"}}`, "task.url"},
		{"nightly", `{"cron": "@hourly", "task": {"url": "http://w/x", "name": "n"}}`, "task.name"},
		{"nightly", `{"cron": "@hourly", "task": {"url": "http://w/x", "countdown": 5}}`, "task.countdown"},
		{"nightly", `{"cron": "@hourly", "task": {"url": "http://w/x", "method": "GE T"}}`, "task.method"},
		{"nightly", `{"cron": "@hourly", "task": {"url": "http://w/x", "params": {"a": {}}}}`, "task.params.a"},
		{"nightly", `{"cron": "@hourly", "task": {"url": "http://w/x", "colour": "red"}}`, "task.colour"},
		{"nightly", `{"cron": "0 0 30 2 *", ` + task + `}`, "cron"},
		{"nightly", `not json`, "body"},
	}
	for _, c := range cases {
		w := do(t, h, "PUT", "/v1/schedules/"+c.name, "application/json", c.body)
		require.Equal(t, http.StatusBadRequest, w.Code, "%s: %s", c.body, w.Body.String())
		var e struct{ Error, Field string }
		require.NoError(t, json.Unmarshal(w.Body.Bytes(), &e))
		require.Equal(t, c.field, e.Field, "%s: %s", c.body, e.Error)
		require.Contains(t, e.Error, c.field)
	}
}

// A change not every member acknowledged answers 503 with the schedule as set.
func TestSchedulePutNotEveryMember(t *testing.T) {
	b := &scheduleBackend{scheds: map[string]node.Schedule{}, putErr: node.ErrNotEveryMember}
	h := NewHandler(b, Config{})
	w := do(t, h, "PUT", "/v1/schedules/beat", "application/json", `{"cron": "@every 10s", "task": {"url": "http://w/x"}}`)
	require.Equal(t, http.StatusServiceUnavailable, w.Code)
	require.Equal(t, "1", w.Header().Get("Retry-After"))
	var out struct {
		Error    string
		Schedule ScheduleView
	}
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &out))
	require.Contains(t, out.Error, "keeps spreading")
	require.Equal(t, "beat", out.Schedule.Name)
}

// The URL policy vets a schedule's task URL as it vets an enqueue's.
func TestScheduleURLPolicy(t *testing.T) {
	check := func(_ context.Context, u string) error {
		if u == "http://10.0.0.1/x" {
			return errBlocked
		}
		return nil
	}
	h := NewHandler(&scheduleBackend{scheds: map[string]node.Schedule{}}, Config{CheckURL: check})
	w := do(t, h, "PUT", "/v1/schedules/beat", "application/json", `{"cron": "@hourly", "task": {"url": "http://10.0.0.1/x"}}`)
	require.Equal(t, http.StatusBadRequest, w.Code)
	require.Contains(t, w.Body.String(), `"field": "url"`)
}

var errBlocked = &node.FieldError{Field: "url", Message: "private address"}
