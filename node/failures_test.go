package node

import (
	"math/bits"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// countOf counts the failures of attempts as, one by one, as a replica that sees
// them would.
func countOf(as ...uint64) failureCount {
	var c failureCount
	for _, a := range as {
		c, _ = c.add(a)
	}
	return c
}

// Counts merge by union: {1,3} and {2,3} are three failures (a max of the counts
// says two), the same failure known on both sides is counted once, and a merge is
// the same either way round and never less than either count.
func TestFailureCountsMergeByUnion(t *testing.T) {
	cases := []struct {
		name string
		a, b failureCount
		want failureCount
	}{
		{"{1,3} and {2,3}", countOf(1, 3), countOf(2, 3), failureCount{3, 3, 0b111}},
		{"the same failures", countOf(1, 2), countOf(1, 2), failureCount{2, 2, 0b11}},
		{"apart", countOf(1), countOf(2), failureCount{2, 2, 0b11}},
		{"nothing and {4}", failureCount{}, countOf(4), failureCount{1, 4, 1}},
		{"windows apart", countOf(1, 2), countOf(100), failureCount{3, 100, 1}},
		{"one inside the other's window, one below it", countOf(1, 70), countOf(7, 70), failureCount{3, 70, 1 | 1<<63}},
		// An older build's count: Failed 0 merges with max, as it did.
		{"older build, none located", failureCount{retries: 3}, countOf(1, 2), failureCount{3, 2, 0b11}},
		{"older build, none located, less", failureCount{retries: 1}, countOf(1, 2), failureCount{2, 2, 0b11}},
		// An older build's count that says its highest failure: that one merges
		// exactly, the total with max.
		{"older build, highest located", failureCount{retries: 2, failed: 3}, countOf(2), failureCount{2, 3, 0b11}},
		{"older build, total above", failureCount{retries: 5, failed: 3}, countOf(2), failureCount{5, 3, 0b11}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ab, ba := c.a.merge(c.b), c.b.merge(c.a)
			require.Equal(t, c.want, ab)
			require.Equal(t, c.want, ba, "the same either way round")
			require.Equal(t, ab, ab.merge(c.a), "merging again what it holds changes nothing")
			require.GreaterOrEqual(t, ab.retries, max(c.a.retries, c.b.retries))
		})
	}
}

// A failure of an attempt below the highest known one is counted when it is inside
// the window and not counted yet; once, however often it is reported.
func TestLateFailureBelowTheHighestIsCounted(t *testing.T) {
	c := countOf(3)
	c, counted := c.add(2)
	require.True(t, counted, "attempt 2 failed after attempt 3 was known to")
	require.Equal(t, failureCount{2, 3, 0b11}, c)
	c, counted = c.add(2)
	require.False(t, counted, "counted already")
	c, counted = c.add(3)
	require.False(t, counted, "counted already")
	require.Equal(t, 2, c.retries)
}

// The window moves up with the highest failed attempt; failures that fall off its
// bottom stay counted, unlocated, and a failure reported below the window is not
// counted (it may be one of them).
func TestFailureWindowShifts(t *testing.T) {
	c := countOf(1, 2)
	c, _ = c.add(65)
	require.Equal(t, failureCount{3, 65, 1 | 1<<63}, c, "attempt 2 is the window's bottom, attempt 1 fell off")
	c, counted := c.add(1)
	require.False(t, counted, "below the window: may be counted already")
	c, counted = c.add(3)
	require.True(t, counted, "inside the window")
	require.Equal(t, failureCount{4, 65, 1 | 1<<62 | 1<<63}, c)
	c, _ = c.add(1000)
	require.Equal(t, failureCount{5, 1000, 1}, c, "all the others fell off, still counted")
}

// A count never exceeds the failures it stands for, and inside its window it is
// exact: replicas that see failures and merge each other's counts, at random,
// compared with the sets of failures they know (the seed is printed on failure).
func TestFailureCountsNeverOverCount(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 0))
	for run := range 300 {
		const replicas = 4
		var counts [replicas]failureCount
		var known [replicas]map[uint64]bool
		for i := range known {
			known[i] = map[uint64]bool{}
		}
		span := uint64(20 + rng.IntN(200)) // some runs stay inside one window, others leave it
		for range 200 {
			i := rng.IntN(replicas)
			if rng.IntN(3) == 0 {
				a := 1 + rng.Uint64N(span)
				counts[i], _ = counts[i].add(a)
				known[i][a] = true
			} else {
				j := rng.IntN(replicas)
				counts[i] = counts[i].merge(counts[j])
				for a := range known[j] {
					known[i][a] = true
				}
			}
			c, s := counts[i], known[i]
			require.LessOrEqual(t, c.retries, len(s), "seed %d run %d: over-counted", seed, run)
			require.LessOrEqual(t, c.retries-bits.OnesCount64(c.bits), below(s, c.failed), "seed %d run %d: more unlocated failures than below the window", seed, run)
			for k := range uint64(failureWindow) {
				if k < c.failed {
					require.Equal(t, s[c.failed-k], c.bits&(1<<k) != 0, "seed %d run %d: attempt %d", seed, run, c.failed-k)
				}
			}
		}
	}
}

// below is how many failures of s lie below the window whose top is failed: at most
// that many may be counted unlocated.
func below(s map[uint64]bool, failed uint64) int {
	n := 0
	for a := range s {
		if failed >= failureWindow && a <= failed-failureWindow {
			n++
		}
	}
	return n
}

// A count says which attempts failed: those it locates (an older build's count, only
// its highest), so that a release reporting a late failure moves the backoff too.
func TestFailureCountLocates(t *testing.T) {
	c := countOf(1, 3)
	for a, want := range map[uint64]bool{0: false, 1: true, 2: false, 3: true, 4: false} {
		require.Equal(t, want, c.locates(a), "attempt %d", a)
	}
	old := failureCount{retries: 2, failed: 3}
	require.True(t, old.locates(3))
	require.False(t, old.locates(2), "an older build's count locates its highest failure only")
	require.False(t, countOf(1, 100).locates(1), "below the window")
}
