package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miyamotohq/miyamoto/net/api"
	"github.com/miyamotohq/miyamoto/net/client"
)

// Config is one chaos run. Every field that shapes the fault schedule or the load
// appears in ReplayCommand.
type Config struct {
	Nodes         int
	Seed          uint64
	Duration      time.Duration // the load and the faults; then heal and drain
	Rate          float64       // enqueues a second, over both queues
	Lease         time.Duration // serve --lease
	Drift         time.Duration // serve --max-clock-drift
	ReplicaOffset time.Duration // serve --replica-offset
	Kinds         []FaultKind
	FailRate      float64       // share of calls the worker answers 500
	WorkerDelay   time.Duration // the worker answers each call after up to this long
	MaxCountdown  int           // tasks are due 0 to this many seconds after their enqueue
	Drain         time.Duration // how long the drain may wait for every task to end
	Binary        string        // a built miyamoto; empty: build one
	Keep          bool          // keep the run's directory (logs, data, history) even when it passes
	SlowLink      time.Duration // every byte into n1 arrives this late (0: none)
	Names         int           // task names from a pool of this many, enqueued through n1 first (0: unique names)

	Out io.Writer // the schedule and the report
	Log io.Writer // progress

	onCluster func(*Cluster) // for tests: called once the cluster exists
	tmpRoot   string         // for tests: where the run's directory goes (default: the system's)
}

// ReplayCommand is the command that runs the same fault schedule and load again.
func (c Config) ReplayCommand() string {
	kinds := make([]string, len(c.Kinds))
	for i, k := range c.Kinds {
		kinds[i] = string(k)
	}
	faults := strings.Join(kinds, ",")
	switch faults {
	case "":
		faults = "none"
	case kindList():
		faults = "all"
	}
	return fmt.Sprintf("go run ./bench/cmd/chaos --nodes %d --seed %d --duration %s --rate %g --lease %s --max-clock-drift %s --replica-offset %s --faults %s --fail-rate %g --worker-delay %s --max-countdown %d",
		c.Nodes, c.Seed, c.Duration, c.Rate, c.Lease, c.Drift, c.ReplicaOffset, faults, c.FailRate, c.WorkerDelay, c.MaxCountdown) + c.namesFlags()
}

// namesFlags are the replay's --slow-link and --names, when set (a run without
// them replays as it always did).
func (c Config) namesFlags() string {
	s := ""
	if c.SlowLink > 0 {
		s += fmt.Sprintf(" --slow-link %s", c.SlowLink)
	}
	if c.Names > 0 {
		s += fmt.Sprintf(" --names %d", c.Names)
	}
	return s
}

func (c Config) schedule() []Fault {
	return Schedule(ScheduleConfig{Seed: c.Seed, Nodes: c.Nodes, Duration: c.Duration, Lease: c.Lease, Kinds: c.Kinds})
}

// Bounds of the waits around the load.
const (
	buildTimeout   = 5 * time.Minute
	startTimeout   = 60 * time.Second // every node healthy, at the start and after the heal
	settingTimeout = 30 * time.Second // the queue settings answered 200
	lateDelivery   = 2 * time.Second  // after every task is final, calls still coming are recorded too
	// One GET /v1/tasks/{id} of the drain. A replica answers in milliseconds; a
	// member off the task's replica list may wait out its own 5 s query timeout
	// after a replace (see finalEverywhere), so the drain asks many at once and
	// gives up on one answer sooner: a question not answered is asked again next
	// round.
	viewTimeout   = 2 * time.Second
	viewWorkers   = 32
	progressEvery = 10 * time.Second
)

