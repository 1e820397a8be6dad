package daemon

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// throttledLog writes the http.Server's error lines (a client that breaks off a
// TLS handshake, sends garbage, or an accept that fails) as WARN records, at most
// burst of them per window: any client can cause such a line, so a flood of bad
// clients must not flood the log. The lines dropped are counted and reported once
// the window ends, with the next line that passes.
type throttledLog struct {
	log    *slog.Logger
	burst  int
	window time.Duration
	now    func() time.Time

	mu         sync.Mutex
	start      time.Time
	sent       int
	suppressed int
}

func newThrottledLog(log *slog.Logger, burst int, window time.Duration) *throttledLog {
	return &throttledLog{log: log, burst: burst, window: window, now: time.Now}
}

// Write logs one line (log.Logger calls it once per line).
func (t *throttledLog) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	t.mu.Lock()
	now := t.now()
	if now.Sub(t.start) >= t.window {
		t.start, t.sent = now, 0
	}
	if t.sent >= t.burst {
		t.suppressed++
		t.mu.Unlock()
		return len(p), nil
	}
	t.sent++
	suppressed := t.suppressed
	t.suppressed = 0
	t.mu.Unlock()
	attrs := []slog.Attr{slog.String("err", msg)}
	if suppressed > 0 {
		attrs = append(attrs, slog.Int("suppressed_before", suppressed))
	}
	t.log.LogAttrs(context.Background(), slog.LevelWarn, "http server", attrs...)
	return len(p), nil
}
