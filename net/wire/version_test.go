package wire

import (
	"crypto/sha256"
	"encoding/hex"
	"reflect"
	"testing"

	"github.com/miyamotohq/miyamoto/node"
)

// encodingDigests are the encodings each wire Version was: the digest of sampleFrames
// under it. A version's entry never changes, so that an encoding changed without a
// new Version, which an older peer would misread, fails TestEncodingChangesWithTheVersion.
// A version may change what a field means and not the encoding (version 8: a
// Store's answer echoes the task's nonce); its digest differs all the same, by the
// version byte each frame starts with. (Versions 1 to 6 came before this check.)
var encodingDigests = map[byte]string{
	7: "28a48edb99307daa",
	8: "6f6e1431c3fa17be",
}

// sampleFrames encodes, for every message type, a message with every field set
// (fullMessage, with and without fullTask) and one with only its type.
func sampleFrames() []byte {
	var b []byte
	for typ := node.MsgType(1); typ <= node.MaxMsgType; typ++ {
		b = AppendFrame(b, fullMessage(typ, fullTask()))
		b = AppendFrame(b, fullMessage(typ, nil))
		b = AppendFrame(b, node.Message{Type: typ})
	}
	return b
}

func TestEncodingChangesWithTheVersion(t *testing.T) {
	// A field the samples leave zero would change the encoding unseen.
	requireEveryFieldSet(t, reflect.ValueOf(fullMessage(node.MsgStore, fullTask())), "Message")
	requireEveryFieldSet(t, reflect.ValueOf(*fullTask()), "Task")

	sum := sha256.Sum256(sampleFrames())
	digest := hex.EncodeToString(sum[:8])
	if want, ok := encodingDigests[Version]; !ok || want != digest {
		t.Fatalf("the wire encoding (digest %s) is not the one of Version %d (%q): a peer of this "+
			"version would misread it. Bump Version (net/wire/wire.go, with what changed) and add "+
			"{%d: %q} to encodingDigests; keep the old entries", digest, Version, want, Version+1, digest)
	}
}

// requireEveryFieldSet fails for a field of struct v (what) that holds its zero value.
func requireEveryFieldSet(t *testing.T, v reflect.Value, what string) {
	t.Helper()
	for i := range v.NumField() {
		if v.Field(i).IsZero() {
			t.Errorf("%s.%s is zero in the wire tests' full sample: set it (fullMessage, fullTask), so that the encoding's digest covers it",
				what, v.Type().Field(i).Name)
		}
	}
}
