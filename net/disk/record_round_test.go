package disk

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/node"
)

// A grant's claim round and a release's failure count's highest attempt are logged
// (record format 3: the last two fields before the schedule's presence), and a payload cut before them, or with a
// byte after them, is refused.
func TestRecordRoundIsLogged(t *testing.T) {
	r := node.Record{Kind: node.RecRelease, TaskID: "t", Attempt: 3, Holder: "n2", Round: 0xfeed, Retries: 2, Failed: 3}
	frame := appendRecord(nil, &r)
	payload := frame[frameHeader:]
	got, marker, err := decodeRecord(payload)
	require.NoError(t, err)
	require.False(t, marker)
	require.Equal(t, r, got)

	short := payload[:len(payload)-1-len(binary.AppendUvarint(nil, r.Failed))] // cut the failed attempt and the schedule's presence
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
	v2 := append([]byte{2}, payload[1:len(payload)-1-len(binary.AppendUvarint(nil, r.Failed))]...)
	got, _, err := decodeRecord(v2)
	require.NoError(t, err)
	r.Failed = 0
	require.Equal(t, r, got)

	_, _, err = decodeRecord(append([]byte{recordVersion + 1}, payload[1:]...))
	require.ErrorIs(t, err, errBadPayload, "a format from a newer build is refused")
}

// A log written by a build of record format 3 (no schedule) is read, and a schedule
// record of format 4 round-trips.
func TestRecordFormat3IsReadAndSchedulesRoundTrip(t *testing.T) {
	r := node.Record{Kind: node.RecRelease, TaskID: "t", Attempt: 3, Holder: "n2", Round: 7, Retries: 2, Failed: 3}
	payload := appendRecord(nil, &r)[frameHeader:]
	v3 := append([]byte{3}, payload[1:len(payload)-1]...)
	got, _, err := decodeRecord(v3)
	require.NoError(t, err)
	require.Equal(t, r, got)
	_, _, err = decodeRecord(append(append([]byte(nil), v3...), 0))
	require.ErrorIs(t, err, errBadPayload, "format 3 has no schedule presence: a byte there is garbage")

	s := &node.Schedule{Name: "nightly", Cron: "0 3 * * *", TimeZone: "Europe/Paris", Queue: "q", URL: "http://w/x", Method: "POST",
		Headers: []node.Header{{Name: "X-A", Value: "1"}}, ContentType: "application/json", Body: []byte(`{"a":1}`),
		Missed: node.MissedOne, Created: time.Unix(1700000000, 5).UTC(), Version: 42, Origin: "n1"}
	rec := node.Record{Kind: node.RecSchedule, Schedule: s}
	got, _, err = decodeRecord(appendRecord(nil, &rec)[frameHeader:])
	require.NoError(t, err)
	require.Equal(t, rec, got)

	noSched := node.Record{Kind: node.RecSchedule, Schedule: s}
	p := appendRecord(nil, &noSched)[frameHeader:]
	cut := append([]byte{3}, p[1:]...) // a format 3 record cannot carry one
	_, _, err = decodeRecord(cut)
	require.ErrorIs(t, err, errBadPayload)
}
