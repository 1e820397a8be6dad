package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ClusterConfig is how the nodes of a run are started.
type ClusterConfig struct {
	Binary        string // the miyamoto binary
	Dir           string // each node's data directory and log file go here
	Nodes         int
	Lease         time.Duration
	Drift         time.Duration
	ReplicaOffset time.Duration
	Secret        string // --cluster-secret, the same on every node
	Log           io.Writer
}

// Cluster is N real `miyamoto serve` processes on loopback, each peer link through
// its own Proxy. Node i reaches node j at proxies[i][j], which forwards to j's peer
// port; so cutting the link i→j is one SetMode.
type Cluster struct {
	cfg     ClusterConfig
	nodes   []*nodeProc
	proxies [][]*Proxy // [from][to]; nil on the diagonal

	exitsMu sync.Mutex
	exits   []string // processes that ended without being killed: a crash, or a refusal to start
}

// nodeProc is one node: its fixed addresses and arguments, and its process while
// one runs.
type nodeProc struct {
	name      string
	httpAddr  string
	peerAddr  string
	args      []string
	logPath   string
	mu        sync.Mutex
	cmd       *exec.Cmd
	exited    chan struct{} // closed when cmd's process was reaped
	killed    *atomic.Bool  // set before cmd's process is sent SIGKILL
	paused    bool
	starts    int
	lastStart time.Time
}

// freeAddrs reserves n loopback ports by listening on them, then frees them for the
// nodes to take (a port another process takes meanwhile fails that node's start:
// startCluster then tries again on new ports).
func freeAddrs(n int) ([]string, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	out := make([]string, n)
	for i := range out {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		out[i] = ln.Addr().String()
	}
	return out, nil
}

// NewCluster picks the ports, starts the proxies, and prepares (but does not start)
// the nodes.
func NewCluster(cfg ClusterConfig) (*Cluster, error) {
	addrs, err := freeAddrs(2 * cfg.Nodes)
	if err != nil {
		return nil, err
	}
	c := &Cluster{cfg: cfg}
	for i := 0; i < cfg.Nodes; i++ {
		c.nodes = append(c.nodes, &nodeProc{name: nodeName(i), httpAddr: addrs[2*i], peerAddr: addrs[2*i+1],
			logPath: filepath.Join(cfg.Dir, nodeName(i)+".log")})
	}
	c.proxies = make([][]*Proxy, cfg.Nodes)
	for i := range c.proxies {
		c.proxies[i] = make([]*Proxy, cfg.Nodes)
		for j := range c.proxies[i] {
			if i == j {
				continue
			}
			p, err := NewProxy(c.nodes[j].peerAddr)
			if err != nil {
				c.Close()
				return nil, err
			}
			c.proxies[i][j] = p
		}
	}
	for i, n := range c.nodes {
		n.args = c.serveArgs(i)
	}
	return c, nil
}

// serveArgs are node i's flags: its own peer port, every other node at the proxy of
// the link from i to it.
func (c *Cluster) serveArgs(i int) []string {
	var peers []string
	for j, n := range c.nodes {
		addr := n.peerAddr
		if j != i {
			addr = c.proxies[i][j].Addr()
		}
		peers = append(peers, n.name+"="+addr)
	}
	n := c.nodes[i]
	return []string{"serve", "--node-id", n.name, "--http-addr", n.httpAddr, "--peer-addr", n.peerAddr,
		"--peers", strings.Join(peers, ","), "--data-dir", filepath.Join(c.cfg.Dir, n.name),
		"--cluster-secret", c.cfg.Secret, "--lease", c.cfg.Lease.String(), "--max-clock-drift", c.cfg.Drift.String(),
		"--replica-offset", c.cfg.ReplicaOffset.String(), "--shutdown-timeout", "2s"}
}

// URL is node i's API.
func (c *Cluster) URL(i int) string { return "http://" + c.nodes[i].httpAddr }

