// Package peer is the TCP transport between Miyamoto nodes: it implements
// node.Network for the real daemon, carrying wire frames over one persistent
// outbound connection per peer.
//
//	t, err := peer.New(cfg, deliver) // deliver posts each inbound message to the node's goroutine
//	err = t.Start()                  // listen, start one sender per peer
//	t.Send(m)                        // from the node's goroutine; never blocks
//	t.Flush(ctx)                     // at shutdown: let the queues drain
//	t.Close()                        // stop everything and wait for it
//
// Each peer has a bounded queue and a sender goroutine that dials it, says hello
// (magic "MIYA", wire.Version, length-prefixed sender ID), and writes every message
// queued at that moment as one batch with a single write. It reconnects with
// exponential backoff and jitter. Inbound connections are read by one goroutine each,
// which checks the hello and calls deliver for every frame (NewBatched: once for each
// run of frames that arrived together, so the node wakes once per batch).
//
// # Heartbeats and reachability
//
// Frames flow one way on a connection, from dialer to acceptor. The other way, once the
// handshake is over, the acceptor writes one heartbeat byte (0) every
// Config.Heartbeat, and nothing else. A dialer that has heard no heartbeat from a
// peer for Config.Silence counts it unreachable (Reachable): the peer is down,
// paused (SIGSTOP), or cut off by the network, which a connection alone does not
// tell (a paused process's kernel still accepts connections and buffers writes).
// The heartbeat rides on the connection that carries our messages, so it proves
// both directions. A connection that breaks and comes back at once does not make
// the peer flap: only Silence without a heartbeat does.
//
// # Cluster secret
//
// With Config.ClusterSecret set, the two ends of every connection prove to each other
// that they know the secret before any frame is sent (D dials, A accepts; proofs are
// HMAC-SHA256 under the secret, nonces 32 bytes from crypto/rand):
//
//	D→A  "MIYS" wire.Version len(D) D len(A) A nD    hello: who D is, whom it expects, D's nonce
//	A→D  "MIYC" nA                                   challenge: A's nonce
//	D→A  HMAC(dialer label, version, D, A, nD, nA)   D's proof
//	A→D  "MIYK" HMAC(acceptor label, same fields)    A's verdict and proof
//	D→A  frames, as without a secret
//
// A checks D's proof with hmac.Equal before it reads a frame, and D checks A's before
// it writes one, so a node neither accepts messages from nor sends tasks to a process
// that does not know the secret. Each proof covers the other side's fresh nonce, so a
// recorded handshake cannot be replayed, and a label, so one side's proof never passes
// for the other's. Instead of a challenge or a verdict A may send "MIYN" and a reason
// byte (bad secret, secret expected, no secret here, wrong node) and close; so a
// mismatch, one side with a secret and the other without included, fails on both
// sides with a clear error: the acceptor counts it in RefusedConns and logs it, the
// dialer records it in LastError, logs it and backs off. Both sides bound the whole
// handshake by the hello timeout. Without a secret the bytes on the wire are those of
// a build without this feature.
//
// The secret authenticates peers; it does not encrypt, and it does not protect the
// stream after the handshake: an attacker on the network path can still read every
// message and inject or alter frames in an established connection. Every node
// holding the secret can claim any node ID. When the network is not trusted, set
// Config.TLS (see tls.go): mutual TLS 1.3, each certificate naming its node ID.
//
// # Members only
//
// An acceptor takes a hello only from a node of Config.Peers: any other ID is refused
// with a reason the dialer reads ("MIYN" and the not-member byte), counted in
// NotMember, and leaves no state behind, so the counters (and the metrics made of
// them) stay bounded by the roster. Without a cluster secret the ID in a hello is
// only a claim: anyone who can reach the port can claim a member's. Warnings about
// refused or broken inbound connections are limited to one line per remote host per
// minute; the next line says how many were suppressed.
//
// The transport is lossy by design, as node.Network allows: a message is dropped
// (and counted in Stats) when its peer's queue is full, when its peer is unknown, when
// its frame exceeds wire.MaxFrame, or when the connection breaks while it is being
// written. Messages from one sender to one receiver arrive in the order sent while a
// connection lasts; around a reconnection the tail of the old connection may still be
// read after the head of the new one.
//
// What this package must never do: block in Send, call into the node other than
// through deliver, trust what arrives (frames are bounded by wire.MaxFrame, a bad
// hello or frame closes that connection and nothing else), or leave a goroutine or
// connection behind after Close.
package peer

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miyamotohq/miyamoto/net/wire"
	"github.com/miyamotohq/miyamoto/node"
)

