package node

import "math/bits"

// failureWindow is how many attempts a failure count locates, down from its highest
// failed one: one bit of failureCount.bits each.
const failureWindow = 64

// failureCount is a count of a task's failed deliveries (a delivery that failed, or a
// lease that ran out with no outcome), as one replica knows them: retries in all, of
// which those at attempts failed−63 … failed are located in bits (bit i: attempt
// failed−i failed). Replicas learn failures apart and merge their counts (Release,
// ClaimResp, Outcome, a task given back), so a count must merge without loss.
//
// Invariants:
//   - bit 0 is set iff failed > 0, and popcount(bits) ≤ retries;
//   - the failures retries counts but bits does not locate happened at attempts below
//     the window (below failed−63): so a failure inside the window is counted exactly;
//   - a count never exceeds the failures it stands for (a lower bound, exact inside
//     the window), and a merge is never less than either count.
//
// A count from an older build (Failed 0, or no bits; only from a log an older build
// wrote, as the wire speaks one version) locates at most its highest failure; the
// rest of its total may lie inside the window (see merge), and a failure reported
// there later may be one of them and be counted again: the one way a count may
// exceed the failures it stands for, for the tasks an upgrade finds running.
type failureCount struct {
	retries int
	failed  uint64
	bits    uint64
}

// located reports whether c is a count of this build: consistent bits (an older
// build's count, or a damaged one, is not).
func (c failureCount) located() bool {
	return c.failed > 0 && c.bits&1 != 0 && bits.OnesCount64(c.bits) <= c.retries
}

// exactPart is the part of c that merges exactly: c itself, or of an older build's
// count only its highest failure (its total merges with max).
func (c failureCount) exactPart() failureCount {
	switch {
	case c.retries <= 0:
		return failureCount{}
	case c.located():
		return c
	case c.failed > 0:
		return failureCount{retries: 1, failed: c.failed, bits: 1}
	}
	return failureCount{}
}

// locates reports whether c says that attempt a failed (an older build's count says
// it of its highest failure only).
func (c failureCount) locates(a uint64) bool {
	x := c.exactPart()
	return a != 0 && a <= x.failed && x.failed-a < failureWindow && x.bits&(1<<(x.failed-a)) != 0
}

// windowAt is c's bits seen from a window whose top is top ≥ c.failed: failures that
// fall below it are dropped (they stay in retries, unlocated).
func (c failureCount) windowAt(top uint64) uint64 {
	if top-c.failed >= failureWindow {
		return 0
	}
	return c.bits << (top - c.failed)
}

// add counts the failure of attempt a, and reports whether it was counted.
func (c failureCount) add(a uint64) (failureCount, bool) {
	switch {
	case a == 0:
		return c, false
	case a > c.failed:
		// Above the window: move it up to a. Failures that fall off its bottom stay
		// counted, unlocated.
		c.bits, c.failed = c.windowAt(a)|1, a
	case c.failed-a >= failureWindow:
		// Below the window: it may be counted already, unlocated; cannot tell, so not
		// counted (a count is a lower bound).
		return c, false
	case c.bits&(1<<(c.failed-a)) != 0:
		return c, false // counted already
	default:
		// Inside the window and not located: not counted (unlocated failures are
		// below the window), so count it.
		c.bits |= 1 << (c.failed - a)
	}
	c.retries++
	return c, true
}

// merge returns the count of the failures c or o counts.
//
// Both windows move to the higher top; the located failures are the union of both
// (each once); the unlocated ones, all below the window, may be the same failures on
// both sides, so the larger number of them counts. Merging with max alone would lose
// failures: two replicas that know failures {1,3} and {2,3} both count 2, and the
// next holder would wait the backoff of 2 when 3 happened.
//
// A count from an older build merges its located part so (its highest failure, if it
// says) and its total with max, as older builds did: never more than it stands for.
func (c failureCount) merge(o failureCount) failureCount {
	x, y := c.exactPart(), o.exactPart()
	top := max(x.failed, y.failed)
	xb, yb := x.windowAt(top), y.windowAt(top)
	union := xb | yb
	unlocated := max(x.retries-bits.OnesCount64(xb), y.retries-bits.OnesCount64(yb))
	return failureCount{
		retries: max(bits.OnesCount64(union)+unlocated, c.retries, o.retries),
		failed:  top,
		bits:    union,
	}
}

// failures is e's count of failed deliveries.
func (e *entry) failures() failureCount {
	return failureCount{retries: e.retries, failed: e.failed, bits: e.failedBits}
}

func (e *entry) setFailures(c failureCount) {
	if c == e.failures() {
		return // most tasks never fail: keep them without an entryExtra
	}
	x := e.ext()
	x.retries, x.failed, x.failedBits = c.retries, c.failed, c.bits
}

// countFailure counts the failure of attempt a (a delivery that failed, or a lease
// that ran out with no outcome) once, and reports whether it was counted (see
// failureCount.add: not when a is counted already, or is below the window).
func (e *entry) countFailure(a uint64) bool {
	c, counted := e.failures().add(a)
	e.setFailures(c)
	return counted
}

// mergeFailures merges a count of failures known elsewhere (see failureCount.merge)
// into e's, and reports whether e's count rose.
func (e *entry) mergeFailures(c failureCount) bool {
	before := e.retries
	e.setFailures(e.failures().merge(c))
	return e.retries > before
}

// failuresOf is the failure count a message carries.
func failuresOf(m *Message) failureCount {
	return failureCount{retries: m.Retries, failed: m.Failed, bits: m.FailedBits}
}

// recordedFailures is the failure count a record carries.
func recordedFailures(r *Record) failureCount {
	return failureCount{retries: r.Retries, failed: r.Failed, bits: r.FailedBits}
}

// withFailures returns m carrying count c.
func (m Message) withFailures(c failureCount) Message {
	m.Retries, m.Failed, m.FailedBits = c.retries, c.failed, c.bits
	return m
}

// withFailures returns r carrying count c.
func (r Record) withFailures(c failureCount) Record {
	r.Retries, r.Failed, r.FailedBits = c.retries, c.failed, c.bits
	return r
}
