package peer

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/net/wire"
	"github.com/miyamotohq/miyamoto/node"
)

// A hello that names a node outside Config.Peers is refused, with a reason the
// dialer can read, and counted; its frames never reach deliver, and however many
// strangers say hello the stats (and so the metrics) keep one entry per member.
func TestHelloFromANonMemberIsRefused(t *testing.T) {
	var logs logBuffer
	box := newInbox()
	a, err := New(Config{Self: "a", Listen: "127.0.0.1:0", Peers: map[node.NodeID]string{"b": freeAddr(t)}, Logger: logs.logger()}, box.deliver)
	require.NoError(t, err)
	require.NoError(t, a.Start())
	t.Cleanup(func() { a.Close() })

	const strangers = 200
	for i := range strangers {
		id := node.NodeID(fmt.Sprintf("stranger-%d", i))
		c := dialRaw(t, a.Addr().String())
		c.write(appendHello(nil, id), wire.AppendFrame(nil, testMsg(id, "a", i)))
		require.Equal(t, string([]byte{refuseNotMember}), string(c.read(refuseMagic, 1)), "stranger %d", i)
		c.Close()
	}
	eventually(t, "every stranger counted", func() bool { return a.Stats().NotMember == strangers })
	st := a.Stats()
	require.EqualValues(t, strangers, st.RefusedConns)
	require.Len(t, st.Peers, 1, "one entry per member, none per stranger")
	require.Contains(t, st.Peers, node.NodeID("b"))
	require.Zero(t, box.count("stranger-0"))
	// One warning line for the lot: they all come from 127.0.0.1.
	require.Equal(t, 1, strings.Count(logs.String(), "peer connection refused"), logs.String())
	require.Contains(t, logs.String(), "not a member")

	// A member is still heard.
	c := dialRaw(t, a.Addr().String())
	c.write(appendHello(nil, "b"), wire.AppendFrame(nil, testMsg("b", "a", 1)))
	eventually(t, "the member's frame", func() bool { return box.count("b") == 1 })
}

// A dialer that is not a member of the acceptor's roster hears why.
func TestDialerHearsItIsNotAMember(t *testing.T) {
	addrs := map[node.NodeID]string{"a": freeAddr(t), "b": freeAddr(t)}
	a, err := New(Config{Self: "a", Listen: addrs["a"], Peers: map[node.NodeID]string{"c": freeAddr(t)}}, func(node.Message) {})
	require.NoError(t, err)
	require.NoError(t, a.Start())
	t.Cleanup(func() { a.Close() })
	b, err := New(Config{Self: "b", Listen: addrs["b"], Peers: addrs}, func(node.Message) {})
	require.NoError(t, err)
	require.NoError(t, b.Start())
	t.Cleanup(func() { b.Close() })
	b.Send(testMsg("b", "a", 1))
	eventually(t, "the refusal", func() bool {
		return strings.Contains(b.Stats().Peers["a"].LastError, "does not count this node as a member")
	})
}

// One warning per host per period, and the next says how many were held back.
func TestWarnLimiter(t *testing.T) {
	l := newWarnLimiter(time.Minute, 2)
	t0 := time.Unix(1000, 0)
	n, ok := l.allow("h1", t0)
	require.True(t, ok)
	require.Zero(t, n)
	for i := range 5 {
		_, ok := l.allow("h1", t0.Add(time.Duration(i)*time.Second))
		require.False(t, ok)
	}
	_, ok = l.allow("h2", t0)
	require.True(t, ok, "another host has its own budget")
	n, ok = l.allow("h1", t0.Add(time.Minute))
	require.True(t, ok)
	require.Equal(t, 5, n, "the suppressed count")

	// A full table (one host here) makes new hosts share one overflow budget
	// instead of growing it; hosts quiet for a period are forgotten to make room.
	l = newWarnLimiter(time.Minute, 1)
	_, ok = l.allow("x", t0)
	require.True(t, ok)
	_, ok = l.allow("y", t0)
	require.True(t, ok, "the overflow budget's first line")
	_, ok = l.allow("z", t0)
	require.False(t, ok, "the overflow budget is shared")
	require.Len(t, l.hosts, 1)
	_, ok = l.allow("w", t0.Add(2*time.Minute))
	require.True(t, ok)
	require.Len(t, l.hosts, 1)
	require.Contains(t, l.hosts, "w", "x, quiet for a period, made room")
}