var _ node.Network = (*Transport)(nil)

// Defaults for Config fields left zero.
const (
	DefaultQueueSize   = 4096
	DefaultDialTimeout = 2 * time.Second
	DefaultMinBackoff  = 50 * time.Millisecond
	DefaultMaxBackoff  = 2 * time.Second
	DefaultMaxAge      = 5 * time.Second
	DefaultHeartbeat   = 500 * time.Millisecond
	DefaultSilence     = 2 * time.Second
)

const (
	// helloMagic opens every connection of a dialer without a cluster secret (see
	// auth.go for the other messages).
	helloMagic = "MIYA"
	// heartbeatByte is what an acceptor writes to its dialer every Config.Heartbeat.
	// It cannot start refuseMagic, the only other thing it writes after the handshake.
	heartbeatByte = 0
	// maxIDLen bounds a node ID so that it fits the hello's one-byte length.
	maxIDLen = 255
	// helloTimeout bounds how long an inbound connection may take to say hello, and
	// with a cluster secret the whole handshake on both sides.
	helloTimeout = 5 * time.Second
	// writeTimeout bounds one batch write; a peer that stops reading for this long
	// is treated as a broken connection.
	writeTimeout = 10 * time.Second
	// maxBatchBytes ends a batch early so that one write stays reasonably sized.
	maxBatchBytes = 256 << 10
	// keepBufBytes is the largest batch buffer kept between batches.
	keepBufBytes = 1 << 20
	// readBufBytes sizes each inbound connection's read buffer.
	readBufBytes = 64 << 10
)

// ErrClosed is returned by Start after Close.
var ErrClosed = errors.New("peer: transport closed")

// Config configures a Transport. Zero values take the documented defaults.
type Config struct {
	// Self is this node's ID, sent in the hello of every outbound connection.
	Self node.NodeID
	// Listen is the host:port to accept peers on (port 0 picks one; see Addr).
	Listen string
	// Peers maps each peer's ID to its host:port. An entry for Self is ignored.
	Peers map[node.NodeID]string
	// QueueSize is the per-peer outbound queue, in messages. Default 4096.
	QueueSize int
	// DialTimeout bounds one connection attempt. Default 2s.
	DialTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between connection attempts to one
	// peer; it doubles after each failure, with jitter. Defaults 50ms and 2s.
	MinBackoff, MaxBackoff time.Duration
	// MaxAge drops a queued message that waited longer than this to be written (a
	// peer that was unreachable for a while gets no stale backlog). The protocol
	// relies on it: a node that restarts without durable state assumes no message
	// older than its recovery wait arrives. Default 5s.
	MaxAge time.Duration
	// Logger receives connection events. Default: discard.
	Logger *slog.Logger
	// ClusterSecret, when not empty, makes every connection start with a handshake in
	// which both ends prove they know it (see the package doc); a peer that does not
	// is refused. Every node of a cluster needs the same secret, of at least
	// MinClusterSecretLen bytes; make it random (say 32 bytes from crypto/rand,
	// hex-encoded), not a password. Empty: no authentication, and the wire is exactly
	// that of a build without this field. New keeps a copy.
	ClusterSecret []byte
	// TLS, when set, makes every peer connection TLS 1.3 with mutual authentication
	// (see tls.go): Certificates holds this node's certificate, whose DNS
	// subjectAltNames include its node ID, and RootCAs the CA that signed every
	// node's. New keeps a copy.
	TLS *tls.Config
	// Heartbeat is how often the acceptor of a connection tells its dialer that it is
	// alive (see the package doc). Default 500ms.
	Heartbeat time.Duration
	// Silence is how long without a heartbeat makes a peer unreachable; more than
	// Heartbeat. Default 2s.
	Silence time.Duration
}

// queued is a message waiting for its peer, with the time Send took it.
type queued struct {
	m  node.Message
	at time.Time
}

