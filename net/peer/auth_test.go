package peer

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/net/wire"
	"github.com/miyamotohq/miyamoto/node"
)

var testSecret = []byte("test cluster secret, 32 bytes...")

// logBuffer collects a transport's log lines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if testing.Verbose() {
		os.Stderr.Write(p)
	}
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// countLines counts the lines of log that contain every one of subs.
func countLines(log string, subs ...string) int {
	n := 0
lines:
	for _, line := range strings.Split(log, "\n") {
		for _, s := range subs {
			if !strings.Contains(line, s) {
				continue lines
			}
		}
		n++
	}
	return n
}

// refusedLine matches the log line of an inbound connection refused for reason.
func refusedLine(reason string) *regexp.Regexp {
	return regexp.MustCompile(`level=WARN msg="peer connection refused" node=\S+ remote=127\.0\.0\.1:\d+ .*reason="` + regexp.QuoteMeta(reason))
}

func TestSecretExchange(t *testing.T) {
	ids := []node.NodeID{"n1", "n2", "n3"}
	ts, boxes := clusterWith(t, func(_ node.NodeID, c *Config) {
		c.QueueSize = 10000
		c.ClusterSecret = testSecret
	}, ids...)
	exchange(t, ids, ts, boxes, 2000)
	require.Equal(t, map[node.NodeID]bool{"n2": true, "n3": true}, ts[0].Reachable())
	for _, tr := range ts {
		for id, ps := range tr.Stats().Peers {
			// A dial before that peer listened may have failed; nothing else did.
			if ps.LastError != "" {
				require.Contains(t, ps.LastError, "connection refused", "%s", id)
			}
		}
	}
}

// Two nodes whose configurations disagree refuse each other's connections both
// ways, deliver nothing, and say why on both sides.
func TestSecretMismatch(t *testing.T) {
	other := []byte("another secret, of 32 bytes too.")
	cases := []struct {
		name             string
		secretA, secretB []byte
		// What each side's dialer records and each side's acceptor logs.
		dialA, dialB     string
		refuseA, refuseB string
	}{
		{"different secrets", testSecret, other,
			"bad cluster secret: the peer refused this node's proof", "bad cluster secret: the peer refused this node's proof",
			"bad cluster secret", "bad cluster secret"},
		{"secret on one side only", testSecret, nil,
			"peer has no cluster secret", "peer expects a cluster secret",
			"peer has no cluster secret", "peer expects a cluster secret"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var logA, logB logBuffer
			ts, boxes := clusterWith(t, func(id node.NodeID, cfg *Config) {
				if id == "a" {
					cfg.ClusterSecret, cfg.Logger = c.secretA, logA.logger()
				} else {
					cfg.ClusterSecret, cfg.Logger = c.secretB, logB.logger()
				}
			}, "a", "b")
			a, b := ts[0], ts[1]
			for k := range 10 {
				a.Send(testMsg("a", "b", k))
				b.Send(testMsg("b", "a", k))
			}
			// Several attempts each way, each refused, and each dialer says why.
			eventually(t, "refusals on both sides", func() bool {
				return a.Stats().RefusedConns >= 3 && b.Stats().RefusedConns >= 3 &&
					a.Stats().Peers["b"].LastError == c.dialA && b.Stats().Peers["a"].LastError == c.dialB &&
					countLines(logA.String(), "level=DEBUG", "peer=b", "again", `err="`+c.dialA+`"`) > 0 &&
					countLines(logB.String(), "level=DEBUG", "peer=a", "again", `err="`+c.dialB+`"`) > 0
			})
			require.Regexp(t, refusedLine(c.refuseA), logA.String())
			require.Regexp(t, refusedLine(c.refuseB), logB.String())
			// The dialers log what they recorded at Warn level once, however often
			// they retry.
			require.Equal(t, 1, countLines(logA.String(), "level=WARN", "peer=b", `err="`+c.dialA+`"`), logA.String())
			require.Equal(t, 1, countLines(logB.String(), "level=WARN", "peer=a", `err="`+c.dialB+`"`), logB.String())

			require.Zero(t, boxes[0].count("b")+boxes[1].count("a"), "a message got through")
			require.Zero(t, a.Stats().Peers["b"].Received+b.Stats().Peers["a"].Received)
			if c.secretA != nil {
				// A dialer with a secret never counts itself connected, nor writes.
				require.False(t, a.Reachable()["b"])
				require.Zero(t, a.Stats().Peers["b"].Sent)
			}
		})
	}
}

// rawClient is a hand-made dialer speaking to a transport's acceptor.
type rawClient struct {
	t *testing.T
	net.Conn
}

func dialRaw(t *testing.T, addr string) rawClient {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return rawClient{t, c}
}

func (c rawClient) write(b ...[]byte) {
	_, err := c.Write(bytes.Join(b, nil))
	require.NoError(c.t, err)
}

