// Command sink is a worker for trying Miyamoto out: it answers every request 200 at
// once and prints, one line each, the X-Task-Id of every request it gets, so that
// `sort | uniq -d` over its output shows any task delivered twice. The README's
// walkthrough ("Growing, losing and shrinking a cluster") runs it.
//
//	go build -o sink ./bench/cmd/sink
//	./sink --addr 127.0.0.1:9099 > delivered.txt &
//
// It never retries, queues or buffers: a line is written before the answer is sent,
// so a task counted by the queue as delivered is in the output.
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// run listens on --addr and serves until the process is killed; it returns only on
// a bad flag (2) or when it cannot listen (1).
func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sink", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:9099", "where to listen, host:port")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sink: takes no arguments, not %q (did you mean --addr %s?)\n", fs.Arg(0), fs.Arg(0))
		return 2
	}
	if _, _, err := net.SplitHostPort(*addr); err != nil {
		fmt.Fprintf(stderr, "sink: --addr: want host:port, e.g. 127.0.0.1:9099, not %q\n", *addr)
		return 2
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintf(stderr, "sink: %v\n", err)
		return 1
	}
	srv := &http.Server{Handler: newPrinter(stdout), ReadHeaderTimeout: 5 * time.Second}
	fmt.Fprintf(stderr, "sink: answering 200 on http://%s, one X-Task-Id a line on stdout\n", ln.Addr())
	fmt.Fprintf(stderr, "sink: %v\n", srv.Serve(ln))
	return 1
}

// printer answers 200 and writes each request's X-Task-Id ("-" when it has none).
type printer struct {
	mu  sync.Mutex // one whole line at a time
	out io.Writer
}

func newPrinter(out io.Writer) *printer { return &printer{out: out} }

func (p *printer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20)) // so the connection is reused
	id := r.Header.Get("X-Task-Id")
	if id == "" {
		id = "-"
	}
	p.mu.Lock()
	fmt.Fprintln(p.out, id)
	p.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}
