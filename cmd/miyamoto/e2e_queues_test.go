package main

// End-to-end tests of queue settings against three real processes.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// putQueue sets a queue's settings, as a client would: a 503 "not every member
// acknowledged the setting in time; it keeps spreading, retry to confirm" (a member
// slow to answer on a loaded machine) is retried, at most three times.
func putQueue(t *testing.T, p *proc, queue, body string) {
	t.Helper()
	for try := 1; ; try++ {
		req, err := http.NewRequest("PUT", "http://"+p.http+"/v1/queues/"+queue, strings.NewReader(body))
		require.NoError(t, err)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable && try < 3 && strings.Contains(string(b), "retry to confirm") {
			continue
		}
		require.Equal(t, 200, resp.StatusCode, string(b))
		return
	}
}

func enqueueTo(t *testing.T, p *proc, queue string, form url.Values) (int, map[string]string) {
	t.Helper()
	resp, err := http.PostForm("http://"+p.http+"/"+queue, form)
	require.NoError(t, err)
	defer resp.Body.Close()
	var out map[string]string
	b, _ := io.ReadAll(resp.Body)
	require.NoError(t, json.Unmarshal(b, &out), string(b))
	return resp.StatusCode, out
}

// A queue set to 5/s with bucket 1 spreads 20 tasks, all due at once and enqueued
// through all three nodes, over about 4 s: the limit holds for the whole cluster.
func TestE2EQueueRateLimitSpreadsTasks(t *testing.T) {
	t.Parallel()
	// A short lease shortens what the token node waits before it grants (the
	// members' recovery wait, then a quarter lease and three drift allowances).
	procs := startCluster(t, 3, "--lease", "4s", "--max-clock-drift", "500ms")
	w := newWorker(t, 0)
	putQueue(t, procs[0], "slow", `{"rate": 5, "bucket_size": 1}`)
	var ids []string
	for i := 0; i < 20; i++ {
		code, out := enqueueTo(t, procs[i%3], "slow", url.Values{"task.url": {w.srv.URL + "/work"}, "n": {fmt.Sprint(i)}})
		require.Equal(t, 200, code, out)
		ids = append(ids, out["id"])
	}
	// The token node grants nothing before it holds the token lease and waited
	// after taking it up (README, "The hand-over"): about 12 s here.
	w.waitAll(t, ids, 45*time.Second)
	got := w.snapshot()
	var at []time.Time
	for _, id := range ids {
		require.Len(t, got[id], 1)
		at = append(at, got[id][0].at)
	}
	sort.Slice(at, func(i, j int) bool { return at[i].Before(at[j]) })
	span := at[len(at)-1].Sub(at[0])
	t.Logf("20 deliveries over %s", span)
	// 19 gaps at 5/s is 3.8 s; a permit may lag its grant by up to 200 ms.
	require.GreaterOrEqual(t, span, 3400*time.Millisecond, "the rate limit did not hold")
	require.Less(t, span, 12*time.Second, "the queue ran far slower than its rate")
	// No window of 1 s holds more than rate×(1 s + 0.2 s) + bucket deliveries.
	for i := range at {
		n := 0
		for j := i; j < len(at) && at[j].Sub(at[i]) < time.Second; j++ {
			n++
		}
		require.LessOrEqual(t, n, 7, "%d deliveries within 1 s from %s", n, at[i].Format(time.StampMilli))
	}
}

