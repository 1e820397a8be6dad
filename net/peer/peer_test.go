package peer

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/net/wire"
	"github.com/miyamotohq/miyamoto/node"
)

// freeAddr returns a loopback address that nothing listens on right now, for a
// transport to listen on later. The port is picked below the kernel's ephemeral range,
// so that no outgoing connection (nor a listener on port 0) takes it in the meantime.
func freeAddr(t testing.TB) string {
	t.Helper()
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil && v > 2048 {
				low = v
			}
		}
	}
	for range 100 {
		addr := fmt.Sprintf("127.0.0.1:%d", 1024+rand.IntN(low-1024))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		require.NoError(t, ln.Close())
		return addr
	}
	t.Fatal("no free port below the ephemeral range")
	return ""
}

// inbox records what a transport delivered, per sender.
type inbox struct {
	mu   sync.Mutex
	msgs map[node.NodeID][]node.Message
}

func newInbox() *inbox { return &inbox{msgs: map[node.NodeID][]node.Message{}} }

func (b *inbox) deliver(m node.Message) {
	b.mu.Lock()
	b.msgs[m.From] = append(b.msgs[m.From], m)
	b.mu.Unlock()
}

func (b *inbox) from(id node.NodeID) []node.Message {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]node.Message(nil), b.msgs[id]...)
}

func (b *inbox) count(id node.NodeID) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.msgs[id])
}

// eventually polls cond every few milliseconds until it holds or 10 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return nil
}

// cluster builds started transports for ids, all peers of each other, on loopback.
func cluster(t *testing.T, queue int, ids ...node.NodeID) ([]*Transport, []*inbox) {
	t.Helper()
	return clusterWith(t, func(_ node.NodeID, c *Config) { c.QueueSize = queue }, ids...)
}

// clusterWith is cluster with each node's Config edited by edit before New.
func clusterWith(t *testing.T, edit func(node.NodeID, *Config), ids ...node.NodeID) ([]*Transport, []*inbox) {
	t.Helper()
	addrs := map[node.NodeID]string{}
	for _, id := range ids {
		addrs[id] = freeAddr(t)
	}
	var ts []*Transport
	var boxes []*inbox
	for _, id := range ids {
		box := newInbox()
		cfg := Config{
			Self: id, Listen: addrs[id], Peers: addrs,
			MinBackoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
			Logger: testLogger(t),
		}
		edit(id, &cfg)
		tr, err := New(cfg, box.deliver)
		require.NoError(t, err)
		require.NoError(t, tr.Start())
		t.Cleanup(func() { tr.Close() })
		ts = append(ts, tr)
		boxes = append(boxes, box)
	}
	return ts, boxes
}

func testTask(from, to node.NodeID, i int) *node.Task {
	return &node.Task{
		ID:          fmt.Sprintf("%s-%s-%d", from, to, i),
		Queue:       "q",
		URL:         "http://127.0.0.1:1/hook",
		Method:      "POST",
		Headers:     []node.Header{{Name: "X-I", Value: fmt.Sprint(i)}},
		ContentType: "text/plain",
		Body:        bytes.Repeat([]byte{byte(i)}, 1+i%300),
		ETA:         time.Unix(1_700_000_000, int64(i)).UTC(),
		Created:     time.Unix(1_600_000_000, 0).UTC(),
		Replicas:    []node.NodeID{from, to},
	}
}

func testMsg(from, to node.NodeID, i int) node.Message {
	m := node.Message{Type: node.MsgClaim, From: from, To: to, TaskID: fmt.Sprint(i), Attempt: uint64(i)}
	if i%2 == 0 {
		m.Type = node.MsgStore
		m.Task = testTask(from, to, i)
	}
	return m
}

