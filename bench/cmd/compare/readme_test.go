package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/bench/readme"
)

// readmeCompareCommands is the lines of the ```sh blocks of the README's
// "Throughput against the physical limit" section.
func readmeCompareCommands(t *testing.T) []string {
	t.Helper()
	path := filepath.Join("..", "..", "..", "README.md")
	lines, err := readme.Commands(path, "## Throughput against the physical limit")
	require.NoError(t, err)
	// And the flight recorder's cost with HTTP in and out (the ```sh block after
	// that paragraph's first words).
	block, err := readme.BlockAfter(path, "\n**With HTTP in and out**")
	require.NoError(t, err)
	return append(lines, strings.Split(block, "\n")...)
}

// The README's comparison takes minutes, so each command runs here with its flags as
// written and then a shorter -duration and one round (a later flag wins): every
// target it names starts, takes its load and delivers it, or is reported skipped.
func TestREADMECompareCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("starts every target: skipped with -short")
	}
	lines := readmeCompareCommands(t)
	require.NotEmpty(t, lines)
	const prefix = "go run ./bench/cmd/compare "
	for _, line := range lines {
		require.True(t, strings.HasPrefix(line, prefix), "README comparison section: %q is not a compare command: add a check for it", line)
		args := strings.Fields(strings.TrimPrefix(line, prefix))
		cfg, _, err := parseFlags(args, &strings.Builder{})
		require.NoError(t, err, line)
		var out, errOut strings.Builder
		code := run(append(args, "-duration", "300ms", "-rounds", "1", "-settle", "0", "-q"), &out, &errOut)
		require.Equal(t, exitOK, code, "%s: %s", line, errOut.String())
		for _, target := range cfg.Targets {
			ran := strings.Contains(out.String(), "\n"+target+" ") || strings.Contains(out.String(), " "+target+" ")
			skipped := strings.Contains(out.String(), "\n"+target+": skipped: ")
			require.True(t, ran || skipped, "%s: no row for %s in\n%s", line, target, out.String())
			require.False(t, skipped && os.Getenv("CI") == "true", "%s: %s skipped in CI", line, target)
		}
		require.NotContains(t, out.String(), "delivered whose enqueue was not acknowledged", line)
	}
}
