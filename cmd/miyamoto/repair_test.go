package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRepairLogCommand(t *testing.T) {
	var out, errOut bytes.Buffer
	require.Equal(t, exitBadArgs, run([]string{"repair-log"}, &out, &errOut))
	require.Equal(t, "miyamoto repair-log: --data-dir DIR is required (and nothing else)\n", errOut.String())

	dir := t.TempDir()
	out.Reset()
	require.Equal(t, exitOK, run([]string{"repair-log", "--data-dir", dir}, &out, &errOut))
	require.Contains(t, out.String(), "the log is sound; nothing changed")
	require.NoFileExists(t, filepath.Join(dir, "LOST"))

	// A missing segment: serve would refuse this log; repair sets aside what follows it.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "00000001.log"), nil, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "00000003.log"), nil, 0o644))
	out.Reset()
	require.Equal(t, exitOK, run([]string{"repair-log", "--data-dir", dir}, &out, &errOut), errOut.String())
	require.Contains(t, out.String(), "set aside 00000003.log as 00000003.log.cut\n")
	require.NoFileExists(t, filepath.Join(dir, "00000003.log"))
	require.FileExists(t, filepath.Join(dir, "00000003.log.cut"), "nothing is destroyed")
	require.FileExists(t, filepath.Join(dir, "LOST"), "what was cut may have been acknowledged")
}
