package node

import (
	"slices"
	"strings"
)

// The roster is the cluster's membership: who the members are, where their peer
// ports listen, and which member leads. It decides the ring that places new tasks
// (Placement), the token node of each limited queue and who is asked for
// cluster-wide listings; it never decides anything about a task already stored,
// whose replica list travels with it.
//
// Rosters are numbered by Epoch. A static member list (Config.Members, the
// daemon's --peers) is the roster of epoch 1, which every member starts with and
// which is therefore never sent. A member that learns a roster of a higher epoch
// (MsgRoster) adopts it, logs it (RecRoster: a restart starts from the highest
// roster logged) and gossips it on: every gossip message carries the sender's
// epoch when it is above 1, and a member that hears a lower epoch than its own
// pushes its roster to the sender.
//
// Invariant: the roster only moves forward (its epoch only grows); a roster of an
// epoch already held is not adopted again, so one epoch never names two rosters on
// one node.

// Member is one member of the roster: its ID and its peer address (host:port;
// empty where the environment needs none, as in the simulator).
type Member struct {
	ID   NodeID
	Addr string
}

// Roster is the cluster's membership at one epoch. Members are sorted by ID and
// distinct; Leader is one of them, or empty when none is known. Removed names the
// members removed at this epoch or before that are not members again, oldest
// first, the last MaxMembers of them (see noteDeparted). A *Roster is never
// modified once built: nodes and messages share the pointer.
type Roster struct {
	Epoch   uint64
	Members []Member
	Leader  NodeID
	Removed []NodeID
}

// IDs returns the members' IDs, sorted: the ring.
func (r *Roster) IDs() []NodeID {
	ids := make([]NodeID, len(r.Members))
	for i, m := range r.Members {
		ids[i] = m.ID
	}
	return ids
}

// Addr returns the peer address of member id, and whether id is a member.
func (r *Roster) Addr(id NodeID) (string, bool) {
	i, ok := slices.BinarySearchFunc(r.Members, id, func(m Member, id NodeID) int { return strings.Compare(string(m.ID), string(id)) })
	if !ok {
		return "", false
	}
	return r.Members[i].Addr, true
}

// Has reports whether id is a member.
func (r *Roster) Has(id NodeID) bool {
	_, ok := r.Addr(id)
	return ok
}

// Equal reports whether r and o name the same epoch, members, addresses and leader.
func (r *Roster) Equal(o *Roster) bool {
	return r.Epoch == o.Epoch && r.Leader == o.Leader && slices.Equal(r.Members, o.Members) && slices.Equal(r.Removed, o.Removed)
}

// removedAfter is r's Removed for the roster that follows r: with gone added
// (when not empty) and without every member of next (a member added again is no
// longer removed), the oldest dropped beyond MaxMembers.
func (r *Roster) removedAfter(gone NodeID, next []NodeID) []NodeID {
	var out []NodeID
	for _, id := range r.Removed {
		if id != gone && !slices.Contains(next, id) {
			out = append(out, id)
		}
	}
	if gone != "" && !slices.Contains(next, gone) {
		out = append(out, gone)
	}
	if len(out) > MaxMembers {
		out = out[len(out)-MaxMembers:]
	}
	return out
}

// NewRoster builds a roster of epoch with the given members (any order; sorted
// here) and leader. addrs gives the members' peer addresses (missing ones are
// empty).
func NewRoster(epoch uint64, members []NodeID, addrs map[NodeID]string, leader NodeID) *Roster {
	r := &Roster{Epoch: epoch, Leader: leader, Members: make([]Member, 0, len(members))}
	for _, id := range members {
		r.Members = append(r.Members, Member{ID: id, Addr: addrs[id]})
	}
	slices.SortFunc(r.Members, func(a, b Member) int { return strings.Compare(string(a.ID), string(b.ID)) })
	return r
}

// initialRoster is the roster of epoch 1 that Config describes: the static member
// list. A node alone leads its cluster of one; a static list of several has no
// leader until one is elected.
func initialRoster(cfg Config) *Roster {
	if cfg.Join {
		return NewRoster(0, []NodeID{cfg.ID}, cfg.PeerAddrs, "")
	}
	leader := NodeID("")
	if len(cfg.Members) == 1 {
		leader = cfg.ID
	}
	return NewRoster(1, cfg.Members, cfg.PeerAddrs, leader)
}

