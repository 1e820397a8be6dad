package bench

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/bench/readme"
)

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// miyamotoBinary builds cmd/miyamoto once per test binary.
func miyamotoBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "miyamoto-bench-bin-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "miyamoto")
		if out, err := exec.Command("go", "build", "-o", builtBin, "github.com/miyamotohq/miyamoto/cmd/miyamoto").CombinedOutput(); err != nil {
			buildErr = err
			t.Logf("%s", out)
		}
	})
	require.NoError(t, buildErr)
	return builtBin
}

// The memory benchmark's plumbing on a small load: every task acknowledged and held,
// memory read, and with storage every task back after the restart; also with the
// flight recorder (its log streamed through the recorder's storage at the restart).
func TestRunMemory(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the memory benchmark reads /proc")
	}
	bin := miyamotoBinary(t)
	for _, record := range []string{"", "1MB"} {
		t.Run("record="+record, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			rep, err := RunMemory(ctx, MemoryConfig{Binary: bin, Tasks: 2000, Durable: true, Clients: 16, RecordSize: record})
			require.NoError(t, err)
			require.Equal(t, 2000, rep.Acked)
			require.Positive(t, rep.RSSBefore)
			require.Greater(t, rep.HeapAfter, rep.HeapBefore, "2,000 tasks take some heap")
			require.Less(t, rep.HeapPerTask(), 64*1024.0, "far too much heap per task")
			require.Equal(t, 2000, rep.RestartedTasks, "the restarted node holds every task")
			require.Positive(t, rep.Restart)
			require.Positive(t, rep.RSSPeakRestarted)
			require.NotEmpty(t, rep.SampleID)
		})
	}
}

// BenchmarkMemoryPerTask enqueues MIYAMOTO_MEMORY_TASKS (default 1,000,000) tasks
// due in 30 days into one `serve` process, in memory and with storage, and reports
// its resident set and heap growth per task, and (with storage) how long a restart
// takes until the node serves a task it held. With MIYAMOTO_MEMORY_RECORD set to a
// --record-size, it runs a third time with storage and the flight recorder:
//
//	go test -run '^$' -bench MemoryPerTask -benchtime 1x -timeout 60m ./bench/
func BenchmarkMemoryPerTask(b *testing.B) {
	if runtime.GOOS != "linux" {
		b.Skip("the memory benchmark reads /proc")
	}
	tasks := 1_000_000
	if v := os.Getenv("MIYAMOTO_MEMORY_TASKS"); v != "" {
		n, err := strconv.Atoi(v)
		require.NoError(b, err, "MIYAMOTO_MEMORY_TASKS")
		tasks = n
	}
	bin := miyamotoBinary(b)
	type memoryRun struct {
		name       string
		durable    bool
		recordSize string // --record-size; "": no flight recorder
	}
	runs := []memoryRun{{"memory", false, ""}, {"storage", true, ""}}
	if size := os.Getenv("MIYAMOTO_MEMORY_RECORD"); size != "" {
		runs = append(runs, memoryRun{"storage-recorded", true, size})
	}
	for _, run := range runs {
		durable := run.durable
		b.Run(run.name, func(b *testing.B) {
			for b.Loop() {
				rep, err := RunMemory(context.Background(), MemoryConfig{Binary: bin, Tasks: tasks, Durable: durable, RecordSize: run.recordSize})
				require.NoError(b, err)
				require.Equal(b, tasks, rep.Acked)
				b.ReportMetric(rep.RSSPerTask(), "rss-B/task")
				b.ReportMetric(rep.HeapPerTask(), "heap-B/task")
				b.ReportMetric(float64(tasks)/rep.Enqueue.Seconds(), "enqueues/s")
				b.ReportMetric(float64(rep.RSSAfter)/(1<<20), "rss-MiB")
				if durable {
					b.ReportMetric(rep.Restart.Seconds(), "restart-s")
					b.ReportMetric(float64(rep.RSSRestarted)/(1<<20), "rss-restarted-MiB")
					b.ReportMetric(float64(rep.RSSPeakRestarted)/(1<<20), "rss-peak-restarted-MiB")
					require.Equal(b, tasks, rep.RestartedTasks)
				}
			}
		})
	}
}

// The README's command for the memory benchmark runs as written (from the
// repository's root), on 5,000 tasks instead of a million (MIYAMOTO_MEMORY_TASKS),
// and reports every figure the README quotes.
func TestREADMEMemoryBenchmark(t *testing.T) {
	if testing.Short() {
		t.Skip("runs two serve processes")
	}
	if runtime.GOOS != "linux" {
		t.Skip("the memory benchmark reads /proc")
	}
	command, err := readme.BlockAfter("../README.md", "\n### Memory per task\n")
	require.NoError(t, err)
	require.Equal(t, `go test -run '^$' -bench MemoryPerTask -benchtime 1x -timeout 60m ./bench/`, command)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", command)
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "MIYAMOTO_MEMORY_TASKS=5000")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	for _, unit := range []string{"rss-B/task", "heap-B/task", "enqueues/s", "restart-s", "rss-peak-restarted-MiB"} {
		require.Contains(t, string(out), unit)
	}
	t.Logf("%s", out)
}
