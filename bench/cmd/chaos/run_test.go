package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
	buildDir  string
)

// testBinary builds cmd/miyamoto once for the tests of this package.
func testBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("starts real miyamoto processes")
	}
	buildOnce.Do(func() {
		buildDir, buildErr = mkdirTemp()
		if buildErr != nil {
			return
		}
		builtBin = filepath.Join(buildDir, "miyamoto")
		out, err := exec.Command("go", "build", "-o", builtBin, "github.com/miyamotohq/miyamoto/cmd/miyamoto").CombinedOutput()
		if err != nil {
			buildErr = errors.New(string(out))
		}
	})
	require.NoError(t, buildErr)
	return builtBin
}

func testConfig(t *testing.T, kinds []FaultKind, d time.Duration) (Config, *strings.Builder) {
	out := &strings.Builder{}
	return Config{Nodes: 3, Seed: 5, Duration: d, Rate: 10, Lease: 3 * time.Second, Drift: 200 * time.Millisecond,
		ReplicaOffset: time.Second, Kinds: kinds, FailRate: 0.05, MaxCountdown: 2, Drain: 60 * time.Second,
		Binary: testBinary(t), Out: out, Log: out, tmpRoot: t.TempDir()}, out
}

// requireAllGone checks that no process the run started is alive.
func requireAllGone(t *testing.T, c *Cluster) {
	t.Helper()
	require.NotNil(t, c)
	pids := c.PIDs()
	require.Len(t, pids, c.Len())
	for _, pid := range pids {
		require.ErrorIs(t, syscall.Kill(pid, 0), syscall.ESRCH, "pid %d still exists", pid)
	}
}

// A short run under a kill, a pause and an isolation passes, every fault of the
// schedule is injected, the killed node was restarted, and no process is left.
func TestRunEndToEnd(t *testing.T) {
	cfg, out := testConfig(t, []FaultKind{KindKill, KindPause, KindIsolate}, 20*time.Second)
	var cluster *Cluster
	cfg.onCluster = func(c *Cluster) { cluster = c }
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	report, err := Run(ctx, cfg)
	require.NoError(t, err, out.String())
	require.False(t, report.Failed(), out.String())
	require.Greater(t, report.Acked, 100, out.String())
	require.GreaterOrEqual(t, report.Delivered, report.Acked*9/10, out.String())
	schedule := cfg.schedule()
	require.Len(t, schedule, report.Faults, out.String())
	require.Contains(t, out.String(), "replay: go run ./bench/cmd/chaos --nodes 3 --seed 5 ")
	require.NotContains(t, out.String(), "kept in", "a passing run cleans up its directory")
	starts := cluster.Starts()
	for _, f := range schedule {
		if f.Kind == KindKill {
			require.GreaterOrEqual(t, starts[f.Nodes[0]], 2, "the killed node restarted: %v", starts)
		}
	}
	requireAllGone(t, cluster)
}

// A replace under load: the dead node is never started again, the new one joined
// (the load and the drain then use it), the run passes and leaves no process.
func TestRunReplace(t *testing.T) {
	cfg, out := testConfig(t, []FaultKind{KindReplace}, 25*time.Second)
	var cluster *Cluster
	cfg.onCluster = func(c *Cluster) { cluster = c }
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	report, err := Run(ctx, cfg)
	require.NoError(t, err, out.String())
	require.False(t, report.Failed(), out.String())
	schedule := cfg.schedule()
	require.Len(t, schedule, 1)
	require.Equal(t, 1, report.Faults, out.String())
	f := schedule[0]
	starts := cluster.Starts()
	require.Equal(t, 1, starts[f.Nodes[0]], "the replaced node stays dead: %v", starts)
	require.Equal(t, 1, starts[f.Joiner], "the new node started once: %v", starts)
	members := cluster.Members()
	require.Len(t, members, 3)
	require.Contains(t, members, f.Joiner)
	require.NotContains(t, members, f.Nodes[0])
	require.Contains(t, out.String(), "replace: "+nodeName(f.Nodes[0])+" removed")
	requireAllGone(t, cluster)
}

// An interrupted run stops its load and nemesis, kills every node and says so.
func TestRunInterrupted(t *testing.T) {
	cfg, out := testConfig(t, []FaultKind{KindPause}, time.Minute)
	var cluster *Cluster
	cfg.onCluster = func(c *Cluster) { cluster = c }
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Second)
	defer cancel()
	start := time.Now()
	_, err := Run(ctx, cfg)
	require.ErrorContains(t, err, "interrupted", out.String())
	require.Less(t, time.Since(start), 45*time.Second, "the run ends soon after the interrupt")
	requireAllGone(t, cluster)
}

func mkdirTemp() (string, error) { return os.MkdirTemp("", "miyamoto-chaos-test-") }

// TestMain removes the binary built for the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}
