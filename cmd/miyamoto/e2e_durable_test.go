package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// restart starts p again with the arguments it had, after it was killed.
func restart(t *testing.T, p *proc) {
	t.Helper()
	old := p.cmd
	p.cmd = exec.Command(old.Path, old.Args[1:]...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	require.NoError(t, p.cmd.Start())
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		p.cmd.Wait()
	})
}

// Three nodes with data directories acknowledge 500 tasks; all three are killed with
// SIGKILL before any is due (power loss) and restarted. Every task is delivered, none
// twice: nothing acknowledged was lost.
func TestE2EPowerLossLosesNothing(t *testing.T) {
	t.Parallel()
	procs := startCluster(t, 3)
	w := newWorker(t, 0)
	var ids []string
	began := time.Now()
	for i := 0; i < 500; i++ {
		ids = append(ids, enqueue(t, procs[i%3], url.Values{
			"task.url":       {w.srv.URL + "/work"},
			"task.countdown": {fmt.Sprintf("%.1f", 10+float64(i%20)/10)},
			"n":              {fmt.Sprint(i)},
		}))
	}
	t.Logf("500 tasks acknowledged in %s", time.Since(began))
	for _, p := range procs {
		require.NoError(t, p.cmd.Process.Signal(syscall.SIGKILL))
		p.cmd.Wait()
	}
	require.Empty(t, w.snapshot(), "tasks ran before they were due")
	for _, p := range procs {
		restart(t, p)
	}
	for _, p := range procs {
		waitHealthy(t, p)
	}
	w.waitAll(t, ids, 60*time.Second)
	time.Sleep(3 * time.Second)
	got := w.snapshot()
	for i, id := range ids {
		require.Len(t, got[id], 1, "task %s delivered %d times", id, len(got[id]))
		require.Equal(t, fmt.Sprintf("n=%d", i), got[id][0].body)
	}
}

// A power loss in the middle of deliveries: three nodes with data directories hold
// five deliveries open at a worker that never answers the first attempt; all three
// are SIGKILLed and restarted. The restarted nodes remember the grants they gave,
// wait out the lease, and deliver each task once more with a higher attempt; the
// second attempt succeeds and there is no third.
func TestE2EPowerLossMidDelivery(t *testing.T) {
	t.Parallel()
	procs := startCluster(t, 3, "--lease", "3s", "--max-clock-drift", "200ms", "--replica-offset", "500ms")
	var mu sync.Mutex
	got := map[string][]delivery{}
	worker := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Task-Id")
		mu.Lock()
		got[id] = append(got[id], delivery{id: id, attempt: r.Header.Get("X-Task-Attempt"), node: r.Header.Get("X-Miyamoto-Node"), at: time.Now()})
		first := len(got[id]) == 1
		mu.Unlock()
		if first { // hold the first attempt until its caller dies
			select {
			case <-r.Context().Done():
			case <-time.After(20 * time.Second):
			}
			return
		}
		rw.WriteHeader(200)
	}))
	t.Cleanup(worker.Close)
	snapshot := func() map[string][]delivery {
		mu.Lock()
		defer mu.Unlock()
		out := map[string][]delivery{}
		for k, v := range got {
			out[k] = append([]delivery(nil), v...)
		}
		return out
	}
	var ids []string
	for i := range 5 {
		ids = append(ids, enqueue(t, procs[i%3], url.Values{"task.url": {worker.URL}, "task.countdown": {"1"}}))
	}
	require.Eventually(t, func() bool {
		s := snapshot()
		for _, id := range ids {
			if len(s[id]) == 0 {
				return false
			}
		}
		return true
	}, 15*time.Second, 20*time.Millisecond, "the first attempts did not all start")

	for _, p := range procs {
		require.NoError(t, p.cmd.Process.Signal(syscall.SIGKILL))
		p.cmd.Wait()
	}
	for _, p := range procs {
		restart(t, p)
	}
	require.Eventually(t, func() bool {
		s := snapshot()
		for _, id := range ids {
			if len(s[id]) < 2 {
				return false
			}
		}
		return true
	}, 30*time.Second, 50*time.Millisecond, "a task held at the power loss was not delivered again")
	time.Sleep(3 * time.Second) // a lease: room for a wrong third attempt
	for id, ds := range snapshot() {
		require.Len(t, ds, 2, "task %s: %v", id, ds)
		a1, err1 := strconv.ParseUint(ds[0].attempt, 10, 64)
		a2, err2 := strconv.ParseUint(ds[1].attempt, 10, 64)
		require.NoError(t, err1)
		require.NoError(t, err2)
		require.Greater(t, a2, a1, "task %s: the retry must be a later attempt", id)
		require.GreaterOrEqual(t, ds[1].at.Sub(ds[0].at), 2*time.Second, "task %s: retried before the lease it held could be over", id)
	}
	for _, id := range ids {
		var st struct{ State string }
		resp, err := http.Get("http://" + procs[0].http + "/v1/tasks/" + id)
		require.NoError(t, err)
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&st))
		resp.Body.Close()
		require.Equal(t, "succeeded", st.State, id)
	}
}
