package node

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// Protocol selects how replicas agree on who fires a task.
type Protocol uint8

const (
	// ProtocolQuorum: a replica fires only after a quorum granted its claim.
	ProtocolQuorum Protocol = iota
	// ProtocolNaive: the original cancel-and-push-back scheme with no claims. It
	// duplicates under partitions and exists only as the simulator's negative control.
	ProtocolNaive
)

func (p Protocol) String() string {
	if p == ProtocolNaive {
		return "naive"
	}
	return "quorum"
}

// ParseProtocol reads "quorum" or "naive" ("" is quorum).
func ParseProtocol(s string) (Protocol, error) {
	switch s {
	case "", "quorum":
		return ProtocolQuorum, nil
	case "naive":
		return ProtocolNaive, nil
	}
	return 0, fmt.Errorf("protocol must be quorum or naive, not %q", s)
}

// RetryConfig follows App Engine's queue.yaml retry_parameters. A task fails for good
// once every limit that is set has been exceeded; a zero limit is unset and holds
// nothing back. With neither limit set, a task is retried forever.
type RetryConfig struct {
	TaskRetryLimit int           // failed attempts allowed before the task may die; 0: unset
	TaskAgeLimit   time.Duration // age after which the task may die; 0: unset
	MinBackoff     time.Duration // first retry delay
	MaxBackoff     time.Duration // cap on the delay
	MaxDoublings   int           // doublings of MinBackoff, then the delay grows linearly
}

// QueueConfig is one queue's settings.
type QueueConfig struct {
	Delivery         DeliveryMode
	Retry            RetryConfig
	DispatchDeadline time.Duration // longest webhook call; the lease may cut it shorter
	// Rate limits deliveries started per second across the whole cluster, with bursts
	// of BucketSize (a token bucket); 0 is no limit. MaxConcurrent limits deliveries
	// in flight across the cluster; 0 is no limit. A limited queue's deliveries each
	// take a permit from the queue's token node (see permits.go).
	Rate          float64
	BucketSize    int
	MaxConcurrent int
}

// SettingFields is a set of QueueConfig's fields, one bit each, named as the API
// names them.
type SettingFields uint16

const (
	FieldRate SettingFields = 1 << iota
	FieldBucketSize
	FieldMaxConcurrent
	FieldTaskRetryLimit
	FieldTaskAgeLimit
	FieldMinBackoff
	FieldMaxBackoff
	FieldMaxDoublings
	FieldDispatchDeadline
	FieldDelivery

	// AllSettingFields is every field.
	AllSettingFields = FieldDelivery<<1 - 1
)

// Differing returns the fields whose values differ between q and o.
func (q QueueConfig) Differing(o QueueConfig) SettingFields {
	var f SettingFields
	mark := func(differ bool, field SettingFields) {
		if differ {
			f |= field
		}
	}
	mark(q.Rate != o.Rate, FieldRate)
	mark(q.BucketSize != o.BucketSize, FieldBucketSize)
	mark(q.MaxConcurrent != o.MaxConcurrent, FieldMaxConcurrent)
	mark(q.Retry.TaskRetryLimit != o.Retry.TaskRetryLimit, FieldTaskRetryLimit)
	mark(q.Retry.TaskAgeLimit != o.Retry.TaskAgeLimit, FieldTaskAgeLimit)
	mark(q.Retry.MinBackoff != o.Retry.MinBackoff, FieldMinBackoff)
	mark(q.Retry.MaxBackoff != o.Retry.MaxBackoff, FieldMaxBackoff)
	mark(q.Retry.MaxDoublings != o.Retry.MaxDoublings, FieldMaxDoublings)
	mark(q.DispatchDeadline != o.DispatchDeadline, FieldDispatchDeadline)
	mark(q.Delivery != o.Delivery, FieldDelivery)
	return f
}

// With returns q with the fields in f taken from o.
func (q QueueConfig) With(o QueueConfig, f SettingFields) QueueConfig {
	take := func(field SettingFields, assign func()) {
		if f&field != 0 {
			assign()
		}
	}
	take(FieldRate, func() { q.Rate = o.Rate })
	take(FieldBucketSize, func() { q.BucketSize = o.BucketSize })
	take(FieldMaxConcurrent, func() { q.MaxConcurrent = o.MaxConcurrent })
	take(FieldTaskRetryLimit, func() { q.Retry.TaskRetryLimit = o.Retry.TaskRetryLimit })
	take(FieldTaskAgeLimit, func() { q.Retry.TaskAgeLimit = o.Retry.TaskAgeLimit })
	take(FieldMinBackoff, func() { q.Retry.MinBackoff = o.Retry.MinBackoff })
	take(FieldMaxBackoff, func() { q.Retry.MaxBackoff = o.Retry.MaxBackoff })
	take(FieldMaxDoublings, func() { q.Retry.MaxDoublings = o.Retry.MaxDoublings })
	take(FieldDispatchDeadline, func() { q.DispatchDeadline = o.DispatchDeadline })
	take(FieldDelivery, func() { q.Delivery = o.Delivery })
	return q
}

