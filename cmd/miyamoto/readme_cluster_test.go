package main

// Tests that run the README's shell blocks as written, so that they keep working.
// The README's commands use fixed ports (8081-8083, 7101-7103, a worker on 9099);
// readmePorts serialises such tests across every test process on the machine.

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestE2EREADMEFixedPorts runs the README's blocks that use fixed ports. Every one
// needs the worker's port 9099, so they run one after another (readmePorts also
// keeps out those of another test process); together they run beside the other
// end-to-end tests, which choose free ports.
func TestE2EREADMEFixedPorts(t *testing.T) {
	t.Parallel()
	t.Run("Walkthrough", readmeWalkthrough)
	t.Run("ThreeNodeCluster", readmeThreeNodeCluster)
	t.Run("ThreeNodeClusterWithTLS", readmeThreeNodeClusterWithTLS)
	t.Run("GrowingACluster", readmeGrowingACluster)
	t.Run("FlightRecorder", readmeFlightRecorder)
}

// moduleRoot is the module's root (the tests run in cmd/miyamoto).
func moduleRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	require.NoError(t, err)
	_, err = os.Stat(filepath.Join(root, "go.mod"))
	require.NoError(t, err, "the module root is not two levels up")
	return root
}

// readmePorts holds, until the test ends, a lock that every test running the
// README's fixed-port commands takes (in any test process on this machine), and
// fails at once naming any port that is taken anyway.
func readmePorts(t *testing.T, ports ...int) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "miyamoto-readme-ports.lock"), os.O_CREATE|os.O_RDWR, 0o666)
	require.NoError(t, err)
	require.NoError(t, syscall.Flock(int(f.Fd()), syscall.LOCK_EX))
	t.Cleanup(func() { f.Close() }) // closing releases the lock
	for _, p := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		require.NoError(t, err, "the README's commands need port %d on loopback", p)
		ln.Close()
	}
}

// workTree is a scratch directory that looks like the repository (its entries are
// symbolic links to the real ones), so that a README block run from it builds the
// real code but leaves its binary and data directories in the scratch directory.
func workTree(t *testing.T) string {
	t.Helper()
	root := moduleRoot(t)
	dir := t.TempDir()
	entries, err := os.ReadDir(root)
	require.NoError(t, err)
	for _, e := range entries {
		switch e.Name() {
		case ".git", "miyamoto", "miyamoto-data":
			continue
		}
		require.NoError(t, os.Symlink(filepath.Join(root, e.Name()), filepath.Join(dir, e.Name())))
	}
	return dir
}

// runScript runs a README block with bash -e in dir, in a process group of its own.
// Whatever it leaves running in the background (the README starts nodes with &) is
// killed, by PID, when the test ends.
func runScript(t *testing.T, dir, script string, within time.Duration) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-e", "-c", script)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// A file, not a pipe: the nodes left in the background inherit it, and Wait
	// would wait for a pipe until they exit.
	out, err := os.Create(filepath.Join(t.TempDir(), "script.out"))
	require.NoError(t, err)
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(t, cmd.Start())
	pgid := cmd.Process.Pid
	t.Cleanup(func() { killGroup(t, pgid) })
	err = cmd.Wait()
	b, _ := os.ReadFile(out.Name())
	require.NoError(t, err, "the README block failed:\n%s", b)
	return string(b)
}

// killGroup kills, one PID at a time, every process left in process group pgid (a
// group this test created), and waits until they are gone.
func killGroup(t *testing.T, pgid int) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		pids := groupPIDs(pgid)
		if len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("processes %v of group %d survived SIGKILL", pids, pgid)
			return
		}
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// groupPIDs lists the live (not zombie) processes of process group pgid, from /proc.
func groupPIDs(pgid int) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...; comm may hold spaces, so cut at the last ')'.
		s := string(b)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) < 3 || fields[0] == "Z" {
			continue
		}
		if g, _ := strconv.Atoi(fields[2]); g == pgid {
			pids = append(pids, pid)
		}
	}
	return pids
}

// portWorker is the README's worker on 127.0.0.1:9099 (netcat in the README): it
// answers 200 and keeps what it received.
type portWorker struct {
	mu  sync.Mutex
	got []string // "METHOD /path body"
}

func startPortWorker(t *testing.T) *portWorker {
	t.Helper()
	w := &portWorker{}
	ln, err := net.Listen("tcp", "127.0.0.1:9099")
	require.NoError(t, err)
	srv := &http.Server{Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.mu.Lock()
		w.got = append(w.got, r.Method+" "+r.URL.Path+" "+string(body))
		w.mu.Unlock()
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return w
}

// waitFor waits until the worker received want, at most within.
func (w *portWorker) waitFor(t *testing.T, want string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		w.mu.Lock()
		for _, g := range w.got {
			if g == want {
				w.mu.Unlock()
				return
			}
		}
		w.mu.Unlock()
		time.Sleep(100 * time.Millisecond)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	t.Fatalf("the worker never received %q; it received %q", want, w.got)
}

// The README's "A three-node cluster on one machine", pasted as a script into one
// directory: three nodes start (each with its own default data directory), the
// script waits until each is healthy, enqueues, and the task reaches the worker.
func readmeThreeNodeCluster(t *testing.T) {
	binary(t) // skips with -short; warms the build cache the script's go build uses
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("the README's commands need curl")
	}
	readmePorts(t, 8081, 8082, 8083, 7101, 7102, 7103, 9099)
	w := startPortWorker(t)
	dir := workTree(t)
	block := readmeBlock(t, "## A three-node cluster on one machine")

	out := runScript(t, dir, block, 3*time.Minute)
	require.Contains(t, out, `"status": "scheduled"`, "the enqueue did not succeed:\n%s", out)
	for _, id := range []string{"n1", "n2", "n3"} {
		require.Contains(t, out, `"id": "`+id+`"`, "/v1/cluster does not list %s:\n%s", id, out)
		require.DirExists(t, filepath.Join(dir, "miyamoto-data", id), "each node has its own default data directory")
	}
	w.waitFor(t, "POST /worker foo=bar", 30*time.Second)
}

