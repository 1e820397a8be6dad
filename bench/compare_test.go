package bench

import (
	"context"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/net/recorder"
)

// TestCompareSmoke runs the comparison of Miyamoto's targets with a tiny load and checks the tool's
// own bookkeeping: on every target, every acknowledged task reached the sink exactly
// once, and nothing else did.
func TestCompareSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts servers and three in-process nodes: skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rep, _ := compareLogged(t, ctx, CompareConfig{
		Targets:      OwnTargets,
		Load:         LoadConfig{Mode: ModeClosed, Concurrency: 4, Duration: time.Second},
		DrainTimeout: 15 * time.Second,
		Settle:       300 * time.Millisecond,
	})
	for _, res := range rep.Results {
		require.Positive(t, res.Load.Acked, res.Target)
		require.Zero(t, res.Load.ErrorCount(), "%s: %v", res.Target, res.Load.Errors)
		require.Equal(t, res.Load.Sent, res.Load.Acked, res.Target)
		require.Zero(t, res.Missing, "%s: acknowledged tasks never delivered", res.Target)
		require.Equal(t, res.Load.Acked, res.Delivered, res.Target)
		require.Zero(t, res.Duplicates, "%s: tasks delivered twice", res.Target)
		require.Zero(t, res.Unacked, "%s: tasks delivered that were not acknowledged", res.Target)
		require.Equal(t, res.Load.Acked, res.Sink.Total, res.Target)
		require.Positive(t, res.DeliveredRate, res.Target)
		require.False(t, res.Ratio != res.Ratio, "%s: no ratio to the baseline", res.Target)
		if runtime.GOOS == "linux" {
			require.Positive(t, res.CPUPerTask, "%s: no CPU time per task", res.Target)
		}
	}
}

// Rounds: every target runs that many times and the median round is reported.
func TestCompareRounds(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rep, err := Compare(ctx, CompareConfig{
		Targets:      []string{TargetBaseline, TargetSingle},
		Load:         LoadConfig{Mode: ModeClosed, Concurrency: 4, Duration: 200 * time.Millisecond},
		DrainTimeout: 15 * time.Second,
		Settle:       -1,
		Rounds:       3,
	})
	require.NoError(t, err)
	require.Len(t, rep.Results, 2)
	for _, res := range rep.Results {
		require.Equal(t, 3, res.Rounds, res.Target)
		require.Len(t, res.RoundRates, 3, res.Target)
		require.IsNonDecreasing(t, res.RoundRates, res.Target)
		require.Equal(t, res.RoundRates[1], res.DeliveredRate, "%s: the median round is reported", res.Target)
	}
	single, _ := rep.Result(TargetSingle)
	require.Len(t, single.RoundRatios, 3)
	require.Contains(t, single.RoundRatios, single.PairedRatio, "the median of the rounds' ratios")
	base, _ := rep.Result(TargetBaseline)
	require.Empty(t, base.RoundRatios, "the baseline against itself says nothing")
	var out strings.Builder
	require.NoError(t, rep.WriteTable(&out))
	require.Contains(t, out.String(), "single: against the baseline in the same round, round by round: ")
}

// A round's ratio is to the baseline of that round, in the order run, whatever
// order the rates sort in.
func TestRoundRatiosPairRounds(t *testing.T) {
	rates := func(vs ...float64) []Result {
		rs := make([]Result, len(vs))
		for i, v := range vs {
			rs[i] = Result{DeliveredRate: v}
		}
		return rs
	}
	require.Equal(t, []float64{0.5, 0.9, 0.75}, roundRatios(rates(50, 180, 75), rates(100, 200, 100)))
	require.Nil(t, roundRatios(rates(50, 180), rates(100, 200, 100)), "a round missing")
	require.Nil(t, roundRatios(rates(50), rates(0)), "a baseline that delivered nothing")
	require.Nil(t, roundRatios([]Result{{Skipped: "no redis-server"}}, rates(100)))
}

// An open loop against the relay: requests start at the rate asked, and every
// acknowledged one is forwarded to the sink with its form fields.
func TestRunLoadOpenThroughRelay(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sink, err := StartSink()
	require.NoError(t, err)
	defer sink.Close()
	relay, err := StartRelay(RelayConfig{})
	require.NoError(t, err)
	defer relay.Close(context.Background())

	lr, err := RunLoad(ctx, LoadConfig{Target: relay.URL(), WorkerURL: sink.URL() + "/work", Mode: ModeOpen,
		Rate: 400, Duration: 500 * time.Millisecond, Countdown: 5 * time.Second, Payload: 10})
	require.NoError(t, err)
	require.Equal(t, 200, lr.Sent+lr.Shed)
	require.Equal(t, lr.Sent, lr.Acked, "%v", lr.Errors)
	require.GreaterOrEqual(t, lr.Elapsed, 490*time.Millisecond)
	require.Positive(t, lr.P50)
	require.LessOrEqual(t, lr.P50, lr.P99)
	require.LessOrEqual(t, lr.P99, lr.Max)
	require.Zero(t, sink.WaitFor(ctx, lr.IDs(), 10*time.Second))
	st := sink.Stats()
	require.Equal(t, lr.Acked, st.Distinct)
	require.Zero(t, st.Duplicates)
	// The relay counts a forward once it has read the sink's answer.
	require.Eventually(t, func() bool { return relay.Stats().Forwarded == int64(lr.Acked) }, 5*time.Second, 5*time.Millisecond)
}

