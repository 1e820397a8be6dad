package webhook

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/net/urlpolicy"
	"github.com/miyamotohq/miyamoto/node"
)

// rebinder answers a public address the first time it is asked and 127.0.0.1 ever
// after, as an attacker's DNS server would. Nothing ever connects to the public
// address: only the enqueue check sees it.
type rebinder struct{ calls atomic.Int32 }

func (r *rebinder) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if host != "rebind.example" {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	if r.calls.Add(1) == 1 {
		return []netip.Addr{netip.MustParseAddr("93.184.216.34")}, nil
	}
	return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
}

// A name that resolves to a public address at enqueue and to 127.0.0.1 at delivery
// is refused at connect time: the worker sees nothing. With 127.0.0.0/8 allowed,
// the very same delivery goes through, so the refusal is the policy's doing.
func TestDNSRebindingIsRefusedAtConnectTime(t *testing.T) {
	for _, allow := range []string{"", "127.0.0.0/8"} {
		t.Run("allow="+allow, func(t *testing.T) {
			var hits atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				w.WriteHeader(204)
			}))
			defer srv.Close()
			_, port, err := net.SplitHostPort(srv.Listener.Addr().String())
			require.NoError(t, err)
			url := "http://rebind.example:" + port + "/hook"

			allowList, err := urlpolicy.ParseAllow(allow)
			require.NoError(t, err)
			dns := &rebinder{}
			policy := &urlpolicy.Policy{Allow: allowList, Resolver: dns}
			require.NoError(t, policy.CheckURL(context.Background(), url), "the enqueue check sees the public address")

			res := newResults()
			d := New(Config{Policy: policy}, res.post)
			closeDispatcher(t, d)
			d.Dispatch(node.Delivery{Task: task("rb", url), Attempt: 1, Deadline: 5 * time.Second})
			r := res.next(t, 10*time.Second)
			require.Equal(t, int32(2), dns.calls.Load(), "the dial resolves the name again")
			if allow == "" {
				require.Equal(t, 0, r.Status)
				require.ErrorIs(t, r.Err, urlpolicy.ErrDenied)
				require.ErrorContains(t, r.Err, "url policy (--deny-private) refused to connect: rebind.example resolves to 127.0.0.1, a loopback address")
				require.Equal(t, node.ErrorPolicy, r.ErrorKind)
				require.False(t, r.OK())
				time.Sleep(50 * time.Millisecond)
				require.Zero(t, hits.Load(), "the worker must see no request")
			} else {
				require.NoError(t, r.Err)
				require.Equal(t, 204, r.Status)
				require.Equal(t, int32(1), hits.Load())
			}
			res.requireOncePer(t, "rb")
		})
	}
}

// Address literals, the odd numeric forms included, are refused at connect time
// too, for a task that skipped the enqueue check (say one enqueued before the
// policy was turned on).
func TestPolicyRefusesLiteralsAtConnectTime(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	_, port, err := net.SplitHostPort(srv.Listener.Addr().String())
	require.NoError(t, err)

	res := newResults()
	d := New(Config{Policy: &urlpolicy.Policy{Resolver: &rebinder{}}}, res.post)
	closeDispatcher(t, d)
	ids := []string{"plain", "decimal", "short", "mapped"}
	for i, host := range []string{"127.0.0.1", "2130706433", "127.1", "[::ffff:127.0.0.1]"} {
		d.Dispatch(node.Delivery{Task: task(ids[i], "http://"+host+":"+port+"/"), Attempt: 1, Deadline: 5 * time.Second})
	}
	for range ids {
		r := res.next(t, 10*time.Second)
		require.Equal(t, 0, r.Status, r.TaskID)
		require.ErrorIs(t, r.Err, urlpolicy.ErrDenied, r.TaskID)
	}
	time.Sleep(50 * time.Millisecond)
	require.Zero(t, hits.Load())
	res.requireOncePer(t, ids...)
}

// An allowed host name is dialed at whatever it resolves to, private or not.
func TestPolicyAllowedHostConnects(t *testing.T) {
	hosts := make(chan string, 2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hosts <- r.Host
		w.WriteHeader(204)
	}))
	defer srv.Close()
	_, port, err := net.SplitHostPort(srv.Listener.Addr().String())
	require.NoError(t, err)
	allow, err := urlpolicy.ParseAllow("worker.internal")
	require.NoError(t, err)
	resolver := resolverFunc(func(_ context.Context, _, host string) ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	})
	res := newResults()
	d := New(Config{Policy: &urlpolicy.Policy{Allow: allow, Resolver: resolver}}, res.post)
	closeDispatcher(t, d)
	d.Dispatch(node.Delivery{Task: task("ok", "http://worker.internal:"+port+"/"), Attempt: 1, Deadline: 5 * time.Second})
	d.Dispatch(node.Delivery{Task: task("no", "http://other.internal:"+port+"/"), Attempt: 1, Deadline: 5 * time.Second})
	byID := map[string]node.DeliveryResult{}
	for range 2 {
		r := res.next(t, 10*time.Second)
		byID[r.TaskID] = r
	}
	require.Equal(t, 204, byID["ok"].Status)
	require.ErrorIs(t, byID["no"].Err, urlpolicy.ErrDenied)
	require.Equal(t, "worker.internal:"+port, <-hosts, "the request names the host, not the address dialed")
	require.Empty(t, hosts)
}

type resolverFunc func(ctx context.Context, network, host string) ([]netip.Addr, error)

func (f resolverFunc) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	return f(ctx, network, host)
}

func TestNewClientWithPolicyUsesNoProxy(t *testing.T) {
	plain := NewClient(nil).Transport.(*http.Transport)
	require.NotNil(t, plain.Proxy, "without a policy the environment's proxy is honoured, as before")

	tr := NewClient(&urlpolicy.Policy{}).Transport.(*http.Transport)
	require.Nil(t, tr.Proxy, "with a policy no proxy may be used: the proxy's address would be checked instead of the target's")
	require.NotNil(t, tr.DialContext)
}

func TestPolicyWithCustomClientPanics(t *testing.T) {
	require.PanicsWithValue(t, "webhook: Config sets both Client and Policy; build the client with NewClient(policy)", func() {
		New(Config{Client: NewClient(nil), Policy: &urlpolicy.Policy{}}, func(node.DeliveryResult) {})
	})
}
