package urlpolicy

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// stubResolver answers from a table and never asks the network; a host it does not
// know is a not-found error.
type stubResolver map[string][]string

func (s stubResolver) LookupNetIP(_ context.Context, _ string, host string) ([]netip.Addr, error) {
	answer, ok := s[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	var addrs []netip.Addr
	for _, a := range answer {
		addrs = append(addrs, netip.MustParseAddr(a))
	}
	return addrs, nil
}

// noLookups fails the test if the policy asks for any name: for hosts that are
// addresses, or that must be refused before a lookup.
func noLookups(t *testing.T) Resolver {
	return resolverFunc(func(_ context.Context, _, host string) ([]netip.Addr, error) {
		t.Errorf("unexpected lookup of %q", host)
		return nil, errors.New("no lookups here")
	})
}

type resolverFunc func(ctx context.Context, network, host string) ([]netip.Addr, error)

func (f resolverFunc) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	return f(ctx, network, host)
}

func TestClassify(t *testing.T) {
	cases := []struct {
		addr, want string // want: a word of the class; "" for an address that passes
	}{
		{"127.0.0.1", "loopback"},
		{"127.255.255.254", "loopback"},
		{"::1", "loopback"},
		{"10.0.0.1", "private"},
		{"172.16.0.1", "private"},
		{"172.31.255.255", "private"},
		{"192.168.1.1", "private"},
		{"169.254.169.254", "link-local"},
		{"169.254.0.1", "link-local"},
		{"fe80::1", "link-local"},
		{"fe80::1%eth0", "link-local"},
		{"fc00::1", "unique-local"},
		{"fd12:3456::1", "unique-local"},
		{"0.0.0.0", "unspecified"},
		{"::", "unspecified"},
		{"0.1.2.3", "this-network"},
		{"100.64.0.1", "carrier-grade NAT"},
		{"100.127.255.255", "carrier-grade NAT"},
		{"192.0.0.170", "IETF protocol assignment"},
		{"224.0.0.1", "multicast"},
		{"239.255.255.250", "multicast"},
		{"ff02::1", "multicast"},
		{"255.255.255.255", "broadcast"},
		{"240.0.0.1", "reserved"},
		{"fec0::1", "site-local"},
		{"::ffff:127.0.0.1", "loopback"},
		{"::ffff:169.254.169.254", "link-local"},
		{"::ffff:10.1.2.3", "private"},
		{"::ffff:0.0.0.0", "unspecified"},
		{"::127.0.0.1", "IPv4-compatible"},
		{"100::1", "discard-only"},
		{"64:ff9b:1::1", "local-use NAT64"},
		{"64:ff9b::7f00:1", "NAT64 address embedding 127.0.0.1, a loopback"},
		{"64:ff9b::a9fe:a9fe", "NAT64 address embedding 169.254.169.254, a link-local"},
		{"2002:7f00:1::1", "6to4 address embedding 127.0.0.1, a loopback"},
		{"2002:c0a8:101::1", "6to4 address embedding 192.168.1.1, a private"},
		{"2001:0:4136:e378:8000:63bf:80ff:fffe", "Teredo address embedding 127.0.0.1, a loopback"},

		{"93.184.216.34", ""},
		{"8.8.8.8", ""},
		{"100.63.255.255", ""},
		{"100.128.0.0", ""},
		{"172.32.0.1", ""},
		{"::ffff:93.184.216.34", ""},
		{"2606:2800:220:1:248:1893:25c8:1946", ""},
		{"64:ff9b::5db8:d822", ""},
		{"2002:5db8:d822::1", ""},
		{"2001:0:4136:e378:8000:63bf:a247:27dd", ""}, // Teredo client 93.184.216.34
	}
	// The same, through CheckURL: as an address literal, and as a name that
	// resolves to the address alone or beside a public one.
	resolver := stubResolver{}
	for i, c := range cases {
		resolver["only"+strconv.Itoa(i)+".example"] = []string{c.addr}
		resolver["also"+strconv.Itoa(i)+".example"] = []string{"93.184.216.34", c.addr}
	}
	p := &Policy{Resolver: resolver}
	for i, c := range cases {
		got := Classify(netip.MustParseAddr(c.addr))
		literal := c.addr
		if strings.Contains(literal, ":") {
			literal = "[" + strings.ReplaceAll(literal, "%", "%25") + "]"
		}
		urls := []string{"http://" + literal + ":8080/", "http://only" + strconv.Itoa(i) + ".example/", "https://also" + strconv.Itoa(i) + ".example/"}
		if c.want == "" {
			require.Empty(t, got, "%s must pass", c.addr)
			for _, u := range urls {
				require.NoError(t, p.CheckURL(context.Background(), u))
			}
			continue
		}
		require.Contains(t, got, c.want, "class of %s", c.addr)
		for _, u := range urls {
			err := p.CheckURL(context.Background(), u)
			require.ErrorIs(t, err, ErrDenied, u)
			require.ErrorContains(t, err, c.want, u)
		}
	}
}

