package node

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/google/uuid"
)

// Listings page through a queue's tasks by ID. Sorting every task ID of the node
// for each page cost about 50 ms with 100,000 tasks, on the node's goroutine, so a
// few clients listing at once stalled every enqueue. Instead each (queue, state)
// keeps its task IDs in order, updated beside the counters (count), and a page of
// limit IDs after `after` costs O(log n + limit).

// idIndex is the index of one (queue, state): the IDs of its tasks, in order.
// A UUID (every ID a node makes) is kept as its raw key (rawKey), 16 bytes with no
// pointer, whether its task is an entry, frozen (tomb.go) or cold (cold.go): so
// freezing and thawing a task leave the index alone. Other IDs are kept as they are.
type idIndex struct {
	ids  blockSet[idKey]
	raws blockSet[rawID]
}

// setKey is the key of a blockSet: compare is a total order (<0, 0, >0).
type setKey[K any] interface {
	comparable
	compare(K) int
}

// idKey is a task ID in an index.
type idKey string

func (a idKey) compare(b idKey) int { return strings.Compare(string(a), string(b)) }

// rawID is the raw key of a UUID task ID (rawKey) as two big-endian halves, whose
// order is that of the IDs: a value with no pointer in it, so a block of them is
// memory the garbage collector does not scan, and shifting one within its block
// costs no write barrier. Kept as strings, the index cost freezing a task most of
// its time, in the write barriers of those shifts (and the string's 16-byte header
// is no smaller than the key itself).
type rawID struct{ hi, lo uint64 }

// rawIDOf is the rawID of a raw key.
func rawIDOf(k [16]byte) rawID {
	return rawID{binary.BigEndian.Uint64(k[:8]), binary.BigEndian.Uint64(k[8:])}
}

func (a rawID) compare(b rawID) int {
	if a.hi != b.hi {
		return cmp.Compare(a.hi, b.hi)
	}
	return cmp.Compare(a.lo, b.lo)
}

// id is the task ID k stands for.
func (a rawID) id() string {
	var u uuid.UUID
	binary.BigEndian.PutUint64(u[:8], a.hi)
	binary.BigEndian.PutUint64(u[8:], a.lo)
	return u.String()
}

// blockSet is an ordered set: a list of sorted blocks, each at most 2×indexBlock
// long, and, once there are two blocks or more, the last key of each block beside
// them (so that finding a block reads one array; most sets are one block, often of
// one key, and need none). Invariant: every block is sorted and non-empty, every
// key of a block is below every key of the next one; lasts is nil with one block
// or none, else lasts[i] is the last key of blocks[i].
type blockSet[K setKey[K]] struct {
	blocks [][]K
	lasts  []K
	n      int
}

// blockAbove returns the first block whose last key is at or above k
// (len(x.blocks) when there is none).
func (x *blockSet[K]) blockAbove(k K) int {
	if x.lasts != nil {
		return searchKeys(x.lasts, k)
	}
	if len(x.blocks) == 1 {
		if b := x.blocks[0]; b[len(b)-1].compare(k) >= 0 {
			return 0
		}
	}
	return len(x.blocks)
}

// indexBlock is half the longest block: an insertion moves at most 2×indexBlock
// keys within its block, a split at most n/indexBlock block headers.
const indexBlock = 256

// find returns the block that holds k or where it would go, and k's position
// in it; ok when k is there. With no blocks it returns 0, 0, false.
func (x *blockSet[K]) find(k K) (block, pos int, ok bool) {
	if len(x.blocks) == 0 {
		return 0, 0, false
	}
	block = x.blockAbove(k)
	if block == len(x.blocks) {
		block-- // above every key: the last block
	}
	pos = searchKeys(x.blocks[block], k)
	b := x.blocks[block]
	return block, pos, pos < len(b) && b[pos] == k
}

