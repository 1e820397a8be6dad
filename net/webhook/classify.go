package webhook

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/miyamotohq/miyamoto/net/urlpolicy"
	"github.com/miyamotohq/miyamoto/node"
)

// Classify says why a delivery got no HTTP answer, for the task's attempt history
// and the metrics: the URL policy refused the address, the host name did not
// resolve, the TLS handshake or certificate failed, the connection was refused or
// reset, or the deadline passed. Anything else is node.ErrorOther; nil is
// node.NoError.
func Classify(err error) node.ErrorKind {
	var dnsErr *net.DNSError
	switch {
	case err == nil:
		return node.NoError
	case errors.Is(err, urlpolicy.ErrDenied):
		return node.ErrorPolicy
	case errors.As(err, &dnsErr), errors.Is(err, urlpolicy.ErrLookup):
		return node.ErrorDNS
	case isTLS(err):
		return node.ErrorTLS
	case errors.Is(err, syscall.ECONNREFUSED):
		return node.ErrorRefused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return node.ErrorReset
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, ErrNoSlot), isTimeout(err):
		return node.ErrorTimeout
	}
	return node.ErrorOther
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// isTLS reports a failed handshake or certificate check. crypto/tls wraps some of
// its failures in unexported types: their text ("tls: ...") is the last resort.
func isTLS(err error) bool {
	var (
		verify   *tls.CertificateVerificationError
		header   tls.RecordHeaderError
		alert    tls.AlertError
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
	)
	switch {
	case errors.As(err, &verify), errors.As(err, &header), errors.As(err, &alert),
		errors.As(err, &unknown), errors.As(err, &hostname), errors.As(err, &invalid):
		return true
	}
	return strings.Contains(err.Error(), "tls: ")
}
