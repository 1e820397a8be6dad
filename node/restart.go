package node

import (
	"slices"
	"strings"
)

// A restart's memory. A node with a million pending tasks on disk used to rebuild
// every one as an entry from the log (with the log's records all in memory beside
// them) before any went cold, and its resident set after a restart stayed at that
// peak: 1.3 GiB where the running node had needed 0.4. So Start keeps the tasks
// compact from the log to the first input:
//
//   - While the log is read, every PendingDetail records, the tasks created (or
//     thawed) since the last look that have nothing but their task and due time
//     (no entryExtra) are encoded as tombs (tomb.go) into a store of their own
//     (replayStore); a later record for one thaws it back into tasks before replay
//     applies it, so replay reads tasks as it always did. With a Storage that
//     streams (RecordStreamer) the records are not kept either.
//   - The timers are armed in ID order as before, each stored task decoded just
//     before it is armed; a task the line leaves PendingDetail behind goes cold
//     at once (coolOld without its per-input bound: no input waits on Start), and
//     its counters are added by recount from a short note (coldCount).
//
// Invariant: none of this changes what the node does. Replay sees the entries it
// would have seen (a tomb decodes to the entry it encoded), the timers are armed
// in the same order at the same times, a cold task behaves as its entry, and
// recount ends with the counters and index it would have built from the entries.

// replayStore holds the tasks compacted while the log is read: their tombs by raw
// key, and the IDs created or thawed since the last look.
type replayStore struct {
	n       *Node
	handles map[rawID]uint64
	arena   tombArena
	line    []string
	applied int
	off     bool // a lossy start: every task needs its extra, none is compacted
}

func newReplayStore(n *Node, lossy bool) *replayStore {
	return &replayStore{n: n, handles: map[rawID]uint64{}, off: lossy}
}

// apply replays r, its task thawed from the store first when it is there.
func (s *replayStore) apply(r *Record) {
	id := r.TaskID
	if r.Kind == RecTask {
		id = r.Task.ID
	}
	if id != "" && s.n.tasks[id] == nil {
		s.thaw(id)
	}
	s.n.replay(*r)
	if id != "" && !s.off {
		s.line = append(s.line, id)
	}
	// As many records between two looks as tasks a running node keeps in full
	// (1,000 by default; a test's 1 compacts after every record).
	if s.applied++; s.applied%max(s.n.cfg.PendingDetail, 1) == 0 {
		s.compactLine()
	}
}

// thaw moves the stored task id back into tasks; nothing when it is not stored.
func (s *replayStore) thaw(id string) *entry {
	k, ok := rawKey(id)
	if !ok {
		return nil
	}
	h, ok := s.handles[rawIDOf(k)]
	if !ok {
		return nil
	}
	e := s.n.decodeTomb(id, s.arena.get(h))
	e.timerKind = timerNone // as replay made it: no timer is armed before the loop in Start
	delete(s.handles, rawIDOf(k))
	s.arena.release(h)
	s.n.tasks[id] = e
	return e
}

// compactLine stores the tasks of the line that have nothing but their task.
func (s *replayStore) compactLine() {
	for _, id := range s.line {
		e := s.n.tasks[id]
		if e == nil || e.state != StateScheduled || e.entryExtra != &noExtra || e.timerKind != timerNone {
			continue
		}
		k, ok := rawKey(id)
		if !ok {
			continue
		}
		rec, ok := s.n.encodeTomb(e)
		if !ok {
			continue
		}
		s.handles[rawIDOf(k)] = s.arena.put(rec)
		delete(s.n.tasks, id)
	}
	clear(s.line)
	s.line = s.line[:0]
}

// eachInOrder calls visit with the ID of every task replayed, entries and
// stored, in ID order (a raw key orders as its UUID's canonical form does); visit
// may move tasks between the two. The stored ones' ID strings are made one at a
// time.
func (s *replayStore) eachInOrder(visit func(id string)) {
	raws := make([]rawID, 0, len(s.handles))
	for raw := range s.handles {
		raws = append(raws, raw)
	}
	slices.SortFunc(raws, compareRaw)
	ids := sortedKeys(s.n.tasks)
	i := 0
	for _, raw := range raws {
		id := raw.id()
		for ; i < len(ids) && strings.Compare(ids[i], id) < 0; i++ {
			visit(ids[i])
		}
		visit(id)
	}
	for ; i < len(ids); i++ {
		visit(ids[i])
	}
}

func compareRaw(a, b rawID) int {
	switch {
	case a.hi != b.hi:
		if a.hi < b.hi {
			return -1
		}
		return 1
	case a.lo < b.lo:
		return -1
	case a.lo > b.lo:
		return 1
	}
	return 0
}

// entry returns the entry of id, thawed from the store when it is there.
func (s *replayStore) entry(id string) *entry {
	if e := s.n.tasks[id]; e != nil {
		return e
	}
	return s.thaw(id)
}

// coldCount is what a task made cold in Start adds to the counters (recount).
type coldCount struct {
	raw    rawID
	queue  string
	before string
	bytes  int64
}

// coolStarted makes cold the tasks armed in Start that the line left
// PendingDetail behind, as coolOld does at the end of an input but with no bound,
// and notes what each adds to the counters.
func (n *Node) coolStarted(notes []coldCount) []coldCount {
	for len(n.toCool)-n.coolHead > n.cfg.PendingDetail {
		id := n.toCool[n.coolHead]
		n.toCool[n.coolHead] = ""
		n.coolHead++
		e := n.tasks[id]
		if e == nil || !n.coolable(e, n.lastNow) {
			continue
		}
		k, ok := rawKey(id)
		if !ok {
			continue
		}
		note := coldCount{raw: rawIDOf(k), queue: e.task.Queue, before: e.before(), bytes: taskBytes(e.task)}
		if n.freezeColdAs(e, k) {
			notes = append(notes, note)
		}
	}
	if n.coolHead > 1024 && n.coolHead*2 > len(n.toCool) {
		n.toCool = append(n.toCool[:0], n.toCool[n.coolHead:]...)
		n.coolHead = 0
	}
	return notes
}

// countCold adds to the counters and the index the tasks of notes still cold (a
// task thawed since is among the entries recount counted).
func (n *Node) countCold(notes []coldCount) int {
	counted := 0
	for _, c := range notes {
		if h, ok := n.tombs[c.raw]; !ok || h&coldHandle == 0 {
			continue
		}
		counted++
		n.indexRaw(c.queue, StateScheduled, c.raw)
		n.counts[countKey{queue: c.queue, state: StateScheduled, before: c.before}]++
		n.open++
		n.openBytes += c.bytes
		n.openByQueue[c.queue]++
	}
	return counted
}
