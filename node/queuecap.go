package node

import (
	"errors"
	"fmt"
	"time"
)

// Any client can create queues (a queue is created on first use), so their number
// is capped and what a deleted queue leaves behind is dropped in time:
//
//   - A queue is known to a node while it holds a live setting of it or a task of
//     it. Past Config.MaxQueues known queues, a coordinator refuses to enqueue a
//     task of a new queue and to set a new queue (ErrTooManyQueues); replicas and
//     members never refuse what another coordinator accepted, so that the members
//     never disagree about a setting, and a cluster knows at most members ×
//     MaxQueues queues.
//   - A deletion's tombstone (QueueSetting.Deleted) is kept for the dedup window,
//     counted from its version (milliseconds of a hybrid clock, never behind the
//     wall clock of the change), so that a member that missed the deletion is
//     overruled when it comes back; then it is dropped, with the token node's
//     bucket of a queue that no longer has limits.
//   - Dropping must not let an older setting back in: settingsFloor is the highest
//     version of a dropped tombstone (durable in the RecForgotten record, beside
//     forgetMark), and a setting at or below it of a queue this node does not hold
//     is refused, as forgetMark refuses forgotten tasks. (A member away for longer
//     than the window keeps its old setting of the deleted queue; the others do
//     not take it back.)

// ErrTooManyQueues: the node knows Config.MaxQueues queues, and the request would
// make a new one.
var ErrTooManyQueues = errors.New("too many queues")

// Bits of queueRefs: why a queue is known.
const (
	refSetting uint8 = 1 << iota // a live (not deleted) setting
	refTasks                     // tasks of it are held
)

// markQueue sets or clears one reason the queue is known.
func (n *Node) markQueue(q string, bit uint8, on bool) {
	v := n.queueRefs[q]
	if on {
		v |= bit
	} else {
		v &^= bit
	}
	if v == 0 {
		delete(n.queueRefs, q)
		return
	}
	n.queueRefs[q] = v
}

// KnownQueues is the number of queues this node knows (see above).
func (n *Node) KnownQueues() int { return len(n.queueRefs) }

// admitQueue reports whether a coordinator may make q known, or the error to
// answer.
func (n *Node) admitQueue(q string) error {
	if n.cfg.MaxQueues <= 0 || n.queueRefs[q] != 0 || len(n.queueRefs) < n.cfg.MaxQueues {
		return nil
	}
	return fmt.Errorf("%w: queue %q would be a new one, and this node knows %d queues, its limit; delete unused queues (DELETE /v1/queues/{q}) or raise --max-queues", ErrTooManyQueues, q, n.cfg.MaxQueues)
}

// tombstoneExpired reports whether a deletion's tombstone has outlived the dedup
// window (its version read as Unix milliseconds).
func (n *Node) tombstoneExpired(s *QueueSetting) bool {
	return s.Deleted && n.now().Sub(time.UnixMilli(int64(min(s.Version, 1<<62)))) > n.cfg.DedupWindow
}

// refusedByFloor reports whether s, a setting of a queue this node does not hold,
// may be one whose tombstone it dropped: it must not come back.
func (n *Node) refusedByFloor(s *QueueSetting) bool {
	return n.settingsFloor > 0 && s.Version <= n.settingsFloor
}

// tombstoneSweep is how often expired tombstones are looked for while any is held.
func (n *Node) tombstoneSweep() time.Duration {
	return max(n.cfg.DedupWindow/8, n.cfg.SyncInterval)
}

// maybeArmTombstoneSweep arms the sweep when a tombstone is held and none is armed.
func (n *Node) maybeArmTombstoneSweep() {
	if n.tombstoneStop != 0 || n.tombstones == 0 {
		return
	}
	n.tombstoneStop = n.after(n.tombstoneSweep(), alarm{kind: alarmTombstones})
}

// sweepTombstones drops the tombstones that outlived the dedup window, raises the
// floor past them (durably) and drops the buckets of queues without limits.
func (n *Node) sweepTombstones() {
	floor, dropped := n.settingsFloor, 0
	for _, name := range sortedKeys(n.settings) {
		s := n.settings[name]
		if !n.tombstoneExpired(s) {
			continue
		}
		delete(n.settings, name)
		dropped++
		n.tombstones--
		n.settingsFloor = max(n.settingsFloor, s.Version)
		n.superseded++
	}
	if dropped > len(n.settings) {
		// A Go map keeps its buckets after deletions: copy the maps that shrank by
		// half or more, so that the memory of many deleted queues is given back.
		n.settings = copyMap(n.settings)
		n.queueRefs = copyMap(n.queueRefs)
	}
	for q, b := range n.buckets { // deletion only: order never reaches an output
		if c := n.queue(q); c.Rate == 0 && c.MaxConcurrent == 0 && len(b.inflight) == 0 {
			delete(n.buckets, q)
		}
	}
	if n.settingsFloor > floor && n.env.Storage.Durable() {
		// Durable before the tombstones' records can be compacted away.
		n.persist(nil, n.forgetRecord())
		n.superseded++
	}
}

// forgetRecord is the durable record of what this node may have forgotten: tasks
// created up to forgetMark, settings up to settingsFloor.
func (n *Node) forgetRecord() Record {
	return Record{Kind: RecForgotten, NextETA: n.forgetMark, Attempt: n.settingsFloor}
}

// copyMap returns a copy of m sized for its entries.
func copyMap[V any](m map[string]V) map[string]V {
	c := make(map[string]V, len(m))
	for k, v := range m { // a copy: order does not matter
		c[k] = v
	}
	return c
}