func TestPartialDeadline(t *testing.T) {
	bg := context.Background()
	ctx, cancel := partialDeadline(bg, 3)
	cancel()
	require.Equal(t, bg, ctx, "no deadline: none added")

	parent, cancelParent := context.WithTimeout(bg, 10*time.Second)
	defer cancelParent()
	for _, c := range []struct {
		n        int
		min, max time.Duration
	}{
		{1, 9 * time.Second, 10 * time.Second},
		{2, 4 * time.Second, 5 * time.Second},
		{10, 2*time.Second - 100*time.Millisecond, 2 * time.Second}, // the 2 s floor
	} {
		ctx, cancel := partialDeadline(parent, c.n)
		dl, ok := ctx.Deadline()
		cancel()
		require.True(t, ok)
		left := time.Until(dl)
		require.True(t, left > c.min && left <= c.max, "n=%d: %s left", c.n, left)
	}
	short, cancelShort := context.WithTimeout(bg, time.Second)
	defer cancelShort()
	ctx, cancel = partialDeadline(short, 5)
	defer cancel()
	dl, _ := ctx.Deadline()
	want, _ := short.Deadline()
	require.Equal(t, want, dl, "less than 2 s left: all of it")
}

// Every refused class, written as an address literal in the URL, is refused at
// CheckURL without a lookup.
func TestCheckURLRefusesAddressLiterals(t *testing.T) {
	p := &Policy{Resolver: noLookups(t)}
	for _, u := range []string{
		"http://127.0.0.1/", "http://127.0.0.1:8080/x", "https://[::1]/",
		"http://10.0.0.1/", "http://172.16.5.4/", "http://192.168.0.1/",
		"http://169.254.169.254/latest/meta-data/", "http://[fe80::1]/", "http://[fe80::1%25eth0]:80/",
		"http://[fc00::1]/", "http://[fd00::beef]/",
		"http://0.0.0.0/", "http://[::]/", "http://0.1.2.3/",
		"http://100.64.1.1/", "http://224.0.0.1/", "http://[ff02::1]/", "http://255.255.255.255/", "http://240.1.1.1/",
		"http://[::ffff:127.0.0.1]/", "http://[::ffff:a9fe:a9fe]/", "http://[64:ff9b::7f00:1]/", "http://[2002:a00:1::]/",
		"HTTP://127.0.0.1/", "http://user:pw@10.0.0.1/",
	} {
		err := p.CheckURL(context.Background(), u)
		require.ErrorIs(t, err, ErrDenied, "%s", u)
		var de *DeniedError
		require.ErrorAs(t, err, &de, "%s", u)
		require.False(t, de.Dial)
		require.Contains(t, err.Error(), "--deny-private refuses it", "%s", u)
	}
	err := p.CheckURL(context.Background(), "http://169.254.169.254/latest/meta-data/")
	require.EqualError(t, err, "url host 169.254.169.254 is a link-local address; --deny-private refuses it")
}

