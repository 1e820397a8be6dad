package main

import (
	"fmt"
	"net/url"
	"os/exec"
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