// A worker that answers 500 gets the retries the queue asks for, with its backoff,
// then the task is dead.
func TestE2EQueueRetriesThenDead(t *testing.T) {
	t.Parallel()
	procs := startCluster(t, 3)
	var mu sync.Mutex
	var arrivals []time.Time
	var retryCounts []string
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		mu.Lock()
		arrivals = append(arrivals, time.Now())
		retryCounts = append(retryCounts, r.Header.Get("X-Task-Retry-Count"))
		n := len(arrivals)
		mu.Unlock()
		if n > 3 {
			rw.WriteHeader(200) // the re-queued task succeeds
			return
		}
		rw.WriteHeader(500)
	}))
	t.Cleanup(srv.Close)
	putQueue(t, procs[1], "flaky", `{"retry": {"task_retry_limit": 2, "min_backoff": "1s", "max_doublings": 1}}`)
	code, out := enqueueTo(t, procs[2], "flaky", url.Values{"task.url": {srv.URL}})
	require.Equal(t, 200, code)
	id := out["id"]
	deadline := time.Now().Add(30 * time.Second)
	var state string
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + procs[0].http + "/v1/tasks/" + id)
		require.NoError(t, err)
		var v struct {
			State      string `json:"state"`
			LastStatus int    `json:"last_status"`
			DeadReason string `json:"dead_reason"`
			History    []struct {
				Attempt uint64  `json:"attempt"`
				Node    string  `json:"node"`
				Start   float64 `json:"start"`
				Status  int     `json:"status"`
			} `json:"attempts_history"`
		}
		json.NewDecoder(resp.Body).Decode(&v)
		resp.Body.Close()
		state = v.State
		if state == "dead" {
			require.Equal(t, 500, v.LastStatus)
			// Whichever replicas delivered, the node asked merges their histories.
			require.Len(t, v.History, 3, "%+v", v.History)
			for i, a := range v.History {
				require.Equal(t, 500, a.Status)
				require.Contains(t, []string{"n1", "n2", "n3"}, a.Node)
				if i > 0 {
					require.Greater(t, a.Attempt, v.History[i-1].Attempt)
					require.Greater(t, a.Start, v.History[i-1].Start)
				}
			}
			require.Contains(t, v.DeadReason, "retry limits reached (task_retry_limit 2) after 3 failed deliveries; last: HTTP 500")
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	require.Equal(t, "dead", state)
	mu.Lock()
	require.Len(t, arrivals, 3, "a retry limit of 2 is the first try and two retries")
	require.Equal(t, []string{"0", "1", "2"}, retryCounts)
	// Backoff: 1 s, then 2 s (one doubling).
	require.GreaterOrEqual(t, arrivals[1].Sub(arrivals[0]), 900*time.Millisecond)
	require.GreaterOrEqual(t, arrivals[2].Sub(arrivals[1]), 1900*time.Millisecond)
	mu.Unlock()

	// It is listed as dead (with three nodes and R=3 every node holds it) ...
	resp, err := http.Get("http://" + procs[1].http + "/v1/queues/flaky/tasks?state=dead")
	require.NoError(t, err)
	var list struct {
		Tasks []struct{ ID, State string }
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&list))
	resp.Body.Close()
	require.Len(t, list.Tasks, 1)
	require.Equal(t, id, list.Tasks[0].ID)
	// ... and re-queued as a new task, which runs.
	resp, err = http.Post("http://"+procs[0].http+"/v1/tasks/"+id+"/retry", "", nil)
	require.NoError(t, err)
	var rq map[string]string
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&rq))
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode, rq)
	require.Equal(t, id, rq["requeued_from"])
	require.NotEqual(t, id, rq["id"])
	deadline = time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		n := len(arrivals)
		mu.Unlock()
		if n == 4 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	mu.Lock()
	require.Len(t, arrivals, 4, "the re-queued task did not run")
	// A task that is not dead cannot be re-queued.
	resp, err = http.Post("http://"+procs[0].http+"/v1/tasks/"+rq["id"]+"/retry", "", nil)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 409, resp.StatusCode)
}

// Purging a queue cancels every task in it, on every node; none of them runs.
func TestE2EQueuePurge(t *testing.T) {
	t.Parallel()
	procs := startCluster(t, 3)
	w := newWorker(t, 0)
	var ids []string
	for i := 0; i < 10; i++ {
		code, out := enqueueTo(t, procs[i%3], "old", url.Values{"task.url": {w.srv.URL}, "task.countdown": {"3"}})
		require.Equal(t, 200, code)
		ids = append(ids, out["id"])
	}
	resp, err := http.Post("http://"+procs[2].http+"/v1/queues/old/purge", "", nil)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	for _, p := range procs {
		resp, err := http.Get("http://" + p.http + "/v1/queues/old/tasks?state=cancelled")
		require.NoError(t, err)
		var list struct{ Tasks []struct{ ID string } }
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&list))
		resp.Body.Close()
		require.Len(t, list.Tasks, 10, "on %s", p.id)
	}
	time.Sleep(5 * time.Second)
	require.Empty(t, w.snapshot(), "a purged task ran")
	// New tasks in the queue run as usual.
	code, out := enqueueTo(t, procs[0], "old", url.Values{"task.url": {w.srv.URL}})
	require.Equal(t, 200, code)
	w.waitAll(t, []string{out["id"]}, 10*time.Second)
}

