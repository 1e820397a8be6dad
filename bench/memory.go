package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miyamotohq/miyamoto/net/metrics"
)

// MemoryConfig is the memory benchmark: one real `serve` process (not this one, so
// that its resident set is the node's alone) is given Tasks pending tasks with small
// bodies, due far ahead, and its memory is read before and after.
type MemoryConfig struct {
	Binary  string // a built miyamoto binary
	Tasks   int
	Durable bool // with a data directory (else --data-dir=, memory only)
	// RecordSize, when set, runs the node with the flight recorder (--record) and
	// this --record-size.
	RecordSize string
	// Clients send the enqueues, each on its own keep-alive connection; default 64.
	Clients int
	// Countdown of every task; default 30 days (nothing fires during the run).
	Countdown time.Duration
	// Log, if set, gets the node's stderr.
	Log io.Writer
}

// MemoryReport is what RunMemory measured. Memory is read after the enqueues,
// without forcing a garbage collection: the resident set includes the collector's
// headroom at the default GOGC, as an operator's `ps` would show it.
type MemoryReport struct {
	Tasks, Acked          int
	Enqueue               time.Duration // wall time of the enqueues
	RSSBefore, RSSAfter   int64         // resident set of the node (VmRSS)
	HeapBefore, HeapAfter int64         // go_heap_objects_bytes
	Restart               time.Duration // durable only: from the restarted process's start until it serves a task it held
	RSSRestarted          int64         // durable only: resident set after the restart
	RSSPeakRestarted      int64         // durable only: the restarted process's peak resident set (VmHWM), reading the log included
	HeapRestarted         int64
	RestartedTasks        int    // durable only: tasks the restarted node counts pending
	SampleID              string // one acknowledged task, asked for after the restart
}

// RSSPerTask and HeapPerTask are the growth per task held, in bytes.
func (r MemoryReport) RSSPerTask() float64 {
	return float64(r.RSSAfter-r.RSSBefore) / float64(max(r.Acked, 1))
}

func (r MemoryReport) HeapPerTask() float64 {
	return float64(r.HeapAfter-r.HeapBefore) / float64(max(r.Acked, 1))
}

// RunMemory runs cfg. Everything it starts is stopped, and its data removed,
// before it returns.
func RunMemory(ctx context.Context, cfg MemoryConfig) (MemoryReport, error) {
	if cfg.Clients <= 0 {
		cfg.Clients = 64
	}
	if cfg.Countdown <= 0 {
		cfg.Countdown = 30 * 24 * time.Hour
	}
	if cfg.Tasks <= 0 {
		return MemoryReport{}, errors.New("bench: MemoryConfig.Tasks must be positive")
	}
	dir, err := os.MkdirTemp("", "miyamoto-memory-")
	if err != nil {
		return MemoryReport{}, err
	}
	defer os.RemoveAll(dir)
	addr, err := freeLoopbackAddr()
	if err != nil {
		return MemoryReport{}, err
	}
	rep := MemoryReport{Tasks: cfg.Tasks}
	p, err := startServe(ctx, cfg, addr, dir)
	if err != nil {
		return rep, err
	}
	defer func() { p.kill() }()
	base := "http://" + addr
	if rep.RSSBefore, rep.HeapBefore, err = p.memory(ctx, base); err != nil {
		return rep, err
	}
	start := time.Now()
	rep.Acked, rep.SampleID, err = enqueueMany(ctx, base, cfg)
	rep.Enqueue = time.Since(start)
	if err != nil {
		return rep, err
	}
	if rep.RSSAfter, rep.HeapAfter, err = p.memory(ctx, base); err != nil {
		return rep, err
	}
	if !cfg.Durable {
		return rep, p.stop()
	}
	if err := p.stop(); err != nil {
		return rep, err
	}
	restarted := time.Now()
	if p, err = startServe(ctx, cfg, addr, dir); err != nil {
		return rep, err
	}
	if err := waitTask(ctx, base, rep.SampleID); err != nil {
		return rep, err
	}
	rep.Restart = time.Since(restarted)
	if rep.RSSRestarted, rep.HeapRestarted, err = p.memory(ctx, base); err != nil {
		return rep, err
	}
	if rep.RSSPeakRestarted, err = p.peakRSS(); err != nil {
		return rep, err
	}
	if rep.RestartedTasks, err = pendingTasks(ctx, base); err != nil {
		return rep, err
	}
	return rep, p.stop()
}

// serveProc is one `miyamoto serve` the benchmark started.
type serveProc struct {
	cmd  *exec.Cmd
	done chan error
}