// Run runs the whole chaos test: build, start, load under faults, heal, drain,
// check. It returns the report (nil when the run could not get that far) and an
// error when something other than the checker went wrong. Every process it
// starts is killed by PID before it returns.
func Run(ctx context.Context, cfg Config) (report *Report, err error) {
	dir, err := os.MkdirTemp(cfg.tmpRoot, "miyamoto-chaos-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if cfg.Keep || err != nil || (report != nil && report.Failed()) {
			fmt.Fprintf(cfg.Out, "the run's logs, data and history.json are kept in %s\n", dir)
			return
		}
		os.RemoveAll(dir)
	}()
	schedule := cfg.schedule()
	fmt.Fprintf(cfg.Out, "chaos: seed %d, %d nodes, %s of load at %g tasks/s, lease %s, drift %s\nreplay: %s\n",
		cfg.Seed, cfg.Nodes, cfg.Duration, cfg.Rate, cfg.Lease, cfg.Drift, cfg.ReplayCommand())
	fmt.Fprintf(cfg.Out, "fault schedule (%d: %s):\n", len(schedule), countKinds(schedule))
	for _, f := range schedule {
		fmt.Fprintf(cfg.Out, "  %s\n", f)
	}
	bin := cfg.Binary
	if bin == "" {
		if bin, err = buildBinary(ctx, dir, cfg.Log); err != nil {
			return nil, err
		}
	}
	worker, err := NewWorker(cfg.Seed, cfg.FailRate, cfg.WorkerDelay)
	if err != nil {
		return nil, err
	}
	defer worker.Close()
	cluster, err := startCluster(ctx, ClusterConfig{Binary: bin, Dir: dir, Nodes: cfg.Nodes, Lease: cfg.Lease, Drift: cfg.Drift,
		ReplicaOffset: cfg.ReplicaOffset, Secret: randomSecret(), SlowLink: cfg.SlowLink, Log: cfg.Log})
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := cluster.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	if cfg.onCluster != nil {
		cfg.onCluster(cluster)
	}
	h, err := runPhases(ctx, cfg, schedule, cluster, worker)
	if err != nil {
		return nil, err
	}
	writeHistory(filepath.Join(dir, "history.json"), h)
	report = Check(*h)
	report.Print(cfg.Out)
	return report, nil
}

// startTries bounds startCluster's attempts.
const startTries = 3

// startCluster makes the cluster and starts every node until each is healthy. The
// ports are picked free and then bound by the nodes, so another process may take one
// in between: a start that fails so ("address already in use" in a node's log) is
// tried again on new ports, each attempt in a directory of its own.
func startCluster(ctx context.Context, cc ClusterConfig) (*Cluster, error) {
	dir := cc.Dir
	for try := 1; ; try++ {
		if try > 1 {
			cc.Dir = filepath.Join(dir, fmt.Sprintf("start-%d", try))
			if err := os.MkdirAll(cc.Dir, 0o755); err != nil {
				return nil, err
			}
		}
		c, err := NewCluster(cc)
		if err != nil {
			return nil, err
		}
		for i := range cc.Nodes {
			if err == nil {
				err = c.Start(i)
			}
		}
		if err == nil {
			err = waitCtx(ctx, startTimeout, c.WaitHealthy)
		}
		if err == nil {
			return c, nil
		}
		c.Close()
		if try == startTries || !c.portTaken() {
			return nil, fmt.Errorf("starting the cluster: %w", err)
		}
		fmt.Fprintf(cc.Log, "chaos: a port was taken by another process while the cluster started; again on new ports (%s)\n", err)
	}
}

