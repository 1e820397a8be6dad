package disk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/miyamotohq/miyamoto/net/wire"
	"github.com/miyamotohq/miyamoto/node"
)

// recordVersion is the first payload byte of every record. Bump it whenever the
// payload encoding or the framing changes in a way an older decoder would misread.
// Version 1 framed records with length and payload CRC only (8 bytes); version 2
// added the length's own check; version 3 the attempt a failure count reaches
// (node.Record.Failed) at the end of the payload; version 4 why a task ended dead
// or unknown (node.Record.Reason) and a schedule (node.Record.Schedule) after it,
// and a queue setting as net/wire's version 3 writes it (with its explicit fields
// and deletion mark); version 5 the failed attempts a count locates
// (node.Record.FailedBits) after the schedule, then a roster (node.Record.Roster);
// version 6 the roster's Removed members (as net/wire's version 7 writes a roster).
// Versions 2 to 6 are read (a version 2 record counts failures as before, Failed 0;
// versions 2 to 4 have no FailedBits, which node merges as an older build's count,
// and no roster; a version 5 roster has no Removed members; versions 2 and 3 have no Reason and no schedule, and their settings
// read as wire.Fields.SettingFormat2 says).
const recordVersion byte = 6

// oldestRecordVersion is the oldest payload version this build reads.
const oldestRecordVersion byte = 2

// frameHeader is the size of a record's header: the payload's length, a CRC-32C of
// those 4 length bytes, and a CRC-32C of the payload, each 4 bytes big endian. The
// length has its own check so that a damaged length is told from a record cut short
// by a crash: a length that does not check out is corruption, never a torn tail.
const frameHeader = 12

// MaxRecordSize is the largest payload a record may have: a task is at most its body
// (1 MiB by default, and no more than a peer message, net/wire's 16 MiB MaxFrame)
// plus bounded fields. Load takes a larger length for corruption; Append refuses to
// write one (a panic: the API bounds what reaches the log).
const MaxRecordSize = 16 << 20

// minPayload is the smallest payload: a version and a kind.
const minPayload = 2

// kindMarker is the payload kind (never a node.RecordKind, which start at 1) of the
// compaction marker: the first record of a segment written by Compact, saying that
// this segment replaces every segment numbered below it.
const kindMarker byte = 0

// Highest enum values this version knows; anything above is refused on load.
const (
	maxKind  = node.RecMove
	maxState = node.StateCancelled
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// markerFrame is the whole framed compaction marker.
var markerFrame = appendFrame(nil, func(b []byte) []byte { return append(b, recordVersion, kindMarker) })

// appendFrame appends a framed payload written by payload to dst.
func appendFrame(dst []byte, payload func([]byte) []byte) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, frameHeader)...)
	dst = payload(dst)
	n := len(dst) - start - frameHeader
	if n > MaxRecordSize {
		panic(fmt.Sprintf("disk: record of %d bytes is over MaxRecordSize (%d)", n, MaxRecordSize))
	}
	h := dst[start : start+frameHeader]
	binary.BigEndian.PutUint32(h, uint32(n))
	binary.BigEndian.PutUint32(h[4:], crc32.Checksum(h[:4], crcTable))
	binary.BigEndian.PutUint32(h[8:], crc32.Checksum(dst[start+frameHeader:], crcTable))
	return dst
}

// frameStatus is what nextFrame found at the front of a buffer.
type frameStatus int

const (
	frameOK           frameStatus = iota
	frameShortHeader              // fewer bytes than a header, and what is there checks out
	frameBadHeader                // the length's check fails
	frameBadLength                // the length checks out but is out of bounds
	frameShortPayload             // the header checks out; the payload runs past the end
	frameBadPayload               // the payload's CRC does not match
)

// nextFrame examines the frame at the front of b. With frameOK, payload is its
// payload and n the frame's whole length.
func nextFrame(b []byte) (payload []byte, n int, status frameStatus) {
	if len(b) >= 8 && binary.BigEndian.Uint32(b[4:]) != crc32.Checksum(b[:4], crcTable) {
		return nil, 0, frameBadHeader // a partial header is checked as far as it goes
	}
	if len(b) < frameHeader {
		return nil, 0, frameShortHeader
	}
	length := binary.BigEndian.Uint32(b)
	if length < minPayload || length > MaxRecordSize {
		return nil, 0, frameBadLength
	}
	n = frameHeader + int(length)
	if n > len(b) {
		return nil, 0, frameShortPayload
	}
	payload = b[frameHeader:n]
	if crc32.Checksum(payload, crcTable) != binary.BigEndian.Uint32(b[8:]) {
		return nil, 0, frameBadPayload
	}
	return payload, n, frameOK
}

// DecodeFrames decodes the whole, valid records at the front of b, in order, calling
// visit with each (compaction markers are skipped), and returns how many bytes they
// took. It stops at the first frame that is incomplete, damaged or does not decode;
// b[consumed:] starts there. b must start at a frame boundary: a segment's start, or
// an earlier call's consumed. It never modifies b, and the records share no memory
// with it. The simulator uses it to index what a segment holds durably.
func DecodeFrames(b []byte, visit func(node.Record)) (consumed int) {
	for consumed < len(b) {
		payload, n, status := nextFrame(b[consumed:])
		if status != frameOK {
			break
		}
		r, marker, err := decodeRecord(payload)
		if err != nil {
			break
		}
		if !marker {
			visit(r)
		}
		consumed += n
	}
	return consumed
}

