package main

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Bad flags exit 2 with one line naming the flag.
func TestBadFlags(t *testing.T) {
	for args, want := range map[string]string{
		"--nodes 2":                        "--nodes: must be between 3 and 9",
		"--duration 5s":                    "--duration: must be between 10s and 24h",
		"--rate 0":                         "--rate: must be above 0",
		"--lease 300ms":                    "--lease: must be longer than twice --max-clock-drift (400ms)",
		"--max-clock-drift -1s":            "--max-clock-drift: must not be negative",
		"--replica-offset -1s":             "--replica-offset: must not be negative",
		"--fail-rate 0.9":                  "--fail-rate: must be between 0 and 0.5",
		"--faults kill,meteor":             `--faults: "meteor" is not a fault`,
		"--max-countdown -1":               "--max-countdown: must be between 0 and 3600",
		"--worker-delay 2s":                "--worker-delay: must be between 0 and 1s",
		"--drain 0s":                       "--drain: must be at least 1s",
		"--slow-link 6s":                   "--slow-link: must be between 0 and 5s",
		"--names -1":                       "--names: must not be negative",
		"--nope":                           "flag provided but not defined: -nope",
		"extra":                            `unexpected argument "extra"`,
		"--seed -3":                        `invalid value "-3" for flag -seed`,
		"--duration 1m --rate 2000":        "--rate: must be above 0 and at most 1000",
		"--lease 2m --max-clock-drift 1ms": "--lease: must be longer than twice --max-clock-drift (2ms) and at most 1m",
	} {
		var out, errOut strings.Builder
		code := run(strings.Fields(args), &out, &errOut)
		require.Equal(t, exitBadArgs, code, args)
		require.Empty(t, out.String(), args)
		require.Equal(t, 1, strings.Count(errOut.String(), "\n"), "%s: %q", args, errOut.String())
		require.Contains(t, errOut.String(), want, args)
	}
}

func TestHelp(t *testing.T) {
	var out, errOut strings.Builder
	require.Equal(t, exitOK, run([]string{"--help"}, &out, &errOut))
	require.Contains(t, out.String(), "-seed")
	require.Empty(t, errOut.String())
}

// --print-schedule prints the replay command and the schedule, the same for the
// same flags; the replay command, run with --print-schedule, prints it again.
func TestPrintSchedule(t *testing.T) {
	var out, errOut strings.Builder
	require.Equal(t, exitOK, run([]string{"--seed", "9", "--nodes", "5", "--duration", "2m", "--faults", "kill,split", "--print-schedule"}, &out, &errOut))
	first := out.String()
	require.Contains(t, first, "replay: go run ./bench/cmd/chaos --nodes 5 --seed 9 --duration 2m0s --rate 20 --lease 3s --max-clock-drift 200ms --replica-offset 1s --faults kill,split ")
	require.Contains(t, first, "kill")
	require.Contains(t, first, "split")
	require.NotContains(t, first, "pause")

	replay := strings.TrimPrefix(strings.SplitN(first, "\n", 2)[0], "replay: go run ./bench/cmd/chaos ")
	out.Reset()
	require.Equal(t, exitOK, run(append(strings.Fields(replay), "--print-schedule"), &out, &errOut))
	require.Equal(t, first, out.String())
	require.Empty(t, errOut.String())
}

// Without --seed a run draws one (and prints it in the replay command).
func TestRandomSeed(t *testing.T) {
	cfg, _, err := parseFlags(nil)
	require.NoError(t, err)
	require.NotZero(t, cfg.Seed)
	require.Equal(t, AllKinds, cfg.Kinds)
	require.Equal(t, 60*time.Second, cfg.Duration)
	require.Contains(t, cfg.ReplayCommand(), "--faults all ")
}
