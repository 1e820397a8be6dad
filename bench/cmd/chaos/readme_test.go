package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/bench/readme"
)

// readmeChaosCommands is the lines of the ```sh blocks of the README's "Chaos
// testing" section.
func readmeChaosCommands(t *testing.T) []string {
	t.Helper()
	lines, err := readme.Commands(filepath.Join("..", "..", "..", "README.md"), "## Chaos testing")
	require.NoError(t, err)
	return lines
}

// The README's chaos commands take minutes each, so they are run here as far as
// --print-schedule (their flags parse, and the schedule they replay is drawn);
// the 60-second one runs in full in CI (.ci/run), which this test checks too.
func TestREADMEChaosCommands(t *testing.T) {
	lines := readmeChaosCommands(t)
	require.NotEmpty(t, lines)
	const prefix = "go run ./bench/cmd/chaos "
	for _, line := range lines {
		require.True(t, strings.HasPrefix(line, prefix), "README chaos section: %q is not a chaos command: add a check for it", line)
		var out, errOut strings.Builder
		code := run(append(strings.Fields(strings.TrimPrefix(line, prefix)), "--print-schedule"), &out, &errOut)
		require.Equal(t, exitOK, code, "%s: %s", line, errOut.String())
		require.Contains(t, out.String(), "replay: go run ./bench/cmd/chaos ", line)
	}
	ci, err := os.ReadFile(filepath.Join("..", "..", "..", ".ci", "run"))
	require.NoError(t, err)
	require.Contains(t, string(ci), "\n"+lines[0]+" --binary ", "CI runs the README's first chaos command (with the binary it built)")
}
