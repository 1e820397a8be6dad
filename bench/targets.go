package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/miyamotohq/miyamoto/net/daemon"
)

// Target names known to Compare.
const (
	TargetBaseline = "baseline" // the Relay
	TargetSingle   = "single"   // one Miyamoto node, R=1
	TargetCluster3 = "cluster3" // three Miyamoto nodes, R=3
	// The same with storage on (net/disk in a temporary directory; the others keep
	// everything in memory), to measure what durability costs.
	TargetSingleDisk   = "single-disk"
	TargetCluster3Disk = "cluster3-disk"
	// The peers: the queues users compare Miyamoto with, each behind an HTTP
	// frontend that takes Miyamoto's enqueue request, with a worker that POSTs every
	// task to the same sink.
	TargetAsynq    = "asynq"     // hibiken/asynq on a redis-server keeping nothing on disk
	TargetAsynqAOF = "asynq-aof" // the same, redis appending every write and fsyncing it
	TargetRiver    = "river"     // riverqueue/river on SQLite (a WAL file, synced at checkpoints)
	// The same, every commit synced before it returns (SQLite's synchronous=FULL).
	TargetRiverFsync = "river-fsync"
	// Miyamoto's storage targets with every node's flight recorder on (serve
	// --record, a 256 MB ring in the temporary directory): what recording costs a
	// cluster's delivered rate, HTTP in and out included. Not run by default.
	TargetSingleDiskRecord   = "single-disk-record"
	TargetCluster3DiskRecord = "cluster3-disk-record"
)

// OwnTargets are the baseline and Miyamoto's targets; PeerTargets the other queues;
// AllTargets both, in the order Compare runs them by default. RecordTargets are run
// when named; KnownTargets is every name.
var (
	OwnTargets    = []string{TargetBaseline, TargetSingle, TargetCluster3, TargetSingleDisk, TargetCluster3Disk}
	PeerTargets   = []string{TargetAsynq, TargetAsynqAOF, TargetRiver, TargetRiverFsync}
	AllTargets    = append(slices.Clone(OwnTargets), PeerTargets...)
	RecordTargets = []string{TargetSingleDiskRecord, TargetCluster3DiskRecord}
	KnownTargets  = append(slices.Clone(AllTargets), RecordTargets...)
)

// system is one running target: where to enqueue, and how to stop it.
type system struct {
	urls       []string // base URLs of its HTTP APIs
	close      func(context.Context) error
	recordDirs []string // its nodes' flight recordings (the -record targets)
}

// startTarget starts the named target in this process (and, for asynq, a
// redis-server it stops again), on loopback ports, and returns once it takes tasks.
// A target that cannot run on this machine returns a *skipError.
func startTarget(ctx context.Context, name string, cfg CompareConfig) (*system, error) {
	switch name {
	case TargetBaseline:
		r, err := StartRelay(RelayConfig{})
		if err != nil {
			return nil, err
		}
		return &system{urls: []string{r.URL()}, close: r.Close}, nil
	case TargetSingle:
		return startMiyamoto(ctx, 1, 1, storeMemory, cfg)
	case TargetCluster3:
		return startMiyamoto(ctx, 3, 3, storeMemory, cfg)
	case TargetSingleDisk:
		return startMiyamoto(ctx, 1, 1, storeDisk, cfg)
	case TargetCluster3Disk:
		return startMiyamoto(ctx, 3, 3, storeDisk, cfg)
	case TargetSingleDiskRecord:
		return startMiyamoto(ctx, 1, 1, storeDiskRecord, cfg)
	case TargetCluster3DiskRecord:
		return startMiyamoto(ctx, 3, 3, storeDiskRecord, cfg)
	case TargetAsynq:
		return startAsynq(ctx, false, cfg)
	case TargetAsynqAOF:
		return startAsynq(ctx, true, cfg)
	case TargetRiver:
		return startRiver(ctx, false, cfg)
	case TargetRiverFsync:
		return startRiver(ctx, true, cfg)
	}
	return nil, fmt.Errorf("unknown target %q (want one of %s)", name, strings.Join(KnownTargets, ", "))
}

