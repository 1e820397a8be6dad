package main

// The Ship of Theseus with real processes (DESIGN, "Membership"): every node of a
// cluster is replaced, one at a time, under a steady load, and no acknowledged task
// is lost or delivered twice.

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// launchJoin starts p as a node that joins the cluster through the member whose
// HTTP address is via (serve --join, no --peers); the process is killed at the end
// of the test.
func launchJoin(t *testing.T, p *proc, via string, extra ...string) {
	t.Helper()
	launchServe(t, p, append([]string{"--join", via}, extra...)...)
}

// launchServe starts p with serve, its ID, addresses and data directory, and extra
// (no --peers: alone, unless extra has --join); the process is killed at the end of
// the test.
func launchServe(t *testing.T, p *proc, extra ...string) {
	t.Helper()
	args := append([]string{"serve", "--node-id", p.id, "--http-addr", p.http, "--peer-addr", p.peer, "--data-dir", p.dataDir}, extra...)
	p.cmd = exec.Command(binary(t), args...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	require.NoError(t, p.cmd.Start())
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		p.cmd.Wait()
		if t.Failed() {
			t.Logf("--- log of %s:\n%s", p.id, tail(p.log.String(), 40))
		}
	})
}

// rosterView is what GET /v1/cluster says of the roster.
type rosterView struct {
	Epoch   uint64
	Leader  string
	Healthy bool
	Removed bool
	Members []struct{ ID string }
	// TasksOnRemoved: tasks the node holds, not final, whose replica list names a
	// removed member.
	TasksOnRemoved int `json:"tasks_on_removed"`
}

func (v rosterView) memberIDs() []string {
	var ids []string
	for _, m := range v.Members {
		ids = append(ids, m.ID)
	}
	return ids
}

// viewOf asks p for /v1/cluster; ok is false when p did not answer with JSON.
func viewOf(p *proc) (v rosterView, ok bool) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + p.http + "/v1/cluster")
	if err != nil {
		return v, false
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return v, err == nil && json.Unmarshal(b, &v) == nil
}

// waitUntil polls cond every 200 ms until it holds, or fails the test after within
// with what was awaited and cond's last explanation.
func waitUntil(t *testing.T, within time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s (%s)", what, within, why)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// removeMember asks via to remove id (POST /v1/cluster/members/{id}/remove) every
// half second until it answers 200 "removed", at most within.
func removeMember(t *testing.T, via *proc, id string, within time.Duration) {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	waitUntil(t, within, "removing "+id+" through "+via.id, func() (bool, string) {
		resp, err := c.Post("http://"+via.http+"/v1/cluster/members/"+id+"/remove", "", nil)
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var ans struct{ Status string }
		json.Unmarshal(b, &ans)
		return resp.StatusCode == http.StatusOK && ans.Status == "removed", fmt.Sprintf("HTTP %d %s", resp.StatusCode, b)
	})
}

// waitExited waits until process pid has exited (it is a zombie or gone), at most
// within.
func waitExited(t *testing.T, pid int, within time.Duration) {
	t.Helper()
	waitUntil(t, within, fmt.Sprintf("pid %d exits", pid), func() (bool, string) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return true, ""
		}
		s := string(b)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		return len(fields) > 0 && fields[0] == "Z", "state " + fields[0]
	})
}

// steadyLoad enqueues a task every interval through the nodes it is given, in
// turn, each due 0-3 s later, and keeps the ID of every one acknowledged (200
// "scheduled"; a 503, an error or no answer acknowledges nothing).
type steadyLoad struct {
	mu      sync.Mutex
	targets []*proc
	acked   []string
	refused int // answers other than 200, and requests that failed
	stop    chan struct{}
	done    chan struct{}
}

func startLoad(t *testing.T, workerURL string, interval time.Duration, targets []*proc) *steadyLoad {
	return startLoadTo(t, "queue", workerURL, interval, targets)
}

// startLoadTo is startLoad into the named queue.
func startLoadTo(t *testing.T, queue, workerURL string, interval time.Duration, targets []*proc) *steadyLoad {
	l := &steadyLoad{targets: slices.Clone(targets), stop: make(chan struct{}), done: make(chan struct{})}
	c := &http.Client{Timeout: 5 * time.Second}
	rng := rand.New(rand.NewPCG(1, 2))
	go func() {
		defer close(l.done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-l.stop:
				return
			case <-tick.C:
			}
			l.mu.Lock()
			p := l.targets[i%len(l.targets)]
			l.mu.Unlock()
			form := url.Values{"task.url": {workerURL}, "task.countdown": {fmt.Sprintf("%.1f", 3*rng.Float64())}, "n": {fmt.Sprint(i)}}
			l.record(c.PostForm("http://"+p.http+"/"+queue, form))
		}
	}()
	t.Cleanup(l.halt)
	return l
}