// exchange has every transport send n messages to every other one, concurrently,
// and checks that all arrive intact and in order per pair.
func exchange(t *testing.T, ids []node.NodeID, ts []*Transport, boxes []*inbox, n int) {
	var wg sync.WaitGroup
	for i, from := range ids {
		for _, to := range ids {
			if to == from {
				continue
			}
			wg.Go(func() {
				for k := range n {
					ts[i].Send(testMsg(from, to, k))
				}
			})
		}
	}
	wg.Wait()
	for j, to := range ids {
		for _, from := range ids {
			if from == to {
				continue
			}
			eventually(t, fmt.Sprintf("%d messages %s→%s", n, from, to), func() bool { return boxes[j].count(from) >= n })
			got := boxes[j].from(from)
			require.Len(t, got, n, "%s→%s", from, to)
			for k, m := range got {
				require.Equal(t, testMsg(from, to, k), m, "%s→%s message %d", from, to, k)
			}
		}
	}
	for i, id := range ids {
		// Sent is counted once a write returns, which may be after the peer read it.
		eventually(t, "writes to be counted", func() bool {
			for _, ps := range ts[i].Stats().Peers {
				if ps.Sent != uint64(n) {
					return false
				}
			}
			return true
		})
		st := ts[i].Stats()
		for _, other := range ids {
			if other == id {
				continue
			}
			ps := st.Peers[other]
			require.EqualValues(t, n, ps.Sent, "%s→%s sent", id, other)
			require.EqualValues(t, n, ps.Received, "%s←%s received", id, other)
			require.Zero(t, ps.DroppedQueueFull+ps.DroppedBroken+ps.DroppedTooLarge)
			require.True(t, ps.Connected)
		}
		require.Zero(t, st.UnknownPeer)
		require.Zero(t, st.RefusedConns)
	}
}

func TestExchangeTwo(t *testing.T) {
	ids := []node.NodeID{"a", "b"}
	ts, boxes := cluster(t, 10000, ids...)
	exchange(t, ids, ts, boxes, 5000)
}

func TestExchangeThree(t *testing.T) {
	ids := []node.NodeID{"n1", "n2", "n3"}
	ts, boxes := cluster(t, 10000, ids...)
	exchange(t, ids, ts, boxes, 3000)
	require.Equal(t, map[node.NodeID]bool{"n2": true, "n3": true}, ts[0].Reachable())
}

func TestReconnect(t *testing.T) {
	cfg := pairConfig(t, 0)
	a := startTransport(t, cfg("a"))

	// b is down: a fails to connect and says so.
	eventually(t, "a failing to reach b", func() bool { return a.Stats().Peers["b"].LastError != "" })
	require.False(t, a.Reachable()["b"])

	startB := func() (*Transport, *inbox) {
		box := newInbox()
		b, err := New(cfg("b"), box.deliver)
		require.NoError(t, err)
		require.NoError(t, b.Start())
		t.Cleanup(func() { b.Close() })
		return b, box
	}
	b, box := startB()
	for k := range 1000 {
		a.Send(testMsg("a", "b", k))
	}
	eventually(t, "b receiving 1000 messages", func() bool { return box.count("a") == 1000 })
	for k, m := range box.from("a") {
		require.Equal(t, testMsg("a", "b", k), m)
	}
	// a hears from b on b's own connection, which may come up after a's.
	eventually(t, "a hearing from b", func() bool { return a.Reachable()["b"] })

	// b goes away: a notices without sending anything, then reaches b's successor.
	require.NoError(t, b.Close())
	eventually(t, "a noticing b is gone", func() bool { return !a.Reachable()["b"] })
	_, box = startB()
	eventually(t, "a reconnecting", func() bool { return a.Reachable()["b"] })
	for k := range 100 {
		a.Send(testMsg("a", "b", k))
	}
	eventually(t, "b's successor receiving 100 messages", func() bool { return box.count("a") == 100 })
	for k, m := range box.from("a") {
		require.Equal(t, testMsg("a", "b", k), m)
	}
}

