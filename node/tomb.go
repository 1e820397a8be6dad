package node

import (
	"container/heap"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/google/uuid"
)

// Finished tasks in a compact form. A task that reached a final state is kept for
// the dedup window (an hour by default) so that its name, its claims and its
// status still get the answers they got while it ran. As an entry (its entryExtra,
// a Task copy, its history) it cost about 1,050 bytes; a node that finishes a
// thousand tasks a second would hold 3.6 million of them. So once a finished entry
// is idle (its forget timer armed, nothing in flight) and older than the
// Config.FinishedDetail most recently finished ones, it is frozen: encoded into one
// record (a tomb, kept in tombArena), found in tombs by ID, and the entry is dropped. Whatever
// addresses the task again (a claim, an outcome, a store, a move, its forget
// timer) thaws it back into an entry first (entryOf), and the end of the input
// queues it to be frozen again; reads that change nothing (Task, Acceptor, a
// status answer) decode it without thawing (peek).
//
// Invariant: freezing changes no answer. Every field of the entry, its extra and
// its task is encoded, except two a status answer shows and no decision reads: the
// worker's answer prefix (Body) and the transport error's text (Message) of each
// line of the attempt history; the compact form keeps the line itself (attempt,
// node, start, duration, status, error kind). A tomb is counted and indexed under
// its state as the entry was (freezing touches no counter), and its place in the
// forget queue stays valid (forgetItem names the task by ID and its place).

// tombable reports whether e may be frozen now: final, held, waiting out the
// dedup window and nothing in flight or in the timer heap; no move state (the
// encoding has no place for a pending replica list).
func (n *Node) tombable(e *entry) bool {
	return e.state.Final() && e.timerKind == timerForget && e.timerIdx == 0 && n.tasks[e.task.ID] == e &&
		!e.delivering && !e.moving && e.move == nil && e.bestPending == nil && e.pending == nil
}

// freeze replaces e, if it may be, by its tomb. It reports whether it did.
//
// A frozen task is named by its raw key, the 16 bytes of its ID (a UUID: every
// ID a node makes is one; a task of another ID stays an entry), in tombs and in
// the forget queue: the 36-character ID cost a 48-byte string. The index keeps
// every UUID by raw key already (index.go), so freezing leaves it alone.
func (n *Node) freeze(e *entry) bool {
	k, ok := rawKey(e.task.ID)
	if !ok || !n.tombable(e) {
		return false
	}
	if n.index[stateKey{e.task.Queue, e.state}] == nil {
		return false // not indexed (cannot happen to a held final task)
	}
	rec, ok := n.encodeTomb(e)
	if !ok {
		return false
	}
	raw := string(k[:])
	delete(n.tasks, e.task.ID)
	n.tombs[rawIDOf(k)] = n.arena.put(rec)
	n.renameForget(e, raw)
	e.frozen = true
	return true
}

// rawKey returns the 16 bytes a UUID in canonical form (lower case) stands for;
// ok is false for any other string. Every index insertion and removal, lookup of
// a tomb and freeze parses an ID, so it reads each digit's value from a table.
func rawKey(id string) (k [16]byte, ok bool) {
	if len(id) != 36 || id[8] != '-' || id[13] != '-' || id[18] != '-' || id[23] != '-' {
		return k, false
	}
	var bad byte
	for j, i := range uuidDigitPairs {
		hi, lo := hexValue[id[i]], hexValue[id[i+1]]
		bad |= hi | lo
		k[j] = hi<<4 | lo
	}
	if bad > 0xf {
		return [16]byte{}, false
	}
	return k, true
}

// uuidDigitPairs are the offsets in a UUID's canonical form of its 16 bytes'
// first hex digits.
var uuidDigitPairs = [16]uint8{0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34}

// hexValue is the value of each lower-case hex digit, and 0xff for any other byte.
var hexValue = func() (t [256]byte) {
	for c := range t {
		switch {
		case '0' <= c && c <= '9':
			t[c] = byte(c - '0')
		case 'a' <= c && c <= 'f':
			t[c] = byte(c - 'a' + 10)
		default:
			t[c] = 0xff
		}
	}
	return t
}()

// idOfRaw returns the ID a raw key stands for.
func idOfRaw(raw string) string {
	var u uuid.UUID
	copy(u[:], raw)
	return u.String()
}

