package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/miyamotohq/miyamoto/sim/timeline"
)

// runTimeline draws a trace as one HTML page: miyamoto timeline TRACE [-o FILE.html].
func runTimeline(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("timeline", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	out := fs.String("o", "", "write the page to FILE, - for stdout (default: the trace's name with .html)")
	bad := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "miyamoto timeline: "+format+"\n", a...)
		return exitBadArgs
	}
	files, err := parseInterspersed(fs, args, "usage: miyamoto timeline TRACE_FILE [-o FILE.html]", stdout)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		return bad("%v", err)
	}
	if len(files) != 1 {
		return bad("give exactly one trace file (written by miyamoto sim --seed N --trace FILE), e.g. miyamoto timeline swarm-7.jsonl -o run.html")
	}
	if *out == "" {
		*out = strings.TrimSuffix(files[0], ".jsonl") + ".html"
	}
	f, err := os.Open(files[0])
	if err != nil {
		return bad("%v", err)
	}
	data, err := timeline.Parse(f)
	f.Close()
	if err != nil {
		return bad("%s: %v", files[0], err)
	}
	if err := writeReport(*out, stdout, func(w io.Writer) error { return timeline.Write(w, data) }); err != nil {
		fmt.Fprintf(stderr, "miyamoto timeline: -o: %v\n", err)
		return exitFailed
	}
	if *out == "-" {
		stdout = stderr // stdout carries the page alone
	}
	fmt.Fprintf(stdout, "timeline of %s (scenario %s, seed %d: %d nodes, %d deliveries, %d violations) written to %s\n",
		files[0], data.Scenario, data.Seed, len(data.Nodes), len(data.Deliveries), len(data.Violations), *out)
	return exitOK
}
