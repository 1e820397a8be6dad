package bench

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// inCI is true where every tool the tests need is installed (.ci/run installs
// redis-server), so that a peer must not be skipped.
func inCI() bool { return os.Getenv("CI") == "true" }

// checkPeerRuns fails when a target was skipped in CI, and says whether it ran.
func checkPeerRuns(t *testing.T, res Result) bool {
	t.Helper()
	if res.Skipped == "" {
		return true
	}
	require.False(t, inCI(), "%s skipped in CI: %s", res.Target, res.Skipped)
	t.Logf("%s skipped: %s", res.Target, res.Skipped)
	return false
}

// A short closed-loop comparison with the peers: on every one, every acknowledged
// task reached the sink exactly once, and nothing else did.
func TestComparePeers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server and the peers: skipped with -short")
	}
	// Room for every target to wait out its DrainTimeout, so that a lost task
	// fails as missing rather than as a timeout of the whole test.
	ctx, cancel := context.WithTimeout(context.Background(), 180*time.Second)
	defer cancel()
	targets := append([]string{TargetBaseline}, PeerTargets...)
	rep, table := compareLogged(t, ctx, CompareConfig{
		Targets:      targets,
		Load:         LoadConfig{Mode: ModeClosed, Concurrency: 8, Duration: 1500 * time.Millisecond},
		DrainTimeout: 15 * time.Second,
		Settle:       300 * time.Millisecond,
	})
	for _, res := range rep.Results {
		if !checkPeerRuns(t, res) {
			require.Contains(t, table, res.Target+": skipped: ")
			continue
		}
		require.Positive(t, res.Load.Acked, res.Target)
		require.Zero(t, res.Load.ErrorCount(), "%s: %v", res.Target, res.Load.Errors)
		require.Zero(t, res.Missing, "%s: acknowledged tasks never delivered", res.Target)
		require.Equal(t, res.Load.Acked, res.Delivered, res.Target)
		require.Zero(t, res.Duplicates, "%s: tasks delivered twice", res.Target)
		require.Zero(t, res.Unacked, "%s: tasks delivered that were not acknowledged", res.Target)
		require.Equal(t, res.Load.Acked, res.Sink.Total, res.Target)
		require.Positive(t, res.DeliveredRate, res.Target)
		// A queue may deliver a task before its acknowledgement reaches the client
		// (river's worker picks the job up as its insert commits), but no task before
		// its enqueue was sent: the last delivery comes at most the slowest enqueue's
		// latency before the last acknowledgement.
		if window := res.Load.Elapsed - res.Load.Max; window > 0 {
			bound := float64(res.Load.Acked) / window.Seconds()
			require.LessOrEqual(t, res.DeliveredRate, bound*1.01, "%s: delivered faster than enqueued", res.Target)
		}
		require.False(t, res.HasLateness, "%s: no countdown, no lateness", res.Target)
		require.False(t, res.Ratio != res.Ratio, "%s: no ratio to the baseline", res.Target)
		require.Contains(t, table, res.Target+" ", "a row for %s", res.Target)
	}
}

// With a countdown, every target holds each task until about when it is due:
// lateness is measured, bounded, and (but for asynq's) never negative.
func TestComparePeersCountdown(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server and the peers: skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	const countdown = 400 * time.Millisecond
	targets := []string{TargetSingle, TargetAsynq, TargetRiver}
	rep, table := compareLogged(t, ctx, CompareConfig{
		Targets:      targets,
		Load:         LoadConfig{Mode: ModeOpen, Rate: 100, Duration: time.Second, Countdown: countdown},
		DrainTimeout: 30 * time.Second,
		Settle:       -1,
	})
	for _, res := range rep.Results {
		if !checkPeerRuns(t, res) {
			continue
		}
		require.Equal(t, 100, res.Load.Acked, "%s: %v", res.Target, res.Load.Errors)
		require.Zero(t, res.Missing, res.Target)
		require.Zero(t, res.Duplicates, res.Target)
		require.True(t, res.HasLateness, res.Target)
		// Bounded by the peers' own polls: asynq's forwarder every 50 ms, River's job
		// scheduler every 5 s (not configurable).
		require.Less(t, res.LateP99, 8*time.Second, res.Target)
		require.NotContains(t, table, res.Target+"  n/a", res.Target)
		if res.Target == TargetAsynq {
			// asynq keeps a due time in whole Unix seconds (ProcessAt's score in
			// redis), so a task may run up to a second early, never more.
			require.Greater(t, res.LateP50, -time.Second, res.Target)
			continue
		}
		require.GreaterOrEqual(t, res.E2EP50, countdown, "%s: delivered before due", res.Target)
		require.Zero(t, res.Early, "%s: tasks delivered before their due time", res.Target)
	}
}