// Start starts node i's process, unless one runs.
func (c *Cluster) Start(i int) error {
	n := c.nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.running() {
		return nil
	}
	logFile, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close() // the child holds its own descriptor
	fmt.Fprintf(logFile, "=== chaos: start %d of %s at %s\n", n.starts+1, n.name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(c.cfg.Binary, n.args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = childAttrs()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", n.name, err)
	}
	n.cmd, n.exited, n.killed, n.paused = cmd, make(chan struct{}), new(atomic.Bool), false
	n.starts++
	n.lastStart = time.Now()
	exited, killed := n.exited, n.killed
	go func() {
		err := cmd.Wait()
		if !killed.Load() {
			c.exitsMu.Lock()
			c.exits = append(c.exits, fmt.Sprintf("%s (pid %d) exited by itself at %s: %v (see %s)", n.name, cmd.Process.Pid, time.Now().Format("15:04:05.000"), err, n.logPath))
			c.exitsMu.Unlock()
		}
		close(exited)
	}()
	return nil
}

// UnexpectedExits lists the node processes that ended without being killed.
func (c *Cluster) UnexpectedExits() []string {
	c.exitsMu.Lock()
	defer c.exitsMu.Unlock()
	return append([]string(nil), c.exits...)
}

// running tells whether n has a process that has not exited; n.mu is held.
func (n *nodeProc) running() bool {
	if n.cmd == nil {
		return false
	}
	select {
	case <-n.exited:
		return false
	default:
		return true
	}
}

// Running tells whether node i's process is alive (paused counts as alive).
func (c *Cluster) Running(i int) bool {
	n := c.nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.running()
}

// reapTimeout bounds the wait for a killed process to be reaped.
const reapTimeout = 10 * time.Second

// Kill sends SIGKILL to node i's process, by its PID, and waits until it is reaped.
func (c *Cluster) Kill(i int) error {
	n := c.nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.running() {
		return nil
	}
	pid := n.cmd.Process.Pid
	n.killed.Store(true)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill -9 %s (pid %d): %w", n.name, pid, err)
	}
	select {
	case <-n.exited:
		n.paused = false
		return nil
	case <-time.After(reapTimeout):
		return fmt.Errorf("%s (pid %d) not reaped %s after kill -9", n.name, pid, reapTimeout)
	}
}

// Pause sends SIGSTOP to node i; Continue sends SIGCONT.
func (c *Cluster) Pause(i int) error { return c.signal(i, syscall.SIGSTOP, true) }

// Continue lets a paused node i run again.
func (c *Cluster) Continue(i int) error { return c.signal(i, syscall.SIGCONT, false) }

func (c *Cluster) signal(i int, sig syscall.Signal, paused bool) error {
	n := c.nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.running() || n.paused == paused {
		return nil
	}
	if err := syscall.Kill(n.cmd.Process.Pid, sig); err != nil {
		return fmt.Errorf("%s %s (pid %d): %w", sig, n.name, n.cmd.Process.Pid, err)
	}
	n.paused = paused
	return nil
}

// SetLinks sets the mode of the given directed links.
func (c *Cluster) SetLinks(links []Link, m Mode) {
	for _, l := range links {
		c.proxies[l.From][l.To].SetMode(m)
	}
}

// Heal lets every link pass, continues every paused node and starts every node
// that is not running.
func (c *Cluster) Heal() error {
	for i := range c.proxies {
		for _, p := range c.proxies[i] {
			if p != nil {
				p.SetMode(Pass)
			}
		}
	}
	var errs []error
	for i := range c.nodes {
		errs = append(errs, c.Continue(i), c.Start(i))
	}
	return errors.Join(errs...)
}

// portTaken reports whether a node's log says its port was taken.
func (c *Cluster) portTaken() bool {
	for _, n := range c.nodes {
		if b, err := os.ReadFile(n.logPath); err == nil && strings.Contains(string(b), "address already in use") {
			return true
		}
	}
	return false
}

// healthPoll is how often WaitHealthy asks.
const healthPoll = 200 * time.Millisecond

// WaitHealthy waits until every node's /healthz answers 200, or ctx ends.
func (c *Cluster) WaitHealthy(ctx context.Context) error {
	client := httpClient(time.Second)
	for i := range c.nodes {
		for {
			if healthy(ctx, client, c.URL(i)) {
				break
			}
			if !c.Running(i) {
				return fmt.Errorf("%s exited while starting (see %s)", c.nodes[i].name, c.nodes[i].logPath)
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s not healthy in time (see %s)", c.nodes[i].name, c.nodes[i].logPath)
			case <-time.After(healthPoll):
			}
		}
	}
	return nil
}

// Close kills every node process still running, by PID (continuing a paused one is
// not needed: SIGKILL ends a stopped process), and stops the proxies. It is safe to
// call more than once.
func (c *Cluster) Close() error {
	var errs []error
	for i := range c.nodes {
		errs = append(errs, c.Kill(i))
	}
	for i := range c.proxies {
		for _, p := range c.proxies[i] {
			if p != nil {
				p.Close()
			}
		}
	}
	return errors.Join(errs...)
}

// PIDs are the process IDs of the nodes started so far, the latest of each.
func (c *Cluster) PIDs() []int {
	var out []int
	for _, n := range c.nodes {
		n.mu.Lock()
		if n.cmd != nil {
			out = append(out, n.cmd.Process.Pid)
		}
		n.mu.Unlock()
	}
	return out
}

// Starts is how many times each node's process was started.
func (c *Cluster) Starts() []int {
	out := make([]int, len(c.nodes))
	for i, n := range c.nodes {
		n.mu.Lock()
		out[i] = n.starts
		n.mu.Unlock()
	}
	return out
}
