//go:build miyamoto_unsafe

package daemon

import (
	"os"

	"github.com/miyamotohq/miyamoto/node"
)

// A test-only build (go build -tags miyamoto_unsafe): its nodes run the protocol
// MIYAMOTO_UNSAFE_PROTOCOL names (naive: the original Miyamoto's, which delivers a
// task twice when a replica is slow), so that a test can record a run that breaks
// the invariants and see `miyamoto check` flag it. No release build has this file.
func init() {
	adjustNodeConfig = func(c *node.Config) {
		if p, err := node.ParseProtocol(os.Getenv("MIYAMOTO_UNSAFE_PROTOCOL")); err == nil {
			c.Protocol = p
		}
	}
}
