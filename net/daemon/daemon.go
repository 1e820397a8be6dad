// Package daemon wires a production node together: the node's goroutine (driver),
// the real clock, the TCP peer transport, the webhook dispatcher, the HTTP API and
// beside it the web console (net/ui) at /ui/.
// cmd/miyamoto's serve command only turns flags into a Config and calls Start; the
// end-to-end tests run that binary.
//
// It must never hold protocol logic: that lives in node/ and runs unchanged in sim/.
package daemon

import (
	"cmp"
	"context"
	cryptorand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/miyamotohq/miyamoto/net/api"
	"github.com/miyamotohq/miyamoto/net/disk"
	"github.com/miyamotohq/miyamoto/net/driver"
	"github.com/miyamotohq/miyamoto/net/metrics"
	"github.com/miyamotohq/miyamoto/net/peer"
	"github.com/miyamotohq/miyamoto/net/recorder"
	"github.com/miyamotohq/miyamoto/net/ui"
	"github.com/miyamotohq/miyamoto/net/urlpolicy"
	"github.com/miyamotohq/miyamoto/net/webhook"
	"github.com/miyamotohq/miyamoto/node"
)

// Config is a node's production settings. Zero fields get the defaults below.
type Config struct {
	NodeID   string            // default "n1"
	HTTPAddr string            // client API; default 127.0.0.1:8088
	PeerAddr string            // peer transport; default 127.0.0.1:7088 (a node alone listens once a node joins)
	Peers    map[string]string // other members: id -> host:port
	// Join is the HTTP address (host:port or URL) of any member of a running
	// cluster: the node starts outside it and asks to be added (membership.go).
	Join string
	// PeerAdvertise is the peer address the node gives the others (its roster entry,
	// its join request); default PeerAddr. It differs when something between the
	// nodes forwards to PeerAddr: a NAT, a port mapping, or the chaos test's proxies.
	PeerAdvertise string
	Replicas      int           // default 3, capped by the cluster size
	ReplicaOffset time.Duration // default 2s
	MaxClockDrift time.Duration // default 1s
	// PermitValidity is node.Config's (default 200ms): longer than the slowest round
	// trip between members, or limited queues never deliver.
	PermitValidity time.Duration
	Lease          time.Duration // default 30s
	// RemoveAfter: the leader removes a member unreachable this long (0: never).
	RemoveAfter time.Duration
	// ShutdownTimeout bounds how long SIGTERM waits for deliveries in flight before
	// cutting them (they are then released for another attempt). Default 15s.
	ShutdownTimeout time.Duration
	MaxBody         int64         // largest request body; default 1 MiB
	DedupWindow     time.Duration // how long finished tasks (and their names) are kept; default 1h
	// DataDir holds the node's log (net/disk). Empty: memory only, and a crash
	// forgets every task this node held (the other replicas still carry them).
	DataDir string
	// CompactInterval: this often the log drops the records of tasks forgotten
	// after their dedup window. Default 10m.
	CompactInterval time.Duration

	// Security (see the README's "Security" section). Empty: off.
	APITokens      []string // bearer tokens for every endpoint but /healthz and /livez; any one works
	SigningSecrets []string // whsec_... secrets; every delivery is signed with each
	DenyPrivate    bool     // refuse task URLs on loopback, private, link-local ... addresses
	AllowURLs      string   // exceptions to DenyPrivate: prefixes and host names, comma-separated
	ClusterSecret  string   // peers authenticate each other with it
	PeerTLS        PeerTLS  // the peer port speaks mutual TLS with these files
	// InsecurePeers lets the peer port listen beyond loopback without a
	// ClusterSecret (see CheckPeerExposure); Start then logs one warning.
	InsecurePeers bool

	// Admission limits: past them the node answers 503 "full" (0: none).
	MaxPending      int   // pending tasks this node holds; default 1,000,000
	MaxPendingBytes int64 // their approximate memory; default 2 GiB
	MaxQueuePending int   // pending tasks of one queue this node holds; default none
	// MaxQueues caps the queues this node makes known as coordinator (node.Config);
	// default DefaultMaxQueues, negative: none.
	MaxQueues int

	// MaxConnections caps the API's open connections (see conns.go); default
	// DefaultMaxConnections. Start lowers it to fit the open-file limit less
	// the descriptors kept for the log, the peers and the webhooks (fdReserve).
	MaxConnections int

	// RecordDir, when set, keeps the node's flight recording there (net/recorder),
	// in at most RecordSize bytes (default DefaultRecordSize).
	RecordDir  string
	RecordSize int64

	Logger *slog.Logger
	Clock  clock.Clock // default the wall clock
}