// Without redis-server on the PATH, the asynq targets are reported as skipped with
// one line saying what to install, and the rest still run.
func TestCompareSkipsAsynqWithoutRedis(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := Compare(ctx, CompareConfig{
		Targets:      []string{TargetBaseline, TargetAsynq},
		Load:         LoadConfig{Mode: ModeClosed, Concurrency: 2, Duration: 200 * time.Millisecond},
		DrainTimeout: 10 * time.Second,
		Settle:       -1,
		Rounds:       2,
	})
	require.NoError(t, err)
	res, ok := rep.Result(TargetAsynq)
	require.True(t, ok)
	require.Contains(t, res.Skipped, "apt-get install redis-server")
	require.True(t, res.Ratio != res.Ratio, "a skipped target has no ratio")
	base, _ := rep.Result(TargetBaseline)
	require.Empty(t, base.Skipped)
	require.Equal(t, 2, base.Rounds)
	var table strings.Builder
	require.NoError(t, rep.WriteTable(&table))
	require.Contains(t, table.String(), "\nasynq: skipped: redis-server is not installed")
	require.Equal(t, 1, strings.Count(table.String(), "asynq"), table.String())
}

// The peers' frontend answers bad enqueues 400 with the field named, a failing
// enqueue 503, and a good one with the task's ID and its due time from the countdown.
func TestPeerFrontend(t *testing.T) {
	var mu sync.Mutex // the handler runs on the server's goroutines
	var got []peerTask
	var dues []time.Duration
	fail := false
	f, err := startPeerFrontend(func(_ context.Context, pt peerTask, due time.Time) error {
		mu.Lock()
		defer mu.Unlock()
		if fail {
			return errors.New("full")
		}
		got = append(got, pt)
		dues = append(dues, time.Until(due))
		return nil
	})
	require.NoError(t, err)
	defer f.Close(context.Background())
	post := func(ct, body string) (int, map[string]string) {
		resp, err := http.Post(f.URL()+"/q1", ct, strings.NewReader(body))
		require.NoError(t, err)
		defer resp.Body.Close()
		var ans map[string]string
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&ans))
		mu.Lock() // what the handler wrote is read below
		defer mu.Unlock()
		return resp.StatusCode, ans
	}
	form := "application/x-www-form-urlencoded"
	code, ans := post(form, "task.url=http%3A%2F%2F127.0.0.1%3A1%2Fw&task.countdown=30&n=1")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "scheduled", ans["status"])
	require.Len(t, got, 1)
	require.Equal(t, ans["id"], got[0].ID)
	require.Equal(t, peerTask{ID: ans["id"], Queue: "q1", URL: "http://127.0.0.1:1/w", ContentType: form, Body: []byte("n=1")}, got[0])
	require.InDelta(t, 30, dues[0].Seconds(), 1)

	code, _ = post("application/json", `{"url": "http://127.0.0.1:1/w", "countdown": 2.5, "params": {"a": "b"}}`)
	require.Equal(t, http.StatusOK, code)
	require.InDelta(t, 2.5, dues[1].Seconds(), 1)
	require.Equal(t, "a=b", string(got[1].Body))

	for body, field := range map[string]string{
		"n=1": "task.url",
		"task.url=http%3A%2F%2F127.0.0.1%3A1%2Fw&task.countdown=soon": "task.countdown",
		"task.url=http%3A%2F%2F127.0.0.1%3A1%2Fw&task.countdown=-1":   "task.countdown",
		`{"url": "http://127.0.0.1:1/w", "countdown": -3}`:            "countdown",
	} {
		code, ans := post(form, body)
		require.Equal(t, http.StatusBadRequest, code, body)
		require.Equal(t, field, ans["field"], body)
	}
	mu.Lock()
	fail = true
	mu.Unlock()
	code, ans = post(form, "task.url=http%3A%2F%2F127.0.0.1%3A1%2Fw")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Contains(t, ans["error"], "full")
	require.Len(t, got, 2)
}

// Every peer is in AllTargets, after Miyamoto's own, so that the default run and
// the command's -targets know them.
func TestPeerTargetsListed(t *testing.T) {
	require.Equal(t, append(slices.Clone(OwnTargets), PeerTargets...), AllTargets)
	require.Subset(t, AllTargets, []string{TargetAsynq, TargetAsynqAOF, TargetRiver, TargetRiverFsync})
}
