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
	// SlowLink delays every byte into node 0 (n1) by this long: what others send it
	// on their links, and what comes back to it on its own (zero: no delay).
	SlowLink time.Duration
	Log      io.Writer
}

// Cluster is real `miyamoto serve` processes on loopback, each peer link through
// its own Proxy. Every node is told that node j lives at j's Door (--peers, and
// j's own --peer-advertise), which hands each connection to the Proxy of its
// directed link, which forwards to j's peer port; so cutting the link i→j is one
// SetMode, before and after a roster change. Nodes started to replace others (Join)
// get the next index; a replaced node is retired: never started again.
type Cluster struct {
	cfg ClusterConfig

	mu      sync.Mutex
	nodes   []*nodeProc
	doors   []*Door
	links   map[Link]*Proxy // made when a link is first dialled or cut
	retired map[int]bool
	ready   map[int]bool // members the load and the drain use: started at the beginning, or joined
	closed  bool

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

// NewCluster picks the ports, opens the doors, and prepares (but does not start)
// the nodes.
func NewCluster(cfg ClusterConfig) (*Cluster, error) {
	c := &Cluster{cfg: cfg, links: map[Link]*Proxy{}, retired: map[int]bool{}, ready: map[int]bool{}}
	for i := 0; i < cfg.Nodes; i++ {
		if _, err := c.addNode(); err != nil {
			c.Close()
			return nil, err
		}
		c.ready[i] = true
	}
	for i, n := range c.nodes {
		n.args = c.serveArgs(i, c.peersFlag())
	}
	return c, nil
}

// addNode picks node len(c.nodes)'s ports and opens its door.
func (c *Cluster) addNode() (int, error) {
	addrs, err := freeAddrs(2)
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	i := len(c.nodes)
	c.mu.Unlock()
	door, err := NewDoor(i, c.link)
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nodes = append(c.nodes, &nodeProc{name: nodeName(i), httpAddr: addrs[0], peerAddr: addrs[1],
		logPath: filepath.Join(c.cfg.Dir, nodeName(i)+".log")})
	c.doors = append(c.doors, door)
	return i, nil
}

// link is the proxy of the directed link from → to, made on first use; nil when
// either end is not a node of this run or the cluster is closed.
func (c *Cluster) link(from, to int) *Proxy {
	c.mu.Lock()
	defer c.mu.Unlock()
	if from < 0 || to < 0 || from >= len(c.nodes) || to >= len(c.nodes) || from == to || c.closed {
		return nil
	}
	l := Link{from, to}
	if c.links[l] == nil {
		p := newLinkProxy(c.nodes[to].peerAddr)
		if to == 0 {
			p.toTarget = c.cfg.SlowLink
		}
		if from == 0 {
			p.fromTarget = c.cfg.SlowLink
		}
		c.links[l] = p
	}
	return c.links[l]
}

// peersFlag is --peers of the first nodes: each at its door.
func (c *Cluster) peersFlag() string {
	var peers []string
	for j, n := range c.nodes {
		peers = append(peers, n.name+"="+c.doors[j].Addr())
	}
	return strings.Join(peers, ",")
}

// serveArgs are node i's flags: its own peer port, announced as its door, and
// either every first node at its door (peers) or the member to join through.
func (c *Cluster) serveArgs(i int, peers string, join ...string) []string {
	n := c.nodes[i]
	args := []string{"serve", "--node-id", n.name, "--http-addr", n.httpAddr, "--peer-addr", n.peerAddr,
		"--peer-advertise", c.doors[i].Addr(), "--data-dir", filepath.Join(c.cfg.Dir, n.name),
		"--cluster-secret", c.cfg.Secret, "--lease", c.cfg.Lease.String(), "--max-clock-drift", c.cfg.Drift.String(),
		"--replica-offset", c.cfg.ReplicaOffset.String(), "--shutdown-timeout", "2s"}
	if len(join) > 0 {
		return append(args, "--join", join[0])
	}
	return append(args, "--peers", peers)
}

// Join prepares a new node that joins the cluster through member via's API, and
// starts it; it is not ready (for the load and the drain) until MarkReady.
func (c *Cluster) Join(via int) (int, error) {
	i, err := c.addNode()
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	c.nodes[i].args = c.serveArgs(i, "", c.nodes[via].httpAddr)
	c.mu.Unlock()
	return i, c.Start(i)
}

// Retire kills node i for good: Heal never starts it again, and the load and the
// drain leave it out.
func (c *Cluster) Retire(i int) error {
	c.mu.Lock()
	c.retired[i], c.ready[i] = true, false
	c.mu.Unlock()
	return c.Kill(i)
}

// MarkReady makes node i one the load sends to and the drain asks.
func (c *Cluster) MarkReady(i int) {
	c.mu.Lock()
	c.ready[i] = true
	c.mu.Unlock()
}

// Members are the ready nodes, in index order.
func (c *Cluster) Members() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []int
	for i := range c.nodes {
		if c.ready[i] {
			out = append(out, i)
		}
	}
	return out
}