// The README's "With TLS between the nodes", pasted as a script into one directory:
// openssl makes a CA and three node certificates, three nodes start with the peer
// port in mutual TLS, become healthy (which needs a majority of peers reachable, so
// the TLS handshakes worked), and a task enqueued on one reaches the worker.
func readmeThreeNodeClusterWithTLS(t *testing.T) {
	binary(t) // skips with -short; warms the build cache the script's go build uses
	for _, tool := range []string{"curl", "openssl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the README's commands need %s", tool)
		}
	}
	readmePorts(t, 8081, 8082, 8083, 7101, 7102, 7103, 9099)
	w := startPortWorker(t)
	dir := workTree(t)
	block := readmeBlock(t, "### With TLS between the nodes")

	out := runScript(t, dir, block, 3*time.Minute)
	require.Contains(t, out, `"status": "scheduled"`, "the enqueue did not succeed:\n%s", out)
	for _, id := range []string{"n1", "n2", "n3"} {
		require.Contains(t, out, `"id": "`+id+`"`, "/v1/cluster does not list %s:\n%s", id, out)
		require.FileExists(t, filepath.Join(dir, "tls", id+".crt"))
	}
	require.NotContains(t, out, `"reachable": false`, "a peer is unreachable over TLS:\n%s", out)
	w.waitFor(t, "POST /worker over=tls", 30*time.Second)
}

// The README's "Growing a cluster", pasted as a script: a node alone, then two
// that join it with --join. Every node ends in the same roster (three members,
// one leader), and a task enqueued through a joined node reaches the worker. Then
// its "Removing a member" removes one of the three.
func readmeGrowingACluster(t *testing.T) {
	binary(t) // skips with -short; warms the build cache the script's go build uses
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("the README's commands need curl")
	}
	readmePorts(t, 8091, 8092, 8093, 7111, 7112, 7113, 9099)
	w := startPortWorker(t)
	dir := workTree(t)
	block := readmeBlock(t, "## Growing a cluster")

	out := runScript(t, dir, block, 3*time.Minute)
	var c struct {
		Epoch   uint64 `json:"epoch"`
		Leader  string `json:"leader"`
		Members []struct {
			ID        string `json:"id"`
			Reachable bool   `json:"reachable"`
		} `json:"members"`
		Healthy bool `json:"healthy"`
	}
	require.NoError(t, json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &c), "the last command's output is not /v1/cluster's JSON:\n%s", out)
	require.Len(t, c.Members, 3, "/v1/cluster:\n%s", out)
	for i, id := range []string{"a1", "a2", "a3"} {
		require.Equal(t, id, c.Members[i].ID)
		require.True(t, c.Members[i].Reachable, "%s unreachable:\n%s", id, out)
	}
	require.GreaterOrEqual(t, c.Epoch, uint64(3), "two joins commit two epochs at least")
	require.True(t, c.Healthy, "a3 is not healthy:\n%s", out)

	resp, err := http.Post("http://127.0.0.1:8093/queue", "application/x-www-form-urlencoded", strings.NewReader("task.url=http://localhost:9099/worker&grown=yes"))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	w.waitFor(t, "POST /worker grown=yes", 30*time.Second)

	// "Removing a member", run after it on the same nodes: a3 leaves the roster of
	// a1 and a2, says it was removed, and a task enqueued through a1 still fires.
	out = runScript(t, dir, readmeBlock(t, "### Removing a member"), time.Minute)
	line, rest, _ := strings.Cut(out, "\n")
	require.Regexp(t, `^removed a3; roster epoch \d+: a1, a2$`, line, "cluster remove printed:\n%s", out)
	dec := json.NewDecoder(strings.NewReader(rest))
	var after struct {
		Members []struct{ ID string } `json:"members"`
		Healthy bool                  `json:"healthy"`
	}
	require.NoError(t, dec.Decode(&after), "not /v1/cluster's JSON:\n%s", out)
	require.Len(t, after.Members, 2, "a1's /v1/cluster still lists a3:\n%s", out)
	require.True(t, after.Healthy, "a1 is not healthy:\n%s", out)
	var health map[string]string
	require.NoError(t, dec.Decode(&health), "not /healthz's JSON:\n%s", out)
	require.Equal(t, "removed", health["status"], "a3's /healthz:\n%s", out)

	resp, err = http.Post("http://127.0.0.1:8091/queue", "application/x-www-form-urlencoded", strings.NewReader("task.url=http://localhost:9099/worker&shrunk=yes"))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	w.waitFor(t, "POST /worker shrunk=yes", 30*time.Second)
}