// A task name is unique in its queue across the cluster: the same name sent to
// another node answers 409 with the first task's ID; the task runs once.
func TestE2EDuplicateNameConflicts(t *testing.T) {
	t.Parallel()
	procs := startCluster(t, 3)
	w := newWorker(t, 0)
	form := url.Values{"task.url": {w.srv.URL}, "task.name": {"welcome-42"}, "task.countdown": {"1"}}
	code, first := enqueueTo(t, procs[0], "emails", form)
	require.Equal(t, 200, code, first)
	for _, p := range procs[1:] {
		code, dup := enqueueTo(t, p, "emails", form)
		require.Equal(t, 409, code, dup)
		require.Equal(t, first["id"], dup["id"])
		require.Equal(t, "name", dup["field"])
	}
	w.waitAll(t, []string{first["id"]}, 20*time.Second)
	time.Sleep(3 * time.Second)
	require.Len(t, w.snapshot()[first["id"]], 1)
	// The same name in another queue is another task.
	code, other := enqueueTo(t, procs[2], "newsletters", form)
	require.Equal(t, 200, code, other)
	require.NotEqual(t, first["id"], other["id"])
}

// A capped queue with a backlog keeps its cap busy with real processes (issue 16):
// 100 tasks due at once on a queue capped at 2, a worker that takes 1 s, drain
// near the ideal 50 s on one node and on three. The lease is short so that the
// token node grants sooner; the dispatch deadline (2 s) leaves room in it, so a
// replica refused at the cap waits in line at the token node (README, "Queues").
func TestE2ECappedQueueBacklogDrainsAtItsCap(t *testing.T) {
	t.Parallel()
	const tasks, work = 100, time.Second
	ideal := tasks / 2 * work
	for _, size := range []int{1, 3} {
		t.Run(fmt.Sprintf("%d nodes", size), func(t *testing.T) {
			t.Parallel()
			procs := startCluster(t, size, "--lease", "6s", "--max-clock-drift", "500ms")
			w := newWorker(t, work)
			putQueue(t, procs[0], "capped", `{"max_concurrent": 2, "dispatch_deadline": "2s"}`)
			var ids []string
			for i := range tasks {
				code, out := enqueueTo(t, procs[i%size], "capped", url.Values{"task.url": {w.srv.URL + "/work"}, "n": {fmt.Sprint(i)}})
				require.Equal(t, 200, code, out)
				ids = append(ids, out["id"])
			}
			// The token node grants nothing for about 10 s (README, "The
			// hand-over"), by when every task is due.
			w.waitAll(t, ids, 4*ideal)
			got := w.snapshot()
			var starts []time.Time
			for _, id := range ids {
				for _, d := range got[id] {
					starts = append(starts, d.at)
				}
			}
			sort.Slice(starts, func(i, j int) bool { return starts[i].Before(starts[j]) })
			drain := starts[len(starts)-1].Add(work).Sub(starts[0])
			ratio := float64(drain) / float64(ideal)
			t.Logf("%d node(s): %d calls, drained in %v from the first start, %.3f× the ideal %v", size, len(starts), drain.Round(time.Millisecond), ratio, ideal)
			// By the worker's clock, no start finds two calls begun less than
			// work before it.
			for i := 2; i < len(starts); i++ {
				require.GreaterOrEqual(t, starts[i].Sub(starts[i-2]), work-50*time.Millisecond, "three calls in flight at %s", starts[i].Format(time.StampMilli))
			}
			// Measured 1.014 on one node and 1.011 on three (at 3f5fe68, the
			// machine busy); 1.257 and 1.267 before asks were held at the cap
			// (backoffs are short under a 6 s lease: more with the defaults).
			require.LessOrEqual(t, ratio, 1.12, "a capped queue with a backlog should keep its cap busy")
		})
	}
}
