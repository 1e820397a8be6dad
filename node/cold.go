package node

import (
	"container/heap"
	"encoding/binary"
	"time"
)

// Cold tasks: pending tasks in the compact form. Most tasks a node holds wait for
// their due time and are never claimed, failed or moved before it; as an entry, a
// Task, an ID string, a map slot and a place in the timer heap, one cost about 500
// bytes of live heap. So once a pending task has no protocol state (no
// entryExtra: no claim, grant, failure, outcome or move; its one timer is the
// replica timer), its timer is due at least Config.ColdAhead after the clock's last
// reading, and Config.PendingDetail tasks were armed to wait after it, it goes
// cold: it is encoded as a tomb (tomb.go) with its timer's arm order in front, kept
// in tombs under its raw key like a finished task's, and its timer moves from the
// node's heap to a compact one (cold: due time, arm order, raw key; 32 bytes).
//
// A cold task is thawed back into its entry and Task, with its timer's place in
// the node's heap unchanged, when anything may change it (entryOf: a claim, a
// store, a cancel, an outcome, a move, a purge) and when its timer comes due: the
// node's one wake is armed for the first timer of both heaps (armWake), and the
// wake thaws the cold timers due by then before it fires any (fireTimers). No
// timer of its own thaws a task ahead of that: the simulator's traces and the
// flight recorder count every Clock.AfterFunc (and every clock reading), so a cold
// task must not cost one. Reads that change nothing (a status answer, a listing, a
// count, a drain's look, the scan for moves) decode it without thawing (peek).
// Thawed, it is in line to go cold again.
//
// Invariant: going cold changes nothing the node does. The two heaps together hold
// what the one heap would, with the same (due time, arm order), so the wake is
// armed at the same times for the same durations and the timers fire in the same
// order; the entry decoded is the one encoded, field by field; counters and
// indexes are untouched (the index keeps a UUID by raw key in any form). The cold
// heap is cleaned lazily: an item whose task was thawed, or re-armed, since it was
// pushed is stale (its task is no longer cold, or is cold under another arm
// order) and dropped when it reaches the top; armWake and fireTimers look past
// stale items only, so a stale item never arms the wake.

// coldHandle marks, in tombs, the handle of a cold task: its bytes are in
// coldArena (pending tasks thaw in due order, not in the order they went cold, so
// they do not share chunks with the finished tasks, which are forgotten in about
// the order they froze).
const coldHandle = 1 << 63

// coldItem is a cold task's timer: its due time and arm order (the entry's
// timerAt and timerSeq) and the raw key of its ID.
type coldItem struct {
	at  int64
	seq uint64
	raw [16]byte
}

// coldHeap implements heap.Interface over the cold timers, in the timer heap's
// order.
type coldHeap []coldItem

func (h coldHeap) Len() int { return len(h) }
func (h coldHeap) Less(i, j int) bool {
	if h[i].at != h[j].at {
		return h[i].at < h[j].at
	}
	return h[i].seq < h[j].seq
}
func (h coldHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *coldHeap) Push(x any)   { *h = append(*h, x.(coldItem)) }
func (h *coldHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}

// queueCool puts a task whose replica timer was just armed in line to go cold once
// PendingDetail more were.
func (n *Node) queueCool(id string) {
	n.toCool = append(n.toCool, id)
}

// coolable reports whether e may go cold now (now: the clock's last reading).
func (n *Node) coolable(e *entry, now int64) bool {
	return e.state == StateScheduled && e.entryExtra == &noExtra && e.timerKind == timerFire &&
		e.timerIdx != 0 && n.tasks[e.task.ID] == e && e.timerAt-now >= int64(n.cfg.ColdAhead)
}

// coolPerInput bounds the tasks coolOld looks at in one input (each one it makes
// cold costs an encoding, a few microseconds): after a restart every pending task
// of the log is in line at once, and a million of them made cold in one input
// held the node's goroutine for seconds (its /metrics answered without the
// queues' depths). The line drains over the next inputs instead.
const coolPerInput = 4096

// coolOld makes cold, at the end of an input, the queued tasks beyond the
// PendingDetail most recent that may go cold. One that may not (due soon, claimed,
// no longer held, already cold) leaves the line: it comes back when its replica
// timer is armed again or it is thawed. It reads no clock (that would be an input
// the flight recorder records): lastNow is the latest reading the input took.
// LastClockReading is the latest clock reading the node took (zero: none yet):
// a node restored from a snapshot was taken at about that time.
func (n *Node) LastClockReading() time.Time {
	if n.lastNow == 0 {
		return time.Time{}
	}
	return time.Unix(0, n.lastNow)
}

