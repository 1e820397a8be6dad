package bench

import (
	"bytes"
	"fmt"
	"io"
	"runtime/pprof"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/pprof/profile"
)

// Where a target's CPU goes (compare -cpusplit): each round is profiled over the
// span cpu/task measures, from the first enqueue to the last delivery, and every
// sample is charged to one part of the process by its goroutine's role (the
// profiler label "bench", see roleLoad) and the frames of its stack. It answers,
// with one command, what an issue about speed asks first: of the CPU a delivered
// task costs, how much is the HTTP in and out that the relay pays too, how much
// the nodes' own work, their peer transport and their logs.

// A cpuPart is one row of the split.
type cpuPart int

const (
	partLoad cpuPart = iota
	partSink
	partServer
	partClient
	partNode
	partFreeze // inside partNode: freezing finished tasks into tombs
	partPeerSend
	partPeerRecv
	partLog
	partRecorder
	partTargetOther
	partGC
	partRuntimeOther
	numParts
)

var partNames = [numParts]string{
	partLoad:         "load generator",
	partSink:         "sink",
	partServer:       "target: HTTP server (enqueues)",
	partClient:       "target: HTTP client (webhooks, the relay's forward)",
	partNode:         "target: node goroutines",
	partFreeze:       "  of which freezing finished tasks",
	partPeerSend:     "target: peer transport, sending",
	partPeerRecv:     "target: peer transport, receiving",
	partLog:          "target: logs (writes, fsyncs)",
	partRecorder:     "target: flight recorders",
	partTargetOther:  "target: other (a peer's library, timers)",
	partGC:           "runtime: garbage collector's workers",
	partRuntimeOther: "runtime: scheduler and other",
}

// CPUSplit is the CPU time of one round's profile, by part.
type CPUSplit struct {
	parts [numParts]time.Duration
	Total time.Duration
}

// stackRule charges a target's sample to part when a frame's function name
// contains one of its names. Rules are tried in order, so a goroutine is charged
// by the first part it belongs to: a node goroutine that hands a delivery to the
// webhook client is the node's, a relay handler that forwards is the client's.
type stackRule struct {
	part  cpuPart
	names []string
}

var targetRules = []stackRule{
	{partRecorder, []string{"/net/recorder."}},
	{partLog, []string{"/net/disk.(*Log)"}},
	{partPeerSend, []string{"/net/peer.(*Transport).pump", "/net/peer.(*Transport).runSender"}},
	{partPeerRecv, []string{"/net/peer.(*Transport).serveConn", "/net/peer.(*Transport).readBatch"}},
	{partNode, []string{"/net/driver.(*Driver).Run"}},
	{partClient, []string{"net/http.(*persistConn)", "net/http.(*Transport).", "/net/webhook.", "/bench.(*Relay).forward"}},
	{partServer, []string{"net/http.(*conn).serve", "net/http.(*connReader)"}},
}

func stackHas(s *profile.Sample, names []string) bool {
	for _, loc := range s.Location {
		for _, line := range loc.Line {
			if line.Function == nil {
				continue
			}
			for _, n := range names {
				if strings.Contains(line.Function.Name, n) {
					return true
				}
			}
		}
	}
	return false
}

// splitProfile charges every sample of p.
func splitProfile(p *profile.Profile) CPUSplit {
	var s CPUSplit
	vi := len(p.SampleType) - 1 // cpu/nanoseconds follows samples/count
	for _, smp := range p.Sample {
		d := time.Duration(smp.Value[vi])
		s.Total += d
		part := partTargetOther
		switch role := first(smp.Label["bench"]); role {
		case roleLoad:
			part = partLoad
		case roleSink:
			part = partSink
		case roleTarget:
			for _, r := range targetRules {
				if stackHas(smp, r.names) {
					part = r.part
					break
				}
			}
			if part == partNode && stackHas(smp, []string{"/node.(*Node).freezeOld"}) {
				s.parts[partFreeze] += d
			}
		default: // the runtime's own goroutines carry no label
			part = partRuntimeOther
			if stackHas(smp, []string{"runtime.gcBgMarkWorker", "runtime.bgsweep", "runtime.bgscavenge"}) {
				part = partGC
			}
		}
		s.parts[part] += d
	}
	return s
}

func first(vs []string) string {
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}

// cpuProfiler profiles one span of a round.
type cpuProfiler struct{ buf bytes.Buffer }

func startCPUSplit() (*cpuProfiler, error) {
	p := &cpuProfiler{}
	if err := pprof.StartCPUProfile(&p.buf); err != nil {
		return nil, fmt.Errorf("-cpusplit: %w (a whole-run -cpuprofile cannot run beside it)", err)
	}
	return p, nil
}

func (p *cpuProfiler) stop() (CPUSplit, error) {
	pprof.StopCPUProfile()
	prof, err := profile.Parse(&p.buf)
	if err != nil {
		return CPUSplit{}, fmt.Errorf("-cpusplit: reading the profile: %w", err)
	}
	return splitProfile(prof), nil
}

// WriteCPUSplit prints, for every target whose median round was profiled, its CPU
// per delivered task by part (µs), targets as columns.
func (r Report) WriteCPUSplit(w io.Writer) {
	var cols []Result
	for _, res := range r.Results {
		if res.CPUSplit != nil && res.Delivered > 0 {
			cols = append(cols, res)
		}
	}
	if len(cols) == 0 {
		return
	}
	fmt.Fprintln(w, "\nwhere the CPU went, µs per delivered task (each target's median round, from the first enqueue to the last delivery):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprint(tw, "\t")
	for _, c := range cols {
		fmt.Fprintf(tw, "%s\t", c.Target)
	}
	fmt.Fprintln(tw)
	row := func(name string, v func(CPUSplit) time.Duration) {
		fmt.Fprintf(tw, "%s\t", name)
		for _, c := range cols {
			fmt.Fprintf(tw, "%.1f\t", float64(v(*c.CPUSplit))/float64(time.Microsecond)/float64(c.Delivered))
		}
		fmt.Fprintln(tw)
	}
	for p := range numParts {
		row(partNames[p], func(s CPUSplit) time.Duration { return s.parts[p] })
	}
	row("profiled in all", func(s CPUSplit) time.Duration { return s.Total })
	tw.Flush()
}