// Limited reports whether deliveries need a permit from the token node.
func (q QueueConfig) Limited() bool { return q.Rate > 0 || q.MaxConcurrent > 0 }

// DefaultQueueConfig is App Engine's push queue default, with a 10 s dispatch deadline.
func DefaultQueueConfig() QueueConfig {
	return QueueConfig{
		Delivery: AtLeastOnce,
		Retry: RetryConfig{
			MinBackoff:   100 * time.Millisecond,
			MaxBackoff:   time.Hour,
			MaxDoublings: 16,
		},
		DispatchDeadline: 10 * time.Second,
	}
}

// Config is one node's settings. Zero fields are filled by EnsureDefaults.
type Config struct {
	ID      NodeID
	Members []NodeID // every member, this node included; order does not matter: the roster of epoch 1
	// Join: this node starts outside any cluster and waits to be added (the
	// daemon's --join): its roster is itself alone at epoch 0, it takes no task,
	// until a roster that lists it arrives (or is in its log). Members must be
	// this node alone.
	Join bool
	// PeerAddrs gives the peer address of members (optional; the daemon's --peers),
	// kept in the roster so that members learn where a new member listens.
	PeerAddrs map[NodeID]string

	Replicas      int           // R, default 3, capped by the cluster size
	ReplicaOffset time.Duration // replica k fires k×ReplicaOffset after replica 0; default 2s
	Lease         time.Duration // how long a granted claim holds; default 30s
	// MaxClockDrift bounds how far any two nodes' clocks may disagree, both in the time
	// they read and in how much time they measure over one lease. Deadlines end this
	// much before the lease. Default 1s.
	MaxClockDrift time.Duration
	// PermitValidity bounds how long after asking the token node for a permit a
	// claimant of a limited queue may still start the delivery it was granted: a
	// later answer is dropped and the claim tried again (queues.go). Q1 allows a
	// start to lag its slot by this plus SlotGrace, so longer loosens the rate limit;
	// it must be longer than the slowest round trip between members, or their
	// permits always come too late. Default DefaultPermitValidity (200ms).
	PermitValidity time.Duration

	ClaimTimeout time.Duration // give up a claim round after this; default 1s
	// ClaimAhead: a replica starts its claim this long before its timer's due time
	// and, having won it early, delivers at the due time, so that the claim's round
	// trip (and with storage the acceptors' fsyncs) is not added to every delivery's
	// lateness. At most half of MaxClockDrift (acceptors refuse a claim more than
	// MaxClockDrift before the task is due). 0 means DefaultClaimAhead; negative,
	// none. Quorum protocol only.
	ClaimAhead     time.Duration
	EnqueueTimeout time.Duration // answer ErrOutcomeUnknown after this; default 5s
	OutcomeRetry   time.Duration // resend Done/Dead until a majority acknowledged; default 200ms
	DedupWindow    time.Duration // keep final tasks this long; default 1h
	// FinishedDetail: the finished tasks a node keeps in full, the most recently
	// finished; older ones it keeps for the rest of DedupWindow in a compact form
	// whose attempt history has no answer bodies nor error texts (tomb.go).
	// Default 1000.
	FinishedDetail int
	// PendingDetail and ColdAhead say when a pending task goes cold (cold.go): kept
	// in the compact form of a finished one until it comes due or something
	// addresses it. A task waiting for its due time with no protocol state goes cold
	// once PendingDetail replica timers were armed after its own, if its timer is
	// due at least ColdAhead later than the clock's last reading. Defaults 1000 and
	// 1m; cold or not, the node does the same.
	PendingDetail int
	ColdAhead     time.Duration
	SyncInterval  time.Duration // gossip queue settings to a random member this often; default 2s
	// RemoveAfter: the leader removes from the roster a member it has not heard
	// from for this long (0, the default: never; remove.go). At least Lease.
	RemoveAfter time.Duration
	// ListTimeout bounds a cluster-wide listing or count: members that have not
	// answered by then are named as missing in a partial answer. Default 1.5s.
	ListTimeout time.Duration
	// RecoveryWait: after starting without durable storage the node refuses, this long,
	// to learn any task created before it started. Default Lease + 2×MaxClockDrift +
	// EnqueueTimeout: every grant it may have given and every Store sent before then
	// is over by the end of it.
	RecoveryWait time.Duration

	Protocol Protocol
	// ClaimQuorum overrides the grants needed to fire (default: a majority of R).
	// Anything below a majority is unsafe; it exists for negative-control scenarios.
	ClaimQuorum int
	// Unsafe switches on deliberate protocol slips for the simulator's negative
	// controls only (see unsafe.go); the daemon never sets it. Zero: none.
	Unsafe Unsafe

	// Admission limits (0: none), counted on tasks this node holds that are not final:
	// past them it refuses new tasks as coordinator and as replica (see limits.go).
	MaxPending      int   // tasks
	MaxPendingBytes int64 // their approximate memory (taskBytes)
	MaxQueuePending int   // tasks of any one queue
	// MaxQueues caps the queues a coordinator makes known: past it a task or a
	// setting of a new queue is refused (queuecap.go). 0: none.
	MaxQueues int

	// CheckTaskURL, when set, checks the URL of every task and schedule a peer sends
	// (the door, door.go), as the API checks a client's: the daemon's refuses the
	// addresses --deny-private refuses when the URL names one literally. It must
	// be deterministic and do no IO (names are checked when a delivery connects).
	CheckTaskURL func(url string) error
	// MaxTaskBody, when set, bounds the body of a task or schedule a peer sends, in
	// bytes: the daemon gives its --max-body. 0: the wire's frame bound only.
	MaxTaskBody int64

	// DefaultQueue is every queue's settings until a client sets them (SetQueue).
	// There is no other way to give a node queue settings: they are data, set
	// through the API, replicated and durable, never static configuration.
	DefaultQueue QueueConfig
}

