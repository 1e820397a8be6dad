package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The README's "Flight recorder", pasted as a script into one directory: three
// recorded nodes take 30 tasks and stop; replay reproduces n1's recording, check
// finds no violation over the three, import writes a scenario and sim runs it.
func readmeFlightRecorder(t *testing.T) {
	binary(t) // skips with -short; warms the build cache the script's go build uses
	requireTools(t, "bash", "curl")
	readmePorts(t, 8081, 8082, 8083, 7101, 7102, 7103, 9099)
	w := startPortWorker(t)
	dir := workTree(t)
	block := readmeBlock(t, "### Flight recorder")

	out := runScript(t, dir, block, 3*time.Minute)
	require.Contains(t, out, "recording rec/n1: node n1, run 1: reproduced input for input", out)
	require.Contains(t, out, "no violation", out)
	require.Regexp(t, `checked \d+ events of 3 members: 30 tasks, 30 acknowledged, \d+ deliveries`, out)
	require.Contains(t, out, "wrote incident.json: 3 nodes, 30 tasks, 0 faults", out)
	for i := 1; i <= 30; i++ {
		w.waitFor(t, fmt.Sprintf("POST /worker n=%d", i), 10*time.Second)
	}
}
