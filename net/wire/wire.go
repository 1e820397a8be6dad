// Package wire is the versioned binary codec for node.Message, the messages nodes
// exchange over TCP (see net/peer). It turns one message into one self-delimiting
// frame and back:
//
//	frame   = length(4 bytes, big endian: len(version)+len(message)) version(1 byte) message
//	message = type from to taskID task? attempt promised lease granted reject holder
//	          state nextETA retries failed failedBits status queue setting? schedule? reason
//	          attempts counts epoch roster? member?
//	roster  = epoch members(id addr) leader
//	member  = id addr
//	attempt = number node start duration inFlight status errorKind message body
//	task    = id queue name url method headers contentType body eta created delivery replicas
//	schedule = name cron timeZone queue url method headers contentType body missed
//	          deleted created version origin
//	count   = queue state before n
//
// Strings and byte slices are a uvarint length followed by the bytes; lists are a
// uvarint count followed by the items; unsigned numbers are uvarints, signed numbers
// (durations, ints) zig-zag varints; booleans, enums and the task's presence are one
// byte. A time is one tag byte: 0 for the zero time, 1 followed by a varint of Unix
// nanoseconds (every time between the years 1678 and 2262), or 2 followed by a varint
// of Unix seconds and a uvarint of nanoseconds (any other time, so that nothing is
// silently corrupted).
//
// Decoding normalises what has no distinct encoding: an empty Body, Headers,
// Replicas, Counts or Before decodes as nil (nil and empty encode alike), and every non-zero time
// decodes in UTC with no monotonic reading (zero stays time.Time{}). Everything a
// decoded message holds is freshly allocated: it never aliases the input buffer.
//
// What this package must never do: trust the bytes it decodes. Every length and count
// is checked against the bytes that remain before anything is allocated for it, a
// frame longer than MaxFrame is refused before it is read, unknown versions, message
// types and enum values are errors, and malformed input returns an error, never a
// panic. It does no IO beyond the reader handed to ReadFrame and keeps no state.
package wire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"time"

	"github.com/miyamotohq/miyamoto/node"
)

// Version is the version byte at the start of every frame. Bump it whenever the
// encoding changes in a way an older decoder would misread. Version 2 added
// node.Message.Failed after Retries; version 3 node.Message.Schedule, Reason,
// Attempts and Counts at the end of a message, a queue setting's Explicit fields
// and Deleted mark after its Origin, and net/peer's heartbeats (which a dialer of
// version 2 would take for garbage); version 4 node.Message.FailedBits after Failed,
// and Epoch, Roster and Member at the end (and, in version 4 still, the task's
// ListVersion after them, only when not 0); version 5 the token lease's two message
// types (node.MsgTokenLease, MsgTokenLeaseResp), with no new field: a member of
// version 4 would refuse them, and grant permits without the lease; version 6
// node.Message.Round after Epoch (a claim's round, echoed by its answers); version 7
// no new field: the roster lease's claims carry a Round their grants echo, and a
// claimant counts only grants that echo its round (a member of version 6 echoes
// none, so a claimant of version 7 could never lead beside it); and a roster's
// Removed members after its Leader; version 8 no new field: a Store's answer echoes
// the Nonce of the Store's task in Round, and a coordinator counts only answers that
// echo its enqueue's (a member of version 7 echoes none, so a coordinator of version
// 8 would count none of its answers). A frame of another version is refused (and so
// is a peer's hello: see net/peer): a cluster runs one version.
const Version byte = 8

// MaxFrame is the largest frame length (the 4-byte length's value: version byte plus
// message) a decoder accepts. AppendFrame does not check it: a sender that may build
// larger frames must check FrameLen itself.
const MaxFrame = 16 << 20

// headerLen is the size of the frame's length prefix.
const headerLen = 4

// ErrShort means the buffer holds less than one whole frame: read more and retry.
var ErrShort = errors.New("wire: short frame")