// EnsureDefaults fills every zero field with its default.
func (c *Config) EnsureDefaults() {
	if c.Replicas == 0 {
		c.Replicas = 3
	}
	if c.ReplicaOffset == 0 {
		c.ReplicaOffset = 2 * time.Second
	}
	if c.Lease == 0 {
		c.Lease = 30 * time.Second
	}
	if c.MaxClockDrift == 0 {
		c.MaxClockDrift = time.Second
	}
	if c.PermitValidity == 0 {
		c.PermitValidity = DefaultPermitValidity
	}
	if c.ClaimAhead == 0 {
		c.ClaimAhead = DefaultClaimAhead
	}
	if c.ClaimTimeout == 0 {
		c.ClaimTimeout = time.Second
	}
	if c.EnqueueTimeout == 0 {
		c.EnqueueTimeout = 5 * time.Second
	}
	if c.OutcomeRetry == 0 {
		c.OutcomeRetry = 200 * time.Millisecond
	}
	if c.DedupWindow == 0 {
		c.DedupWindow = time.Hour
	}
	if c.FinishedDetail == 0 {
		c.FinishedDetail = 1000
	}
	if c.PendingDetail == 0 {
		c.PendingDetail = 1000
	}
	if c.ColdAhead == 0 {
		c.ColdAhead = time.Minute
	}
	if c.SyncInterval == 0 {
		c.SyncInterval = 2 * time.Second
	}
	if c.ListTimeout == 0 {
		c.ListTimeout = 1500 * time.Millisecond
	}
	if c.RecoveryWait == 0 {
		c.RecoveryWait = c.Lease + 2*c.MaxClockDrift + c.EnqueueTimeout
	}
	if c.DefaultQueue == (QueueConfig{}) {
		c.DefaultQueue = DefaultQueueConfig()
	}
}

// Validate reports every problem at once, each naming its field.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) { errs = append(errs, fieldErr(field, format, args...)) }
	if c.ID == "" {
		bad("id", "must not be empty")
	}
	if !slices.Contains(c.Members, c.ID) {
		bad("members", "must include this node (%q)", c.ID)
	}
	if c.Join && len(c.Members) != 1 {
		bad("members", "must be this node alone when it joins a cluster (join), not %d members", len(c.Members))
	}
	seen := map[NodeID]bool{}
	for _, m := range c.Members {
		if m == "" {
			bad("members", "an ID is empty")
		}
		if seen[m] {
			bad("members", "%q appears twice", m)
		}
		seen[m] = true
	}
	if c.Replicas < 1 || c.Replicas > 64 {
		bad("replicas", "must be between 1 and 64, not %d", c.Replicas)
	}
	if c.ReplicaOffset < 0 {
		bad("replica_offset", "must not be negative")
	}
	if c.MaxClockDrift < 0 {
		bad("max_clock_drift", "must not be negative")
	}
	if c.Lease <= 2*c.MaxClockDrift {
		bad("lease", "must be longer than twice max_clock_drift (%s), not %s", 2*c.MaxClockDrift, c.Lease)
	}
	if c.PermitValidity < 0 || c.PermitValidity > c.Lease/4 {
		bad("permit_validity", "must be positive and at most a quarter of the lease (%s), not %s", c.Lease/4, c.PermitValidity)
	}
	if c.Lease > MaxLease {
		bad("lease", "must be at most %s (peers refuse longer claims), not %s", MaxLease, c.Lease)
	}
	if c.ClaimQuorum < 0 || c.ClaimQuorum > c.Replicas {
		bad("claim_quorum", "must be between 0 (majority) and replicas (%d), not %d", c.Replicas, c.ClaimQuorum)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"claim_timeout", c.ClaimTimeout}, {"enqueue_timeout", c.EnqueueTimeout}, {"outcome_retry", c.OutcomeRetry}, {"dedup_window", c.DedupWindow}, {"sync_interval", c.SyncInterval}, {"list_timeout", c.ListTimeout}} {
		if d.v <= 0 {
			bad(d.name, "must be positive, not %s", d.v)
		}
	}
	if c.FinishedDetail < 0 {
		bad("finished_detail", "must be positive (or 0 for the default), not %d", c.FinishedDetail)
	}
	if c.PendingDetail < 0 {
		bad("pending_detail", "must be positive (or 0 for the default), not %d", c.PendingDetail)
	}
	if c.ColdAhead < 0 {
		bad("cold_ahead", "must be positive (or 0 for the default), not %s", c.ColdAhead)
	}
	if c.RemoveAfter != 0 && c.RemoveAfter < c.Lease {
		bad("remove_after", "must be 0 (never) or at least the lease (%s), not %s", c.Lease, c.RemoveAfter)
	}
	if err := c.DefaultQueue.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Bounds of QueueConfig.Rate (tasks per second) when it is set: App Engine's