// read reads magic followed by n bytes, and returns those.
func (c rawClient) read(magic string, n int) []byte {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, len(magic)+n)
	_, err := io.ReadFull(c, b)
	require.NoError(c.t, err)
	require.Equal(c.t, magic, string(b[:len(magic)]))
	return b[len(magic):]
}

// rest reads until the transport closes the connection and returns what it read.
func (c rawClient) rest() []byte {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		require.NotContains(c.t, err.Error(), "timeout", "connection left open")
	}
	return b
}

// An acceptor with a secret closes every connection that does not prove it within
// the hello timeout, and delivers no frame from it.
func TestHandshakeRefusesRawClients(t *testing.T) {
	const helloTimeout = 300 * time.Millisecond
	var logs logBuffer
	box := newInbox()
	a, err := New(Config{Self: "a", Listen: "127.0.0.1:0", ClusterSecret: testSecret, Logger: logs.logger(),
		Peers: map[node.NodeID]string{"b": freeAddr(t)}}, box.deliver)
	require.NoError(t, err)
	a.helloTimeout = helloTimeout
	a.warns = newWarnLimiter(0, maxWarnHosts) // every refusal logged: the test reads each
	require.NoError(t, a.Start())
	t.Cleanup(func() { a.Close() })

	good := testMsg("b", "a", 2)
	frame := wire.AppendFrame(nil, good)
	nonce := newNonce()
	authHello := appendAuthHello(nil, "b", "a", nonce)
	refusal := func(reason byte) []byte { return append([]byte(refuseMagic), reason) }
	cases := []struct {
		name   string
		run    func(c rawClient)
		rest   []byte // what the transport writes after run, before it closes
		reason string
	}{
		{"hello without a secret, then a frame", func(c rawClient) {
			c.write(appendHello(nil, "b"), frame)
		}, refusal(refuseNeedSecret), "peer has no cluster secret"},
		{"no answer", func(c rawClient) {
			c.write(authHello)
			c.read(challengeMagic, nonceLen)
		}, nil, "no handshake answer in time"},
		{"half an answer", func(c rawClient) {
			c.write(authHello)
			c.read(challengeMagic, nonceLen)
			c.write(make([]byte, proofLen/2))
		}, nil, "no handshake answer in time"},
		{"garbage answer, then a frame", func(c rawClient) {
			c.write(authHello)
			c.read(challengeMagic, nonceLen)
			garbage := make([]byte, proofLen)
			rand.Read(garbage)
			c.write(garbage, frame)
		}, refusal(refuseBadSecret), "bad cluster secret"},
		{"a frame instead of an answer", func(c rawClient) {
			c.write(authHello)
			c.read(challengeMagic, nonceLen)
			c.write(frame, frame)
		}, refusal(refuseBadSecret), "bad cluster secret"},
		{"an answer made with another secret", func(c rawClient) {
			c.write(authHello)
			theirs := c.read(challengeMagic, nonceLen)
			c.write(proof([]byte("not the cluster secret at all!!!"), dialerLabel, "b", "a", nonce, theirs), frame)
		}, refusal(refuseBadSecret), "bad cluster secret"},
		{"the acceptor's proof as an answer", func(c rawClient) {
			c.write(authHello)
			theirs := c.read(challengeMagic, nonceLen)
			c.write(proof(testSecret, acceptorLabel, "b", "a", nonce, theirs), frame)
		}, refusal(refuseBadSecret), "bad cluster secret"},
		{"wrong node", func(c rawClient) {
			c.write(appendAuthHello(nil, "b", "c", nonce))
		}, refusal(refuseWrongNode), `peer dialed \"c\" but reached \"a\"`},
		{"closed during the handshake", func(c rawClient) {
			c.write(authHello)
			c.read(challengeMagic, nonceLen)
			c.Conn.(*net.TCPConn).CloseWrite()
		}, nil, "peer closed the connection during the handshake"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, a.Addr().String())
			start := time.Now()
			tc.run(c)
			require.Equal(t, string(tc.rest), string(c.rest()))
			require.Less(t, time.Since(start), helloTimeout+2*time.Second, "closed late")
			eventually(t, "the refusal to be counted", func() bool { return a.Stats().RefusedConns == uint64(i+1) })
			require.Regexp(t, refusedLine(tc.reason), logs.String())
			require.Contains(t, logs.String(), `claims=b`)
		})
	}
	require.Zero(t, box.count("b"), "a frame got through")
	require.Zero(t, a.Stats().Peers["b"].Received, "an unauthenticated hello counted a message")

	// The same client with the secret gets through: the refusals above were for
	// what the client did wrong, not for how it talks.
	c := dialRaw(t, a.Addr().String())
	c.write(authHello)
	theirs := c.read(challengeMagic, nonceLen)
	c.write(proof(testSecret, dialerLabel, "b", "a", nonce, theirs))
	require.Equal(t, proof(testSecret, acceptorLabel, "b", "a", nonce, theirs), c.read(acceptMagic, proofLen))
	c.write(frame)
	eventually(t, "the authenticated frame", func() bool { return box.count("b") == 1 })
	require.Equal(t, good, box.from("b")[0])
	require.EqualValues(t, len(cases), a.Stats().RefusedConns)
}