// The numeric forms Go's URL and address parsers take for host names, but which
// inet_aton, libc resolvers and browsers read as IPv4 addresses, are read as
// addresses too, and refused without a lookup.
func TestCheckURLRefusesOddLiteralForms(t *testing.T) {
	p := &Policy{Resolver: noLookups(t)}
	for u, addr := range map[string]string{
		"http://2130706433/":                 "127.0.0.1", // one decimal number
		"http://0x7f000001/":                 "127.0.0.1", // one hex number
		"http://0X7F000001/":                 "127.0.0.1",
		"http://017700000001/":               "127.0.0.1", // one octal number
		"http://0177.0.0.1/":                 "127.0.0.1", // an octal part
		"http://0x7f.0.0.1/":                 "127.0.0.1", // a hex part
		"http://127.000.000.001/":            "127.0.0.1", // leading zeros: octal
		"http://127.1/":                      "127.0.0.1", // two parts: the last fills 3 bytes
		"http://127.0.1/":                    "127.0.0.1", // three parts
		"http://127.0.0.1./":                 "127.0.0.1", // the root's trailing dot
		"http://127.1.:8080/":                "127.0.0.1",
		"http://0/":                          "0.0.0.0",
		"http://0x/":                         "0.0.0.0",
		"http://169.254.43518/":              "169.254.169.254",
		"http://0xa9fea9fe/":                 "169.254.169.254",
		"http://2852039166/":                 "169.254.169.254",
		"http://10.1/":                       "10.0.0.1",
		"http://[::ffff:7f00:1]/":            "127.0.0.1", // IPv4-mapped, in hex
		"http://[0:0:0:0:0:ffff:7f00:1]/":    "127.0.0.1",
		"http://[::ffff:127.0.0.1]:8080/":    "127.0.0.1",
		"http://[0:0:0:0:0:ffff:a9fe:a9fe]/": "169.254.169.254",
	} {
		err := p.CheckURL(context.Background(), u)
		require.ErrorIs(t, err, ErrDenied, "%s", u)
		var de *DeniedError
		require.ErrorAs(t, err, &de)
		require.Equal(t, addr, de.Addr.String(), "%s", u)
	}
	err := p.CheckURL(context.Background(), "http://0x7f000001/")
	require.EqualError(t, err, "url host 0x7f000001 resolves to 127.0.0.1, a loopback address; --deny-private refuses it")
}

func TestCheckURLRefusesInvalidURLs(t *testing.T) {
	p := &Policy{Resolver: noLookups(t)}
	for _, u := range []string{
		"ftp://example.com/", "file:///etc/passwd", "example.com/path", "http:///path", "http://:80/",
		"http://[::1/", "http://a b/",
		"http://foo.123/",    // ends in a number, so an address or nothing
		"http://1.2.3.4.5/",  // five parts
		"http://256.1.1.1/",  // a part above 255
		"http://1.2.3.09/",   // 9 is no octal digit
		"http://4294967296/", // 2^32
		"http://1.16777216/", // the last part overflows its 3 bytes
		"http://99999999999999999999999/",
		"http://1..2/",
		"http://bücher.example/", // punycode is wanted
		"http://a..b.example/",
		"http://.example/",
		"http://a!b.example/",
	} {
		err := p.CheckURL(context.Background(), u)
		require.ErrorIs(t, err, ErrInvalid, "%s", u)
		require.NotErrorIs(t, err, ErrDenied, "%s", u)
		require.True(t, strings.HasPrefix(err.Error(), "url "), "%s: message %q should start with url", u, err)
	}
	require.ErrorContains(t, p.CheckURL(context.Background(), "http://bücher.example/"), "punycode")
	require.EqualError(t, p.CheckURL(context.Background(), "ftp://x/"), `url must be http or https, not "ftp"`)
}

