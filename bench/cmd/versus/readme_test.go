package main

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/bench/readme"
)

const readmeCommandPrefix = "go run ./bench/cmd/versus "

// readmeVersusCommands is the versus commands of the README's "The simulator" section
// (its subsection on the speed before and after membership).
func readmeVersusCommands(t *testing.T) []string {
	t.Helper()
	lines, err := readme.Commands(filepath.Join("..", "..", "..", "README.md"), "## The simulator")
	require.NoError(t, err)
	var cmds []string
	for _, line := range lines {
		if strings.HasPrefix(line, readmeCommandPrefix) {
			cmds = append(cmds, line)
		}
	}
	return cmds
}

// The README's comparison takes minutes, so each command runs here with its flags as
// written and then one round, one simulator iteration and a short load (a later flag
// wins): the base commit is written out and built, both sides measure every figure,
// and the table has a row of two figures for each, judged or not, and no leftover
// temporary directory.
func TestREADMEVersusCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs both trees' benchmarks: skipped with -short")
	}
	cmds := readmeVersusCommands(t)
	require.NotEmpty(t, cmds, "the README shows no %q command", readmeCommandPrefix)
	for _, line := range cmds {
		args := strings.Fields(strings.TrimPrefix(line, readmeCommandPrefix))
		cfg, err := parseFlags(args, &strings.Builder{})
		require.NoError(t, err, line)
		tmp := t.TempDir()
		t.Setenv("TMPDIR", tmp) // to see that the run deletes what it made
		var out, errOut strings.Builder
		code := run(append(args, "-rounds", "1", "-benchtime", "1x", "-duration", "300ms", "-q"), &out, &errOut)
		require.Equal(t, exitOK, code, "%s: %s\n%s", line, errOut.String(), out.String())
		require.Empty(t, errOut.String(), "-q prints only the table")
		requireTable(t, out.String(), cfg)
		left, err := filepath.Glob(filepath.Join(tmp, "miyamoto-versus-*"))
		require.NoError(t, err)
		require.Empty(t, left, "the base tree and binaries are deleted at the end")
	}
}

// requireTable checks the table's header and that every metric the flags ask for
// has a row with a figure on both sides, a ratio and a verdict.
func requireTable(t *testing.T, out string, cfg config) {
	t.Helper()
	lines := strings.Split(out, "\n")
	require.Regexp(t, `^\s*metric\s+base [0-9a-f]{7}\s+current \S+\s+current/base\s+within 5%$`, lines[0])
	benches := []string{"BenchmarkSim5NodeR3", "BenchmarkSim5NodeR3Durable"}
	if cfg.simBench == "" {
		benches = nil
	}
	metrics := metricsFor(benches, cfg.targets)
	require.NotEmpty(t, metrics)
	figure := `[0-9][0-9,.]*(%|×)?`
	for i, m := range metrics {
		verdict := `-`
		if m.judged {
			verdict = `(yes|NO \([-+][0-9.]+%\))`
		}
		row := regexp.MustCompile(`^\s*` + regexp.QuoteMeta(m.label) + `\s{2,}(` + figure + `)\s{2,}(` + figure + `)\s{2,}[0-9]+\.[0-9]{3}\s{2,}` + verdict + `$`)
		require.Less(t, i+1, len(lines), "no row for %s in\n%s", m.label, out)
		match := row.FindStringSubmatch(lines[i+1])
		require.NotNil(t, match, "row %d is not %s's with two figures:\n%s", i+1, m.label, out)
		for _, f := range []string{match[1], match[3]} {
			require.Regexp(t, `[1-9]`, f, "%s: a figure of zero:\n%s", m.label, out)
		}
	}
	require.Regexp(t, `^Medians of 1 interleaved round\(s\); base [0-9a-f]{7}, current `, lines[len(metrics)+1])
}