// proxy forwards connections to target and records the bytes of the first one.
type proxy struct {
	ln        net.Listener
	mu        sync.Mutex
	conns     []net.Conn
	up, down  logBuffer // client→target and target→client bytes of the first connection
	recording bool
	wg        sync.WaitGroup
}

func newProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &proxy{ln: ln, recording: true}
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			record := p.recording
			p.recording = false
			p.mu.Unlock()
			pipe := func(dst, src net.Conn, rec io.Writer) {
				w := io.Writer(dst)
				if record {
					w = io.MultiWriter(dst, rec)
				}
				io.Copy(w, src)
				dst.Close()
				src.Close()
			}
			p.wg.Go(func() { pipe(s, c, &p.up) })
			p.wg.Go(func() { pipe(c, s, &p.down) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

// A recorded handshake, replayed, is refused: the acceptor's challenge is fresh.
func TestReplayedHandshakeRefused(t *testing.T) {
	addrA, addrB := freeAddr(t), freeAddr(t)
	var logB logBuffer
	boxB := newInbox()
	b, err := New(Config{Self: "b", Listen: addrB, Peers: map[node.NodeID]string{"a": addrA},
		ClusterSecret: testSecret, Logger: logB.logger()}, boxB.deliver)
	require.NoError(t, err)
	require.NoError(t, b.Start())
	t.Cleanup(func() { b.Close() })
	p := newProxy(t, addrB)
	a, err := New(Config{Self: "a", Listen: addrA, Peers: map[node.NodeID]string{"b": p.ln.Addr().String()},
		ClusterSecret: testSecret, Logger: testLogger(t)}, func(node.Message) {})
	require.NoError(t, err)
	require.NoError(t, a.Start())
	t.Cleanup(func() { a.Close() })

	for k := range 5 {
		a.Send(testMsg("a", "b", k))
	}
	eventually(t, "b receiving through the proxy", func() bool { return boxB.count("a") == 5 })
	// The recording: hello, answer and the five frames up; challenge and verdict down,
	// then heartbeats.
	upLen := len(appendAuthHello(nil, "a", "b", make([]byte, nonceLen))) + proofLen
	for k := range 5 {
		upLen += len(wire.AppendFrame(nil, testMsg("a", "b", k)))
	}
	downLen := len(challengeMagic) + nonceLen + len(acceptMagic) + proofLen
	eventually(t, "the recording", func() bool {
		down := p.down.String()
		return len(p.up.String()) == upLen && len(down) > downLen && strings.Trim(down[downLen:], "\x00") == ""
	})
	up, down := []byte(p.up.String()), []byte(p.down.String())
	recordedNonce := down[len(challengeMagic) : len(challengeMagic)+nonceLen]

	c := dialRaw(t, addrB)
	c.write(up)
	require.NotEqual(t, recordedNonce, c.read(challengeMagic, nonceLen), "challenge not fresh")
	require.Equal(t, string(append([]byte(refuseMagic), refuseBadSecret)), string(c.rest()))
	eventually(t, "the refusal to be counted", func() bool { return b.Stats().RefusedConns == 1 })
	require.Regexp(t, refusedLine("bad cluster secret"), logB.String())
	require.Equal(t, 5, boxB.count("a"), "a replayed frame got through")
}

// impostor listens where a dialer expects its peer and plays the acceptor's part of
// the handshake with serve, once per connection; wroteAfter, called after the dialer
// is closed, counts the bytes the dialer wrote after the handshake.
func impostor(t *testing.T, serve func(c net.Conn, r *bufio.Reader)) (addr string, wroteAfter func() int) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var mu sync.Mutex
	var conns []net.Conn
	after := 0
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				r := bufio.NewReader(c)
				serve(c, r)
				n, _ := io.Copy(io.Discard, r)
				mu.Lock()
				after += int(n)
				mu.Unlock()
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	// Once the dialer has closed its connections, the count is final.
	return ln.Addr().String(), func() int {
		ln.Close()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return after
	}
}

// A dialer sends nothing to a process at its peer's address that does not prove the
// secret.
func TestDialerRefusesImpostor(t *testing.T) {
	cases := []struct {
		name  string
		serve func(c net.Conn, r *bufio.Reader)
		want  string
	}{
		{"wrong proof", func(c net.Conn, r *bufio.Reader) {
			if _, err := readHello(r); err != nil {
				return
			}
			c.Write(append([]byte(challengeMagic), newNonce()...))
			io.ReadFull(r, make([]byte, proofLen))
			c.Write(append([]byte(acceptMagic), make([]byte, proofLen)...))
		}, "bad cluster secret: the peer's proof is wrong (another process at its address?)"},
		{"reflected proof", func(c net.Conn, r *bufio.Reader) {
			// Sends the dialer's own proof back as if it were the acceptor's.
			if _, err := readHello(r); err != nil {
				return
			}
			c.Write(append([]byte(challengeMagic), newNonce()...))
			answer := make([]byte, proofLen)
			io.ReadFull(r, answer)
			c.Write(append([]byte(acceptMagic), answer...))
		}, "bad cluster secret: the peer's proof is wrong (another process at its address?)"},
		{"verdict without a challenge", func(c net.Conn, r *bufio.Reader) {
			readHello(r)
			c.Write(append([]byte(acceptMagic), make([]byte, proofLen)...))
		}, `peer answered the hello with "MIYK", not "MIYC": not a Miyamoto peer of this version`},
		{"silence", func(c net.Conn, r *bufio.Reader) {
			readHello(r)
		}, "no handshake answer in time"},
		{"closes at once", func(c net.Conn, r *bufio.Reader) {
			readHello(r)
			c.Close()
		}, "peer closed the connection during the handshake"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr, wroteAfter := impostor(t, tc.serve)
			a, err := New(Config{Self: "a", Listen: "127.0.0.1:0", Peers: map[node.NodeID]string{"b": addr},
				ClusterSecret: testSecret, MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond,
				Logger: testLogger(t)}, func(node.Message) {})
			require.NoError(t, err)
			a.helloTimeout = 200 * time.Millisecond
			require.NoError(t, a.Start())
			t.Cleanup(func() { a.Close() })
			for k := range 3 {
				a.Send(testMsg("a", "b", k))
			}
			eventually(t, "a failing to authenticate b", func() bool { return a.Stats().Peers["b"].LastError == tc.want })
			ps := a.Stats().Peers["b"]
			require.False(t, ps.Connected)
			require.Zero(t, ps.Sent)
			require.Equal(t, 3, ps.Queued)
			require.NoError(t, a.Close())
			require.Zero(t, wroteAfter(), "a wrote to the impostor after the handshake")
		})
	}
}