// withDefaults returns c with every zero field set to its default, and every problem
// found, joined.
func (c Config) withDefaults() (Config, error) {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("peer: Config.%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if c.Self == "" {
		bad("Self", "empty")
	} else if len(c.Self) > maxIDLen {
		bad("Self", "longer than %d bytes", maxIDLen)
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("Listen", "%q is not host:port: %v", c.Listen, err)
	}
	for id, addr := range c.Peers {
		if id == c.Self {
			continue
		}
		if id == "" {
			bad("Peers", "empty node ID (address %q)", addr)
		} else if len(id) > maxIDLen {
			bad("Peers", "node ID %.20q... longer than %d bytes", id, maxIDLen)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			bad("Peers", "address %q of %s is not host:port: %v", addr, id, err)
		}
	}
	if c.QueueSize < 0 {
		bad("QueueSize", "%d is negative", c.QueueSize)
	} else if c.QueueSize == 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.DialTimeout < 0 {
		bad("DialTimeout", "%v is negative", c.DialTimeout)
	} else if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.MinBackoff < 0 {
		bad("MinBackoff", "%v is negative", c.MinBackoff)
	} else if c.MinBackoff == 0 {
		c.MinBackoff = DefaultMinBackoff
	}
	if c.MaxBackoff < 0 {
		bad("MaxBackoff", "%v is negative", c.MaxBackoff)
	} else if c.MaxBackoff == 0 {
		c.MaxBackoff = max(DefaultMaxBackoff, c.MinBackoff)
	}
	if c.MinBackoff > 0 && c.MaxBackoff > 0 && c.MinBackoff > c.MaxBackoff {
		bad("MaxBackoff", "%v is below MinBackoff %v", c.MaxBackoff, c.MinBackoff)
	}
	if c.MaxAge < 0 {
		bad("MaxAge", "%v is negative", c.MaxAge)
	} else if c.MaxAge == 0 {
		c.MaxAge = DefaultMaxAge
	}
	if c.Heartbeat < 0 {
		bad("Heartbeat", "%v is negative", c.Heartbeat)
	} else if c.Heartbeat == 0 {
		c.Heartbeat = DefaultHeartbeat
	}
	if c.Silence < 0 {
		bad("Silence", "%v is negative", c.Silence)
	} else if c.Silence == 0 {
		c.Silence = max(DefaultSilence, 4*c.Heartbeat)
	}
	if c.Heartbeat > 0 && c.Silence > 0 && c.Silence <= c.Heartbeat {
		bad("Silence", "%v is not above Heartbeat %v: every peer would flap", c.Silence, c.Heartbeat)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if n := len(c.ClusterSecret); n > 0 && n < MinClusterSecretLen {
		bad("ClusterSecret", "%d bytes, fewer than %d", n, MinClusterSecretLen)
	}
	c.ClusterSecret = bytes.Clone(c.ClusterSecret)
	return c, errors.Join(errs...)
}

// Stats is a snapshot of a Transport's counters.
type Stats struct {
	// Peers has an entry for every configured peer, and only those: a hello naming
	// another node is refused (NotMember), so the map stays bounded by the roster.
	Peers map[node.NodeID]PeerStats
	// UnknownPeer counts messages sent to a node that is not in Config.Peers
	// (this node included), all dropped.
	UnknownPeer uint64
	// RefusedConns counts inbound connections closed for a bad hello, handshake or
	// frame.
	RefusedConns uint64
	// NotMember counts, among RefusedConns, hellos naming a node that is not one of
	// Config.Peers.
	NotMember uint64
}

// PeerStats are one peer's counters. Messages are counted, not bytes.
type PeerStats struct {
	Addr string
	// Sent counts messages written to a connection (not necessarily received).
	Sent uint64
	// Writes counts the batches those were written in, one write each: Sent/Writes
	// is the mean batch.
	Writes uint64
	// DroppedQueueFull counts messages Send dropped because the queue was full.
	DroppedQueueFull uint64
	// DroppedBroken counts messages lost in a batch whose write failed.
	DroppedBroken uint64
	// DroppedTooLarge counts messages whose frame exceeded wire.MaxFrame.
	DroppedTooLarge uint64
	// DroppedOld counts messages that waited longer than Config.MaxAge.
	DroppedOld uint64
	// Received counts messages read from connections whose hello named this peer.
	Received uint64
	// Queued is the number of messages waiting in the queue.
	Queued int
	// Connected reports whether the outbound connection is established.
	Connected bool
	// LastHeard is when the last heartbeat came from the peer (zero: never).
	LastHeard time.Time
	// LastError is the last dial, handshake or write error ("" when none yet).
	LastError string
}

// peer is the outbound side of one peer plus its counters.
type peer struct {
	id node.NodeID
	// addr is where it listens; AddPeer may change it (a member that came back
	// elsewhere), the next dial uses the new one.
	addr atomic.Pointer[string]
	q    chan queued

	sent, writes, droppedFull, droppedBroken, droppedLarge, droppedOld atomic.Uint64
	connected                                                          atomic.Bool
	// pending counts messages Send is queueing or has queued that are not yet
	// written or dropped; Flush waits for it to reach zero.
	pending atomic.Int64
	lastErr atomic.Pointer[string]
	// heard is the time (Unix nanoseconds) the last heartbeat came; 0: never.
	heard atomic.Int64
}

// lastHeard is when the last heartbeat came from p (zero: never).
func (p *peer) lastHeard() time.Time {
	if ns := p.heard.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

func (p *peer) setErr(err error) {
	s := err.Error()
	p.lastErr.Store(&s)
}

// Transport is a node.Network over TCP. Send may be called from any goroutine.
type Transport struct {
	cfg     Config
	deliver func([]node.Message)
	log     *slog.Logger
	// peers maps each peer's ID to it: a map never modified once stored (AddPeer
	// stores a copy with one more), so that Send reads it without a lock.
	peers atomic.Pointer[map[node.NodeID]*peer]

	unknownPeer  atomic.Uint64
	refusedConns atomic.Uint64
	notMember    atomic.Uint64
	warns        *warnLimiter // inbound connections' warnings, per remote host
	closed       atomic.Bool
	done         chan struct{}   // closed by Close
	ctx          context.Context // cancelled by Close, for dials
	cancel       context.CancelFunc
	helloTimeout time.Duration // helloTimeout, shortened by tests
	serverTLS    *tls.Config   // with Config.TLS: the acceptor's and the dialer's (tls.go)
	clientTLS    *tls.Config

	mu       sync.Mutex
	started  bool
	ln       net.Listener
	conns    map[net.Conn]bool              // every open connection, both directions; true: dialed by us
	received map[node.NodeID]*atomic.Uint64 // by hello ID: members only, fixed at New
	wg       sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// New checks cfg and returns a Transport that is not yet running (see Start).
//
// deliver is called for every inbound message, from the goroutine reading that
// message's connection; several such goroutines may call it at once. It must be safe
// for concurrent use and return quickly: post the message to the node's goroutine and
// return. While deliver blocks, that connection is not read, TCP pushes back on its
// sender, and the sender's queue fills and drops. deliver is never called after
// Close returns.
func New(cfg Config, deliver func(node.Message)) (*Transport, error) {
	if deliver == nil {
		return NewBatched(cfg, nil)
	}
	return NewBatched(cfg, func(ms []node.Message) {
		for _, m := range ms {
			deliver(m)
		}
	})
}

// NewBatched is New with deliver called once for every run of messages that arrived
// together on one connection (at most maxDeliverBatch, in the order sent), so that
// the node's goroutine is woken once per run rather than once per message. deliver
// must not keep ms: the transport reuses it after deliver returns.
func NewBatched(cfg Config, deliver func(ms []node.Message)) (*Transport, error) {
	cfg, err := cfg.withDefaults()
	if deliver == nil {
		err = errors.Join(err, errors.New("peer: deliver is nil"))
	}
	var serverTLS, clientTLS *tls.Config
	if cfg.TLS != nil {
		var tlsErr error
		if serverTLS, clientTLS, tlsErr = tlsConfigs(cfg.TLS); tlsErr != nil {
			err = errors.Join(err, fmt.Errorf("peer: %w", tlsErr))
		}
	}
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	t := &Transport{
		serverTLS:    serverTLS,
		clientTLS:    clientTLS,
		cfg:          cfg,
		deliver:      deliver,
		log:          cfg.Logger.With("node", string(cfg.Self)),
		done:         make(chan struct{}),
		ctx:          ctx,
		cancel:       cancel,
		helloTimeout: helloTimeout,
		conns:        make(map[net.Conn]bool),
		received:     make(map[node.NodeID]*atomic.Uint64),
		warns:        newWarnLimiter(warnEvery, maxWarnHosts),
	}
	peers := make(map[node.NodeID]*peer, len(cfg.Peers))
	for id, addr := range cfg.Peers {
		if id == cfg.Self {
			continue
		}
		peers[id] = newPeer(id, addr, cfg.QueueSize)
		t.received[id] = new(atomic.Uint64)
	}
	t.peers.Store(&peers)
	return t, nil
}

func newPeer(id node.NodeID, addr string, queue int) *peer {
	p := &peer{id: id, q: make(chan queued, queue)}
	p.addr.Store(&addr)
	return p
}

// peerMap returns the peers now. The caller must not modify it.
func (t *Transport) peerMap() map[node.NodeID]*peer { return *t.peers.Load() }

// AddPeer makes id, at addr, a peer: messages for it are queued and sent, and its
// hello is accepted. A peer already known at another address is dialled at addr
// from its next connection on. It reports whether it added id or changed its
// address; an ID or address that Config would refuse is an error. After Close it
// does nothing.
func (t *Transport) AddPeer(id node.NodeID, addr string) (bool, error) {
	if id == t.cfg.Self {
		return false, nil
	}
	if id == "" || len(id) > maxIDLen {
		return false, fmt.Errorf("peer: node ID %.20q is empty or longer than %d bytes", id, maxIDLen)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return false, fmt.Errorf("peer: address %q of %s is not host:port: %v", addr, id, err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	old := t.peerMap()
	if t.closed.Load() {
		return false, nil
	}
	if p := old[id]; p != nil {
		if *p.addr.Load() == addr {
			return false, nil
		}
		p.addr.Store(&addr)
		t.log.Info("peer address changed", "peer", string(id), "addr", addr)
		return true, nil
	}
	peers := make(map[node.NodeID]*peer, len(old)+1)
	for k, v := range old {
		peers[k] = v
	}
	p := newPeer(id, addr, t.cfg.QueueSize)
	peers[id] = p
	t.received[id] = new(atomic.Uint64)
	t.peers.Store(&peers)
	if t.started {
		t.wg.Add(1)
		go t.runSender(p)
	}
	t.log.Info("peer added", "peer", string(id), "addr", addr)
	return true, nil
}

// Start listens on Config.Listen and starts one sender per peer. Messages sent
// before Start wait in their queues.
func (t *Transport) Start() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed.Load() {
		return ErrClosed
	}
	if t.started {
		return errors.New("peer: Start called twice")
	}
	ln, err := net.Listen("tcp", t.cfg.Listen)
	if err != nil {
		return fmt.Errorf("peer: listen on %s: %w", t.cfg.Listen, err)
	}
	if t.serverTLS != nil {
		ln = tls.NewListener(ln, t.serverTLS)
	}
	t.started = true
	t.ln = ln
	peers := t.peerMap()
	t.log.Info("peer transport listening", "addr", ln.Addr().String(), "peers", len(peers))
	t.wg.Add(1 + len(peers))
	go t.acceptLoop(ln)
	for _, p := range peers {
		go t.runSender(p)
	}
	return nil
}

// Addr returns the address the transport listens on, or nil before Start.
func (t *Transport) Addr() net.Addr {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ln == nil {
		return nil
	}
	return t.ln.Addr()
}

// Send queues m for m.To and returns at once. It drops m, counting it, when m.To is
// not a configured peer (this node included) or its queue is full; after Close it
// drops m silently.
func (t *Transport) Send(m node.Message) {
	if t.closed.Load() {
		return
	}
	p := t.peerMap()[m.To]
	if p == nil {
		t.unknownPeer.Add(1)
		return
	}
	p.pending.Add(1)
	select {
	case p.q <- queued{m: m, at: time.Now()}:
	default:
		p.droppedFull.Add(1)
		p.pending.Add(-1)
	}
}

// Flush waits until every message queued for a connected peer has been written or
// dropped, or until ctx is done (then it returns ctx.Err()). Peers that are not
// connected are not waited for. It is for a graceful shutdown: call it after the
// node's last sends and before Close, which discards whatever is still queued.
func (t *Transport) Flush(ctx context.Context) error {
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		idle := true
		for _, p := range t.peerMap() {
			if p.connected.Load() && p.pending.Load() > 0 {
				idle = false
				break
			}
		}
		if idle || t.closed.Load() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// Stats returns a snapshot of the counters.
func (t *Transport) Stats() Stats {
	peers := t.peerMap()
	s := Stats{
		Peers:        make(map[node.NodeID]PeerStats, len(peers)),
		UnknownPeer:  t.unknownPeer.Load(),
		RefusedConns: t.refusedConns.Load(),
		NotMember:    t.notMember.Load(),
	}
	for id, p := range peers {
		ps := PeerStats{
			Addr:             *p.addr.Load(),
			Sent:             p.sent.Load(),
			DroppedQueueFull: p.droppedFull.Load(),
			DroppedBroken:    p.droppedBroken.Load(),
			DroppedTooLarge:  p.droppedLarge.Load(),
			Queued:           len(p.q),
			DroppedOld:       p.droppedOld.Load(),
			Writes:           p.writes.Load(),
			Connected:        p.connected.Load(),
			LastHeard:        p.lastHeard(),
		}
		if e := p.lastErr.Load(); e != nil {
			ps.LastError = *e
		}
		s.Peers[id] = ps
	}
	t.mu.Lock()
	for id, c := range t.received {
		ps := s.Peers[id]
		ps.Received = c.Load()
		s.Peers[id] = ps
	}
	t.mu.Unlock()
	return s
}

// Reachable reports, for every configured peer, whether it answered lately: a
// heartbeat came on the connection to it within Config.Silence (see the package doc).
func (t *Transport) Reachable() map[node.NodeID]bool {
	peers := t.peerMap()
	r := make(map[node.NodeID]bool, len(peers))
	now := time.Now()
	for id, p := range peers {
		heard := p.lastHeard()
		r[id] = !heard.IsZero() && now.Sub(heard) < t.cfg.Silence
	}
	return r
}

// Close stops accepting, closes every connection, stops every goroutine and waits
// for them. Messages still queued are discarded. It is safe to call more than once
// and from several goroutines; later calls return the first call's result.
func (t *Transport) Close() error {
	t.closeOnce.Do(func() {
		t.mu.Lock()
		t.closed.Store(true)
		close(t.done)
		t.cancel()
		if t.ln != nil {
			if err := t.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
				t.closeErr = err
			}
		}
		for c, dialed := range t.conns {
			if tc, ok := c.(*net.TCPConn); ok && dialed {
				// The peer reads what we wrote, sees the end and closes its side.
				// Closing at once could reset the connection (a heartbeat that just
				// came is unread) and throw away what the peer has not read yet.
				tc.CloseWrite()
				continue
			}
			c.Close()
		}
		t.mu.Unlock()
		waited := make(chan struct{})
		go func() { t.wg.Wait(); close(waited) }()
		select {
		case <-waited:
		case <-time.After(closeLinger):
			t.mu.Lock()
			for c := range t.conns {
				c.Close()
			}
			t.mu.Unlock()
			<-waited
		}
		t.log.Info("peer transport closed")
	})
	return t.closeErr
}

// closeLinger is how long Close waits for peers to read what was written to them and
// close their side before it closes every connection.
const closeLinger = 2 * time.Second

// track registers c so that Close closes it (dialed: a connection we dialed, which
// carries our messages); it reports false (and closes c) when the transport is
// already closed.
func (t *Transport) track(c net.Conn, dialed bool) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed.Load() {
		c.Close()
		return false
	}
	t.conns[c] = dialed
	return true
}

func (t *Transport) untrack(c net.Conn) {
	c.Close()
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
}

// sleep waits d or until Close, and reports whether the transport is still open.
func (t *Transport) sleep(d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-t.done:
		return false
	}
}

// acceptLoop accepts inbound connections until Close.
func (t *Transport) acceptLoop(ln net.Listener) {
	defer t.wg.Done()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if t.closed.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off and keep serving.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			t.log.Warn("peer accept failed", "err", err, "retry_in", delay)
			if !t.sleep(delay) {
				return
			}
			continue
		}
		delay = 0
		if !t.track(c, false) {
			return
		}
		t.wg.Add(1)
		go t.serveConn(c)
	}
}

