package sim

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// The simulated workers' answers carry a body like a real worker's, so that the
// nodes' attempt histories hold what the daemon's would.
func TestWorkerBody(t *testing.T) {
	require.Equal(t, "", workerBody(0), "no answer, no body")
	require.Equal(t, "ok", workerBody(200))
	require.Equal(t, "simulated worker: 503", workerBody(503))
	require.Equal(t, "simulated worker: 400", workerBody(400))
}