// runPhases sets the queues, runs the load and the nemesis side
// by side, heals, drains and gathers the history.
func runPhases(ctx context.Context, cfg Config, schedule []Fault, cluster *Cluster, worker *Worker) (*History, error) {
	logf := func(format string, a ...any) { fmt.Fprintf(cfg.Log, "chaos: "+format+"\n", a...) }
	capped := slices.Contains(cfg.Kinds, KindSettings)
	if err := setQueues(ctx, cluster, capped); err != nil {
		return nil, err
	}
	logf("%d nodes healthy, queues set; load and faults for %s", cfg.Nodes, cfg.Duration)
	var (
		wg     sync.WaitGroup
		spans  []FaultSpan
		nemErr error
	)
	start := time.Now()
	wg.Add(1)
	go func() {
		defer wg.Done()
		spans, nemErr = runNemesis(ctx, cluster, schedule, start, cfg.Duration, logf)
	}()
	stopProgress := progress(cfg.Log, worker, start)
	load := RunLoad(ctx, LoadConfig{Nodes: cluster.MemberURLs, WorkerURL: worker.URL(), Rate: cfg.Rate, Duration: cfg.Duration, MaxCountdown: cfg.MaxCountdown, Capped: capped, Names: cfg.Names})
	wg.Wait()
	if err := ctx.Err(); err != nil {
		stopProgress()
		return nil, fmt.Errorf("interrupted: %w", err)
	}
	if nemErr != nil {
		stopProgress()
		return nil, nemErr
	}
	if load.BadInput != nil {
		stopProgress()
		return nil, load.BadInput
	}
	logf("load over: %d acknowledged, %d not, %d skipped; healing", len(load.Acked), load.NotAcked, load.Skipped)
	if err := cluster.Heal(); err != nil {
		stopProgress()
		return nil, fmt.Errorf("healing: %w", err)
	}
	if err := waitCtx(ctx, startTimeout, cluster.WaitHealthy); err != nil {
		logf("after the heal: %v (the drain goes on)", err)
	}
	// The drain asks the members only: a removed node's answers do not count, and
	// what it held must have moved to them.
	var members []target
	for _, i := range cluster.Members() {
		members = append(members, target{name: nodeName(i), url: cluster.URL(i)})
	}
	replaced := slices.ContainsFunc(spans, func(s FaultSpan) bool { return s.Kind == KindReplace })
	views := drain(ctx, cfg, members, load.Acked, replaced, logf)
	stopProgress()
	time.Sleep(lateDelivery)
	names := make([]string, len(members))
	for i, m := range members {
		names[i] = m.name
	}
	return &History{Nodes: cluster.Len(), Members: names, Enqueued: load.Started, Acked: load.Acked, NotAcked: load.NotAcked + load.Skipped, Deliveries: worker.Deliveries(),
		Faults: spans, Views: views, EndedUnknown: endedUnknown(cluster.LogPaths()), Crashes: cluster.UnexpectedExits()}, nil
}

// endedUnknown reads the tasks the nodes' logs say they ended unknown (the
// daemon's "task ended unknown" line, at info level), in the order found.
func endedUnknown(logs []string) []string {
	var out []string
	for _, path := range logs {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if !strings.Contains(line, `msg="task ended unknown"`) {
				continue
			}
			if _, rest, ok := strings.Cut(line, " id="); ok {
				id, _, _ := strings.Cut(rest, " ")
				out = append(out, id)
			}
		}
	}
	return out
}

// target is a node the drain asks.
type target struct{ name, url string }

// waitCtx runs wait under ctx bounded by d.
func waitCtx(ctx context.Context, d time.Duration, wait func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return wait(ctx)
}

// runNemesis applies schedule, each fault at start + its At, heals it For later,
// and records when each really started and ended. A fault that ended later than
// planned (a replace that took longer than For) pushes the rest back by as much,
// so that faults never overlap; a fault that would then end after the load is left
// out. It stops early when ctx ends.
func runNemesis(ctx context.Context, c *Cluster, schedule []Fault, start time.Time, duration time.Duration, logf func(string, ...any)) ([]FaultSpan, error) {
	var spans []FaultSpan
	var shift time.Duration
	for _, f := range schedule {
		planned := start.Add(f.At + shift)
		if planned.Add(f.For).After(start.Add(duration)) {
			logf("left out, %s late (a replace took longer than planned): %s", shift.Round(time.Millisecond), f)
			continue
		}
		if !sleepUntil(ctx, planned) {
			return spans, nil
		}
		span := FaultSpan{Fault: f, Start: time.Now()}
		logf("%s", f)
		if f.Kind == KindSettings {
			// The PUT is the fault: a cap that is not in force everywhere until it
			// answers 200 (the checker allows the higher of old and new till then).
			var err error
			if span.Answered, err = putQueue(ctx, c.URL(f.Via), queueCapped, map[string]any{"max_concurrent": f.Cap}); err != nil {
				span.Problem = err.Error()
				logf("%s", err)
			}
		} else if err := applyFault(ctx, c, f, logf); errors.Is(err, errMembership) {
			span.Problem = err.Error()
			logf("%s", err)
		} else if err != nil {
			return spans, err
		}
		sleepUntil(ctx, span.Start.Add(f.For))
		if err := healFault(c, f); err != nil {
			return spans, err
		}
		span.End = time.Now()
		spans = append(spans, span)
		if over := span.End.Sub(planned.Add(f.For)); over > time.Second {
			shift += over
		}
	}
	return spans, nil
}

