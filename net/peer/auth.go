package peer

// The cluster-secret handshake (Config.ClusterSecret); see the package doc for the
// exchange and for what it does not protect against.

import (
	"bufio"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/miyamotohq/miyamoto/net/wire"
	"github.com/miyamotohq/miyamoto/node"
)

// MinClusterSecretLen is the shortest Config.ClusterSecret accepted, in bytes.
const MinClusterSecretLen = 16

const (
	// authHelloMagic opens the hello of a dialer that has a cluster secret.
	authHelloMagic = "MIYS"
	// challengeMagic opens the acceptor's challenge: its nonce.
	challengeMagic = "MIYC"
	// acceptMagic opens the acceptor's verdict when the dialer proved the secret,
	// followed by the acceptor's own proof.
	acceptMagic = "MIYK"
	// refuseMagic opens the acceptor's refusal, followed by one reason byte; the
	// acceptor closes the connection after it.
	refuseMagic = "MIYN"

	nonceLen = 32
	proofLen = sha256.Size

	// The labels that start each proof's HMAC input: a dialer's proof can never pass
	// for an acceptor's, nor either for any other use of the secret.
	dialerLabel   = "miyamoto peer handshake v1: dialer proof"
	acceptorLabel = "miyamoto peer handshake v1: acceptor proof"
)

// Reasons an acceptor gives in a refusal (the byte after refuseMagic).
const (
	// refuseNeedSecret: the acceptor has a secret and the dialer's hello had none.
	// It is the only refusal a dialer without a secret reads (see pump).
	refuseNeedSecret byte = 1 + iota
	// refuseNoSecret: the acceptor has no secret and the dialer's hello had one.
	refuseNoSecret
	// refuseBadSecret: the dialer's proof is wrong.
	refuseBadSecret
	// refuseWrongNode: the dialer expected another node at this address.
	refuseWrongNode
	// refuseNotMember: the dialer's ID is not one of the acceptor's Config.Peers.
	refuseNotMember
)

// Handshake failures. The acceptor logs them as the reason for a refusal; the dialer
// records them in its peer's LastError.
var (
	errBadSecret       = errors.New("bad cluster secret")
	errPeerNeedsSecret = errors.New("peer expects a cluster secret")
	errPeerHasNoSecret = errors.New("peer has no cluster secret")
	errNoAnswer        = errors.New("no handshake answer in time")
	errHandshakeClosed = errors.New("peer closed the connection during the handshake")
	errNotMember       = errors.New("the hello names a node that is not a member (not in --peers)")
)

// hello is what a dialer says first.
type hello struct {
	from node.NodeID
	// to is the node the dialer expects to reach, and nonce its fresh nonce: both
	// only in the hello of a dialer with a cluster secret (nonce is nil otherwise).
	to    node.NodeID
	nonce []byte
}

// appendHello appends the hello of a dialer without a cluster secret:
// "MIYA" version len(from) from.
func appendHello(b []byte, self node.NodeID) []byte {
	b = append(b, helloMagic...)
	b = append(b, wire.Version, byte(len(self)))
	return append(b, self...)
}

// appendAuthHello appends the hello of a dialer with a cluster secret:
// "MIYS" version len(from) from len(to) to nonce.
func appendAuthHello(b []byte, self, to node.NodeID, nonce []byte) []byte {
	b = append(b, authHelloMagic...)
	b = append(b, wire.Version, byte(len(self)))
	b = append(b, self...)
	b = append(b, byte(len(to)))
	b = append(b, to...)
	return append(b, nonce...)
}