// MemberURLs are the ready nodes' APIs, for the load.
func (c *Cluster) MemberURLs() []string {
	var out []string
	for _, i := range c.Members() {
		out = append(out, c.URL(i))
	}
	return out
}

// node is node i.
func (c *Cluster) node(i int) *nodeProc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i]
}

// LogPaths are every node's log file, replaced nodes' included.
func (c *Cluster) LogPaths() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.logPath
	}
	return out
}

// Len is how many nodes were ever made.
func (c *Cluster) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.nodes)
}

// URL is node i's API.
func (c *Cluster) URL(i int) string { return "http://" + c.node(i).httpAddr }

// Start starts node i's process, unless one runs.
func (c *Cluster) Start(i int) error {
	n := c.node(i)
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
	n := c.node(i)
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.running()
}

// reapTimeout bounds the wait for a killed process to be reaped.
const reapTimeout = 10 * time.Second

// Kill sends SIGKILL to node i's process, by its PID, and waits until it is reaped.
func (c *Cluster) Kill(i int) error {
	n := c.node(i)
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
	n := c.node(i)
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
		if p := c.link(l.From, l.To); p != nil {
			p.SetMode(m)
		}
	}
}

// Heal lets every link pass, continues every paused node and starts every node
// that is not running, but a retired one.
func (c *Cluster) Heal() error {
	c.mu.Lock()
	var links []*Proxy
	for _, p := range c.links {
		links = append(links, p)
	}
	c.mu.Unlock()
	for _, p := range links {
		p.SetMode(Pass)
	}
	var errs []error
	for i := range c.Len() {
		c.mu.Lock()
		retired := c.retired[i]
		c.mu.Unlock()
		if !retired {
			errs = append(errs, c.Continue(i), c.Start(i))
		}
	}
	return errors.Join(errs...)
}

// portTaken reports whether a node's log says its port was taken.
func (c *Cluster) portTaken() bool {
	c.mu.Lock()
	nodes := append([]*nodeProc(nil), c.nodes...)
	c.mu.Unlock()
	for _, n := range nodes {
		if b, err := os.ReadFile(n.logPath); err == nil && strings.Contains(string(b), "address already in use") {
			return true
		}
	}
	return false
}

// healthPoll is how often WaitHealthy asks.
const healthPoll = 200 * time.Millisecond

// WaitHealthy waits until every member's /healthz answers 200, or ctx ends.
func (c *Cluster) WaitHealthy(ctx context.Context) error {
	for _, i := range c.Members() {
		if err := c.WaitNodeHealthy(ctx, i); err != nil {
			return err
		}
	}
	return nil
}

// WaitNodeHealthy waits until node i's /healthz answers 200, or ctx ends.
func (c *Cluster) WaitNodeHealthy(ctx context.Context, i int) error {
	client := httpClient(time.Second)
	n := c.node(i)
	for {
		if healthy(ctx, client, c.URL(i)) {
			return nil
		}
		if !c.Running(i) {
			return fmt.Errorf("%s exited while starting (see %s)", n.name, n.logPath)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not healthy in time (see %s)", n.name, n.logPath)
		case <-time.After(healthPoll):
		}
	}
}

// Close kills every node process still running, by PID (continuing a paused one is
// not needed: SIGKILL ends a stopped process), and stops the proxies. It is safe to
// call more than once.
func (c *Cluster) Close() error {
	var errs []error
	for i := range c.Len() {
		errs = append(errs, c.Kill(i))
	}
	c.mu.Lock()
	c.closed = true
	doors, links := append([]*Door(nil), c.doors...), c.links
	c.links = map[Link]*Proxy{}
	c.mu.Unlock()
	for _, d := range doors {
		d.Close()
	}
	for _, p := range links {
		p.Close()
	}
	return errors.Join(errs...)
}

// PIDs are the process IDs of the nodes started so far, the latest of each.
func (c *Cluster) PIDs() []int {
	c.mu.Lock()
	nodes := append([]*nodeProc(nil), c.nodes...)
	c.mu.Unlock()
	var out []int
	for _, n := range nodes {
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
	c.mu.Lock()
	nodes := append([]*nodeProc(nil), c.nodes...)
	c.mu.Unlock()
	out := make([]int, len(nodes))
	for i, n := range nodes {
		n.mu.Lock()
		out[i] = n.starts
		n.mu.Unlock()
	}
	return out
}