func TestQueueFullDropsWhenPeerDown(t *testing.T) {
	tr, err := New(Config{Self: "a", Listen: "127.0.0.1:0", Peers: map[node.NodeID]string{"down": freeAddr(t)},
		QueueSize: 8, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}, func(node.Message) {})
	require.NoError(t, err)
	require.NoError(t, tr.Start())
	t.Cleanup(func() { tr.Close() })

	start := time.Now()
	for k := range 1000 {
		tr.Send(testMsg("a", "down", k))
	}
	require.Less(t, time.Since(start), time.Second, "Send blocked")
	ps := tr.Stats().Peers["down"]
	require.EqualValues(t, 992, ps.DroppedQueueFull)
	require.Equal(t, 8, ps.Queued)
	require.Zero(t, ps.Sent)

	// Unknown peers, this node included, are counted and dropped.
	tr.Send(node.Message{Type: node.MsgClaim, To: "nobody"})
	tr.Send(node.Message{Type: node.MsgClaim, To: "a"})
	require.EqualValues(t, 2, tr.Stats().UnknownPeer)
}

func TestQueueFullDropsWhenPeerStalls(t *testing.T) {
	// A listener nobody accepts from: connections complete in the kernel, writes fill
	// the socket buffers and then block.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })

	tr, err := New(Config{Self: "a", Listen: "127.0.0.1:0", Peers: map[node.NodeID]string{"stuck": ln.Addr().String()},
		QueueSize: 16}, func(node.Message) {})
	require.NoError(t, err)
	require.NoError(t, tr.Start())
	t.Cleanup(func() { tr.Close() })

	big := node.Message{Type: node.MsgStore, From: "a", To: "stuck", Task: &node.Task{Body: make([]byte, 256<<10)}}
	lastSent := uint64(1 << 63)
	eventually(t, "the sender to stall and Send to drop", func() bool {
		start := time.Now()
		for range 64 {
			tr.Send(big)
		}
		require.Less(t, time.Since(start), time.Second, "Send blocked")
		time.Sleep(20 * time.Millisecond)
		ps := tr.Stats().Peers["stuck"]
		stalled := ps.Sent == lastSent
		lastSent = ps.Sent
		return stalled && ps.DroppedQueueFull > 0 && ps.Connected
	})
	// Flush gives up when its context does.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, tr.Flush(ctx), context.DeadlineExceeded)

	// Close unblocks the sender stuck in its write.
	done := make(chan struct{})
	go func() { tr.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close blocked behind a stalled write")
	}
}

func TestFlush(t *testing.T) {
	ids := []node.NodeID{"a", "b"}
	ts, boxes := cluster(t, 20000, ids...)
	eventually(t, "a to connect", func() bool { return ts[0].Reachable()["b"] })
	for k := range 20000 {
		ts[0].Send(testMsg("a", "b", k))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, ts[0].Flush(ctx))
	require.EqualValues(t, 20000, ts[0].Stats().Peers["b"].Sent)
	require.NoError(t, ts[0].Close())
	eventually(t, "b to read everything a wrote", func() bool { return boxes[1].count("a") == 20000 })

	// A peer that is not connected is not waited for.
	tr, err := New(Config{Self: "a", Listen: "127.0.0.1:0", Peers: map[node.NodeID]string{"down": freeAddr(t)}}, func(node.Message) {})
	require.NoError(t, err)
	require.NoError(t, tr.Start())
	t.Cleanup(func() { tr.Close() })
	tr.Send(testMsg("a", "down", 1))
	require.NoError(t, tr.Flush(ctx))
}

func TestTooLargeDropped(t *testing.T) {
	ids := []node.NodeID{"a", "b"}
	ts, boxes := cluster(t, 0, ids...)
	huge := node.Message{Type: node.MsgStore, From: "a", To: "b", Task: &node.Task{Body: make([]byte, wire.MaxFrame)}}
	ts[0].Send(huge)
	ts[0].Send(testMsg("a", "b", 0))
	eventually(t, "the small message", func() bool { return boxes[1].count("a") == 1 })
	require.Equal(t, testMsg("a", "b", 0), boxes[1].from("a")[0])
	// Sent is counted once the write returns, which may be after b read it.
	eventually(t, "the write to be counted", func() bool { return ts[0].Stats().Peers["b"].Sent == 1 })
	require.EqualValues(t, 1, ts[0].Stats().Peers["b"].DroppedTooLarge)
}

