package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/net/daemon"
)

// envOf is a fake environment for parseServe.
func envOf(kv ...string) func(string) (string, bool) {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

func TestParseServeDefaults(t *testing.T) {
	cfg, logs, err := parseServe(nil, envOf())
	require.NoError(t, err)
	require.Equal(t, logOptions{Level: slog.LevelInfo}, logs)
	require.Equal(t, daemon.Config{
		NodeID: "n1", HTTPAddr: "127.0.0.1:8088", PeerAddr: "127.0.0.1:7088", Peers: map[string]string{},
		Replicas: 3, ReplicaOffset: 2 * time.Second, MaxClockDrift: time.Second, Lease: 30 * time.Second, PermitValidity: 200 * time.Millisecond,
		ShutdownTimeout: 15 * time.Second, MaxBody: 1 << 20, DedupWindow: time.Hour, DataDir: "./miyamoto-data/n1",
		MaxPending: daemon.DefaultMaxPending, MaxPendingBytes: daemon.DefaultMaxPendingBytes,
		MaxQueues: daemon.DefaultMaxQueues, MaxConnections: daemon.DefaultMaxConnections, RecordSize: daemon.DefaultRecordSize,
	}, cfg)
}

func TestParseServeRecord(t *testing.T) {
	for arg, want := range map[string]int64{"256MB": 256 << 20, "1GB": 1 << 30, "2gib": 2 << 30, "1048576": 1 << 20, "4096K": 4 << 20, " 3 MB ": 3 << 20} {
		cfg, _, err := parseServe([]string{"--record", "/tmp/rec", "--record-size", arg}, envOf())
		require.NoError(t, err, arg)
		require.Equal(t, "/tmp/rec", cfg.RecordDir)
		require.Equal(t, want, cfg.RecordSize, arg)
	}
	cfg, _, err := parseServe(nil, envOf("MIYAMOTO_RECORD", "/r", "MIYAMOTO_RECORD_SIZE", "8MB"))
	require.NoError(t, err)
	require.Equal(t, "/r", cfg.RecordDir)
	require.Equal(t, int64(8<<20), cfg.RecordSize)
}

func TestParseServeFlags(t *testing.T) {
	cfg, logs, err := parseServe([]string{
		"--node-id", "n2", "--http-addr", "127.0.0.1:9000", "--peer-addr", "127.0.0.1:9100", "--peer-advertise", "127.0.0.1:9200",
		"--peers", "n1=127.0.0.1:9101,n3=127.0.0.1:9103", "--replicas", "2", "--replica-offset", "500ms",
		"--max-clock-drift", "250ms", "--lease", "5s", "--shutdown-timeout", "3s", "--max-body", "4096",
		"--log-level", "debug", "--remove-after", "10m", "--permit-validity", "400ms",
	}, envOf())
	require.NoError(t, err)
	require.Equal(t, logOptions{Level: slog.LevelDebug}, logs)
	require.Equal(t, daemon.Config{
		NodeID: "n2", HTTPAddr: "127.0.0.1:9000", PeerAddr: "127.0.0.1:9100", PeerAdvertise: "127.0.0.1:9200",
		Peers:    map[string]string{"n1": "127.0.0.1:9101", "n3": "127.0.0.1:9103"},
		Replicas: 2, ReplicaOffset: 500 * time.Millisecond, MaxClockDrift: 250 * time.Millisecond, Lease: 5 * time.Second,
		PermitValidity: 400 * time.Millisecond, RemoveAfter: 10 * time.Minute, ShutdownTimeout: 3 * time.Second, MaxBody: 4096, DedupWindow: time.Hour, DataDir: "./miyamoto-data/n2",
		MaxPending: daemon.DefaultMaxPending, MaxPendingBytes: daemon.DefaultMaxPendingBytes,
		MaxQueues: daemon.DefaultMaxQueues, MaxConnections: daemon.DefaultMaxConnections, RecordSize: daemon.DefaultRecordSize,
	}, cfg)
}

// --log-format json writes one JSON object a line (MIYAMOTO_LOG_FORMAT too), at
// the level asked for.
func TestLogFormatJSON(t *testing.T) {
	_, logs, err := parseServe(nil, envOf("MIYAMOTO_LOG_FORMAT", "json", "MIYAMOTO_LOG_LEVEL", "warn"))
	require.NoError(t, err)
	require.Equal(t, logOptions{Level: slog.LevelWarn, JSON: true}, logs)
	var b bytes.Buffer
	log := logs.logger(&b)
	log.Info("not at warn")
	log.Warn("task ended dead", "id", "t1", "reason", "retry limits reached")
	var line map[string]any
	require.NoError(t, json.Unmarshal(b.Bytes(), &line), "one JSON object: %q", b.String())
	require.Equal(t, "WARN", line["level"])
	require.Equal(t, "task ended dead", line["msg"])
	require.Equal(t, "retry limits reached", line["reason"])

	_, logs, err = parseServe([]string{"--log-format", "text"}, envOf("MIYAMOTO_LOG_FORMAT", "json"))
	require.NoError(t, err)
	require.False(t, logs.JSON, "the command line wins")
	b.Reset()
	logs.logger(&b).Info("hello", "k", "v")
	require.Contains(t, b.String(), "level=INFO msg=hello k=v")
}

// Without --data-dir each node gets a directory of its own under ./miyamoto-data, so
// that several nodes started from one directory do not fight over one lock; an
// explicit --data-dir (or MIYAMOTO_DATA_DIR) is used as is, and empty means memory.
func TestParseServeDataDir(t *testing.T) {
	dir := func(args []string, env ...string) string {
		t.Helper()
		cfg, _, err := parseServe(args, envOf(env...))
		require.NoError(t, err)
		return cfg.DataDir
	}
	require.Equal(t, "./miyamoto-data/n3", dir([]string{"--node-id", "n3"}))
	require.Equal(t, "./miyamoto-data/n4", dir(nil, "MIYAMOTO_NODE_ID", "n4"))
	require.Equal(t, "/var/lib/miyamoto", dir([]string{"--node-id", "n3", "--data-dir", "/var/lib/miyamoto"}))
	require.Equal(t, "", dir([]string{"--data-dir="}), "--data-dir= keeps everything in memory")
	require.Equal(t, "", dir(nil, "MIYAMOTO_DATA_DIR", ""), "so does an empty MIYAMOTO_DATA_DIR")
	require.Equal(t, "d", dir(nil, "MIYAMOTO_DATA_DIR", "d"))

	// A node ID that cannot name a directory needs an explicit one.
	_, _, err := parseServe([]string{"--node-id", "a/b"}, envOf())
	require.ErrorContains(t, err, "--data-dir")
	require.Equal(t, "x", dir([]string{"--node-id", "a/b", "--data-dir", "x"}))

	// A log of the old layout (directly in ./miyamoto-data) is not silently ignored.
	t.Chdir(t.TempDir())
	require.NoError(t, os.MkdirAll("miyamoto-data", 0o755))
	require.NoError(t, os.WriteFile("miyamoto-data/00000001.log", nil, 0o644))
	_, _, err = parseServe(nil, envOf())
	require.ErrorContains(t, err, "--data-dir")
	require.ErrorContains(t, err, "old layout")
	require.Equal(t, "./miyamoto-data", dir([]string{"--data-dir", "./miyamoto-data"}))
}

func TestParseServeSecurityFlags(t *testing.T) {
	secret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	cfg, _, err := parseServe([]string{
		"--api-token", "tok-1", "--api-token", "tok-2,tok-3", "--signing-secret", secret,
		"--deny-private", "--allow-url", "10.1.0.0/16,worker.internal", "--cluster-secret", "0123456789abcdef0",
		"--max-pending", "0", "--max-pending-bytes", "1048576", "--max-queue-pending", "100",
		"--max-queues", "0", "--max-connections", "64",
	}, envOf("MIYAMOTO_API_TOKEN", "ignored-because-the-flag-is-set"))
	require.NoError(t, err)
	require.Equal(t, []string{"tok-1", "tok-2", "tok-3"}, cfg.APITokens)
	require.Equal(t, []string{secret}, cfg.SigningSecrets)
	require.True(t, cfg.DenyPrivate)
	require.Equal(t, "10.1.0.0/16,worker.internal", cfg.AllowURLs)
	require.Equal(t, "0123456789abcdef0", cfg.ClusterSecret)
	require.Equal(t, -1, cfg.MaxPending, "0 on the command line is no limit, which the daemon spells negative")
	require.EqualValues(t, 1<<20, cfg.MaxPendingBytes)
	require.Equal(t, 100, cfg.MaxQueuePending)
	require.Equal(t, -1, cfg.MaxQueues, "0 is no limit")
	require.Equal(t, 64, cfg.MaxConnections)

	// Secrets come from the environment too, so that they stay out of ps.
	cfg, _, err = parseServe(nil, envOf("MIYAMOTO_API_TOKEN", "a,b", "MIYAMOTO_SIGNING_SECRET", secret, "MIYAMOTO_CLUSTER_SECRET", "0123456789abcdef0"))
	require.NoError(t, err)
	require.Equal(t, []string{"a", "b"}, cfg.APITokens)
	require.Equal(t, []string{secret}, cfg.SigningSecrets)
	require.Equal(t, "0123456789abcdef0", cfg.ClusterSecret)
}

func TestParseServeBadValuesNameTheFlag(t *testing.T) {
	cases := []struct {
		args []string
		flag string
	}{
		{[]string{"--replicas", "0"}, "replicas"},
		{[]string{"--replicas", "65"}, "replicas"},
		{[]string{"--replicas", "three"}, "replicas"},
		{[]string{"--replica-offset", "-1s"}, "replica-offset"},
		{[]string{"--replica-offset", "abc"}, "replica-offset"},
		{[]string{"--max-clock-drift", "-1s"}, "max-clock-drift"},
		{[]string{"--permit-validity", "0s"}, "permit-validity"},
		{[]string{"--permit-validity", "2s", "--lease", "4s", "--max-clock-drift", "500ms"}, "permit-validity"},
		{[]string{"--lease", "1s", "--max-clock-drift", "1s"}, "lease"},
		{[]string{"--lease", "2s", "--max-clock-drift", "1s"}, "lease"},
		{[]string{"--peers", "x"}, "peers"},
		{[]string{"--peers", "n2=127.0.0.1:abc"}, "peers"},
		{[]string{"--join", "127.0.0.1"}, "join"},
		{[]string{"--join", "127.0.0.1:8081", "--peers", "n2=127.0.0.1:7002"}, "join"},
		{[]string{"--http-addr", "nohost"}, "http-addr"},
		{[]string{"--peer-advertise", "nohost"}, "peer-advertise"},
		{[]string{"--http-addr", "127.0.0.1:http"}, "http-addr"},
		{[]string{"--peer-addr", "127.0.0.1"}, "peer-addr"},
		{[]string{"--log-level", "loud"}, "log-level"},
		{[]string{"--log-format", "xml"}, "log-format"},
		{[]string{"--node-id", "a,b"}, "node-id"},
		{[]string{"--node-id", ""}, "node-id"},
		{[]string{"--shutdown-timeout", "0s"}, "shutdown-timeout"},
		{[]string{"--max-body", "10"}, "max-body"},
		{[]string{"--bogus", "1"}, "bogus"},
		{[]string{"--bogus"}, "bogus"},
		{[]string{"stray"}, "stray"},
		{[]string{"--api-token", "has space"}, "api-token"},
		{[]string{"--signing-secret", "nope"}, "signing-secret"},
		{[]string{"--signing-secret", "whsec_AAAA", "--signing-secret", "whsec_!!"}, "signing-secret"},
		{[]string{"--allow-url", "10.0.0.0/8"}, "allow-url"},
		{[]string{"--deny-private", "--allow-url", "10.0.0.0/33"}, "allow-url"},
		{[]string{"--cluster-secret", "short"}, "cluster-secret"},
		{[]string{"--max-pending", "-1"}, "max-pending"},
		{[]string{"--max-queue-pending", "-5"}, "max-queue-pending"},
		{[]string{"--max-queues", "-1"}, "max-queues"},
		{[]string{"--max-connections", "3"}, "max-connections"},
		{[]string{"--record", "/d/n1/", "--data-dir", "/d/n1"}, "record"},
		{[]string{"--record-size", "big"}, "record-size"},
		{[]string{"--record-size", "256XB"}, "record-size"},
		{[]string{"--record-size", "0"}, "record-size"},
		{[]string{"--record-size", "100KB"}, "record-size"},
		{[]string{"--record-size", "99999999999TB"}, "record-size"},
		{[]string{"--remove-after", "5s", "--lease", "10s"}, "remove-after"},
		{[]string{"--remove-after", "-1m"}, "remove-after"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			_, _, err := parseServe(c.args, envOf())
			require.Error(t, err)
			msg := err.Error()
			require.NotContains(t, msg, "\n", "the error must be one line")
			require.Contains(t, msg, c.flag, "the error must name the flag")
			require.NotEmpty(t, strings.TrimSpace(msg))
		})
	}
}

