package disk

import (
	"crypto/sha256"
	"encoding/hex"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/miyamotohq/miyamoto/node"
)

// recordDigests are the payload encodings each recordVersion was: the digest of
// sampleRecords' frames under it. A version's entry never changes, so that an
// encoding changed without a new recordVersion, which an older build would misread
// from the same log, fails TestRecordEncodingChangesWithTheVersion. (Versions 1 to 5
// came before this check.)
var recordDigests = map[byte]string{
	6: "051d5d5eddf8a8b7",
}

// fullRecord is a record with every field set.
func fullRecord() node.Record {
	task := fullTask("6f1c1f8e-2b7e-4d4e-9a53-6f0d6f5b9f11")
	task.ListVersion = 5
	return node.Record{
		Kind: node.RecTask, Task: task, TaskID: task.ID, Attempt: math.MaxUint64, Holder: "n2", Round: 0xfeedface,
		LeaseEnd: utc(1_700_000_200, 7), NextETA: utc(-5, 999_999_999), Retries: math.MinInt64, Failed: math.MaxUint64 - 1,
		FailedBits: math.MaxUint64, State: node.StateDead, Status: 503, Reason: "retry limits reached",
		Setting: &node.QueueSetting{Queue: "emails", Paused: true, Explicit: node.FieldRate, PurgedBefore: utc(1_800_000_000, 5), Version: 12, Origin: "n4",
			Config: node.QueueConfig{Delivery: node.AtMostOnce, DispatchDeadline: 3 * time.Second, Rate: 2.5, BucketSize: 4, MaxConcurrent: 9,
				Retry: node.RetryConfig{TaskRetryLimit: 5, TaskAgeLimit: time.Hour, MinBackoff: time.Second, MaxBackoff: time.Minute, MaxDoublings: 3}}},
		Schedule: &node.Schedule{Name: "nightly", Cron: "0 30 3 * * *", TimeZone: "Europe/Paris", Queue: "emails", URL: "http://w/x", Method: "PUT",
			Headers: []node.Header{{Name: "X-A", Value: "1"}}, ContentType: "text/plain", Body: []byte("\x00hi"), Missed: node.MissedOne,
			Deleted: true, Created: utc(1_700_000_000, 9), Version: 1 << 40, Origin: "n5"},
		Roster: &node.Roster{Epoch: 7, Leader: "n2", Members: []node.Member{{ID: "n1", Addr: "10.0.0.1:7001"}, {ID: "n2"}},
			Removed: []node.NodeID{"n9"}},
	}
}

// sampleRecords frames fullRecord under every record kind, and each kind with no
// field but the one it requires.
func sampleRecords() []byte {
	var b []byte
	for k := node.RecTask; k <= maxKind; k++ {
		r := fullRecord()
		r.Kind = k
		b = appendRecord(b, &r)
		own := node.Record{Kind: k}
		switch k {
		case node.RecTask, node.RecMove:
			own.Task = r.Task
		case node.RecSetting:
			own.Setting = r.Setting
		case node.RecSchedule:
			own.Schedule = r.Schedule
		case node.RecRoster, node.RecRosterAccept:
			own.Roster = r.Roster
		}
		b = appendRecord(b, &own)
	}
	return b
}

func TestRecordEncodingChangesWithTheVersion(t *testing.T) {
	r := reflect.ValueOf(fullRecord())
	for i := range r.NumField() {
		if r.Field(i).IsZero() {
			t.Errorf("Record.%s is zero in fullRecord: set it, so that the encoding's digest covers it", r.Type().Field(i).Name)
		}
	}
	sum := sha256.Sum256(sampleRecords())
	digest := hex.EncodeToString(sum[:8])
	for v, d := range recordDigests {
		if v != recordVersion && d == digest {
			t.Fatalf("the record encoding is version %d's again but recordVersion is %d", v, recordVersion)
		}
	}
	if want, ok := recordDigests[recordVersion]; !ok || want != digest {
		t.Fatalf("the record encoding (digest %s) is not the one of recordVersion %d (%q): an older build "+
			"would misread this build's log. Bump recordVersion (net/disk/record.go, with what changed and "+
			"how older records are read) and add {%d: %q} to recordDigests; keep the old entries",
			digest, recordVersion, want, recordVersion+1, digest)
	}
}