func TestCloseIdempotentAndLeavesNoGoroutines(t *testing.T) {
	base := runtime.NumGoroutine()
	func() {
		ids := []node.NodeID{"a", "b", "c"}
		addrs := map[node.NodeID]string{"a": freeAddr(t), "b": freeAddr(t), "c": freeAddr(t)} // c never starts
		var ts []*Transport
		boxes := []*inbox{newInbox(), newInbox()}
		for i, id := range ids[:2] {
			tr, err := New(Config{Self: id, Listen: addrs[id], Peers: addrs, QueueSize: 2000}, boxes[i].deliver)
			require.NoError(t, err)
			require.NoError(t, tr.Start())
			ts = append(ts, tr)
		}
		for k := range 1000 {
			ts[0].Send(testMsg("a", "b", k))
			ts[1].Send(testMsg("b", "a", k))
			ts[0].Send(testMsg("a", "c", k))
		}
		eventually(t, "the exchange", func() bool { return boxes[0].count("b") == 1000 && boxes[1].count("a") == 1000 })

		// An idle inbound connection that never says hello must not hold Close up.
		raw, err := net.Dial("tcp", ts[0].Addr().String())
		require.NoError(t, err)
		defer raw.Close()

		var wg sync.WaitGroup
		for _, tr := range ts {
			for range 3 {
				wg.Go(func() { require.NoError(t, tr.Close()) })
			}
		}
		wg.Wait()
		for _, tr := range ts {
			require.NoError(t, tr.Close())
			require.ErrorIs(t, tr.Start(), ErrClosed)
			tr.Send(testMsg("a", "b", 0)) // dropped silently
		}
	}()
	eventually(t, "goroutines back to the baseline", func() bool { return runtime.NumGoroutine() <= base })

	// Close before Start, and twice.
	tr, err := New(Config{Self: "a", Listen: "127.0.0.1:0"}, func(node.Message) {})
	require.NoError(t, err)
	require.NoError(t, tr.Close())
	require.NoError(t, tr.Close())
	require.ErrorIs(t, tr.Start(), ErrClosed)
	require.Nil(t, tr.Addr())
}