// FillDefaults sets every zero field to its default.
func (c *Config) FillDefaults() {
	if c.NodeID == "" {
		c.NodeID = "n1"
	}
	if c.HTTPAddr == "" {
		c.HTTPAddr = "127.0.0.1:8088"
	}
	if c.PeerAddr == "" {
		c.PeerAddr = "127.0.0.1:7088"
	}
	if c.PeerAdvertise == "" {
		c.PeerAdvertise = c.PeerAddr
	}
	if c.Replicas == 0 {
		c.Replicas = 3
	}
	if c.ReplicaOffset == 0 {
		c.ReplicaOffset = 2 * time.Second
	}
	if c.MaxClockDrift == 0 {
		c.MaxClockDrift = time.Second
	}
	if c.Lease == 0 {
		c.Lease = 30 * time.Second
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 15 * time.Second
	}
	if c.CompactInterval == 0 {
		c.CompactInterval = 10 * time.Minute
	}
	if c.MaxPending == 0 {
		c.MaxPending = DefaultMaxPending
	}
	if c.MaxPendingBytes == 0 {
		c.MaxPendingBytes = DefaultMaxPendingBytes
	}
	if c.MaxQueues == 0 {
		c.MaxQueues = DefaultMaxQueues
	}
	if c.MaxConnections == 0 {
		c.MaxConnections = DefaultMaxConnections
	}
	if c.RecordSize == 0 {
		c.RecordSize = DefaultRecordSize
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.Clock == nil {
		c.Clock = clock.New()
	}
}

// Default admission limits: a million pending tasks, or 2 GiB of them (a task
// costs about 1 KB plus its body, URL and headers), whichever comes first.
const (
	DefaultMaxPending      = 1_000_000
	DefaultMaxPendingBytes = 2 << 30
)

// DefaultRecordSize is the default bound of a flight recording: 256 MiB.
const DefaultRecordSize = 256 << 20

// DefaultMaxQueues is the default cap on the queues a node knows.
const DefaultMaxQueues = 10_000

// DefaultMaxConnections is the API's default connection cap: the common default
// open-file limit of 1024.
const DefaultMaxConnections = 1024

// Descriptors kept out of the API's reach (fdReserve): the log's segments, a
// compaction's new segment, its lock and directory, the listeners, standard
// streams, DNS lookups; two per peer (a connection each way); and the webhooks,
// at most webhook.DefaultMaxConcurrent calls in flight plus as many idle pooled
// connections.
const (
	fdReserveBase = 64
	minAPIConns   = 16 // below this the node refuses to start: raise the limit
)

// fdReserve is how many descriptors the node keeps for everything but API clients.
func fdReserve(peers int) int {
	return fdReserveBase + 2*peers + 2*webhook.DefaultMaxConcurrent
}

// connCap is the API's connection cap: MaxConnections, lowered to what the
// open-file limit leaves after fdReserve (limit 0: unknown, not lowered).
func (c *Config) connCap(limit int) (int, error) {
	if c.MaxConnections < 0 {
		return 0, fmt.Errorf("--max-connections: %d is negative", c.MaxConnections)
	}
	if limit <= 0 {
		return c.MaxConnections, nil
	}
	reserve := fdReserve(len(c.Peers))
	if room := limit - reserve; room < c.MaxConnections {
		if room < minAPIConns {
			return 0, fmt.Errorf("the open-file limit (RLIMIT_NOFILE) is %d: the node keeps %d descriptors for its log, peers and webhooks and needs %d more for clients; raise it (ulimit -n %d) or lower --max-connections", limit, reserve, minAPIConns, reserve+c.MaxConnections)
		}
		return room, nil
	}
	return c.MaxConnections, nil
}

// Daemon is a running node.
type Daemon struct {
	cfg Config
	log *slog.Logger
	drv *driver.Driver
	// tr is the peer transport: nil for a single node until a node asks to join
	// (membership.go).
	tr      atomic.Pointer[peer.Transport]
	trMu    sync.Mutex // serializes opening and closing tr
	network *clusterNetwork
	// roster is the roster the node holds (kept by rosterObserver).
	roster  atomic.Pointer[node.Roster]
	store   *disk.Log          // nil in memory
	rec     *recorder.Recorder // nil when not recording
	disp    *webhook.Dispatcher
	httpSrv *http.Server
	httpLn  net.Listener
	conns   *connLimiter
	runDone chan error
	// post hands a function to the node's goroutine (for a transport made later).
	post func(func(*node.Node))
	// postMessages hands a batch of peer messages to the node's goroutine, each to
	// be run by step (made once, so that a batch allocates no function value).
	postMessages func([]node.Message)
	step         func(*node.Node, node.Message)
	// The --join loop (membership.go): its context, and closed when it ended.
	joinCtx  context.Context
	stopJoin context.CancelFunc
	joinDone chan struct{}

	stopCompact, compactDone chan struct{}
	metrics                  *metrics.Node
}

// Start builds and starts everything; it returns once the listeners are bound.
func Start(cfg Config) (*Daemon, error) {
	cfg.FillDefaults()
	d := &Daemon{cfg: cfg, log: cfg.Logger, runDone: make(chan error, 1), metrics: &metrics.Node{}}
	self := node.NodeID(cfg.NodeID)
	members := []node.NodeID{self}
	for id := range cfg.Peers {
		if id == cfg.NodeID {
			continue
		}
		members = append(members, node.NodeID(id))
	}
	sort.Slice(members, func(i, j int) bool { return members[i] < members[j] })

	d.network = &clusterNetwork{d: d}
	var drv *driver.Driver
	post := func(f func(*node.Node)) {
		if drv != nil {
			drv.Post(f)
		}
	}
	d.post = post
	d.step = d.stepMessage
	d.postMessages = func(ms []node.Message) {
		if drv != nil {
			drv.PostMessages(ms, d.step)
		}
	}
	if len(members) > 1 || cfg.Join != "" {
		if err := CheckPeerExposure(cfg); err != nil {
			if !cfg.InsecurePeers {
				return nil, err
			}
			d.log.Warn("the peer port is open beyond loopback without --cluster-secret (--insecure-peers): anyone who reaches " + cfg.PeerAddr + " can claim to be a member and enqueue, finish or cancel tasks and change queues")
		}
		peers := map[node.NodeID]string{}
		for id, addr := range cfg.Peers {
			peers[node.NodeID(id)] = addr
		}
		t, err := d.newTransport(peers)
		if err != nil {
			return nil, err
		}
		d.setTransport(t)
	}
	signer, err := webhook.ParseSecrets(cfg.SigningSecrets)
	if err != nil {
		return nil, fmt.Errorf("--signing-secret: %w", err)
	}
	var policy *urlpolicy.Policy
	if cfg.DenyPrivate {
		allow, err := urlpolicy.ParseAllow(cfg.AllowURLs)
		if err != nil {
			return nil, fmt.Errorf("--allow-url: %w", err)
		}
		policy = &urlpolicy.Policy{Allow: allow}
	} else if cfg.AllowURLs != "" {
		return nil, errors.New("--allow-url: only means something with --deny-private")
	}
	connCap, err := cfg.connCap(openFileLimit())
	if err != nil {
		return nil, err
	}
	apiCfg := api.Config{MaxBody: cfg.MaxBody, Tokens: cfg.APITokens, Logger: cfg.Logger.With("component", "api"), Unauthorized: d.metrics.Unauthorized}
	if policy != nil {
		apiCfg.CheckURL = func(ctx context.Context, u string) error {
			err := policy.CheckURL(ctx, u)
			if urlpolicy.IsTransient(err) {
				return fmt.Errorf("%w: %w", api.ErrCheckLater, err)
			}
			return err
		}
	}
	if err := apiCfg.Validate(); err != nil {
		return nil, fmt.Errorf("--api-token: %w", err)
	}
	d.disp = webhook.New(webhook.Config{NodeID: cfg.NodeID, Signer: signer, Policy: policy}, func(r node.DeliveryResult) {
		d.metrics.Delivered(r)
		post(func(n *node.Node) { d.rec.Result(r); n.HandleDeliveryResult(r) })
	})
	var seed [16]byte
	if _, err := cryptorand.Read(seed[:]); err != nil {
		return nil, fmt.Errorf("seeding the random source: %w", err)
	}
	env := node.Env{
		Network:    d.network,
		Dispatcher: d.disp,
		Rand:       rand.New(rand.NewPCG(binary.LittleEndian.Uint64(seed[:8]), binary.LittleEndian.Uint64(seed[8:]))),
		Observer:   observers{d.metrics, logObserver{cfg.Logger}, newRefusalLog(cfg.Logger, cfg.Clock), rosterObserver{d}},
	}
	if cfg.DataDir != "" {
		l, err := disk.Open(cfg.DataDir, disk.Options{
			Logger: cfg.Logger.With("component", "disk"),
			// Sync's callbacks run on the node's goroutine, like every input.
			Post: func(f func()) { post(func(*node.Node) { f() }) },
		})
		if err != nil {
			return nil, fmt.Errorf("--data-dir %s: %w", cfg.DataDir, err)
		}
		d.store = l
		env.Storage = l
	}
	ncfg := node.Config{
		ID:             self,
		Members:        members,
		PeerAddrs:      peerAddrs(cfg),
		Join:           cfg.Join != "",
		Replicas:       cfg.Replicas,
		ReplicaOffset:  cfg.ReplicaOffset,
		MaxClockDrift:  cfg.MaxClockDrift,
		PermitValidity: cfg.PermitValidity,
		Lease:          cfg.Lease,
		RemoveAfter:    cfg.RemoveAfter,
		DedupWindow:    cfg.DedupWindow,

		MaxTaskBody: cmp.Or(cfg.MaxBody, api.DefaultMaxBody),

		MaxPending:      max(cfg.MaxPending, 0),
		MaxPendingBytes: max(cfg.MaxPendingBytes, 0),
		MaxQueuePending: cfg.MaxQueuePending,
		MaxQueues:       max(cfg.MaxQueues, 0),
	}
	if policy != nil {
		ncfg.CheckTaskURL = policy.CheckURLNoLookup
	}
	if adjustNodeConfig != nil {
		adjustNodeConfig(&ncfg)
	}
	var rec driver.Recorder // an interface holding a nil *Recorder would not be nil
	if cfg.RecordDir != "" {
		r, err := recorder.Open(recorder.Options{Dir: cfg.RecordDir, MaxSize: cfg.RecordSize, Config: ncfg,
			DenyPrivate: cfg.DenyPrivate, AllowURLs: cfg.AllowURLs, Durable: d.store != nil})
		if err != nil {
			d.closeStore()
			return nil, fmt.Errorf("--record %s: %w", cfg.RecordDir, err)
		}
		d.rec, rec = r, r
	}
	drv, err = driver.NewRecorded(ncfg, env, cfg.Clock, rec)
	if err != nil {
		d.closeStore()
		d.rec.Close()
		return nil, err
	}
	d.drv = drv
	// Each file of the recording after the first starts with the node's snapshot,
	// taken on its goroutine (in the recorder's EndInput) between two inputs.
	d.rec.SnapshotWith(drv.Node().Snapshot)

	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("--http-addr %s: %w", cfg.HTTPAddr, err)
	}
	d.conns = newConnLimiter(ln, connCap)
	d.httpLn = d.conns
	if t := d.transport(); t != nil {
		if err := t.Start(); err != nil {
			ln.Close()
			return nil, fmt.Errorf("--peer-addr %s: %w", cfg.PeerAddr, err)
		}
	}
	if err := drv.Start(); err != nil {
		ln.Close()
		if t := d.transport(); t != nil {
			t.Close()
		}
		d.closeStore()
		d.rec.Close()
		return nil, fmt.Errorf("recovering the node's records: %w", err)
	}
	d.roster.Store(drv.Node().Roster()) // Run has not started: the node is ours
	go func() { d.runDone <- drv.Run(context.Background()) }()
	if cfg.Join != "" {
		d.joinCtx, d.stopJoin = context.WithCancel(context.Background())
		d.joinDone = make(chan struct{})
		go d.joinLoop()
	}
	if d.store != nil {
		d.stopCompact = make(chan struct{})
		d.compactDone = make(chan struct{})
		go d.compactLoop()
	}
	d.httpSrv = &http.Server{
		Handler:           withConsole(api.NewHandler(backend{d}, apiCfg)),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		// A keep-alive connection idle this long is closed: idle ones also make
		// way for new ones at the connection cap (conns.go).
		IdleTimeout:    30 * time.Second,
		ConnState:      d.conns.connState,
		MaxHeaderBytes: 1 << 20, // a hard stop in plain text; the API answers past 64 KiB in JSON
		ErrorLog:       log.New(newThrottledLog(cfg.Logger, 10, 10*time.Second), "", 0),
	}
	go func() {
		if err := d.httpSrv.Serve(d.conns); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("http server", "err", err)
		}
	}()
	d.log.Info("node started", "node", self, "http", ln.Addr().String(), "members", len(members), "replicas", min(cfg.Replicas, len(members)), "max_connections", connCap)
	return d, nil
}

