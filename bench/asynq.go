package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hibiken/asynq"
)

// How asynq is tuned (the README's benchmark section says why).
const (
	// asynqConcurrency is the server's worker goroutines. asynq's default is the
	// number of CPUs, meant for CPU-bound handlers; ours wait on the network, and 100
	// delivered more than 32 here.
	asynqConcurrency = 100
	// asynqServerPool is the server's go-redis pool: every busy worker holds a
	// connection while it acknowledges its task, besides the dequeuer, the forwarder
	// and the heartbeat; go-redis's default (10 per CPU: 20 here) starves them.
	asynqServerPool = asynqConcurrency + 16
	// asynqClientPool is the enqueuing client's pool: one connection per enqueue in
	// flight, and the load runs up to 64 at once.
	asynqClientPool = 64
	// asynqCheckInterval is how long the dequeuer sleeps when the queue is empty
	// (TaskCheckInterval, default 1 s) and how often scheduled tasks are moved to
	// pending (DelayedTaskCheckInterval, default 5 s): the defaults would put up to a
	// second (five with a countdown) on every delivery of an idle queue, which says
	// nothing about throughput. Lower costs redis a poll per interval.
	asynqCheckInterval = 50 * time.Millisecond
	// asynqQueue is the one queue the server serves; Miyamoto's queue name travels
	// in the task.
	asynqQueue = "bench"
	asynqKind  = "webhook"
)

// startAsynq starts a redis-server (with an append-only file fsynced on every write
// when aof, else nothing on disk), an asynq server whose handler delivers to the
// sink, and a frontend enqueuing with an asynq client.
func startAsynq(ctx context.Context, aof bool, cfg CompareConfig) (*system, error) {
	rs, err := startRedis(ctx, aof)
	if err != nil {
		return nil, err
	}
	client := asynq.NewClient(asynq.RedisClientOpt{Addr: rs.addr, PoolSize: asynqClientPool})
	srv := asynq.NewServer(asynq.RedisClientOpt{Addr: rs.addr, PoolSize: asynqServerPool}, asynq.Config{
		Concurrency:              asynqConcurrency,
		Queues:                   map[string]int{asynqQueue: 1},
		TaskCheckInterval:        asynqCheckInterval,
		DelayedTaskCheckInterval: asynqCheckInterval,
		ShutdownTimeout:          cfg.ShutdownTimeout,
		Logger:                   quietLogger{},
		LogLevel:                 asynq.FatalLevel,
	})
	hc := newClient(asynqConcurrency)
	mux := asynq.NewServeMux()
	mux.HandleFunc(asynqKind, func(ctx context.Context, t *asynq.Task) error {
		pt, err := decodePeerTask(t.Payload())
		if err != nil {
			return fmt.Errorf("%v: %w", err, asynq.SkipRetry)
		}
		return deliverPeerTask(ctx, hc, pt)
	})
	stopRedisAndClient := func(ctx context.Context) error {
		return errors.Join(client.Close(), rs.stop(ctx))
	}
	if err := srv.Start(mux); err != nil {
		stopRedisAndClient(ctx)
		return nil, fmt.Errorf("asynq server: %w", err)
	}
	front, err := startPeerFrontend(func(ctx context.Context, t peerTask, due time.Time) error {
		payload, err := encodePeerTask(t)
		if err != nil {
			return err
		}
		opts := []asynq.Option{asynq.TaskID(t.ID), asynq.Queue(asynqQueue)}
		if time.Until(due) > 0 {
			opts = append(opts, asynq.ProcessAt(due))
		}
		_, err = client.EnqueueContext(ctx, asynq.NewTask(asynqKind, payload), opts...)
		return err
	})
	if err != nil {
		srv.Shutdown()
		stopRedisAndClient(ctx)
		return nil, err
	}
	return &system{urls: []string{front.URL()}, close: func(ctx context.Context) error {
		ferr := front.Close(ctx)
		srv.Shutdown() // waits up to ShutdownTimeout for handlers in flight
		hc.CloseIdleConnections()
		return errors.Join(ferr, stopRedisAndClient(ctx))
	}}, nil
}

