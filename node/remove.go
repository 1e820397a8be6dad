package node

import (
	"errors"
	"slices"
	"time"
)

// Removing members (decommission). Only the leader removes a member, as it adds
// one (leader.go): it commits the roster of the next epoch without the member,
// stored by a majority of the old roster and of the new one. A request made on
// another member is handed to the leader it knows (MsgRemove). With
// Config.RemoveAfter the leader also removes, one at a time, a member it has not
// heard from for that long.
//
// A removed node learns it from the roster that drops it (the leader sends it to
// the members of both rosters): it stops taking new tasks (ErrRemoved, NotReady)
// and stops claiming or holding the roster lease; new tasks are placed on the
// ring without it. Tasks already stored keep their replica lists, so a removed
// node still answers and delivers as their replica until they are moved (their
// safety depends only on their own replica lists).

// ErrRemovePending: the removal was handed to the leader (or a leader is being
// elected); ask again until the roster no longer lists the member.
var ErrRemovePending = errors.New("the removal is in progress: ask again until the roster no longer lists the member")

// ErrRemoved: this node was removed from the cluster's roster and takes no task.
var ErrRemoved = errors.New("this node was removed from the cluster and takes no task: enqueue through a member")

// ErrLastMember: the roster's only member cannot be removed.
var ErrLastMember = errors.New("the cluster's only member cannot be removed")

// Removed reports whether this node learnt that the roster no longer lists it.
func (n *Node) Removed() bool { return n.removed }

// Remove asks the cluster to remove member id. reply is called once, during this
// input: with the roster when it does not list id (removed, or never a member),
// else with ErrRemovePending (the request went to the leader, or a leader is
// being elected): ask again until the roster no longer lists it. ErrLastMember
// refuses to remove the only member; a FieldError names a bad ID.
func (n *Node) Remove(id NodeID, reply func(*Roster, error)) {
	n.input(func() { n.remove(id, n.await(rosterReply(reply))) })
}

func (n *Node) remove(id NodeID, client ReplyID) {
	reply := func(r *Roster, err error) { n.answer(client, Answer{Roster: r, Err: err}) }
	switch {
	case id == "" || len(id) > MaxNodeIDLen:
		reply(nil, fieldErr("id", "must be 1-%d bytes", MaxNodeIDLen))
	case !n.roster.Has(id):
		reply(n.roster, nil)
	case len(n.members) == 1:
		reply(nil, ErrLastMember)
	default:
		n.handleRemoveOf(id, true)
		reply(nil, ErrRemovePending)
	}
}

// handleRemoveOf queues id's removal when this node leads, or forwards it to the
// leader it knows (once: a forwarded removal is not forwarded again).
func (n *Node) handleRemoveOf(id NodeID, forward bool) {
	n.activateLeader()
	if n.leading() {
		if !slices.Contains(n.removals, id) && len(n.removals) < MaxMembers {
			n.removals = append(n.removals, id)
		}
		n.nextChange()
		return
	}
	if leader := n.Leader(); forward && leader != "" && leader != n.cfg.ID && n.roster.Has(leader) {
		n.send(Message{Type: MsgRemove, To: leader, Member: &Member{ID: id}})
	}
}

func (n *Node) handleRemove(m Message) {
	if m.Member != nil && checkMember(*m.Member) == nil {
		n.handleRemoveOf(m.Member.ID, false)
	}
}

// nextRemoval proposes the roster without the first member waiting to be removed
// that is still listed; it reports whether it proposed one.
func (n *Node) nextRemoval() bool {
	for len(n.removals) > 0 {
		id := n.removals[0]
		n.removals = n.removals[1:]
		if !n.roster.Has(id) || len(n.members) == 1 {
			continue
		}
		n.propose(n.rosterWithout(id))
		return true
	}
	return false
}

