// Package urlpolicy keeps task URLs away from the node's own networks: the check
// behind --deny-private, against server-side request forgery (a task that makes a
// node call its cloud metadata service, an admin port on loopback, a database on
// the private network).
//
// A Policy refuses loopback, private (RFC 1918), link-local (169.254.0.0/16, with
// the 169.254.169.254 metadata address, and fe80::/10), unique-local (fc00::/7),
// unspecified, carrier-grade NAT, multicast, broadcast and reserved addresses, in
// IPv4-mapped IPv6 form too, and IPv6 forms that carry such an IPv4 address
// (NAT64, 6to4, Teredo); Classify lists them. Allow names the exceptions.
//
// It checks twice:
//
//   - at enqueue, CheckURL parses the URL and resolves its host, so that the client
//     hears at once that the URL will never be called;
//   - at connect time, DialContext (for http.Transport.DialContext) resolves the host
//     again, checks every address, and dials only checked addresses, so that a name
//     that resolved to a public address at enqueue and to 127.0.0.1 later (DNS
//     rebinding) is refused. Control (for net.Dialer.Control) checks the address
//     of every connection once more, for dialers that resolve by themselves.
//
// Both checks read the host the same way, including the numeric forms inet_aton
// and browsers accept ("2130706433", "0x7f000001", "0177.0.0.1", "127.1" are all
// 127.0.0.1): whatever Go's resolver, libc or a proxy might make of such a host,
// the policy has already checked the address it stands for.
//
// The policy must never be bypassed by a proxy: a transport that dials through it
// must not use an HTTP proxy (the proxy's address would be checked instead of the
// target's). It does not look inside redirects either: its callers must not follow
// them (net/webhook does not).
package urlpolicy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// Policy refuses URLs and connections to the address classes listed by Classify,
// except those its Allow list lets through. The zero Policy refuses every class
// and resolves with net.DefaultResolver. A Policy must not be changed once in use;
// it is then safe for concurrent use. A nil *Policy allows everything.
type Policy struct {
	Allow Allow
	// Resolver looks up host names, at enqueue and at connect time alike; nil means
	// net.DefaultResolver.
	Resolver Resolver
}

// Resolver looks up the addresses of a host name. network is "ip", "ip4" or
// "ip6". An error or an empty answer means the host does not resolve.
// *net.Resolver satisfies it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

var _ Resolver = (*net.Resolver)(nil)

var (
	// ErrDenied: the URL's host is, or resolves to, an address the policy refuses.
	// The error is a *DeniedError.
	ErrDenied = errors.New("refused by the url policy")
	// ErrInvalid: the URL cannot be checked (not http or https, no host, a host that
	// ends in a number but is no IPv4 address, a host name with odd characters).
	ErrInvalid = errors.New("invalid url")
	// ErrLookup: the URL's host name did not resolve; the resolver's error, a
	// *net.DNSError for net.Resolver, is wrapped too (its IsNotFound tells a name
	// that does not exist from a resolver that failed).
	ErrLookup = errors.New("url host did not resolve")
)

// IsTransient reports whether err is a lookup that failed for a reason that may pass
// (a timeout, a resolver that failed or could not be reached) rather than a name
// that does not exist: the URL may be fine, so the enqueue should be retried, not
// refused as bad input.
func IsTransient(err error) bool {
	if !errors.Is(err, ErrLookup) {
		return false
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return !dnsErr.IsNotFound
	}
	// A lookup error of another resolver, or an answer without addresses: only an
	// error that is not a DNS answer may pass.
	var pe *policyError
	return errors.As(err, &pe) && pe.err != nil
}

// DeniedError is a refused address. It matches ErrDenied under errors.Is.
type DeniedError struct {
	Host  string     // the host as written in the URL (or dialed), when there was one
	Addr  netip.Addr // the refused address
	Class string     // what Classify says of Addr, e.g. "a loopback address"
	// Dial is set when the connection was refused at connect time rather than the
	// URL at enqueue.
	Dial bool
}