// ErrMalformed is wrapped by every error about a frame that can never decode:
// a bad version, an oversized frame, a bad field. A stream that yields one is broken.
var ErrMalformed = errors.New("wire: malformed frame")

// Highest enum values this version knows. A value above them is refused, so that a
// peer's garbage never reaches the state machine (an unknown TaskState would count as
// final, for one). wire_test.go pins them to the node package.
const (
	maxReject   = node.MaxReject
	maxState    = node.StateCancelled
	maxDelivery = node.AtMostOnce
	maxErrKind  = node.MaxErrorKind
	maxMissed   = node.MissedOne
)

// Time tags.
const (
	timeZero  byte = 0
	timeNanos byte = 1
	timeWide  byte = 2
)

// minNanoTime and maxNanoTime bound the times whose UnixNano is exact.
var (
	minNanoTime = time.Unix(0, math.MinInt64)
	maxNanoTime = time.Unix(0, math.MaxInt64)
)

// AppendFrame appends m's frame to dst and returns the extended slice. It never
// fails; a frame longer than MaxFrame is produced but every decoder refuses it.
func AppendFrame(dst []byte, m node.Message) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, Version)
	dst = appendMessage(dst, &m)
	n := len(dst) - start - headerLen
	if uint64(n) > math.MaxUint32 {
		panic(fmt.Sprintf("wire: frame of %d bytes cannot be framed", n))
	}
	binary.BigEndian.PutUint32(dst[start:], uint32(n))
	return dst
}

// FrameLen returns the total length (prefix included) of the frame at the front of
// frame, as written by AppendFrame, or -1 when frame is shorter than the prefix.
func FrameLen(frame []byte) int {
	if len(frame) < headerLen {
		return -1
	}
	return headerLen + int(binary.BigEndian.Uint32(frame))
}

// DecodeFrame decodes the frame at the front of b and returns its message and the
// number of bytes it took. It returns ErrShort when b holds less than a whole frame
// (a frame whose length already exceeds MaxFrame is an error at once), and an error
// wrapping ErrMalformed for anything that can never decode.
func DecodeFrame(b []byte) (m node.Message, n int, err error) {
	if len(b) < headerLen {
		return m, 0, ErrShort
	}
	size := binary.BigEndian.Uint32(b)
	if size > MaxFrame {
		return m, 0, fmt.Errorf("%w: frame of %d bytes exceeds the maximum of %d", ErrMalformed, size, MaxFrame)
	}
	if size == 0 {
		return m, 0, fmt.Errorf("%w: empty frame has no version byte", ErrMalformed)
	}
	if uint64(len(b)-headerLen) < uint64(size) {
		return m, 0, ErrShort
	}
	n = headerLen + int(size)
	m, err = decodeBody(b[headerLen:n])
	if err != nil {
		return node.Message{}, 0, err
	}
	return m, n, nil
}

// ReadFrame reads one frame from r and decodes it. buf is scratch space that it
// reuses when large enough (it may be nil); the returned slice is the scratch space
// to pass to the next call. The message never aliases buf. At a clean end of stream
// it returns io.EOF; a stream that ends inside a frame gives io.ErrUnexpectedEOF.
// A frame's claimed length is checked against MaxFrame before anything is read, and
// memory for the frame grows with the bytes that actually arrive, so a peer cannot
// make it allocate much more than it sent.
func ReadFrame(r *bufio.Reader, buf []byte) (node.Message, []byte, error) {
	buf, err := readFrameBody(r, buf)
	if err != nil {
		return node.Message{}, buf, err
	}
	m, err := decodeBody(buf)
	return m, buf, err
}