// adjustNodeConfig is nil but in a test-only build (unsafe_build.go).
var adjustNodeConfig func(*node.Config)

// closeStore closes the log, if any, on a failed start.
func (d *Daemon) closeStore() {
	if d.store != nil {
		d.store.Close()
	}
}

// withConsole serves the web console's files at ui.Path and everything else with
// the API. The files are public: they hold no data, and every request the console
// makes for data goes through the API and its token check. Any method but GET and
// HEAD under ui.Path still reaches the API (POST /ui enqueues to a queue "ui").
func withConsole(apiHandler http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET "+ui.Path, ui.Handler())
	mux.Handle("/", apiHandler)
	return mux
}

// HTTPAddr is where the API listens.
func (d *Daemon) HTTPAddr() string { return d.httpLn.Addr().String() }

// Shutdown stops accepting requests, lets deliveries in flight finish (cutting and
// releasing those still running after ShutdownTimeout), sends their outcomes, and
// stops the node.
func (d *Daemon) Shutdown(ctx context.Context) error {
	d.log.Info("shutting down")
	httpCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	errHTTP := d.httpSrv.Shutdown(httpCtx)
	d.drv.Post(func(n *node.Node) { d.rec.Call(recorder.Call{Op: recorder.OpDrain}); n.Drain() })
	dispCtx, cancel2 := context.WithTimeout(ctx, d.cfg.ShutdownTimeout)
	defer cancel2()
	if err := d.disp.Close(dispCtx); err != nil {
		d.log.Warn("deliveries cut at shutdown; they will be retried by other replicas", "err", err)
	}
	// Let the node handle the last results and hand their outcomes to the transport.
	syncCtx, cancel3 := context.WithTimeout(ctx, time.Second)
	defer cancel3()
	d.drv.Do(syncCtx, func(*node.Node) {})
	if d.stopJoin != nil {
		d.stopJoin()
		<-d.joinDone
	}
	d.closeTransport(syncCtx)
	if d.stopCompact != nil {
		close(d.stopCompact)
		<-d.compactDone
	}
	d.drv.Stop()
	<-d.drv.Done()
	if err := d.rec.Close(); err != nil {
		d.log.Error("closing the flight recording", "err", err)
	}
	if d.store != nil {
		if err := d.store.Close(); err != nil {
			d.store = nil
			return err
		}
	}
	return errHTTP
}