func (e *DeniedError) Error() string {
	what := fmt.Sprintf("%s is %s", e.Addr, e.Class)
	if e.Host != "" && e.Host != e.Addr.String() {
		what = fmt.Sprintf("%s resolves to %s, %s", e.Host, e.Addr, e.Class)
	}
	if e.Dial {
		return "the url policy (--deny-private) refused to connect: " + what
	}
	return "url host " + what + "; --deny-private refuses it"
}

// Is makes errors.Is(err, ErrDenied) true.
func (e *DeniedError) Is(target error) bool { return target == ErrDenied }

// policyError is an ErrInvalid or ErrLookup with its message and cause.
type policyError struct {
	msg  string
	kind error // ErrInvalid or ErrLookup
	err  error // the cause, or nil
}

func (e *policyError) Error() string {
	if e.err != nil {
		return e.msg + ": " + e.err.Error()
	}
	return e.msg
}

func (e *policyError) Unwrap() []error {
	if e.err == nil {
		return []error{e.kind}
	}
	return []error{e.kind, e.err}
}

func invalidf(format string, args ...any) error {
	return &policyError{msg: fmt.Sprintf(format, args...), kind: ErrInvalid}
}

// hostOf parses a task URL, which must be http or https with a host, and returns
// its host and whether the Allow list lets it pass without more checks.
func (p *Policy) hostOf(raw string) (host string, allowed bool, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", false, &policyError{msg: "url is not valid", kind: ErrInvalid, err: errors.Unwrap(err)}
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", false, invalidf("url must be http or https, not %q", u.Scheme)
	}
	host = u.Hostname()
	if host == "" {
		return "", false, invalidf("url has no host")
	}
	return host, p.Allow.hostAllowed(host), nil
}

// CheckURL checks a task URL at enqueue: it must be http or https with a host, and
// the host must not be, nor resolve to, any refused address (one refused address
// among several is enough to refuse). A host in the Allow list passes without a
// lookup. The error wraps ErrInvalid, ErrLookup or ErrDenied; its message starts
// with "url" and is safe to show to the client.
func (p *Policy) CheckURL(ctx context.Context, raw string) error {
	if p == nil {
		return nil
	}
	host, allowed, err := p.hostOf(raw)
	if err != nil || allowed {
		return err
	}
	addrs, err := p.resolve(ctx, "ip", host)
	if err != nil {
		return err
	}
	for _, a := range addrs {
		if err := p.checkAddr(host, a, false); err != nil {
			return err
		}
	}
	return nil
}

// CheckURLNoLookup is CheckURL without a lookup, for a task that arrives from a
// peer (the door of node.Config.CheckTaskURL must do no IO): a host that is an IP
// address in any form is checked as CheckURL checks it, and "localhost" and names
// under it are refused as loopback; any other name passes, and is checked when a
// delivery connects (DialContext).
func (p *Policy) CheckURLNoLookup(raw string) error {
	if p == nil {
		return nil
	}
	host, allowed, err := p.hostOf(raw)
	if err != nil || allowed {
		return err
	}
	a, isLiteral, err := parseLiteral(host)
	if err != nil {
		return err
	}
	if isLiteral {
		return p.checkAddr(host, a, false)
	}
	if err := checkHostName(host); err != nil {
		return err
	}
	if name := strings.TrimSuffix(strings.ToLower(host), "."); name == "localhost" || strings.HasSuffix(name, ".localhost") {
		return p.checkAddr(host, netip.AddrFrom4([4]byte{127, 0, 0, 1}), false)
	}
	return nil
}

// CheckAddr reports whether the policy lets a connection to a through: nil, or a
// *DeniedError.
func (p *Policy) CheckAddr(a netip.Addr) error {
	if p == nil {
		return nil
	}
	return p.checkAddr("", a, false)
}

