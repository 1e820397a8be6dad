package disk

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/node"
)

// A grant's claim round is logged with it (record format 2: the last field), and a
// payload cut before it, or with a byte after it, is refused.
func TestRecordRoundIsLogged(t *testing.T) {
	r := node.Record{Kind: node.RecGrant, TaskID: "t", Attempt: 3, Holder: "n2", Round: 0xfeed}
	frame := appendRecord(nil, &r)
	payload := frame[frameHeader:]
	got, marker, err := decodeRecord(payload)
	require.NoError(t, err)
	require.False(t, marker)
	require.Equal(t, r, got)

	short := payload[:len(payload)-len(binary.AppendUvarint(nil, r.Round))]
	_, _, err = decodeRecord(short)
	require.ErrorIs(t, err, errBadPayload, "a payload without its round is damaged")

	_, _, err = decodeRecord(append(append([]byte(nil), payload...), 0))
	require.ErrorIs(t, err, errBadPayload, "a byte after the round is garbage")
}