// serveConn reads one inbound connection: a hello (and with a cluster secret the rest
// of the handshake), then frames until it breaks.
func (t *Transport) serveConn(c net.Conn) {
	defer t.wg.Done()
	defer t.untrack(c)
	remote := c.RemoteAddr().String()
	r := bufio.NewReaderSize(c, readBufBytes)
	c.SetDeadline(time.Now().Add(t.helloTimeout))
	from, refusal, err := t.handshakeIn(c, r)
	if err != nil {
		if t.closed.Load() {
			return
		}
		t.refusedConns.Add(1)
		if suppressed, ok := t.warns.allow(remoteHost(c), time.Now()); ok {
			log := t.log.With("remote", remote)
			if from != "" {
				log = log.With("claims", string(from))
			}
			log.Warn("peer connection refused", "reason", err.Error(), "suppressed", suppressed)
		}
		if refusal != 0 {
			sendRefusal(c, r, refusal)
		}
		return
	}
	c.SetDeadline(time.Time{})
	stopBeats := make(chan struct{})
	defer close(stopBeats) // before untrack closes c: the heartbeats stop first
	t.wg.Add(1)
	go t.sendHeartbeats(c, stopBeats)
	recv := t.receivedFor(from)
	t.log.Debug("peer connected in", "from", string(from), "remote", remote, "authenticated", len(t.cfg.ClusterSecret) > 0)
	fr := wire.NewFrameReader(r)
	var batch []node.Message
	for {
		// Read one frame, waiting for it, then every whole frame already buffered
		// behind it: they were most likely written together, and go to the node as
		// one batch.
		batch, err = t.readBatch(fr, batch[:0], from)
		recv.Add(uint64(len(batch)))
		if len(batch) > 0 && !t.closed.Load() {
			t.deliver(batch)
		}
		clear(batch) // let the delivered tasks go
		if err != nil {
			switch {
			case t.closed.Load():
			case errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed):
				t.log.Debug("peer connection closed", "from", string(from), "remote", remote)
			default:
				t.refusedConns.Add(1)
				if suppressed, ok := t.warns.allow(remoteHost(c), time.Now()); ok {
					t.log.Warn("peer connection dropped", "from", string(from), "remote", remote, "err", err, "suppressed", suppressed)
				}
			}
			return
		}
		if t.closed.Load() {
			return
		}
	}
}

