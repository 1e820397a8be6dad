package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/miyamotohq/miyamoto/net/api"
	"github.com/miyamotohq/miyamoto/net/daemon"
	"github.com/miyamotohq/miyamoto/net/urlpolicy"
	"github.com/miyamotohq/miyamoto/net/version"
	"github.com/miyamotohq/miyamoto/net/webhook"
	"github.com/miyamotohq/miyamoto/node"
)

// serveFlags lists serve's flags; each may also come from MIYAMOTO_<NAME> in the
// environment (dashes as underscores, upper case). A flag given on the command line
// wins over the environment.
func runServe(args []string, stdout, stderr io.Writer) int {
	cfg, logs, err := parseServe(args, os.LookupEnv)
	if errors.Is(err, flag.ErrHelp) {
		var u usageError
		if errors.As(err, &u) {
			fmt.Fprint(stdout, u.usage)
		}
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "miyamoto serve: %v\n", err)
		return exitBadArgs
	}
	cfg.Logger = logs.logger(stderr)
	// Catch signals before starting, so that none is missed while it starts.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	d, err := daemon.Start(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "miyamoto serve: %v\n", err)
		return exitFailed
	}
	fmt.Fprintf(stdout, "miyamoto: node %s serving on http://%s (build %s)\n", cfg.NodeID, d.HTTPAddr(), version.String())
	s := <-sig
	cfg.Logger.Info("signal received", "signal", s.String())
	ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout+10*time.Second)
	defer cancel()
	if err := d.Shutdown(ctx); err != nil {
		cfg.Logger.Warn("shutdown", "err", err)
	}
	return exitOK
}

// logOptions is how serve logs: --log-level and --log-format.
type logOptions struct {
	Level slog.Level
	JSON  bool
}

// logger writes to w: log/slog's text format, or one JSON object a line.
func (o logOptions) logger(w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: o.Level}
	if o.JSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// minConnections is the smallest --max-connections: a console, a probe and a few
// clients at once.
const minConnections = 16

