package main

import (
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// echoServer echoes every connection on loopback and counts the connections it got.
func echoServer(t *testing.T) (addr string, accepted *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	accepted = new(atomic.Int64)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String(), accepted
}

func newTestProxy(t *testing.T, target string) *Proxy {
	t.Helper()
	p, err := NewProxy(target)
	require.NoError(t, err)
	t.Cleanup(p.Close)
	return p
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// echoes writes msg on c and reads it back within d; it returns what came back
// and the read's error.
func echoes(c net.Conn, msg string, d time.Duration) (string, error) {
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, len(msg))
	n, err := io.ReadFull(c, buf)
	return string(buf[:n]), err
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func TestProxyPasses(t *testing.T) {
	target, accepted := echoServer(t)
	p := newTestProxy(t, target)
	c := dial(t, p.Addr())
	got, err := echoes(c, "hello", 2*time.Second)
	require.NoError(t, err)
	require.Equal(t, "hello", got)
	require.EqualValues(t, 1, accepted.Load())
}

// Refuse resets the connections open and every new one, and forwards nothing.
func TestProxyRefuses(t *testing.T) {
	target, accepted := echoServer(t)
	p := newTestProxy(t, target)
	open := dial(t, p.Addr())
	_, err := echoes(open, "before", 2*time.Second)
	require.NoError(t, err)

	p.SetMode(Refuse)
	_, err = echoes(open, "after", 2*time.Second)
	require.Error(t, err, "an open connection must be cut")
	require.False(t, isTimeout(err), "cut at once, not left hanging: %v", err)

	requireReset(t, p.Addr())
	require.EqualValues(t, 1, accepted.Load(), "nothing reaches the target while refusing")

	p.SetMode(Pass)
	again := dial(t, p.Addr())
	got, err := echoes(again, "back", 2*time.Second)
	require.NoError(t, err)
	require.Equal(t, "back", got)
}

// Blackhole accepts and drops new connections, freezes open ones (their bytes come
// through once it passes again, in order), and resets what it accepted while
// blackholed when it passes again.
func TestProxyBlackholes(t *testing.T) {
	target, accepted := echoServer(t)
	p := newTestProxy(t, target)
	open := dial(t, p.Addr())
	_, err := echoes(open, "before", 2*time.Second)
	require.NoError(t, err)

	p.SetMode(Blackhole)
	_, err = echoes(open, "frozen", 300*time.Millisecond)
	require.True(t, isTimeout(err), "an open connection hangs: %v", err)
	fresh := dial(t, p.Addr()) // accepted: the dialer cannot tell
	_, err = echoes(fresh, "dropped", 300*time.Millisecond)
	require.True(t, isTimeout(err), "a new connection hangs: %v", err)
	require.EqualValues(t, 1, accepted.Load(), "nothing new reaches the target")

	p.SetMode(Pass)
	open.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, len("frozen"))
	_, err = io.ReadFull(open, buf)
	require.NoError(t, err, "the frozen bytes arrive once the link passes")
	require.Equal(t, "frozen", string(buf))
	fresh.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err = fresh.Read(buf)
	require.Error(t, err)
	require.False(t, isTimeout(err), "a connection accepted while blackholed is reset when the link passes: %v", err)
}

// A proxy whose target is down resets each connection, as a refused dial would.
func TestProxyTargetDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := newTestProxy(t, ln.Addr().String())
	ln.Close() // after the proxy took its port, so that it cannot take this one
	requireReset(t, p.Addr())
}

// requireReset checks that a connection to addr is cut at once: the reset comes as
// the dial's error or as the first read's, never as a timeout.
func requireReset(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		defer c.Close()
		_, err = echoes(c, "anyone?", 3*time.Second)
	}
	require.Error(t, err)
	require.False(t, isTimeout(err), "reset at once, not left hanging: %v", err)
}

