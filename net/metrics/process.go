package metrics

import (
	"fmt"
	"io"
	"os"
	"runtime/metrics"
	"strconv"
	"strings"
)

// runtimeGauges are the Go runtime's figures an operator sizes a node by (and the
// memory benchmark divides by the tasks held): read with runtime/metrics, which
// does not stop the world.
var runtimeGauges = []struct{ name, help, sample string }{
	{"go_heap_objects_bytes", "Bytes of heap memory occupied by live and not yet swept objects.", "/memory/classes/heap/objects:bytes"},
	{"go_gc_heap_goal_bytes", "Heap size the garbage collector aims to stay under before its next cycle (GOGC's headroom).", "/gc/heap/goal:bytes"},
	{"go_memory_total_bytes", "All memory mapped by the Go runtime.", "/memory/classes/total:bytes"},
	{"go_goroutines", "Goroutines that exist now.", "/sched/goroutines:goroutines"},
}

// WriteProcess writes the runtime gauges and, where the system tells it (Linux),
// the process's resident set size as process_resident_memory_bytes.
func WriteProcess(w io.Writer, self string) {
	samples := make([]metrics.Sample, len(runtimeGauges))
	for i, g := range runtimeGauges {
		samples[i].Name = g.sample
	}
	metrics.Read(samples)
	for i, g := range runtimeGauges {
		if samples[i].Value.Kind() != metrics.KindUint64 {
			continue // not in this Go release
		}
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s gauge\n%s{node=%q} %d\n", g.name, g.help, g.name, g.name, self, samples[i].Value.Uint64())
	}
	if rss, ok := residentBytes(); ok {
		fmt.Fprintf(w, "# HELP process_resident_memory_bytes Resident set size of the process.\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes{node=%q} %d\n", self, rss)
	}
}

// residentBytes reads VmRSS from /proc/self/status (Linux only).
func residentBytes() (int64, bool) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, false
	}
	return VmRSS(string(b))
}

// VmRSS parses the VmRSS line of a /proc/PID/status file, in bytes.
func VmRSS(status string) (int64, bool) {
	for _, line := range strings.Split(status, "\n") {
		rest, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, false
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		return kb << 10, err == nil
	}
	return 0, false
}
