//go:build !linux

package bench

import "time"

// threadCPU is the CPU time the calling thread has used; read on Linux only.
func threadCPU() time.Duration { return 0 }
