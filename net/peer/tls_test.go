package peer

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/node"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "miyamoto test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// issue signs a certificate for a node that names the given DNS names.
func (ca *testCA) issue(t *testing.T, names ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:   time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func (ca *testCA) config(t *testing.T, names ...string) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{ca.issue(t, names...)}, RootCAs: ca.pool}
}

// Two nodes with certificates from one CA exchange messages over TLS, with the
// cluster secret's handshake inside it.
func TestTLSExchange(t *testing.T) {
	ca := newTestCA(t)
	ids := []node.NodeID{"n1", "n2"}
	ts, boxes := clusterWith(t, func(id node.NodeID, c *Config) {
		c.QueueSize = 10000
		c.TLS = ca.config(t, string(id))
		c.ClusterSecret = testSecret
	}, ids...)
	exchange(t, ids, ts, boxes, 500)
	require.Equal(t, map[node.NodeID]bool{"n2": true}, ts[0].Reachable())
}

// Refused: a node whose certificate names another node than its hello claims (a
// stolen key speaks only as its own node), a certificate from another CA, and a
// dialer without TLS. Nothing gets through; the acceptor counts each refusal.
func TestTLSRefusals(t *testing.T) {
	ca, other := newTestCA(t), newTestCA(t)
	cases := []struct {
		name string
		b    func(t *testing.T) *tls.Config
	}{
		{"certificate names another node", func(t *testing.T) *tls.Config { return ca.config(t, "n3") }},
		{"certificate from another CA", func(t *testing.T) *tls.Config {
			c := other.config(t, "b")
			c.RootCAs = ca.pool // trusts a's certificates, but its own is foreign to a
			return c
		}},
		{"no TLS", func(*testing.T) *tls.Config { return nil }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ts, boxes := clusterWith(t, func(id node.NodeID, cfg *Config) {
				if id == "a" {
					cfg.TLS = ca.config(t, "a")
				} else {
					cfg.TLS = c.b(t)
				}
			}, "a", "b")
			a, b := ts[0], ts[1]
			for k := range 10 {
				b.Send(testMsg("b", "a", k))
			}
			eventually(t, "a refuses b's connections", func() bool { return a.Stats().RefusedConns >= 2 })
			require.Zero(t, boxes[0].count("b"), "a message from b got through")
			require.Zero(t, a.Stats().Peers["b"].Received)
			require.False(t, b.Reachable()["a"])
		})
	}
}

func TestTLSConfigChecked(t *testing.T) {
	ca := newTestCA(t)
	_, err := New(Config{Self: "a", Listen: "127.0.0.1:0", TLS: &tls.Config{RootCAs: ca.pool}}, func(node.Message) {})
	require.ErrorContains(t, err, "no certificate")
	_, err = New(Config{Self: "a", Listen: "127.0.0.1:0", TLS: &tls.Config{Certificates: []tls.Certificate{ca.issue(t, "a")}}}, func(node.Message) {})
	require.ErrorContains(t, err, "no RootCAs")
}