// maxDeliverBatch bounds the messages read from one connection before they are
// delivered, so that a sender's steady stream still reaches the node in good time.
const maxDeliverBatch = 256

// readBatch appends to batch the next frame of fr, waiting for it, and then every
// whole frame fr has buffered, up to maxDeliverBatch in all. It stops at the first
// frame that does not decode or does not come from the connection's node to this
// one, returning the messages before it and the error.
func (t *Transport) readBatch(fr *wire.FrameReader, batch []node.Message, from node.NodeID) ([]node.Message, error) {
	for {
		m, err := fr.Read()
		if err == nil && m.From != from {
			err = fmt.Errorf("message from %q on the connection of %q", m.From, from)
		}
		if err == nil && m.To != t.cfg.Self {
			err = fmt.Errorf("message for %q arrived at %q: the peers' address maps disagree", m.To, t.cfg.Self)
		}
		if err != nil {
			return batch, err
		}
		batch = append(batch, m)
		if len(batch) >= maxDeliverBatch || !fr.WholeFrameBuffered() {
			return batch, nil
		}
	}
}

// sendHeartbeats writes a heartbeat to the dialer of c every Config.Heartbeat, the
// first at once, until stop is closed or a write fails.
func (t *Transport) sendHeartbeats(c net.Conn, stop <-chan struct{}) {
	defer t.wg.Done()
	tick := time.NewTicker(t.cfg.Heartbeat)
	defer tick.Stop()
	beat := []byte{heartbeatByte}
	for {
		// A dialer that reads nothing for Silence has stopped caring; so do we.
		c.SetWriteDeadline(time.Now().Add(t.cfg.Silence))
		if _, err := c.Write(beat); err != nil {
			return
		}
		select {
		case <-stop:
			return
		case <-t.done:
			return
		case <-tick.C:
		}
	}
}

