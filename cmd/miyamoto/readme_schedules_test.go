package main

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The README's schedule commands, run as written by bash against a real node (its
// address in place of localhost:8088, a test worker's in place of localhost:9099):
// every curl must succeed (2xx), and the node must then hold what they made.
func TestREADMESchedules(t *testing.T) {
	p := startCluster(t, 1)[0]
	w := newWorker(t, 0)
	script := readmeBlock(t, "## Schedules")
	require.Contains(t, script, "localhost:8088/v1/schedules")
	script = strings.ReplaceAll(script, "http://localhost:9099", w.srv.URL)
	script = strings.ReplaceAll(script, "localhost:8088", p.http)
	// Each curl fails the script on an HTTP error, and prints a newline after the body.
	prelude := "set -e\ncurl() { command curl -sS --fail-with-body \"$@\"; echo; }\n"
	cmd := exec.Command("bash", "-c", prelude+script)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	require.NoError(t, cmd.Run(), "README schedule commands failed:\n%s\n%s", out.String(), errb.String())
	require.Contains(t, out.String(), `"status": "deleted"`)

	code, body := httpDo(t, "GET", "http://"+p.http+"/v1/schedules", "")
	require.Equal(t, 200, code)
	var list struct {
		Schedules []struct {
			Name     string
			TimeZone string `json:"time_zone"`
			Queue    string
			Missed   string
			Next     []string
		}
	}
	require.NoError(t, json.Unmarshal([]byte(body), &list), body)
	require.Len(t, list.Schedules, 1, "ping was deleted, nightly-report stays: %s", body)
	s := list.Schedules[0]
	require.Equal(t, "nightly-report", s.Name)
	require.Equal(t, "Europe/Paris", s.TimeZone)
	require.Equal(t, "reports", s.Queue)
	require.Equal(t, "one", s.Missed)
	require.Len(t, s.Next, 5)
	require.Contains(t, s.Next[0], "T03:30:00+0", "next ticks at 03:30 Paris time")
}