// readHello reads either kind of hello.
func readHello(r *bufio.Reader) (hello, error) {
	var h hello
	var hdr [len(helloMagic) + 1]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return h, fmt.Errorf("reading hello: %w", err)
	}
	magic := string(hdr[:len(helloMagic)])
	if magic != helloMagic && magic != authHelloMagic {
		return h, fmt.Errorf("bad hello magic %q", magic)
	}
	if v := hdr[len(helloMagic)]; v != wire.Version {
		return h, fmt.Errorf("peer speaks wire version %d, this build speaks %d", v, wire.Version)
	}
	var err error
	if h.from, err = readID(r); err != nil {
		return h, err
	}
	if magic == helloMagic {
		return h, nil
	}
	if h.to, err = readID(r); err != nil {
		return h, err
	}
	h.nonce = make([]byte, nonceLen)
	if _, err := io.ReadFull(r, h.nonce); err != nil {
		return h, fmt.Errorf("reading hello: %w", err)
	}
	return h, nil
}

// readID reads a hello's length-prefixed node ID.
func readID(r *bufio.Reader) (node.NodeID, error) {
	n, err := r.ReadByte()
	if err != nil {
		return "", fmt.Errorf("reading hello: %w", err)
	}
	if n == 0 {
		return "", errors.New("hello has an empty node ID")
	}
	id := make([]byte, n)
	if _, err := io.ReadFull(r, id); err != nil {
		return "", fmt.Errorf("reading hello: %w", err)
	}
	return node.NodeID(id), nil
}

// newNonce returns nonceLen bytes from crypto/rand.
func newNonce() []byte {
	b := make([]byte, nonceLen)
	rand.Read(b) // never returns an error: it crashes the program instead
	return b
}

// proof is HMAC-SHA256 under secret of label, the wire version, both node IDs
// (length-prefixed) and both nonces. Each side's nonce makes the other side's proof
// fresh, so a recorded handshake cannot be replayed.
func proof(secret []byte, label string, dialer, acceptor node.NodeID, dialerNonce, acceptorNonce []byte) []byte {
	b := make([]byte, 0, len(label)+3+len(dialer)+1+len(acceptor)+2*nonceLen)
	b = append(b, label...)
	b = append(b, 0, wire.Version, byte(len(dialer)))
	b = append(b, dialer...)
	b = append(b, byte(len(acceptor)))
	b = append(b, acceptor...)
	b = append(b, dialerNonce...)
	b = append(b, acceptorNonce...)
	h := hmac.New(sha256.New, secret)
	h.Write(b)
	return h.Sum(nil)
}

// refusalError is what a dialer makes of an acceptor's refusal.
func refusalError(reason byte) error {
	switch reason {
	case refuseNeedSecret:
		return errPeerNeedsSecret
	case refuseNoSecret:
		return errPeerHasNoSecret
	case refuseBadSecret:
		return fmt.Errorf("%w: the peer refused this node's proof", errBadSecret)
	case refuseWrongNode:
		return errors.New("another node listens at this address: the peers' address maps disagree")
	case refuseNotMember:
		return errors.New("the peer does not count this node as a member: its --peers lacks this node's ID")
	default:
		return fmt.Errorf("peer refused the connection (reason %d)", reason)
	}
}

// handshakeErr names a read or write error of the handshake.
func handshakeErr(err error) error {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return errNoAnswer
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return errHandshakeClosed
	default:
		return fmt.Errorf("handshake: %w", err)
	}
}

// handshakeOut runs the dialer's side on c, a fresh connection to p, and returns
// nil once p has proved the secret. Without a secret it only writes the hello.
func (t *Transport) handshakeOut(c net.Conn, p *peer) error {
	secret := t.cfg.ClusterSecret
	if len(secret) == 0 {
		c.SetWriteDeadline(time.Now().Add(t.cfg.DialTimeout))
		if _, err := c.Write(appendHello(nil, t.cfg.Self)); err != nil {
			return fmt.Errorf("writing hello: %w", err)
		}
		return nil
	}
	c.SetDeadline(time.Now().Add(t.helloTimeout))
	nonce := newNonce()
	if _, err := c.Write(appendAuthHello(nil, t.cfg.Self, p.id, nonce)); err != nil {
		return fmt.Errorf("writing hello: %w", handshakeErr(err))
	}
	theirNonce := make([]byte, nonceLen)
	if err := readReply(c, challengeMagic, theirNonce); err != nil {
		return err
	}
	if _, err := c.Write(proof(secret, dialerLabel, t.cfg.Self, p.id, nonce, theirNonce)); err != nil {
		return handshakeErr(err)
	}
	theirProof := make([]byte, proofLen)
	if err := readReply(c, acceptMagic, theirProof); err != nil {
		return err
	}
	if !hmac.Equal(theirProof, proof(secret, acceptorLabel, t.cfg.Self, p.id, nonce, theirNonce)) {
		return fmt.Errorf("%w: the peer's proof is wrong (another process at its address?)", errBadSecret)
	}
	c.SetDeadline(time.Time{})
	return nil
}

