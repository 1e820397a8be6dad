package bench

import (
	"bytes"
	"context"

	"io"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/bench/readme"

	"github.com/miyamotohq/miyamoto/net/daemon"
)

// BenchmarkEnqueueBesideListings measures what listings cost the enqueues of a
// node that holds 100,000 tasks: the enqueue latency of one client alone, then
// beside 8 clients listing the big queue a task at a time (?limit=1) as fast as
// they can. A listing once sorted every task ID on the node's goroutine, so this
// raised the enqueue p99 from a few ms to seconds. It fails when the p99 beside the
// listings is over 50 ms. Run it once:
//
//	go test -run '^$' -bench EnqueueBesideListings -benchtime 1x ./bench/
func BenchmarkEnqueueBesideListings(b *testing.B) {
	const (
		held      = 100_000
		listers   = 8
		enqueues  = 2000
		batchSize = 1000
		p99Target = 50 * time.Millisecond
	)
	d, err := daemon.Start(daemon.Config{HTTPAddr: "127.0.0.1:0", MaxClockDrift: 100 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		d.Shutdown(ctx)
	})
	base := "http://" + d.HTTPAddr()
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	waitReady(b, client, base)

	// The big queue: tasks due in an hour, so that they stay held.
	item := `{"url": "http://127.0.0.1:9/", "countdown": 3600}`
	batch := "[" + strings.TrimSuffix(strings.Repeat(item+",", batchSize), ",") + "]"
	for i := 0; i < held; i += batchSize {
		post(b, client, base+"/big", batch)
	}

	for b.Loop() {
		alone := enqueueLatencies(b, client, base, enqueues)
		var listed atomic.Int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for range listers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					resp, err := client.Get(base + "/v1/queues/big/tasks?limit=1")
					if err != nil {
						continue
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == 200 {
						listed.Add(1)
					}
				}
			}()
		}
		start := time.Now()
		beside := enqueueLatencies(b, client, base, enqueues)
		listRate := float64(listed.Load()) / time.Since(start).Seconds()
		close(stop)
		wg.Wait()

		p99Alone, p99Beside := percentile(alone, 0.99), percentile(beside, 0.99)
		b.ReportMetric(float64(p99Alone.Microseconds())/1000, "p99-alone-ms")
		b.ReportMetric(float64(p99Beside.Microseconds())/1000, "p99-listings-ms")
		b.ReportMetric(float64(percentile(beside, 0.5).Microseconds())/1000, "p50-listings-ms")
		b.ReportMetric(listRate, "listings/s")
		if p99Beside > p99Target {
			b.Fatalf("enqueue p99 beside %d listing clients is %v (alone %v), over %v", listers, p99Beside, p99Alone, p99Target)
		}
	}
}

// waitReady waits (10 s at most) until the node's /healthz answers 200.
func waitReady(b *testing.B, client *http.Client, base string) {
	b.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if resp, err := client.Get(base + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
	}
	b.Fatal("the node did not become ready in 10 s")
}

// post sends a JSON body and fails unless the answer is 200.
func post(b *testing.B, client *http.Client, url, body string) {
	b.Helper()
	resp, err := client.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		msg, _ := io.ReadAll(resp.Body)
		b.Fatalf("POST %s: %d %s", url, resp.StatusCode, msg)
	}
}

// enqueueLatencies enqueues n tasks one after the other to a small queue and
// returns each one's latency.
func enqueueLatencies(b *testing.B, client *http.Client, base string, n int) []time.Duration {
	b.Helper()
	out := make([]time.Duration, 0, n)
	body := []byte(`{"url": "http://127.0.0.1:9/", "countdown": 3600}`)
	for i := range n {
		start := time.Now()
		resp, err := client.Post(base+"/small", "application/json", bytes.NewReader(body))
		if err != nil {
			b.Fatalf("enqueue %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("enqueue %d: %d", i, resp.StatusCode)
		}
		out = append(out, time.Since(start))
	}
	return out
}

// percentile returns the p-th quantile (0 < p ≤ 1) of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s))*p+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// The README's command for this benchmark runs as written (from the repository's
// root), and passes: the enqueue p99 beside the listings is under its target.
func TestREADMEListingBenchmark(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a benchmark of 100,000 tasks")
	}
	command, err := readme.BlockAfter("../README.md", "\n### Listings beside enqueues\n")
	require.NoError(t, err)
	require.Equal(t, `go test -run '^$' -bench EnqueueBesideListings -benchtime 1x ./bench/`, command)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", command)
	cmd.Dir = ".."
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "p99-listings-ms")
	t.Logf("%s", out)
}