// RosterObserver is an optional ability of an Observer: RosterChanged is told of
// every roster this node adopts (at Start too, when its log held one above epoch
// 1), so that the environment can reach new members (the daemon dials their peer
// addresses). It must not call back into the node.
type RosterObserver interface {
	RosterChanged(self NodeID, r *Roster)
}

// Roster returns the roster this node holds now. The caller must not modify it.
func (n *Node) Roster() *Roster { return n.roster }

// Joining reports whether this node, started to join a cluster (Config.Join), has
// not yet been listed by a roster. Once listed it stays false, also after the node
// is removed: a removed node does not ask to join again by itself.
func (n *Node) Joining() bool { return n.joining }

// setRoster makes r the roster this node works with: the ring that places new
// tasks and the members it asks and gossips with. The replication factor follows
// the roster's size up to Config.Replicas.
func (n *Node) setRoster(r *Roster) {
	n.noteDeparted(n.roster, r)
	n.roster = r
	n.members = r.IDs()
	n.cfg.Replicas = min(n.wantReplicas, len(n.members))
	if o, ok := n.env.Observer.(RosterObserver); ok && n.started {
		o.RosterChanged(n.cfg.ID, r)
	}
	n.kickTokenLease() // a new epoch needs a new token lease, and the queues moved
}

// maybeAdoptRoster adopts r when it is newer than the roster held, logging it
// first; it reports whether it did. A roster that drops this node is adopted as
// well: the node learns it was removed (remove.go).
func (n *Node) maybeAdoptRoster(r *Roster) bool {
	if r == nil || r.Epoch <= n.roster.Epoch {
		return false
	}
	n.setRoster(r)
	if n.env.Storage.Durable() {
		n.persist(nil, Record{Kind: RecRoster, Roster: r})
	}
	if !n.joining && !r.Has(n.cfg.ID) {
		n.noteRemoved()
	} else if r.Has(n.cfg.ID) {
		n.removed = false // added again
	}
	if r.Leader != "" && r.Leader != n.cfg.ID {
		n.leaderSeen = n.now() // it was alive just now: let it renew first
	}
	if n.joining && r.Has(n.cfg.ID) {
		// Joined: learn the queue settings before taking tasks, as a restarted
		// member does.
		n.joining = false
		n.startSettingsSync()
	}
	n.armGossipIfIdle()
	if r.Epoch > 1 {
		n.activateLeader()
	}
	return true
}

// replayRoster applies a RecRoster at start: the highest epoch logged wins.
func (n *Node) replayRoster(r *Roster) {
	if r != nil && r.Epoch > n.roster.Epoch {
		n.noteDeparted(n.roster, r)
		n.roster = r
		n.members = r.IDs()
		n.cfg.Replicas = min(n.wantReplicas, len(n.members))
		if r.Has(n.cfg.ID) {
			n.joining = false
		}
		n.removed = !n.joining && !r.Has(n.cfg.ID)
	}
}

// gossipEpoch is the epoch a gossip message carries: 0 (nothing, as before
// rosters existed) for the static roster of epoch 1, which every member has.
func (n *Node) gossipEpoch() uint64 {
	if n.roster.Epoch <= 1 {
		return 0
	}
	return n.roster.Epoch
}

// maybePushRoster sends peer this node's roster when peer told of a lower epoch.
func (n *Node) maybePushRoster(peer NodeID, theirs uint64) {
	if n.roster.Epoch > 1 && theirs < n.roster.Epoch {
		n.send(Message{Type: MsgRoster, To: peer, Roster: n.roster})
	}
}

// handleRoster adopts a newer roster a member pushed.
func (n *Node) handleRoster(m Message) {
	n.maybeAdoptRoster(m.Roster)
}

// membersIn counts the members that set holds an answer from. Answers are kept by
// sender, and the roster may change while a round waits for them: a sender
// removed since must not stand in for a member that never answered (Q6 on seed 24
// of settings-flip-replacements: a queue change answered 200 as acknowledged by
// every member, counting a removed member's acknowledgement, while a member had
// never received it and stored tasks under the old delivery mode).
func membersIn[V any](members []NodeID, set map[NodeID]V) int {
	k := 0
	for _, id := range members {
		if _, ok := set[id]; ok {
			k++
		}
	}
	return k
}