func TestCheckURLResolvesNames(t *testing.T) {
	p := &Policy{Resolver: stubResolver{
		"evil.example":    {"127.0.0.1"},
		"meta.example":    {"169.254.169.254"},
		"mixed.example":   {"93.184.216.34", "10.0.0.1"},
		"mixed6.example":  {"2606:2800:220:1:248:1893:25c8:1946", "fd00::1"},
		"mapped.example":  {"::ffff:192.168.0.1"},
		"nat64.example":   {"64:ff9b::a00:1"},
		"public.example":  {"93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"},
		"public4.example": {"93.184.216.34"},
		"empty.example":   {},
	}}
	ctx := context.Background()
	for host, addr := range map[string]string{
		"evil.example":   "127.0.0.1",
		"meta.example":   "169.254.169.254",
		"mixed.example":  "10.0.0.1",
		"mixed6.example": "fd00::1",
		"mapped.example": "192.168.0.1",
		"nat64.example":  "64:ff9b::a00:1",
	} {
		err := p.CheckURL(ctx, "https://"+host+":8443/hook")
		require.ErrorIs(t, err, ErrDenied, host)
		var de *DeniedError
		require.ErrorAs(t, err, &de)
		require.Equal(t, host, de.Host)
		require.Equal(t, addr, de.Addr.String(), host)
	}
	require.EqualError(t, p.CheckURL(ctx, "http://evil.example/"),
		"url host evil.example resolves to 127.0.0.1, a loopback address; --deny-private refuses it")
	require.EqualError(t, p.CheckURL(ctx, "http://meta.example/"),
		"url host meta.example resolves to 169.254.169.254, a link-local address; --deny-private refuses it")

	require.NoError(t, p.CheckURL(ctx, "https://public.example/hook?x=1"))
	require.NoError(t, p.CheckURL(ctx, "http://public4.example:8080/"))
	require.NoError(t, p.CheckURL(ctx, "http://93.184.216.34/"))
	require.NoError(t, p.CheckURL(ctx, "http://[2606:2800:220:1:248:1893:25c8:1946]/"))

	err := p.CheckURL(ctx, "http://nxdomain.example/")
	require.ErrorIs(t, err, ErrLookup)
	require.NotErrorIs(t, err, ErrDenied)
	var dnsErr *net.DNSError
	require.ErrorAs(t, err, &dnsErr)
	require.True(t, dnsErr.IsNotFound)
	require.ErrorIs(t, p.CheckURL(ctx, "http://empty.example/"), ErrLookup)
}

func TestCheckURLAllowList(t *testing.T) {
	allow, err := ParseAllow(" 10.1.0.0/16, worker.internal ,192.168.1.5,fd00::/8,::ffff:172.16.0.0/108")
	require.NoError(t, err)
	require.Equal(t, "10.1.0.0/16,192.168.1.5/32,fd00::/8,172.16.0.0/12,worker.internal", allow.String())
	p := &Policy{Allow: allow, Resolver: stubResolver{
		"worker.internal": {"10.9.9.9"},
		"other.internal":  {"10.9.9.9"},
		"in.internal":     {"10.1.0.5"},
		"half.internal":   {"10.1.0.5", "127.0.0.1"},
	}}
	ctx := context.Background()
	for _, u := range []string{
		"http://10.1.2.3/", "http://10.1.255.255:9000/", "http://192.168.1.5/", "http://[fd00::1]/",
		"http://172.20.0.1/", "http://[::ffff:10.1.0.1]/", "http://10.1.515/",
		"http://worker.internal:8080/", "http://WORKER.Internal./", // an allowed name, whatever it resolves to
		"http://in.internal/", // a name that resolves inside an allowed prefix
	} {
		require.NoError(t, p.CheckURL(ctx, u), u)
	}
	for _, u := range []string{
		"http://10.2.0.1/", "http://192.168.1.6/", "http://127.0.0.1/", "http://[fc00::1]/",
		"http://other.internal/", "http://half.internal/", "http://sub.worker.internal/",
	} {
		require.Error(t, p.CheckURL(ctx, u), u)
	}
}

func TestParseAllow(t *testing.T) {
	a, err := ParseAllow("")
	require.NoError(t, err)
	require.Empty(t, a.Prefixes)
	require.Empty(t, a.Hosts)

	a, err = ParseAllow("127.0.0.0/8,,::1, Metrics.Internal.")
	require.NoError(t, err)
	require.Equal(t, []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}, a.Prefixes)
	require.Equal(t, []string{"metrics.internal"}, a.Hosts)
	again, err := ParseAllow(a.String())
	require.NoError(t, err)
	require.Equal(t, a, again)

	bad := map[string]string{
		"10.1.0.0/33":          "CIDR",
		"10.1.2.3/16":          "did you mean 10.1.0.0/16",
		"worker.internal:8080": "without a port",
		"fe80::1%eth0":         "zone",
		"127.1":                "write the IPv4 address as 127.0.0.1",
		"foo.123":              "ends in a number",
		"bad host!":            "not a host name",
	}
	var all []string
	for entry, want := range bad {
		_, err := ParseAllow("10.0.0.0/8," + entry)
		require.ErrorContains(t, err, want, entry)
		require.ErrorContains(t, err, `allow-list entry 2 "`+entry+`"`)
		all = append(all, entry)
	}
	_, err = ParseAllow(strings.Join(all, ","))
	for _, entry := range all {
		require.ErrorContains(t, err, strconv.Quote(entry), "every bad entry is reported at once")
	}
}