func (p *Policy) checkAddr(host string, a netip.Addr, dial bool) error {
	a = a.Unmap()
	if p.Allow.addrAllowed(a) {
		return nil
	}
	if class := Classify(a); class != "" {
		return &DeniedError{Host: host, Addr: a, Class: class, Dial: dial}
	}
	return nil
}

// resolve returns the addresses host stands for: itself when it is an IP address
// in any form, else the resolver's answer, unmapped. network is "ip", "ip4" or "ip6".
func (p *Policy) resolve(ctx context.Context, network, host string) ([]netip.Addr, error) {
	a, isLiteral, err := parseLiteral(host)
	if err != nil {
		return nil, err
	}
	var addrs []netip.Addr
	if isLiteral {
		addrs = []netip.Addr{a}
	} else {
		if err := checkHostName(host); err != nil {
			return nil, err
		}
		r := p.Resolver
		if r == nil {
			r = net.DefaultResolver
		}
		addrs, err = r.LookupNetIP(ctx, network, host)
		if err != nil {
			return nil, &policyError{msg: fmt.Sprintf("url host %q did not resolve", host), kind: ErrLookup, err: err}
		}
	}
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		a = a.Unmap()
		if network == "ip" || (network == "ip4") == a.Is4() {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return nil, &policyError{msg: fmt.Sprintf("url host %q has no %s address", host, familyName[network]), kind: ErrLookup}
	}
	return out, nil
}

var familyName = map[string]string{"ip": "IP", "ip4": "IPv4", "ip6": "IPv6"}

// parseLiteral reads host as an IP address: IPv6 (with a zone or not) or IPv4 in
// any form inet_aton accepts. isLiteral is false for a host name. A host that ends
// in a number ("10.0.0.1.", "foo.123", "1.2.3.4.5", "0x1g") is an IPv4 address or
// nothing, as in the WHATWG URL standard: never a name to look up.
func parseLiteral(host string) (a netip.Addr, isLiteral bool, err error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return a, true, nil
	}
	if strings.Contains(host, ":") {
		return netip.Addr{}, false, invalidf("url host %q is not a valid IPv6 address", host)
	}
	parts := strings.Split(host, ".")
	if len(parts) > 1 && parts[len(parts)-1] == "" {
		parts = parts[:len(parts)-1] // one trailing dot: the root
	}
	if !isNumber(parts[len(parts)-1]) {
		return netip.Addr{}, false, nil
	}
	a, ok := parseIPv4(parts)
	if !ok {
		return netip.Addr{}, false, invalidf("url host %q ends in a number but is not an IPv4 address", host)
	}
	return a, true, nil
}

// isNumber reports whether a label reads as a number: decimal digits, or 0x and
// hex digits (maybe none).
func isNumber(label string) bool {
	if label == "" {
		return false
	}
	if len(label) >= 2 && label[0] == '0' && (label[1] == 'x' || label[1] == 'X') {
		return strings.Trim(label[2:], "0123456789abcdefABCDEF") == ""
	}
	return strings.Trim(label, "0123456789") == ""
}

// parseIPv4 reads 1 to 4 numbers the way inet_aton does: each decimal, octal with a
// leading 0, or hex with 0x; the last fills the bytes the others leave.
func parseIPv4(parts []string) (netip.Addr, bool) {
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	var v uint64
	for i, s := range parts {
		n, ok := parseIPv4Number(s)
		if !ok {
			return netip.Addr{}, false
		}
		if i < len(parts)-1 {
			if n > 255 {
				return netip.Addr{}, false
			}
			v |= n << (8 * (3 - i))
			continue
		}
		if n >= 1<<(8*(4-i)) {
			return netip.Addr{}, false
		}
		v |= n
	}
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), true
}

