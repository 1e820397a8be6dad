package daemon

import (
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The API's connections are capped so that a flood of idle ones (keep-alive
// connections left open, or connections that never send a request) cannot use up
// the process's file descriptors: past the cap the log could not open a segment,
// the peer transport could not reconnect, and new clients would wait in the
// kernel's backlog forever. At the cap a new connection is taken anyway and the
// oldest idle one (between requests, or still waiting for its first) is closed to
// make room, so a client that sends a request is always served: it is its idle
// neighbours that go. Only when every connection is busy with a request is the new
// one answered 503 and closed.

// connLimiter wraps the API's listener and tracks its connections through the
// http.Server's ConnState hook.
type connLimiter struct {
	net.Listener
	max int

	mu    sync.Mutex
	conns map[net.Conn]*connEntry

	evicted, refused atomic.Uint64
}

// connEntry is one open connection: its state and since when it is in it.
type connEntry struct {
	state http.ConnState
	since time.Time
}

func newConnLimiter(ln net.Listener, max int) *connLimiter {
	return &connLimiter{Listener: ln, max: max, conns: map[net.Conn]*connEntry{}}
}

// Accept returns the next connection, making room for it under the cap.
func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.admit(c) {
			return c, nil
		}
		l.refused.Add(1)
		go refuseConn(c)
	}
}

// admit registers c, closing the oldest idle connection when at the cap; false
// when every connection is busy (c is then not registered).
func (l *connLimiter) admit(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.conns) >= l.max {
		victim := l.oldestIdle()
		if victim == nil {
			return false
		}
		delete(l.conns, victim)
		victim.Close() // the server's read fails and it drops the connection
		l.evicted.Add(1)
	}
	l.conns[c] = &connEntry{state: http.StateNew, since: time.Now()}
	return true
}

// oldestIdle is the connection that has waited longest without a request in
// progress (StateIdle or StateNew), or nil. A linear scan: it runs only at the cap,
// over at most max entries.
func (l *connLimiter) oldestIdle() net.Conn {
	var victim net.Conn
	var since time.Time
	for c, e := range l.conns { // the minimum: order does not matter
		if e.state != http.StateIdle && e.state != http.StateNew {
			continue
		}
		if victim == nil || e.since.Before(since) {
			victim, since = c, e.since
		}
	}
	return victim
}

// connState is the http.Server's ConnState hook.
func (l *connLimiter) connState(c net.Conn, s http.ConnState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.conns[c]
	if e == nil {
		return // evicted already
	}
	switch s {
	case http.StateClosed, http.StateHijacked:
		delete(l.conns, c)
	default:
		e.state, e.since = s, time.Now()
	}
}

// open is the number of connections held now.
func (l *connLimiter) open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

// refusedBody is what a connection refused at the cap is told.
const refusedBody = `{"status": "unavailable", "error": "too many connections: every one is busy with a request; retry shortly"}`

// refuseConn answers a connection refused at the cap with a 503 and closes it,
// without reading its request (a client that has not sent it yet still gets it).
func refuseConn(c net.Conn) {
	defer c.Close()
	c.SetWriteDeadline(time.Now().Add(time.Second))
	c.Write([]byte("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: " +
		strconv.Itoa(len(refusedBody)) + "\r\n\r\n" + refusedBody))
}
