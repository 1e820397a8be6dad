package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/bench/readme"
	"github.com/miyamotohq/miyamoto/net/daemon"
	"github.com/miyamotohq/miyamoto/net/driver"
	"github.com/miyamotohq/miyamoto/net/recorder"
	"github.com/miyamotohq/miyamoto/node"
)

// BenchmarkRecorderCost states what the flight recorder (serve --record) costs: the
// enqueue throughput of a three-node cluster on loopback (each task stored on three
// nodes, so every Store and its acknowledgement is recorded), with and without
// --record on every node. Logs are in memory so that fsync does not hide the
// recorder's cost. Each round starts both clusters and feeds them in turn, a chunk
// of batches at a time, so that the load of other work on a shared machine, which
// moves in seconds and swings a single run by tens of percent, falls on both alike
// (see BenchmarkRecorderNodeCost).
//
// It reports two ratios, recorded over plain, each the median over the rounds of
// the round's own ratio. The rate's is what a user sees; the CPU time the process spent
// per task (the clients, in the same process, cost the same in both and little: they
// send prepared batches) is what recording adds to the work, and what throughput is
// bound by once the CPU is the limit. The target is under 1.10; it fails past 1.20
// (see BenchmarkRecorderNodeCost). Run it once:
//
//	go test -run '^$' -bench RecorderCost -benchtime 1x ./bench/
func BenchmarkRecorderCost(b *testing.B) {
	const (
		rounds    = 9
		clients   = 8
		chunks    = 8
		batches   = 5 // per client, chunk and cluster
		batchSize = 50
		tasks     = clients * batches * batchSize // per chunk
	)
	item := `{"url": "http://127.0.0.1:9/", "countdown": 3600}`
	batch := "[" + strings.TrimSuffix(strings.Repeat(item+",", batchSize), ",") + "]"
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	for b.Loop() {
		var rateRatios, cpuRatios []float64
		var rates, cpus [2][]float64 // [plain, recorded]
		for range rounds {
			var clusters [2][]string // [plain, recorded]: their API bases
			var stops [2]func()
			for i := range 2 {
				clusters[i], stops[i] = startCluster(b, i == 1)
			}
			runtime.GC() // the last round's garbage is not this round's work
			var elapsed, spent [2]time.Duration
			for c := range chunks {
				for k := range 2 {
					i := (c + k) % 2
					began, cpuBefore := time.Now(), processCPU()
					feedCluster(b, client, clusters[i], clients, batches, batch)
					elapsed[i] += time.Since(began)
					spent[i] += processCPU() - cpuBefore
				}
			}
			var rate, cpu [2]float64
			for i := range 2 {
				stops[i]()
				rate[i] = float64(chunks*tasks) / elapsed[i].Seconds()
				cpu[i] = float64(spent[i]) / (chunks * tasks)
			}
			rateRatios = append(rateRatios, rate[1]/rate[0])
			cpuRatios = append(cpuRatios, cpu[1]/cpu[0])
			for i := range 2 {
				rates[i] = append(rates[i], rate[i])
				cpus[i] = append(cpus[i], cpu[i])
			}
		}
		cpuRatio := median(cpuRatios)
		b.ReportMetric(median(rates[0]), "tasks/s")
		b.ReportMetric(median(rates[1]), "tasks/s-recorded")
		b.ReportMetric(median(rateRatios), "rate-recorded/plain")
		b.ReportMetric(median(cpus[0])/1e3, "cpu-µs/task")
		b.ReportMetric(median(cpus[1])/1e3, "cpu-µs/task-recorded")
		b.ReportMetric(cpuRatio, "cpu-recorded/plain")
		b.Logf("with --record the cluster spent %.1f%% more CPU per task (median of %d rounds: %.2f; target: under 10%%)",
			100*(cpuRatio-1), rounds, cpuRatios)
		if cpuRatio > 1.2 { // see BenchmarkRecorderNodeCost
			b.Errorf("recording costs %.0f%% more CPU per task, more than twice the 10%% target", 100*(cpuRatio-1))
		}
	}
}

// feedCluster posts batches batches from each of clients clients, spread over the
// cluster's nodes, and waits for their answers.
func feedCluster(b *testing.B, client *http.Client, bases []string, clients, batches int, batch string) {
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range batches {
				post(b, client, bases[c%len(bases)]+"/bench", batch)
			}
		}()
	}
	wg.Wait()
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// startCluster starts three nodes on loopback, recording when record is set, and
// returns their API bases and the function that stops them. The peer ports are
// picked free and then bound by the nodes: another process may take one in between,
// so a start that finds its port taken is tried again with new ones.
func startCluster(b *testing.B, record bool) (bases []string, stop func()) {
	b.Helper()
	for attempt := 1; ; attempt++ {
		bases, stop, err := tryCluster(b, record)
		if err == nil {
			return bases, stop
		}
		if attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
			b.Fatal(err)
		}
	}
}