func TestParseServeEnvironment(t *testing.T) {
	cfg, _, err := parseServe(nil, envOf("MIYAMOTO_REPLICAS", "2", "MIYAMOTO_NODE_ID", "n5", "MIYAMOTO_REPLICA_OFFSET", "750ms", "MIYAMOTO_LOG_LEVEL", "warn"))
	require.NoError(t, err)
	require.Equal(t, 2, cfg.Replicas, "MIYAMOTO_REPLICAS is used")
	require.Equal(t, "n5", cfg.NodeID)
	require.Equal(t, 750*time.Millisecond, cfg.ReplicaOffset)

	cfg, _, err = parseServe([]string{"--replicas", "5"}, envOf("MIYAMOTO_REPLICAS", "2"))
	require.NoError(t, err)
	require.Equal(t, 5, cfg.Replicas, "the command line wins over the environment")

	// The command line wins even when the environment's value is bad.
	cfg, _, err = parseServe([]string{"--replicas", "4"}, envOf("MIYAMOTO_REPLICAS", "lots"))
	require.NoError(t, err)
	require.Equal(t, 4, cfg.Replicas)

	// Variables that are not serve flags are ignored.
	_, _, err = parseServe(nil, envOf("MIYAMOTO_COLOUR", "blue"))
	require.NoError(t, err)
}