// compactLoop drops from the log, every CompactInterval, the records of the tasks the
// node forgot after their dedup window. Appends go on meanwhile (net/disk keeps them).
func (d *Daemon) compactLoop() {
	defer close(d.compactDone)
	t := d.cfg.Clock.Ticker(d.cfg.CompactInterval)
	defer t.Stop()
	// A log that may lack what it acknowledged (disk.LostFile) is trusted again once
	// the node no longer acts as one that forgot; checked every second until then.
	var lossCheck <-chan time.Time
	if _, lost := d.store.LostSince(); lost {
		lt := d.cfg.Clock.Ticker(time.Second)
		defer lt.Stop()
		lossCheck = lt.C
		// A new directory looks the same as a wiped one: this is normal at a first start.
		d.log.Info("new or wiped data directory, or a repaired log: acting as a node that forgot until the recovery wait is over")
	}
	for {
		select {
		case <-d.stopCompact:
			return
		case <-lossCheck:
			recovering := true
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := d.drv.Do(ctx, func(n *node.Node) { recovering = n.Recovering() })
			cancel()
			if err != nil || recovering {
				continue
			}
			if err := d.store.ForgetLoss(); err != nil {
				d.log.Error("removing the log's LOST marker", "err", err)
				continue
			}
			lossCheck = nil
			d.log.Info("recovery wait over: the log is trusted again")
			continue
		case <-t.C:
		}
		var policy node.CompactionPolicy
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := d.drv.Do(ctx, func(n *node.Node) {
			d.rec.Call(recorder.Call{Op: recorder.OpCompactionPolicy})
			policy = n.CompactionPolicy()
		})
		cancel()
		if err != nil || !policy.Worth {
			continue
		}
		if err := d.store.CompactRecords(policy.Keep); err != nil {
			d.log.Error("compacting the log", "err", err)
			continue
		}
	}
}

