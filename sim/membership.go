package sim

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/miyamotohq/miyamoto/node"
)

// Membership in the simulator: spares (cluster.spares) start outside the cluster,
// as the daemon does with --join, and a join event has each ask a random live
// member every second until its own roster lists it (node.Join, the input the
// HTTP API's join uses); a joiner that restarts without the roster in its log asks
// again. A remove event has a random live member asked every second to remove a
// member (node.Remove, the input the HTTP API's remove uses) until that member's
// roster no longer lists it; replace removes a member and joins a spare at once.
// crash_leader and isolate_leader (faults.go) aim at the node holding the roster
// lease. The checker's M1 judges the lease and the rosters committed.

// join starts adding the spares f names (by default the next one not asked yet).
func (w *world) join(f FaultEvent) {
	nodes := w.pick(f.Nodes)
	if len(f.Nodes) == 0 {
		for _, s := range w.nodes {
			if s.spare && !s.asked {
				nodes = []*simNode{s}
				break
			}
		}
	}
	for _, s := range nodes {
		if w.trace != nil {
			w.trace.fault(w.now, "join", string(s.id))
		}
		if !s.asked {
			s.asked = true
			w.joinLoop(s)
		}
	}
}

// joinLoop asks a random live member to add s, every second, until s's roster
// lists it; it stops while s is down (restart starts it again).
func (w *world) joinLoop(s *simNode) {
	inc := s.incarnation
	var ask func()
	ask = func() {
		if !s.up || s.incarnation != inc || s.member() {
			return
		}
		if via := w.liveMember(s); via != nil {
			via.n.Join(node.Member{ID: s.id}, func(*node.Roster, error) {})
		}
		w.after(time.Second, ask)
	}
	ask()
}

// member reports whether s (up) is in the cluster: a node of the static roster
// that did not learn it was removed, or a spare its own roster lists.
func (s *simNode) member() bool {
	if !s.spare {
		return !s.n.Removed()
	}
	r := s.n.Roster()
	return r.Epoch > 0 && r.Has(s.id)
}

// liveMember draws a member, other than not, that is up and not paused (nil: none).
func (w *world) liveMember(not *simNode) *simNode {
	var live []*simNode
	for _, s := range w.nodes {
		if s != not && s.up && !s.paused && !s.stopping && s.member() { // a stopping node's API is shut
			live = append(live, s)
		}
	}
	if len(live) == 0 {
		return nil
	}
	return live[w.rngFault.IntN(len(live))]
}

// leader is the live node that holds the roster lease now (the first, should
// several believe they do; nil: none).
func (w *world) leader() *simNode {
	for _, s := range w.nodes {
		if s.up {
			if ok, _ := s.n.Leading(); ok {
				return s
			}
		}
	}
	return nil
}

// trueTime converts a reading of s's clock to true time (the inverse of localNow).
func (s *simNode) trueTime(local time.Time) int64 {
	return int64(float64(int64(local.Sub(epoch))-s.offset) / (1 + s.drift))
}

// leaseWon checks M1's first half: s won (or renewed) the roster lease until its
// local time until; no other node may hold a lease at this true instant.
func (c *checker) leaseWon(s *simNode, ballot uint64, until time.Time) {
	for i, end := range c.leaseEnds {
		if i != s.idx && end > c.w.now {
			o := c.w.nodes[i]
			c.violate("M1", nil, []node.NodeID{s.id, o.id}, "%s won the roster lease (ballot %d) while %s still held one until %v (true time)",
				s.id, ballot, o.id, time.Duration(end))
		}
	}
	c.leaseEnds[s.idx] = s.trueTime(until)
}

// rosterCommitted checks M1's second half: one roster per epoch.
func (c *checker) rosterCommitted(s *simNode, r *node.Roster) {
	c.rosterChanges = append(c.rosterChanges, c.w.now) // SC2 (schedules.go)
	if c.committed == nil {
		c.committed = map[uint64]*node.Roster{}
	}
	prev := c.committed[r.Epoch]
	if prev == nil {
		c.committed[r.Epoch] = r
		if c.w.trace != nil {
			c.w.trace.fault(c.w.now, "roster_committed", string(s.id)+" epoch "+strconv.FormatUint(r.Epoch, 10)+" leader "+string(r.Leader)+" members "+joinIDs(r.IDs()))
		}
		return
	}
	if !prev.Equal(r) {
		c.violate("M1", nil, []node.NodeID{s.id}, "two rosters committed under epoch %d: %v (leader %s) and %v (leader %s)",
			r.Epoch, prev.IDs(), prev.Leader, r.IDs(), r.Leader)
	}
}

func joinIDs(ids []node.NodeID) string {
	names := make([]string, len(ids))
	for i, id := range ids {
		names[i] = string(id)
	}
	return strings.Join(names, ",")
}

// remove starts removing the members f names (by default one drawn among the
// members, unless that would leave fewer than two); it returns them.
func (w *world) remove(f FaultEvent) []*simNode {
	nodes := w.pick(f.Nodes)
	if len(f.Nodes) == 0 {
		var members []*simNode
		for _, s := range w.nodes {
			if !s.removing && (s.n != nil && s.member() || s.n == nil && !s.spare) { // a node down may be removed
				members = append(members, s)
			}
		}
		if len(members) <= 2 {
			return nil
		}
		nodes = []*simNode{members[w.resolveRng().IntN(len(members))]}
	}
	w.removals = true
	for _, s := range nodes {
		if w.trace != nil {
			w.trace.fault(w.now, "remove", string(s.id))
		}
		if !s.removing {
			s.removing = true
			w.removeLoop(s)
		}
	}
	return nodes
}

// removeLoop asks a random live member (not s) to remove s, every second, until
// the member asked answers that its roster no longer lists s (or that s is the
// last member).
func (w *world) removeLoop(s *simNode) {
	var ask func()
	ask = func() {
		if w.stopped {
			return
		}
		if via := w.liveMember(s); via != nil {
			done := false
			via.n.Remove(s.id, func(r *node.Roster, err error) { done = r != nil || errors.Is(err, node.ErrLastMember) })
			if done {
				return
			}
		}
		w.after(time.Second, ask)
	}
	ask()
}

// replace removes a member and joins a spare: f.Nodes[0] (by default drawn among
// the members) and f.Nodes[1] (by default the next spare not asked yet); it
// returns both.
func (w *world) replace(f FaultEvent) []*simNode {
	var spare *simNode
	if len(f.Nodes) > 1 {
		spare = w.pick(f.Nodes[1:2])[0]
	} else {
		for _, s := range w.nodes {
			if s.spare && !s.asked {
				spare = s
				break
			}
		}
	}
	if spare == nil {
		return nil // no spare left: nothing to replace with
	}
	gone := w.remove(FaultEvent{Nodes: f.Nodes[:min(len(f.Nodes), 1)]})
	if len(gone) == 0 {
		return nil
	}
	w.join(FaultEvent{Nodes: []string{string(spare.id)}})
	return append(gone, spare)
}