// readFrameBody reads one frame from r into buf (reused when large enough) and
// returns its body: the version byte and the message.
func readFrameBody(r *bufio.Reader, buf []byte) ([]byte, error) {
	var hdr [headerLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return buf, err
	}
	size := binary.BigEndian.Uint32(hdr[:])
	if size > MaxFrame {
		return buf, fmt.Errorf("%w: frame of %d bytes exceeds the maximum of %d", ErrMalformed, size, MaxFrame)
	}
	if size == 0 {
		return buf, fmt.Errorf("%w: empty frame has no version byte", ErrMalformed)
	}
	const step = 64 << 10
	buf = buf[:0]
	for uint32(len(buf)) < size {
		want := min(int(size)-len(buf), max(step, len(buf)))
		if cap(buf)-len(buf) < want {
			nb := make([]byte, len(buf), len(buf)+want)
			copy(nb, buf)
			buf = nb
		}
		chunk := buf[len(buf) : len(buf)+want]
		if _, err := io.ReadFull(r, chunk); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return buf, err
		}
		buf = buf[:len(buf)+want]
	}
	return buf, nil
}

// AppendTask appends t's encoding (the task field of a message, with no version byte
// and no framing) to dst and returns the extended slice. It lets other codecs, such as
// net/disk's records, store a task exactly as the wire does.
func AppendTask(dst []byte, t *node.Task) []byte { return appendTask(dst, t) }

// decodeBody decodes a version byte and one message that fill b exactly.
func decodeBody(b []byte) (node.Message, error) { return decodeBodyNames(b, nil) }

// decodeBodyNames is decodeBody sharing recurring strings through t (nil: none).
func decodeBodyNames(b []byte, t *names) (node.Message, error) {
	if b[0] != Version {
		return node.Message{}, fmt.Errorf("%w: version %d, this build speaks %d", ErrMalformed, b[0], Version)
	}
	d := decoder{b: b[1:], names: t}
	m := d.message()
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d trailing bytes after the message", len(d.b))
	}
	if d.err != nil {
		return node.Message{}, d.err
	}
	return m, nil
}

func appendMessage(b []byte, m *node.Message) []byte {
	b = append(b, byte(m.Type))
	b = appendString(b, string(m.From))
	b = appendString(b, string(m.To))
	b = appendString(b, m.TaskID)
	if m.Task == nil {
		b = append(b, 0)
	} else {
		b = append(b, 1)
		b = appendTask(b, m.Task)
	}
	b = binary.AppendUvarint(b, m.Attempt)
	b = binary.AppendUvarint(b, m.Promised)
	b = binary.AppendVarint(b, int64(m.Lease))
	b = appendBool(b, m.Granted)
	b = append(b, byte(m.Reject))
	b = appendString(b, string(m.Holder))
	b = append(b, byte(m.State))
	b = appendTime(b, m.NextETA)
	b = binary.AppendVarint(b, int64(m.Retries))
	b = binary.AppendUvarint(b, m.Failed)
	b = binary.AppendUvarint(b, m.FailedBits)
	b = binary.AppendVarint(b, int64(m.Status))
	b = appendString(b, m.Queue)
	if m.Setting == nil {
		b = append(b, 0)
	} else {
		b = append(b, 1)
		b = appendSetting(b, m.Setting)
	}
	if m.Schedule == nil {
		b = append(b, 0)
	} else {
		b = append(b, 1)
		b = appendSchedule(b, m.Schedule)
	}
	b = appendString(b, m.Reason)
	b = binary.AppendUvarint(b, uint64(len(m.Attempts)))
	for i := range m.Attempts {
		b = appendAttempt(b, &m.Attempts[i])
	}
	b = binary.AppendUvarint(b, uint64(len(m.Counts)))
	for _, c := range m.Counts {
		b = appendString(b, c.Queue)
		b = append(b, byte(c.State))
		b = binary.AppendUvarint(b, uint64(len(c.Before)))
		for _, id := range c.Before {
			b = appendString(b, string(id))
		}
		b = binary.AppendVarint(b, int64(c.N))
	}
	b = binary.AppendUvarint(b, m.Epoch)
	b = binary.AppendUvarint(b, m.Round)
	if m.Roster == nil {
		b = append(b, 0)
	} else {
		b = appendRoster(append(b, 1), m.Roster)
	}
	if m.Member == nil {
		b = append(b, 0)
	} else {
		b = appendString(append(b, 1), string(m.Member.ID))
		b = appendString(b, m.Member.Addr)
	}
	// The task's list version, last and only when not 0 (a moved task: see
	// node/move.go), so that every other frame is as version 4 wrote it.
	if m.Task != nil && m.Task.ListVersion != 0 {
		b = binary.AppendUvarint(b, m.Task.ListVersion)
	}
	return b
}