// backend implements api.Backend by posting to the node's goroutine.
type backend struct{ d *Daemon }

func (b backend) Enqueue(ctx context.Context, req node.EnqueueRequest) (string, error) {
	ch := make(chan node.EnqueueResult, 1)
	if !b.d.drv.Post(func(n *node.Node) {
		b.d.rec.Enqueue(req)
		n.Enqueue(req, func(r node.EnqueueResult) { ch <- r })
	}) {
		return "", node.ErrStopping
	}
	select {
	case r := <-ch:
		b.d.metrics.Enqueued(r.Err)
		return r.ID, r.Err
	case <-ctx.Done():
		b.d.metrics.Enqueued(ctx.Err())
		return "", ctx.Err()
	}
}

func (b backend) Lookup(ctx context.Context, id string) (node.TaskStatus, error) {
	return call(ctx, b.d.drv, func(n *node.Node, reply func(node.TaskStatus, error)) {
		b.d.rec.Call(recorder.Call{Op: recorder.OpLookup, ID: id})
		n.Lookup(id, reply)
	})
}

var _ api.Describer = backend{}

func (b backend) Describe(ctx context.Context, id string) (node.TaskStatus, error) {
	return call(ctx, b.d.drv, func(n *node.Node, reply func(node.TaskStatus, error)) {
		b.d.rec.Call(recorder.Call{Op: recorder.OpDescribe, ID: id})
		n.Describe(id, reply)
	})
}

func (b backend) Cancel(ctx context.Context, id string) (node.TaskState, error) {
	return call(ctx, b.d.drv, func(n *node.Node, reply func(node.TaskState, error)) {
		b.d.rec.Call(recorder.Call{Op: recorder.OpCancel, ID: id})
		n.Cancel(id, reply)
	})
}

var _ api.QueueBackend = backend{}

func (b backend) QueueSetting(ctx context.Context, queue string) (node.QueueSetting, error) {
	var s node.QueueSetting
	err := b.d.drv.Do(ctx, func(n *node.Node) { s, _ = n.QueueSetting(queue) })
	return s, err
}

func (b backend) SetQueue(ctx context.Context, queue string, cfg node.QueueConfig, explicit node.SettingFields, paused bool) (node.QueueSetting, error) {
	return call(ctx, b.d.drv, func(n *node.Node, reply func(node.QueueSetting, error)) {
		b.d.rec.Call(recorder.Call{Op: recorder.OpSetQueue, ID: queue, Config: &cfg, Explicit: explicit, Paused: paused})
		n.SetQueue(queue, cfg, explicit, paused, reply)
	})
}

func (b backend) Queues(ctx context.Context) ([]api.QueueView, error) {
	var out []api.QueueView
	err := b.d.drv.Do(ctx, func(n *node.Node) {
		for _, name := range n.QueueNames() {
			s, _ := n.QueueSetting(name)
			out = append(out, api.ViewOf(s))
		}
	})
	return out, err
}

func (b backend) ClusterCounts(ctx context.Context) (map[string]map[string]int, []string, error) {
	c, err := call(ctx, b.d.drv, func(n *node.Node, reply func(node.ClusterCounts, error)) {
		b.d.rec.Call(recorder.Call{Op: recorder.OpCountCluster})
		n.CountCluster(func(c node.ClusterCounts) { reply(c, nil) })
	})
	if err != nil {
		return nil, nil, err
	}
	out := make(map[string]map[string]int, len(c.Queues))
	for q, byState := range c.Queues {
		out[q] = make(map[string]int, len(byState))
		for st, v := range byState {
			out[q][st.String()] = v
		}
	}
	var missing []string
	for _, m := range c.Missing {
		missing = append(missing, string(m))
	}
	return out, missing, nil
}

func (b backend) PurgeQueue(ctx context.Context, queue string) (node.QueueSetting, int, error) {
	return changeCounted(ctx, b.d.drv, func(n *node.Node, reply func(node.QueueSetting, int, error)) {
		b.d.rec.Call(recorder.Call{Op: recorder.OpPurgeQueue, ID: queue})
		n.PurgeQueue(queue, reply)
	})
}

func (b backend) DeleteQueue(ctx context.Context, queue string, purge bool) (node.QueueSetting, int, error) {
	return changeCounted(ctx, b.d.drv, func(n *node.Node, reply func(node.QueueSetting, int, error)) {
		b.d.rec.Call(recorder.Call{Op: recorder.OpDeleteQueue, ID: queue, Purge: purge})
		n.DeleteQueue(queue, purge, reply)
	})
}

// changeCounted is call for the queue changes that answer with a count of
// cancelled tasks.
func changeCounted(ctx context.Context, drv *driver.Driver, start func(n *node.Node, reply func(node.QueueSetting, int, error))) (node.QueueSetting, int, error) {
	type counted struct {
		set       node.QueueSetting
		cancelled int
	}
	r, err := call(ctx, drv, func(n *node.Node, reply func(counted, error)) {
		start(n, func(s node.QueueSetting, c int, err error) { reply(counted{s, c}, err) })
	})
	return r.set, r.cancelled, err
}