// searchKeys returns the position of the first key of sorted ks at or above k.
func searchKeys[K setKey[K]](ks []K, k K) int {
	// Most keys are raw: compared inline, not through the generic method.
	if raws, ok := any(ks).([]rawID); ok {
		return searchRawIDs(raws, *any(&k).(*rawID))
	}
	lo, hi := 0, len(ks)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if ks[mid].compare(k) < 0 {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}

// searchRawIDs is searchKeys for raw keys.
func searchRawIDs(ks []rawID, k rawID) int {
	lo, hi := 0, len(ks)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if m := ks[mid]; m.hi < k.hi || m.hi == k.hi && m.lo < k.lo {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}

// insert adds k (nothing if it is there).
func (x *blockSet[K]) insert(k K) {
	if len(x.blocks) == 0 {
		x.blocks = [][]K{{k}}
		x.n = 1
		return
	}
	bi, pos, ok := x.find(k)
	if ok {
		return
	}
	b := slices.Insert(x.blocks[bi], pos, k)
	x.n++
	if len(b) <= 2*indexBlock {
		x.blocks[bi] = b
		if x.lasts != nil {
			x.lasts[bi] = b[len(b)-1]
		}
		return
	}
	// Split: each half gets an array of its own, of the longest block's size: the
	// array Insert just grew is about twice that, and kept by the lower half it
	// cost a third of the index's memory.
	lower := append(make([]K, 0, 2*indexBlock), b[:indexBlock]...)
	upper := append(make([]K, 0, 2*indexBlock), b[indexBlock:]...)
	x.blocks[bi] = lower
	x.blocks = slices.Insert(x.blocks, bi+1, upper)
	if x.lasts == nil {
		x.lasts = []K{lower[len(lower)-1], upper[len(upper)-1]}
		return
	}
	x.lasts[bi] = lower[len(lower)-1]
	x.lasts = slices.Insert(x.lasts, bi+1, upper[len(upper)-1])
}

// remove deletes k (nothing if it is not there).
func (x *blockSet[K]) remove(k K) {
	bi, pos, ok := x.find(k)
	if !ok {
		return
	}
	b := x.blocks[bi]
	copy(b[pos:], b[pos+1:])
	var zero K
	b[len(b)-1] = zero
	b = b[:len(b)-1]
	x.n--
	if len(b) == 0 {
		x.blocks = slices.Delete(x.blocks, bi, bi+1)
		if len(x.blocks) <= 1 {
			x.lasts = nil
		} else {
			x.lasts = slices.Delete(x.lasts, bi, bi+1)
		}
		return
	}
	x.blocks[bi] = b
	if x.lasts != nil {
		x.lasts[bi] = b[len(b)-1]
	}
}

// len is the number of keys held.
func (x *blockSet[K]) len() int { return x.n }

// insert adds id (nothing if it is there).
func (x *idIndex) insert(id string) {
	if k, ok := rawKey(id); ok {
		x.raws.insert(rawIDOf(k))
		return
	}
	x.ids.insert(idKey(id))
}

// remove deletes id (nothing if it is not there).
func (x *idIndex) remove(id string) {
	if k, ok := rawKey(id); ok {
		x.raws.remove(rawIDOf(k))
		return
	}
	x.ids.remove(idKey(id))
}

// has reports whether id is indexed.
func (x *idIndex) has(id string) bool {
	if k, ok := rawKey(id); ok {
		_, _, ok := x.raws.find(rawIDOf(k))
		return ok
	}
	_, _, ok := x.ids.find(idKey(id))
	return ok
}

// held is the number of tasks indexed.
func (x *idIndex) held() int { return x.ids.n + x.raws.n }

// check verifies the invariants of both sets.
func (x *idIndex) check() error {
	if err := x.ids.check(); err != nil {
		return fmt.Errorf("IDs: %w", err)
	}
	if err := x.raws.check(); err != nil {
		return fmt.Errorf("raw keys: %w", err)
	}
	return nil
}

// idCursor iterates the IDs of an index in order; a cursor over raw keys yields
// the IDs they stand for.
type idCursor interface {
	// peek returns the ID at the cursor; ok is false at the end.
	peek() (string, bool)
	// next moves the cursor on by one.
	next()
}

// cursor iterates a blockSet in order, from the first key above a bound.
type cursor[K setKey[K]] struct {
	x          *blockSet[K]
	block, pos int
}

// after returns a cursor at the first key above `after` (every key, when all
// is true).
func (x *blockSet[K]) after(after K, all bool) cursor[K] {
	c := cursor[K]{x: x}
	if all {
		return c
	}
	c.block = x.blockAbove(after)
	if c.block < len(x.blocks) {
		b := x.blocks[c.block]
		c.pos = searchKeys(b, after)
		if c.pos < len(b) && b[c.pos] == after {
			c.next()
		}
	}
	return c
}

// at returns the key at the cursor; ok is false at the end.
func (c *cursor[K]) at() (k K, ok bool) {
	if c.x == nil || c.block >= len(c.x.blocks) {
		return k, false
	}
	return c.x.blocks[c.block][c.pos], true
}

// next moves the cursor on by one.
func (c *cursor[K]) next() {
	c.pos++
	if c.pos >= len(c.x.blocks[c.block]) {
		c.block, c.pos = c.block+1, 0
	}
}

// idsCursor is a cursor over IDs.
type idsCursor struct{ cursor[idKey] }

func (c *idsCursor) peek() (string, bool) {
	k, ok := c.at()
	return string(k), ok
}

// rawCursor is a cursor over raw keys, yielding the IDs they stand for.
type rawCursor struct{ cursor[rawID] }

func (c *rawCursor) peek() (string, bool) {
	k, ok := c.at()
	if !ok {
		return "", false
	}
	return k.id(), true
}

// after returns a cursor over the IDs of entries above `after` ("": the first).
func (x *idIndex) after(after string) *idsCursor {
	return &idsCursor{x.ids.after(idKey(after), after == "")}
}

// rawAfter returns a cursor over the raw keys whose ID is above `after`.
func (x *idIndex) rawAfter(after string) *rawCursor {
	if k, ok := rawKey(after); ok {
		return &rawCursor{x.raws.after(rawIDOf(k), false)}
	}
	// Not a UUID: compare as IDs.
	f := &x.raws
	above := func(k rawID) bool { return k.id() > after }
	c := cursor[rawID]{x: f}
	c.block = sort.Search(len(f.blocks), func(i int) bool { b := f.blocks[i]; return above(b[len(b)-1]) })
	if c.block < len(f.blocks) {
		b := f.blocks[c.block]
		c.pos = sort.Search(len(b), func(j int) bool { return above(b[j]) })
	}
	return &rawCursor{c}
}

// check verifies the invariant, for tests and CheckCounts.
func (x *blockSet[K]) check() error {
	if len(x.blocks) <= 1 && x.lasts != nil || len(x.blocks) > 1 && len(x.lasts) != len(x.blocks) {
		return fmt.Errorf("%d blocks, %d last keys", len(x.blocks), len(x.lasts))
	}
	n := 0
	var prev K
	for i, b := range x.blocks {
		if len(b) == 0 || len(b) > 2*indexBlock {
			return fmt.Errorf("block %d holds %d keys", i, len(b))
		}
		for j, k := range b {
			if (i > 0 || j > 0) && k.compare(prev) <= 0 {
				return fmt.Errorf("block %d: %v after %v", i, k, prev)
			}
			prev = k
		}
		if x.lasts != nil && x.lasts[i] != b[len(b)-1] {
			return fmt.Errorf("block %d ends with %v, its last key is %v", i, b[len(b)-1], x.lasts[i])
		}
		n += len(b)
	}
	if n != x.n {
		return fmt.Errorf("holds %d keys, counts %d", n, x.n)
	}
	return nil
}

// stateKey names a queue's tasks in one state.
type stateKey struct {
	queue string
	state TaskState
}

// indexTask adds (d = +1) or removes (d = -1) e's ID from the index of its queue
// and state s. Called from count, so it follows the counters exactly.
func (n *Node) indexTask(e *entry, s TaskState, d int) {
	k := stateKey{e.task.Queue, s}
	x := n.index[k]
	if d > 0 {
		if x == nil {
			x = &idIndex{}
			n.index[k] = x
			n.markQueue(k.queue, refTasks, true)
		}
		x.insert(e.task.ID)
		return
	}
	if x == nil {
		return
	}
	x.remove(e.task.ID)
	if x.held() == 0 {
		delete(n.index, k)
		n.markQueue(k.queue, refTasks, n.holdsQueue(k.queue))
	}
}

// indexRaw adds the task of raw key raw, in queue q and state s, to the index
// (recount, for a task made cold in Start: it has no entry to pass indexTask).
func (n *Node) indexRaw(q string, s TaskState, raw rawID) {
	k := stateKey{q, s}
	x := n.index[k]
	if x == nil {
		x = &idIndex{}
		n.index[k] = x
		n.markQueue(q, refTasks, true)
	}
	x.raws.insert(raw)
}

// holdsQueue reports whether any task of q is indexed.
func (n *Node) holdsQueue(q string) bool {
	for s := StateScheduled; s <= StateCancelled; s++ {
		if n.index[stateKey{q, s}] != nil {
			return true
		}
	}
	return false
}

// listIDs returns up to limit IDs above `after` of a queue's tasks in state
// (StateNone: any state), in order: one index, or a merge of the state indexes.
func (n *Node) listIDs(queue string, state TaskState, after string, limit int) []string {
	var cursors []idCursor
	for s := StateScheduled; s <= StateCancelled; s++ {
		if state != StateNone && s != state {
			continue
		}
		if x := n.index[stateKey{queue, s}]; x != nil {
			cursors = append(cursors, x.after(after), x.rawAfter(after))
		}
	}
	var out []string
	for len(out) < limit {
		best := -1
		var bestID string
		for i := range cursors {
			if id, ok := cursors[i].peek(); ok && (best < 0 || id < bestID) {
				best, bestID = i, id
			}
		}
		if best < 0 {
			break
		}
		out = append(out, bestID)
		cursors[best].next()
	}
	return out
}

// checkIndex compares the indexes with the tasks held: nil when they agree.
func (n *Node) checkIndex() error {
	held := 0
	for _, e := range n.heldEntries() {
		if e.state == StateNone {
			continue
		}
		held++
		x := n.index[stateKey{e.task.Queue, e.state}]
		if x == nil {
			return fmt.Errorf("task %s (queue %q, %s) is in no index", e.task.ID, e.task.Queue, e.state)
		}
		if !x.has(e.task.ID) {
			return fmt.Errorf("task %s (queue %q, %s) is not in its index", e.task.ID, e.task.Queue, e.state)
		}
	}
	indexed := 0
	var errs []string
	for k, x := range n.index { // sorted below
		indexed += x.held()
		if err := x.check(); err != nil {
			errs = append(errs, fmt.Sprintf("index of queue %q %s: %v", k.queue, k.state, err))
		}
	}
	if len(errs) > 0 {
		slices.Sort(errs)
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	if indexed != held {
		return fmt.Errorf("the indexes hold %d task IDs, the node %d tasks", indexed, held)
	}
	return nil
}
