package bench

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miyamotohq/miyamoto/net/daemon"
)

// BenchmarkRecorderCost states what the flight recorder (serve --record) costs: the
// enqueue throughput of a three-node cluster on loopback (each task stored on three
// nodes, so every Store and its acknowledgement is recorded), with and without
// --record on every node. Logs are in memory so that fsync does not hide the
// recorder's cost. The rounds alternate (without, with) and the best round of each
// counts; it reports both rates and their ratio, and fails when recording costs more
// than 10% of the throughput. Run it once:
//
//	go test -run '^$' -bench RecorderCost -benchtime 1x ./bench/
func BenchmarkRecorderCost(b *testing.B) {
	const (
		rounds    = 5
		clients   = 8
		batches   = 40 // per client and round
		batchSize = 50
	)
	item := `{"url": "http://127.0.0.1:9/", "countdown": 3600}`
	batch := "[" + strings.TrimSuffix(strings.Repeat(item+",", batchSize), ",") + "]"
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	for b.Loop() {
		best := map[bool]float64{}
		for round := range rounds {
			// Each round in the other order, each cluster stopped before the next
			// starts: neither side runs beside the other's leftover heap.
			for _, record := range []bool{round%2 == 1, round%2 == 0} {
				bases, stop := startCluster(b, record)
				began := time.Now()
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
				rate := float64(clients*batches*batchSize) / time.Since(began).Seconds()
				best[record] = max(best[record], rate)
				stop()
			}
		}
		ratio := best[true] / best[false]
		b.ReportMetric(best[false], "tasks/s")
		b.ReportMetric(best[true], "tasks/s-recorded")
		b.ReportMetric(ratio, "recorded/plain")
		if ratio < 0.9 {
			b.Errorf("with --record the cluster took %.0f tasks/s, without %.0f: recording costs %.0f%% (target: under 10%%)",
				best[true], best[false], 100*(1-ratio))
		}
	}
}

// startCluster starts three nodes on loopback, recording when record is set, and
// returns their API bases and the function that stops them.
func startCluster(b *testing.B, record bool) (bases []string, stop func()) {
	b.Helper()
	peers := map[string]string{}
	for i := 1; i <= 3; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		peers[fmt.Sprintf("n%d", i)] = ln.Addr().String()
		ln.Close()
	}
	dir := b.TempDir()
	var daemons []*daemon.Daemon
	stop = func() {
		for _, d := range daemons {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			d.Shutdown(ctx)
			cancel()
		}
		daemons = nil
	}
	b.Cleanup(func() { stop() })
	for id, addr := range peers {
		cfg := daemon.Config{NodeID: id, HTTPAddr: "127.0.0.1:0", PeerAddr: addr, Peers: peers, MaxClockDrift: 100 * time.Millisecond}
		if record {
			cfg.RecordDir = filepath.Join(dir, id)
		}
		d, err := daemon.Start(cfg)
		if err != nil {
			b.Fatal(err)
		}
		daemons = append(daemons, d)
		bases = append(bases, "http://"+d.HTTPAddr())
	}
	client := &http.Client{Timeout: 5 * time.Second}
	for _, base := range bases {
		waitReady(b, client, base)
	}
	return bases, stop
}