func parseIPv4Number(s string) (uint64, bool) {
	base := 10
	switch {
	case len(s) >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'):
		base, s = 16, s[2:]
		if s == "" {
			return 0, true // "0x" is 0, as in WHATWG and inet_aton
		}
	case len(s) >= 2 && s[0] == '0':
		base, s = 8, s[1:]
	case s == "":
		return 0, false
	}
	var n uint64
	for _, c := range []byte(s) {
		var d uint64
		switch {
		case '0' <= c && c <= '9':
			d = uint64(c - '0')
		case 'a' <= c && c <= 'f':
			d = uint64(c-'a') + 10
		case 'A' <= c && c <= 'F':
			d = uint64(c-'A') + 10
		default:
			return 0, false
		}
		if d >= uint64(base) {
			return 0, false
		}
		n = n*uint64(base) + d
		if n > 1<<32 {
			return 0, false // too big for any part; stop before it could overflow
		}
	}
	return n, true
}

// checkHostName accepts what DNS and /etc/hosts names are made of: ASCII letters,
// digits, '-', '_' and dots. Anything else is refused rather than handed to a
// resolver that might read it its own way.
func checkHostName(host string) error {
	for _, c := range []byte(host) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_', c == '.':
		case c >= 0x80:
			return invalidf("url host %q is not ASCII: write it in its punycode (xn--) form", host)
		default:
			return invalidf("url host %q is not a valid host name", host)
		}
	}
	if host == "" || strings.HasPrefix(host, ".") || strings.Contains(host, "..") {
		return invalidf("url host %q is not a valid host name", host)
	}
	return nil
}

// DialContext dials address ("host:port", network tcp, tcp4 or tcp6) for
// http.Transport.DialContext: it resolves host with the policy's resolver (or
// reads it as an IP address), refuses the dial with a *DeniedError if any address
// is refused, and otherwise dials the checked addresses in order until one
// answers, each through a dialer whose Control checks it again. A host in the
// Allow list is dialed at whatever it resolves to, unchecked.
//
// Use it with no HTTP proxy (Transport.Proxy nil): through a proxy, the address
// dialed and checked would be the proxy's.
func (p *Policy) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	if p == nil {
		return d.DialContext(ctx, network, address)
	}
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	var family string
	switch network {
	case "tcp":
		family = "ip"
	case "tcp4":
		family = "ip4"
	case "tcp6":
		family = "ip6"
	default:
		return nil, fmt.Errorf("urlpolicy: cannot dial network %q", network)
	}
	addrs, err := p.resolve(ctx, family, host)
	if err != nil {
		return nil, err
	}
	if !p.Allow.hostAllowed(host) {
		for _, a := range addrs {
			if err := p.checkAddr(host, a, true); err != nil {
				return nil, err
			}
		}
		d.Control = p.Control
	}
	var first error
	for i, a := range addrs {
		dctx, cancel := partialDeadline(ctx, len(addrs)-i)
		c, err := d.DialContext(dctx, network, net.JoinHostPort(a.String(), port))
		cancel()
		if err == nil {
			return c, nil
		}
		if first == nil {
			first = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, first
}

// partialDeadline gives one of n remaining addresses its share of ctx's time, but
// at least 2 s when there is that much left (as the net package's dialer does).
func partialDeadline(ctx context.Context, n int) (context.Context, context.CancelFunc) {
	deadline, ok := ctx.Deadline()
	if !ok || n <= 1 {
		return ctx, func() {}
	}
	left := time.Until(deadline)
	share := left / time.Duration(n)
	if share < 2*time.Second {
		share = min(left, 2*time.Second)
	}
	return context.WithTimeout(ctx, share)
}

// Control checks, for net.Dialer.Control, the address a connection is about to be
// made to ("ip:port"), and refuses it with a *DeniedError if the policy does; an
// address it cannot read is refused too. It sees only the address, so it applies
// the Allow list's prefixes but not its host names: a dialer that must honour
// allowed host names should use DialContext.
func (p *Policy) Control(network, address string, _ syscall.RawConn) error {
	if p == nil {
		return nil
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("connection to %s address %q: cannot tell its IP address: %w", network, address, ErrDenied)
	}
	return p.checkAddr("", ap.Addr(), true)
}