func TestParseServeBadEnvironmentNamesTheVariable(t *testing.T) {
	cases := []struct{ name, value string }{
		{"MIYAMOTO_REPLICAS", "lots"},      // does not parse
		{"MIYAMOTO_REPLICA_OFFSET", "abc"}, // does not parse
		{"MIYAMOTO_REPLICAS", "0"},         // parses, out of range
		{"MIYAMOTO_MAX_CLOCK_DRIFT", "-1s"},
		{"MIYAMOTO_PEERS", "x"},
		{"MIYAMOTO_HTTP_ADDR", "nohost"},
		{"MIYAMOTO_LOG_LEVEL", "loud"},
	}
	for _, c := range cases {
		t.Run(c.name+"="+c.value, func(t *testing.T) {
			_, _, err := parseServe(nil, envOf(c.name, c.value))
			require.Error(t, err)
			require.NotContains(t, err.Error(), "\n")
			require.Contains(t, err.Error(), c.name, "the error must name the variable")
		})
	}
}

func TestRunServeBadArgsExitCode(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run([]string{"serve", "--replicas", "0"}, &stdout, &stderr)
	require.Equal(t, exitBadArgs, code)
	require.Equal(t, 2, code)
	require.Empty(t, stdout.String())
	out := stderr.String()
	require.True(t, strings.HasSuffix(out, "\n"), "%q", out)
	require.Equal(t, 1, strings.Count(out, "\n"), "exactly one line on stderr, got %q", out)
	require.Contains(t, out, "--replicas")
	require.True(t, strings.HasPrefix(out, "miyamoto serve: "), "%q", out)
}

func TestRunServeHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run([]string{"serve", "-h"}, &stdout, &stderr)
	require.Equal(t, exitOK, code)
	// The unknown-flag error sends users here: -h must list the flags.
	help := stdout.String() + stderr.String()
	for _, f := range []string{"node-id", "http-addr", "peers", "replicas", "lease", "log-level", "log-format"} {
		require.Contains(t, help, f)
	}
}

// SIGTERM with a delivery in flight: the node lets the delivery finish, then exits 0.
func TestE2ESigtermFinishesDeliveryInFlight(t *testing.T) {
	t.Parallel()
	bin := binary(t)

	var received, completed, cut atomic.Int32
	gotIt := make(chan string, 10)
	worker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		received.Add(1)
		gotIt <- r.Header.Get("X-Task-Id")
		select {
		case <-time.After(time.Second):
			completed.Add(1)
			w.WriteHeader(200)
		case <-r.Context().Done(): // the node hung up: the delivery was cut
			cut.Add(1)
		}
	}))
	defer worker.Close()

	p := &proc{id: "n1", http: freePort(t), log: &lockedBuffer{}}
	p.cmd = exec.Command(bin, "serve", "--http-addr", p.http, "--data-dir", t.TempDir())
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	require.NoError(t, p.cmd.Start())
	var waitErr error
	exited := make(chan struct{})
	go func() { waitErr = p.cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill() // a no-op once it has exited
		<-exited
		if t.Failed() {
			t.Logf("--- log of %s:\n%s", p.id, tail(p.log.String(), 40))
		}
	})
	waitHealthy(t, p)

	id := enqueue(t, p, url.Values{"task.url": {worker.URL + "/slow"}, "task.countdown": {"0"}})
	select {
	case got := <-gotIt:
		require.Equal(t, id, got)
	case <-time.After(10 * time.Second):
		t.Fatal("the worker never received the task")
	}

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-exited:
		var ee *exec.ExitError
		if errors.As(waitErr, &ee) {
			t.Fatalf("the node exited with %v after SIGTERM", ee)
		}
		require.NoError(t, waitErr)
		require.Equal(t, 0, p.cmd.ProcessState.ExitCode())
	case <-time.After(10 * time.Second):
		t.Fatal("the node did not exit within 10 s of SIGTERM")
	}
	require.Equal(t, int32(1), completed.Load(), "the delivery in flight must finish before the node exits")
	require.Zero(t, cut.Load(), "the delivery in flight was cut")
	require.Equal(t, int32(1), received.Load())
	require.Contains(t, p.log.String(), "signal received")
}

