// Command chaos tests a real Miyamoto cluster under a hostile network and process
// faults: it starts --nodes real `miyamoto serve` processes (built from this module)
// with durable storage in a temporary directory, routes every directed peer link
// through its own TCP proxy (in this process, on loopback) that can pass, refuse or
// blackhole (each node is reached at one door, its --peer-advertise, that tells the
// dialer by its peer hello and hands the connection to that link's proxy), and runs
// a seeded nemesis while a steady load enqueues tasks on an at-least-once and an
// at-most-once queue:
//
//	go run ./bench/cmd/chaos --duration 60s --seed 1
//	go run ./bench/cmd/chaos --nodes 5 --duration 5m --seed 7 --rate 30
//
// The nemesis draws from the seed a schedule of faults, one after another with quiet
// gaps: kill -9 and restart of one node, SIGSTOP longer than the lease then SIGCONT,
// isolation of one node, a split in two, a one-way cut, a bridge (one node sees both
// halves), power loss (kill -9 of every node at once, then a restart: with
// durable storage nothing acknowledged may be lost), and replace (kill -9 of one
// node for good, a new node joins through a live member, the dead one is removed
// through the admin API and its tasks move; the load then sends to the members
// of the moment, and the drain asks the members at the end); and, when named,
// settings (a third queue's max_concurrent set to 1 or 3 through one node, while
// the checker counts its calls in flight against the cap in force). The worker (in this process)
// records every call: task, attempt, calling node; it answers 200, or 500 for a
// seeded share of calls (--fail-rate), after a seeded delay (--worker-delay) so
// that a fault can strike while a delivery is in flight. Opt-in, --slow-link delays
// every byte into n1 and --names reuses a pool of task names, enqueued through n1
// first (a name answered 200 twice fails the run). After the load: heal (every link passes,
// every node runs), drain (wait until every acknowledged task is final on every node,
// at most --drain), then the checker reports acknowledged, delivered, lost,
// duplicates (each explained by a fault near it, or not), at-most-once duplicates,
// stuck tasks and final-state mismatches (GET /v1/tasks/{id} on each node against
// what the worker saw).
//
// Every run prints its seed and the command that replays its fault schedule and
// load (the timing of a real cluster differs from run to run; the schedule does
// not). It exits 0 when nothing was lost, every duplicate is explained, no
// at-most-once task ran twice, nothing is stuck and every node's final state agrees
// with the others' and with the worker's calls; 1 otherwise or when the run
// itself failed; 2 on a bad flag, with one line naming it. A failing run keeps its
// directory (each node's log, its data, and history.json with every
// acknowledgement, call, fault and final answer) and prints where.
//
// What it must never do: reach beyond 127.0.0.1, or leave a process behind. Every
// process it starts is killed by its PID when the run ends, fails or is
// interrupted (and, on Linux, by the kernel if this process dies), and every wait
// is bounded.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

const (
	exitOK      = 0
	exitFailed  = 1
	exitBadArgs = 2
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	cfg, printOnly, err := parseFlags(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, usage())
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "chaos: %v\n", err)
		return exitBadArgs
	}
	cfg.Out, cfg.Log = stdout, stderr
	if printOnly {
		fmt.Fprintf(stdout, "replay: %s\n", cfg.ReplayCommand())
		for _, f := range cfg.schedule() {
			fmt.Fprintf(stdout, "  %s\n", f)
		}
		return exitOK
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	report, err := Run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "chaos: %v\n", err)
		return exitFailed
	}
	code := exitCodeFor(report)
	if code != exitOK {
		fmt.Fprintf(stdout, "FAILED (seed %d): replay with %s\n", cfg.Seed, cfg.ReplayCommand())
	} else {
		fmt.Fprintf(stdout, "PASSED (seed %d)\n", cfg.Seed)
	}
	return code
}

// exitCodeFor is the exit code a report earns: 1 on any loss, unexplained
// duplicate, at-most-once duplicate or stuck task, else 0.
func exitCodeFor(r *Report) int {
	if r.Failed() {
		return exitFailed
	}
	return exitOK
}

