package node

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"
)

// Snapshots: a node's whole state written as bytes between two inputs, and a node
// restored from them that goes on exactly as the original would (given the same
// inputs, it sends, delivers, records, arms and answers the same). The flight
// recorder (net/recorder) needs this to replay a run from the middle.
//
// Every field of the node and of what it points to is written, but for what is not
// state: the Env and what hangs on it (the Clock's cancels, the reply functions of
// the API's adapter), Config's functions (the restore's Config gives them), the
// encoding buffers, and a schedule run's parsed cron expression (parsed again from
// its schedule). The codec (snapshot_codec.go) is generated from the node's types
// by TestSnapshotCodecIsCurrent, which fails when a type changed since: a field
// added is a field written.
//
// The encoding: a magic, a version, then the fields in declaration order, as
// varints; a slice or map is its length plus one (0 is nil), a map's entries in
// the order of their keys' encodings; a pointer is 0 (nil), 1 and the value (the
// first time it is met), or 2 and its number (the n-th pointer met since), so
// that what two fields share they share again after a restore.

// snapshotMagic starts every snapshot; snapshotVersion changes with its encoding
// (a restore refuses another): whenever the generated codec changes, which
// TestSnapshotCodecIsCurrent enforces by the codec's digest per version.
const (
	snapshotMagic   = "MIYSNAP"
	snapshotVersion = 3
)

// ErrSnapshotVersion is a snapshot made by a build with another encoding.
var ErrSnapshotVersion = errors.New("node: snapshot of another encoding version")

// Snapshot writes the node's state. Call it between inputs, after Start.
func (n *Node) Snapshot() ([]byte, error) {
	if !n.started || n.inInput {
		return nil, errors.New("node: Snapshot outside of a started node's inputs")
	}
	w := newSnapW()
	w.buf = append(w.buf, snapshotMagic...)
	w.uvarint(snapshotVersion)
	w.Node(n)
	return w.buf, nil
}

// Restore builds a node from a Snapshot, with env for its environment and cfg for
// what a snapshot does not hold (Config's functions; every other field is the
// snapshotted node's). The node is started: it re-arms the alarms the snapshot
// holds for their deadlines (at once for a past one) and asks Storage again for the
// syncs it waited for; what a Sync answered before the snapshot is durable. It owes
// no answer to the clients of the snapshotted node's reply functions.
func Restore(cfg Config, env Env, snap []byte) (n *Node, err error) {
	if n, err = New(cfg, env); err != nil {
		return nil, err
	}
	if !bytes.HasPrefix(snap, []byte(snapshotMagic)) {
		return nil, errors.New("node: not a snapshot")
	}
	r := &snapR{buf: snap[len(snapshotMagic):], ptrs: []any{nil, &noExtra}}
	if v := r.uvarint(); v != snapshotVersion {
		return nil, fmt.Errorf("%w: %d, not %d", ErrSnapshotVersion, v, snapshotVersion)
	}
	env, msgObs, funcs := n.env, n.msgObs, n.funcs // New's, from env
	defer func() {
		if p := recover(); p != nil {
			n, err = nil, fmt.Errorf("node: corrupt snapshot: %v", p)
		}
	}()
	r.Node(n)
	if len(r.buf) != 0 {
		return nil, fmt.Errorf("node: corrupt snapshot: %d bytes after its end", len(r.buf))
	}
	n.env, n.msgObs, n.funcs = env, msgObs, funcs
	n.cfg.CheckTaskURL = cfg.CheckTaskURL
	n.reparseSpecs()
	n.rearm()
	return n, nil
}

// SyncsWaiting returns the numbers of the log syncs the node waits for, in the
// order it asked Storage for them (1, 2, ... since it was built: its Storage's
// Sync calls, counted). A node Restore built asked its Storage again for each, in
// this order, so that whoever numbers the syncs can pair them.
func (n *Node) SyncsWaiting() []uint64 { return slices.Sorted(maps.Keys(n.syncs)) }

// reparseSpecs parses again the cron expression of every schedule run (a
// snapshot does not hold the parsed form).
func (n *Node) reparseSpecs() {
	for _, r := range n.runs {
		if spec, err := ParseCron(r.sched.Cron, r.sched.TimeZone); err == nil {
			r.spec = spec
		}
	}
}

// rearm arms again, through the env, every alarm and sync a restored node holds,
// in the order they were first armed.
func (n *Node) rearm() {
	now := n.env.Clock.Now().UnixNano()
	for _, id := range slices.Sorted(maps.Keys(n.alarms)) {
		al := n.alarms[id]
		al.cancel = n.armAlarm(id, al.alarm, time.Duration(max(al.at-now, 0)))
	}
	for _, id := range n.SyncsWaiting() {
		n.askSync(id)
	}
}

// snapW writes a snapshot.
type snapW struct {
	buf  []byte
	ptrs map[any]uint64 // the pointers met so far, by their numbers
}

func newSnapW() *snapW {
	return &snapW{ptrs: map[any]uint64{any(&noExtra): 1}}
}

func (w *snapW) uvarint(v uint64) { w.buf = binary.AppendUvarint(w.buf, v) }
func (w *snapW) varint(v int64)   { w.buf = binary.AppendVarint(w.buf, v) }
func (w *snapW) float(v float64)  { w.uvarint(math.Float64bits(v)) }
func (w *snapW) str(s string)     { w.uvarint(uint64(len(s))); w.buf = append(w.buf, s...) }

func (w *snapW) bool(b bool) {
	if b {
		w.buf = append(w.buf, 1)
	} else {
		w.buf = append(w.buf, 0)
	}
}