// record keeps the ID of an acknowledged enqueue and counts the others.
func (l *steadyLoad) record(resp *http.Response, err error) {
	var ans struct{ Status, ID string }
	if err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK && json.Unmarshal(b, &ans) == nil && ans.Status == "scheduled" {
			l.mu.Lock()
			l.acked = append(l.acked, ans.ID)
			l.mu.Unlock()
			return
		}
	}
	l.mu.Lock()
	l.refused++
	l.mu.Unlock()
}

// setTargets changes the nodes the load goes through.
func (l *steadyLoad) setTargets(targets []*proc) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.targets = slices.Clone(targets)
}

// halt stops the load and waits for its last request; it may be called twice.
func (l *steadyLoad) halt() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	<-l.done
}

func (l *steadyLoad) results() (acked []string, refused int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.acked), l.refused
}

// Three nodes with their logs on disk, under a load of 20 enqueues a second, are
// replaced one at a time: a new node joins (--join) and becomes healthy, the old
// one is removed through the API, every member's tasks_on_removed drains, and the
// old one is stopped with SIGTERM. At the end no original node is left, and every
// acknowledged task was delivered exactly once.
func TestE2EShipOfTheseus(t *testing.T) {
	t.Parallel()
	began := time.Now()
	// Short leases, as the chaos test uses, so that the leader's removal (its
	// lease must run out before another leads) takes seconds.
	opts := []string{"--lease", "3s", "--max-clock-drift", "200ms", "--replica-offset", "1s"}
	members := startCluster(t, 3, opts...)
	w := newWorker(t, 0)
	load := startLoad(t, w.srv.URL+"/work", 50*time.Millisecond, members)
	dataRoot := t.TempDir()

	for i, old := range slices.Clone(members) {
		p := &proc{id: fmt.Sprintf("n%d", 4+i), http: freePort(t), peer: freePort(t), log: &lockedBuffer{}, dataDir: filepath.Join(dataRoot, fmt.Sprintf("n%d", 4+i))}
		launchJoin(t, p, members[len(members)-1].http, opts...)
		waitUntil(t, 60*time.Second, p.id+" joins and is healthy", func() (bool, string) {
			v, ok := viewOf(p)
			return ok && v.Healthy && slices.Contains(v.memberIDs(), p.id), fmt.Sprintf("%+v", v)
		})
		members = append(members, p)
		t.Logf("%s joined after %s", p.id, time.Since(began).Round(100*time.Millisecond))

		members = slices.DeleteFunc(members, func(q *proc) bool { return q == old })
		load.setTargets(members)
		if v, ok := viewOf(p); ok {
			t.Logf("removing %s; the leader is %s", old.id, v.Leader) // the leader's turn comes too
		}
		removeMember(t, p, old.id, 60*time.Second)
		for _, q := range members {
			waitUntil(t, 60*time.Second, q.id+" holds no task on a removed member", func() (bool, string) {
				v, ok := viewOf(q)
				return ok && !slices.Contains(v.memberIDs(), old.id) && v.TasksOnRemoved == 0, fmt.Sprintf("%+v", v)
			})
		}
		var moved uint64 // moves so far by the nodes still running, the old one included
		for _, q := range append([]*proc{old}, members...) {
			moved += metricSum(t, q, "miyamoto_moves_total")
		}
		require.NoError(t, old.cmd.Process.Signal(syscall.SIGTERM))
		waitExited(t, old.cmd.Process.Pid, 30*time.Second)
		old.cmd.Wait() // reaps it; the cleanup's Wait then returns at once
		require.Equal(t, 0, old.cmd.ProcessState.ExitCode(), "%s did not stop cleanly on SIGTERM", old.id)
		t.Logf("%s removed and stopped after %s; %d moves so far by the nodes running", old.id, time.Since(began).Round(100*time.Millisecond), moved)
		require.NotZero(t, moved, "removing %s moved no task: the test did not exercise re-replication", old.id)
	}

	// The last one removed was the leader in every run so far: the new members
	// elect one once its lease ran out, and take tasks meanwhile.
	waitUntil(t, 15*time.Second, "one of the new members leads", func() (bool, string) {
		v, ok := viewOf(members[0])
		return ok && slices.Contains([]string{"n4", "n5", "n6"}, v.Leader), fmt.Sprintf("%+v", v)
	})
	time.Sleep(2 * time.Second) // the load runs on the new cluster alone for a while
	load.halt()
	acked, refused := load.results()
	t.Logf("%d tasks acknowledged, %d enqueues refused, in %s", len(acked), refused, time.Since(began).Round(100*time.Millisecond))
	require.Greater(t, len(acked), 100, "the load ran through the replacements")
	v, ok := viewOf(members[0])
	require.True(t, ok)
	require.Equal(t, []string{"n4", "n5", "n6"}, v.memberIDs(), "no original member is left")

	w.waitAll(t, acked, 60*time.Second)
	time.Sleep(3 * time.Second) // a replica that missed an outcome fires within 2 × replica offset
	got := w.snapshot()
	for _, id := range acked {
		require.Len(t, got[id], 1, "task %s delivered %d times: %+v", id, len(got[id]), got[id])
	}
	t.Logf("every acknowledged task delivered once; the test took %s", time.Since(began).Round(100*time.Millisecond))
}
