package node

import (
	"encoding/binary"
	"hash/fnv"
	"slices"
)

// Gossip repairs the queue settings and schedules a member missed (it was down or
// cut off when they changed; a change is sent to every member at once, so a member
// that was up has it already). Sending every setting to a random member every
// SyncInterval cost a message per setting: with 20,000 queues a 3-node cluster sent
// 30,000 messages a second and its peer queues dropped them. So every SyncInterval
// a node sends one random member only a digest of what it holds (MsgGossip); a
// member whose digest differs sends back its own (MsgGossipResp), and each side
// sends the other the next gossipChunk of its settings and schedules, in name
// order from where it stopped last time with that member, until the digests agree.
// The receiver keeps what is newer, as for any MsgQueueSet or MsgScheduleSet. A
// cluster in agreement sends one message per node per SyncInterval; repairing n
// entries takes about n/gossipChunk rounds.
//
// Gossip spreads the roster too (roster.go): both messages carry the sender's
// roster epoch (Message.Epoch, 0 for the static roster of epoch 1), a member whose
// digest matches still answers a gossiper of a lower or higher epoch, and whoever
// holds the higher epoch pushes its roster (MsgRoster).

// gossipChunk is how many settings and schedules one round sends to one member: an
// eighth of a peer queue (4096 messages, net/peer): in 2 s a node may push a member
// two chunks and answer two of its chunks (a MsgQueueSetResp each).
const gossipChunk = 512

// digest summarizes the settings and schedules held: the XOR of a hash of each
// one's kind, name, version and origin (order-free, so no sort), and their count.
func (n *Node) digest() (sum uint64, count int) {
	for name, s := range n.settings { // XOR: order does not matter
		sum ^= entryHash('q', name, s.Version, s.Origin)
	}
	for name, s := range n.schedules { // XOR: order does not matter
		sum ^= entryHash('s', name, s.Version, s.Origin)
	}
	return sum, len(n.settings) + len(n.schedules)
}

func entryHash(kind byte, name string, version uint64, origin NodeID) uint64 {
	h := fnv.New64a()
	var b [9]byte
	b[0] = kind
	binary.BigEndian.PutUint64(b[1:], version)
	h.Write(b[:])
	h.Write([]byte(name))
	h.Write([]byte{0})
	h.Write([]byte(origin))
	return h.Sum64()
}

// armGossip sends this node's digest to one random member every SyncInterval.
func (n *Node) armGossip() {
	if len(n.members) < 2 {
		return
	}
	n.gossipStop = n.after(n.cfg.SyncInterval, alarm{kind: alarmGossip})
}

// gossip sends this node's digest to one random member, and arms the next round.
func (n *Node) gossip() {
	peer := n.members[n.env.Rand.IntN(len(n.members))]
	if peer != n.cfg.ID {
		sum, count := n.digest()
		n.send(Message{Type: MsgGossip, To: peer, Promised: sum, Retries: count, Epoch: n.gossipEpoch()})
	}
	n.armGossip()
}

// handleGossip answers a digest that differs from this node's with its own digest
// and the next chunk of what it holds.
func (n *Node) handleGossip(m Message) {
	if !slices.Contains(n.members, m.From) || m.From == n.cfg.ID {
		return
	}
	sum, count := n.digest()
	same := sum == m.Promised && count == m.Retries
	if same && m.Epoch == n.gossipEpoch() {
		return
	}
	n.send(Message{Type: MsgGossipResp, To: m.From, Promised: sum, Retries: count, Epoch: n.gossipEpoch()})
	n.maybePushRoster(m.From, m.Epoch)
	if !same {
		n.pushChunk(m.From)
	}
}

// handleGossipResp sends the next chunk to a member whose digest still differs.
func (n *Node) handleGossipResp(m Message) {
	if !slices.Contains(n.members, m.From) || m.From == n.cfg.ID {
		return
	}
	n.maybePushRoster(m.From, m.Epoch)
	if sum, count := n.digest(); sum != m.Promised || count != m.Retries {
		n.pushChunk(m.From)
	}
}

// armGossipIfIdle starts gossiping if it is not going yet (it starts with the
// first setting, schedule or roster of several members).
func (n *Node) armGossipIfIdle() {
	if n.gossipStop == 0 {
		n.armGossip()
	}
}

// pushChunk sends peer the next gossipChunk settings and schedules after the
// cursor kept for it, in order (settings by queue name, then schedules by name),
// starting over once past the end.
func (n *Node) pushChunk(peer NodeID) {
	keys := make([]string, 0, len(n.settings)+len(n.schedules))
	for name := range n.settings { // sorted below
		keys = append(keys, "q"+name)
	}
	for name := range n.schedules { // sorted below
		keys = append(keys, "s"+name)
	}
	slices.Sort(keys)
	cursor := n.gossipCursor[peer]
	i, found := slices.BinarySearch(keys, cursor)
	if found {
		i++
	}
	if i >= len(keys) {
		i = 0 // past the end: start over
	}
	end := min(i+gossipChunk, len(keys))
	for _, k := range keys[i:end] {
		if name := k[1:]; k[0] == 'q' {
			n.send(Message{Type: MsgQueueSet, To: peer, Setting: n.settings[name]})
		} else {
			n.send(Message{Type: MsgScheduleSet, To: peer, Schedule: n.schedules[name]})
		}
	}
	if end == len(keys) {
		delete(n.gossipCursor, peer)
	} else {
		n.gossipCursor[peer] = keys[end-1]
	}
}