func TestBadInboundConnections(t *testing.T) {
	addrs := map[node.NodeID]string{"a": freeAddr(t), "b": freeAddr(t)}
	box := newInbox()
	a, err := New(Config{Self: "a", Listen: addrs["a"], Peers: addrs, Logger: testLogger(t)}, box.deliver)
	require.NoError(t, err)
	a.helloTimeout = 100 * time.Millisecond
	require.NoError(t, a.Start())
	t.Cleanup(func() { a.Close() })

	hello := func(id node.NodeID) []byte { return appendHello(nil, id) }
	frame := func(m node.Message) []byte { return wire.AppendFrame(nil, m) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	good := node.Message{Type: node.MsgClaim, From: "b", To: "a", TaskID: "t"}
	cases := []struct {
		name string
		send []byte
	}{
		{"http request", []byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n")},
		{"bad version", cat([]byte(helloMagic), []byte{wire.Version + 1, 1, 'b'})},
		{"empty id", cat([]byte(helloMagic), []byte{wire.Version, 0})},
		{"silence", nil},
		{"short hello", []byte("MIY")},
		{"garbage frame", cat(hello("b"), []byte{0, 0, 0, 3, wire.Version, 0xff, 0xff})},
		{"oversized frame", cat(hello("b"), []byte{0xff, 0xff, 0xff, 0xff})},
		{"spoofed sender", cat(hello("b"), frame(node.Message{Type: node.MsgClaim, From: "c", To: "a"}))},
		{"misrouted", cat(hello("b"), frame(node.Message{Type: node.MsgClaim, From: "b", To: "z"}))},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			conn, err := net.DialTimeout("tcp", a.Addr().String(), time.Second)
			require.NoError(t, err)
			defer conn.Close()
			_, err = conn.Write(c.send)
			require.NoError(t, err)
			// The transport closes the connection: the read ends with EOF or a reset.
			// Before that it wrote nothing but heartbeats (a hello that passed starts them).
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			got, err := io.ReadAll(conn)
			require.Empty(t, bytes.ReplaceAll(got, []byte{heartbeatByte}, nil))
			if err != nil {
				require.NotContains(t, err.Error(), "timeout", "connection left open")
			}
			eventually(t, "the refusal to be counted", func() bool { return a.Stats().RefusedConns == uint64(i+1) })
		})
	}
	// One good message before a bad one is delivered; nothing after it is.
	conn, err := net.Dial("tcp", a.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	_, err = conn.Write(cat(hello("b"), frame(good), []byte{0, 0, 0, 1, 9}, frame(good)))
	require.NoError(t, err)
	eventually(t, "the good message", func() bool { return box.count("b") == 1 })

	// The transport still works: a real peer gets through.
	b, err := New(Config{Self: "b", Listen: addrs["b"], Peers: addrs}, func(node.Message) {})
	require.NoError(t, err)
	require.NoError(t, b.Start())
	t.Cleanup(func() { b.Close() })
	for k := range 10 {
		b.Send(testMsg("b", "a", k))
	}
	eventually(t, "b's messages", func() bool { return box.count("b") == 11 })
	require.Equal(t, good, box.from("b")[0])
	for k, m := range box.from("b")[1:] {
		require.Equal(t, testMsg("b", "a", k), m)
	}
}

func TestConfigValidation(t *testing.T) {
	ok := Config{Self: "a", Listen: "127.0.0.1:0", Peers: map[node.NodeID]string{"a": "ignored", "b": "127.0.0.1:1"}}
	_, err := New(ok, func(node.Message) {})
	require.NoError(t, err)

	cases := []struct {
		name string
		edit func(*Config)
		want []string
	}{
		{"no self", func(c *Config) { c.Self = "" }, []string{"Config.Self"}},
		{"long self", func(c *Config) { c.Self = node.NodeID(strings.Repeat("x", 256)) }, []string{"Config.Self"}},
		{"no listen", func(c *Config) { c.Listen = "" }, []string{"Config.Listen"}},
		{"bad listen", func(c *Config) { c.Listen = "localhost" }, []string{"Config.Listen"}},
		{"bad peer addr", func(c *Config) { c.Peers = map[node.NodeID]string{"b": "nope"} }, []string{"Config.Peers", `"nope"`}},
		{"empty peer id", func(c *Config) { c.Peers = map[node.NodeID]string{"": "127.0.0.1:1"} }, []string{"Config.Peers"}},
		{"negative queue", func(c *Config) { c.QueueSize = -1 }, []string{"Config.QueueSize"}},
		{"negative dial timeout", func(c *Config) { c.DialTimeout = -1 }, []string{"Config.DialTimeout"}},
		{"negative min backoff", func(c *Config) { c.MinBackoff = -1 }, []string{"Config.MinBackoff"}},
		{"min above max", func(c *Config) { c.MinBackoff, c.MaxBackoff = time.Second, time.Millisecond }, []string{"Config.MaxBackoff"}},
		{"short secret", func(c *Config) { c.ClusterSecret = []byte("too short") }, []string{"Config.ClusterSecret", "16"}},
		{"negative heartbeat", func(c *Config) { c.Heartbeat = -1 }, []string{"Config.Heartbeat"}},
		{"silence within a heartbeat", func(c *Config) { c.Heartbeat, c.Silence = time.Second, time.Second }, []string{"Config.Silence"}},
		{"everything at once", func(c *Config) { c.Self, c.Listen, c.QueueSize = "", "", -5 },
			[]string{"Config.Self", "Config.Listen", "Config.QueueSize"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := ok
			c.edit(&cfg)
			_, err := New(cfg, func(node.Message) {})
			require.Error(t, err)
			for _, w := range c.want {
				require.Contains(t, err.Error(), w)
			}
		})
	}
	_, err = New(ok, nil)
	require.ErrorContains(t, err, "deliver")

	// Defaults.
	tr, err := New(Config{Self: "a", Listen: "127.0.0.1:0", MinBackoff: 3 * time.Second}, func(node.Message) {})
	require.NoError(t, err)
	require.Equal(t, DefaultQueueSize, tr.cfg.QueueSize)
	require.Equal(t, DefaultDialTimeout, tr.cfg.DialTimeout)
	require.Equal(t, 3*time.Second, tr.cfg.MaxBackoff, "MaxBackoff defaults to at least MinBackoff")
	require.Equal(t, DefaultHeartbeat, tr.cfg.Heartbeat)
	require.Equal(t, DefaultSilence, tr.cfg.Silence)
}

// fakeAcceptor listens for one dialer, reads its hello, then writes a heartbeat every
// 10 ms while beating is true; it never closes the connection (a paused process's
// kernel keeps it open, too).
type fakeAcceptor struct {
	ln      net.Listener
	beating atomic.Bool
}

func newFakeAcceptor(t *testing.T) *fakeAcceptor {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	f := &fakeAcceptor{ln: ln}
	done := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() { close(done); ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				if _, err := readHello(bufio.NewReader(c)); err != nil {
					return
				}
				for {
					select {
					case <-done:
						return
					case <-time.After(10 * time.Millisecond):
					}
					if f.beating.Load() {
						if _, err := c.Write([]byte{heartbeatByte}); err != nil {
							return
						}
					}
				}
			})
		}
	})
	return f
}

