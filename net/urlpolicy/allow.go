package urlpolicy

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Allow lists the exceptions to a Policy.
//
// An address inside one of Prefixes passes, whatever its class, at enqueue and at
// connect time (Control included).
//
// A host named in Hosts passes with whatever it resolves to, at enqueue and at
// connect time alike: its addresses are not checked, since the exception would be
// useless if the connect-time check refused the private address the name exists to
// reach. Trust in such a name is trust in whoever controls its DNS records. The
// match is exact (no wildcards), case-insensitive, ignores one trailing dot, and
// is made on the host as written in the URL; Control, which sees only addresses,
// cannot honour it (DialContext does).
type Allow struct {
	Prefixes []netip.Prefix
	Hosts    []string
}

// ParseAllow reads a comma-separated allow list, say
// "10.1.0.0/16,worker.internal,192.168.1.5,fd00::/8": prefixes in CIDR form, single
// IP addresses (taken as /32 or /128) and host names. Spaces around entries and
// empty entries are ignored. It reports every bad entry at once.
func ParseAllow(list string) (Allow, error) {
	var a Allow
	var errs []error
	for i, e := range strings.Split(list, ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("allow-list entry %d %q: %s", i+1, e, fmt.Sprintf(format, args...)))
		}
		switch {
		case strings.Contains(e, "/"):
			p, err := netip.ParsePrefix(e)
			if err != nil {
				bad("not a prefix in CIDR form (%v)", err)
				continue
			}
			if p != p.Masked() {
				bad("has bits set past the /%d; did you mean %s?", p.Bits(), p.Masked())
				continue
			}
			a.Prefixes = append(a.Prefixes, unmapPrefix(p))
		case strings.Contains(e, ":"):
			ip, err := netip.ParseAddr(e)
			if err != nil {
				bad("not an IP address (%v); give a host name without a port", err)
				continue
			}
			if ip.Zone() != "" {
				bad("an address with a zone cannot be allow-listed; give it without %%%s", ip.Zone())
				continue
			}
			a.Prefixes = append(a.Prefixes, unmapPrefix(netip.PrefixFrom(ip, ip.BitLen())))
		default:
			ip, isLiteral, err := parseLiteral(e)
			switch {
			case err != nil:
				bad("ends in a number but is not an IPv4 address")
			case isLiteral && ip.String() != e:
				bad("write the IPv4 address as %s", ip)
			case isLiteral:
				a.Prefixes = append(a.Prefixes, netip.PrefixFrom(ip, 32))
			case checkHostName(e) != nil:
				bad("not a host name (ASCII letters, digits, '-', '_' and dots; punycode for others)")
			default:
				a.Hosts = append(a.Hosts, strings.ToLower(strings.TrimSuffix(e, ".")))
			}
		}
	}
	return a, errors.Join(errs...)
}

// unmapPrefix turns an IPv4-mapped IPv6 prefix (::ffff:10.0.0.0/104) into the IPv4
// prefix it maps (10.0.0.0/8), since addresses are unmapped before they are checked.
func unmapPrefix(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p
}

// String writes a in the form ParseAllow reads.
func (a Allow) String() string {
	var parts []string
	for _, p := range a.Prefixes {
		parts = append(parts, p.String())
	}
	return strings.Join(append(parts, a.Hosts...), ",")
}

func (a Allow) addrAllowed(ip netip.Addr) bool {
	ip = ip.Unmap().WithZone("")
	for _, p := range a.Prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func (a Allow) hostAllowed(host string) bool {
	host = strings.TrimSuffix(host, ".")
	for _, h := range a.Hosts {
		if strings.EqualFold(host, strings.TrimSuffix(h, ".")) {
			return true
		}
	}
	return false
}
