package bench

import (
	"os"
	"strconv"
	"strings"
	"time"
)

// processRunQueueWait is the time this process's threads have spent so far
// runnable but waiting for a CPU on the kernel's run queues (the second field of
// each /proc/self/task/*/schedstat), or 0 when it cannot be read. It is the share
// of a run the machine did not give the process: on a machine shared with other
// work a slow round shows it (a stall that is the process's own does not), and the
// execution tracer cannot, since a goroutine whose thread the kernel set aside
// still shows as running. A thread that exited takes its share with it; Go keeps
// its threads, so a run loses none that matters.
func processRunQueueWait() time.Duration {
	const dir = "/proc/self/task/"
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	var total time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(dir + t.Name() + "/schedstat")
		if err != nil {
			continue // it exited since
		}
		f := strings.Fields(string(b))
		if len(f) < 2 {
			return 0
		}
		ns, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return 0
		}
		total += time.Duration(ns)
	}
	return total
}