// A peer is reachable while its heartbeats come, and unreachable within Silence once
// they stop, although its connection stays up (a paused process); one that never
// beats is never reachable, connected or not.
func TestReachableFollowsHeartbeats(t *testing.T) {
	beats, mute := newFakeAcceptor(t), newFakeAcceptor(t)
	beats.beating.Store(true)
	silence := 200 * time.Millisecond
	tr, err := New(Config{Self: "a", Listen: "127.0.0.1:0", Heartbeat: 50 * time.Millisecond, Silence: silence, Logger: testLogger(t),
		Peers: map[node.NodeID]string{"beats": beats.ln.Addr().String(), "mute": mute.ln.Addr().String()}}, func(node.Message) {})
	require.NoError(t, err)
	require.NoError(t, tr.Start())
	t.Cleanup(func() { tr.Close() })

	eventually(t, "the beating peer to be reachable", func() bool { return tr.Reachable()["beats"] })
	eventually(t, "the mute peer to be connected", func() bool { return tr.Stats().Peers["mute"].Connected })
	time.Sleep(2 * silence)
	require.Equal(t, map[node.NodeID]bool{"beats": true, "mute": false}, tr.Reachable())

	beats.beating.Store(false)
	stopped := time.Now()
	eventually(t, "the paused peer to be unreachable", func() bool { return !tr.Reachable()["beats"] })
	require.Less(t, time.Since(stopped), silence+500*time.Millisecond, "noticed too late")
	require.True(t, tr.Stats().Peers["beats"].Connected, "the connection is still up: only the heartbeats tell")

	beats.beating.Store(true)
	eventually(t, "the resumed peer to be reachable again", func() bool { return tr.Reachable()["beats"] })
	require.False(t, tr.Stats().Peers["beats"].LastHeard.IsZero())
	require.True(t, tr.Stats().Peers["mute"].LastHeard.IsZero())
}

// Two real transports hear each other's heartbeats, and an idle link stays reachable.
func TestHeartbeatsKeepIdlePeersReachable(t *testing.T) {
	ts, _ := clusterWith(t, func(_ node.NodeID, c *Config) { c.Heartbeat, c.Silence = 20*time.Millisecond, 100*time.Millisecond }, "a", "b")
	eventually(t, "both to be reachable", func() bool { return ts[0].Reachable()["b"] && ts[1].Reachable()["a"] })
	for range 10 {
		time.Sleep(30 * time.Millisecond)
		require.True(t, ts[0].Reachable()["b"], "an idle peer flapped")
		require.True(t, ts[1].Reachable()["a"], "an idle peer flapped")
	}
	require.NoError(t, ts[1].Close())
	eventually(t, "a to notice b is gone", func() bool { return !ts[0].Reachable()["b"] })
}