func (n *Node) coolOld() {
	for budget := coolPerInput; budget > 0 && len(n.toCool)-n.coolHead > n.cfg.PendingDetail; budget-- {
		id := n.toCool[n.coolHead]
		n.toCool[n.coolHead] = ""
		n.coolHead++
		if e := n.tasks[id]; e != nil && n.coolable(e, n.lastNow) {
			n.freezeCold(e)
		}
	}
	// Reclaim the consumed prefix once it is most of the array.
	if n.coolHead > 1024 && n.coolHead*2 > len(n.toCool) {
		n.toCool = append(n.toCool[:0], n.toCool[n.coolHead:]...)
		n.coolHead = 0
	}
	if len(n.cold) > 2*n.colds+1024 {
		n.dropStaleCold()
	}
}

// dropStaleCold drops the stale items of the cold heap, once they are most of it
// (a task thawed and cold again leaves one until its due time comes).
func (n *Node) dropStaleCold() {
	kept := n.cold[:0]
	for _, it := range n.cold {
		if n.coldValid(it) {
			kept = append(kept, it)
		}
	}
	clear(n.cold[len(kept):])
	n.cold = kept
	heap.Init(&n.cold)
	n.coldTopOK = false
}

// coldValid reports whether it is the timer of a task cold now: one it was not
// thawed from, nor re-armed since.
func (n *Node) coldValid(it coldItem) bool {
	h, held := n.tombs[rawIDOf(it.raw)]
	return held && h&coldHandle != 0 && n.coldSeq(h) == it.seq
}

// freezeCold replaces e (coolable) by its cold tomb, and its timer in the node's
// heap by a cold one with the same due time and arm order. It reports whether it
// did (not for an ID that is no UUID, nor a value the tomb cannot encode).
func (n *Node) freezeCold(e *entry) bool {
	k, ok := rawKey(e.task.ID)
	if !ok {
		return false
	}
	if n.index[stateKey{e.task.Queue, e.state}] == nil {
		return false // not indexed: cannot happen to a held pending task
	}
	return n.freezeColdAs(e, k)
}

// freezeColdAs is freezeCold for a task of raw key k whose index is not checked:
// in Start, before recount indexes it (restart.go).
func (n *Node) freezeColdAs(e *entry, k [16]byte) bool {
	rec, ok := n.encodeCold(e, k)
	if !ok {
		return false
	}
	heap.Remove(&n.timers, int(e.timerIdx-1))
	heap.Push(&n.cold, coldItem{at: e.timerAt, seq: e.timerSeq, raw: k})
	n.coldTopOK = false
	delete(n.tasks, e.task.ID)
	n.tombs[rawIDOf(k)] = n.coldArena.put(rec) | coldHandle
	e.frozen = true
	n.colds++
	n.coldsMade++
	return true
}

// encodeCold encodes a coolable e, whose ID has the raw key k: k (so that a
// sparse chunk can find its tombs' owners: releaseTomb), its replica timer's arm
// order, then its tomb (tomb.go; timerAt is among tombFields). ok is false when
// some value has no encoding. The bytes are a scratch buffer's: valid until the
// next call.
func (n *Node) encodeCold(e *entry, k [16]byte) ([]byte, bool) {
	rec, ok := n.encodeTomb(e)
	buf := append(n.coldScratch[:0], k[:]...)
	n.coldScratch = append(binary.AppendUvarint(buf, e.timerSeq), rec...)
	return n.coldScratch, ok
}

// coldBody returns the bytes of a cold tomb after its raw key.
func (n *Node) coldBody(h uint64) []byte { return n.tombBytes(h)[16:] }

// tombBytes returns the bytes of the tomb of handle h (a finished task's or a cold
// one's, with its arm order in front); read, never keep.
func (n *Node) tombBytes(h uint64) []byte {
	if h&coldHandle != 0 {
		return n.coldArena.get(h &^ coldHandle)
	}
	return n.arena.get(h)
}

