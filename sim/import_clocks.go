package sim

import (
	"cmp"
	"slices"
	"time"

	"github.com/miyamotohq/miyamoto/node"
)

// clockEstimate is what messages say of one clock against another: it is off by
// offset, give or take err.
type clockEstimate struct {
	offset, err time.Duration
}

// readAt is e's reading of its node's clock, as the node recorded it.
func readAt(e RecordedEvent) time.Time {
	if e.Read.IsZero() {
		return e.At
	}
	return e.Read
}

// nodeLink is one direction between two nodes.
type nodeLink struct{ from, to node.NodeID }

// clockOffsets estimates each member's clock offset from the messages the
// recordings show, as NTP does. A message sent from a at a's reading s and received
// by b at b's reading r gives r − s = delay + (off_b − off_a), the delay at least 0:
// so the quickest message a→b bounds off_b − off_a from above, the quickest b→a from
// below, and the middle of the two bounds is the estimate (the quickest delays taken
// as equal both ways), give or take half the quickest round trip. The readings are
// the events' Bound: one taken before the send, one after the arrival, so that the
// bounds hold. A member's offset
// against the first member adds up the pairs on the way of least error; the median
// member's clock stands for true time (most clocks are taken to be right). An
// offset is kept, to the millisecond, only when it is larger than its error (on one
// machine, or under NTP's few milliseconds on a fast network, none is); a member no
// message links both ways to the first gets none.
func clockOffsets(members []node.NodeID, events []RecordedEvent) map[node.NodeID]time.Duration {
	if len(members) == 0 {
		return nil
	}
	quickest := map[nodeLink]time.Duration{}
	for _, e := range events {
		if e.Kind != RecReceive || e.SendIndex < 0 || e.Bound.IsZero() {
			continue
		}
		send := events[e.SendIndex]
		if send.Node == e.Node || send.Bound.IsZero() {
			continue
		}
		d, l := e.Bound.Sub(send.Bound), nodeLink{send.Node, e.Node}
		if q, ok := quickest[l]; !ok || d < q {
			quickest[l] = d
		}
	}
	est := offsetsFromFirst(members, quickest)
	known := slices.Clone(members)
	known = slices.DeleteFunc(known, func(m node.NodeID) bool { _, ok := est[m]; return !ok })
	slices.SortStableFunc(known, func(a, b node.NodeID) int { return cmp.Compare(est[a].offset, est[b].offset) })
	mid := est[known[(len(known)-1)/2]]
	out := map[node.NodeID]time.Duration{}
	for _, m := range known {
		off := est[m].offset - mid.offset
		if off.Abs() <= est[m].err+mid.err {
			continue // the clocks may well agree: the network's delays hide the difference
		}
		if r := off.Round(time.Millisecond); r != 0 {
			out[m] = r
		}
	}
	return out
}

// offsetsFromFirst is each member's clock against the first member's, through the
// pairs of members that exchanged messages both ways, by the way of least error
// (Dijkstra's search over the pairs; ties go to the lower ID).
func offsetsFromFirst(members []node.NodeID, quickest map[nodeLink]time.Duration) map[node.NodeID]clockEstimate {
	between := func(a, b node.NodeID) (clockEstimate, bool) {
		up, okUp := quickest[nodeLink{a, b}]
		down, okDown := quickest[nodeLink{b, a}]
		if !okUp || !okDown {
			return clockEstimate{}, false
		}
		return clockEstimate{offset: (up - down) / 2, err: max((up+down)/2, 0)}, true
	}
	est := map[node.NodeID]clockEstimate{members[0]: {}}
	done := map[node.NodeID]bool{}
	for {
		cur, found := node.NodeID(""), false
		for _, m := range members {
			if e, ok := est[m]; ok && !done[m] && (!found || e.err < est[cur].err) {
				cur, found = m, true
			}
		}
		if !found {
			return est
		}
		done[cur] = true
		for _, m := range members {
			b, ok := between(cur, m)
			if done[m] || !ok {
				continue
			}
			via := clockEstimate{offset: est[cur].offset + b.offset, err: est[cur].err + b.err}
			if e, seen := est[m]; !seen || via.err < e.err {
				est[m] = via
			}
		}
	}
}

// onTrueTime is events with each one's time put on true time: its node's own clock
// reading less that clock's offset.
func onTrueTime(events []RecordedEvent, offsets map[node.NodeID]time.Duration) []RecordedEvent {
	out := slices.Clone(events)
	for i := range out {
		out[i].At = readAt(out[i]).Add(-offsets[out[i].Node])
		if !out[i].Bound.IsZero() {
			out[i].Bound = out[i].Bound.Add(-offsets[out[i].Node])
		}
		out[i].Read = time.Time{}
	}
	return out
}
