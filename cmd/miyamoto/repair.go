package main

import (
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/miyamotohq/miyamoto/net/disk"
)

// runRepair is `miyamoto repair-log --data-dir DIR`: it makes a log that serve
// refuses as corrupt loadable again (see disk.Repair). The node must be stopped.
func runRepair(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("repair-log", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	dir := fs.String("data-dir", "", "the stopped node's data directory")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			fmt.Fprintln(stdout, "usage: miyamoto repair-log --data-dir DIR   (the node must be stopped)")
			return exitOK
		}
		fmt.Fprintf(stderr, "miyamoto repair-log: %v\n", err)
		return exitBadArgs
	}
	if fs.NArg() > 0 || strings.TrimSpace(*dir) == "" {
		fmt.Fprintln(stderr, "miyamoto repair-log: --data-dir DIR is required (and nothing else)")
		return exitBadArgs
	}
	rep, err := disk.Repair(*dir)
	if err != nil {
		fmt.Fprintf(stderr, "miyamoto repair-log: %v\n", err)
		return exitFailed
	}
	if rep.Cut == "" && len(rep.SetAside) == 0 {
		fmt.Fprintf(stdout, "%s: the log is sound; nothing changed\n", *dir)
		return exitOK
	}
	if rep.Cut != "" {
		fmt.Fprintf(stdout, "cut %s at offset %d (%d bytes kept in %s)\n", rep.Cut, rep.Offset, rep.Dropped, rep.CutFile)
	}
	for _, s := range rep.SetAside {
		fmt.Fprintf(stdout, "set aside %s as %s\n", s.Segment, s.File)
	}
	if rep.CutFile != "" || len(rep.SetAside) > 0 {
		fmt.Fprintln(stdout, "the log ignores the *.cut* files; remove them once you no longer need them")
	}
	fmt.Fprintf(stdout, "%s: repaired; the node will start as one that forgot (%s written), and the other replicas still hold its tasks\n", *dir, disk.LostFile)
	return exitOK
}