// flagSet declares the flags into cfg (and the options that are not part of it).
func flagSet(cfg *Config, seed *uint64, faults *string, printOnly *bool) *flag.FlagSet {
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.IntVar(&cfg.Nodes, "nodes", 3, "serve processes, 3 to 9")
	fs.Uint64Var(seed, "seed", 0, "seed of the fault schedule and the load (0: a random one, printed)")
	fs.DurationVar(&cfg.Duration, "duration", 60*time.Second, "how long the load and the faults run, then heal and drain")
	fs.Float64Var(&cfg.Rate, "rate", 20, "enqueues a second, alternating between the two queues")
	fs.DurationVar(&cfg.Lease, "lease", 3*time.Second, "the nodes' --lease (a pause lasts longer)")
	fs.DurationVar(&cfg.Drift, "max-clock-drift", 200*time.Millisecond, "the nodes' --max-clock-drift")
	fs.DurationVar(&cfg.ReplicaOffset, "replica-offset", time.Second, "the nodes' --replica-offset")
	fs.StringVar(faults, "faults", "all", "faults to draw from: all ("+kindList()+"), none, or some of those and "+optInList()+" (not part of all)")
	fs.Float64Var(&cfg.FailRate, "fail-rate", 0.02, "share of calls the worker answers 500 (0 to 0.5)")
	fs.DurationVar(&cfg.WorkerDelay, "worker-delay", 300*time.Millisecond, "the worker answers each call after a seeded delay up to this (0 to 1s), so faults hit deliveries in flight")
	fs.IntVar(&cfg.MaxCountdown, "max-countdown", 3, "tasks are due 0 to this many seconds after their enqueue")
	fs.DurationVar(&cfg.Drain, "drain", 90*time.Second, "after the heal, how long to wait for every task to end")
	fs.StringVar(&cfg.Binary, "binary", "", "a built miyamoto binary (default: build ./cmd/miyamoto)")
	fs.DurationVar(&cfg.SlowLink, "slow-link", 0, "every byte into n1 arrives this late, for the whole run (0 to 5s; 0: none)")
	fs.IntVar(&cfg.Names, "names", 0, "task names from a pool of this many, each enqueue sent first through n1 (0: every name unique)")
	fs.BoolVar(&cfg.Keep, "keep", false, "keep the run's directory even when it passes")
	fs.BoolVar(printOnly, "print-schedule", false, "print the fault schedule and exit")
	return fs
}

func usage() string {
	var b strings.Builder
	b.WriteString("usage: go run ./bench/cmd/chaos [flags]\n\n")
	fs := flagSet(&Config{}, new(uint64), new(string), new(bool))
	fs.SetOutput(&b)
	fs.PrintDefaults()
	return b.String()
}

// parseFlags reads and checks the flags; an error names the flag at fault.
func parseFlags(args []string) (Config, bool, error) {
	var (
		cfg       Config
		seed      uint64
		faults    string
		printOnly bool
	)
	fs := flagSet(&cfg, &seed, &faults, &printOnly)
	if err := fs.Parse(args); err != nil {
		return cfg, false, err
	}
	if fs.NArg() > 0 {
		return cfg, false, fmt.Errorf("unexpected argument %q (chaos takes only flags)", fs.Arg(0))
	}
	kinds, err := ParseKinds(faults)
	if err != nil {
		return cfg, false, fmt.Errorf("--faults: %v", err)
	}
	cfg.Kinds = kinds
	if seed == 0 {
		seed = rand.Uint64()>>1 + 1 // printed with the run, so it can be replayed
	}
	cfg.Seed = seed
	return cfg, printOnly, cfg.validate()
}

// validate checks the rules that span fields, naming the flag at fault.
func (c Config) validate() error {
	switch {
	case c.Nodes < 3 || c.Nodes > 9:
		return fmt.Errorf("--nodes: must be between 3 and 9, not %d", c.Nodes)
	case c.Duration < 10*time.Second || c.Duration > 24*time.Hour:
		return fmt.Errorf("--duration: must be between 10s and 24h, not %s", c.Duration)
	case c.Rate <= 0 || c.Rate > 1000:
		return fmt.Errorf("--rate: must be above 0 and at most 1000 a second, not %g", c.Rate)
	case c.Drift < 0:
		return fmt.Errorf("--max-clock-drift: must not be negative, not %s", c.Drift)
	case c.Lease <= 2*c.Drift || c.Lease > time.Minute:
		return fmt.Errorf("--lease: must be longer than twice --max-clock-drift (%s) and at most 1m, not %s", 2*c.Drift, c.Lease)
	case c.ReplicaOffset < 0:
		return fmt.Errorf("--replica-offset: must not be negative, not %s", c.ReplicaOffset)
	case c.FailRate < 0 || c.FailRate > 0.5:
		return fmt.Errorf("--fail-rate: must be between 0 and 0.5, not %g", c.FailRate)
	case c.WorkerDelay < 0 || c.WorkerDelay > time.Second:
		return fmt.Errorf("--worker-delay: must be between 0 and 1s, not %s", c.WorkerDelay)
	case c.MaxCountdown < 0 || c.MaxCountdown > 3600:
		return fmt.Errorf("--max-countdown: must be between 0 and 3600 seconds, not %d", c.MaxCountdown)
	case c.SlowLink < 0 || c.SlowLink > 5*time.Second:
		return fmt.Errorf("--slow-link: must be between 0 and 5s, not %s", c.SlowLink)
	case c.Names < 0:
		return fmt.Errorf("--names: must not be negative, not %d", c.Names)
	case c.Drain < time.Second:
		return fmt.Errorf("--drain: must be at least 1s, not %s", c.Drain)
	}
	return nil
}