// tombOf returns the handle of id's tomb.
func (n *Node) tombOf(id string) (uint64, bool) {
	k, ok := rawKey(id)
	if !ok {
		return 0, false
	}
	h, ok := n.tombs[rawIDOf(k)]
	return h, ok
}

// entryOf returns the entry of a held task, thawing it from its tomb if it was
// frozen or cold (it is queued to be frozen, or to go cold, again once the input
// ends); nil when the task is not held. Every lookup that may change the task or
// its timers goes through it.
func (n *Node) entryOf(id string) *entry {
	if e := n.tasks[id]; e != nil {
		return e
	}
	e := n.thaw(id)
	if e == nil {
		return nil
	}
	if e.timerKind == timerFire {
		n.queueCool(id)
	} else {
		n.toFreeze = append(n.toFreeze, id)
	}
	return e
}

// thaw brings a frozen or cold task back into its entry (a cold one's timer back
// into the node's heap, at its place: its due time and arm order are the ones it
// had); nil when id has no tomb.
func (n *Node) thaw(id string) *entry {
	h, ok := n.tombOf(id)
	if !ok {
		return nil
	}
	e := n.decodeHeld(id, h)
	k, _ := rawKey(id)
	delete(n.tombs, rawIDOf(k))
	n.releaseTomb(h)
	n.tasks[id] = e
	n.tasksPeak = max(n.tasksPeak, len(n.tasks))
	if h&coldHandle != 0 {
		n.colds--
		n.coldTopOK = false // its cold item is stale now
		heap.Push(&n.timers, e)
	}
	return e
}

// peek returns the entry of a held task for reading only: a frozen one is decoded
// into a copy that is not held (changing it changes nothing). nil when not held.
func (n *Node) peek(id string) *entry {
	if e := n.tasks[id]; e != nil {
		return e
	}
	if h, ok := n.tombOf(id); ok {
		return n.decodeHeld(id, h)
	}
	return nil
}

// stateNow is the state of the task e was the entry of: e's own while it is held;
// once it was frozen, that of the task's current entry or tomb (a closure that
// captured e may run after e was frozen and thawed anew).
func (n *Node) stateNow(e *entry) TaskState {
	if e.frozen {
		if cur := n.peek(e.task.ID); cur != nil {
			return cur.state
		}
	}
	return e.state
}

// queueFreeze puts e in line to be frozen once FinishedDetail tasks finished
// after it (called as its forget timer is armed).
func (n *Node) queueFreeze(e *entry) {
	n.toFreeze = append(n.toFreeze, e.task.ID)
}

// freezeOld freezes, at the end of an input, the queued entries beyond the
// FinishedDetail most recent. An entry no longer held, or not idle, is skipped: it
// is queued again when its forget timer is armed again.
func (n *Node) freezeOld() {
	for len(n.toFreeze)-n.freezeHead > n.cfg.FinishedDetail {
		id := n.toFreeze[n.freezeHead]
		n.toFreeze[n.freezeHead] = ""
		n.freezeHead++
		if e := n.tasks[id]; e != nil {
			n.freeze(e)
		}
	}
	// Reclaim the consumed prefix once it is most of the array.
	if n.freezeHead > 1024 && n.freezeHead*2 > len(n.toFreeze) {
		n.toFreeze = append(n.toFreeze[:0], n.toFreeze[n.freezeHead:]...)
		n.freezeHead = 0
	}
	n.maybeShrinkTasks()
}

// maybeShrinkTasks copies tasks into a map of its size once it holds less than a
// quarter of its peak (order does not matter: every walk of tasks that reaches an
// output sorts).
func (n *Node) maybeShrinkTasks() {
	if n.tasksPeak < 4096 || len(n.tasks) > n.tasksPeak/4 {
		return
	}
	tasks := make(map[string]*entry, len(n.tasks))
	for id, e := range n.tasks { // copying: order does not matter
		tasks[id] = e
	}
	n.tasks = tasks
	n.tasksPeak = len(tasks)
}

// Tombs returns how many finished tasks this node holds in the compact form.
func (n *Node) Tombs() int { return len(n.tombs) - n.colds }

// --- the encoding -------------------------------------------------------------------

// maxWords bounds the node's dictionary of words (queue names, methods, content
// types, node IDs, URLs up to maxWordLen bytes): a tomb names each by its number.
// Past it, new words are written out in full, so that a stream of distinct URLs
// cannot grow it without end.
const (
	maxWords   = 4096
	maxWordLen = 256
)

