package peer

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/miyamotohq/miyamoto/node"
)

// # TLS
//
// With Config.TLS set, every peer connection is TLS 1.3 with both ends
// authenticated by certificates that the cluster's CA (Config.TLS.RootCAs) signed,
// and each certificate names its node ID as a DNS subjectAltName: the dialer asks for
// the ID it dials (ServerName) and the acceptor checks that the client certificate
// names the ID its hello claims. So, unlike the cluster secret, a node's key lets it
// speak only as itself, and the stream is encrypted and integrity-protected. The
// secret, if also set, still runs its handshake inside TLS.

// errCertIdentity: a client certificate that does not name the ID its hello claims.
var errCertIdentity = errors.New("the client certificate does not name the node ID its hello claims")

// tlsConfigs derives the acceptor's and the dialer's configurations from base.
func tlsConfigs(base *tls.Config) (server, client *tls.Config, err error) {
	if len(base.Certificates) == 0 && base.GetCertificate == nil {
		return nil, nil, errors.New("TLS has no certificate for this node")
	}
	if base.RootCAs == nil {
		return nil, nil, errors.New("TLS has no RootCAs: the CA that signed every node's certificate")
	}
	server = base.Clone()
	server.MinVersion = tls.VersionTLS13
	server.ClientAuth = tls.RequireAndVerifyClientCert
	server.ClientCAs = base.RootCAs
	client = base.Clone()
	client.MinVersion = tls.VersionTLS13
	return server, client, nil
}

// dialTLS runs the client side of the TLS handshake on c, expecting a certificate
// that names id, within the dial timeout.
func (t *Transport) dialTLS(ctx context.Context, c net.Conn, id node.NodeID) (net.Conn, error) {
	cfg := t.clientTLS.Clone()
	cfg.ServerName = string(id)
	tc := tls.Client(c, cfg)
	ctx, cancel := context.WithTimeout(ctx, t.cfg.DialTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("TLS handshake with %s: %w", id, err)
	}
	tc.SetDeadline(time.Time{})
	return tc, nil
}

// checkCertIdentity: on a TLS connection, the client certificate (verified against
// the CA by the handshake) must name from.
func checkCertIdentity(c net.Conn, from node.NodeID) error {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return nil
	}
	certs := tc.ConnectionState().PeerCertificates
	if len(certs) == 0 || certs[0].VerifyHostname(string(from)) != nil {
		return errCertIdentity
	}
	return nil
}
