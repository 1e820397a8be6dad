package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A flood of idle keep-alive connections (no token needed: /healthz is open) must
// not starve new clients nor the log of descriptors. The node runs under an
// open-file limit of 1024, the common default, and 1,200 connections each make one
// request and then stay open and idle. Before the connection cap the node ran out
// of descriptors: new clients waited in the kernel's backlog, unanswered.
func TestIdleConnectionFloodDoesNotStarveClients(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("lowers RLIMIT_NOFILE with the shell's ulimit")
	}
	bin := binary(t)
	p := &proc{id: "n1", http: freePort(t), log: &lockedBuffer{}, dataDir: t.TempDir()}
	// bash lowers the limit (soft and hard) and execs the node in its place.
	p.cmd = exec.Command("bash", "-c", `ulimit -n 1024 && exec "$0" "$@"`, bin, "serve", "--http-addr", p.http, "--data-dir", p.dataDir)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	require.NoError(t, p.cmd.Start())
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		p.cmd.Wait()
		if t.Failed() {
			t.Logf("--- log of the node:\n%s", tail(p.log.String(), 40))
		}
	})
	waitHealthy(t, p)

	const flood = 1200
	conns, answered := openIdleConns(t, p.http, flood)
	t.Logf("%d connections opened, %d answered", len(conns), answered)
	require.Len(t, conns, flood, "the flood itself could not connect")

	// A new client is served at once, and a synced enqueue is acknowledged.
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	start := time.Now()
	resp, err := client.Get("http://" + p.http + "/healthz")
	require.NoError(t, err, "/healthz during the flood")
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	resp, err = client.PostForm("http://"+p.http+"/flood", url.Values{"task.url": {"http://127.0.0.1:9/"}, "task.countdown": {"3600"}})
	require.NoError(t, err, "enqueue during the flood")
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	require.Less(t, time.Since(start), 5*time.Second)

	resp, err = client.Get("http://" + p.http + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	evicted := false
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), `miyamoto_http_connections_closed_total{node="n1",reason="evicted"}`) {
			evicted = !strings.HasSuffix(sc.Text(), " 0")
			t.Log(sc.Text())
		}
	}
	require.True(t, evicted, "idle connections should have been evicted at the cap")
}

// openIdleConns opens n connections to addr, each sending one keep-alive GET
// /healthz and reading its answer's status line (1 s at most), and leaves them
// open and idle; they are closed at the end of the test. It returns them and how
// many were answered.
func openIdleConns(t *testing.T, addr string, n int) ([]net.Conn, int) {
	t.Helper()
	var (
		mu       sync.Mutex
		conns    []net.Conn
		answered int
		wg       sync.WaitGroup
	)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	next := make(chan int)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				c, err := net.DialTimeout("tcp", addr, time.Second)
				if err != nil {
					continue
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
				c.SetDeadline(time.Now().Add(time.Second))
				fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
				if line, err := bufio.NewReader(c).ReadString('\n'); err == nil && strings.HasPrefix(line, "HTTP/1.1 ") {
					mu.Lock()
					answered++
					mu.Unlock()
				}
				c.SetDeadline(time.Time{})
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return conns, answered
}
