package bench

import (
	"context"
	"runtime/pprof"
	"testing"
)

// labelled runs its function under the profiler label bench=role, which the
// goroutines it starts inherit (what go tool pprof -tags splits a profile by).
func TestLabelledSetsTheRole(t *testing.T) {
	for _, role := range []string{roleLoad, roleSink, roleTarget} {
		ran := false
		labelled(context.Background(), role, func(ctx context.Context) {
			ran = true
			if got, ok := pprof.Label(ctx, "bench"); !ok || got != role {
				t.Errorf("label bench = %q (set: %v), want %q", got, ok, role)
			}
		})
		if !ran {
			t.Fatalf("labelled(%q) did not run its function", role)
		}
	}
}