// readReply reads the acceptor's next message, which should be want followed by
// len(body) bytes, into body; a refusal or anything else is an error.
func readReply(c net.Conn, want string, body []byte) error {
	var magic [len(refuseMagic)]byte // every magic has this length
	if _, err := io.ReadFull(c, magic[:]); err != nil {
		return handshakeErr(err)
	}
	switch string(magic[:]) {
	case want:
		if _, err := io.ReadFull(c, body); err != nil {
			return handshakeErr(err)
		}
		return nil
	case refuseMagic:
		var reason [1]byte
		if _, err := io.ReadFull(c, reason[:]); err != nil {
			return handshakeErr(err)
		}
		return refusalError(reason[0])
	default:
		return fmt.Errorf("peer answered the hello with %q, not %q: not a Miyamoto peer of this version", magic[:], want)
	}
}

// handshakeIn runs the acceptor's side on c, whose reads go through r, under the
// deadline serveConn set. It returns the dialer's ID (as claimed, when err is not
// nil) and, when it refuses, the reason to send the dialer (0: send none).
func (t *Transport) handshakeIn(c net.Conn, r *bufio.Reader) (from node.NodeID, refusal byte, err error) {
	h, err := readHello(r)
	if err != nil {
		return h.from, 0, err
	}
	if t.peerMap()[h.from] == nil {
		// Only members may speak: a stranger gets no state and no metric of its own.
		t.notMember.Add(1)
		return h.from, refuseNotMember, errNotMember
	}
	if err := checkCertIdentity(c, h.from); err != nil {
		return h.from, refuseWrongNode, err
	}
	secret := t.cfg.ClusterSecret
	switch {
	case len(secret) == 0 && h.nonce == nil:
		return h.from, 0, nil
	case len(secret) == 0:
		return h.from, refuseNoSecret, errPeerNeedsSecret
	case h.nonce == nil:
		return h.from, refuseNeedSecret, errPeerHasNoSecret
	case h.to != t.cfg.Self:
		return h.from, refuseWrongNode, fmt.Errorf("peer dialed %q but reached %q: the peers' address maps disagree", h.to, t.cfg.Self)
	}
	nonce := newNonce()
	if _, err := c.Write(append([]byte(challengeMagic), nonce...)); err != nil {
		return h.from, 0, handshakeErr(err)
	}
	answer := make([]byte, proofLen)
	if _, err := io.ReadFull(r, answer); err != nil {
		return h.from, 0, handshakeErr(err)
	}
	if !hmac.Equal(answer, proof(secret, dialerLabel, h.from, t.cfg.Self, h.nonce, nonce)) {
		return h.from, refuseBadSecret, errBadSecret
	}
	ours := proof(secret, acceptorLabel, h.from, t.cfg.Self, h.nonce, nonce)
	if _, err := c.Write(append([]byte(acceptMagic), ours...)); err != nil {
		return h.from, 0, handshakeErr(err)
	}
	return h.from, 0, nil
}

// sendRefusal tells the dialer why its connection is refused, then half-closes c and
// discards what the dialer still sends until it closes its side or the handshake
// deadline passes: closing with unread data would reset the connection, and a reset
// can destroy the refusal before the dialer reads it.
func sendRefusal(c net.Conn, r *bufio.Reader, reason byte) {
	if _, err := c.Write(append([]byte(refuseMagic), reason)); err != nil {
		return
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	io.Copy(io.Discard, r)
}