var _ api.ScheduleBackend = backend{}

func (b backend) Schedules(ctx context.Context) ([]node.Schedule, error) {
	var out []node.Schedule
	err := b.d.drv.Do(ctx, func(n *node.Node) { out = n.Schedules() })
	return out, err
}

func (b backend) Schedule(ctx context.Context, name string) (node.Schedule, error) {
	var s node.Schedule
	ok := false
	if err := b.d.drv.Do(ctx, func(n *node.Node) { s, ok = n.Schedule(name) }); err != nil {
		return s, err
	}
	if !ok {
		return s, node.ErrScheduleNotFound
	}
	return s, nil
}

func (b backend) PutSchedule(ctx context.Context, s node.Schedule) (node.Schedule, error) {
	return call(ctx, b.d.drv, func(n *node.Node, reply func(node.Schedule, error)) {
		b.d.rec.Call(recorder.Call{Op: recorder.OpPutSchedule, Schedule: &s})
		n.PutSchedule(s, reply)
	})
}

func (b backend) DeleteSchedule(ctx context.Context, name string) (node.Schedule, error) {
	return call(ctx, b.d.drv, func(n *node.Node, reply func(node.Schedule, error)) {
		b.d.rec.Call(recorder.Call{Op: recorder.OpDeleteSchedule, ID: name})
		n.DeleteSchedule(name, reply)
	})
}

// call starts an asynchronous request on the node's goroutine and waits for its
// reply or ctx.
func call[T any](ctx context.Context, drv *driver.Driver, start func(n *node.Node, reply func(T, error))) (T, error) {
	type res struct {
		v   T
		err error
	}
	ch := make(chan res, 1)
	var zero T
	if !drv.Post(func(n *node.Node) { start(n, func(v T, err error) { ch <- res{v, err} }) }) {
		return zero, node.ErrStopping
	}
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}

func (b backend) ListTasks(ctx context.Context, queue string, state node.TaskState, after string, limit int) ([]node.TaskStatus, []string, error) {
	type res struct {
		list    []node.TaskStatus
		missing []node.NodeID
	}
	r, err := call(ctx, b.d.drv, func(n *node.Node, reply func(res, error)) {
		b.d.rec.Call(recorder.Call{Op: recorder.OpListCluster, ID: queue, State: state, After: after, Limit: limit})
		n.ListCluster(queue, state, after, limit, func(l []node.TaskStatus, m []node.NodeID) { reply(res{l, m}, nil) })
	})
	var missing []string
	for _, m := range r.missing {
		missing = append(missing, string(m))
	}
	return r.list, missing, err
}

// NotReady says why the node cannot take a task now ("" when it can): the node's
// own reasons (starting, learning the queue settings, a log that cannot write), and
// whether it reaches a majority of the members, itself included. Without a majority
// no enqueue can be acknowledged and no claim won, so a load balancer must not send
// it clients. Reachability is the peer transport's heartbeats (see net/peer): a
// member that is down, paused or cut off counts as unreachable within a couple of
// seconds, and a connection that breaks and comes back at once does not count.
func (b backend) NotReady(ctx context.Context) string {
	var reasons []string
	if why := b.d.unreachableMajority(); why != "" {
		reasons = append(reasons, why)
	}
	why := ""
	if err := b.d.drv.Do(ctx, func(n *node.Node) { why = n.NotReady() }); err != nil {
		why = "the node did not answer: " + err.Error()
	}
	if why != "" {
		reasons = append(reasons, why)
	}
	return strings.Join(reasons, "; ")
}

// unreachableMajority says, when this node does not reach a majority of the members
// (itself included), how many and which it misses; "" when it reaches a majority.
// A single node is its own majority.
func (d *Daemon) unreachableMajority() string {
	members := d.members()
	var missing []string
	for _, m := range members {
		if !m.Reachable {
			missing = append(missing, m.ID)
		}
	}
	if len(members)-len(missing) >= len(members)/2+1 {
		return ""
	}
	return fmt.Sprintf("%d of %d members unreachable: %s", len(missing), len(members), strings.Join(missing, ", "))
}