func parseServe(args []string, env func(string) (string, bool)) (daemon.Config, logOptions, error) {
	var cfg daemon.Config
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	nodeID := fs.String("node-id", "n1", "this node's ID, unique in the cluster")
	httpAddr := fs.String("http-addr", "127.0.0.1:8088", "address of the client HTTP API")
	peerAddr := fs.String("peer-addr", "127.0.0.1:7088", "address other nodes reach this one at (with --peers or --join, or once a node joins this one)")
	peerAdvertise := fs.String("peer-advertise", "", "the address other nodes are told to reach this one at, when it is not --peer-addr (a NAT or a proxy forwards it to --peer-addr); default --peer-addr")
	peers := fs.String("peers", "", "the other members as id=host:port,id=host:port")
	join := fs.String("join", "", "join a running cluster through any member's HTTP address (host:port); instead of --peers")
	replicas := fs.Int("replicas", 3, "replicas per task (capped by the cluster size)")
	offset := fs.Duration("replica-offset", 2*time.Second, "delay between replica k and k+1 firing, e.g. 2s")
	drift := fs.Duration("max-clock-drift", time.Second, "largest clock disagreement between nodes, e.g. 500ms")
	lease := fs.Duration("lease", 30*time.Second, "how long a claim holds; deliveries end max-clock-drift before it")
	permitValidity := fs.Duration("permit-validity", node.DefaultPermitValidity, "how late a limited queue's permit may reach its claimant; longer than the slowest round trip between members (at most a quarter of --lease)")
	removeAfter := fs.Duration("remove-after", 0, "the leader removes a member unreachable this long, e.g. 10m (0: never; at least --lease)")
	shutdown := fs.Duration("shutdown-timeout", 15*time.Second, "on SIGTERM, how long in-flight deliveries may finish")
	maxBody := fs.Int64("max-body", 1<<20, "largest request body in bytes")
	dedup := fs.Duration("dedup-window", time.Hour, "how long a finished task's name stays taken, e.g. 1h")
	dataDir := fs.String("data-dir", defaultDataRoot+"/<node-id>", "directory of the node's log; empty (--data-dir=) keeps everything in memory")
	var apiTokens, signingSecrets listFlag
	fs.Var(&apiTokens, "api-token", "require Authorization: Bearer <token> on every endpoint but /healthz and /livez; repeat (or separate with commas) to accept several during a rotation")
	fs.Var(&signingSecrets, "signing-secret", "sign every delivery the Standard Webhooks way with this whsec_... secret; repeat to sign with several during a rotation")
	denyPrivate := fs.Bool("deny-private", false, "refuse task URLs that resolve to loopback, private, link-local, unique-local or unspecified addresses, at enqueue and at connect time")
	allowURL := fs.String("allow-url", "", "exceptions to --deny-private: address prefixes and host names, comma-separated (e.g. 10.1.0.0/16,worker.internal)")
	clusterSecret := fs.String("cluster-secret", "", "peers authenticate each other with this shared secret (the same on every node, 16+ characters)")
	peerTLSCert := fs.String("peer-tls-cert", "", "this node's certificate (PEM) for the peer port's mutual TLS; it names the node ID as a DNS subjectAltName")
	peerTLSKey := fs.String("peer-tls-key", "", "the key (PEM) of --peer-tls-cert")
	peerTLSCA := fs.String("peer-tls-ca", "", "the CA certificate(s) (PEM) that signed every node's --peer-tls-cert")
	insecurePeers := fs.Bool("insecure-peers", false, "let --peer-addr listen beyond loopback without --cluster-secret (anyone who reaches it can act as a member)")
	maxPending := fs.Int("max-pending", daemon.DefaultMaxPending, "most pending tasks this node holds before it answers 503 (0: no limit)")
	maxPendingBytes := fs.Int64("max-pending-bytes", daemon.DefaultMaxPendingBytes, "most memory its pending tasks take, approximately, before it answers 503 (0: no limit)")
	maxQueuePending := fs.Int("max-queue-pending", 0, "most pending tasks of any one queue this node holds before it answers 503 (0: no limit)")
	maxQueues := fs.Int("max-queues", daemon.DefaultMaxQueues, "most queues this node knows (set, or holding tasks) before it refuses a new one with 409 (0: no limit)")
	maxConns := fs.Int("max-connections", daemon.DefaultMaxConnections, "most API connections open at once (lowered to fit the open-file limit); at the cap the oldest idle one is closed for a new one")
	record := fs.String("record", "", "flight recorder: keep every input of the node, its clock readings and random draws in this directory, for miyamoto replay, check and import (empty: off)")
	recordSize := fs.String("record-size", "256MB", "most bytes --record keeps (KB, MB, GB are powers of 1024); the oldest files go first")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	logFormat := fs.String("log-format", "text", "text (log/slog's key=value lines) or json (one JSON object a line)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			var b strings.Builder
			b.WriteString("usage: miyamoto serve [flags]\n\nEach flag may also come from MIYAMOTO_<FLAG> in the environment (e.g. MIYAMOTO_HTTP_ADDR).\n\n")
			fs.SetOutput(&b)
			fs.PrintDefaults()
			return cfg, logOptions{}, usageError{b.String()}
		}
		return cfg, logOptions{}, errors.New(strings.TrimPrefix(err.Error(), "flag provided but not defined: ") + flagHint(err))
	}
	if fs.NArg() > 0 {
		return cfg, logOptions{}, fmt.Errorf("unexpected argument %q (serve takes only flags)", fs.Arg(0))
	}
	// The environment fills what the command line left unset.
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var envErr error
	fromEnv := map[string]string{} // flag -> the variable that set it
	fs.VisitAll(func(f *flag.Flag) {
		name := "MIYAMOTO_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := env(name); ok && !set[f.Name] && envErr == nil {
			if err := fs.Set(f.Name, v); err != nil {
				envErr = fmt.Errorf("%s=%q: invalid value for --%s", name, v, f.Name)
			}
			fromEnv[f.Name] = name
		}
	})
	if envErr != nil {
		return cfg, logOptions{}, envErr
	}
	bad := func(flag, format string, a ...any) (daemon.Config, logOptions, error) {
		msg := fmt.Sprintf(format, a...)
		if name, ok := fromEnv[flag]; ok {
			msg += " (set by " + name + ")"
		}
		return cfg, logOptions{}, fmt.Errorf("--%s: %s", flag, msg)
	}
	if strings.TrimSpace(*nodeID) == "" || strings.ContainsAny(*nodeID, ",= ") {
		return bad("node-id", "must be non-empty without spaces, commas or '=', not %q", *nodeID)
	}
	if !set["data-dir"] && fromEnv["data-dir"] == "" {
		dir, err := defaultDataDir(*nodeID)
		if err != nil {
			return bad("data-dir", "%v", err)
		}
		*dataDir = dir
	}
	p, err := daemon.ParsePeers(*peers)
	if err != nil {
		return bad("peers", "%v", err)
	}
	if *join != "" && len(p) > 0 {
		return bad("join", "a node either joins a running cluster (--join) or lists its members (--peers), not both")
	}
	if *join != "" {
		hostport := *join
		if i := strings.Index(hostport, "://"); i >= 0 {
			hostport = strings.TrimSuffix(hostport[i+3:], "/")
		}
		if _, port, err := splitHostPort(hostport); err != nil || port == "" {
			return bad("join", "must be a member's HTTP address, host:port, not %q", *join)
		}
	}
	if *replicas < 1 || *replicas > 64 {
		return bad("replicas", "must be between 1 and 64, not %d", *replicas)
	}
	if *offset < 0 {
		return bad("replica-offset", "must not be negative, not %s", *offset)
	}
	if *drift < 0 {
		return bad("max-clock-drift", "must not be negative, not %s", *drift)
	}
	if *removeAfter != 0 && *removeAfter < *lease {
		return bad("remove-after", "must be 0 (never) or at least --lease (%s), not %s", *lease, *removeAfter)
	}
	if *lease <= 2**drift {
		return bad("lease", "must be longer than twice --max-clock-drift (%s), not %s", 2**drift, *lease)
	}
	if *permitValidity <= 0 || *permitValidity > *lease/4 {
		return bad("permit-validity", "must be positive and at most a quarter of --lease (%s), not %s", *lease/4, *permitValidity)
	}
	if *shutdown <= 0 {
		return bad("shutdown-timeout", "must be positive, not %s", *shutdown)
	}
	if *maxBody < 1024 {
		return bad("max-body", "must be at least 1024 bytes, not %d", *maxBody)
	}
	if *dedup <= 0 {
		return bad("dedup-window", "must be positive, not %s", *dedup)
	}
	for _, l := range []struct {
		flag string
		v    int64
	}{{"max-pending", int64(*maxPending)}, {"max-pending-bytes", *maxPendingBytes}, {"max-queue-pending", int64(*maxQueuePending)}, {"max-queues", int64(*maxQueues)}} {
		if l.v < 0 {
			return bad(l.flag, "must not be negative (0 means no limit), not %d", l.v)
		}
	}
	if *maxConns < minConnections {
		return bad("max-connections", "must be at least %d, not %d", minConnections, *maxConns)
	}
	if *clusterSecret != "" && len(*clusterSecret) < 16 {
		return bad("cluster-secret", "must be at least 16 characters (use a long random one), not %d", len(*clusterSecret))
	}
	if *allowURL != "" && !*denyPrivate {
		return bad("allow-url", "only means something with --deny-private")
	}
	if *record != "" && *dataDir != "" && filepath.Clean(*record) == filepath.Clean(*dataDir) {
		return bad("record", "must not be the --data-dir (%s): give the recording a directory of its own", *dataDir)
	}
	recSize, err := parseSize(*recordSize)
	if err != nil {
		return bad("record-size", "%v", err)
	}
	if recSize < minRecordSize {
		return bad("record-size", "must be at least 1MB, not %s", *recordSize)
	}
	var logs logOptions
	if err := logs.Level.UnmarshalText([]byte(*logLevel)); err != nil {
		return bad("log-level", "must be debug, info, warn or error, not %q", *logLevel)
	}
	switch *logFormat {
	case "text":
	case "json":
		logs.JSON = true
	default:
		return bad("log-format", "must be text or json, not %q", *logFormat)
	}
	for _, a := range []struct{ flag, v string }{{"http-addr", *httpAddr}, {"peer-addr", *peerAddr}, {"peer-advertise", *peerAdvertise}} {
		if a.v == "" && a.flag == "peer-advertise" {
			continue
		}
		if _, port, err := splitHostPort(a.v); err != nil || port == "" {
			return bad(a.flag, "must be host:port, not %q", a.v)
		}
	}
	cfg = daemon.Config{NodeID: *nodeID, HTTPAddr: *httpAddr, PeerAddr: *peerAddr, PeerAdvertise: *peerAdvertise, Peers: p, Join: *join, Replicas: *replicas,
		ReplicaOffset: *offset, MaxClockDrift: *drift, PermitValidity: *permitValidity, Lease: *lease, RemoveAfter: *removeAfter, ShutdownTimeout: *shutdown, MaxBody: *maxBody, DedupWindow: *dedup, DataDir: *dataDir,
		APITokens: apiTokens, SigningSecrets: signingSecrets, DenyPrivate: *denyPrivate, AllowURLs: *allowURL, ClusterSecret: *clusterSecret, InsecurePeers: *insecurePeers,
		PeerTLS:    daemon.PeerTLS{Cert: *peerTLSCert, Key: *peerTLSKey, CA: *peerTLSCA},
		MaxPending: noLimit(*maxPending), MaxPendingBytes: int64(noLimit(int(*maxPendingBytes))), MaxQueuePending: *maxQueuePending,
		MaxConnections: *maxConns, MaxQueues: noLimit(*maxQueues), RecordDir: *record, RecordSize: recSize}
	// Check what the daemon would refuse now, so that a bad flag is one line naming it.
	if err := daemon.CheckPeerExposure(cfg); err != nil && !cfg.InsecurePeers {
		msg := strings.TrimPrefix(err.Error(), "--peer-addr ")
		if name, ok := fromEnv["peer-addr"]; ok {
			msg += " (--peer-addr set by " + name + ")"
		}
		return cfg, logOptions{}, fmt.Errorf("--peer-addr %s", msg)
	}
	if cfg.PeerTLS.Enabled() {
		if _, err := cfg.PeerTLS.Load(); err != nil {
			return cfg, logOptions{}, err
		}
	}
	if err := (api.Config{Tokens: cfg.APITokens}).Validate(); err != nil {
		return bad("api-token", "%s", oneLine(err))
	}
	if _, err := webhook.ParseSecrets(cfg.SigningSecrets); err != nil {
		return bad("signing-secret", "%s", oneLine(err))
	}
	if _, err := urlpolicy.ParseAllow(cfg.AllowURLs); err != nil {
		return bad("allow-url", "%s", oneLine(err))
	}
	return cfg, logs, nil
}