// tombWriter appends the fields of a tomb.
type tombWriter struct {
	n   *Node
	buf []byte
	ok  bool // false once a value had no encoding (a time beyond int64 nanoseconds)
}

func (w *tombWriter) uvarint(v uint64) { w.buf = binary.AppendUvarint(w.buf, v) }
func (w *tombWriter) varint(v int64)   { w.buf = binary.AppendVarint(w.buf, v) }
func (w *tombWriter) str(s string)     { w.uvarint(uint64(len(s))); w.buf = append(w.buf, s...) }

// word writes s as its number in the dictionary (adding it while there is room),
// else in full after a 0.
func (w *tombWriter) word(s string) {
	n := w.n
	code, ok := n.wordCode[s]
	if !ok && len(n.words) < maxWords && len(s) <= maxWordLen {
		s = common(s)
		n.words = append(n.words, s)
		code = uint32(len(n.words))
		n.wordCode[s] = code
		ok = true
	}
	if ok {
		w.uvarint(uint64(code))
		return
	}
	w.uvarint(0)
	w.str(s)
}

// time writes t as nanoseconds after base (zero: absent, written as 0 by the
// caller's presence bit).
func (w *tombWriter) time(t time.Time, base int64) {
	ns := t.UnixNano()
	if t.Before(minTombTime) || t.After(maxTombTime) {
		w.ok = false
	}
	w.varint(ns - base)
}

// The times a tomb can hold: those int64 nanoseconds since 1970 can name.
var (
	minTombTime = time.Unix(0, math.MinInt64/2)
	maxTombTime = time.Unix(0, math.MaxInt64/2)
)

// tombReader reads the fields of a tomb in the order tombWriter wrote them.
type tombReader struct {
	n   *Node
	buf []byte
}

func (r *tombReader) uvarint() uint64 {
	v, k := binary.Uvarint(r.buf)
	if k <= 0 {
		panic(fmt.Sprintf("node: a tomb ends inside a varint (%d bytes left)", len(r.buf)))
	}
	r.buf = r.buf[k:]
	return v
}

func (r *tombReader) varint() int64 {
	u := r.uvarint()
	return int64(u>>1) ^ -int64(u&1)
}

func (r *tombReader) fixed64() uint64 {
	v := binary.LittleEndian.Uint64(r.buf[:8])
	r.buf = r.buf[8:]
	return v
}

func (r *tombReader) str() string {
	l := int(r.uvarint())
	s := string(r.buf[:l]) // a copy: the arena's bytes are not kept
	r.buf = r.buf[l:]
	return s
}

func (r *tombReader) word() string {
	if code := r.uvarint(); code != 0 {
		return r.n.words[code-1]
	}
	return common(r.str())
}

func (r *tombReader) time(base int64) time.Time {
	return time.Unix(0, base+r.varint()).UTC()
}

// tombFields lists the fields of an entry and its extra that a tomb keeps beside
// the task and the history, in the order it writes them. A field added to entry or
// entryExtra must be added here (TestTombKeepsEveryField fails until it is) or to
// tombable's conditions.
//
// It returns an array, not a slice, so that the list stays on the stack: as a
// slice it was half of what freezing a task allocated.
func tombFields(e *entry, x *entryExtra) [tombFieldCount]any {
	return [tombFieldCount]any{
		&e.nextETA, &e.notBefore, &e.floor, &e.timerAt, &e.rank,
		&x.retries, &x.failed, &x.failedBits, &x.lastStatus,
		&x.promised, &x.holder, random{&x.holderRound}, &x.leaseEnd, &x.released,
		&x.claiming, sameOr{x}, &x.permitting, &x.permitted, &x.permitAsked, &x.claimTook, &x.seen, &x.failedRounds,
		&x.claimSent, &x.grants, &x.rejects, &x.unknowns,
		&x.bestBallot, &x.pendingBallot, &x.outcomeAcks, &x.outcomeSends,
		&x.amnesiac, &x.amnesiacWaited, &x.naiveStoodDown, &x.due, &x.reason,
	}
}

// tombFieldCount is the number of fields tombFields lists.
const tombFieldCount = 35

// random is a field of random bits (a claim round's number): 8 bytes, where a
// varint would take 10.
type random struct{ p *uint64 }

