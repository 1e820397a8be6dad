// Command versus measures this working tree against an earlier commit of the
// repository, on the same machine, in one run: the simulator's speed (the
// BenchmarkSim5NodeR3 family of package bench, events/s and × real time) and the
// throughput of a single node and of a three-node R=3 cluster, in memory and with
// storage (each tree's own bench/cmd/compare: delivered/s, and its share of the relay
// baseline measured in the same compare run), interleaved round by round, and prints
// each figure's median on both sides, then every round's figures:
//
//	go run ./bench/cmd/versus -base 096cb31
//	go run ./bench/cmd/versus -base 096cb31 -rounds 5 -duration 5s -strict
//
// It writes the base commit's tree into a temporary directory (git archive, so it
// works in any clone that has the commit), builds both trees' benchmark binaries
// there, and deletes the directory at the end. The current side is the working tree
// as it is, uncommitted changes included.
//
// A figure is within the tolerance when the current one is no more than -tolerance
// percent worse than the base's (every judged figure is better when higher). It exits
// 0 after printing the table, 1 when a run failed (or, with -strict, when a judged
// figure is out of tolerance: on a shared machine noise alone can do that) and 2 on
// bad flags, with one line saying what to fix.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	exitOK      = 0
	exitFailed  = 1
	exitBadArgs = 2
)

// throughputTargets are bench/cmd/compare's Miyamoto targets this command can run;
// the relay baseline always runs beside them, as the yardstick of each round.
var throughputTargets = []string{"single", "cluster3", "single-disk", "cluster3-disk"}

// config is one comparison, from the flags.
type config struct {
	base      string   // the commit to compare against, as given
	rounds    int      // interleaved rounds; each figure is the median over them
	simBench  string   // -test.bench pattern of the simulator benchmarks; "" for none
	benchtime string   // -test.benchtime of each simulator run
	targets   []string // compare targets besides the baseline; none for no throughput runs
	duration  time.Duration
	conc      int     // closed-loop clients of each compare run
	tolerance float64 // percent a judged figure may be worse than the base's
	strict    bool
	quiet     bool
}

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "versus: %v\n", err)
		return exitBadArgs
	}
	repo, err := repoRoot()
	if err != nil {
		fmt.Fprintf(stderr, "versus: %v\n", err)
		return exitBadArgs
	}
	commit, err := resolveCommit(repo, cfg.base)
	if err != nil {
		fmt.Fprintf(stderr, "versus: -base: %v\n", err)
		return exitBadArgs
	}
	progress := io.Writer(stderr)
	if cfg.quiet {
		progress = io.Discard
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := compareTrees(ctx, repo, commit, cfg, progress)
	if len(rep.rows) > 0 {
		rep.writeTable(stdout)
	}
	return exitCode(rep, err, cfg.strict, stderr)
}

// exitCode says how the comparison ended: failed when a run failed, or with strict
// when a judged figure is out of tolerance (one line on stderr says which).
func exitCode(rep report, err error, strict bool, stderr io.Writer) int {
	if err != nil {
		fmt.Fprintf(stderr, "versus: %v\n", err)
		return exitFailed
	}
	if bad := rep.outOfTolerance(); strict && len(bad) > 0 {
		fmt.Fprintf(stderr, "versus: -strict: %s more than %g%% worse than the base\n", strings.Join(bad, ", "), rep.tolerance)
		return exitFailed
	}
	return exitOK
}

// parseFlags turns the command line into a comparison; every problem becomes an error
// of one line naming the flag. Whether -base names a commit is checked later, against
// the repository.
func parseFlags(args []string, usage io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("versus", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&cfg.base, "base", "", "the commit to compare the working tree against (required), e.g. 096cb31")
	fs.IntVar(&cfg.rounds, "rounds", 3, "interleaved rounds (base and current alternate); each figure is the median")
	fs.StringVar(&cfg.simBench, "sim-bench", "Sim5NodeR3", "the simulator benchmarks of package bench to run (a -test.bench pattern; empty for none)")
	fs.StringVar(&cfg.benchtime, "benchtime", "20x", "-test.benchtime of each simulator run (N iterations as Nx, or a duration)")
	targets := fs.String("targets", strings.Join(throughputTargets, ","),
		"compare targets to run beside the relay baseline, comma-separated, of "+strings.Join(throughputTargets, ", ")+" (empty for none)")
	fs.DurationVar(&cfg.duration, "duration", 5*time.Second, "how long each compare run sends enqueues, per target")
	fs.IntVar(&cfg.conc, "concurrency", 32, "closed-loop clients of each compare run")
	fs.Float64Var(&cfg.tolerance, "tolerance", 5, "percent a judged figure may be worse than the base's")
	fs.BoolVar(&cfg.strict, "strict", false, "exit 1 when a judged figure is out of tolerance")
	fs.BoolVar(&cfg.quiet, "q", false, "print only the table")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(usage, "usage: versus -base COMMIT [flags]")
			fs.SetOutput(usage)
			fs.PrintDefaults()
		}
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q (versus takes only flags)", fs.Arg(0))
	}
	var err error
	if cfg.targets, err = parseTargets(*targets); err != nil {
		return cfg, err
	}
	return cfg, cfg.validate()
}

// validate checks the flags that parseFlags did not; the first problem is the error.
func (c config) validate() error {
	switch {
	case c.base == "":
		return errors.New("-base: required: the commit to compare against, e.g. -base 096cb31")
	case strings.HasPrefix(c.base, "-"):
		return fmt.Errorf("-base: %q is not a commit", c.base)
	case c.rounds < 1 || c.rounds > 50:
		return fmt.Errorf("-rounds: must be between 1 and 50, not %d", c.rounds)
	case c.duration <= 0 || c.duration > 10*time.Minute:
		return fmt.Errorf("-duration: must be between 0 and 10m, not %v", c.duration)
	case c.conc < 1 || c.conc > 10000:
		return fmt.Errorf("-concurrency: must be between 1 and 10000, not %d", c.conc)
	case !(c.tolerance >= 0 && c.tolerance < 100):
		return fmt.Errorf("-tolerance: must be a percentage from 0 to under 100, not %v", c.tolerance)
	case c.simBench == "" && len(c.targets) == 0:
		return errors.New("-sim-bench and -targets are both empty: nothing to measure")
	}
	if _, err := regexp.Compile(c.simBench); err != nil {
		return fmt.Errorf("-sim-bench: not a regular expression: %v", err)
	}
	return validBenchtime(c.benchtime)
}

// validBenchtime accepts what go test's -benchtime does: Nx with N at least 1, or a
// positive duration.
func validBenchtime(s string) error {
	if n, ok := strings.CutSuffix(s, "x"); ok {
		if v, err := strconv.Atoi(n); err == nil && v >= 1 {
			return nil
		}
	} else if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return nil
	}
	return fmt.Errorf("-benchtime: %q is neither Nx (N iterations, N ≥ 1) nor a positive duration", s)
}

// parseTargets reads -targets: known names, each once; empty for none.
func parseTargets(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []string
	for _, t := range strings.Split(s, ",") {
		t = strings.TrimSpace(t)
		known := false
		for _, k := range throughputTargets {
			known = known || t == k
		}
		if !known {
			return nil, fmt.Errorf("-targets: %q is not a target (want a comma-separated list of %s)", t, strings.Join(throughputTargets, ", "))
		}
		for _, seen := range out {
			if seen == t {
				return nil, fmt.Errorf("-targets: %q is listed twice", t)
			}
		}
		out = append(out, t)
	}
	return out, nil
}