// Requests an open loop cannot start because MaxInFlight are due and unanswered
// (two sent, three waiting for a client) are shed, not queued.
func TestRunLoadOpenSheds(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			return // the warm-up's /healthz
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
		w.Write([]byte(`{"status": "scheduled", "id": "x"}`))
	}))
	defer slow.Close()
	time.AfterFunc(400*time.Millisecond, func() { close(release) })
	lr, err := RunLoad(ctx, LoadConfig{Target: slow.URL, WorkerURL: "http://127.0.0.1:1/work", Mode: ModeOpen,
		Rate: 200, Duration: 250 * time.Millisecond, MaxInFlight: 5, Connections: 2})
	require.NoError(t, err)
	require.Equal(t, 5, lr.Sent)
	require.Equal(t, 45, lr.Shed)
	require.Equal(t, 5, lr.Acked)
}

// A closed loop counts errors by status and keeps going.
func TestRunLoadClosedCountsErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		if r.PostForm.Get("task.url") != "http://127.0.0.1:1/work" {
			http.Error(w, "no task.url", http.StatusBadRequest)
			return
		}
		if strings.HasSuffix(r.PostForm.Get("n"), "3") {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		if strings.HasSuffix(r.PostForm.Get("n"), "7") {
			w.Write([]byte(`{"status": "nope"}`))
			return
		}
		n.Add(1)
		w.Write([]byte(`{"status": "scheduled", "id": "x"}`))
	}))
	defer srv.Close()
	lr, err := RunLoad(ctx, LoadConfig{Target: srv.URL, WorkerURL: "http://127.0.0.1:1/work", Mode: ModeClosed,
		Concurrency: 1, Duration: 200 * time.Millisecond})
	require.NoError(t, err)
	require.Greater(t, lr.Sent, 20)
	require.Equal(t, lr.Sent, lr.Acked+lr.ErrorCount())
	require.Equal(t, lr.Sent/10+boolInt(lr.Sent%10 > 3), lr.Errors["503"])
	require.Equal(t, lr.Sent/10+boolInt(lr.Sent%10 > 7), lr.Errors["bad-answer"])
	require.Equal(t, int(n.Load()), lr.Acked)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestLoadConfigReportsEveryProblem(t *testing.T) {
	_, err := RunLoad(context.Background(), LoadConfig{Mode: "fast", Duration: -1, Countdown: -1})
	require.Error(t, err)
	for _, field := range []string{"Target", "WorkerURL", "Mode", "Duration", "Countdown"} {
		require.Contains(t, err.Error(), field+":")
	}
	_, err = Compare(context.Background(), CompareConfig{Targets: []string{"single", "mars", "single"},
		Load: LoadConfig{Mode: ModeOpen, Duration: time.Second}})
	require.ErrorContains(t, err, `unknown target "mars"`)
	require.ErrorContains(t, err, `"single" is listed twice`)
	require.ErrorContains(t, err, "Rate:")
}

// compareLogged runs cfg, logs its table, and requires it to succeed with one result
// per target; it returns the report and the table.
func compareLogged(t *testing.T, ctx context.Context, cfg CompareConfig) (Report, string) {
	t.Helper()
	var progress strings.Builder
	if cfg.Progress == nil {
		cfg.Progress = &progress
	}
	rep, err := Compare(ctx, cfg)
	var table strings.Builder
	rep.WriteTable(&table)
	t.Logf("\n%s", table.String())
	require.NoError(t, err, progress.String())
	require.Len(t, rep.Results, len(cfg.Targets))
	return rep, table.String()
}

// The -record targets run every node with its flight recorder: each node's
// directory holds a recording while the target runs.
func TestRecordTargetsRecord(t *testing.T) {
	for _, name := range RecordTargets {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			s, err := startTarget(ctx, name, CompareConfig{ShutdownTimeout: 5 * time.Second})
			require.NoError(t, err)
			defer s.close(context.Background())
			require.Len(t, s.recordDirs, len(s.urls))
			for _, dir := range s.recordDirs {
				require.True(t, recorder.IsRecording(dir), "%s holds no recording", dir)
			}
		})
	}
}

// Rounds sort by delivered rate; in an open loop with a countdown, by lateness,
// whatever decimals the rates differ in.
func TestSortRoundsByLatenessInAnOpenLoop(t *testing.T) {
	rs := []Result{{DeliveredRate: 417.2, LateP99: 9 * time.Millisecond, HasLateness: true}, {DeliveredRate: 416.9, LateP99: 2 * time.Millisecond, HasLateness: true},
		{DeliveredRate: 417.0, LateP99: 5 * time.Millisecond, HasLateness: true}}
	sortRounds(rs, ModeOpen)
	require.Equal(t, []time.Duration{2 * time.Millisecond, 5 * time.Millisecond, 9 * time.Millisecond}, []time.Duration{rs[0].LateP99, rs[1].LateP99, rs[2].LateP99})
	sortRounds(rs, ModeClosed)
	require.Equal(t, []float64{416.9, 417.0, 417.2}, []float64{rs[0].DeliveredRate, rs[1].DeliveredRate, rs[2].DeliveredRate}, "a closed loop: by rate")
}
