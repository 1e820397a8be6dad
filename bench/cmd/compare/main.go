// Command compare runs the same enqueue workload against a bare HTTP relay (the
// baseline), a single Miyamoto node, a three-node R=3 cluster (each also with storage
// on), and the peers users compare Miyamoto with: asynq on a redis-server it starts
// (in memory, and with appendfsync always) and River on SQLite. Everything runs in
// this process (redis-server beside it) on loopback; it prints enqueue and delivery
// rates, latencies, lateness, duplicates and losses side by side:
//
//	go run ./bench/cmd/compare -mode closed -concurrency 64 -duration 10s
//	go run ./bench/cmd/compare -mode open -rate 2000 -duration 10s -targets baseline,single
//	go run ./bench/cmd/compare -targets baseline,single,asynq,asynq-aof,river,river-fsync
//
// Without redis-server (Debian's package redis-server) the asynq targets are
// reported as skipped, with the reason.
//
// The workload and the comparison live in package bench; this command only binds
// flags. It exits 0 after printing the table, 1 when the comparison failed and 2 on
// bad flags (with one line saying which).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/miyamotohq/miyamoto/bench"
)

const (
	exitOK      = 0
	exitFailed  = 1
	exitBadArgs = 2
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// options are the flags that are not part of bench.CompareConfig.
type options struct {
	cpuProfile string
	trace      string
	memProfile string
	quiet      bool
}

func run(args []string, stdout, stderr io.Writer) int {
	cfg, opts, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "compare: %v\n", err)
		return exitBadArgs
	}
	if !opts.quiet {
		cfg.Progress = stderr
	}
	if opts.cpuProfile != "" {
		f, err := os.Create(opts.cpuProfile)
		if err != nil {
			fmt.Fprintf(stderr, "compare: -cpuprofile: %v\n", err)
			return exitBadArgs
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(stderr, "compare: -cpuprofile: %v\n", err)
			return exitFailed
		}
		defer pprof.StopCPUProfile()
	}
	if opts.trace != "" {
		f, err := os.Create(opts.trace)
		if err != nil {
			fmt.Fprintf(stderr, "compare: -trace: %v\n", err)
			return exitBadArgs
		}
		defer f.Close()
		if err := trace.Start(f); err != nil {
			fmt.Fprintf(stderr, "compare: -trace: %v\n", err)
			return exitFailed
		}
		defer trace.Stop()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := bench.Compare(ctx, cfg)
	if len(rep.Results) > 0 {
		rep.WriteTable(stdout)
		rep.WriteCPUSplit(stdout)
	}
	if opts.memProfile != "" {
		if err := writeHeapProfile(opts.memProfile); err != nil {
			fmt.Fprintf(stderr, "compare: -memprofile: %v\n", err)
			return exitFailed
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "compare: %v\n", err)
		return exitFailed
	}
	return exitOK
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// parseFlags turns the command line into a comparison; every problem becomes an error
// of one line naming the flag.
func parseFlags(args []string, usage io.Writer) (bench.CompareConfig, options, error) {
	var cfg bench.CompareConfig
	var opts options
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	mode := fs.String("mode", bench.ModeClosed, "load: open (a fixed rate) or closed (clients back to back)")
	rate := fs.Float64("rate", 1000, "open loop: enqueues per second")
	concurrency := fs.Int("concurrency", 32, "closed loop: clients")
	duration := fs.Duration("duration", 10*time.Second, "how long to send enqueues, per target")
	countdown := fs.Duration("countdown", 0, "countdown of every task (0: due at once)")
	maxInFlight := fs.Int("max-in-flight", 1024, "open loop: requests due and unanswered before new ones are shed")
	connections := fs.Int("connections", 64, "open loop: clients (keep-alive connections) per node")
	targets := fs.String("targets", strings.Join(bench.AllTargets, ","), "comma-separated: "+strings.Join(bench.KnownTargets, ", ")+" (the -record ones only when named)")
	drain := fs.Duration("drain-timeout", 60*time.Second, "how long to wait for every acknowledged task to be delivered")
	settle := fs.Duration("settle", time.Second, "how long to keep counting after the last delivery, for late duplicates")
	fs.StringVar(&opts.trace, "trace", "", "write an execution trace of the whole run to this file (go tool trace)")
	fs.StringVar(&opts.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run to this file")
	fs.BoolVar(&cfg.CPUSplit, "cpusplit", false, "profile each round from its first enqueue to its last delivery and print where the CPU went, per delivered task")
	fs.StringVar(&opts.memProfile, "memprofile", "", "write a heap profile (with every allocation of the run) to this file at the end")
	fs.BoolVar(&opts.quiet, "q", false, "print only the table")
	fs.IntVar(&cfg.Rounds, "rounds", 1, "run every target this many times, round-robin, and report each one's median round")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(usage, "usage: compare [flags]")
			fs.SetOutput(usage)
			fs.PrintDefaults()
		}
		return cfg, opts, err
	}
	if fs.NArg() > 0 {
		return cfg, opts, fmt.Errorf("unexpected argument %q (compare takes only flags)", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	bad := func(name, format string, a ...any) (bench.CompareConfig, options, error) {
		return cfg, opts, fmt.Errorf("-%s: %s", name, fmt.Sprintf(format, a...))
	}
	switch *mode {
	case bench.ModeOpen:
		if !(*rate > 0) || *rate > 1e6 {
			return bad("rate", "must be between 0 and 1e6 per second, not %v", *rate)
		}
		if set["concurrency"] {
			return bad("concurrency", "applies to -mode closed only")
		}
	case bench.ModeClosed:
		if *concurrency < 1 || *concurrency > 10000 {
			return bad("concurrency", "must be between 1 and 10000, not %d", *concurrency)
		}
		if set["rate"] {
			return bad("rate", "applies to -mode open only")
		}
	default:
		return bad("mode", "must be open or closed, not %q", *mode)
	}
	if *duration <= 0 || *duration > time.Hour {
		return bad("duration", "must be between 0 and 1h, not %v", *duration)
	}
	if *countdown < 0 {
		return bad("countdown", "must not be negative, not %v", *countdown)
	}
	if *maxInFlight < 1 {
		return bad("max-in-flight", "must be positive, not %d", *maxInFlight)
	}
	if *connections < 1 || *connections > 10000 {
		return bad("connections", "must be between 1 and 10000, not %d", *connections)
	}
	if *drain <= 0 {
		return bad("drain-timeout", "must be positive, not %v", *drain)
	}
	if *settle < 0 {
		return bad("settle", "must not be negative, not %v", *settle)
	}
	if cfg.CPUSplit && opts.cpuProfile != "" {
		return bad("cpusplit", "profiles each round itself: use either -cpusplit or -cpuprofile, not both")
	}
	if cfg.Rounds < 1 || cfg.Rounds > 100 {
		return bad("rounds", "must be between 1 and 100, not %d", cfg.Rounds)
	}
	seen := map[string]bool{}
	for _, t := range strings.Split(*targets, ",") {
		t = strings.TrimSpace(t)
		if !slices.Contains(bench.KnownTargets, t) {
			return bad("targets", "%q is not a target (want a comma-separated list of %s)", t, strings.Join(bench.KnownTargets, ", "))
		}
		if seen[t] {
			return bad("targets", "%q is listed twice", t)
		}
		seen[t] = true
		cfg.Targets = append(cfg.Targets, t)
	}
	cfg.Load = bench.LoadConfig{Mode: *mode, Rate: *rate, Concurrency: *concurrency, Duration: *duration,
		Countdown: *countdown, MaxInFlight: *maxInFlight, Connections: *connections}
	cfg.DrainTimeout = *drain
	cfg.Settle = *settle
	if *settle == 0 {
		cfg.Settle = -1 // zero would mean the default
	}
	return cfg, opts, nil
}
