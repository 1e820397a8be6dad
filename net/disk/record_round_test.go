package disk

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/node"
)

// A record's claim round is the payload's last field; a payload written before it
// existed ends without it and decodes with round 0.
func TestRecordRoundLastAndOptional(t *testing.T) {
	r := node.Record{Kind: node.RecGrant, TaskID: "t", Attempt: 3, Holder: "n2", Round: 0xfeed}
	frame := appendRecord(nil, &r)
	payload := frame[frameHeader:]
	got, marker, err := decodeRecord(payload)
	require.NoError(t, err)
	require.False(t, marker)
	require.Equal(t, r, got)

	old := payload[:len(payload)-len(binary.AppendUvarint(nil, r.Round))]
	got, _, err = decodeRecord(old)
	require.NoError(t, err)
	r.Round = 0
	require.Equal(t, r, got)

	_, _, err = decodeRecord(append(append([]byte(nil), payload...), 0))
	require.ErrorIs(t, err, errBadPayload, "a byte after the round is garbage")
}