// sleepUntil waits until t; false when ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(time.Until(t)):
		return true
	}
}

func applyFault(ctx context.Context, c *Cluster, f Fault, logf func(string, ...any)) error {
	mode := Refuse
	if f.Blackhole {
		mode = Blackhole
	}
	switch f.Kind {
	case KindKill, KindPowerLoss:
		return killAll(c, f.Nodes)
	case KindPause:
		return c.Pause(f.Nodes[0])
	case KindReplace:
		return replace(ctx, c, f, logf)
	default:
		c.SetLinks(f.Cuts, mode)
		return nil
	}
}

// killAll sends SIGKILL to every node listed at once, and waits for them all.
func killAll(c *Cluster, nodes []int) error {
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = c.Kill(n) }()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func healFault(c *Cluster, f Fault) error {
	switch f.Kind {
	case KindKill, KindPowerLoss:
		var errs []error
		for _, n := range f.Nodes {
			errs = append(errs, c.Start(n))
		}
		return errors.Join(errs...)
	case KindPause:
		return c.Continue(f.Nodes[0])
	case KindReplace, KindSettings:
		return nil // done when applied
	default:
		c.SetLinks(f.Cuts, Pass)
		return nil
	}
}

// setQueues makes one queue at-most-once and the other at-least-once with a short
// backoff (so that the drain does not wait out a long one), repeating each PUT
// until it answers 200: every member then has it.
func setQueues(ctx context.Context, c *Cluster, capped bool) error {
	retry := map[string]any{"min_backoff": "0.1s", "max_backoff": "2s"}
	settings := map[string]map[string]any{
		queueAtMostOnce:  {"delivery": "at-most-once"},
		queueAtLeastOnce: {"delivery": "at-least-once", "retry": retry},
		queueCapped:      {"delivery": "at-least-once", "retry": retry, "max_concurrent": initialCap},
	}
	queues := []string{queueAtLeastOnce, queueAtMostOnce}
	if capped {
		queues = append(queues, queueCapped)
	}
	for _, q := range queues {
		if _, err := putQueue(ctx, c.URL(0), q, settings[q]); err != nil {
			return err
		}
	}
	return nil
}

