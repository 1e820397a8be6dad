package main

import (
	"io"
	"net"
	"sync"
	"time"
)

// Mode is what a Proxy does with traffic.
type Mode int

const (
	// Pass forwards bytes both ways.
	Pass Mode = iota
	// Refuse resets every connection (RST) and every new one at once: a peer that
	// is down, or a firewall that rejects.
	Refuse
	// Blackhole accepts new connections and drops what they carry, and freezes the
	// ones already forwarding (their bytes wait, as TCP's retransmissions would,
	// until the link passes again): a silent partition.
	Blackhole
)

func (m Mode) String() string {
	switch m {
	case Pass:
		return "pass"
	case Refuse:
		return "refuse"
	case Blackhole:
		return "blackhole"
	}
	return "mode?"
}

// dialTimeout bounds the proxy's connection to its target.
const dialTimeout = 2 * time.Second

// Proxy is one directed peer link: it forwards each connection it is handed (by the
// Door of the link's target, or by its own listener) to its target (a node's peer
// port). SetMode changes what it does, for the connections open and the ones to
// come. It never sends anything beyond loopback: it listens on 127.0.0.1, if at all,
// and its target is a node of this run.
type Proxy struct {
	ln     net.Listener // nil for a link fed by a Door
	target string
	// toTarget and fromTarget delay every chunk going to the target or coming back
	// from it by that long (zero: no delay): a slow link. Set before the first
	// connection, never changed.
	toTarget, fromTarget time.Duration

	mu      sync.Mutex
	mode    Mode
	changed chan struct{} // closed and replaced whenever mode changes
	conns   map[*proxyConn]struct{}
	closed  bool
	wg      sync.WaitGroup
}

// proxyConn is one accepted connection and, once dialled, its upstream.
type proxyConn struct {
	down net.Conn
	up   net.Conn // nil for a connection accepted while blackholed
}

// NewProxy listens on 127.0.0.1 on a free port and forwards to target.
func NewProxy(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := newLinkProxy(target)
	p.ln = ln
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// newLinkProxy is a proxy without a listener of its own: a Door hands it the
// connections of its link.
func newLinkProxy(target string) *Proxy {
	return &Proxy{target: target, changed: make(chan struct{}), conns: map[*proxyConn]struct{}{}}
}

// Addr is where the proxy listens.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Handle serves one connection accepted elsewhere, as if the proxy had accepted it.
func (p *Proxy) Handle(c net.Conn) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		(&proxyConn{down: c}).reset()
		return
	}
	p.wg.Add(1)
	p.mu.Unlock()
	go p.serve(c)
}

// Mode is what the proxy does now.
func (p *Proxy) Mode() Mode {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode
}

// SetMode changes what the proxy does. Refuse resets every open connection. Going
// from Blackhole to Pass resets the connections accepted while blackholed (they
// were never forwarded, so their dialer must start again) and lets the frozen ones
// flow again.
func (p *Proxy) SetMode(m Mode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mode == m || p.closed {
		return
	}
	p.mode = m
	close(p.changed)
	p.changed = make(chan struct{})
	for c := range p.conns {
		if m == Refuse || (m == Pass && c.up == nil) {
			c.reset()
			delete(p.conns, c)
		}
	}
}

// Close stops listening, resets every connection and waits for the proxy's
// goroutines to end.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.reset()
		delete(p.conns, c)
	}
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
	}
	p.wg.Wait()
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

// serve handles one accepted connection as the mode says at the moment it came.
func (p *Proxy) serve(down net.Conn) {
	defer p.wg.Done()
	pc := &proxyConn{down: down}
	switch p.Mode() {
	case Refuse:
		pc.reset()
		return
	case Blackhole:
		if p.track(pc) {
			io.Copy(io.Discard, down) // until reset by SetMode or Close, or the dialer gives up
			p.untrack(pc)
		}
		return
	}
	up, err := net.DialTimeout("tcp", p.target, dialTimeout)
	if err != nil {
		pc.reset() // the node is down: its dialer sees what a refused dial looks like
		return
	}
	pc.up = up
	if !p.track(pc) {
		return
	}
	var pipes sync.WaitGroup
	pipes.Add(2)
	go func() { defer pipes.Done(); p.pipe(pc, up, down, p.toTarget) }()
	go func() { defer pipes.Done(); p.pipe(pc, down, up, p.fromTarget) }()
	pipes.Wait()
	p.untrack(pc)
}

// track registers pc; false (and pc reset) when the proxy closed or started
// refusing meanwhile.
func (p *Proxy) track(pc *proxyConn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.mode == Refuse {
		pc.reset()
		return false
	}
	p.conns[pc] = struct{}{}
	return true
}

func (p *Proxy) untrack(pc *proxyConn) {
	p.mu.Lock()
	delete(p.conns, pc)
	p.mu.Unlock()
	pc.reset()
}

// pipe copies from src to dst, holding each chunk while the proxy blackholes (the
// bytes are delayed, never dropped or reordered). It ends, resetting both sides,
// when either side ends or the proxy refuses or closes. With a delay, each chunk
// is written that long after it was read.
func (p *Proxy) pipe(pc *proxyConn, dst, src net.Conn, delay time.Duration) {
	if delay > 0 {
		p.slowPipe(pc, dst, src, delay)
		return
	}
	defer pc.reset()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.waitPass() {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// chunk is bytes read at a moment, for slowPipe.
type chunk struct {
	b  []byte
	at time.Time
}

// slowPipe is pipe with a fixed latency: a reader stamps each chunk as it comes
// and a writer sends it delay after its stamp, so the link keeps its throughput
// and its order (a frame is late, not the ones behind it twice as late).
func (p *Proxy) slowPipe(pc *proxyConn, dst, src net.Conn, delay time.Duration) {
	defer pc.reset()
	chunks := make(chan chunk, 1024)
	done := make(chan struct{})
	go func() {
		defer close(chunks)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				select {
				case chunks <- chunk{buf[:n], time.Now()}:
				case <-done:
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	defer close(done)
	for c := range chunks {
		if wait := time.Until(c.at.Add(delay)); wait > 0 {
			time.Sleep(wait)
		}
		if !p.waitPass() {
			return
		}
		if _, err := dst.Write(c.b); err != nil {
			return
		}
	}
}

// waitPass blocks while the proxy blackholes; false when it refuses or is closed.
func (p *Proxy) waitPass() bool {
	for {
		p.mu.Lock()
		mode, closed, changed := p.mode, p.closed, p.changed
		p.mu.Unlock()
		switch {
		case closed || mode == Refuse:
			return false
		case mode == Pass:
			return true
		}
		<-changed
	}
}

// reset closes both sides with an RST (linger 0), so the peer sees a refusal rather
// than an orderly end. Closing twice is harmless.
func (c *proxyConn) reset() {
	for _, conn := range []net.Conn{c.down, c.up} {
		if conn == nil {
			continue
		}
		if tc, ok := conn.(interface{ SetLinger(int) error }); ok {
			tc.SetLinger(0)
		}
		conn.Close()
	}
}