// A peer port beyond loopback without --cluster-secret refuses to start: exit 2
// and one line saying what to do. A secret, --insecure-peers, a loopback address
// or a single node (no --peers) start.
func TestServeRefusesAnOpenPeerPortWithoutSecret(t *testing.T) {
	peers := []string{"--peers", "n2=10.0.0.2:7088"}
	for _, addr := range []string{"0.0.0.0:7088", ":7088", "[::]:7088", "10.0.0.1:7088", "node1.internal:7088"} {
		t.Run(addr, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"serve", "--data-dir=", "--peer-addr", addr}, peers...), &stdout, &stderr)
			require.Equal(t, exitBadArgs, code)
			out := stderr.String()
			require.Equal(t, 1, strings.Count(out, "\n"), "one line: %q", out)
			require.Contains(t, out, "--peer-addr "+addr)
			require.Contains(t, out, "--cluster-secret")
			require.Contains(t, out, "--insecure-peers")
		})
	}
	_, _, err := parseServe(nil, envOf("MIYAMOTO_PEER_ADDR", "0.0.0.0:7088", "MIYAMOTO_PEERS", "n2=10.0.0.2:7088"))
	require.ErrorContains(t, err, "set by MIYAMOTO_PEER_ADDR")

	for _, ok := range [][]string{
		{"--peer-addr", "0.0.0.0:7088", "--cluster-secret", "0123456789abcdef0123"},
		{"--peer-addr", "0.0.0.0:7088", "--insecure-peers"},
		{"--peer-addr", "127.0.0.1:7088"},
		{"--peer-addr", "[::1]:7088"},
		{"--peer-addr", "localhost:7088"},
	} {
		cfg, _, err := parseServe(append(ok, peers...), envOf())
		require.NoError(t, err, "%v", ok)
		require.Equal(t, slices.Contains(ok, "--insecure-peers"), cfg.InsecurePeers)
	}
	_, _, err = parseServe([]string{"--peer-addr", "0.0.0.0:7088"}, envOf())
	require.NoError(t, err, "a single node listens on no peer port")
}