// startMiyamoto starts n daemons that know each other, with the given replication,
// and waits until each /healthz answers 200. A cluster's peer ports are picked free
// and then bound by the daemons, so another process may take one in between: the
// whole start is retried a few times on an error.
func startMiyamoto(ctx context.Context, n, replicas int, store storeMode, cfg CompareConfig) (*system, error) {
	var err error
	for try := 0; try < 3; try++ {
		var s *system
		if s, err = tryStartMiyamoto(ctx, n, replicas, store, cfg); err == nil {
			return s, nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, err
}

// storeMode is what a Miyamoto target keeps: everything in memory, a log on disk,
// or a log and the flight recorder's ring.
type storeMode int

const (
	storeMemory storeMode = iota
	storeDisk
	storeDiskRecord
)

func tryStartMiyamoto(ctx context.Context, n, replicas int, store storeMode, cfg CompareConfig) (*system, error) {
	durable := store != storeMemory
	dataRoot := ""
	if durable {
		dir, err := os.MkdirTemp("", "miyamoto-bench-")
		if err != nil {
			return nil, err
		}
		dataRoot = dir
	}
	ids := make([]string, n)
	peers := map[string]string{}
	if n > 1 {
		for i := range ids {
			ids[i] = fmt.Sprintf("n%d", i+1)
			addr, err := freeLoopbackAddr()
			if err != nil {
				return nil, err
			}
			peers[ids[i]] = addr
		}
	} else {
		ids[0] = "n1"
	}
	var daemons []*daemon.Daemon
	stopAll := func(ctx context.Context) error {
		var errs []error
		for _, d := range daemons {
			if err := d.Shutdown(ctx); err != nil {
				errs = append(errs, err)
			}
		}
		if dataRoot != "" {
			os.RemoveAll(dataRoot)
		}
		return errors.Join(errs...)
	}
	for _, id := range ids {
		dc := daemon.Config{
			NodeID:          id,
			HTTPAddr:        "127.0.0.1:0",
			Replicas:        replicas,
			ShutdownTimeout: cfg.ShutdownTimeout,
		}
		if durable {
			dc.DataDir = filepath.Join(dataRoot, id)
		}
		if store == storeDiskRecord {
			dc.RecordDir, dc.RecordSize = filepath.Join(dataRoot, "rec-"+id), 256<<20
		}
		if n > 1 {
			dc.PeerAddr = peers[id]
			dc.Peers = map[string]string{}
			for other, addr := range peers {
				if other != id {
					dc.Peers[other] = addr
				}
			}
		}
		d, err := daemon.Start(dc)
		if err != nil {
			stopCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout+5*time.Second)
			stopAll(stopCtx)
			cancel()
			return nil, fmt.Errorf("starting node %s: %w", id, err)
		}
		daemons = append(daemons, d)
	}
	s := &system{close: stopAll}
	for i, d := range daemons {
		s.urls = append(s.urls, "http://"+d.HTTPAddr())
		if store == storeDiskRecord {
			s.recordDirs = append(s.recordDirs, filepath.Join(dataRoot, "rec-"+ids[i]))
		}
	}
	for i, u := range s.urls {
		if err := waitHealthy(ctx, u, 15*time.Second); err != nil {
			stopCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout+5*time.Second)
			stopAll(stopCtx)
			cancel()
			return nil, fmt.Errorf("node %s: %w", ids[i], err)
		}
	}
	return s, nil
}

// freeLoopbackAddr returns a loopback address with a port that was free a moment ago.
func freeLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr, nil
}

// waitHealthy polls base/healthz until it answers 200, for at most within.
func waitHealthy(ctx context.Context, base string, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	defer client.CloseIdleConnections()
	last := "no answer"
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/healthz", nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s/healthz not 200 within %v (last: %s)", base, within, last)
		case <-time.After(25 * time.Millisecond):
		}
	}
}
