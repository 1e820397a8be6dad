package bench

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
	_ "modernc.org/sqlite" // database/sql driver "sqlite", pure Go
)

// How River is tuned (the README's benchmark section says why).
const (
	// riverMaxWorkers is the queue's worker goroutines; like asynq's concurrency, sized
	// for handlers that wait on the network.
	riverMaxWorkers = 100
	// riverFetchCooldown is the least time between two fetches of jobs (default
	// 100 ms; River's doc: "Throughput is limited by this value"). SQLite has no
	// LISTEN/NOTIFY, so an insert by this client triggers a fetch, at most once per
	// cooldown.
	riverFetchCooldown = 5 * time.Millisecond
	// riverFetchPollInterval is the fallback poll when nothing triggered a fetch
	// (default 1 s).
	riverFetchPollInterval = 50 * time.Millisecond
)

// riverTaskArgs is a task as a River job's arguments.
type riverTaskArgs struct {
	Task peerTask `json:"task"`
}

// Kind names the job kind in River's table.
func (riverTaskArgs) Kind() string { return "miyamoto_bench_webhook" }

// riverWebhook is the worker: it delivers the task to the sink.
type riverWebhook struct {
	river.WorkerDefaults[riverTaskArgs]
	client *http.Client
}

// Work delivers the job's task; an error makes River retry it.
func (w *riverWebhook) Work(ctx context.Context, job *river.Job[riverTaskArgs]) error {
	return deliverPeerTask(ctx, w.client, job.Args.Task)
}

// startRiver opens a SQLite database in a temporary file (WAL journal, one
// connection as riversqlite's doc asks), migrates it, and starts a River client that
// works the default queue and a frontend that inserts with it. With fsync every
// commit is synced before it returns (synchronous=FULL); without, SQLite's setting
// for WAL (synchronous=NORMAL): the WAL is synced at checkpoints only, so a crash of
// the process loses nothing, a power cut the last commits.
func startRiver(ctx context.Context, fsync bool, cfg CompareConfig) (*system, error) {
	dir, err := os.MkdirTemp("", "miyamoto-bench-river-")
	if err != nil {
		return nil, err
	}
	sync := "NORMAL"
	if fsync {
		sync = "FULL"
	}
	dsn := "file:" + filepath.Join(dir, "river.db") +
		"?_pragma=journal_mode(WAL)&_pragma=synchronous(" + sync + ")&_pragma=busy_timeout(10000)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	// riversqlite: "a good workaround to avoid [SQLITE_BUSY] errors is to set the
	// maximum pool size to one connection".
	db.SetMaxOpenConns(1)
	closeDB := func() error {
		err := db.Close()
		os.RemoveAll(dir)
		return err
	}
	driver := riversqlite.New(db)
	migrator, err := rivermigrate.New(driver, &rivermigrate.Config{Logger: quietSlog()})
	if err == nil {
		_, err = migrator.Migrate(ctx, rivermigrate.DirectionUp, nil)
	}
	if err != nil {
		closeDB()
		return nil, fmt.Errorf("migrating River's schema: %w", err)
	}
	hc := newClient(riverMaxWorkers)
	workers := river.NewWorkers()
	river.AddWorker(workers, &riverWebhook{client: hc})
	client, err := river.NewClient(driver, &river.Config{
		Queues:            map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: riverMaxWorkers}},
		Workers:           workers,
		FetchCooldown:     riverFetchCooldown,
		FetchPollInterval: riverFetchPollInterval,
		Logger:            quietSlog(),
	})
	if err != nil {
		closeDB()
		return nil, fmt.Errorf("river client: %w", err)
	}
	// The client works until stopped, not until the caller's context ends.
	if err := client.Start(context.WithoutCancel(ctx)); err != nil {
		closeDB()
		return nil, fmt.Errorf("starting River: %w", err)
	}
	stopClient := func(ctx context.Context) error {
		err := client.Stop(ctx) // lets jobs in flight finish until ctx is done
		hc.CloseIdleConnections()
		return errors.Join(err, closeDB())
	}
	front, err := startPeerFrontend(func(ctx context.Context, t peerTask, due time.Time) error {
		var opts *river.InsertOpts
		if time.Until(due) > 0 {
			opts = &river.InsertOpts{ScheduledAt: due}
		}
		_, err := client.Insert(ctx, riverTaskArgs{Task: t}, opts)
		return err
	})
	if err != nil {
		stopClient(ctx)
		return nil, err
	}
	return &system{urls: []string{front.URL()}, close: func(ctx context.Context) error {
		return errors.Join(front.Close(ctx), stopClient(ctx))
	}}, nil
}

// quietSlog drops River's log lines: the sink's counts show whether it worked.
func quietSlog() *slog.Logger { return slog.New(slog.DiscardHandler) }
