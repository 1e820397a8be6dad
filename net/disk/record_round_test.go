package disk

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/net/wire"
	"github.com/miyamotohq/miyamoto/node"
)

// A grant's claim round, a release's failure count's highest attempt and an
// outcome's reason are logged (since record format 4: the last fields before the
// schedule's presence), and a payload cut before them, or with a byte after the
// last field, is refused.
func TestRecordRoundIsLogged(t *testing.T) {
	r := node.Record{Kind: node.RecRelease, TaskID: "t", Attempt: 3, Holder: "n2", Round: 0xfeed, Retries: 2, Failed: 3}
	frame := appendRecord(nil, &r)
	payload := frame[frameHeader:]
	got, marker, err := decodeRecord(payload)
	require.NoError(t, err)
	require.False(t, marker)
	require.Equal(t, r, got)

	short := payload[:len(payload)-4-len(binary.AppendUvarint(nil, r.Failed))] // cut the failed attempt, the reason, the schedule's presence, the failed bits and the roster's presence
	_, _, err = decodeRecord(short)
	require.ErrorIs(t, err, errBadPayload, "a payload without its failed attempt is damaged")

	out := node.Record{Kind: node.RecOutcome, TaskID: "t", State: node.StateDead, Status: 500, Reason: "retry limits reached (task_retry_limit 1) after 2 failed deliveries; last: HTTP 500"}
	got, _, err = decodeRecord(appendRecord(nil, &out)[frameHeader:])
	require.NoError(t, err)
	require.Equal(t, out, got)
	p := appendRecord(nil, &out)[frameHeader:]
	_, _, err = decodeRecord(p[:len(p)-1])
	require.ErrorIs(t, err, errBadPayload, "a payload cut inside its reason is damaged")

	_, _, err = decodeRecord(append(append([]byte(nil), payload...), 0))
	require.ErrorIs(t, err, errBadPayload, "a byte after the last field is garbage")
}

// A log written by older builds is read: record format 2 (no failed attempt: the
// count merges as it did then, Failed 0) and format 3 (no reason).
func TestRecordFormats2And3AreRead(t *testing.T) {
	r := node.Record{Kind: node.RecOutcome, TaskID: "t", Attempt: 3, Holder: "n2", Round: 0xfeed, Retries: 2, Failed: 3, State: node.StateDead, Reason: "why"}
	payload := format4(t, appendRecord(nil, &r)[frameHeader:])
	withoutReason := payload[1 : len(payload)-1-1-len(r.Reason)] // no reason, no schedule presence
	got, _, err := decodeRecord(append([]byte{3}, withoutReason...))
	require.NoError(t, err)
	r.Reason = ""
	require.Equal(t, r, got)

	v2 := append([]byte{2}, withoutReason[:len(withoutReason)-len(binary.AppendUvarint(nil, r.Failed))]...)
	got, _, err = decodeRecord(v2)
	require.NoError(t, err)
	r.Failed = 0
	require.Equal(t, r, got)

	_, _, err = decodeRecord(append([]byte{recordVersion + 1}, payload[1:]...))
	require.ErrorIs(t, err, errBadPayload, "a format from a newer build is refused")
}

// A setting record of format 3 (its setting as wire version 2 wrote it) is read,
// with the fields that differ from the defaults taken as explicit; format 4 keeps
// the explicit fields and the deletion mark.
func TestSettingRecordFormats(t *testing.T) {
	cfg := node.DefaultQueueConfig()
	cfg.Delivery = node.AtMostOnce
	set := &node.QueueSetting{Queue: "q", Config: cfg, Explicit: node.FieldDelivery | node.FieldDispatchDeadline, Deleted: true, Version: 7, Origin: "n2"}
	r := node.Record{Kind: node.RecSetting, Setting: set}
	got, _, err := decodeRecord(appendRecord(nil, &r)[frameHeader:])
	require.NoError(t, err)
	require.Equal(t, r, got)
	payload := format4(t, appendRecord(nil, &r)[frameHeader:])

	// Format 3: the setting without its last two fields, then round and failed (no
	// reason, no schedule presence).
	tail := len(binary.AppendUvarint(nil, r.Round)) + len(binary.AppendUvarint(nil, r.Failed))
	extra := len(binary.AppendUvarint(nil, uint64(set.Explicit))) + 1
	end := len(payload) - 2 - tail
	v3 := append([]byte{3}, payload[1:end-extra]...)
	v3 = append(v3, payload[end:len(payload)-2]...)
	got, _, err = decodeRecord(v3)
	require.NoError(t, err)
	old := *set
	old.Explicit, old.Deleted = node.FieldDelivery, false
	require.Equal(t, &old, got.Setting)
}