// members lists the cluster's members (the roster the node holds), sorted by ID,
// as this node sees them now.
func (d *Daemon) members() []api.Member {
	var stats map[node.NodeID]peer.PeerStats
	reach := map[node.NodeID]bool{}
	if t := d.transport(); t != nil {
		stats = t.Stats().Peers
		reach = t.Reachable()
	}
	out := []api.Member{}
	roster := d.roster.Load()
	if roster.Epoch == 0 || roster.Has(node.NodeID(d.cfg.NodeID)) { // not once it was removed
		out = append(out, api.Member{ID: d.cfg.NodeID, Addr: d.cfg.PeerAdvertise, Self: true, Reachable: true})
	}
	for _, rm := range roster.Members {
		id, addr := string(rm.ID), rm.Addr
		if id == d.cfg.NodeID {
			continue
		}
		m := api.Member{ID: id, Addr: addr, Reachable: reach[rm.ID]}
		if heard := stats[rm.ID].LastHeard; !heard.IsZero() {
			m.LastHeard = float64(heard.UnixNano()) / 1e9
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (b backend) Cluster() api.Cluster {
	d := b.d
	c := api.Cluster{Self: d.cfg.NodeID, Members: d.members(), Epoch: d.roster.Load().Epoch}
	c.Replicas = min(d.cfg.Replicas, len(c.Members))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	d.drv.Do(ctx, func(n *node.Node) {
		c.Leader, c.Removed, c.TasksOnRemoved = string(n.Leader()), n.Removed(), n.TasksOnRemoved()
	})
	c.Reason = b.NotReady(ctx)
	c.Healthy = c.Reason == ""
	return c
}

func (b backend) WriteMetrics(w io.Writer) {
	var peers []metrics.PeerStat
	if t := b.d.transport(); t != nil {
		for id, p := range t.Stats().Peers {
			peers = append(peers, metrics.PeerStat{Peer: string(id), Sent: p.Sent, Received: p.Received,
				Dropped: p.DroppedQueueFull + p.DroppedBroken + p.DroppedTooLarge + p.DroppedOld, Queued: p.Queued, Connected: p.Connected})
		}
	}
	var conns *metrics.PeerConns
	if t := b.d.transport(); t != nil {
		st := t.Stats()
		conns = &metrics.PeerConns{Refused: st.RefusedConns, NotMember: st.NotMember}
	}
	var ds *metrics.DiskStat
	if b.d.store != nil {
		st := b.d.store.Stats()
		_, lost := b.d.store.LostSince()
		ds = &metrics.DiskStat{Syncs: st.Syncs, Fsyncs: st.Fsyncs, Bytes: st.Bytes, Compactions: st.Compactions, Retries: st.Retries, Lost: lost}
		switch err := b.d.store.Err(); {
		case err == nil:
		case errors.Is(err, disk.ErrRetrying):
			ds.Error = 1
		default:
			ds.Error = 2
		}
	}
	b.d.metrics.Write(w, b.d.cfg.NodeID, peers, conns, ds)
	b.d.writeConnMetrics(w)
	metrics.WriteProcess(w, b.d.cfg.NodeID)
	var counts map[string]map[node.TaskState]int
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var mv moveStats
	leading := false
	if err := b.d.drv.Do(ctx, func(n *node.Node) {
		counts = n.Counts()
		leading, _ = n.Leading()
		mv.onRemoved = n.TasksOnRemoved()
		mv.inFlight, mv.done = n.Moves()
	}); err == nil {
		metrics.WriteDepth(w, b.d.cfg.NodeID, counts)
		b.d.writeRosterMetrics(w, leading, mv)
	}
}

// writeRosterMetrics writes the roster's epoch and size, and whether this node
// holds the roster lease.
// moveStats is re-replication's progress on this node (node/move.go).
type moveStats struct {
	onRemoved, inFlight int
	done                uint64
}

func (d *Daemon) writeRosterMetrics(w io.Writer, leading bool, mv moveStats) {
	id, r := d.cfg.NodeID, d.roster.Load()
	lead := 0
	if leading {
		lead = 1
	}
	fmt.Fprintf(w, "# HELP miyamoto_roster_epoch The epoch of the roster this node holds (1: a static --peers list or a node alone; 0: joining).\n# TYPE miyamoto_roster_epoch gauge\n")
	fmt.Fprintf(w, "miyamoto_roster_epoch{node=%q} %d\n", id, r.Epoch)
	fmt.Fprintf(w, "# HELP miyamoto_roster_members The members of the roster this node holds.\n# TYPE miyamoto_roster_members gauge\n")
	fmt.Fprintf(w, "miyamoto_roster_members{node=%q} %d\n", id, len(r.Members))
	fmt.Fprintf(w, "# HELP miyamoto_leader 1 while this node holds the roster lease.\n# TYPE miyamoto_leader gauge\n")
	fmt.Fprintf(w, "miyamoto_leader{node=%q} %d\n", id, lead)
	fmt.Fprintf(w, "# HELP miyamoto_tasks_on_removed_members Tasks this node holds, not final, whose replica list names a member removed from the roster.\n# TYPE miyamoto_tasks_on_removed_members gauge\n")
	fmt.Fprintf(w, "miyamoto_tasks_on_removed_members{node=%q} %d\n", id, mv.onRemoved)
	fmt.Fprintf(w, "# HELP miyamoto_moves_in_flight Tasks this node is moving to a new replica list now (re-replication).\n# TYPE miyamoto_moves_in_flight gauge\n")
	fmt.Fprintf(w, "miyamoto_moves_in_flight{node=%q} %d\n", id, mv.inFlight)
	fmt.Fprintf(w, "# HELP miyamoto_moves_total Tasks this node moved to a new replica list since it started.\n# TYPE miyamoto_moves_total counter\n")
	fmt.Fprintf(w, "miyamoto_moves_total{node=%q} %d\n", id, mv.done)
}

// writeConnMetrics writes the API connection cap's gauges and counters.
func (d *Daemon) writeConnMetrics(w io.Writer) {
	id := d.cfg.NodeID
	fmt.Fprintf(w, "# HELP miyamoto_http_connections API connections open now, and the cap.\n# TYPE miyamoto_http_connections gauge\n")
	fmt.Fprintf(w, "miyamoto_http_connections{node=%q,kind=\"open\"} %d\n", id, d.conns.open())
	fmt.Fprintf(w, "miyamoto_http_connections{node=%q,kind=\"max\"} %d\n", id, d.conns.max)
	fmt.Fprintf(w, "# HELP miyamoto_http_connections_closed_total Connections closed at the cap: idle ones evicted for a new one, new ones refused 503 while every one was busy.\n# TYPE miyamoto_http_connections_closed_total counter\n")
	fmt.Fprintf(w, "miyamoto_http_connections_closed_total{node=%q,reason=\"evicted\"} %d\n", id, d.conns.evicted.Load())
	fmt.Fprintf(w, "miyamoto_http_connections_closed_total{node=%q,reason=\"refused\"} %d\n", id, d.conns.refused.Load())
}

// observers tells several observers, each of what it has the ability to hear.
type observers []node.Observer

var (
	_ node.DeliveryObserver = observers{}
	_ node.DecisionObserver = observers{}
)

func (o observers) RosterChanged(self node.NodeID, r *node.Roster) {
	for _, x := range o {
		if ro, ok := x.(node.RosterObserver); ok {
			ro.RosterChanged(self, r)
		}
	}
}

func (o observers) TaskStateChanged(t *node.Task, from, to node.TaskState, attempt uint64) {
	for _, x := range o {
		x.TaskStateChanged(t, from, to, attempt)
	}
}

func (o observers) DeliveryEnded(t *node.Task, a node.DeliveryAttempt, due time.Time) {
	for _, x := range o {
		if d, ok := x.(node.DeliveryObserver); ok {
			d.DeliveryEnded(t, a, due)
		}
	}
}

var _ node.ScheduleObserver = observers{}

func (o observers) TickEnqueued(id node.NodeID, schedule string, tick time.Time, t *node.Task) {
	for _, x := range o {
		if so, ok := x.(node.ScheduleObserver); ok {
			so.TickEnqueued(id, schedule, tick, t)
		}
	}
}

var _ node.RefusalObserver = observers{}

func (o observers) MessageRefused(m node.Message, reason node.Refusal, detail string) {
	for _, x := range o {
		if r, ok := x.(node.RefusalObserver); ok {
			r.MessageRefused(m, reason, detail)
		}
	}
}

func (o observers) TaskDecided(t *node.Task, state node.TaskState, reason string) {
	for _, x := range o {
		if d, ok := x.(node.DecisionObserver); ok {
			d.TaskDecided(t, state, reason)
		}
	}
}

func (o observers) TickAnswered(id node.NodeID, schedule string, tick time.Time, t *node.Task, err error) {
	for _, x := range o {
		if so, ok := x.(node.ScheduleObserver); ok {
			so.TickAnswered(id, schedule, tick, t, err)
		}
	}
}

// logObserver logs task state changes at debug level, and at info level a task
// this node ended dead or unknown, with why.
type logObserver struct{ log *slog.Logger }

var _ node.DecisionObserver = logObserver{}

func (o logObserver) TaskDecided(t *node.Task, state node.TaskState, reason string) {
	if state != node.StateDead && state != node.StateUnknown {
		return
	}
	o.log.Info("task ended "+state.String(), "id", t.ID, "queue", t.Queue, "name", t.Name, "url", t.URL, "reason", reason)
}

func (o logObserver) TaskStateChanged(t *node.Task, from, to node.TaskState, attempt uint64) {
	if o.log.Enabled(context.Background(), slog.LevelDebug) {
		o.log.Debug("task", "id", t.ID, "queue", t.Queue, "from", from.String(), "to", to.String(), "attempt", attempt)
	}
}

// TickEnqueued implements node.ScheduleObserver; the answer is what is logged.
func (o logObserver) TickEnqueued(node.NodeID, string, time.Time, *node.Task) {}

// TickAnswered logs a schedule's tick this node enqueued: at debug level when it
// was stored, at info level when it could not be (another replica may still take
// it at its own turn; the schedule's missed-tick policy says what happens if none
// can). A repeat of a tick another node stored first is not logged.
func (o logObserver) TickAnswered(_ node.NodeID, schedule string, tick time.Time, t *node.Task, err error) {
	var dup *node.DuplicateNameError
	switch {
	case err == nil:
		o.log.Debug("schedule tick enqueued", "schedule", schedule, "tick", tick.UTC().Format(time.RFC3339), "id", t.ID, "queue", t.Queue)
	case errors.As(err, &dup):
	default:
		o.log.Info("schedule tick not enqueued here", "schedule", schedule, "tick", tick.UTC().Format(time.RFC3339), "id", t.ID, "err", err)
	}
}

// peerAddrs is where each member's peer port is reached, this node's included (its
// advertised address): the roster of epoch 1 keeps them, so that a member added
// later learns them.
func peerAddrs(cfg Config) map[node.NodeID]string {
	self := cfg.PeerAdvertise
	if self == "" {
		self = cfg.PeerAddr
	}
	addrs := map[node.NodeID]string{node.NodeID(cfg.NodeID): self}
	for id, addr := range cfg.Peers {
		if id != cfg.NodeID {
			addrs[node.NodeID(id)] = addr
		}
	}
	return addrs
}

// ParsePeers reads "id=host:port,id=host:port".
func ParsePeers(s string) (map[string]string, error) {
	out := map[string]string{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for _, part := range strings.Split(s, ",") {
		id, addr, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("%q is not id=host:port", part)
		}
		_, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("%q: %v", part, err)
		}
		if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
			return nil, fmt.Errorf("%q: port %q is not a number from 1 to 65535", part, port)
		}
		if _, dup := out[id]; dup {
			return nil, fmt.Errorf("node %q is listed twice", id)
		}
		out[id] = addr
	}
	return out, nil
}