// sameOr is a random field that often equals another written before it (the
// claimant's round and the round its own grant went to): one byte when it does.
// It holds one pointer, so that listing it in tombFields allocates nothing.
type sameOr struct{ x *entryExtra }

func (f sameOr) p() *uint64    { return &f.x.round }
func (f sameOr) same() *uint64 { return &f.x.holderRound }

// Flags of a tomb's header beside the presence bits of tombFields.
const (
	tombHasExtra = 1 << iota // the entry had an entryExtra of its own
	tombHasHistory
	tombFlagBits = iota
)

// encodeTomb encodes e. ok is false when some value has no encoding.
func (n *Node) encodeTomb(e *entry) ([]byte, bool) {
	w := tombWriter{n: n, buf: n.tombScratch[:0], ok: true}
	t := e.task
	base := t.Created.UnixNano()
	w.time(t.Created, n.bootTime.UnixNano()) // fewer bytes than from 1970
	n.encodeTask(&w, t, base)
	w.buf = append(w.buf, byte(e.state))

	fields := tombFields(e, e.entryExtra)
	var present uint64
	if e.entryExtra != &noExtra {
		present |= tombHasExtra
	}
	if len(e.history) > 0 {
		present |= tombHasHistory
	}
	for i, f := range &fields {
		if !isZeroField(f) {
			present |= 1 << (tombFlagBits + i)
		}
	}
	w.uvarint(present)
	for i, f := range &fields {
		if present&(1<<(tombFlagBits+i)) != 0 {
			w.field(f, base)
		}
	}
	if present&tombHasHistory != 0 {
		w.uvarint(uint64(len(e.history)))
		for _, a := range e.history {
			w.attempt(a, base)
		}
	}
	n.tombScratch = w.buf
	return w.buf, w.ok
}

// encodeTask writes the task's fields but its ID (the tomb's key) and Created (the
// tomb's first field, the base of its times).
func (n *Node) encodeTask(w *tombWriter, t *Task, base int64) {
	w.word(t.Queue)
	w.str(t.Name)
	w.word(t.URL)
	w.word(t.Method)
	w.uvarint(uint64(len(t.Headers)))
	for _, h := range t.Headers {
		w.word(h.Name)
		w.str(h.Value)
	}
	w.word(t.ContentType)
	if t.Body == nil {
		w.uvarint(0)
	} else {
		w.uvarint(uint64(len(t.Body)) + 1)
		w.buf = append(w.buf, t.Body...)
	}
	w.time(t.ETA, base)
	w.buf = binary.LittleEndian.AppendUint64(w.buf, t.Nonce)
	w.buf = append(w.buf, byte(t.Delivery))
	w.uvarint(uint64(len(t.Replicas)))
	for _, r := range t.Replicas {
		w.word(string(r))
	}
	w.uvarint(t.ListVersion)
}

func (w *tombWriter) attempt(a DeliveryAttempt, base int64) {
	w.uvarint(a.Number)
	w.word(string(a.Node))
	w.time(a.Start, base)
	w.varint(int64(a.Duration))
	flags := uint64(a.Error) << 1
	if a.InFlight {
		flags |= 1
	}
	w.uvarint(flags)
	w.varint(int64(a.Status))
}

func (w *tombWriter) field(f any, base int64) {
	switch p := f.(type) {
	case *uint64:
		w.uvarint(*p)
	case random:
		w.buf = binary.LittleEndian.AppendUint64(w.buf, *p.p)
	case sameOr:
		if *p.p() == *p.same() {
			w.buf = append(w.buf, 0)
			return
		}
		w.buf = append(w.buf, 1)
		w.buf = binary.LittleEndian.AppendUint64(w.buf, *p.p())
	case *int64: // timerAt: of a task armed for forgetting, its place in the queue
		w.varint(*p)
	case *time.Duration:
		w.varint(int64(*p))
	case *int:
		w.varint(int64(*p))
	case *bool: // present means true
	case *NodeID:
		w.word(string(*p))
	case *string:
		w.str(*p)
	case *time.Time:
		w.time(*p, base)
	default:
		panic(fmt.Sprintf("node: tomb field of type %T", f))
	}
}

