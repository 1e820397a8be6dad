package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/miyamotohq/miyamoto/net/recorder"
	"github.com/miyamotohq/miyamoto/node"
	"github.com/miyamotohq/miyamoto/sim"
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
		if r.From != "" {
			fmt.Fprintf(stdout, " from the snapshot opening %s (the run's start was dropped by the ring)", r.From)
		}
		if r.Gap != "" {
			fmt.Fprintf(stdout, ", up to a gap: %s", r.Gap)
		}
		fmt.Fprintln(stdout)
	}
	if replayed == 0 && code == exitOK {
		fmt.Fprintf(stderr, "miyamoto replay: %s: no run could be replayed (every run's start, and every snapshot after it, was dropped: raise --record-size)\n", dir)
		return exitFailed
	}
	return code
}

// runCheck merges the flight recordings of several nodes (serve --record DIR, one
// directory per node) and runs the simulator's checker over what really happened.
func runCheck(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "-") }) {
		fmt.Fprintln(stderr, "miyamoto check: give the recording directories of the nodes (serve --record DIR): miyamoto check DIR...")
		return exitBadArgs
	}
	var observed []recorder.Observed
	for _, dir := range args {
		obs, err := recorder.Observe(dir)
		if err != nil {
			fmt.Fprintf(stderr, "miyamoto check: %v\n", err)
			return exitBadArgs
		}
		for _, o := range obs {
			fmt.Fprintf(stdout, "%s: node %s, run %d: ", dir, o.NodeID, o.Run)
			switch {
			case o.Skipped != "":
				fmt.Fprintf(stdout, "not checked: %s\n", o.Skipped)
			case o.Diff != nil:
				fmt.Fprintf(stdout, "%d events, up to its first difference with the recording (input %d: %s)\n", len(o.Events), o.Diff.Input, o.Diff.What)
			case o.From != "":
				fmt.Fprintf(stdout, "%d events from the snapshot opening %s (the ring dropped the run's start: the tasks the node held there are checked from there on, what came before is not seen)\n", len(o.Events), o.From)
			default:
				fmt.Fprintf(stdout, "%d events\n", len(o.Events))
			}
		}
		observed = append(observed, obs...)
	}
	cl := recordedCluster(observed)
	events := toSimEvents(recorder.Merge(observed))
	res := sim.CheckRecorded(cl, events)
	fmt.Fprintf(stdout, "checked %d events of %d members: %d tasks, %d acknowledged, %d deliveries, %d excused\n",
		len(events), len(cl.Members), res.Tasks, res.Acked, res.Deliveries, len(res.Excused))
	if len(res.Violations) == 0 {
		fmt.Fprintln(stdout, "no violation (S1-S5, Q1-Q6)")
		return exitOK
	}
	total := 0
	var names []string
	for inv, n := range res.ViolationCounts {
		total += n
		names = append(names, inv)
	}
	slices.Sort(names)
	fmt.Fprintf(stdout, "%d violation(s) of %s\n", total, strings.Join(names, ", "))
	for _, v := range res.Violations {
		fmt.Fprintf(stdout, "  %s (%s)\n", v, res.Origin.Add(v.At).UTC().Format(time.RFC3339Nano))
	}
	return exitFailed
}

// recordedCluster is the cluster the recordings describe: every member any names,
// the largest drift allowance, permit validity and dedup window configured.
func recordedCluster(observed []recorder.Observed) sim.RecordedCluster {
	var cl sim.RecordedCluster
	seen := map[node.NodeID]bool{}
	for _, o := range observed {
		for _, m := range o.Config.Members {
			if !seen[m] {
				seen[m] = true
				cl.Members = append(cl.Members, m)
			}
		}
		cl.MaxClockDrift = max(cl.MaxClockDrift, o.Config.MaxClockDrift)
		cl.PermitValidity = max(cl.PermitValidity, o.Config.PermitValidity)
		cl.DedupWindow = max(cl.DedupWindow, o.Config.DedupWindow)
		cl.DefaultQueue = o.Config.DefaultQueue
	}
	slices.Sort(cl.Members)
	return cl
}