// A log written by a build of record format 3 (no schedule) is read, and a schedule
// record of format 4 round-trips.
func TestRecordFormat3IsReadAndSchedulesRoundTrip(t *testing.T) {
	r := node.Record{Kind: node.RecRelease, TaskID: "t", Attempt: 3, Holder: "n2", Round: 7, Retries: 2, Failed: 3}
	payload := format4(t, appendRecord(nil, &r)[frameHeader:])
	v3 := append([]byte{3}, payload[1:len(payload)-2]...) // no reason, no schedule presence
	got, _, err := decodeRecord(v3)
	require.NoError(t, err)
	require.Equal(t, r, got)
	_, _, err = decodeRecord(append(append([]byte(nil), v3...), 0))
	require.ErrorIs(t, err, errBadPayload, "format 3 has no reason nor schedule presence: a byte there is garbage")

	s := &node.Schedule{Name: "nightly", Cron: "0 3 * * *", TimeZone: "Europe/Paris", Queue: "q", URL: "http://w/x", Method: "POST",
		Headers: []node.Header{{Name: "X-A", Value: "1"}}, ContentType: "application/json", Body: []byte(`{"a":1}`),
		Missed: node.MissedOne, Created: time.Unix(1700000000, 5).UTC(), Version: 42, Origin: "n1"}
	rec := node.Record{Kind: node.RecSchedule, Schedule: s}
	got, _, err = decodeRecord(appendRecord(nil, &rec)[frameHeader:])
	require.NoError(t, err)
	require.Equal(t, rec, got)

	noSched := node.Record{Kind: node.RecSchedule, Schedule: s}
	p := format4(t, appendRecord(nil, &noSched)[frameHeader:])
	cut := append([]byte{3}, p[1:]...) // a format 3 record cannot carry one
	_, _, err = decodeRecord(cut)
	require.ErrorIs(t, err, errBadPayload)
}

// format4 is payload, a record of format 5 that locates no failure (FailedBits 0)
// and has no roster, as format 4 wrote it: neither the failed bits nor the roster's
// presence at the end, and its version byte.
func format4(t *testing.T, payload []byte) []byte {
	t.Helper()
	require.Equal(t, recordVersion, payload[0])
	require.Equal(t, []byte{0, 0}, payload[len(payload)-2:], "failed bits 0 and no roster, a byte each")
	return append([]byte{4}, payload[1:len(payload)-2]...)
}

// Record format 5 carries the failed attempts a count locates (FailedBits, last), so
// that replaying the log rebuilds the count exactly; a payload cut before them is
// refused, and a log of format 4 is read with no bits (node merges such a count as
// an older build's).
func TestRecordFormat5CarriesFailedBits(t *testing.T) {
	r := node.Record{Kind: node.RecRelease, TaskID: "t", Attempt: 3, Holder: "n2", Round: 7, NextETA: time.Unix(1700000000, 0).UTC(), Retries: 70, Failed: 300, FailedBits: 1<<63 | 0b101}
	payload := appendRecord(nil, &r)[frameHeader:]
	require.Equal(t, recordVersion, payload[0])
	got, _, err := decodeRecord(payload)
	require.NoError(t, err)
	require.Equal(t, r, got)

	bitsLen := len(binary.AppendUvarint(nil, r.FailedBits)) + 1 // and the roster's presence
	_, _, err = decodeRecord(payload[:len(payload)-bitsLen])
	require.ErrorIs(t, err, errBadPayload, "a format 5 payload without its failed bits is damaged")

	v4 := append([]byte{4}, payload[1:len(payload)-bitsLen]...)
	got, _, err = decodeRecord(v4)
	require.NoError(t, err)
	r.FailedBits = 0
	require.Equal(t, r, got)
}

