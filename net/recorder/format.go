// Package recorder is the flight recorder of a production node (serve --record DIR):
// it keeps, in a bounded ring of files, every input the node took and everything the
// node read from outside itself while taking it (clock readings, random draws, the
// answers of its storage and timers), together with what the node did (messages
// sent, deliveries started, records appended, timers armed), so that Replay can
// re-execute the node from the recording and confirm it made the same decisions.
//
// It sits between the driver (net/driver) and the node: the driver brackets every
// input with BeginInput/EndInput, the daemon labels the inputs it posts (Step,
// Result, Call), and WrapEnv wraps the node's environment. Everything here runs on
// the node's goroutine but the writer's work (framing and checksums, the wire
// encoding and hashing of messages, the files); it must never call into the node.
//
// # Format
//
// A recording is a directory of files named rRRRRRR-SSSSSS.rec: run RRRRRR is one
// start of the node process (a restart is a new run), SSSSSS the file's number in
// the run. A file is the magic "MIYAREC1", a framed header (gob of Header) and
// framed groups, one per input, each frame a uvarint length, a CRC-32C of the
// payload (4 bytes big endian) and the payload. A group is the input's kind and its
// arguments followed by events in the order they happened: what the node read
// (clock, random source, storage answers, timer cancellations) and what it did
// (sends, dispatches, appends, syncs, timers). A torn last frame (the process was
// killed mid-write) ends a file.
package recorder

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/miyamotohq/miyamoto/net/wire"
	"github.com/miyamotohq/miyamoto/node"
)

// magic opens every recording file.
const magic = "MIYAREC1"

// eventsVersion numbers the layout of groups and events below: bump it whenever
// it changes in a way an older reader would misread. 2: a start that streams its
// log (evLoadRec, evLoadEnd, the start's parts).
const eventsVersion = 2

// Format names the layout of a recording this build writes and reads: its groups
// and events, the wire encoding of the messages in them, and the node's state that
// snapshots, records and messages hold (node.StateFingerprint). Replay re-executes a
// recording with this build's node: one made by a build whose Format differs is
// refused (ReadDir), since even where it decoded, the node would not be the one
// that made its decisions.
func Format() string {
	return fmt.Sprintf("events %d, wire %d, state %s", eventsVersion, wire.Version, node.StateFingerprint())
}

// Input kinds: the first byte of a group.
const (
	inNew     byte = iota + 1 // what node.New read, before any input
	inStart                   // node.Start
	inStep                    // a peer message: its wire frame
	inTimer                   // a timer fired: its number
	inSync                    // a storage sync completed: its number
	inResult                  // a webhook's result
	inCall                    // an API call: JSON of Call
	inOpaque                  // a function the daemon posted without a label
	inEnqueue                 // an enqueue: its request, in binary
	// inSnapshot opens every file of a run after its first: the numbers of the
	// timers and syncs the recorder gave so far, then the node's snapshot (node's
	// Snapshot), taken between the inputs before and after it. Not an input.
	inSnapshot
	// inPart is the front of the next group, written early because it grew large
	// (a start streaming its log, Recorder.writePart); the bytes after the kind are
	// the group's next bytes. Reading joins the parts to their group. Not an input.
	inPart
)

// Event kinds, inside a group.
const (
	evNow      byte = iota + 1 // Clock.Now: unix nanoseconds, the group's first; then since the last (nowField)
	evRand                     // a random draw below a bound (IntN, Int64N): a uvarint
	evRand64                   // a full random draw (Uint64): 8 bytes, smaller than its uvarint
	evCancel                   // unused: a timer's cancel is not recorded (recClock.AfterFunc)
	evStoreErr                 // StorageHealth.Err: its message, "" for nil
	evLoad                     // Storage.Load: error message, then the record frames
	evLost                     // LossReporter.LostSince
	evSend                     // Network.Send: a summary and the hash of its wire frame
	evDispatch                 // Dispatcher.Dispatch: task, attempt, deadline
	evAppend                   // Storage.Append: a summary and the hash of the record frames
	evSync                     // Storage.Sync: its number
	evTimer                    // Clock.AfterFunc: its number and delay
	evLoadRec                  // RecordStreamer.LoadEach handed over a record: its frame
	evLoadEnd                  // RecordStreamer.LoadEach returned: its error message, "" for nil
)