// readHeartbeats reads what p's acceptor writes on c, an outbound connection, after
// the handshake: heartbeats, recorded in p, and nothing else but, from an acceptor
// with a cluster secret refusing a dialer without one, a refusal. It returns why
// the connection ended.
func readHeartbeats(p *peer, c net.Conn) error {
	var b [len(refuseMagic) + 1]byte
	for {
		if _, err := io.ReadFull(c, b[:1]); err != nil {
			if errors.Is(err, io.EOF) {
				return errors.New("closed by peer")
			}
			return err
		}
		if b[0] == heartbeatByte {
			p.heard.Store(time.Now().UnixNano())
			continue
		}
		if n, _ := io.ReadFull(c, b[1:]); n == len(b)-1 && string(b[:len(refuseMagic)]) == refuseMagic {
			return refusalError(b[len(refuseMagic)])
		}
		return errors.New("peer wrote on a send-only connection")
	}
}

// receivedFor returns the received counter of id, a configured peer (handshakeIn
// refuses any other).
func (t *Transport) receivedFor(id node.NodeID) *atomic.Uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.received[id]
}

// backoff returns the wait before the next connection attempt after failures
// consecutive failures: MinBackoff doubled per failure up to MaxBackoff, then
// jittered down by up to half, never below MinBackoff.
func (t *Transport) backoff(failures int) time.Duration {
	d := t.cfg.MinBackoff
	for i := 1; i < failures && d < t.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, t.cfg.MaxBackoff)
	if half := int64(d / 2); half > 0 {
		d -= time.Duration(rand.Int64N(half + 1))
	}
	return max(d, t.cfg.MinBackoff)
}

