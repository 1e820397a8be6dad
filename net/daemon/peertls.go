package daemon

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// PeerTLS names the files of the peer port's TLS (see peer.Config.TLS): this node's
// certificate and key (PEM), whose DNS subjectAltNames include its node ID, and the
// CA certificate(s) that signed every node's. All three or none.
type PeerTLS struct {
	Cert, Key, CA string
}

// Enabled reports whether any file is named.
func (p PeerTLS) Enabled() bool { return p.Cert != "" || p.Key != "" || p.CA != "" }

// Load reads the files into a tls.Config for the peer transport. The error names
// the flag to fix.
func (p PeerTLS) Load() (*tls.Config, error) {
	switch {
	case p.Cert == "":
		return nil, errors.New("--peer-tls-cert: missing (the peer port's TLS needs --peer-tls-cert, --peer-tls-key and --peer-tls-ca)")
	case p.Key == "":
		return nil, errors.New("--peer-tls-key: missing (the peer port's TLS needs --peer-tls-cert, --peer-tls-key and --peer-tls-ca)")
	case p.CA == "":
		return nil, errors.New("--peer-tls-ca: missing (the peer port's TLS needs --peer-tls-cert, --peer-tls-key and --peer-tls-ca)")
	}
	cert, err := tls.LoadX509KeyPair(p.Cert, p.Key)
	if err != nil {
		return nil, fmt.Errorf("--peer-tls-cert/--peer-tls-key: %w", err)
	}
	pem, err := os.ReadFile(p.CA)
	if err != nil {
		return nil, fmt.Errorf("--peer-tls-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--peer-tls-ca: no PEM certificate in %s", p.CA)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool}, nil
}
