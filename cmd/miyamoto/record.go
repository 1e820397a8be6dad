package main

import (
	"fmt"
	"io"

	"github.com/miyamotohq/miyamoto/net/recorder"
)

// replayRecording re-executes every run of a node's flight recording (serve
// --record DIR) and reports, per run, that it reproduced or its first difference.
func replayRecording(dir string, stdout, stderr io.Writer) int {
	results, err := recorder.Replay(dir)
	if err != nil {
		fmt.Fprintf(stderr, "miyamoto replay: %v\n", err)
		return exitBadArgs
	}
	code, replayed := exitOK, 0
	for _, r := range results {
		fmt.Fprintf(stdout, "recording %s: node %s, run %d: ", dir, r.NodeID, r.Run)
		switch {
		case r.Skipped != "":
			fmt.Fprintf(stdout, "not replayed: %s\n", r.Skipped)
			continue
		case r.Diff != nil:
			fmt.Fprintf(stdout, "NOT reproduced: first difference at input %d (%s)\n  recorded: %s\n  replayed: %s\n",
				r.Diff.Input, r.Diff.What, r.Diff.Recorded, r.Diff.Replayed)
			code = exitFailed
			continue
		}
		replayed++
		fmt.Fprintf(stdout, "reproduced input for input (%d inputs)", r.Inputs)
		if r.Gap != "" {
			fmt.Fprintf(stdout, ", up to a gap: %s", r.Gap)
		}
		fmt.Fprintln(stdout)
	}
	if replayed == 0 && code == exitOK {
		fmt.Fprintf(stderr, "miyamoto replay: %s: no run could be replayed (every run's start was dropped: raise --record-size)\n", dir)
		return exitFailed
	}
	return code
}
