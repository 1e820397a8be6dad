package disk

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/miyamotohq/miyamoto/node"
)

// RoundTrip returns r as the log gives it back after a restart: framed, checked and
// decoded by the same code as Append and Load. The simulator passes every record
// through it, so that a node never replays a record the real log could not give it.
func RoundTrip(r node.Record) node.Record {
	frame := appendRecord(nil, &r)
	payload := frame[frameHeader:]
	if binary.BigEndian.Uint32(frame[4:]) != crc32.Checksum(payload, crcTable) {
		panic("disk: a record's checksum does not match right after framing")
	}
	got, marker, err := decodeRecord(payload)
	if err != nil || marker {
		panic(fmt.Sprintf("disk: record %+v does not decode: %v", r, err))
	}
	return got
}
