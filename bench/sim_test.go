package bench

import (
	"testing"
	"time"

	"github.com/miyamotohq/miyamoto/sim"
)

// BenchmarkSim5NodeR3 runs one seed per iteration (seeds 1..N, so every iteration
// does different work) and reports simulated events per second and the ratio of
// simulated to real time, both over the benchmark's own elapsed time.
func BenchmarkSim5NodeR3(b *testing.B) { benchSim(b, "testdata/sim-5node.json") }

// BenchmarkSim5NodeR3Durable is the same run with durable storage: every node runs
// net/disk's log over the simulated file system.
func BenchmarkSim5NodeR3Durable(b *testing.B) { benchSim(b, "testdata/sim-5node-durable.json") }

func benchSim(b *testing.B, path string) {
	sc, err := sim.LoadScenario(path)
	if err != nil {
		b.Fatal(err)
	}
	var events uint64
	var simulated time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r, err := sim.Run(sc, uint64(i+1), sim.Options{})
		if err != nil {
			b.Fatal(err)
		}
		if r.Failed() {
			b.Fatal(r.Report())
		}
		if r.Acked < sc.Workload.Tasks*3/4 {
			b.Fatalf("seed %d: only %d of %d tasks acknowledged", i+1, r.Acked, sc.Workload.Tasks)
		}
		events += r.Events
		simulated += r.SimTime
	}
	elapsed := b.Elapsed()
	b.ReportMetric(float64(events)/elapsed.Seconds(), "events/s")
	b.ReportMetric(simulated.Seconds()/elapsed.Seconds(), "x-realtime")
	b.ReportMetric(float64(events)/float64(b.N), "events/run")
}
