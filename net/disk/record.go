package disk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"

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
//	          status taskPresence(1) task? round
//
// round (node.Record.Round, a uvarint) came last, later than the rest: a payload
// that ends before it, written by an older build, decodes with round 0.
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
		b = wire.AppendString(b, r.TaskID)
		b = binary.AppendUvarint(b, r.Attempt)
		b = wire.AppendString(b, string(r.Holder))
		b = wire.AppendTime(b, r.LeaseEnd)
		b = wire.AppendTime(b, r.NextETA)
		b = binary.AppendVarint(b, int64(r.Retries))
		b = append(b, byte(r.State))
		b = binary.AppendVarint(b, int64(r.Status))
		if r.Task == nil {
			b = append(b, 0)
		} else {
			b = append(b, 1)
			b = wire.AppendTask(b, r.Task)
		}
		return binary.AppendUvarint(b, r.Round)
	})
}

var errBadPayload = errors.New("bad record payload")

// decodeRecord decodes one payload (CRC already checked). marker reports a
// compaction marker, which carries no record.
func decodeRecord(p []byte) (r node.Record, marker bool, err error) {
	f := wire.NewFields(p)
	if v := f.Byte("version"); f.Err() == nil && v != recordVersion {
		return r, false, fmt.Errorf("%w: version %d, this build reads %d", errBadPayload, v, recordVersion)
	}
	kind := f.Byte("kind")
	if f.Err() == nil && kind == kindMarker {
		if f.Len() != 0 {
			return r, false, fmt.Errorf("%w: %d trailing bytes after a compaction marker", errBadPayload, f.Len())
		}
		return r, true, nil
	}
	r.Kind = node.RecordKind(kind)
	if f.Err() == nil && r.Kind > maxKind {
		f.Fail("unknown record kind %d", kind)
	}
	r.TaskID = f.String("task id")
	r.Attempt = f.Uvarint("attempt")
	r.Holder = node.NodeID(f.String("holder"))
	r.LeaseEnd = f.Time("lease end")
	r.NextETA = f.Time("next eta")
	r.Retries = f.Int("retries")
	r.State = node.TaskState(f.Byte("state"))
	if f.Err() == nil && r.State > maxState {
		f.Fail("unknown task state %d", r.State)
	}
	r.Status = f.Int("status")
	switch has := f.Byte("task presence"); {
	case f.Err() != nil:
	case has == 1:
		r.Task = f.Task()
	case has != 0:
		f.Fail("task presence is %d", has)
	}
	if f.Err() == nil && r.Kind == node.RecTask && r.Task == nil {
		f.Fail("task record without a task")
	}
	if f.Err() == nil && f.Len() != 0 {
		r.Round = f.Uvarint("round")
	}
	if f.Err() == nil && f.Len() != 0 {
		f.Fail("%d trailing bytes after the record", f.Len())
	}
	if f.Err() != nil {
		return node.Record{}, false, fmt.Errorf("%w: %v", errBadPayload, f.Err())
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