func TestBackoff(t *testing.T) {
	tr, err := New(Config{Self: "a", Listen: "127.0.0.1:0", MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}, func(node.Message) {})
	require.NoError(t, err)
	seen := map[time.Duration]bool{}
	for failures := 1; failures < 40; failures++ {
		ceiling := min(10*time.Millisecond<<(failures-1), 200*time.Millisecond)
		for range 50 {
			d := tr.backoff(failures)
			require.GreaterOrEqual(t, d, max(ceiling/2, 10*time.Millisecond), "failures=%d", failures)
			require.LessOrEqual(t, d, ceiling, "failures=%d", failures)
			seen[d] = true
		}
	}
	require.Greater(t, len(seen), 10, "no jitter")
}

func TestHello(t *testing.T) {
	var b bytes.Buffer
	b.Write(appendHello(nil, "node-7"))
	h, err := readHello(bufio.NewReader(&b))
	require.NoError(t, err)
	require.Equal(t, hello{from: "node-7"}, h)

	nonce := bytes.Repeat([]byte{7}, nonceLen)
	b.Write(appendAuthHello(nil, "node-7", "node-8", nonce))
	h, err = readHello(bufio.NewReader(&b))
	require.NoError(t, err)
	require.Equal(t, hello{from: "node-7", to: "node-8", nonce: nonce}, h)
}

// BenchmarkSend measures one-way throughput of Store messages between two transports,
// without and with a cluster secret.
func BenchmarkSend(b *testing.B) {
	b.Run("plain", func(b *testing.B) { benchmarkSend(b, nil) })
	b.Run("secret", func(b *testing.B) { benchmarkSend(b, testSecret) })
}

func benchmarkSend(b *testing.B, secret []byte) {
	addrs := map[node.NodeID]string{"a": freeAddr(b), "b": freeAddr(b)}
	var got sync.WaitGroup
	recv, err := New(Config{Self: "b", Listen: addrs["b"], Peers: addrs, ClusterSecret: secret}, func(node.Message) { got.Done() })
	require.NoError(b, err)
	require.NoError(b, recv.Start())
	defer recv.Close()
	send, err := New(Config{Self: "a", Listen: addrs["a"], Peers: addrs, QueueSize: 1 << 16, ClusterSecret: secret}, func(node.Message) {})
	require.NoError(b, err)
	require.NoError(b, send.Start())
	defer send.Close()
	m := testMsg("a", "b", 2)
	got.Add(b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for len(send.peerMap()["b"].q) == cap(send.peerMap()["b"].q) {
			runtime.Gosched()
		}
		send.Send(m)
	}
	got.Wait()
}

// Messages that waited longer than MaxAge for an unreachable peer are dropped, not
// delivered late: a restarted node must not receive a backlog from before its start.
func TestStaleMessagesDropped(t *testing.T) {
	cfg := pairConfig(t, 100*time.Millisecond)
	a := startTransport(t, cfg("a"))
	for k := range 10 {
		a.Send(testMsg("a", "b", k)) // b is down: these wait
	}
	time.Sleep(300 * time.Millisecond) // > MaxAge
	box := newInbox()
	b, err := New(cfg("b"), box.deliver)
	require.NoError(t, err)
	require.NoError(t, b.Start())
	t.Cleanup(func() { b.Close() })
	eventually(t, "a reaching b", func() bool { return a.Reachable()["b"] })
	a.Send(testMsg("a", "b", 99))
	eventually(t, "the fresh message arriving", func() bool { return box.count("a") >= 1 })
	require.Equal(t, []node.Message{testMsg("a", "b", 99)}, box.from("a"))
	require.EqualValues(t, 10, a.Stats().Peers["b"].DroppedOld)
}