// A roster record (format 5) round-trips, a record of format 4 (no roster
// presence) is still read, and a roster record cut before its roster is refused.
func TestRosterRecordAndFormat4(t *testing.T) {
	roster := &node.Roster{Epoch: 3, Leader: "n2", Members: []node.Member{{ID: "n1", Addr: "10.0.0.1:7001"}, {ID: "n2", Addr: "10.0.0.2:7001"}, {ID: "n3"}}}
	rec := node.Record{Kind: node.RecRoster, Roster: roster}
	payload := appendRecord(nil, &rec)[frameHeader:]
	got, _, err := decodeRecord(payload)
	require.NoError(t, err)
	require.Equal(t, rec, got)

	withoutRoster := node.Record{Kind: node.RecRelease, TaskID: "t", Attempt: 3, Holder: "n2", Round: 7, Reason: "r"}
	p := appendRecord(nil, &withoutRoster)[frameHeader:]
	v4 := format4(t, p)
	got, _, err = decodeRecord(v4)
	require.NoError(t, err)
	require.Equal(t, withoutRoster, got)

	asV4 := append([]byte{4}, payload[1:]...) // format 4 has no roster: its presence is garbage
	_, _, err = decodeRecord(asV4)
	require.ErrorIs(t, err, errBadPayload)
	noRoster := append(append([]byte(nil), payload[:len(payload)-len(wireRoster(roster))-1]...), 0)
	_, _, err = decodeRecord(noRoster)
	require.ErrorIs(t, err, errBadPayload, "a roster record without its roster is damaged")
}

func wireRoster(r *node.Roster) []byte { return wire.AppendRoster(nil, r) }

// A roster record of format 6 carries the roster's removed members; one of format
// 5 (the roster as wire version 6 wrote it: no removed members) is still read, with
// none; a format 6 payload read as format 5 is refused (the removed members are
// left over).
func TestRosterRecordCarriesRemoved(t *testing.T) {
	roster := &node.Roster{Epoch: 9, Leader: "n3", Members: []node.Member{{ID: "n3"}, {ID: "n4"}, {ID: "n6"}}, Removed: []node.NodeID{"n2", "n1"}}
	rec := node.Record{Kind: node.RecRoster, Roster: roster}
	payload := appendRecord(nil, &rec)[frameHeader:]
	require.Equal(t, byte(6), payload[0])
	got, _, err := decodeRecord(payload)
	require.NoError(t, err)
	require.Equal(t, rec, got)

	asV5 := append([]byte{5}, payload[1:]...)
	_, _, err = decodeRecord(asV5)
	require.ErrorIs(t, err, errBadPayload)

	without := *roster
	without.Removed = nil
	p := appendRecord(nil, &node.Record{Kind: node.RecRoster, Roster: &without})[frameHeader:]
	require.Equal(t, byte(0), p[len(p)-1], "no removed members: a count of 0 last")
	v5 := append([]byte{5}, p[1:len(p)-1]...)
	got, _, err = decodeRecord(v5)
	require.NoError(t, err)
	require.Equal(t, node.Record{Kind: node.RecRoster, Roster: &without}, got)
}

// A moved task's list version is written last in its record, only when not 0, and
// read back (RecTask and RecMove alike).
func TestRecordCarriesListVersion(t *testing.T) {
	task := &node.Task{ID: "t", Queue: "q", URL: "http://w/", ETA: time.Unix(1700000000, 0).UTC(), Created: time.Unix(1700000000, 0).UTC(), Replicas: []node.NodeID{"n2", "n4"}}
	plain := appendRecord(nil, &node.Record{Kind: node.RecTask, TaskID: "t", Task: task})
	moved := *task
	moved.ListVersion = 7
	for _, kind := range []node.RecordKind{node.RecTask, node.RecMove} {
		r := node.Record{Kind: kind, TaskID: "t", Task: &moved, Attempt: 7}
		frame := appendRecord(nil, &r)
		got, _, err := decodeRecord(frame[frameHeader:])
		require.NoError(t, err)
		require.Equal(t, r, got)
	}
	got, _, err := decodeRecord(plain[frameHeader:])
	require.NoError(t, err)
	require.Zero(t, got.Task.ListVersion)
}