// slowest rate, one a day, and a million a second.
const (
	MinRate = 1.0 / 86400
	MaxRate = 1e6
)

// maxRefill bounds bucket_size / rate, the time a drained bucket takes to fill.
const maxRefill = 365 * 24 * time.Hour

// Validate checks one queue's settings.
func (q QueueConfig) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) { errs = append(errs, fieldErr(field, format, args...)) }
	r := q.Retry
	if r.TaskRetryLimit < 0 {
		bad("retry.task_retry_limit", "must not be negative")
	}
	if r.TaskAgeLimit < 0 {
		bad("retry.task_age_limit", "must not be negative")
	}
	if r.MinBackoff <= 0 {
		bad("retry.min_backoff", "must be positive")
	}
	if r.MaxBackoff < r.MinBackoff {
		bad("retry.max_backoff", "must be at least min_backoff (%s)", r.MinBackoff)
	}
	if r.MaxDoublings < 0 || r.MaxDoublings > 30 {
		bad("retry.max_doublings", "must be between 0 and 30")
	}
	if q.DispatchDeadline <= 0 {
		bad("dispatch_deadline", "must be positive")
	}
	rateOK := q.Rate == 0 || q.Rate >= MinRate && q.Rate <= MaxRate
	if !rateOK {
		bad("rate", "must be 0 (no limit) or from %g (one a day) to %g tasks per second, not %g", MinRate, float64(MaxRate), q.Rate)
	}
	switch {
	case q.BucketSize < 0 || q.BucketSize > 1e6:
		bad("bucket_size", "must be between 0 and 1000000, not %d", q.BucketSize)
	case q.Rate > 0 && q.BucketSize == 0:
		bad("bucket_size", "must be at least 1 when rate is set")
	case rateOK && q.Rate > 0 && float64(q.BucketSize)/q.Rate > maxRefill.Seconds():
		// The token node computes (bucket_size-1)/rate as a time.Duration: bounded
		// here, it can neither overflow nor mean a burst nobody could wait for.
		bad("bucket_size", "%d at a rate of %g per second takes %.0f days to refill; at most %.0f days", q.BucketSize, q.Rate, float64(q.BucketSize)/q.Rate/86400, maxRefill.Hours()/24)
	}
	if q.MaxConcurrent < 0 {
		bad("max_concurrent", "must not be negative")
	}
	return errors.Join(errs...)
}

// Backoff is the delay before the next attempt after `retries` failed deliveries
// (retries ≥ 1), App Engine style: MinBackoff doubled up to MaxDoublings times, then
// growing by the last doubled step each time, never above MaxBackoff.
func (r RetryConfig) Backoff(retries int) time.Duration {
	d := r.MinBackoff
	for i := 1; i < retries && d < r.MaxBackoff; i++ {
		if i <= r.MaxDoublings {
			d *= 2
		} else {
			d += r.MinBackoff << r.MaxDoublings
		}
	}
	return min(d, r.MaxBackoff)
}

// Exhausted reports whether a task that has failed `retries` times at `age` may no
// longer be retried: every limit that is set is exceeded, and at least one is set.
func (r RetryConfig) Exhausted(retries int, age time.Duration) bool {
	if r.TaskRetryLimit == 0 && r.TaskAgeLimit == 0 {
		return false
	}
	if r.TaskRetryLimit > 0 && retries <= r.TaskRetryLimit {
		return false
	}
	if r.TaskAgeLimit > 0 && age <= r.TaskAgeLimit {
		return false
	}
	return true
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
