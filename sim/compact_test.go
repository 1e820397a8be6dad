package sim

import (
	"testing"
	"time"

	"github.com/miyamotohq/miyamoto/node"
	"github.com/stretchr/testify/require"
)

// compactAtOnce makes a node keep every task it may in a compact form as early as
// it may: every finished task frozen (node/tomb.go) and every pending task cold
// (node/cold.go) at the end of the input after the one that made it eligible.
func compactAtOnce(c *node.Config) {
	c.FinishedDetail, c.PendingDetail, c.ColdAhead = 1, 1, time.Nanosecond
}

// The compact forms change nothing a node does: scenarios that claim, cancel,
// purge, move, forget, restart and lose tasks give the same trace, byte for byte,
// with every task compact as early as it may be and with the defaults. (The
// README's tracehash runs compare every scenario for more seeds; this keeps the
// property under test.)
func TestCompactFormsChangeNoTrace(t *testing.T) {
	if testing.Short() {
		t.Skip("runs 34 simulations")
	}
	for _, name := range []string{
		"swarm-durable", "swarm", "names-resent", "task-names", "power-loss", "durable-crash",
		"crash-acceptor", "remove-dead-node", "ship-of-theseus-3", "join-under-load", "full-nodes",
		"clock-drift", "queue-delete", "schedules", "negative-Q3-forget-at-once", "rolling-amnesia-r5",
		"partition-split",
	} {
		t.Run(name, func(t *testing.T) {
			sc, err := LoadScenario("../scenarios/" + name + ".json")
			require.NoError(t, err)
			plain, err := Run(sc, 1, Options{Hash: true})
			require.NoError(t, err)
			var nodes []*node.Node
			compact, err := Run(sc, 1, Options{Hash: true, tweak: compactAtOnce,
				started: func(n *node.Node) { nodes = append(nodes, n) }})
			require.NoError(t, err)
			require.Equal(t, plain.TraceHash, compact.TraceHash, "seed 1: the trace changed with every task compact at once")
			var made uint64
			for _, n := range nodes {
				made += n.ColdsMade()
			}
			require.NotZero(t, made, "no task went cold: the run compared nothing")
		})
	}
}