// Close ends every connection and returns (bounded by the test's timeout).
func TestProxyClose(t *testing.T) {
	target, _ := echoServer(t)
	p, err := NewProxy(target)
	require.NoError(t, err)
	c := dial(t, p.Addr())
	_, err = echoes(c, "x", 2*time.Second)
	require.NoError(t, err)
	p.SetMode(Blackhole)
	done := make(chan struct{})
	go func() { p.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	_, err = net.DialTimeout("tcp", p.Addr(), time.Second)
	require.Error(t, err, "a closed proxy listens no more")
}

// hello is the start of a peer connection from node id: what net/peer sends first
// (without a secret: "MIYA", the wire version, the ID's length, the ID).
func hello(id string) string { return "MIYA\x02" + string(rune(len(id))) + id }

// A door reads the dialer from its hello and hands the connection, hello included,
// to that directed link's proxy: cutting n1→n2 refuses n1's connections to n2 and
// passes n3's; a connection that says no hello of a node is reset.
func TestDoorRoutesByHello(t *testing.T) {
	target, accepted := echoServer(t)
	links := map[Link]*Proxy{}
	link := func(from, to int) *Proxy {
		if from > 2 {
			return nil
		}
		l := Link{from, to}
		if links[l] == nil {
			links[l] = newLinkProxy(target)
			t.Cleanup(links[l].Close)
		}
		return links[l]
	}
	for _, from := range []int{0, 2} {
		link(from, 1)
	}
	d, err := NewDoor(1, link)
	require.NoError(t, err)
	t.Cleanup(d.Close)

	c := dial(t, d.Addr())
	got, err := echoes(c, hello("n3")+"frames", 2*time.Second)
	require.NoError(t, err)
	require.Equal(t, hello("n3")+"frames", got, "the hello goes on unchanged")

	links[Link{0, 1}].SetMode(Refuse)
	c = dial(t, d.Addr())
	_, err = echoes(c, hello("n1")+"frames", 2*time.Second)
	require.Error(t, err, "n1→n2 is cut")
	c = dial(t, d.Addr())
	_, err = echoes(c, hello("n3")+"more", 2*time.Second)
	require.NoError(t, err, "n3→n2 is not")

	before := accepted.Load()
	for _, bad := range []string{"GET / HTTP/1.1\r\n\r\n", hello("n9"), hello("n2")} {
		c = dial(t, d.Addr())
		_, err = echoes(c, bad, 2*time.Second)
		require.Error(t, err, "%q", bad)
	}
	require.Equal(t, before, accepted.Load(), "nothing without a hello of another node reaches the target")
}

// A slow link delays each direction by its own fixed time, without reordering, and
// keeps its throughput: chunks sent back to back arrive the delay later, not the
// delay times their number.
func TestProxySlowLink(t *testing.T) {
	target, _ := echoServer(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	p := newLinkProxy(target)
	p.toTarget, p.fromTarget = 300*time.Millisecond, 200*time.Millisecond
	t.Cleanup(p.Close)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.Handle(c)
		}
	}()
	c := dial(t, ln.Addr().String())
	start := time.Now()
	got, err := echoes(c, "one", 3*time.Second)
	require.NoError(t, err)
	require.Equal(t, "one", got)
	require.GreaterOrEqual(t, time.Since(start), 500*time.Millisecond, "both ways delayed")

	start = time.Now()
	const msg = "abcdefghij"
	for _, m := range msg {
		_, err := c.Write([]byte(string(m)))
		require.NoError(t, err)
		time.Sleep(20 * time.Millisecond)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, len(msg))
	_, err = io.ReadFull(c, buf)
	require.NoError(t, err)
	require.Equal(t, msg, string(buf))
	took := time.Since(start)
	require.GreaterOrEqual(t, took, 680*time.Millisecond) // the last sent at 180 ms, 500 ms both ways
	// One chunk after another, each held 300 ms, would take 3 s.
	require.Less(t, took, 1500*time.Millisecond, "delays add up: the link lost its throughput")

	// Without a delay the same echo is quick.
	q := newTestProxy(t, target)
	start = time.Now()
	_, err = echoes(dial(t, q.Addr()), "one", 3*time.Second)
	require.NoError(t, err)
	require.Less(t, time.Since(start), 300*time.Millisecond)
}
