package recorder

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/net/disk"
	"github.com/miyamotohq/miyamoto/node"
)

// describeEvent reads every kind of event the node's reads make whole, so that
// the observer, which skips events with it to find an input's first clock
// reading, lands on the next event.
func TestDescribeEventReadsTheStorageEventsWhole(t *testing.T) {
	frame := disk.AppendRecordFrame(nil, &node.Record{Kind: node.RecRelease, TaskID: "t1", Attempt: 3})
	events := map[string]enc{
		"storage health": enc{evStoreErr}.str("disk full"),
		"loss report":    enc{evLost}.varint(5).bool(true),
		"log load":       enc{evLoad}.str("").uvarint(1).bytes(frame),
		"record loaded":  enc{evLoadRec}.bytes(frame),
		"load's end":     enc{evLoadEnd}.str("corrupt"),
	}
	for name, e := range events {
		d := dec{b: e.byte(evNow).varint(42)}
		what := describeEvent(&d)
		require.NoError(t, d.err, name)
		require.Equal(t, []byte{evNow}, d.b[:1], "%s (%q) was not read whole", name, what)
	}
}