// runSender keeps a connection to p and writes its queue to it until Close.
func (t *Transport) runSender(p *peer) {
	defer t.wg.Done()
	log := t.log.With("peer", string(p.id), "addr", *p.addr.Load())
	failures := 0
	// An error is logged at Warn level, but the same error again at Debug level, so
	// that a peer refusing every connection (a mismatched cluster secret, say) does not
	// flood the log. A connection that lasts starts afresh.
	lastWarned, repeating := "", false
	report := func(what string, err error) {
		msg := err.Error()
		repeating = msg == lastWarned
		if repeating {
			log.Debug(what+" again", "err", msg, "failures", failures)
			return
		}
		log.Warn(what, "err", msg)
		lastWarned = msg
	}
	for {
		if failures > 0 && !t.sleep(t.backoff(failures)) {
			return
		}
		if t.closed.Load() {
			return
		}
		c, err := t.dial(p)
		if err != nil {
			if t.closed.Load() {
				return
			}
			p.setErr(err)
			report("peer unreachable", err)
			failures++
			continue
		}
		if repeating {
			log.Debug("peer connected")
		} else {
			log.Info("peer connected")
		}
		began := time.Now()
		err = t.pump(p, c)
		p.connected.Store(false)
		t.untrack(c)
		if t.closed.Load() {
			return
		}
		p.setErr(err)
		// A connection that lasted resets the backoff; one that breaks at once (a
		// peer that refuses our hello, say) keeps doubling it.
		if time.Since(began) >= t.cfg.MaxBackoff {
			failures = 1
			lastWarned = ""
		} else {
			failures++
		}
		report("peer connection lost", err)
	}
}

