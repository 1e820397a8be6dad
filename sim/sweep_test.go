package sim

import (
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestD1NegativeControl is D1's negative control: a run that lets a random draw the
// seed does not decide (the process-wide source, not one split from the seed) reach
// its trace is nondeterministic, and a sweep with CheckDeterminism must name every
// such seed and fail; the same sweep without the slip finds every seed deterministic.
// (A map's iteration order would do too, but two orders of a small map agree a few
// times in a hundred: the test would be flaky.)
func TestD1NegativeControl(t *testing.T) {
	sc := mustParse(t, validScenario)
	seeds := SeedRange(1, 5)

	sum, err := Sweep(sc, SweepOptions{Seeds: seeds, CheckDeterminism: true, Parallel: 2})
	require.NoError(t, err)
	require.Empty(t, sum.Nondeterministic, "without the slip every seed is deterministic")
	require.True(t, sum.Met())

	testTraceNote = func() string { return strconv.FormatUint(rand.Uint64(), 16) } // the slip
	t.Cleanup(func() { testTraceNote = nil })
	sum, err = Sweep(sc, SweepOptions{Seeds: seeds, CheckDeterminism: true, Parallel: 2})
	require.NoError(t, err)
	require.Equal(t, seeds, sum.Nondeterministic, "CheckDeterminism must name every seed whose two runs differ (D1)")
	require.False(t, sum.Met(), "a nondeterministic sweep does not meet its expectation")
}