// appendRoster appends a roster as MsgRoster carries it.
func appendRoster(b []byte, r *node.Roster) []byte {
	b = binary.AppendUvarint(b, r.Epoch)
	b = binary.AppendUvarint(b, uint64(len(r.Members)))
	for _, mem := range r.Members {
		b = appendString(b, string(mem.ID))
		b = appendString(b, mem.Addr)
	}
	b = appendString(b, string(r.Leader))
	b = binary.AppendUvarint(b, uint64(len(r.Removed)))
	for _, id := range r.Removed {
		b = appendString(b, string(id))
	}
	return b
}

func appendAttempt(b []byte, a *node.DeliveryAttempt) []byte {
	b = binary.AppendUvarint(b, a.Number)
	b = appendString(b, string(a.Node))
	b = appendTime(b, a.Start)
	b = binary.AppendVarint(b, int64(a.Duration))
	b = appendBool(b, a.InFlight)
	b = binary.AppendVarint(b, int64(a.Status))
	b = append(b, byte(a.Error))
	b = appendString(b, a.Message)
	return appendString(b, a.Body)
}

// appendRequest appends what a task (or a schedule's template) sends its worker
// besides the URL and method: headers, content type, body.
func appendRequest(b []byte, headers []node.Header, contentType string, body []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(headers)))
	for _, h := range headers {
		b = appendString(b, h.Name)
		b = appendString(b, h.Value)
	}
	b = appendString(b, contentType)
	b = binary.AppendUvarint(b, uint64(len(body)))
	return append(b, body...)
}

func appendSchedule(b []byte, s *node.Schedule) []byte {
	b = appendString(b, s.Name)
	b = appendString(b, s.Cron)
	b = appendString(b, s.TimeZone)
	b = appendString(b, s.Queue)
	b = appendString(b, s.URL)
	b = appendString(b, s.Method)
	b = appendRequest(b, s.Headers, s.ContentType, s.Body)
	b = append(b, byte(s.Missed))
	b = appendBool(b, s.Deleted)
	b = appendTime(b, s.Created)
	b = binary.AppendUvarint(b, s.Version)
	return appendString(b, string(s.Origin))
}

func appendSetting(b []byte, s *node.QueueSetting) []byte {
	b = appendString(b, s.Queue)
	c := s.Config
	b = append(b, byte(c.Delivery))
	b = binary.AppendVarint(b, int64(c.Retry.TaskRetryLimit))
	b = binary.AppendVarint(b, int64(c.Retry.TaskAgeLimit))
	b = binary.AppendVarint(b, int64(c.Retry.MinBackoff))
	b = binary.AppendVarint(b, int64(c.Retry.MaxBackoff))
	b = binary.AppendVarint(b, int64(c.Retry.MaxDoublings))
	b = binary.AppendVarint(b, int64(c.DispatchDeadline))
	b = binary.BigEndian.AppendUint64(b, math.Float64bits(c.Rate))
	b = binary.AppendVarint(b, int64(c.BucketSize))
	b = binary.AppendVarint(b, int64(c.MaxConcurrent))
	b = appendBool(b, s.Paused)
	b = appendTime(b, s.PurgedBefore)
	b = binary.AppendUvarint(b, s.Version)
	b = appendString(b, string(s.Origin))
	b = binary.AppendUvarint(b, uint64(s.Explicit))
	return appendBool(b, s.Deleted)
}

