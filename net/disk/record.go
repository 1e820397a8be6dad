package disk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"time"

	"github.com/miyamotohq/miyamoto/net/wire"
	"github.com/miyamotohq/miyamoto/node"
)

// recordVersion is the first payload byte of every record. Bump it whenever the
// payload encoding changes in a way an older decoder would misread.
const recordVersion byte = 1

// frameHeader is the size of a record's header: length, then CRC-32C of the payload.
const frameHeader = 8

// kindMarker is the payload kind (never a node.RecordKind, which start at 1) of the
// compaction marker: the first record of a segment written by Compact, saying that
// this segment replaces every segment numbered below it.
const kindMarker byte = 0

// Highest enum values this version knows; anything above is refused on load.
const (
	maxKind  = node.RecOutcome
	maxState = node.StateCancelled
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// markerFrame is the whole framed compaction marker.
var markerFrame = appendFrame(nil, func(b []byte) []byte { return append(b, recordVersion, kindMarker) })

// appendFrame appends a framed payload written by payload to dst.
func appendFrame(dst []byte, payload func([]byte) []byte) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, 0, 0, 0, 0)
	dst = payload(dst)
	n := len(dst) - start - frameHeader
	if uint64(n) > math.MaxUint32 {
		panic(fmt.Sprintf("disk: record of %d bytes cannot be framed", n))
	}
	binary.BigEndian.PutUint32(dst[start:], uint32(n))
	binary.BigEndian.PutUint32(dst[start+4:], crc32.Checksum(dst[start+frameHeader:], crcTable))
	return dst
}

// appendRecord appends r's frame to dst.
//
//	payload = version(1) kind(1) taskID attempt holder leaseEnd nextETA retries state(1)
//	          status taskPresence(1) task?
//
// Strings are a uvarint length and the bytes, unsigned numbers uvarints, signed numbers
// zig-zag varints, times as in net/wire, the task as wire.AppendTask writes it.
func appendRecord(dst []byte, r *node.Record) []byte {
	if r.Kind == node.RecTask && r.Task == nil {
		panic(fmt.Sprintf("disk: task record without a task (task id %q)", r.TaskID))
	}
	if r.Kind == 0 || r.Kind > maxKind {
		panic(fmt.Sprintf("disk: unknown record kind %d", r.Kind))
	}
	return appendFrame(dst, func(b []byte) []byte {
		b = append(b, recordVersion, byte(r.Kind))
		b = appendString(b, r.TaskID)
		b = binary.AppendUvarint(b, r.Attempt)
		b = appendString(b, string(r.Holder))
		b = appendTime(b, r.LeaseEnd)
		b = appendTime(b, r.NextETA)
		b = binary.AppendVarint(b, int64(r.Retries))
		b = append(b, byte(r.State))
		b = binary.AppendVarint(b, int64(r.Status))
		if r.Task == nil {
			return append(b, 0)
		}
		b = append(b, 1)
		return wire.AppendTask(b, r.Task)
	})
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// Time tags, as in net/wire.
const (
	timeZero  byte = 0
	timeNanos byte = 1
	timeWide  byte = 2
)

var (
	minNanoTime = time.Unix(0, math.MinInt64)
	maxNanoTime = time.Unix(0, math.MaxInt64)
)

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

var errBadPayload = errors.New("bad record payload")

// decoder reads fields from b; after the first error every read returns a zero value.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", errBadPayload, fmt.Sprintf(format, args...))
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
		d.fail("bad %s", what)
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
		d.fail("bad %s", what)
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

func (d *decoder) string(what string) string {
	v := d.uvarint(what)
	if d.err != nil {
		return ""
	}
	if v > uint64(len(d.b)) {
		d.fail("%s length %d exceeds the %d bytes left", what, v, len(d.b))
		return ""
	}
	s := string(d.b[:v])
	d.b = d.b[v:]
	return s
}

func (d *decoder) time(what string) time.Time {
	switch tag := d.byte1(what); {
	case d.err != nil, tag == timeZero:
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
		if t := time.Unix(sec, int64(nsec)).UTC(); !t.IsZero() {
			return t
		}
		return time.Time{}
	default:
		d.fail("%s has unknown time tag %d", what, tag)
		return time.Time{}
	}
}

// decodeRecord decodes one payload (CRC already checked). marker reports a
// compaction marker, which carries no record.
func decodeRecord(p []byte) (r node.Record, marker bool, err error) {
	d := decoder{b: p}
	if v := d.byte1("version"); d.err == nil && v != recordVersion {
		return r, false, fmt.Errorf("%w: version %d, this build reads %d", errBadPayload, v, recordVersion)
	}
	kind := d.byte1("kind")
	if d.err == nil && kind == kindMarker {
		if len(d.b) != 0 {
			return r, false, fmt.Errorf("%w: %d trailing bytes after a compaction marker", errBadPayload, len(d.b))
		}
		return r, true, nil
	}
	r.Kind = node.RecordKind(kind)
	if d.err == nil && r.Kind > maxKind {
		d.fail("unknown record kind %d", kind)
	}
	r.TaskID = d.string("task id")
	r.Attempt = d.uvarint("attempt")
	r.Holder = node.NodeID(d.string("holder"))
	r.LeaseEnd = d.time("lease end")
	r.NextETA = d.time("next eta")
	r.Retries = d.int("retries")
	r.State = node.TaskState(d.byte1("state"))
	if d.err == nil && r.State > maxState {
		d.fail("unknown task state %d", r.State)
	}
	r.Status = d.int("status")
	switch has := d.byte1("task presence"); {
	case d.err != nil:
	case has == 1:
		t, n, err := wire.DecodeTask(d.b)
		if err != nil {
			return node.Record{}, false, fmt.Errorf("%w: %v", errBadPayload, err)
		}
		r.Task, d.b = t, d.b[n:]
	case has != 0:
		d.fail("task presence is %d", has)
	}
	if d.err == nil && r.Kind == node.RecTask && r.Task == nil {
		d.fail("task record without a task")
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d trailing bytes after the record", len(d.b))
	}
	if d.err != nil {
		return node.Record{}, false, d.err
	}
	return r, false, nil
}

// recordTaskID is the task a record is about.
func recordTaskID(r *node.Record) string {
	if r.Task != nil {
		return r.Task.ID
	}
	return r.TaskID
}
