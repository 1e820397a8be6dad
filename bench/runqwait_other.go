//go:build !linux

package bench

import "time"

// processRunQueueWait is 0 where the kernel does not tell it.
func processRunQueueWait() time.Duration { return 0 }