// quietLogger drops asynq's log lines: the sink's counts show whether it worked.
type quietLogger struct{}

func (quietLogger) Debug(...any) {}
func (quietLogger) Info(...any)  {}
func (quietLogger) Warn(...any)  {}
func (quietLogger) Error(...any) {}
func (quietLogger) Fatal(...any) {}

// redisServer is a redis-server process this package started.
type redisServer struct {
	cmd    *exec.Cmd
	addr   string
	dir    string
	exited chan struct{}
	output *lockedBuffer
}

// startRedis starts Debian's redis-server on a free loopback port with a fresh
// directory, and returns once it answers PING. Without aof it keeps nothing on disk
// (--save "" --appendonly no); with aof it appends every write and fsyncs it before
// answering (--appendonly yes --appendfsync always). A missing redis-server is a
// skipError. The port is picked free and then bound by redis-server, so another
// process may take it in between: the start is retried a few times.
func startRedis(ctx context.Context, aof bool) (*redisServer, error) {
	path, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, &skipError{"redis-server is not installed (Debian: apt-get install redis-server)"}
	}
	for try := 0; ; try++ {
		rs, err := tryStartRedis(ctx, path, aof)
		if err == nil || try == 2 || ctx.Err() != nil {
			return rs, err
		}
	}
}

func tryStartRedis(ctx context.Context, path string, aof bool) (*redisServer, error) {
	addr, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	_, port, _ := net.SplitHostPort(addr)
	dir, err := os.MkdirTemp("", "miyamoto-bench-redis-")
	if err != nil {
		return nil, err
	}
	args := []string{"--port", port, "--bind", "127.0.0.1", "--dir", dir, "--save", "",
		"--daemonize", "no", "--logfile", "", "--loglevel", "warning"}
	if aof {
		args = append(args, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		args = append(args, "--appendonly", "no")
	}
	rs := &redisServer{cmd: exec.Command(path, args...), addr: addr, dir: dir, exited: make(chan struct{}), output: &lockedBuffer{}}
	rs.cmd.Stdout, rs.cmd.Stderr = rs.output, rs.output
	if err := rs.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("starting redis-server: %w", err)
	}
	go func() {
		rs.cmd.Wait()
		close(rs.exited)
	}()
	if err := rs.waitReady(ctx, 10*time.Second); err != nil {
		stopCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		rs.stop(stopCtx)
		return nil, err
	}
	return rs, nil
}

// waitReady polls with PING until redis-server answers +PONG, exits, or within passes.
func (rs *redisServer) waitReady(ctx context.Context, within time.Duration) error {
	deadline := time.Now().Add(within)
	last := "no answer"
	for {
		if err := pingRedis(rs.addr); err == nil {
			return nil
		} else {
			last = err.Error()
		}
		select {
		case <-rs.exited:
			return fmt.Errorf("redis-server exited at start: %s", strings.TrimSpace(rs.output.String()))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server on %s did not answer PING within %v (last: %s)", rs.addr, within, last)
		}
	}
}

func pingRedis(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := io.WriteString(conn, "PING\r\n"); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}

// stop sends SIGTERM to the process it started, kills it if it has not exited when
// ctx is done, and removes its directory.
func (rs *redisServer) stop(ctx context.Context) error {
	defer os.RemoveAll(rs.dir)
	select {
	case <-rs.exited:
		return nil
	default:
	}
	rs.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-rs.exited:
		return nil
	case <-ctx.Done():
		rs.cmd.Process.Kill()
		<-rs.exited
		return fmt.Errorf("redis-server (pid %d) did not stop on SIGTERM; killed", rs.cmd.Process.Pid)
	}
}

// lockedBuffer collects a process's output for an error message.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() > 64<<10 {
		return len(p), nil // enough to say what went wrong
	}
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