func appendTask(b []byte, t *node.Task) []byte {
	b = appendString(b, t.ID)
	b = appendString(b, t.Queue)
	b = appendString(b, t.Name)
	b = appendString(b, t.URL)
	b = appendString(b, t.Method)
	b = appendRequest(b, t.Headers, t.ContentType, t.Body)
	b = appendTime(b, t.ETA)
	b = appendTime(b, t.Created)
	b = binary.AppendUvarint(b, t.Nonce)
	b = append(b, byte(t.Delivery))
	b = binary.AppendUvarint(b, uint64(len(t.Replicas)))
	for _, r := range t.Replicas {
		b = appendString(b, string(r))
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

func appendTime(b []byte, t time.Time) []byte {
	switch {
	case t.IsZero():
		return append(b, timeZero)
	case t.Before(minNanoTime) || t.After(maxNanoTime):
		b = append(b, timeWide)
		b = binary.AppendVarint(b, t.Unix())
		return binary.AppendUvarint(b, uint64(t.Nanosecond()))
	default:
		b = append(b, timeNanos)
		return binary.AppendVarint(b, t.UnixNano())
	}
}

// decoder reads fields from b; after the first error every read returns a zero value
// and err keeps that first error.
type decoder struct {
	b   []byte
	err error
	// names, when not nil, shares one copy of each recurring string (see
	// FrameReader); nil: every string is a new copy.
	names *names
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
	}
}

func (d *decoder) byte1(what string) byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.fail("truncated before %s", what)
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		if n == 0 {
			d.fail("truncated in %s", what)
		} else {
			d.fail("%s overflows 64 bits", what)
		}
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint(what string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		if n == 0 {
			d.fail("truncated in %s", what)
		} else {
			d.fail("%s overflows 64 bits", what)
		}
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) int(what string) int {
	v := d.varint(what)
	if int64(int(v)) != v {
		d.fail("%s %d does not fit an int", what, v)
		return 0
	}
	return int(v)
}

func (d *decoder) bool(what string) bool {
	switch d.byte1(what) {
	case 0:
		return false
	case 1:
		return true
	default:
		d.fail("%s is not a boolean", what)
		return false
	}
}

// count reads a list length and checks that the items, each at least minItem bytes
// long, fit in what remains: the caller may then allocate that many.
func (d *decoder) count(what string, minItem int) int {
	v := d.uvarint(what)
	if d.err != nil {
		return 0
	}
	if v > uint64(len(d.b)/minItem) {
		d.fail("%s count %d exceeds the %d bytes left", what, v, len(d.b))
		return 0
	}
	return int(v)
}

// bytes returns the next length-prefixed bytes, aliasing the input.
func (d *decoder) bytes(what string) []byte {
	v := d.uvarint(what)
	if d.err != nil {
		return nil
	}
	if v > uint64(len(d.b)) {
		d.fail("%s length %d exceeds the %d bytes left", what, v, len(d.b))
		return nil
	}
	s := d.b[:v:v]
	d.b = d.b[v:]
	return s
}

func (d *decoder) string(what string) string { return string(d.bytes(what)) }

// name is string for a field whose values recur from message to message (node IDs,
// queues, URLs, methods, header names, content types): with a table, each distinct
// value is allocated once.
func (d *decoder) name(what string) string { return d.names.get(d.bytes(what)) }

// common is name for a field that tasks keep for as long as they are held (a queue
// name, a method, a content type, a replica's ID): its value is one canonical copy
// for the whole process, so a node holding a million tasks keeps one "default", not
// a million, whichever stream or log they came from.
func (d *decoder) common(what string) string { return d.names.canonical(d.bytes(what)) }

func (d *decoder) time(what string) time.Time {
	switch tag := d.byte1(what); {
	case d.err != nil:
		return time.Time{}
	case tag == timeZero:
		return time.Time{}
	case tag == timeNanos:
		return time.Unix(0, d.varint(what)).UTC()
	case tag == timeWide:
		sec := d.varint(what)
		nsec := d.uvarint(what)
		if d.err != nil {
			return time.Time{}
		}
		if nsec >= uint64(time.Second) {
			d.fail("%s has %d nanoseconds", what, nsec)
			return time.Time{}
		}
		t := time.Unix(sec, int64(nsec)).UTC()
		if t.IsZero() {
			return time.Time{}
		}
		return t
	default:
		d.fail("%s has unknown time tag %d", what, tag)
		return time.Time{}
	}
}

func (d *decoder) message() node.Message {
	var m node.Message
	m.Type = node.MsgType(d.byte1("type"))
	if d.err == nil && (m.Type == 0 || m.Type > node.MaxMsgType) {
		d.fail("unknown message type %d", m.Type)
	}
	m.From = node.NodeID(d.name("from"))
	m.To = node.NodeID(d.name("to"))
	m.TaskID = d.string("task id")
	if d.bool("task presence") {
		m.Task = d.task()
	}
	m.Attempt = d.uvarint("attempt")
	m.Promised = d.uvarint("promised")
	m.Lease = time.Duration(d.varint("lease"))
	m.Granted = d.bool("granted")
	m.Reject = node.Reject(d.byte1("reject"))
	if d.err == nil && m.Reject > maxReject {
		d.fail("unknown reject %d", m.Reject)
	}
	m.Holder = node.NodeID(d.name("holder"))
	m.State = node.TaskState(d.byte1("state"))
	if d.err == nil && m.State > maxState {
		d.fail("unknown task state %d", m.State)
	}
	m.NextETA = d.time("next eta")
	m.Retries = d.int("retries")
	m.Failed = d.uvarint("failed")
	m.FailedBits = d.uvarint("failed bits")
	m.Status = d.int("status")
	m.Queue = d.name("queue")
	if d.bool("setting presence") {
		m.Setting = d.setting()
	}
	if d.bool("schedule presence") {
		m.Schedule = d.schedule()
	}
	m.Reason = d.string("reason")
	// An attempt takes at least 9 bytes: number, node, start, duration, in flight,
	// status, error kind, message, body.
	if n := d.count("attempts", 9); n > 0 {
		m.Attempts = make([]node.DeliveryAttempt, n)
		for i := range m.Attempts {
			m.Attempts[i] = d.attempt()
		}
	}
	if n := d.count("counts", 4); n > 0 {
		m.Counts = make([]node.QueueCount, n)
		for i := range m.Counts {
			m.Counts[i] = d.queueCount()
		}
	}
	m.Epoch = d.uvarint("epoch")
	m.Round = d.uvarint("round")
	if d.bool("roster presence") {
		m.Roster = d.roster()
	}
	if d.bool("member presence") {
		m.Member = &node.Member{ID: node.NodeID(d.string("member.id")), Addr: d.string("member.addr")}
	}
	if d.err == nil && len(d.b) > 0 && m.Task != nil {
		m.Task.ListVersion = d.uvarint("task.list_version")
		if d.err == nil && m.Task.ListVersion == 0 {
			d.fail("a task list version of 0 is written as absent")
		}
	}
	return m
}

// rosterFormat6 reads a roster as wire version 6 wrote it (net/disk's records
// before format 6): no removed members.
func (d *decoder) rosterFormat6() *node.Roster {
	r := &node.Roster{Epoch: d.uvarint("roster.epoch")}
	// A member takes at least 2 bytes: its ID's and its address's lengths.
	if n := d.count("roster.members", 2); n > 0 {
		r.Members = make([]node.Member, n)
		for i := range r.Members {
			r.Members[i] = node.Member{ID: node.NodeID(d.string("roster.member.id")), Addr: d.string("roster.member.addr")}
		}
	}
	r.Leader = node.NodeID(d.string("roster.leader"))
	if d.err != nil {
		return nil
	}
	return r
}

// roster reads a roster as this version writes it: rosterFormat6's, then its
// removed members.
func (d *decoder) roster() *node.Roster {
	r := d.rosterFormat6()
	if r == nil {
		return nil
	}
	// A removed member's ID takes at least its length's byte.
	if n := d.count("roster.removed", 1); n > 0 {
		r.Removed = make([]node.NodeID, n)
		for i := range r.Removed {
			r.Removed[i] = node.NodeID(d.string("roster.removed.id"))
		}
	}
	if d.err != nil {
		return nil
	}
	return r
}

func (d *decoder) schedule() *node.Schedule {
	s := &node.Schedule{}
	s.Name = d.string("schedule.name")
	s.Cron = d.string("schedule.cron")
	s.TimeZone = d.string("schedule.time_zone")
	s.Queue = d.string("schedule.queue")
	s.URL = d.string("schedule.url")
	s.Method = d.string("schedule.method")
	s.Headers, s.ContentType, s.Body = d.request(&scheduleRequest)
	s.Missed = node.MissedPolicy(d.byte1("schedule.missed"))
	if d.err == nil && s.Missed > maxMissed {
		d.fail("unknown missed-tick policy %d", s.Missed)
	}
	s.Deleted = d.bool("schedule.deleted")
	s.Created = d.time("schedule.created")
	s.Version = d.uvarint("schedule.version")
	s.Origin = node.NodeID(d.string("schedule.origin"))
	if d.err != nil {
		return nil
	}
	return s
}

func (d *decoder) attempt() node.DeliveryAttempt {
	var a node.DeliveryAttempt
	a.Number = d.uvarint("attempt.number")
	a.Node = node.NodeID(d.string("attempt.node"))
	a.Start = d.time("attempt.start")
	a.Duration = time.Duration(d.varint("attempt.duration"))
	a.InFlight = d.bool("attempt.in_flight")
	a.Status = d.int("attempt.status")
	a.Error = node.ErrorKind(d.byte1("attempt.error"))
	if d.err == nil && a.Error > maxErrKind {
		d.fail("unknown error kind %d", a.Error)
	}
	a.Message = d.string("attempt.message")
	a.Body = d.string("attempt.body")
	return a
}

func (d *decoder) queueCount() node.QueueCount {
	var c node.QueueCount
	c.Queue = d.string("count.queue")
	c.State = node.TaskState(d.byte1("count.state"))
	if d.err == nil && c.State > maxState {
		d.fail("unknown count.state %d", c.State)
	}
	if n := d.count("count.before", 1); n > 0 {
		c.Before = make([]node.NodeID, n)
		for i := range c.Before {
			c.Before[i] = node.NodeID(d.string("count.before node"))
		}
	}
	c.N = d.int("count.n")
	if d.err == nil && c.N < 0 {
		d.fail("count.n %d is negative", c.N)
	}
	return c
}

// setting reads a queue setting as this version writes it.
func (d *decoder) setting() *node.QueueSetting {
	s := d.settingFormat2()
	explicit := d.uvarint("setting.explicit")
	if d.err == nil && explicit&^uint64(node.AllSettingFields) != 0 {
		d.fail("unknown setting fields %#x", explicit)
	}
	deleted := d.bool("setting.deleted")
	if d.err != nil {
		return nil
	}
	s.Explicit, s.Deleted = node.SettingFields(explicit), deleted
	return s
}

// settingFormat2 reads a queue setting as wire version 2 wrote it (no explicit
// fields, no deletion mark), taking as explicit the fields that differ from the
// defaults: the best that can be told of a setting written before Explicit was.
func (d *decoder) settingFormat2() *node.QueueSetting {
	s := &node.QueueSetting{}
	s.Queue = d.string("setting.queue")
	c := &s.Config
	c.Delivery = node.DeliveryMode(d.byte1("setting.delivery"))
	if d.err == nil && c.Delivery > maxDelivery {
		d.fail("unknown delivery mode %d", c.Delivery)
	}
	c.Retry.TaskRetryLimit = d.int("setting.task_retry_limit")
	c.Retry.TaskAgeLimit = time.Duration(d.varint("setting.task_age_limit"))
	c.Retry.MinBackoff = time.Duration(d.varint("setting.min_backoff"))
	c.Retry.MaxBackoff = time.Duration(d.varint("setting.max_backoff"))
	c.Retry.MaxDoublings = d.int("setting.max_doublings")
	c.DispatchDeadline = time.Duration(d.varint("setting.dispatch_deadline"))
	if len(d.b) < 8 && d.err == nil {
		d.fail("truncated before setting.rate")
	}
	if d.err == nil {
		c.Rate = math.Float64frombits(binary.BigEndian.Uint64(d.b))
		d.b = d.b[8:]
		if math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0) {
			d.fail("setting.rate is not a finite number")
		}
	}
	c.BucketSize = d.int("setting.bucket_size")
	c.MaxConcurrent = d.int("setting.max_concurrent")
	s.Paused = d.bool("setting.paused")
	s.PurgedBefore = d.time("setting.purged_before")
	s.Version = d.uvarint("setting.version")
	s.Origin = node.NodeID(d.string("setting.origin"))
	if d.err != nil {
		return nil
	}
	s.Explicit = c.Differing(node.DefaultQueueConfig())
	return s
}