func tryCluster(b *testing.B, record bool) (bases []string, stop func(), err error) {
	peers := map[string]string{}
	for i := 1; i <= 3; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, err
		}
		peers[fmt.Sprintf("n%d", i)] = ln.Addr().String()
		ln.Close()
	}
	dir := b.TempDir()
	var daemons []*daemon.Daemon
	stopAll := func() {
		for _, d := range daemons {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			d.Shutdown(ctx)
			cancel()
		}
		daemons = nil
	}
	// Not the result stop, which a failed start returns nil: the cleanup called it
	// and panicked when a peer port was taken.
	b.Cleanup(stopAll)
	for id, addr := range peers {
		cfg := daemon.Config{NodeID: id, HTTPAddr: "127.0.0.1:0", PeerAddr: addr, Peers: peers, MaxClockDrift: 100 * time.Millisecond}
		if record {
			cfg.RecordDir = filepath.Join(dir, id)
		}
		d, err := daemon.Start(cfg)
		if err != nil {
			stopAll()
			return nil, nil, err
		}
		daemons = append(daemons, d)
		bases = append(bases, "http://"+d.HTTPAddr())
	}
	client := &http.Client{Timeout: 5 * time.Second}
	for _, base := range bases {
		waitReady(b, client, base)
	}
	return bases, stopAll, nil
}

// BenchmarkRecorderNodeCost states what recording costs the node's goroutine, the
// one place a node's work is serial and so what bounds its throughput: enqueues
// posted to one node (a cluster of one, memory storage, as the daemon posts them:
// labelled for the recorder) through net/driver, with and without a recorder
// writing a ring in a temporary directory. Each round starts both nodes and feeds
// them in turn, a chunk of enqueues at a time, so that the load of other work on a
// shared machine, which moves in seconds, falls on both alike (timing each node for
// a whole run, one after the other, moved a round's ratio between 0.45 and 2). It
// reports the enqueues per second of each and the median over the rounds of the
// round's ratio (target: over 0.90), and fails under 0.80; and the CPU time the
// node's goroutine spent per enqueue (its thread's, on Linux: the goroutine is
// locked to it) with the median ratio of that, what recording adds to the serial
// work. Run it once:
//
//	go test -run '^$' -bench RecorderNodeCost -benchtime 1x ./bench/
func BenchmarkRecorderNodeCost(b *testing.B) {
	const (
		rounds   = 15
		chunks   = 20
		enqueues = 5_000 // per chunk and node
	)
	req := node.EnqueueRequest{Queue: "bench", URL: "http://127.0.0.1:9/", Method: "POST",
		ContentType: "application/json", Body: []byte(`{"n": 1}`), Countdown: time.Hour}
	for b.Loop() {
		var ratios, cpuRatios []float64
		var rates, cpus [2][]float64
		for range rounds {
			nodes := [2]*benchNode{startBenchNode(b, false), startBenchNode(b, true)}
			runtime.GC() // the last round's garbage is not this round's work
			for c := range chunks {
				for k := range 2 {
					nodes[(c+k)%2].enqueue(b, req, enqueues)
				}
			}
			var rate, cpu [2]float64
			for i, n := range nodes {
				n.stop(b)
				rate[i] = float64(n.enqueues) / n.elapsed.Seconds()
				cpu[i] = float64(n.cpu) / float64(n.enqueues)
			}
			ratios = append(ratios, rate[1]/rate[0])
			rates[0], rates[1] = append(rates[0], rate[0]), append(rates[1], rate[1])
			if cpu[0] > 0 {
				cpuRatios = append(cpuRatios, cpu[1]/cpu[0])
				cpus[0], cpus[1] = append(cpus[0], cpu[0]), append(cpus[1], cpu[1])
			}
		}
		ratio := median(ratios)
		b.ReportMetric(median(rates[0]), "enqueues/s")
		b.ReportMetric(median(rates[1]), "enqueues/s-recorded")
		b.ReportMetric(ratio, "recorded/plain")
		b.Logf("with a recorder the node took %.1f%% fewer enqueues per second (median of %d rounds: %.2f; target: under 10%%)",
			100*(1-ratio), rounds, ratios)
		if len(cpuRatios) > 0 {
			b.ReportMetric(median(cpus[0]), "node-cpu-ns/enqueue")
			b.ReportMetric(median(cpus[1]), "node-cpu-ns/enqueue-recorded")
			b.ReportMetric(median(cpuRatios), "node-cpu-recorded/plain")
			b.Logf("with a recorder the node's goroutine spent %.1f%% more CPU per enqueue (median of %d rounds: %.2f)",
				100*(median(cpuRatios)-1), rounds, cpuRatios)
		}
		// The target is 10%; on a machine shared with other work the median still
		// moves by a few points from run to run, so the benchmark fails only past
		// twice the target (a recorder that got much worse), and says the figure.
		if ratio < 0.8 {
			b.Errorf("recording costs %.0f%% of the node's enqueues, more than twice the 10%% target", 100*(1-ratio))
		}
	}
}

