package urlpolicy

import (
	"fmt"
	"net/netip"
)

var (
	thisNetwork  = netip.MustParsePrefix("0.0.0.0/8")
	cgNAT        = netip.MustParsePrefix("100.64.0.0/10")
	ietfProtocol = netip.MustParsePrefix("192.0.0.0/24")
	reserved4    = netip.MustParsePrefix("240.0.0.0/4")
	broadcast4   = netip.MustParseAddr("255.255.255.255")

	v4Compatible = netip.MustParsePrefix("::/96")
	discardOnly  = netip.MustParsePrefix("100::/64")
	nat64        = netip.MustParsePrefix("64:ff9b::/96")
	nat64Local   = netip.MustParsePrefix("64:ff9b:1::/48")
	teredo       = netip.MustParsePrefix("2001::/32")
	sixToFour    = netip.MustParsePrefix("2002::/16")
	siteLocal    = netip.MustParsePrefix("fec0::/10")
)

// Classify names the class of a refused address, as a noun phrase for messages
// ("a loopback address"), or returns "" for an address the policy lets through (a
// public unicast address). IPv4-mapped IPv6 addresses are read as the IPv4 address
// they map, and zones are ignored. The refused classes:
//
//	IPv4: 0.0.0.0/8 (with the unspecified 0.0.0.0), loopback 127.0.0.0/8, private
//	      10/8 172.16/12 192.168/16, link-local 169.254.0.0/16, carrier-grade NAT
//	      100.64.0.0/10, IETF protocol assignments 192.0.0.0/24, multicast
//	      224.0.0.0/4, reserved 240.0.0.0/4, broadcast 255.255.255.255;
//	IPv6: unspecified ::, loopback ::1, IPv4-compatible ::/96, link-local fe80::/10,
//	      site-local fec0::/10, unique-local fc00::/7, multicast ff00::/8,
//	      discard-only 100::/64, local-use NAT64 64:ff9b:1::/48; and the NAT64
//	      (64:ff9b::/96), 6to4 (2002::/16) and Teredo (2001::/32, client address)
//	      addresses whose embedded IPv4 address is refused.
func Classify(a netip.Addr) string {
	a = a.Unmap().WithZone("")
	switch {
	case !a.IsValid():
		return "an invalid address"
	case a.IsUnspecified():
		return "the unspecified address"
	case a.IsLoopback():
		return "a loopback address"
	case a.IsLinkLocalUnicast():
		return "a link-local address"
	case a.IsMulticast():
		return "a multicast address"
	}
	if a.Is4() {
		switch {
		case thisNetwork.Contains(a):
			return "a this-network address (0.0.0.0/8)"
		case a.IsPrivate():
			return "a private address"
		case cgNAT.Contains(a):
			return "a carrier-grade NAT address"
		case ietfProtocol.Contains(a):
			return "an IETF protocol assignment address (192.0.0.0/24)"
		case a == broadcast4:
			return "the broadcast address"
		case reserved4.Contains(a):
			return "a reserved address (240.0.0.0/4)"
		}
		return ""
	}
	b := a.As16()
	switch {
	case a.IsPrivate():
		return "a unique-local address"
	case siteLocal.Contains(a):
		return "a site-local address"
	case v4Compatible.Contains(a):
		return "an IPv4-compatible address"
	case discardOnly.Contains(a):
		return "a discard-only address"
	case nat64Local.Contains(a):
		return "a local-use NAT64 address"
	case nat64.Contains(a):
		return embedding("NAT64", [4]byte(b[12:16]))
	case sixToFour.Contains(a):
		return embedding("6to4", [4]byte(b[2:6]))
	case teredo.Contains(a):
		// The client's address is stored with every bit flipped.
		return embedding("Teredo", [4]byte{^b[12], ^b[13], ^b[14], ^b[15]})
	}
	return ""
}

// embedding classifies an IPv6 address by the IPv4 address it carries.
func embedding(kind string, v4 [4]byte) string {
	a := netip.AddrFrom4(v4)
	if class := Classify(a); class != "" {
		return fmt.Sprintf("a %s address embedding %s, %s", kind, a, class)
	}
	return ""
}