// releaseTomb frees the tomb of handle h. A chunk of cold tombs that became
// sparse has its tombs moved to the current chunk: cold tasks thaw in the order
// they come due, not the order they went cold, so without that one task due in a
// month would keep the 64 KiB of a chunk whose other tasks fired within the hour.
func (n *Node) releaseTomb(h uint64) {
	if h&coldHandle == 0 {
		n.arena.release(h)
		return
	}
	num, sparse := n.coldArena.release(h &^ coldHandle)
	if !sparse {
		return
	}
	// A cold tomb starts with its raw key: it is held while tombs names it by
	// that handle.
	n.coldArena.relocate(num,
		func(rec []byte, h uint64) bool { return n.tombs[rawIDOf([16]byte(rec[:16]))] == h|coldHandle },
		func(rec []byte, h uint64) { n.tombs[rawIDOf([16]byte(rec[:16]))] = h | coldHandle })
}

// decodeHeld rebuilds the entry of the tomb of handle h: a cold task's with its
// replica timer's arm order (not in the node's heap: timerIdx 0).
func (n *Node) decodeHeld(id string, h uint64) *entry {
	if h&coldHandle == 0 {
		return n.decodeTomb(id, n.tombBytes(h))
	}
	rec := n.coldBody(h)
	seq, k := binary.Uvarint(rec)
	e := n.decodeTomb(id, rec[k:])
	e.timerKind, e.timerSeq = timerFire, seq
	return e
}

// coldSeq returns the arm order of the cold task of handle h.
func (n *Node) coldSeq(h uint64) uint64 {
	seq, _ := binary.Uvarint(n.coldBody(h))
	return seq
}

// coldTop returns the first valid cold timer, dropping the stale items above it;
// ok is false when there is none.
func (n *Node) coldTop() (it coldItem, ok bool) {
	for len(n.cold) > 0 {
		it = n.cold[0]
		if n.coldTopOK {
			return it, true
		}
		if n.coldValid(it) {
			n.coldTopOK = true
			return it, true
		}
		heap.Pop(&n.cold) // stale: thawed, or re-armed and cold again, since
	}
	return it, false
}

// thawDueCold thaws the cold tasks whose timers are due by now, back into the
// node's heap (fireTimers then fires them in order with the others).
func (n *Node) thawDueCold(now int64) {
	for {
		it, ok := n.coldTop()
		if !ok || it.at > now {
			return
		}
		n.thaw(rawIDOf(it.raw).id()) // pops it (as stale) at the next coldTop
	}
}

// coldIDs returns the IDs of the cold tasks, in no order.
func (n *Node) coldIDs() []string {
	ids := make([]string, 0, n.colds)
	for raw, h := range n.tombs { // the callers sort, or count
		if h&coldHandle != 0 {
			ids = append(ids, raw.id())
		}
	}
	return ids
}

// thawColdOf thaws the cold tasks of a queue (before a walk of the tasks that may
// change them: a purge).
func (n *Node) thawColdOf(queue string) {
	for _, id := range n.coldIDs() { // thawing in any order changes nothing
		if e := n.peek(id); e.task.Queue == queue {
			n.entryOf(id)
		}
	}
}

// coldNamesGone reports whether the cold task of handle h names a replica the
// roster no longer lists. It reads its tomb only as far as the replica list,
// decoding nothing else: the walks after a member's removal (TasksOnRemoved, which
// /metrics reads, and the scan for moves) look at every cold task each time, and a
// whole decode of a million would hold the node's goroutine for a second.
func (n *Node) coldNamesGone(h uint64) bool {
	rec := n.coldBody(h)
	_, k := binary.Uvarint(rec) // the arm order
	r := tombReader{n: n, buf: rec[k:]}
	// As decodeTomb and decodeTask read, up to the replicas.
	r.varint()   // Created
	r.skipWord() // Queue
	r.skipStr()  // Name
	r.skipWord() // URL
	r.skipWord() // Method
	for range r.uvarint() {
		r.skipWord()
		r.skipStr()
	}
	r.skipWord() // ContentType
	if l := r.uvarint(); l > 0 {
		r.buf = r.buf[l-1:] // Body
	}
	r.varint()        // ETA
	r.buf = r.buf[9:] // Nonce, Delivery
	for range r.uvarint() {
		if !n.roster.Has(NodeID(r.word())) {
			return true
		}
	}
	return false
}

func (r *tombReader) skipStr() { r.buf = r.buf[r.uvarint():] }

func (r *tombReader) skipWord() {
	if r.uvarint() == 0 {
		r.skipStr()
	}
}

// Colds returns how many pending tasks this node holds cold.
func (n *Node) Colds() int { return n.colds }

// ColdsMade returns how many times a pending task went cold on this node since it
// was made (for tests: that a run exercised cold tasks at all).
func (n *Node) ColdsMade() uint64 { return n.coldsMade }