// benchNode is a node of BenchmarkRecorderNodeCost with what its chunks took.
type benchNode struct {
	d        *driver.Driver
	rec      *recorder.Recorder
	enqueues int
	elapsed  time.Duration
	cpu      time.Duration // its goroutine's CPU time over the chunks (0 where threadCPU cannot tell)
}

// startBenchNode starts a one-node cluster, recording when record is set, with its
// goroutine locked to its thread.
func startBenchNode(b *testing.B, record bool) *benchNode {
	b.Helper()
	cfg := node.Config{ID: "n1", Members: []node.NodeID{"n1"}, MaxClockDrift: 100 * time.Millisecond}
	env := node.Env{Network: dropNet{}, Dispatcher: dropDispatcher{}, Rand: rand.New(rand.NewPCG(1, 2))}
	n := &benchNode{}
	var dr driver.Recorder
	if record {
		var err error
		n.rec, err = recorder.Open(recorder.Options{Dir: b.TempDir(), MaxSize: 256 << 20, Config: cfg})
		if err != nil {
			b.Fatal(err)
		}
		dr = n.rec
	}
	var err error
	if n.d, err = driver.NewRecorded(cfg, env, clock.New(), dr); err != nil {
		b.Fatal(err)
	}
	if err := n.d.Start(); err != nil {
		b.Fatal(err)
	}
	go n.d.Run(context.Background())
	// The goroutine ends with the run; its thread goes with it. The label node=plain
	// or node=recorded tells the two apart in a CPU profile (go tool pprof -tagfocus).
	role := "plain"
	if record {
		role = "recorded"
	}
	n.d.Post(func(*node.Node) {
		runtime.LockOSThread()
		pprof.SetGoroutineLabels(pprof.WithLabels(context.Background(), pprof.Labels("node", role)))
	})
	return n
}

// enqueue posts count enqueues to the node as the daemon does, waits for their
// answers and adds the time and the goroutine's CPU time they took.
func (n *benchNode) enqueue(b *testing.B, req node.EnqueueRequest, count int) {
	b.Helper()
	var answered atomic.Int64
	var cpuBegan, cpuEnded time.Duration // read on the node's goroutine
	done := make(chan struct{})
	began := time.Now()
	n.d.Post(func(*node.Node) { cpuBegan = threadCPU() })
	for range count {
		n.d.Post(func(nd *node.Node) {
			n.rec.Enqueue(req)
			nd.Enqueue(req, func(r node.EnqueueResult) {
				if r.Err != nil {
					b.Errorf("enqueue: %v", r.Err)
				}
				if answered.Add(1) == int64(count) {
					cpuEnded = threadCPU()
					close(done)
				}
			})
		})
	}
	select {
	case <-done:
	case <-time.After(time.Minute):
		b.Fatalf("%d of %d enqueues answered in a minute", answered.Load(), count)
	}
	n.elapsed += time.Since(began)
	n.cpu += cpuEnded - cpuBegan
	n.enqueues += count
}

func (n *benchNode) stop(b *testing.B) {
	n.d.Stop()
	<-n.d.Done()
	if err := n.rec.Close(); err != nil {
		b.Fatal(err)
	}
}

type dropNet struct{}

func (dropNet) Send(node.Message) {}

type dropDispatcher struct{}

func (dropDispatcher) Dispatch(node.Delivery) {}

// The README's command for the recorder's benchmarks runs as written (from the
// repository's root), and passes: neither is past twice its target.
func TestREADMERecorderBenchmarks(t *testing.T) {
	if testing.Short() {
		t.Skip("runs two benchmarks of a minute or so")
	}
	command, err := readme.BlockAfter("../README.md", "\nWhat recording costs, measured by two benchmarks:\n")
	require.NoError(t, err)
	require.Equal(t, `go test -run '^$' -bench 'RecorderNodeCost|RecorderCost$' -benchtime 1x ./bench/`, command)

	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", command)
	cmd.Dir = ".."
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "cpu-recorded/plain")
	require.Contains(t, string(out), "enqueues/s-recorded")
	t.Logf("%s", out)
}
