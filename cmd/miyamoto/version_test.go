package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/net/version"
)

// versionVariable is what -ldflags -X sets (the Dockerfile and the README use it).
const versionVariable = "github.com/miyamotohq/miyamoto/net/version.Version"

func TestVersionCommand(t *testing.T) {
	want := "miyamoto " + version.String() + " " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + "\n"
	for _, args := range [][]string{{"--version"}, {"version"}, {"-version"}} {
		var out, errOut bytes.Buffer
		require.Equal(t, exitOK, run(args, &out, &errOut), args)
		require.Equal(t, want, out.String(), args)
		require.Empty(t, errOut.String())
	}
	var out, errOut bytes.Buffer
	require.Equal(t, exitBadArgs, run([]string{"version", "extra"}, &out, &errOut))
	require.Equal(t, "miyamoto version: takes no arguments, not \"extra\"\n", errOut.String())
}

// A version set at link time, as a release build sets it, is what --version, the
// simulator's output and its trace header say.
func TestVersionSetAtLinkTime(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds the binary: skipped with -short")
	}
	const v = "v9.9.9-linktest"
	bin := filepath.Join(t.TempDir(), "miyamoto")
	build := exec.Command("go", "build", "-ldflags", "-X "+versionVariable+"="+v, "-o", bin, ".")
	out, err := build.CombinedOutput()
	require.NoError(t, err, string(out))

	out, err = exec.Command(bin, "--version").CombinedOutput()
	require.NoError(t, err, string(out))
	require.True(t, strings.HasPrefix(string(out), "miyamoto "+v+" go"), "%q", out)

	trace := filepath.Join(t.TempDir(), "t.jsonl")
	out, err = exec.Command(bin, "sim", "--seed", "1", "--trace", trace, "../../scenarios/baseline.json").CombinedOutput()
	require.NoError(t, err, string(out))
	require.Contains(t, string(out), "miyamoto sim, build "+v+"\n")
	f, err := os.Open(trace)
	require.NoError(t, err)
	defer f.Close()
	first, err := bufio.NewReader(f).ReadBytes('\n')
	require.NoError(t, err)
	var header struct{ Type, Build string }
	require.NoError(t, json.Unmarshal(first, &header))
	require.Equal(t, "header", header.Type)
	require.Equal(t, v, header.Build)

	out, err = exec.Command(bin, "replay", trace).CombinedOutput()
	require.NoError(t, err, string(out))
	require.Contains(t, string(out), "recorded by build "+v+",")
}
