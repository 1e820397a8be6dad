// Package sim runs a cluster of node.Node state machines in virtual time, on one
// event loop, with every random choice drawn from one seed: the network (latency,
// drop, duplication, reordering, partitions), crashes, restarts and pauses, clock
// offsets and drift, simulated workers and the workload. After every event that could
// break one, a checker verifies the safety invariants S1–S5 of DESIGN.md; at the end
// it verifies L1 and L2. Simulated clients may look tasks up (workload.lookups), and
// V1 judges every answer against the world (lookup.go). Runs write JSON Lines traces that Replay re-runs event for
// event, and the same seed and build always give the same trace (D1).
//
// A run has a safety phase (Scenario.Duration) in which faults happen, then a
// liveness phase in which faults stop, the network heals, crashed nodes restart and
// paused ones resume; it ends once every acknowledged task is final and a settling
// time has passed, or at Scenario.LivenessBound.
//
// For the people who study failures: Sweep's Summaries become a JUnit XML or JSON
// report for CI (report.go); Shrink searches for a smaller scenario that still
// violates an invariant (shrink.go); package sim/timeline draws a trace as an HTML
// page.
//
// Nothing here reads the wall clock except Result.Wall, which only reports speed, and
// Shrink's budget, which only decides when to stop searching; the trace never
// contains it.
package sim
