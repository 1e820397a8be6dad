// Command miyamoto is the one binary of the Miyamoto task queue:
//
//	miyamoto serve                 run a node (see serve.go)
//	miyamoto sim [flags] FILE...   run scenario files in the simulator
//	miyamoto replay TRACE|DIR      re-run a saved trace, or a node's flight recording, and check it reproduces
//	miyamoto check DIR...          run the simulator's checker over nodes' flight recordings
//	miyamoto import DIR... -o FILE turn nodes' flight recordings into a scenario
//	miyamoto timeline TRACE -o FILE.html   draw a trace as one self-contained HTML page
//	miyamoto shrink --seed N FILE  find a smaller scenario that still fails
//	miyamoto repair-log --data-dir DIR   cut a corrupt log so that the node starts again
//	miyamoto enqueue|task|queue|cluster  manage a cluster through a node's API (see manage.go)
//	miyamoto version                     the build's version (also --version)
//
// This package only parses flags and wires packages together.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime"

	"github.com/miyamotohq/miyamoto/net/version"
)

// Exit codes shared by every subcommand.
const (
	exitOK      = 0
	exitFailed  = 1 // ran, and what was expected did not happen
	exitBadArgs = 2 // bad arguments or input files
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitBadArgs
	}
	switch args[0] {
	case "serve":
		return runServe(args[1:], stdout, stderr)
	case "sim":
		return runSim(args[1:], stdout, stderr)
	case "replay":
		return runReplay(args[1:], stdout, stderr)
	case "check":
		return runCheck(args[1:], stdout, stderr)
	case "import":
		return runImport(args[1:], stdout, stderr)
	case "timeline":
		return runTimeline(args[1:], stdout, stderr)
	case "shrink":
		return runShrink(args[1:], stdout, stderr)
	case "repair-log":
		return runRepair(args[1:], stdout, stderr)
	case "version", "--version", "-version":
		return runVersion(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		usage(stdout)
		return exitOK
	}
	if isManageCommand(args[0]) {
		return runManage(args, os.LookupEnv, os.Stdin, stdout, stderr)
	}
	fmt.Fprintf(stderr, "miyamoto: unknown command %q (want serve, sim, replay, check, import, timeline, shrink, repair-log, enqueue, task, queue, cluster or version; see miyamoto help)\n", args[0])
	return exitBadArgs
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage:
  miyamoto serve [flags]                         run a node
  miyamoto sim [--seeds A-B | --seed N] [--protocol naive|quorum]
               [--trace FILE] [--check-determinism]
               [--junit FILE] [--json FILE|-] SCENARIO_FILE...
  miyamoto replay TRACE_FILE|DIR                 re-run a trace or a node's recording
                                                 (serve --record DIR), check it reproduces
  miyamoto check DIR...                          check the recordings of several nodes
                                                 for violations (S1-S5, Q1-Q6)
  miyamoto import DIR... [-o incident.json]      turn the recordings into a scenario
                                                 that replays the incident in sim
  miyamoto timeline TRACE_FILE [-o FILE.html]    draw a trace as one HTML page
  miyamoto shrink [--seed N] [--budget 60s] [-o FILE] SCENARIO_FILE|TRACE_FILE
                                                 a smaller scenario that still fails
  miyamoto repair-log --data-dir DIR             cut a corrupt log (node stopped)
  miyamoto version                               the build's version (also --version)

`)
	manageUsage(w)
}

// runVersion prints the build's version (see package version), the Go version and
// the platform.
func runVersion(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		fmt.Fprintf(stderr, "miyamoto version: takes no arguments, not %q\n", args[0])
		return exitBadArgs
	}
	fmt.Fprintf(stdout, "miyamoto %s %s %s/%s\n", version.String(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return exitOK
}