// AppendRecordFrame appends r's framed record to dst, as the log writes it; the flight
// recorder (net/recorder) keeps the records a node loaded and appended this way, and
// DecodeFrames reads them back.
func AppendRecordFrame(dst []byte, r *node.Record) []byte { return appendRecord(dst, r) }

// appendRecord appends r's frame to dst.
//
//	payload = version(1) kind(1) taskID attempt holder leaseEnd nextETA retries state(1)
//	          status taskPresence(1) task? settingPresence(1) setting? round failed reason
//	          schedulePresence(1) schedule? failedBits rosterPresence(1) roster?
//
// round is node.Record.Round, a uvarint (the claim round of a grant or a release),
// failed node.Record.Failed, a uvarint (absent in version 2), reason
// node.Record.Reason, a string, and the schedule as wire.AppendSchedule writes it
// (both absent before version 4), failedBits node.Record.FailedBits, a uvarint, and
// the roster as wire.AppendRoster writes it (both absent before version 5; its
// Removed members absent before version 6), then,
// only for a moved task (node.Task.ListVersion above 0), its list version, a uvarint.
// Strings are a uvarint length and the bytes, unsigned numbers uvarints, signed numbers
// zig-zag varints, times as in net/wire, the task as wire.AppendTask writes it.
func appendRecord(dst []byte, r *node.Record) []byte {
	if (r.Kind == node.RecTask || r.Kind == node.RecMove) && r.Task == nil {
		panic(fmt.Sprintf("disk: task record without a task (task id %q)", r.TaskID))
	}
	if r.Kind == node.RecSetting && r.Setting == nil {
		panic("disk: setting record without a setting")
	}
	if r.Kind == node.RecSchedule && r.Schedule == nil {
		panic("disk: schedule record without a schedule")
	}
	if (r.Kind == node.RecRoster || r.Kind == node.RecRosterAccept) && r.Roster == nil {
		panic("disk: roster record without a roster")
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
		if r.Setting == nil {
			b = append(b, 0)
		} else {
			b = append(b, 1)
			b = wire.AppendSetting(b, r.Setting)
		}
		b = binary.AppendUvarint(b, r.Round)
		b = binary.AppendUvarint(b, r.Failed)
		b = wire.AppendString(b, r.Reason)
		if r.Schedule == nil {
			b = append(b, 0)
		} else {
			b = append(b, 1)
			b = wire.AppendSchedule(b, r.Schedule)
		}
		b = binary.AppendUvarint(b, r.FailedBits)
		if r.Roster == nil {
			b = append(b, 0)
		} else {
			b = wire.AppendRoster(append(b, 1), r.Roster)
		}
		// The task's list version, last and only when not 0 (a moved task), so that
		// every other record is as format 6 writes it.
		if r.Task != nil && r.Task.ListVersion != 0 {
			b = binary.AppendUvarint(b, r.Task.ListVersion)
		}
		return b
	})
}

var errBadPayload = errors.New("bad record payload")

// decodeRecord decodes one payload (CRC already checked). marker reports a
// compaction marker, which carries no record.
func decodeRecord(p []byte) (r node.Record, marker bool, err error) {
	f := wire.NewFields(p)
	v := f.Byte("version")
	if f.Err() == nil && (v < oldestRecordVersion || v > recordVersion) {
		return r, false, fmt.Errorf("%w: version %d, this build reads %d to %d", errBadPayload, v, oldestRecordVersion, recordVersion)
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
	switch has := f.Byte("setting presence"); {
	case f.Err() != nil:
	case has == 1 && v >= 4:
		r.Setting = f.Setting()
	case has == 1:
		r.Setting = f.SettingFormat2()
	case has != 0:
		f.Fail("setting presence is %d", has)
	}
	if f.Err() == nil && r.Kind == node.RecTask && r.Task == nil {
		f.Fail("task record without a task")
	}
	if f.Err() == nil && r.Kind == node.RecSetting && r.Setting == nil {
		f.Fail("setting record without a setting")
	}
	r.Round = f.Uvarint("round")
	if v >= 3 {
		r.Failed = f.Uvarint("failed")
	}
	if v >= 4 {
		r.Reason = f.String("reason")
		switch has := f.Byte("schedule presence"); {
		case f.Err() != nil:
		case has == 1:
			r.Schedule = f.Schedule()
		case has != 0:
			f.Fail("schedule presence is %d", has)
		}
	}
	if v >= 5 {
		r.FailedBits = f.Uvarint("failed bits")
	}
	if f.Err() == nil && r.Kind == node.RecSchedule && r.Schedule == nil {
		f.Fail("schedule record without a schedule")
	}
	if v >= 5 {
		switch has := f.Byte("roster presence"); {
		case f.Err() != nil:
		case has == 1 && v >= 6:
			r.Roster = f.Roster()
		case has == 1:
			r.Roster = f.RosterFormat6()
		case has != 0:
			f.Fail("roster presence is %d", has)
		}
	}
	if f.Err() == nil && (r.Kind == node.RecRoster || r.Kind == node.RecRosterAccept) && r.Roster == nil {
		f.Fail("roster record without a roster")
	}
	if f.Err() == nil && v >= 5 && f.Len() != 0 && r.Task != nil {
		if r.Task.ListVersion = f.Uvarint("task list version"); f.Err() == nil && r.Task.ListVersion == 0 {
			f.Fail("a task list version of 0 is written as absent")
		}
	}
	if f.Err() == nil && (r.Kind == node.RecTask || r.Kind == node.RecMove) && r.Task == nil {
		f.Fail("task record without a task")
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