// Handshakes in progress, on either side, do not hold Close up nor leave goroutines.
func TestCloseDuringHandshake(t *testing.T) {
	base := runtime.NumGoroutine()
	func() {
		silent, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer silent.Close()
		a, err := New(Config{Self: "a", Listen: "127.0.0.1:0", Peers: map[node.NodeID]string{"b": silent.Addr().String()},
			ClusterSecret: testSecret}, func(node.Message) {})
		require.NoError(t, err)
		require.NoError(t, a.Start()) // the default hello timeout: 5 s
		c := dialRaw(t, a.Addr().String())
		c.write(appendAuthHello(nil, "b", "a", newNonce()))
		c.read(challengeMagic, nonceLen)
		held, err := silent.Accept() // a's dialer, waiting for a challenge
		require.NoError(t, err)
		defer held.Close()

		start := time.Now()
		require.NoError(t, a.Close())
		require.Less(t, time.Since(start), 3*time.Second, "Close waited for the handshakes' deadlines")
		require.Empty(t, c.rest())
		require.Zero(t, a.Stats().RefusedConns, "Close counted as a refusal")
	}()
	eventually(t, "goroutines back to the baseline", func() bool { return runtime.NumGoroutine() <= base })
}

func TestProofBindsEverything(t *testing.T) {
	n1, n2 := newNonce(), newNonce()
	p := proof(testSecret, dialerLabel, "a", "b", n1, n2)
	require.Len(t, p, proofLen)
	require.Equal(t, p, proof(testSecret, dialerLabel, "a", "b", n1, n2))
	for name, q := range map[string][]byte{
		"secret":      proof([]byte("another secret, of 32 bytes too."), dialerLabel, "a", "b", n1, n2),
		"label":       proof(testSecret, acceptorLabel, "a", "b", n1, n2),
		"dialer":      proof(testSecret, dialerLabel, "c", "b", n1, n2),
		"acceptor":    proof(testSecret, dialerLabel, "a", "c", n1, n2),
		"ids shifted": proof(testSecret, dialerLabel, "ab", "", n1, n2),
		"nonces":      proof(testSecret, dialerLabel, "a", "b", n2, n1),
	} {
		require.NotEqual(t, p, q, name)
	}
	require.False(t, errors.Is(refusalError(refuseBadSecret), errPeerNeedsSecret))
	require.ErrorIs(t, refusalError(refuseBadSecret), errBadSecret)
}
