package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// tree is one side of the comparison: a copy of the repository and the benchmark
// binaries built from it.
type tree struct {
	side    string // "base" or "current"
	root    string // the module's root directory
	simTest string // package bench's test binary; "" when no simulator run is asked
	compare string // bench/cmd/compare's binary; "" when no throughput run is asked
}

// repoRoot is the root of the git work tree this command runs in, which must be this
// module's (it holds bench/cmd/compare).
func repoRoot() (string, error) {
	out, err := runCmd(context.Background(), "", "git", "rev-parse", "--show-toplevel")
	if err != nil {
		return "", fmt.Errorf("run it inside a clone of the repository: %v", err)
	}
	root := strings.TrimSpace(out)
	if _, err := os.Stat(filepath.Join(root, "bench", "cmd", "compare")); err != nil {
		return "", fmt.Errorf("%s has no bench/cmd/compare: run it inside a clone of Miyamoto", root)
	}
	return root, nil
}

// resolveCommit returns the full hash of the commit rev names in the repository.
func resolveCommit(repo, rev string) (string, error) {
	out, err := runCmd(context.Background(), repo, "git", "rev-parse", "--verify", "--quiet", rev+"^{commit}")
	if err != nil {
		return "", fmt.Errorf("%q is not a commit of this repository (a shallow clone may lack it: git fetch --unshallow)", rev)
	}
	return strings.TrimSpace(out), nil
}

// describeWorkTree names the commit the working tree is at, and says when it has
// uncommitted changes (which the current side includes).
func describeWorkTree(ctx context.Context, repo string) string {
	head, err := runCmd(ctx, repo, "git", "rev-parse", "--short", "HEAD")
	if err != nil {
		return "the working tree"
	}
	desc := strings.TrimSpace(head)
	if st, err := runCmd(ctx, repo, "git", "status", "--porcelain", "--untracked-files=no"); err == nil && strings.TrimSpace(st) != "" {
		desc += " with uncommitted changes"
	}
	return desc
}

// materialise writes the tree of commit into dir (which must exist), without a git
// directory: git archive, so that it works in any clone and leaves the repository
// as it was.
func materialise(ctx context.Context, repo, commit, dir string) error {
	archive := exec.CommandContext(ctx, "git", "archive", "--format=tar", commit)
	archive.Dir = repo
	extract := exec.CommandContext(ctx, "tar", "-x", "-C", dir)
	pipe, err := archive.StdoutPipe()
	if err != nil {
		return err
	}
	extract.Stdin = pipe
	var archiveErr, extractErr bytes.Buffer
	archive.Stderr, extract.Stderr = &archiveErr, &extractErr
	if err := archive.Start(); err != nil {
		return fmt.Errorf("git archive: %v", err)
	}
	if err := extract.Run(); err != nil {
		archive.Process.Kill()
		archive.Wait()
		return fmt.Errorf("tar -x: %v: %s", err, lastLine(extractErr.String()))
	}
	if err := archive.Wait(); err != nil {
		return fmt.Errorf("git archive %s: %v: %s", commit, err, lastLine(archiveErr.String()))
	}
	return nil
}

// build compiles the side's binaries into bin: package bench's test binary when
// withSim, bench/cmd/compare when withThroughput.
func (t *tree) build(ctx context.Context, bin string, withSim, withThroughput bool) error {
	if withSim {
		t.simTest = filepath.Join(bin, t.side+"-bench.test")
		if _, err := runCmd(ctx, t.root, "go", "test", "-c", "-o", t.simTest, "./bench/"); err != nil {
			return fmt.Errorf("%s: building package bench's tests: %v", t.side, err)
		}
	}
	if withThroughput {
		t.compare = filepath.Join(bin, t.side+"-compare")
		if _, err := runCmd(ctx, t.root, "go", "build", "-o", t.compare, "./bench/cmd/compare"); err != nil {
			return fmt.Errorf("%s: building bench/cmd/compare: %v", t.side, err)
		}
	}
	return nil
}

// benchmarks lists the benchmarks of the side's package bench that pattern matches.
func (t *tree) benchmarks(ctx context.Context, pattern string) ([]string, error) {
	out, err := runCmd(ctx, filepath.Join(t.root, "bench"), t.simTest, "-test.list", pattern)
	if err != nil {
		return nil, fmt.Errorf("%s: listing benchmarks: %v", t.side, err)
	}
	var names []string
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "Benchmark") {
			names = append(names, strings.TrimSpace(line))
		}
	}
	return names, nil
}

// sameBenchmarks checks that both sides have the simulator benchmarks pattern picks,
// and returns their names.
func sameBenchmarks(ctx context.Context, base, cur *tree, pattern string) ([]string, error) {
	curNames, err := cur.benchmarks(ctx, pattern)
	if err != nil {
		return nil, err
	}
	if len(curNames) == 0 {
		return nil, fmt.Errorf("-sim-bench %q matches no benchmark of package bench", pattern)
	}
	baseNames, err := base.benchmarks(ctx, pattern)
	if err != nil {
		return nil, err
	}
	for _, name := range curNames {
		if !slices.Contains(baseNames, name) {
			return nil, fmt.Errorf("the base has no %s: pick others with -sim-bench", name)
		}
	}
	return curNames, nil
}

// alignWorkload makes the base run the current side's scenario files: every file of
// the current bench/testdata that the base lacks or has with other contents is copied
// over the base's. It returns the names it copied.
func alignWorkload(base, cur *tree) ([]string, error) {
	dir := filepath.Join(cur.root, "bench", "testdata")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var copied []string
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		want, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		path := filepath.Join(base.root, "bench", "testdata", e.Name())
		if have, err := os.ReadFile(path); err == nil && bytes.Equal(have, want) {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, want, 0o644); err != nil {
			return nil, err
		}
		copied = append(copied, e.Name())
	}
	return copied, nil
}

// runCmd runs name with args in dir (the current directory when empty) and returns
// its standard output; a failure's error carries the end of its standard error.
func runCmd(ctx context.Context, dir, name string, args ...string) (string, error) {
	out, _, err := runCmdCPU(ctx, dir, name, args...)
	return out, err
}

// runCmdCPU is runCmd that also returns the CPU time (user and system) the process
// used, children waited for included.
func runCmdCPU(ctx context.Context, dir, name string, args ...string) (string, time.Duration, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		msg := lastLines(stderr.String()+stdout.String(), 5)
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) && msg != "" {
			return stdout.String(), 0, fmt.Errorf("%s %s: %v:\n%s", filepath.Base(name), strings.Join(args, " "), err, msg)
		}
		return stdout.String(), 0, fmt.Errorf("%s: %v", filepath.Base(name), err)
	}
	return stdout.String(), cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), nil
}

// lastLines returns the last n non-empty lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}

func lastLine(s string) string { return lastLines(s, 1) }
