package disk

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/node"
)

// A grant's claim round and a release's failure count's highest attempt are logged
// (record format 3: the last two fields), and a payload cut before them, or with a
// byte after them, is refused.
func TestRecordRoundIsLogged(t *testing.T) {
	r := node.Record{Kind: node.RecRelease, TaskID: "t", Attempt: 3, Holder: "n2", Round: 0xfeed, Retries: 2, Failed: 3}
	frame := appendRecord(nil, &r)
	payload := frame[frameHeader:]
	got, marker, err := decodeRecord(payload)
	require.NoError(t, err)
	require.False(t, marker)
	require.Equal(t, r, got)

	short := payload[:len(payload)-len(binary.AppendUvarint(nil, r.Failed))]
	_, _, err = decodeRecord(short)
	require.ErrorIs(t, err, errBadPayload, "a payload without its failed attempt is damaged")

	_, _, err = decodeRecord(append(append([]byte(nil), payload...), 0))
	require.ErrorIs(t, err, errBadPayload, "a byte after the last field is garbage")
}

// A log written by the previous build (record format 2, no failed attempt) is read:
// the count merges as it did then (Failed 0).
func TestRecordFormat2IsRead(t *testing.T) {
	r := node.Record{Kind: node.RecRelease, TaskID: "t", Attempt: 3, Holder: "n2", Round: 0xfeed, Retries: 2, Failed: 3}
	payload := appendRecord(nil, &r)[frameHeader:]
	v2 := append([]byte{2}, payload[1:len(payload)-len(binary.AppendUvarint(nil, r.Failed))]...)
	got, _, err := decodeRecord(v2)
	require.NoError(t, err)
	r.Failed = 0
	require.Equal(t, r, got)

	_, _, err = decodeRecord(append([]byte{recordVersion + 1}, payload[1:]...))
	require.ErrorIs(t, err, errBadPayload, "a format from a newer build is refused")
}