// rosterWithout is the roster of the next epoch without id: this node leads it,
// unless id is this node (the members then elect another once its lease ran out).
func (n *Node) rosterWithout(id NodeID) *Roster {
	addrs := map[NodeID]string{}
	var ids []NodeID
	for _, m := range n.roster.Members {
		if m.ID != id {
			ids = append(ids, m.ID)
			addrs[m.ID] = m.Addr
		}
	}
	leader := n.cfg.ID
	if id == n.cfg.ID {
		leader = ""
	}
	r := NewRoster(n.roster.Epoch+1, ids, addrs, leader)
	r.Removed = n.roster.removedAfter(id, ids)
	return r
}

// noteRemoved is called when this node adopts a roster that does not list it,
// having been a member: it takes no task from now on and gives up the lease (and
// any change it was making as leader). Giving the lease up early is safe: fewer
// leaders, never more.
func (n *Node) noteRemoved() {
	n.removed = true
	n.ballot, n.leaseUntil = 0, time.Time{}
	n.change, n.joins, n.removals = nil, nil, nil
}

// heardFrom notes, for RemoveAfter, that member from was heard from now.
func (n *Node) heardFrom(from NodeID) {
	if n.cfg.RemoveAfter > 0 {
		n.heard[from] = n.now()
	}
}

// maybeRemoveUnreachable queues the removal of the first member (by ID) this
// leader has not heard from for RemoveAfter, counted at most from when it began
// leading; one at a time.
func (n *Node) maybeRemoveUnreachable(now time.Time) {
	if n.cfg.RemoveAfter <= 0 {
		return
	}
	if !n.leading() {
		n.ledSince = time.Time{}
		return
	}
	if n.change != nil || len(n.removals) > 0 || len(n.members) == 1 {
		return
	}
	if n.ledSince.IsZero() {
		n.ledSince = now
	}
	for _, id := range n.members {
		if id == n.cfg.ID {
			continue
		}
		last := n.heard[id]
		if last.Before(n.ledSince) {
			last = n.ledSince
		}
		if now.Sub(last) >= n.cfg.RemoveAfter {
			n.removals = append(n.removals, id)
			n.nextChange()
			return
		}
	}
}

// noteDeparted remembers the members of old that next no longer lists (this node
// among them, when it was removed), and those next says were removed: the door
// still admits them and replica lists naming them, for the tasks stored before. A
// member added again is no longer departed.
//
// Invariant: a node holding a roster knows as departed every member removed at or
// before its epoch (the last MaxMembers: Roster.Removed), not only those it saw
// leave. A node that skipped epochs, a joiner whose first roster came by gossip
// after a removal or a member away during a change, refused for good, at the
// door, the claims and Stores of every task whose list named a member removed
// before it learnt of it, and what that member itself sent: the copies on removed
// members could never win a claim to move the task, nor store it on a new list
// that names such a node (M2, L1 on seed 109 of replace-by-stop).
func (n *Node) noteDeparted(old, next *Roster) {
	if old != nil && old.Epoch != 0 {
		for _, m := range old.Members {
			if !next.Has(m.ID) {
				n.noteGone(m.ID)
			}
		}
	}
	for _, id := range next.Removed {
		if !next.Has(id) {
			n.noteGone(id)
		}
	}
	for _, m := range next.Members {
		delete(n.departed, m.ID)
	}
	if len(n.departed) > 0 && n.started {
		n.armMoves()
	}
}

func (n *Node) noteGone(id NodeID) {
	if n.departed == nil {
		n.departed = map[NodeID]bool{}
	}
	n.departed[id] = true
}

// TasksOnRemoved counts the tasks this node holds, not final, whose replica list
// names a member no longer in the roster: what re-replication would have to move,
// and what still depends on removed members until then. It scans the tasks only
// when this node saw a member removed.
func (n *Node) TasksOnRemoved() int {
	if len(n.departed) == 0 {
		return 0
	}
	c := 0
	for _, h := range n.tombs { // a count: order does not matter
		if h&coldHandle != 0 && n.coldNamesGone(h) {
			c++ // a cold task is pending (its tomb is read, not decoded)
		}
	}
	for _, e := range n.tasks {
		if e.state.Final() {
			continue
		}
		for _, r := range e.task.Replicas {
			if !n.roster.Has(r) {
				c++
				break
			}
		}
	}
	return c
}