var simKinds = map[recorder.EventKind]sim.RecordedKind{
	recorder.EventStart: sim.RecStart, recorder.EventStop: sim.RecStop, recorder.EventState: sim.RecState,
	recorder.EventSent: sim.RecSent, recorder.EventSend: sim.RecSend, recorder.EventReceive: sim.RecReceive,
	recorder.EventDispatch: sim.RecDispatch, recorder.EventResult: sim.RecResult, recorder.EventAcked: sim.RecAcked,
	recorder.EventQueueChanged: sim.RecQueueChanged, recorder.EventQueuePut: sim.RecQueuePut, recorder.EventQueueAnswered: sim.RecQueueAnswered,
	recorder.EventInFlight: sim.RecInFlight,
}

func toSimEvents(events []recorder.Event) []sim.RecordedEvent {
	out := make([]sim.RecordedEvent, len(events))
	for i, e := range events {
		out[i] = sim.RecordedEvent{Node: e.Node.ID, At: e.At, Kind: simKinds[e.Kind], Task: e.Task, From: e.From, To: e.To,
			Message: e.Message, SendIndex: e.SendIndex, Lost: e.Lost, Read: e.Read, Bound: e.Bound, Delivery: e.Delivery, Attempt: e.Attempt,
			Status: e.Result.Status, Setting: e.Setting, Durable: e.Durable, Loaded: e.Loaded, Snapshot: e.Snapshot, Known: e.Known,
			Op: e.Op, Put: e.Put, OK: e.OK}
	}
	return out
}

// runImport turns the flight recordings of a cluster's nodes into a scenario whose
// fixed fault schedule replays the incident in the simulator (sim.ImportRecorded).
func runImport(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("import", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	out := fs.String("o", "incident.json", "the scenario file to write")
	name := fs.String("name", "", "the scenario's name (default: the file's name without .json)")
	dirs, err := parseInterleaved(fs, args)
	if err != nil || len(dirs) == 0 {
		msg := "give the recording directories of the nodes (serve --record DIR)"
		if err != nil {
			msg = err.Error()
		}
		fmt.Fprintf(stderr, "miyamoto import: %s: miyamoto import DIR... [-o incident.json] [--name NAME]\n", msg)
		return exitBadArgs
	}
	var observed []recorder.Observed
	for _, dir := range dirs {
		obs, err := recorder.Observe(dir)
		if err != nil {
			fmt.Fprintf(stderr, "miyamoto import: %v\n", err)
			return exitBadArgs
		}
		observed = append(observed, obs...)
	}
	if *name == "" {
		*name = strings.TrimSuffix(filepath.Base(*out), ".json")
	}
	opts := sim.ImportOptions{Name: *name}
	for _, o := range observed {
		c := o.Config
		opts.Replicas, opts.ReplicaOffset, opts.Lease, opts.Protocol = c.Replicas, c.ReplicaOffset, c.Lease, c.Protocol
		for _, e := range o.Events {
			opts.Durable = opts.Durable || e.Kind == recorder.EventStart && e.Durable
		}
	}
	sc, err := sim.ImportRecorded(recordedCluster(observed), opts, toSimEvents(recorder.Merge(observed)))
	if err != nil {
		fmt.Fprintf(stderr, "miyamoto import: %v\n", err)
		return exitFailed
	}
	b, err := json.MarshalIndent(sc, "", "  ")
	if err != nil {
		fmt.Fprintf(stderr, "miyamoto import: %v\n", err)
		return exitFailed
	}
	if err := os.WriteFile(*out, append(b, '\n'), 0o644); err != nil {
		fmt.Fprintf(stderr, "miyamoto import: %v\n", err)
		return exitFailed
	}
	fmt.Fprintf(stdout, "wrote %s: %d nodes, %d tasks, %d faults; run it with: miyamoto sim --seed 1 %s\n",
		*out, sc.Cluster.Nodes, sc.Workload.Tasks, len(sc.Faults.Schedule), *out)
	for _, f := range sc.Faults.Schedule {
		fmt.Fprintf(stdout, "  at %s: %s %s for %s\n", f.At.D(), f.Kind, strings.Join(f.Nodes, ","), f.Duration.D())
	}
	for _, n := range slices.Sorted(maps.Keys(sc.Clocks.Offsets)) {
		fmt.Fprintf(stdout, "  clock of %s: off by %s\n", n, sc.Clocks.Offsets[n].D())
	}
	return exitOK
}