func startServe(ctx context.Context, cfg MemoryConfig, addr, dir string) (*serveProc, error) {
	dataDir := "--data-dir="
	if cfg.Durable {
		dataDir = "--data-dir=" + filepath.Join(dir, "n1")
	}
	args := []string{"serve", "--http-addr", addr, dataDir, "--max-pending", "0", "--max-pending-bytes", "0", "--log-level", "warn"}
	if cfg.RecordSize != "" {
		args = append(args, "--record", filepath.Join(dir, "rec"), "--record-size", cfg.RecordSize)
	}
	cmd := exec.Command(cfg.Binary, args...)
	cmd.Stdout = io.Discard
	cmd.Stderr = io.Discard
	if cfg.Log != nil {
		cmd.Stderr = cfg.Log
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &serveProc{cmd: cmd, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	if err := waitHealthy(ctx, "http://"+addr, 10*time.Minute); err != nil {
		p.kill()
		return nil, err
	}
	return p, nil
}

// stop asks the node to shut down (SIGTERM) and waits, at most a minute, then kills it.
func (p *serveProc) stop() error {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(time.Minute):
		p.kill()
		return errors.New("bench: serve did not stop within a minute of SIGTERM")
	}
}

func (p *serveProc) kill() {
	select {
	case err := <-p.done:
		p.done <- err
	default:
		p.cmd.Process.Kill()
		p.done <- <-p.done
	}
}

// memory reads the process's VmRSS from /proc and its heap from /metrics.
func (p *serveProc) memory(ctx context.Context, base string) (rss, heap int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, 0, fmt.Errorf("bench: the memory benchmark reads /proc (Linux): %w", err)
	}
	var ok bool
	if rss, ok = metrics.VmRSS(string(b)); !ok {
		return 0, 0, errors.New("bench: no VmRSS in /proc/PID/status")
	}
	v, err := scrapeGauge(ctx, base, "go_heap_objects_bytes")
	return rss, int64(v), err
}

// peakRSS reads the process's peak resident set (VmHWM) from /proc.
func (p *serveProc) peakRSS() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, fmt.Errorf("bench: the memory benchmark reads /proc (Linux): %w", err)
	}
	// VmHWM has VmRSS's format: reuse its parser on the line renamed.
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			if kb, ok := metrics.VmRSS("VmRSS:" + rest); ok {
				return kb, nil
			}
		}
	}
	return 0, errors.New("bench: no VmHWM in /proc/PID/status")
}

// sumSamples fetches /metrics once and sums the samples of metric name whose line
// contains label (any sample when label is empty); n is how many it summed.
func sumSamples(ctx context.Context, base, name, label string) (sum float64, n int, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return 0, 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") || !strings.Contains(line, label) {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, 0, err
		}
		sum, n = sum+v, n+1
	}
	return sum, n, sc.Err()
}

// scrapeGauge returns the value of the gauge name on /metrics (one sample).
func scrapeGauge(ctx context.Context, base, name string) (float64, error) {
	v, n, err := sumSamples(ctx, base, name, "")
	if err == nil && n == 0 {
		err = fmt.Errorf("bench: %s not on /metrics", name)
	}
	return v, err
}

// pendingTasks sums miyamoto_queue_tasks{state="scheduled"} on /metrics.
func pendingTasks(ctx context.Context, base string) (int, error) {
	v, _, err := sumSamples(ctx, base, "miyamoto_queue_tasks", `state="scheduled"`)
	return int(v), err
}

// enqueueMany sends cfg.Tasks enqueues, each with a body of at most 7 bytes ("n="
// and up to five digits), due cfg.Countdown ahead, and returns how many were
// acknowledged and one acknowledged ID.
func enqueueMany(ctx context.Context, base string, cfg MemoryConfig) (int, string, error) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Clients, MaxConnsPerHost: cfg.Clients}, Timeout: time.Minute}
	defer client.CloseIdleConnections()
	var next, acked atomic.Int64
	var sample atomic.Value
	var firstErr error
	var once sync.Once
	countdown := strconv.Itoa(int(cfg.Countdown / time.Second))
	var wg sync.WaitGroup
	for range cfg.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(cfg.Tasks) {
					return
				}
				form := url.Values{"task.url": {"http://127.0.0.1:9/hook"}, "task.countdown": {countdown}, "n": {strconv.FormatInt(i%100000, 10)}}
				id, err := postForm(ctx, client, base+"/mem", form.Encode())
				if err != nil {
					once.Do(func() { firstErr = fmt.Errorf("enqueue %d: %w", i, err) })
					return
				}
				acked.Add(1)
				sample.CompareAndSwap(nil, id)
			}
		}()
	}
	wg.Wait()
	id, _ := sample.Load().(string)
	return int(acked.Load()), id, firstErr
}

func postForm(ctx context.Context, client *http.Client, u, body string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	var ans struct {
		Status string `json:"status"`
		ID     string `json:"id"`
	}
	if err := json.Unmarshal(b, &ans); err != nil || ans.Status != "scheduled" || ans.ID == "" {
		return "", fmt.Errorf("not a scheduled task's answer: %s", b)
	}
	return ans.ID, nil
}

// waitTask polls GET /v1/tasks/{id} until it answers 200 (the restarted node
// serves what it held), at most ten minutes.
func waitTask(ctx context.Context, base, id string) error {
	deadline := time.Now().Add(10 * time.Minute)
	for time.Now().Before(deadline) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/tasks/"+id, nil)
		if err != nil {
			return err
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("bench: the restarted node did not serve task %s within ten minutes", id)
}