// putQueue sends PUT /v1/queues/{q} through base until it answers 200 (every
// member has the settings), at most settingTimeout; it returns when it answered.
func putQueue(ctx context.Context, base, q string, settings map[string]any) (time.Time, error) {
	cl, _ := client.New(base, "", 10*time.Second)
	deadline := time.Now().Add(settingTimeout)
	for {
		_, err := cl.SetQueue(ctx, q, settings)
		if err == nil {
			return time.Now(), nil
		}
		var apiErr *client.Error
		if errors.As(err, &apiErr) && apiErr.Code < 500 {
			return time.Time{}, fmt.Errorf("setting queue %s: %w", q, err)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return time.Time{}, fmt.Errorf("setting queue %s: not answered 200 in %s: %w", q, settingTimeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// drain asks every member about every acknowledged task until each is final on
// every member, in one state, or cfg.Drain passes; it returns the last answers.
func drain(ctx context.Context, cfg Config, members []target, acked []Ack, replaced bool, logf func(string, ...any)) map[string][]NodeView {
	clients := make([]*client.Client, len(members))
	for i, m := range members {
		clients[i], _ = client.New(m.url, "", viewTimeout)
	}
	views := map[string][]NodeView{}
	pending := make([]string, 0, len(acked))
	for _, a := range acked {
		pending = append(pending, a.Task)
	}
	deadline := time.Now().Add(cfg.Drain)
	for round := 1; len(pending) > 0; round++ {
		got := askAll(ctx, clients, members, pending)
		var still []string
		for _, id := range pending {
			views[id] = got[id]
			if !finalEverywhere(got[id], replaced) {
				still = append(still, id)
			}
		}
		logf("drain round %d: %d of %d tasks final on every member", round, len(acked)-len(still), len(acked))
		pending = still
		if len(pending) == 0 || time.Now().After(deadline) || !sleepUntil(ctx, time.Now().Add(time.Second)) {
			break
		}
	}
	return views
}

// finalEverywhere tells whether every node found the task in the same final state
// (replicas that disagree still exchange outcomes: the drain waits for them too, and
// the checker reports a disagreement that outlives it). After a replace (replaced),
// a member that is not on the task's replica list may not find it (a lookup through
// it asks the replicas the ring places the ID on now, not the task's own list), and
// a task that was final before its replicas were all replaced may be found by none
// (only tasks not final are moved): those answers are settled too.
func finalEverywhere(vs []NodeView, replaced bool) bool {
	state := ""
	found := 0
	for _, v := range vs {
		switch {
		case v.Err != "":
			return false
		case !v.Found:
			continue
		case !finalStates[v.Task.State] || (state != "" && v.Task.State != state):
			return false
		}
		state = v.Task.State
		found++
	}
	if found == len(vs) {
		return len(vs) > 0
	}
	if !replaced {
		return false
	}
	replicas := replicaNames(vs)
	for _, v := range vs {
		if !v.Found && replicas[v.Node] {
			return false
		}
	}
	return true
}

// askAll gets GET /v1/tasks/{id} of every id from every member, viewWorkers at a time.
func askAll(ctx context.Context, clients []*client.Client, members []target, ids []string) map[string][]NodeView {
	out := make(map[string][]NodeView, len(ids))
	for _, id := range ids {
		out[id] = make([]NodeView, len(clients))
	}
	jobs := make(chan [2]int)
	var wg sync.WaitGroup
	for w := 0; w < viewWorkers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				id, n := ids[j[0]], j[1]
				out[id][n] = askOne(ctx, clients[n], members[n].name, id)
			}
		}()
	}
	for i := range ids {
		for n := range clients {
			jobs <- [2]int{i, n}
		}
	}
	close(jobs)
	wg.Wait()
	return out
}

func askOne(ctx context.Context, c *client.Client, node, id string) NodeView {
	v := NodeView{Node: node}
	body, err := c.Task(ctx, id)
	var apiErr *client.Error
	switch {
	case errors.As(err, &apiErr) && apiErr.Code == http.StatusNotFound:
		return v
	case err != nil:
		v.Err = err.Error()
		return v
	}
	var t api.TaskView
	if err := json.Unmarshal(body, &t); err != nil {
		v.Err = "bad answer: " + err.Error()
		return v
	}
	v.Found, v.Task = true, &t
	return v
}

// progress prints what the worker has seen every progressEvery until stopped.
func progress(w io.Writer, worker *Worker, start time.Time) (stop func()) {
	done := make(chan struct{})
	var once sync.Once
	go func() {
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fmt.Fprintf(w, "chaos: %5.0fs  %d calls received by the worker\n", time.Since(start).Seconds(), worker.Count())
			}
		}
	}()
	return func() { once.Do(func() { close(done) }) }
}

// buildBinary builds cmd/miyamoto into dir.
func buildBinary(ctx context.Context, dir string, log io.Writer) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, buildTimeout)
	defer cancel()
	bin := filepath.Join(dir, "miyamoto")
	fmt.Fprintf(log, "chaos: building %s\n", bin)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/miyamotohq/miyamoto/cmd/miyamoto")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building miyamoto (or give --binary): %v: %s", err, strings.TrimSpace(string(out)))
	}
	return bin, nil
}

// randomSecret is a fresh --cluster-secret for one run.
func randomSecret() string {
	b := make([]byte, 24)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// writeHistory saves h for a later look (a failing run's reduction).
func writeHistory(path string, h *History) {
	b, err := json.MarshalIndent(h, "", " ")
	if err == nil {
		os.WriteFile(path, b, 0o644)
	}
}

// httpClient is a plain client with a timeout, for health checks.
func httpClient(timeout time.Duration) *http.Client { return &http.Client{Timeout: timeout} }

// healthy tells whether base's /healthz answers 200.
func healthy(ctx context.Context, c *http.Client, base string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/healthz", nil)
	if err != nil {
		return false
	}
	resp, err := c.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
