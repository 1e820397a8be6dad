package node

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Listings page through a queue's tasks by ID. Sorting every task ID of the node
// for each page cost about 50 ms with 100,000 tasks, on the node's goroutine, so a
// few clients listing at once stalled every enqueue. Instead each (queue, state)
// keeps its task IDs in order, updated beside the counters (count), and a page of
// limit IDs after `after` costs O(log n + limit).

// idIndex is an ordered set of strings: a list of sorted blocks, each at most
// 2×indexBlock long. Invariant: every block is sorted and non-empty, and every
// string of a block is below every string of the next one.
type idIndex struct {
	blocks [][]string
	n      int
	// frozen indexes the frozen tasks (tomb.go) by raw key, the 16 bytes of their
	// ID; nil until one is. The order of raw keys is that of the IDs.
	frozen *idIndex
}

// indexBlock is half the longest block: an insertion moves at most 2×indexBlock
// strings within its block, a split at most n/indexBlock block headers.
const indexBlock = 256

// find returns the block that holds id or where it would go, and id's position
// in it; ok when id is there. With no blocks it returns 0, 0, false.
func (x *idIndex) find(id string) (block, pos int, ok bool) {
	if len(x.blocks) == 0 {
		return 0, 0, false
	}
	block = sort.Search(len(x.blocks), func(i int) bool { b := x.blocks[i]; return b[len(b)-1] >= id })
	if block == len(x.blocks) {
		block-- // above every string: the last block
	}
	pos, ok = slices.BinarySearch(x.blocks[block], id)
	return block, pos, ok
}

// insert adds id (nothing if it is there).
func (x *idIndex) insert(id string) {
	if len(x.blocks) == 0 {
		x.blocks = [][]string{{id}}
		x.n = 1
		return
	}
	bi, pos, ok := x.find(id)
	if ok {
		return
	}
	b := slices.Insert(x.blocks[bi], pos, id)
	x.n++
	if len(b) <= 2*indexBlock {
		x.blocks[bi] = b
		return
	}
	// Split: each half gets an array of its own, of the longest block's size: the
	// array Insert just grew is about twice that, and kept by the lower half it
	// cost a third of the index's memory.
	lower := append(make([]string, 0, 2*indexBlock), b[:indexBlock]...)
	upper := append(make([]string, 0, 2*indexBlock), b[indexBlock:]...)
	x.blocks[bi] = lower
	x.blocks = slices.Insert(x.blocks, bi+1, upper)
}

// remove deletes id (nothing if it is not there).
func (x *idIndex) remove(id string) {
	bi, pos, ok := x.find(id)
	if !ok {
		return
	}
	b := x.blocks[bi]
	copy(b[pos:], b[pos+1:])
	b[len(b)-1] = ""
	b = b[:len(b)-1]
	x.n--
	if len(b) == 0 {
		x.blocks = slices.Delete(x.blocks, bi, bi+1)
		return
	}
	x.blocks[bi] = b
}

// len is the number of strings held.
func (x *idIndex) len() int { return x.n }

// held is the number of tasks indexed: by ID, and frozen.
func (x *idIndex) held() int {
	if x.frozen == nil {
		return x.n
	}
	return x.n + x.frozen.n
}

// cursor iterates an idIndex in order, from the first string above a bound. A
// cursor over raw keys (a frozen index) yields the IDs they stand for.
type cursor struct {
	x          *idIndex
	block, pos int
	raw        bool
}

// after returns a cursor at the first string above `after` ("": the first).
func (x *idIndex) after(after string) cursor {
	bi := sort.Search(len(x.blocks), func(i int) bool { b := x.blocks[i]; return b[len(b)-1] > after })
	c := cursor{x: x, block: bi}
	if bi < len(x.blocks) {
		c.pos = sort.SearchStrings(x.blocks[bi], after)
		if c.pos < len(x.blocks[bi]) && x.blocks[bi][c.pos] == after {
			c.pos++
		}
	}
	return c
}

// rawAfter returns a cursor over raw keys at the first whose ID is above `after`.
func (x *idIndex) rawAfter(after string) cursor {
	if k, ok := rawKey(after); ok {
		c := x.after(string(k[:]))
		c.raw = true
		return c
	}
	// No ID of a task that can be frozen: compare as IDs.
	above := func(raw string) bool { return idOfRaw(raw) > after }
	bi := sort.Search(len(x.blocks), func(i int) bool { b := x.blocks[i]; return above(b[len(b)-1]) })
	c := cursor{x: x, block: bi, raw: true}
	if bi < len(x.blocks) {
		b := x.blocks[bi]
		c.pos = sort.Search(len(b), func(j int) bool { return above(b[j]) })
	}
	return c
}

// peek returns the string at the cursor; ok is false at the end.
func (c *cursor) peek() (string, bool) {
	if c.x == nil || c.block >= len(c.x.blocks) {
		return "", false
	}
	if c.raw {
		return idOfRaw(c.x.blocks[c.block][c.pos]), true
	}
	return c.x.blocks[c.block][c.pos], true
}

// next moves the cursor on by one.
func (c *cursor) next() {
	c.pos++
	if c.pos >= len(c.x.blocks[c.block]) {
		c.block, c.pos = c.block+1, 0
	}
}

// check verifies the invariant, for tests and CheckCounts.
func (x *idIndex) check() error {
	n, prev := 0, ""
	for i, b := range x.blocks {
		if len(b) == 0 || len(b) > 2*indexBlock {
			return fmt.Errorf("block %d holds %d strings", i, len(b))
		}
		for j, s := range b {
			if (i > 0 || j > 0) && s <= prev {
				return fmt.Errorf("block %d: %q after %q", i, s, prev)
			}
			prev = s
		}
		n += len(b)
	}
	if n != x.n {
		return fmt.Errorf("holds %d strings, counts %d", n, x.n)
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
	var cursors []cursor
	for s := StateScheduled; s <= StateCancelled; s++ {
		if state != StateNone && s != state {
			continue
		}
		if x := n.index[stateKey{queue, s}]; x != nil {
			cursors = append(cursors, x.after(after))
			if x.frozen != nil {
				cursors = append(cursors, x.frozen.rawAfter(after))
			}
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
		if e.frozen {
			k, _ := rawKey(e.task.ID)
			if x.frozen == nil {
				return fmt.Errorf("frozen task %s (queue %q, %s) is in no frozen index", e.task.ID, e.task.Queue, e.state)
			}
			if _, _, ok := x.frozen.find(string(k[:])); !ok {
				return fmt.Errorf("frozen task %s (queue %q, %s) is not in its frozen index", e.task.ID, e.task.Queue, e.state)
			}
		} else if _, _, ok := x.find(e.task.ID); !ok {
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
		if x.frozen != nil {
			if err := x.frozen.check(); err != nil {
				errs = append(errs, fmt.Sprintf("frozen index of queue %q %s: %v", k.queue, k.state, err))
			}
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
