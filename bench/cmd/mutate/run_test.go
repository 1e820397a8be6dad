package main

import (
	"bytes"
	"strings"
	"testing"
)

// The README's command end to end, on one mutant and one scenario: the copy is
// mutated and built, the worker sweeps, and the table and score come out. quorum-half
// fires on one grant of three, which at-most-once-faults catches on its first seeds.
func TestRunOneMutant(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a mutated copy of the module (about a minute)")
	}
	var out, errs bytes.Buffer
	code := run([]string{"--root", moduleRoot(t), "--only", "quorum-half", "--seeds", "5", "--unit=false", "--first",
		"--scenarios", "scenarios/at-most-once-faults.json"}, &out, &errs)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errs.String())
	}
	for _, want := range []string{"quorum-half", "caught", "at-most-once-faults", "Mutation score, sweep alone: 1/1 = 100%"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the table lacks %q:\n%s", want, out.String())
		}
	}
}