// dial connects to p and runs the handshake. The connection it returns is tracked.
func (t *Transport) dial(p *peer) (net.Conn, error) {
	d := net.Dialer{Timeout: t.cfg.DialTimeout}
	c, err := d.DialContext(t.ctx, "tcp", *p.addr.Load())
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	if t.clientTLS != nil {
		if c, err = t.dialTLS(t.ctx, c, p.id); err != nil {
			return nil, err
		}
	}
	if !t.track(c, true) {
		return nil, ErrClosed
	}
	if err := t.handshakeOut(c, p); err != nil {
		t.untrack(c)
		return nil, err
	}
	return c, nil
}

// pump writes p's queue to c in batches until a write fails, the peer closes c, or
// the transport closes. It returns why it stopped.
func (t *Transport) pump(p *peer, c net.Conn) error {
	// The peer writes only heartbeats on this connection after the handshake: the
	// read ends only when the peer closes it or it breaks, which tells an idle sender
	// that the link is gone. The exception: an acceptor with a cluster secret refuses
	// a sender without one, which has no handshake, by writing a refusal here.
	broken := make(chan error, 1)
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		broken <- readHeartbeats(p, c)
		c.Close() // unblocks a write in progress
	}()
	p.connected.Store(true)
	var buf []byte
	for {
		var m queued
		select {
		case <-t.done:
			// Close half-closed c: wait until the peer has read it all and closed its
			// side (or Close gives up waiting and closes c).
			<-broken
			return ErrClosed
		case err := <-broken:
			return err
		case m = <-p.q:
		}
		// Batch: m and everything queued behind it now, up to maxBatchBytes.
		var n uint64
		taken := int64(1)
		buf, n = t.appendMessage(p, buf[:0], m, 0)
	drain:
		for len(buf) < maxBatchBytes {
			select {
			case m = <-p.q:
				buf, n = t.appendMessage(p, buf, m, n)
				taken++
			default:
				break drain
			}
		}
		if n == 0 {
			p.pending.Add(-taken)
			continue // every message was too large
		}
		c.SetWriteDeadline(time.Now().Add(writeTimeout))
		_, err := c.Write(buf)
		if err != nil {
			// Some of the batch may have arrived; count all of it as lost.
			p.droppedBroken.Add(n)
			p.pending.Add(-taken)
			select {
			case err2 := <-broken:
				if !errors.Is(err, net.ErrClosed) {
					return err
				}
				return err2
			default:
				return err
			}
		}
		p.sent.Add(n)
		p.writes.Add(1)
		p.pending.Add(-taken) // after the counters, so that Flush sees them
		if cap(buf) > keepBufBytes {
			buf = nil
		}
	}
}

// appendMessage appends m's frame to buf and counts it in n, or counts m as too
// large and leaves buf and n as they were.
func (t *Transport) appendMessage(p *peer, buf []byte, q queued, n uint64) ([]byte, uint64) {
	if time.Since(q.at) > t.cfg.MaxAge {
		p.droppedOld.Add(1)
		return buf, n
	}
	m := q.m
	start := len(buf)
	buf = wire.AppendFrame(buf, m)
	if len(buf)-start > 4+wire.MaxFrame {
		p.droppedLarge.Add(1)
		t.log.Warn("peer message too large, dropped", "peer", string(p.id), "type", m.Type.String(), "task", m.TaskID, "bytes", len(buf)-start)
		return buf[:start], n
	}
	return buf, n + 1
}
