package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// Bad arguments to the flight recorder's commands exit 2 with one line that says
// what to give.
func TestRecordCommandsBadArgs(t *testing.T) {
	empty := t.TempDir()
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"check"}, "give the recording directories"},
		{[]string{"check", "--bogus", empty}, "give the recording directories"},
		{[]string{"check", empty}, "holds no recording"},
		{[]string{"check", empty + "/missing"}, "no such file"},
		{[]string{"import"}, "give the recording directories"},
		{[]string{"import", "--bogus", empty}, "flag provided but not defined"},
		{[]string{"import", empty}, "holds no recording"},
		{[]string{"replay", empty}, "holds no recording"},
		{[]string{"replay"}, "TRACE_FILE|DIR"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			require.Equal(t, exitBadArgs, run(c.args, &out, &errb), "stdout: %s", out.String())
			msg := strings.TrimSpace(errb.String())
			require.Contains(t, msg, c.want)
			require.NotContains(t, msg, "\n", "one line")
		})
	}
}