// Two transports that start knowing no peer exchange messages once each added the
// other (a cluster growing by joins): before, a message is dropped as for an
// unknown peer and a hello is refused.
func TestAddPeer(t *testing.T) {
	ts, boxes := clusterWith(t, func(id node.NodeID, c *Config) { c.Peers = nil }, "a", "b")
	ts[0].Send(testMsg("a", "b", 1))
	require.Equal(t, uint64(1), ts[0].Stats().UnknownPeer)
	addr := func(tr *Transport) string { return tr.Addr().String() }
	added, err := ts[0].AddPeer("b", addr(ts[1]))
	require.NoError(t, err)
	require.True(t, added)
	added, err = ts[0].AddPeer("b", addr(ts[1]))
	require.NoError(t, err)
	require.False(t, added, "known at that address already")
	_, err = ts[0].AddPeer("c", "no port")
	require.Error(t, err)
	_, err = ts[1].AddPeer("a", addr(ts[0]))
	require.NoError(t, err)
	ts[0].Send(testMsg("a", "b", 2))
	ts[1].Send(testMsg("b", "a", 3))
	eventually(t, "both messages arrive", func() bool { return boxes[1].count("a") == 1 && boxes[0].count("b") == 1 })
	require.Contains(t, ts[0].Reachable(), node.NodeID("b"))
}

// A peer that comes back at another address is dialled there once AddPeer says so.
func TestAddPeerChangesTheAddress(t *testing.T) {
	ts, boxes := clusterWith(t, func(id node.NodeID, c *Config) { c.Peers = nil }, "a", "b")
	_, err := ts[0].AddPeer("b", freeAddr(t)) // nobody listens there
	require.NoError(t, err)
	_, err = ts[1].AddPeer("a", ts[0].Addr().String())
	require.NoError(t, err)
	ts[0].Send(testMsg("a", "b", 1))
	time.Sleep(100 * time.Millisecond)
	require.Zero(t, boxes[1].count("a"), "sent to the wrong address")
	changed, err := ts[0].AddPeer("b", ts[1].Addr().String())
	require.NoError(t, err)
	require.True(t, changed)
	require.Equal(t, ts[1].Addr().String(), ts[0].Stats().Peers["b"].Addr)
	ts[0].Send(testMsg("a", "b", 2))
	eventually(t, "a message reaches b at its new address", func() bool { return boxes[1].count("a") >= 1 })
}

// Messages written together reach NewBatched's deliver together, in the order sent:
// a backlog queued while the receiver was down arrives in far fewer calls than
// messages.
func TestDeliverBatches(t *testing.T) {
	cfg := pairConfig(t, 0)
	a := startTransport(t, cfg("a"))
	const sent = 100
	for k := range sent {
		a.Send(testMsg("a", "b", k)) // b is down: these wait, then go in one write
	}
	var mu sync.Mutex
	var got []node.Message
	calls := 0
	b, err := NewBatched(cfg("b"), func(ms []node.Message) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, ms...)
		calls++
	})
	require.NoError(t, err)
	require.NoError(t, b.Start())
	t.Cleanup(func() { b.Close() })
	eventually(t, "every message arriving", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == sent
	})
	mu.Lock()
	defer mu.Unlock()
	for k := range sent {
		require.Equal(t, testMsg("a", "b", k), got[k], "message %d", k)
	}
	require.Less(t, calls, sent/2, "delivered one by one")
	// The sender counts a batch after its write returns, maybe after b read it.
	eventually(t, "a counting what it sent", func() bool { return a.Stats().Peers["b"].Sent == sent })
	st := a.Stats().Peers["b"]
	require.NotZero(t, st.Writes)
	require.Less(t, st.Writes, uint64(sent/2), "written one by one")
}

// pairConfig gives the configurations of two transports "a" and "b" on free loopback
// ports that know each other, retrying fast; maxAge is Config.MaxAge (0: the default).
func pairConfig(t *testing.T, maxAge time.Duration) func(node.NodeID) Config {
	peers := map[node.NodeID]string{"a": freeAddr(t), "b": freeAddr(t)}
	return func(self node.NodeID) Config {
		return Config{Self: self, Listen: peers[self], Peers: peers, MaxAge: maxAge,
			MinBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond, Logger: testLogger(t)}
	}
}

// startTransport starts a transport that drops what it receives; it is closed at
// the end of the test.
func startTransport(t *testing.T, cfg Config) *Transport {
	tr, err := New(cfg, func(node.Message) {})
	require.NoError(t, err)
	require.NoError(t, tr.Start())
	t.Cleanup(func() { tr.Close() })
	return tr
}