// time writes t whole: its wall and monotonic readings and whether it is local
// (another location than UTC and Local is refused: a node's times are one of
// those).
func (w *snapW) time(t time.Time) {
	switch t.Location() {
	case time.UTC:
		w.buf = append(w.buf, 0)
	case time.Local:
		w.buf = append(w.buf, 1)
	default:
		panic(fmt.Sprintf("node: snapshot of a time in %v", t.Location()))
	}
	w.varint(t.Unix())
	w.uvarint(uint64(t.Nanosecond()))
}

func (w *snapW) bytes(b []byte) {
	if b == nil {
		w.uvarint(0)
		return
	}
	w.uvarint(uint64(len(b)) + 1)
	w.buf = append(w.buf, b...)
}

// bytesCap writes b with its capacity (snapshotCaps).
func (w *snapW) bytesCap(b []byte) {
	w.bytes(b)
	if b != nil {
		w.uvarint(uint64(cap(b) - len(b)))
	}
}

// snapR reads a snapshot; a read past its end panics (Restore recovers it).
type snapR struct {
	buf  []byte
	ptrs []any // by number
}

func (r *snapR) uvarint() uint64 {
	v, k := binary.Uvarint(r.buf)
	if k <= 0 {
		panic("truncated")
	}
	r.buf = r.buf[k:]
	return v
}

func (r *snapR) varint() int64 {
	v, k := binary.Varint(r.buf)
	if k <= 0 {
		panic("truncated")
	}
	r.buf = r.buf[k:]
	return v
}

func (r *snapR) float() float64 { return math.Float64frombits(r.uvarint()) }

func (r *snapR) take(k uint64) []byte {
	if k > uint64(len(r.buf)) {
		panic("truncated")
	}
	b := r.buf[:k:k]
	r.buf = r.buf[k:]
	return b
}

func (r *snapR) str() string { return string(r.take(r.uvarint())) }
func (r *snapR) bool() bool  { return r.take(1)[0] != 0 }

func (r *snapR) time() time.Time {
	local := r.take(1)[0] == 1
	t := time.Unix(r.varint(), int64(r.uvarint()))
	if !local {
		t = t.UTC()
	}
	return t
}

func (r *snapR) bytes() []byte {
	k := r.uvarint()
	if k == 0 {
		return nil
	}
	return slices.Clone(r.take(k - 1))
}

func (r *snapR) bytesCap() []byte {
	b := r.bytes()
	if b == nil {
		return nil
	}
	room := r.uvarint()
	if room > 1<<32 {
		panic("a slice's room past 4 GiB")
	}
	return append(make([]byte, 0, uint64(len(b))+room), b...)
}

// length reads a slice's or map's length plus one; ok is false for nil.
func (r *snapR) length() (k int, ok bool) {
	v := r.uvarint()
	if v > uint64(len(r.buf))+1 {
		panic("length past the end")
	}
	return int(v) - 1, v != 0
}

func encSlice[E any](w *snapW, s []E, f func(*snapW, *E)) {
	if s == nil {
		w.uvarint(0)
		return
	}
	w.uvarint(uint64(len(s)) + 1)
	for i := range s {
		f(w, &s[i])
	}
}

func decSlice[E any](r *snapR, f func(*snapR, *E)) []E {
	k, ok := r.length()
	if !ok {
		return nil
	}
	s := make([]E, k)
	for i := range s {
		f(r, &s[i])
	}
	return s
}

// encMap writes m's entries in the order of their keys' encodings (a key holds
// no pointer, so it encodes alone).
func encMap[K comparable, V any](w *snapW, m map[K]V, fk func(*snapW, *K), fv func(*snapW, *V)) {
	if m == nil {
		w.uvarint(0)
		return
	}
	type item struct {
		key []byte
		k   K
	}
	items := make([]item, 0, len(m))
	kw := &snapW{}
	for k := range m {
		kw.buf = kw.buf[:0]
		fk(kw, &k)
		items = append(items, item{slices.Clone(kw.buf), k})
	}
	slices.SortFunc(items, func(a, b item) int { return bytes.Compare(a.key, b.key) })
	w.uvarint(uint64(len(m)) + 1)
	for _, it := range items {
		w.buf = append(w.buf, it.key...)
		v := m[it.k]
		fv(w, &v)
	}
}

func decMap[K comparable, V any](r *snapR, fk func(*snapR, *K), fv func(*snapR, *V)) map[K]V {
	k, ok := r.length()
	if !ok {
		return nil
	}
	m := make(map[K]V, k)
	for range k {
		var key K
		var v V
		fk(r, &key)
		fv(r, &v)
		m[key] = v
	}
	return m
}

// Pointer tags.
const (
	ptrNil = iota
	ptrNew
	ptrSeen
)

func encPtr[E any](w *snapW, p *E, f func(*snapW, *E)) {
	if p == nil {
		w.uvarint(ptrNil)
		return
	}
	if id, ok := w.ptrs[any(p)]; ok {
		w.uvarint(ptrSeen)
		w.uvarint(id)
		return
	}
	w.ptrs[any(p)] = uint64(len(w.ptrs)) + 1
	w.uvarint(ptrNew)
	f(w, p)
}

func decPtr[E any](r *snapR, f func(*snapR, *E)) *E {
	switch r.uvarint() {
	case ptrNil:
		return nil
	case ptrNew:
		p := new(E)
		r.ptrs = append(r.ptrs, p) // before its value: the value may point back
		f(r, p)
		return p
	case ptrSeen:
		id := r.uvarint()
		if id >= uint64(len(r.ptrs)) {
			panic("a pointer numbered past those met")
		}
		p, ok := r.ptrs[id].(*E)
		if !ok {
			panic(fmt.Sprintf("pointer %d is a %T, not a %T", id, r.ptrs[id], p))
		}
		return p
	}
	panic("bad pointer tag")
}
