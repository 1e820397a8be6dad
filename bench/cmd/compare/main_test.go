package main

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/bench"
)

func TestParseFlags(t *testing.T) {
	cfg, _, err := parseFlags([]string{"-mode", "open", "-rate", "500", "-duration", "2s", "-targets", "single, baseline"}, &strings.Builder{})
	require.NoError(t, err)
	require.Equal(t, []string{"single", "baseline"}, cfg.Targets)
	require.Equal(t, bench.LoadConfig{Mode: "open", Rate: 500, Concurrency: 32, Duration: 2 * time.Second, MaxInFlight: 1024, Connections: 64}, cfg.Load)

	cfg, _, err = parseFlags([]string{"-settle", "0"}, &strings.Builder{})
	require.NoError(t, err)
	require.Negative(t, cfg.Settle, "zero settle means none, not the default")
}

// Bad flags exit 2 with one line naming the flag.
func TestBadFlags(t *testing.T) {
	for args, want := range map[string]string{
		"-mode fast":                  "-mode: must be open or closed",
		"-mode open -concurrency 3":   "-concurrency: applies to -mode closed only",
		"-rate 10":                    "-rate: applies to -mode open only",
		"-mode open -rate 0":          "-rate: must be between",
		"-concurrency 0":              "-concurrency: must be between",
		"-duration 0s":                "-duration: must be between",
		"-targets single,mars":        `-targets: "mars" is not a target`,
		"-targets single,single":      `-targets: "single" is listed twice`,
		"-countdown -1s":              "-countdown: must not be negative",
		"-connections 0 -mode open":   "-connections: must be between",
		"-nope":                       "flag provided but not defined: -nope",
		"extra":                       `unexpected argument "extra"`,
		"-drain-timeout 0s":           "-drain-timeout: must be positive",
		"-max-in-flight 0 -mode open": "-max-in-flight: must be positive",
		"-rounds 0":                   "-rounds: must be between 1 and 100",
	} {
		var out, errOut strings.Builder
		code := run(strings.Fields(args), &out, &errOut)
		require.Equal(t, exitBadArgs, code, args)
		require.Empty(t, out.String(), args)
		require.Equal(t, 1, strings.Count(errOut.String(), "\n"), "%s: %q", args, errOut.String())
		require.Contains(t, errOut.String(), want, args)
	}
}