// The peer TLS flags: all three or none (exit 2 naming the one missing), files that
// load, and with them a peer port beyond loopback starts without a secret.
func TestServePeerTLSFlags(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM := selfSignedPEM(t, "n1")
	cert, key, ca := filepath.Join(dir, "n1.crt"), filepath.Join(dir, "n1.key"), filepath.Join(dir, "ca.crt")
	require.NoError(t, os.WriteFile(cert, certPEM, 0o600))
	require.NoError(t, os.WriteFile(key, keyPEM, 0o600))
	require.NoError(t, os.WriteFile(ca, certPEM, 0o600))
	peers := []string{"--peers", "n2=10.0.0.2:7088", "--peer-addr", "0.0.0.0:7088"}

	cfg, _, err := parseServe(append([]string{"--peer-tls-cert", cert, "--peer-tls-key", key, "--peer-tls-ca", ca}, peers...), envOf())
	require.NoError(t, err)
	require.Equal(t, cert, cfg.PeerTLS.Cert)
	for _, c := range []struct {
		args []string
		flag string
	}{
		{[]string{"--peer-tls-key", key, "--peer-tls-ca", ca}, "--peer-tls-cert"},
		{[]string{"--peer-tls-cert", cert, "--peer-tls-ca", ca}, "--peer-tls-key"},
		{[]string{"--peer-tls-cert", cert, "--peer-tls-key", key}, "--peer-tls-ca"},
		{[]string{"--peer-tls-cert", cert, "--peer-tls-key", key, "--peer-tls-ca", key}, "--peer-tls-ca"},
		{[]string{"--peer-tls-cert", key, "--peer-tls-key", key, "--peer-tls-ca", ca}, "--peer-tls-cert"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(append(append([]string{"serve", "--data-dir="}, c.args...), peers...), &stdout, &stderr)
		require.Equal(t, exitBadArgs, code, "%v", c.args)
		require.Equal(t, 1, strings.Count(stderr.String(), "\n"), "one line: %q", stderr.String())
		require.True(t, strings.HasPrefix(stderr.String(), "miyamoto: "+c.flag) || strings.Contains(stderr.String(), c.flag), "%v: %q", c.args, stderr.String())
	}
}

// selfSignedPEM makes a certificate naming name, and its key, in PEM.
func selfSignedPEM(t *testing.T, name string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	kder, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}