// requestFields names a request's fields in decoding errors.
type requestFields struct{ headers, name, value, contentType, body string }

var (
	taskRequest     = requestFields{"task.headers", "task.header name", "task.header value", "task.content type", "task.body"}
	scheduleRequest = requestFields{"schedule.headers", "schedule.header name", "schedule.header value", "schedule.content type", "schedule.body"}
)

// request reads what appendRequest wrote.
func (d *decoder) request(f *requestFields) (headers []node.Header, contentType string, body []byte) {
	if n := d.count(f.headers, 2); n > 0 {
		headers = make([]node.Header, n)
		for i := range headers {
			headers[i].Name = d.name(f.name)
			headers[i].Value = d.string(f.value)
		}
	}
	contentType = d.common(f.contentType)
	if b := d.bytes(f.body); len(b) > 0 {
		body = append([]byte(nil), b...)
	}
	return headers, contentType, body
}

func (d *decoder) task() *node.Task {
	t := &node.Task{}
	t.ID = d.string("task.id")
	t.Queue = d.common("task.queue")
	t.Name = d.string("task.name")
	t.URL = d.name("task.url")
	t.Method = d.common("task.method")
	t.Headers, t.ContentType, t.Body = d.request(&taskRequest)
	t.ETA = d.time("task.eta")
	t.Created = d.time("task.created")
	t.Nonce = d.uvarint("task.nonce")
	t.Delivery = node.DeliveryMode(d.byte1("task.delivery"))
	if d.err == nil && t.Delivery > maxDelivery {
		d.fail("unknown delivery mode %d", t.Delivery)
	}
	if n := d.count("task.replicas", 1); n > 0 {
		t.Replicas = d.replicas(n)
	}
	if d.err != nil {
		return nil
	}
	return t
}

// replicas reads a replica list of n IDs. With a names table, a list equal to the
// one it gave last is that same slice: a stream carries few distinct lists (every
// message about a task carries its list), and tasks share lists in the node too,
// which never changes one in place (node.Task: "never modified").
func (d *decoder) replicas(n int) []node.NodeID {
	var buf [8]node.NodeID
	ids := buf[:0]
	if n > len(buf) {
		ids = make([]node.NodeID, 0, n)
	}
	for range n {
		ids = append(ids, node.NodeID(d.common("task.replica")))
	}
	if d.names == nil {
		return slices.Clone(ids)
	}
	if !slices.Equal(d.names.list, ids) {
		d.names.list = slices.Clone(ids)
	}
	return d.names.list
}