func isZeroField(f any) bool {
	switch p := f.(type) {
	case *uint64:
		return *p == 0
	case random:
		return *p.p == 0
	case sameOr:
		return *p.p() == 0
	case *int64:
		return *p == 0
	case *time.Duration:
		return *p == 0
	case *int:
		return *p == 0
	case *bool:
		return !*p
	case *NodeID:
		return *p == ""
	case *string:
		return *p == ""
	case *time.Time:
		return p.IsZero()
	}
	panic(fmt.Sprintf("node: tomb field of type %T", f))
}

// decodeTomb rebuilds the entry a tomb was encoded from (see the invariant above).
func (n *Node) decodeTomb(id string, rec []byte) *entry {
	r := tombReader{n: n, buf: rec}
	created := r.time(n.bootTime.UnixNano())
	base := created.UnixNano()
	t := &Task{ID: id, Created: created}
	n.decodeTask(&r, t, base)
	e := &entry{entryExtra: &noExtra, task: t, timerKind: timerForget}
	e.state = TaskState(r.buf[0])
	r.buf = r.buf[1:]
	present := r.uvarint()
	x := &entryExtra{}
	for i, f := range tombFields(e, x) {
		if present&(1<<(tombFlagBits+i)) != 0 {
			r.field(f, base)
		}
	}
	if present&tombHasHistory != 0 {
		x.history = make([]DeliveryAttempt, r.uvarint())
		for i := range x.history {
			x.history[i] = r.attempt(base)
		}
	}
	if present&tombHasExtra != 0 {
		e.entryExtra = x
	}
	return e
}

func (n *Node) decodeTask(r *tombReader, t *Task, base int64) {
	t.Queue = r.word()
	t.Name = r.str()
	t.URL = r.word()
	t.Method = r.word()
	if k := r.uvarint(); k > 0 {
		t.Headers = make([]Header, k)
		for i := range t.Headers {
			t.Headers[i] = Header{Name: r.word(), Value: r.str()}
		}
	}
	t.ContentType = r.word()
	if l := r.uvarint(); l > 0 {
		t.Body = append([]byte(nil), r.buf[:l-1]...)
		r.buf = r.buf[l-1:]
	}
	t.ETA = r.time(base)
	t.Nonce = r.fixed64()
	t.Delivery = DeliveryMode(r.buf[0])
	r.buf = r.buf[1:]
	if k := r.uvarint(); k > 0 {
		t.Replicas = make([]NodeID, k)
		for i := range t.Replicas {
			t.Replicas[i] = NodeID(r.word())
		}
	}
	t.ListVersion = r.uvarint()
}

func (r *tombReader) attempt(base int64) DeliveryAttempt {
	a := DeliveryAttempt{Number: r.uvarint(), Node: NodeID(r.word())}
	a.Start = r.time(base)
	a.Duration = time.Duration(r.varint())
	flags := r.uvarint()
	a.InFlight = flags&1 != 0
	a.Error = ErrorKind(flags >> 1)
	a.Status = int(r.varint())
	return a
}

func (r *tombReader) field(f any, base int64) {
	switch p := f.(type) {
	case *uint64:
		*p = r.uvarint()
	case random:
		*p.p = r.fixed64()
	case sameOr:
		same := r.buf[0] == 0
		r.buf = r.buf[1:]
		if same {
			*p.p() = *p.same()
			return
		}
		*p.p() = r.fixed64()
	case *int64:
		*p = r.varint()
	case *time.Duration:
		*p = time.Duration(r.varint())
	case *int:
		*p = int(r.varint())
	case *bool:
		*p = true
	case *NodeID:
		*p = NodeID(r.word())
	case *string:
		*p = r.str()
	case *time.Time:
		*p = r.time(base)
	default:
		panic(fmt.Sprintf("node: tomb field of type %T", f))
	}
}

// tombIDs returns the IDs of the frozen and cold tasks, sorted.
func (n *Node) tombIDs() []string {
	ids := make([]string, 0, len(n.tombs))
	for raw := range n.tombs {
		ids = append(ids, raw.id())
	}
	slices.Sort(ids)
	return ids
}

// heldEntries returns every task held, live and frozen (decoded, not thawed), in
// no order: for the checks of the counters and indexes.
func (n *Node) heldEntries() []*entry {
	out := make([]*entry, 0, len(n.tasks)+len(n.tombs))
	for _, e := range n.tasks {
		out = append(out, e)
	}
	for raw, h := range n.tombs {
		e := n.decodeHeld(raw.id(), h)
		e.frozen = true
		out = append(out, e)
	}
	return out
}
