package peer

import (
	"net"
	"sync"
	"time"
)

// Warnings about inbound connections (a refused hello, a bad frame) are what a
// stranger can make this node write at will: they are rate-limited to one line per
// remote host per warnEvery, and the next line says how many were suppressed.
const (
	warnEvery = time.Minute
	// maxWarnHosts bounds the hosts remembered; past it, hosts without a line in the
	// last warnEvery are forgotten, and if none is, new hosts share one budget.
	maxWarnHosts = 1024
)

// warnLimiter decides which warnings are written. Safe for concurrent use.
type warnLimiter struct {
	every time.Duration
	max   int

	mu    sync.Mutex
	hosts map[string]*warnState
	// overflow is the shared budget of hosts that found the table full.
	overflow warnState
}

type warnState struct {
	last       time.Time // when the last line was written
	suppressed int       // warnings not written since then
}

func newWarnLimiter(every time.Duration, max int) *warnLimiter {
	return &warnLimiter{every: every, max: max, hosts: map[string]*warnState{}}
}

// allow reports whether a warning about host may be written now, and how many were
// suppressed since the last one that was.
func (l *warnLimiter) allow(host string, now time.Time) (suppressed int, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.hosts[host]
	if s == nil {
		if len(l.hosts) >= l.max {
			l.forgetQuiet(now)
		}
		if len(l.hosts) >= l.max {
			s = &l.overflow
		} else {
			s = &warnState{}
			l.hosts[host] = s
		}
	}
	if !s.last.IsZero() && now.Sub(s.last) < l.every {
		s.suppressed++
		return 0, false
	}
	suppressed, s.suppressed, s.last = s.suppressed, 0, now
	return suppressed, true
}

// forgetQuiet drops the hosts whose last line is older than every and that have
// nothing suppressed to report.
func (l *warnLimiter) forgetQuiet(now time.Time) {
	for h, s := range l.hosts {
		if now.Sub(s.last) >= l.every && s.suppressed == 0 {
			delete(l.hosts, h)
		}
	}
}

// remoteHost is the host part of c's remote address (the port changes with every
// connection a peer makes).
func remoteHost(c net.Conn) string {
	a := c.RemoteAddr().String()
	if h, _, err := net.SplitHostPort(a); err == nil {
		return h
	}
	return a
}
