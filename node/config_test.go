package node

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fieldsOf lists the Field of every *FieldError inside err (errors.Join and %w
// wrapping included), in order.
func fieldsOf(err error) []string {
	var out []string
	var walk func(error)
	walk = func(e error) {
		if e == nil {
			return
		}
		if fe, ok := e.(*FieldError); ok {
			out = append(out, fe.Field)
			return
		}
		switch u := e.(type) {
		case interface{ Unwrap() []error }:
			for _, x := range u.Unwrap() {
				walk(x)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		}
	}
	walk(err)
	return out
}

func validConfig() Config {
	c := Config{ID: "a", Members: []NodeID{"c", "a", "b"}}
	c.EnsureDefaults()
	return c
}

func TestConfigDefaults(t *testing.T) {
	c := validConfig()
	require.NoError(t, c.Validate())
	assert.Equal(t, 3, c.Replicas)
	assert.Equal(t, 2*time.Second, c.ReplicaOffset)
	assert.Equal(t, 30*time.Second, c.Lease)
	assert.Equal(t, time.Second, c.MaxClockDrift)
	assert.Equal(t, time.Second, c.ClaimTimeout)
	assert.Equal(t, 5*time.Second, c.EnqueueTimeout)
	assert.Equal(t, 200*time.Millisecond, c.OutcomeRetry)
	assert.Equal(t, time.Hour, c.DedupWindow)
	assert.Equal(t, c.Lease+2*c.MaxClockDrift+c.EnqueueTimeout, c.RecoveryWait)
	assert.Equal(t, DefaultQueueConfig(), c.DefaultQueue)
	assert.Equal(t, ProtocolQuorum, c.Protocol)
	assert.Equal(t, AtLeastOnce, c.DefaultQueue.Delivery)
}

func TestConfigValidateNamesFields(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mut    func(*Config)
		fields []string
	}{
		{"replicas 0", func(c *Config) { c.Replicas = 0 }, []string{"replicas"}},
		{"lease equal to 2×drift", func(c *Config) { c.Lease = 2 * c.MaxClockDrift }, []string{"lease"}},
		{"lease below 2×drift", func(c *Config) { c.Lease = time.Second; c.MaxClockDrift = 3 * time.Second }, []string{"lease"}},
		{"members missing self", func(c *Config) { c.Members = []NodeID{"b", "c"} }, []string{"members"}},
		{"member twice", func(c *Config) { c.Members = []NodeID{"a", "b", "b"} }, []string{"members"}},
		{"joining with members", func(c *Config) { c.Join = true; c.Members = []NodeID{"a", "b"} }, []string{"members"}},
		{"empty id", func(c *Config) { c.ID = ""; c.Members = []NodeID{"a"} }, []string{"id", "members"}},
		{"claim quorum above replicas", func(c *Config) { c.ClaimQuorum = 4 }, []string{"claim_quorum"}},
		{"negative offset", func(c *Config) { c.ReplicaOffset = -time.Second }, []string{"replica_offset"}},
		{"zero claim timeout", func(c *Config) { c.ClaimTimeout = 0 }, []string{"claim_timeout"}},
		{"queue min backoff", func(c *Config) { c.DefaultQueue.Retry.MinBackoff = 0 }, []string{"retry.min_backoff"}},
		{"queue max below min", func(c *Config) { c.DefaultQueue.Retry.MaxBackoff = time.Millisecond }, []string{"retry.max_backoff"}},
		{"several at once", func(c *Config) { c.Replicas = 0; c.Members = []NodeID{"b"}; c.Lease = time.Second },
			[]string{"members", "replicas", "lease"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig()
			tc.mut(&c)
			err := c.Validate()
			require.Error(t, err)
			assert.Equal(t, tc.fields, fieldsOf(err), "error: %v", err)
			for _, f := range tc.fields {
				assert.Contains(t, err.Error(), f)
			}
		})
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	env := Env{Clock: &fakeClock{}, Network: fakeNetwork{}, Dispatcher: &fakeDispatcher{}, Rand: rand.New(rand.NewPCG(1, 1))}
	_, err := New(Config{ID: "a", Members: []NodeID{"a"}, Replicas: 65}, env)
	assert.Equal(t, []string{"replicas"}, fieldsOf(err))
	_, err = New(Config{ID: "a", Members: []NodeID{"a"}, Replicas: -1}, env)
	assert.Contains(t, fieldsOf(err), "replicas")
	_, err = New(Config{ID: "a", Members: []NodeID{"b"}}, env)
	assert.Equal(t, []string{"members"}, fieldsOf(err))
	_, err = New(Config{ID: "a", Members: []NodeID{"a"}, Lease: 2 * time.Second}, env)
	assert.Equal(t, []string{"lease"}, fieldsOf(err), "default drift is 1s")

	_, err = New(Config{ID: "a", Members: []NodeID{"a"}}, Env{})
	assert.Error(t, err, "an empty Env")

	// Replicas and ClaimQuorum are capped by the cluster size.
	_, err = New(Config{ID: "a", Members: []NodeID{"a", "b"}, Replicas: 5, ClaimQuorum: 6}, env)
	assert.Equal(t, []string{"claim_quorum"}, fieldsOf(err))
	n, err := New(Config{ID: "a", Members: []NodeID{"a", "b"}, Replicas: 5, ClaimQuorum: 5}, env)
	require.NoError(t, err)
	assert.Equal(t, 2, n.Config().Replicas)
	assert.Equal(t, 2, n.Config().ClaimQuorum)
	assert.Len(t, n.Placement("x"), 2)
}

func TestPlacement(t *testing.T) {
	env := Env{Clock: &fakeClock{}, Network: fakeNetwork{}, Dispatcher: &fakeDispatcher{}, Rand: rand.New(rand.NewPCG(1, 1))}
	members := []NodeID{"e", "c", "a", "d", "b"}
	var nodes []*Node
	for _, id := range members {
		n, err := New(Config{ID: id, Members: members}, env)
		require.NoError(t, err)
		nodes = append(nodes, n)
	}
	ring := []NodeID{"a", "b", "c", "d", "e"}
	for _, id := range []string{"x", "task-1", "0b7c7f8e-0000-4000-8000-000000000000", ""} {
		p := nodes[0].Placement(id)
		require.Len(t, p, 3)
		for _, n := range nodes[1:] {
			assert.Equal(t, p, n.Placement(id), "every member places a task alike")
		}
		// R consecutive members of the sorted ring.
		start := posOf(ring, p[0])
		for k := range p {
			assert.Equal(t, ring[(start+k)%len(ring)], p[k])
		}
	}
}

func TestBackoff(t *testing.T) {
	r := RetryConfig{MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Hour, MaxDoublings: 16}
	for retries, want := range map[int]time.Duration{
		1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 3: 400 * time.Millisecond, 4: 800 * time.Millisecond,
		10: 100 * time.Millisecond << 9, 16: 100 * time.Millisecond << 15, 17: time.Hour, 1000: time.Hour,
	} {
		assert.Equal(t, want, r.Backoff(retries), "retries=%d", retries)
	}

	// App Engine's documented example: min 10s, max 300s, max_doublings 3 retries
	// at 10s, 20s, 40s, 80s, 160s, 240s, 300s, 300s: doubling three times, then
	// growing linearly by 2^3 × 10s, capped at max_backoff.
	ae := RetryConfig{MinBackoff: 10 * time.Second, MaxBackoff: 300 * time.Second, MaxDoublings: 3}
	var got []time.Duration
	for i := 1; i <= 8; i++ {
		got = append(got, ae.Backoff(i))
	}
	s := time.Second
	assert.Equal(t, []time.Duration{10 * s, 20 * s, 40 * s, 80 * s, 160 * s, 240 * s, 300 * s, 300 * s}, got)

	// No doublings: linear growth by min_backoff.
	lin := RetryConfig{MinBackoff: s, MaxBackoff: 4 * s, MaxDoublings: 0}
	got = got[:0]
	for i := 1; i <= 6; i++ {
		got = append(got, lin.Backoff(i))
	}
	assert.Equal(t, []time.Duration{s, 2 * s, 3 * s, 4 * s, 4 * s, 4 * s}, got)

	// min == max: constant.
	c := RetryConfig{MinBackoff: 5 * s, MaxBackoff: 5 * s, MaxDoublings: 16}
	assert.Equal(t, 5*s, c.Backoff(1))
	assert.Equal(t, 5*s, c.Backoff(50))

	// Never decreasing, never above max, even for huge retry counts.
	def := DefaultQueueConfig().Retry
	prev := time.Duration(0)
	for i := 1; i <= 200; i++ {
		b := def.Backoff(i)
		assert.GreaterOrEqual(t, b, prev, "retries=%d", i)
		assert.LessOrEqual(t, b, def.MaxBackoff)
		prev = b
	}
	assert.Equal(t, def.MaxBackoff, def.Backoff(1<<30))
}

func TestExhausted(t *testing.T) {
	const h = time.Hour
	for _, tc := range []struct {
		name    string
		limit   int
		age     time.Duration
		retries int
		taskAge time.Duration
		want    bool
	}{
		{"no limits: retried forever", 0, 0, 1_000_000, 1000 * h, false},
		{"retry limit not reached", 2, 0, 2, 0, false},
		{"retry limit exceeded", 2, 0, 3, 0, true},
		{"retry limit 1", 1, 0, 1, 0, false},
		{"retry limit 1 exceeded", 1, 0, 2, 0, true},
		{"age limit not reached", 0, h, 50, h, false},
		{"age limit exceeded", 0, h, 1, h + 1, true},
		{"both set, only retries exceeded", 2, h, 3, h / 2, false},
		{"both set, only age exceeded", 2, h, 1, 2 * h, false},
		{"both set, both exceeded", 2, h, 3, 2 * h, true},
		{"both set, neither exceeded", 2, h, 0, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := RetryConfig{TaskRetryLimit: tc.limit, TaskAgeLimit: tc.age, MinBackoff: time.Second, MaxBackoff: time.Minute}
			assert.Equal(t, tc.want, r.Exhausted(tc.retries, tc.taskAge))
		})
	}
}

func TestParseEnums(t *testing.T) {
	for s, want := range map[string]DeliveryMode{"": AtLeastOnce, "at-least-once": AtLeastOnce, "at-most-once": AtMostOnce} {
		got, err := ParseDeliveryMode(s)
		require.NoError(t, err)
		assert.Equal(t, want, got)
	}
	_, err := ParseDeliveryMode("exactly-once")
	assert.Error(t, err)
	assert.Equal(t, "at-most-once", AtMostOnce.String())

	for s, want := range map[string]Protocol{"": ProtocolQuorum, "quorum": ProtocolQuorum, "naive": ProtocolNaive} {
		got, err := ParseProtocol(s)
		require.NoError(t, err)
		assert.Equal(t, want, got)
	}
	_, err = ParseProtocol("raft")
	assert.Error(t, err)

	assert.Equal(t, "succeeded", StateSucceeded.String())
	assert.Equal(t, "state(99)", TaskState(99).String())
	assert.True(t, StateUnknown.Final())
	assert.False(t, StateClaimed.Final())
	assert.Equal(t, "claim_resp", MsgClaimResp.String())
	assert.Equal(t, "msg(0)", MsgType(0).String())
}

// Differing and With agree field by field: taking every differing field from o
// gives o, and taking one field changes that field only.
func TestSettingFieldsDifferingAndWith(t *testing.T) {
	d := DefaultQueueConfig()
	o := QueueConfig{Delivery: AtMostOnce, DispatchDeadline: time.Minute, Rate: 3, BucketSize: 2, MaxConcurrent: 4,
		Retry: RetryConfig{TaskRetryLimit: 5, TaskAgeLimit: time.Hour, MinBackoff: time.Second, MaxBackoff: 2 * time.Hour, MaxDoublings: 3}}
	require.Equal(t, AllSettingFields, o.Differing(d), "every field differs")
	require.Equal(t, o, d.With(o, AllSettingFields))
	require.Zero(t, d.Differing(d))
	for f := SettingFields(1); f <= AllSettingFields; f <<= 1 {
		got := d.With(o, f)
		require.Equal(t, f, got.Differing(d), "field %#x", f)
	}
}

// A rate is 0 (none) or from one a day to a million a second, and a bucket that
// would take over a year to refill is refused: (bucket_size-1)/rate must fit in a
// time.Duration.
func TestRateBounds(t *testing.T) {
	q := DefaultQueueConfig()
	for _, c := range []struct {
		rate   float64
		bucket int
		field  string
	}{
		{0, 0, ""}, {MinRate, 1, ""}, {MaxRate, 1, ""}, {1e-12, 1, "rate"}, {MinRate / 2, 1, "rate"}, {2e6, 1, "rate"},
		{-1, 1, "rate"}, {MinRate, 365, ""}, {MinRate, 366, "bucket_size"}, {MinRate, 1_000_000, "bucket_size"},
	} {
		q.Rate, q.BucketSize = c.rate, c.bucket
		err := q.Validate()
		if c.field == "" {
			require.NoError(t, err, "rate %g bucket %d", c.rate, c.bucket)
			continue
		}
		var fe *FieldError
		require.ErrorAs(t, err, &fe, "rate %g bucket %d", c.rate, c.bucket)
		require.Equal(t, c.field, fe.Field, err.Error())
	}
}