// listener accepts and counts connections on 127.0.0.1 until the test ends.
func listener(t *testing.T) (port string, accepted *atomic.Int32) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	accepted = &atomic.Int32{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	_, port, _ = net.SplitHostPort(ln.Addr().String())
	return port, accepted
}

func TestDialContext(t *testing.T) {
	port, accepted := listener(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resolver := stubResolver{
		"local.example": {"127.0.0.1"},
		"two.example":   {"::1", "127.0.0.1"}, // nothing listens on [::1]:port
	}

	deny := &Policy{Resolver: resolver}
	for _, addr := range []string{"local.example:" + port, "127.0.0.1:" + port, "2130706433:" + port, "127.1:" + port, "[::ffff:127.0.0.1]:" + port} {
		c, err := deny.DialContext(ctx, "tcp", addr)
		require.ErrorIs(t, err, ErrDenied, addr)
		require.Nil(t, c)
		var de *DeniedError
		require.ErrorAs(t, err, &de)
		require.True(t, de.Dial)
		require.Contains(t, err.Error(), "url policy (--deny-private) refused to connect")
	}
	_, err := deny.DialContext(ctx, "tcp", "local.example:"+port)
	require.EqualError(t, err, "the url policy (--deny-private) refused to connect: local.example resolves to 127.0.0.1, a loopback address")
	_, err = deny.DialContext(ctx, "tcp6", "local.example:"+port)
	require.ErrorIs(t, err, ErrLookup, "an IPv4-only name has no address for tcp6")
	_, err = deny.DialContext(ctx, "udp", "local.example:"+port)
	require.Error(t, err)
	time.Sleep(50 * time.Millisecond)
	require.Zero(t, accepted.Load(), "a refused dial must not connect")

	byPrefix := &Policy{Resolver: resolver, Allow: Allow{Prefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}}}
	byHost := &Policy{Resolver: resolver, Allow: Allow{Hosts: []string{"local.example", "two.example"}}}
	for _, p := range []*Policy{byPrefix, byHost} {
		c, err := p.DialContext(ctx, "tcp", "local.example:"+port)
		require.NoError(t, err)
		c.Close()
		// The first address refuses the connection; the second is tried.
		c, err = p.DialContext(ctx, "tcp", "two.example:"+port)
		require.NoError(t, err)
		require.Equal(t, "127.0.0.1:"+port, c.RemoteAddr().String())
		c.Close()
	}
	require.Eventually(t, func() bool { return accepted.Load() == 4 }, 5*time.Second, 10*time.Millisecond)
	_, err = byHost.DialContext(ctx, "tcp", "127.0.0.1:"+port)
	require.ErrorIs(t, err, ErrDenied, "allowing names allows no addresses")
}

func TestControl(t *testing.T) {
	p := &Policy{}
	for _, addr := range []string{"127.0.0.1:80", "[::1]:443", "169.254.169.254:80", "[::ffff:10.0.0.1]:80", "[fe80::1%eth0]:80"} {
		err := p.Control("tcp", addr, nil)
		require.ErrorIs(t, err, ErrDenied, addr)
		require.Contains(t, err.Error(), "refused to connect", addr)
	}
	require.NoError(t, p.Control("tcp4", "93.184.216.34:443", nil))
	require.NoError(t, p.Control("tcp6", "[2606:2800:220:1:248:1893:25c8:1946]:443", nil))
	require.ErrorIs(t, p.Control("unix", "/run/x.sock", nil), ErrDenied, "an address it cannot read is refused")

	allowed := &Policy{Allow: Allow{Prefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}}
	require.NoError(t, allowed.Control("tcp", "127.0.0.1:80", nil))
	require.ErrorIs(t, allowed.Control("tcp", "10.0.0.1:80", nil), ErrDenied)

	// Through a real dialer that resolves by itself.
	port, accepted := listener(t)
	d := &net.Dialer{Control: p.Control, Timeout: 5 * time.Second}
	_, err := d.Dial("tcp", "127.0.0.1:"+port)
	require.ErrorIs(t, err, ErrDenied)
	time.Sleep(50 * time.Millisecond)
	require.Zero(t, accepted.Load())
	d.Control = allowed.Control
	c, err := d.Dial("tcp", "127.0.0.1:"+port)
	require.NoError(t, err)
	c.Close()
}

