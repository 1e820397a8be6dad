package bench

import (
	"runtime"
	"sync"
	"testing"
	"time"
)

// TestProcessRunQueueWait: with more threads spinning than the machine has CPUs,
// the kernel keeps some of them waiting, and processRunQueueWait sees it.
func TestProcessRunQueueWait(t *testing.T) {
	if processRunQueueWait() == 0 {
		t.Skip("no /proc/self/task/*/schedstat on this kernel")
	}
	spinners := 2*runtime.NumCPU() + 2
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(spinners))
	const spin = 200 * time.Millisecond
	before := processRunQueueWait()
	var wg sync.WaitGroup
	for range spinners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			for end := time.Now().Add(spin); time.Now().Before(end); {
			}
		}()
	}
	wg.Wait()
	waited := processRunQueueWait() - before
	// At least spinners-NumCPU threads wait for the whole spin, less the kernel's
	// slack; half of one spin is far below that.
	t.Logf("%d threads spinning %v on %d CPUs waited %v on the run queues", spinners, spin, runtime.NumCPU(), waited)
	if waited < spin/2 {
		t.Errorf("%d threads spinning %v on %d CPUs waited %v on the run queues in all, want at least %v", spinners, spin, runtime.NumCPU(), waited, spin/2)
	}
}
