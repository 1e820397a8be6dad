package daemon

import (
	"bufio"
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// serveLimited serves h on loopback behind a connLimiter of max connections.
func serveLimited(t *testing.T, max int, h http.Handler) (*connLimiter, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	l := newConnLimiter(ln, max)
	srv := &http.Server{Handler: h, ConnState: l.connState, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l, ln.Addr().String()
}

// get sends a keep-alive GET on a new connection and returns the connection and
// the answer's status line.
func get(t *testing.T, addr, path string) (net.Conn, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
	line, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err)
	return c, strings.TrimSpace(line)
}

func TestConnLimiterEvictsTheOldestIdleConnection(t *testing.T) {
	l, addr := serveLimited(t, 2, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	first, status := get(t, addr, "/")
	require.Equal(t, "HTTP/1.1 200 OK", status)
	_, status = get(t, addr, "/")
	require.Equal(t, "HTTP/1.1 200 OK", status)
	_, status = get(t, addr, "/")
	require.Equal(t, "HTTP/1.1 200 OK", status, "a third client is served at the cap")
	require.EqualValues(t, 1, l.evicted.Load())
	require.LessOrEqual(t, l.open(), 2)
	// The oldest one was closed.
	first.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err := first.Read(make([]byte, 1))
	require.Error(t, err, "the oldest idle connection should be closed")
}

func TestConnLimiterRefusesWhenEveryConnectionIsBusy(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	busy := make(chan struct{}, 2)
	l, addr := serveLimited(t, 2, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/busy" {
			busy <- struct{}{}
			<-release
		}
	}))
	for range 2 {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		fmt.Fprintf(c, "GET /busy HTTP/1.1\r\nHost: x\r\n\r\n")
		<-busy
	}
	_, status := get(t, addr, "/")
	require.Equal(t, "HTTP/1.1 503 Service Unavailable", status)
	require.EqualValues(t, 1, l.refused.Load())
}

func TestThrottledLogWritesABurstThenCountsWhatItDropped(t *testing.T) {
	var buf bytes.Buffer
	tl := newThrottledLog(slog.New(slog.NewTextHandler(&buf, nil)), 3, 10*time.Second)
	now := time.Unix(1000, 0)
	tl.now = func() time.Time { return now }
	for i := range 10 {
		fmt.Fprintf(tl, "http: TLS handshake error from 127.0.0.1:%d: EOF\n", i)
	}
	require.Equal(t, 3, strings.Count(buf.String(), "\n"), buf.String())
	now = now.Add(10 * time.Second)
	fmt.Fprintf(tl, "http: again\n")
	require.Contains(t, buf.String(), "suppressed_before=7")
	require.Equal(t, 4, strings.Count(buf.String(), "\n"))
}

func TestConnCapFitsTheOpenFileLimit(t *testing.T) {
	c := Config{MaxConnections: 1024, Peers: map[string]string{"n1": "a:1", "n2": "b:1", "n3": "c:1"}}
	got, err := c.connCap(0)
	require.NoError(t, err)
	require.Equal(t, 1024, got, "an unknown limit leaves the flag as it is")
	got, err = c.connCap(1 << 20)
	require.NoError(t, err)
	require.Equal(t, 1024, got)
	got, err = c.connCap(1024)
	require.NoError(t, err)
	require.Equal(t, 1024-fdReserve(3), got)
	_, err = c.connCap(fdReserve(3) + 10)
	require.ErrorContains(t, err, "ulimit -n")
}