func TestNilPolicyAllowsEverything(t *testing.T) {
	var p *Policy
	require.NoError(t, p.CheckURL(context.Background(), "http://127.0.0.1/"))
	require.NoError(t, p.CheckAddr(netip.MustParseAddr("169.254.169.254")))
	require.NoError(t, p.Control("tcp", "127.0.0.1:80", nil))
	port, _ := listener(t)
	c, err := p.DialContext(context.Background(), "tcp", "127.0.0.1:"+port)
	require.NoError(t, err)
	c.Close()
}

func TestCheckAddr(t *testing.T) {
	p := &Policy{}
	require.ErrorIs(t, p.CheckAddr(netip.MustParseAddr("::ffff:127.0.0.1")), ErrDenied)
	require.NoError(t, p.CheckAddr(netip.MustParseAddr("93.184.216.34")))
	err := p.CheckAddr(netip.MustParseAddr("100.64.0.1"))
	require.EqualError(t, err, "url host 100.64.0.1 is a carrier-grade NAT address; --deny-private refuses it")
}

// A name that does not exist is bad input; a resolver that timed out or failed is
// not, and the enqueue should be retried.
func TestIsTransient(t *testing.T) {
	ctx := context.Background()
	failing := func(e error) *Policy {
		return &Policy{Resolver: resolverFunc(func(context.Context, string, string) ([]netip.Addr, error) { return nil, e })}
	}
	notFound := &net.DNSError{Err: "no such host", Name: "x.example", IsNotFound: true}
	timeout := &net.DNSError{Err: "i/o timeout", Name: "x.example", IsTimeout: true, IsTemporary: true}
	servfail := &net.DNSError{Err: "server misbehaving", Name: "x.example", IsTemporary: true}
	require.False(t, IsTransient(failing(notFound).CheckURL(ctx, "http://x.example/")))
	require.True(t, IsTransient(failing(timeout).CheckURL(ctx, "http://x.example/")))
	require.True(t, IsTransient(failing(servfail).CheckURL(ctx, "http://x.example/")))
	require.True(t, IsTransient(failing(errors.New("resolver down")).CheckURL(ctx, "http://x.example/")))
	require.False(t, IsTransient(stubResolverPolicy().CheckURL(ctx, "http://10.0.0.1/")), "a refusal is not transient")
	require.False(t, IsTransient(nil))
}

func stubResolverPolicy() *Policy { return &Policy{Resolver: stubResolver{}} }

// Without a lookup, literal addresses in every form and localhost are refused as
// CheckURL refuses them; other names pass (the dial checks them).
func TestCheckURLNoLookup(t *testing.T) {
	p := &Policy{Resolver: failResolver{t}}
	for _, u := range []string{"http://127.0.0.1/", "http://2130706433/", "http://0x7f000001/", "http://[::1]/",
		"http://169.254.169.254/latest", "http://10.0.0.1:8080/", "http://localhost/", "http://a.localhost./", "http://[::ffff:10.0.0.1]/"} {
		require.ErrorIs(t, p.CheckURLNoLookup(u), ErrDenied, u)
	}
	for _, u := range []string{"http://worker.example/", "https://93.184.216.34/"} {
		require.NoError(t, p.CheckURLNoLookup(u), u)
	}
	require.ErrorIs(t, p.CheckURLNoLookup("ftp://x/"), ErrInvalid)
	allow, err := ParseAllow("127.0.0.0/8")
	require.NoError(t, err)
	require.NoError(t, (&Policy{Allow: allow, Resolver: failResolver{t}}).CheckURLNoLookup("http://127.0.0.1/"))
	var none *Policy
	require.NoError(t, none.CheckURLNoLookup("http://127.0.0.1/"))
}

// failResolver fails the test if a lookup is made.
type failResolver struct{ t *testing.T }

func (f failResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	f.t.Errorf("lookup of %q", host)
	return nil, errors.New("no lookups here")
}