// isOutput tells the events that are the node's decisions from what it read.
func isOutput(ev byte) bool { return ev >= evSend && ev <= evTimer }

var inputNames = map[byte]string{inNew: "new", inStart: "start", inStep: "message", inTimer: "timer",
	inSync: "sync", inResult: "webhook result", inCall: "API call", inOpaque: "unlabelled input", inEnqueue: "enqueue",
	inSnapshot: "snapshot", inPart: "part of an input"}

var eventNames = map[byte]string{evNow: "clock reading", evRand: "random draw", evRand64: "random draw", evCancel: "timer cancel",
	evStoreErr: "storage health", evLoad: "log load", evLost: "loss report", evSend: "message sent",
	evDispatch: "delivery started", evAppend: "records appended", evSync: "sync", evTimer: "timer armed",
	evLoadRec: "log record loaded", evLoadEnd: "log load's end"}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// appendFrame frames payload onto dst.
func appendFrame(dst, payload []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(payload)))
	dst = binary.BigEndian.AppendUint32(dst, crc32.Checksum(payload, crcTable))
	return append(dst, payload...)
}

// errTorn: the frame at the front is incomplete or damaged.
var errTorn = errors.New("torn or damaged frame")

// maxFrame bounds a frame's length, so that a damaged length is not trusted: a
// start's load holds the whole log, which may be large.
const maxFrame = 1 << 34

// nextFrame returns the payload of the frame at the front of b and its whole length.
func nextFrame(b []byte) (payload []byte, n int, err error) {
	size, k := binary.Uvarint(b)
	if k <= 0 || size > maxFrame || uint64(len(b)-k) < 4+size {
		return nil, 0, errTorn
	}
	sum := binary.BigEndian.Uint32(b[k:])
	payload = b[k+4 : k+4+int(size)]
	if crc32.Checksum(payload, crcTable) != sum {
		return nil, 0, errTorn
	}
	return payload, k + 4 + int(size), nil
}

// enc appends the fields of groups.
type enc []byte

func (e enc) byte(v byte) enc      { return append(e, v) }
func (e enc) uvarint(v uint64) enc { return binary.AppendUvarint(e, v) }
func (e enc) varint(v int64) enc   { return binary.AppendVarint(e, v) }
func (e enc) uint64(v uint64) enc  { return binary.BigEndian.AppendUint64(e, v) }
func (e enc) bytes(b []byte) enc   { return append(e.uvarint(uint64(len(b))), b...) }
func (e enc) str(s string) enc     { return append(e.uvarint(uint64(len(s))), s...) }
func (e enc) bool(v bool) enc {
	if v {
		return e.byte(1)
	}
	return e.byte(0)
}

// nowField is what a clock reading of now (unix ns) is recorded as: the group's
// first reading whole, the next ones as the time since the one before (a few bytes
// instead of nine). last is the group's last reading, 0 before its first.
func nowField(last *int64, now int64) int64 {
	v := now
	if *last != 0 {
		v = now - *last
	}
	*last = now
	return v
}

// nowValue reverses nowField.
func nowValue(last *int64, v int64) int64 {
	if *last != 0 {
		v += *last
	}
	*last = v
	return v
}

// timeNanos is t as unix nanoseconds, 0 for the zero time.
func timeNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func nanosTime(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// dec reads the fields enc wrote; the first error sticks and later reads give zeros.
type dec struct {
	b   []byte
	err error
}

func (d *dec) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("recording: %s cut short or damaged", what)
	}
}

func (d *dec) byte() byte {
	if d.err != nil || len(d.b) == 0 {
		d.fail("a byte")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *dec) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("a number")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("a number")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) bytes() []byte {
	n := d.uvarint()
	if d.err != nil || uint64(len(d.b)) < n {
		d.fail("a byte string")
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

// frame reads a net/wire frame, which carries its own length.
func (d *dec) frame() []byte {
	n := wire.FrameLen(d.b)
	if d.err != nil || n < 0 || n > len(d.b) {
		d.fail("a message")
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *dec) uint64() uint64 {
	if d.err != nil || len(d.b) < 8 {
		d.fail("a hash")
		return 0
	}
	v := binary.BigEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *dec) str() string { return string(d.bytes()) }
func (d *dec) bool() bool  { return d.byte() != 0 }