// defaultDataRoot holds, one subdirectory per node ID, the logs of nodes started
// without --data-dir: several nodes started from one directory (the README's
// three-node cluster) then each get their own log instead of fighting over one lock.
const defaultDataRoot = "./miyamoto-data"

// defaultDataDir is the data directory of a node started without --data-dir. It
// refuses a node ID that cannot be one directory's name, and a log left directly in
// defaultDataRoot by a build from before the per-node layout: starting beside it
// would quietly start a node that forgot everything.
func defaultDataDir(nodeID string) (string, error) {
	if nodeID == "." || nodeID == ".." || strings.ContainsAny(nodeID, `/\`) {
		return "", fmt.Errorf("not given, and node ID %q cannot name its default directory under %s; give --data-dir", nodeID, defaultDataRoot)
	}
	if old, _ := filepath.Glob(filepath.Join(defaultDataRoot, "*.log")); len(old) > 0 {
		return "", fmt.Errorf("not given, and %s holds a log of the old layout (one node, no subdirectory): move its files into %s/%s, or pass --data-dir %s", defaultDataRoot, defaultDataRoot, nodeID, defaultDataRoot)
	}
	return defaultDataRoot + "/" + nodeID, nil
}

// oneLine joins an error's lines (errors.Join makes several) with "; ".
func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }

// noLimit turns the flags' "0: no limit" into the daemon's (negative; its 0 is the
// default).
func noLimit(v int) int {
	if v == 0 {
		return -1
	}
	return v
}

// listFlag is a repeatable flag; one value may also hold several, comma-separated
// (so that one environment variable can carry them).
type listFlag []string

// String never shows the values: they are secrets.
func (l *listFlag) String() string {
	if l == nil || len(*l) == 0 {
		return ""
	}
	return fmt.Sprint(len(*l)) + " value(s)"
}

func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// usageError is flag.ErrHelp carrying serve's usage, for runServe to print.
type usageError struct{ usage string }

func (usageError) Error() string { return flag.ErrHelp.Error() }
func (usageError) Unwrap() error { return flag.ErrHelp }

// flagHint rewrites the flag package's errors into one line naming the flag.
func flagHint(err error) string {
	if strings.HasPrefix(err.Error(), "flag provided but not defined") {
		return " is not a serve flag (see miyamoto serve -h)"
	}
	return ""
}

func splitHostPort(s string) (string, string, error) {
	i := strings.LastIndex(s, ":")
	if i < 0 {
		return "", "", errors.New("missing port")
	}
	if _, err := strconv.Atoi(s[i+1:]); err != nil {
		return "", "", err
	}
	return s[:i], s[i+1:], nil
}

// minRecordSize is the smallest --record-size: a few files of the ring.
const minRecordSize = 1 << 20

// parseSize reads a byte count: a number, optionally followed by B, KB, MB, GB or
// TB (powers of 1024; KiB, MiB ... and K, M ... mean the same).
func parseSize(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	digits := strings.IndexFunc(t, func(r rune) bool { return r < '0' || r > '9' })
	if digits < 0 {
		digits = len(t)
	}
	shift, ok := sizeUnits[strings.TrimSpace(t[digits:])]
	n, err := strconv.ParseInt(t[:digits], 10, 64)
	if !ok || err != nil || n <= 0 || n > math.MaxInt64>>shift {
		return 0, fmt.Errorf("%q is not a size such as 256MB", s)
	}
	return n << shift, nil
}

var sizeUnits = map[string]uint{"": 0, "B": 0,
	"K": 10, "KB": 10, "KIB": 10, "M": 20, "MB": 20, "MIB": 20,
	"G": 30, "GB": 30, "GIB": 30, "T": 40, "TB": 40, "TIB": 40}
