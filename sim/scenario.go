package sim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/miyamotohq/miyamoto/node"
)

// Duration is a time.Duration written in JSON as a Go duration string ("1.5s").
type Duration time.Duration

func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reports a bad value as a *json.UnmarshalTypeError so that the
// decoder fills in the path of the field (jsonError then names it).
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var v bytes.Buffer
		json.Compact(&v, b) // one line: the value may span several
		return &json.UnmarshalTypeError{Value: v.String(), Type: durationType}
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return &json.UnmarshalTypeError{Value: fmt.Sprintf("%q (%v)", s, err), Type: durationType}
	}
	*d = Duration(v)
	return nil
}

var durationType = reflect.TypeFor[Duration]()

// Range is a closed interval of durations; values are drawn uniformly.
type Range struct {
	Min Duration `json:"min"`
	Max Duration `json:"max"`
}

// Scenario is one simulator experiment, read from a JSON file. scenarios/README.md
// documents every field.
type Scenario struct {
	Name          string       `json:"name"`
	Description   string       `json:"description,omitempty"`
	Cluster       ClusterSpec  `json:"cluster"`
	Network       NetworkSpec  `json:"network"`
	Clocks        ClockSpec    `json:"clocks"`
	Disk          DiskSpec     `json:"disk"`
	Workload      WorkloadSpec `json:"workload"`
	Workers       WorkerSpec   `json:"workers"`
	Faults        FaultSpec    `json:"faults"`
	Duration      Duration     `json:"duration"`       // safety phase
	LivenessBound Duration     `json:"liveness_bound"` // longest liveness phase
	Expect        Expectation  `json:"expect"`
	// RegressionSeeds once failed; every sweep runs them besides the seeds asked for.
	RegressionSeeds []uint64 `json:"regression_seeds,omitempty"`
}

type ClusterSpec struct {
	Nodes int `json:"nodes"`
	// Spares are nodes started outside the cluster (node.Config.Join), after the
	// Nodes members, that join events add.
	Spares        int      `json:"spares,omitempty"`
	Replicas      int      `json:"replicas"`
	ReplicaOffset Duration `json:"replica_offset"`
	Protocol      string   `json:"protocol,omitempty"`     // quorum (default) | naive
	ClaimQuorum   int      `json:"claim_quorum,omitempty"` // 0: majority
	Lease         Duration `json:"lease,omitempty"`
	MaxClockDrift Duration `json:"max_clock_drift,omitempty"`
	// PermitValidity is node.Config's (0: its default); Q1 allows for it.
	PermitValidity Duration `json:"permit_validity,omitempty"`
	Storage        string   `json:"storage,omitempty"` // memory (default) | durable
	// DedupWindow is how long a finished task (and its name) is kept (node.Config).
	DedupWindow Duration `json:"dedup_window,omitempty"`
	// Admission limits of every node (node.Config); 0: none.
	MaxPending      int `json:"max_pending,omitempty"`
	MaxQueuePending int `json:"max_queue_pending,omitempty"`
	// Unsafe names deliberate protocol slips (UnsafeSwitches, node.Unsafe) for
	// negative controls; only a scenario that expects a violation may list any.
	Unsafe []string `json:"unsafe,omitempty"`
}

type NetworkSpec struct {
	Latency   Range   `json:"latency"`
	Drop      float64 `json:"drop,omitempty"`
	Duplicate float64 `json:"duplicate,omitempty"`
	// Reorder is the probability that a message is held back by up to ReorderDelay
	// more, so that later messages overtake it.
	Reorder      float64  `json:"reorder,omitempty"`
	ReorderDelay Duration `json:"reorder_delay,omitempty"`
	// Partition is what a partition does to the messages it blocks: "drop" (the
	// default: the link is cut, as a proxy that closes connections does) or "hold"
	// (a silent partition, as a firewall that drops packets makes: the sender's
	// connection stays open, TCP keeps what was written, and delivers it, late, when
	// the link heals, unless either end's process died meanwhile).
	Partition string `json:"partition,omitempty"`
}

// DiskSpec describes the simulated disks of durable storage (net/disk's real log
// over a crashable in-memory file system).
type DiskSpec struct {
	// SyncLatency is how long each group commit (write and fsync) takes.
	SyncLatency Range `json:"sync_latency"`
	// TornWrites is the probability, per file with unsynced bytes at a power loss,
	// that a random prefix of them survives (a torn write); otherwise none does.
	TornWrites float64 `json:"torn_writes,omitempty"`
	// SegmentSize is the log's segment size in bytes (small, so that segments roll).
	SegmentSize int64 `json:"segment_size,omitempty"`
	// CompactEvery: this often each node compacts its log, when it forgot tasks
	// after their dedup window since the last time (as the daemon does).
	CompactEvery Duration `json:"compact_every,omitempty"`
}

// ClockSpec bounds the clock faults: each node gets an offset in ±MaxOffset and a
// rate error in ±MaxDrift (0.001 = 1 ms per second). Offsets fixes the offset of the
// nodes it names (what an imported incident measured), in place of a drawn one.
type ClockSpec struct {
	MaxOffset Duration            `json:"max_offset,omitempty"`
	MaxDrift  float64             `json:"max_drift,omitempty"`
	Offsets   map[string]Duration `json:"offsets,omitempty"`
}

// drawn reports whether the nodes' clocks get random offsets and drifts.
func (c ClockSpec) drawn() bool { return c.MaxOffset != 0 || c.MaxDrift != 0 }

// maxOffset is the farthest any clock is off: MaxOffset, or a fixed offset beyond it.
func (c ClockSpec) maxOffset() Duration {
	m := c.MaxOffset
	for _, off := range c.Offsets {
		m = max(m, off, -off)
	}
	return m
}

type WorkloadSpec struct {
	Tasks     int         `json:"tasks"`
	Rate      float64     `json:"rate"` // enqueues per second (Poisson arrivals)
	Countdown Range       `json:"countdown"`
	Queues    []QueueSpec `json:"queues,omitempty"`
	Names     *NameSpec   `json:"names,omitempty"`
	// Schedules are cron schedules set by a client's PUT (schedules.go).
	Schedules []ScheduleSpec `json:"schedules,omitempty"`
	// Lookups are clients' GET /v1/tasks/{id} of acknowledged tasks (lookup.go).
	Lookups *LookupSpec `json:"lookups,omitempty"`
}

// LookupSpec makes clients look tasks up, as GET /v1/tasks/{id} does (lookup.go).
type LookupSpec struct {
	Rate float64 `json:"rate"` // lookups per second (Poisson arrivals)
	// Until is when the lookups stop (true time); 0: 10 s into the liveness phase
	// (duration + 10 s), so that some are made on a whole network (V1's bound).
	Until Duration `json:"until,omitempty"`
}

// NameSpec gives a share of the tasks a name drawn from a small pool, so that some
// enqueues repeat a name and must be refused (409) as duplicates.
type NameSpec struct {
	Fraction float64 `json:"fraction"` // share of tasks that are named
	Pool     int     `json:"pool"`     // names drawn uniformly from name-0 .. name-(pool-1)
	// Resend: a client whose named enqueue failed (an error other than 409, or no
	// answer within the client's timeout) sends it again, unchanged, through another
	// node that is up, after a second, at most this many times, as the 503's message
	// says is safe. 0: never.
	Resend int `json:"resend,omitempty"`
}

type QueueSpec struct {
	Name             string    `json:"name"`
	Weight           float64   `json:"weight,omitempty"` // share of the tasks; default 1
	Delivery         string    `json:"delivery,omitempty"`
	Retry            RetrySpec `json:"retry,omitempty"`
	DispatchDeadline Duration  `json:"dispatch_deadline,omitempty"`
	Rate             float64   `json:"rate,omitempty"`           // deliveries per second, cluster-wide; 0: none
	BucketSize       int       `json:"bucket_size,omitempty"`    // burst; default 1 with a rate
	MaxConcurrent    int       `json:"max_concurrent,omitempty"` // in flight, cluster-wide; 0: none
}

type RetrySpec struct {
	TaskRetryLimit int      `json:"task_retry_limit,omitempty"`
	TaskAgeLimit   Duration `json:"task_age_limit,omitempty"`
	MinBackoff     Duration `json:"min_backoff,omitempty"`
	MaxBackoff     Duration `json:"max_backoff,omitempty"`
	MaxDoublings   *int     `json:"max_doublings,omitempty"`
}

// WorkerSpec: each delivery draws one behaviour with these probabilities (the rest
// of 1 is success). FailFirst makes each task's first deliveries answer 500.
type WorkerSpec struct {
	ClientError float64 `json:"client_error,omitempty"` // 4xx
	ServerError float64 `json:"server_error,omitempty"` // 5xx
	Slow        float64 `json:"slow,omitempty"`         // answers 2xx after SlowLatency
	Never       float64 `json:"never,omitempty"`        // never answers: the deadline ends it
	Latency     Range   `json:"latency"`
	SlowLatency Range   `json:"slow_latency,omitempty"`
	FailFirst   int     `json:"fail_first,omitempty"`
}

type FaultSpec struct {
	Schedule []FaultEvent `json:"schedule,omitempty"`
	Swarm    *SwarmSpec   `json:"swarm,omitempty"`
}

// FaultEvent is one timed fault. Kinds and their fields are listed in FaultKinds.
type FaultEvent struct {
	At       Duration `json:"at"`
	Kind     string   `json:"kind"`
	Nodes    []string `json:"nodes,omitempty"`
	Duration Duration `json:"duration,omitempty"` // 0: until the liveness phase
	Value    float64  `json:"value,omitempty"`    // probability for drop/duplicate/reorder; seconds for delay and disk_slow
	// Queue and Settings, for set_queue, pause_queue, resume_queue, purge_queue and
	// delete_queue:
	// the change is made through one live node, like a client's PUT
	// /v1/queues/{queue}. cancel_task and requeue_task draw a task of Queue (any
	// queue when empty).
	Queue    string     `json:"queue,omitempty"`
	Settings *QueueSpec `json:"settings,omitempty"`
	// On, when set, aims the fault at a moment of the protocol instead of a time: it
	// is armed at At and applied at the first such moment after, inside the node's
	// input, so that it cuts what the node sends next in that input. The moments:
	// "roster_committed" (a leader just counted the stores that commit a roster, and
	// has not told the members yet) and "roster_proposed" (a leader is sending the
	// proposal of a roster, none has left yet), for isolate_leader: the leader is
	// cut off before anyone learnt the commit, or before its proposal reached
	// anyone.
	On string `json:"on,omitempty"`
}

// FaultTriggers are the moments FaultEvent.On can name, with the kinds each takes.
var FaultTriggers = map[string][]string{
	"roster_committed": {"isolate_leader"},
	"roster_proposed":  {"isolate_leader"},
}

// SwarmSpec: each seed turns each listed kind on with probability 1/2 (at least one),
// then draws faults of the enabled kinds at Rate per second during the safety phase.
type SwarmSpec struct {
	Kinds       []string `json:"kinds"`
	Rate        float64  `json:"rate"`
	MaxDuration Duration `json:"max_duration"`
	// MaxDown caps nodes crashed or paused at once (default: a minority).
	MaxDown int `json:"max_down,omitempty"`
}

// Expectation says what a correct build must show: "pass" (no violation on any seed)
// or "violation" (the checker must catch one of Invariants on at least one seed).
type Expectation struct {
	Outcome    string   `json:"outcome"`
	Invariants []string `json:"invariants,omitempty"`
}

// FaultKinds lists every fault kind with what it does.
var FaultKinds = map[string]string{
	"crash":          "crash Nodes (volatile state lost; with durable storage a power loss: unsynced writes lost, but for torn writes), restart after Duration",
	"crash_holder":   "crash the node with the most deliveries in flight, restart after Duration",
	"pause":          "pause Nodes (state kept, nothing runs), resume after Duration",
	"stop":           "stop Nodes gracefully, as SIGTERM stops the daemon: the node drains (no new enqueue or claim, claim rounds in progress released), deliveries in flight run until they end or for 15 s, when they are cut, the log is closed (everything appended synced), the process ends; restart after Duration (or once down, if later)",
	"stop_holder":    "stop (as stop) the node with the most deliveries in flight, restart after Duration",
	"corrupt":        "durable storage: crash Nodes (power loss) and flip one bit of a synced record of each (its length field or its payload); at restart, after Duration, the log refuses to start and the operator runs repair-log",
	"kill":           "kill Nodes' processes (kill -9): with durable storage what they wrote stays in the page cache; restart after Duration",
	"disk_stall":     "durable storage: every group commit (fsync) of Nodes hangs until Duration ends",
	"disk_slow":      "durable storage: every group commit of Nodes takes up to Value seconds more, for Duration",
	"disk_full":      "durable storage: Nodes' disks are full (ENOSPC, writes cut short) for Duration",
	"disk_emfile":    "durable storage: Nodes cannot open files (EMFILE) for Duration",
	"fsync_error":    "durable storage: the next fsync of Nodes' logs fails (EIO); the log stops for good and the process is restarted when Duration ends",
	"pause_holder":   "pause the node with the most deliveries in flight, resume after Duration",
	"isolate":        "cut Nodes (one, by default drawn) off from everyone, both ways",
	"join":           "start adding Nodes (spares; by default the next spare not added yet) to the cluster: each asks a random live member every second until its roster lists it (not a fault: the daemon's --join)",
	"remove":         "start removing Nodes (members; by default one drawn, unless that leaves fewer than two) from the cluster: a random live member is asked every second until its roster no longer lists it (node.Remove, the API's remove); the node keeps running",
	"replace":        "remove Nodes[0] (a member; by default drawn) and join Nodes[1] (a spare; by default the next not added yet) at once",
	"crash_leader":   "crash the node that holds the roster lease (none: nothing), restart after Duration",
	"isolate_leader": "cut the node that holds the roster lease off from everyone, both ways (a leader in a minority), for Duration",
	"split":          "cut Nodes (the minority side; drawn by default) from the rest, both ways",
	"oneway":         "drop messages from Nodes[0] to everyone else, or with two Nodes to Nodes[1] only (a one-way link); the other way still works",
	"bridge":         "two sides that reach only Nodes[0] (the bridge), not each other",
	"drop":           "drop messages with probability Value",
	"duplicate":      "duplicate messages with probability Value",
	"reorder":        "hold back messages with probability Value by up to reorder_delay",
	"delay":          "messages sent to Nodes (one drawn by default) while it lasts arrive Value seconds (above 0, at most 60) later than the latency says (a slow link into them)",
	"clock":          "swarm only: give the nodes clock offsets and drifts within clocks",
	"set_queue":      "change Queue's settings to Settings through a random live node (not a fault: a client's PUT)",
	"pause_queue":    "pause Queue through a random live node",
	"resume_queue":   "resume Queue through a random live node",
	"purge_queue":    "purge Queue through a random live node (cancels its tasks created before now)",
	"delete_queue":   "delete Queue's settings through a random live node, as DELETE /v1/queues/{queue} does (it runs on the defaults, unpaused); Value 1 purges it in the same change (?force=true)",
	"cancel_task":    "cancel a random acknowledged task that is not final (of Queue, when given) through a random live node",
	"requeue_task":   "re-queue a random dead task (of Queue, when given) through a random live node, as POST /v1/tasks/{id}/retry does",
}

// diskFaults are the kinds that need durable storage.
var diskFaults = map[string]bool{"corrupt": true, "disk_stall": true, "disk_slow": true, "disk_full": true, "disk_emfile": true, "fsync_error": true}

// LoadScenario reads and validates a scenario file.
func LoadScenario(path string) (*Scenario, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	sc, err := ParseScenario(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return sc, nil
}

// ParseScenario decodes a scenario, refusing unknown fields, fills defaults and
// validates it. Errors name the field at fault.
func ParseScenario(b []byte) (*Scenario, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var sc Scenario
	if err := dec.Decode(&sc); err != nil {
		return nil, jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after the scenario object")
	}
	sc.fillDefaults()
	if err := sc.Validate(); err != nil {
		// One line, every problem: "a: ...; b: ...".
		return nil, errors.New(strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	return &sc, nil
}

func jsonError(err error) error {
	var ute *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &ute) && ute.Type == durationType:
		return fmt.Errorf("field %q: a duration is a string such as \"1.5s\", not %s", ute.Field, ute.Value)
	case errors.As(err, &ute):
		return fmt.Errorf("field %q: expected %s, got JSON %s", ute.Field, ute.Type, ute.Value)
	case errors.As(err, &se):
		return fmt.Errorf("invalid JSON at byte %d: %v", se.Offset, err)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return fmt.Errorf("unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
	}
	return err
}

func (sc *Scenario) fillDefaults() {
	c := &sc.Cluster
	if c.Protocol == "" {
		c.Protocol = "quorum"
	}
	if c.Storage == "" {
		c.Storage = "memory"
	}
	if c.Lease == 0 {
		c.Lease = Duration(30 * time.Second)
	}
	if c.MaxClockDrift == 0 {
		c.MaxClockDrift = Duration(time.Second)
	}
	if sc.Disk.SyncLatency == (Range{}) {
		sc.Disk.SyncLatency = Range{Duration(time.Millisecond), Duration(3 * time.Millisecond)}
	}
	if sc.Disk.SegmentSize == 0 {
		sc.Disk.SegmentSize = 256 << 10
	}
	if sc.Disk.CompactEvery == 0 {
		sc.Disk.CompactEvery = Duration(10 * time.Second)
	}
	if sc.Network.Latency == (Range{}) {
		sc.Network.Latency = Range{Duration(time.Millisecond), Duration(5 * time.Millisecond)}
	}
	if sc.Network.ReorderDelay == 0 {
		sc.Network.ReorderDelay = Duration(200 * time.Millisecond)
	}
	if len(sc.Workload.Queues) == 0 {
		sc.Workload.Queues = []QueueSpec{{Name: "default"}}
	}
	for i := range sc.Workload.Queues {
		if sc.Workload.Queues[i].Weight == 0 {
			sc.Workload.Queues[i].Weight = 1
		}
	}
	sc.fillScheduleDefaults()
	if sc.Workers.Latency == (Range{}) {
		sc.Workers.Latency = Range{Duration(5 * time.Millisecond), Duration(50 * time.Millisecond)}
	}
	if sc.Workers.SlowLatency == (Range{}) {
		sc.Workers.SlowLatency = Range{Duration(5 * time.Second), Duration(20 * time.Second)}
	}
	if sc.LivenessBound == 0 {
		sc.LivenessBound = Duration(5 * time.Minute)
	}
	if sc.Expect.Outcome == "" {
		sc.Expect.Outcome = "pass"
	}
	if s := sc.Faults.Swarm; s != nil {
		if s.MaxDuration == 0 {
			s.MaxDuration = Duration(10 * time.Second)
		}
		if s.MaxDown == 0 {
			s.MaxDown = (sc.Cluster.Nodes - 1) / 2
		}
	}
}

// Validate reports every problem at once, each naming its field.
func (sc *Scenario) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	prob := func(field string, p float64) {
		if p < 0 || p > 1 {
			bad(field, "must be a probability between 0 and 1, not %g", p)
		}
	}
	// Every duration is capped so that sums of them cannot overflow.
	const maxDur = Duration(7 * 24 * time.Hour)
	capped := func(field string, d Duration) {
		if d > maxDur {
			bad(field, "must be at most %s, not %s", maxDur.D(), d.D())
		}
	}
	rng := func(field string, r Range) {
		if r.Min < 0 || r.Max < r.Min {
			bad(field, "needs 0 <= min <= max, not min %s max %s", r.Min.D(), r.Max.D())
		}
		capped(field+".max", r.Max)
	}
	for _, d := range []struct {
		f string
		v Duration
	}{{"cluster.replica_offset", sc.Cluster.ReplicaOffset}, {"cluster.lease", sc.Cluster.Lease}, {"cluster.max_clock_drift", sc.Cluster.MaxClockDrift},
		{"network.reorder_delay", sc.Network.ReorderDelay}, {"clocks.max_offset", sc.Clocks.MaxOffset}, {"duration", sc.Duration}, {"liveness_bound", sc.LivenessBound}} {
		capped(d.f, d.v)
	}
	if sc.Name == "" {
		bad("name", "must not be empty")
	}
	c := sc.Cluster
	if c.Nodes < 1 || c.Nodes > 64 {
		bad("cluster.nodes", "must be between 1 and 64, not %d", c.Nodes)
	}
	if c.Spares < 0 || c.Nodes+c.Spares > 64 {
		bad("cluster.spares", "must be between 0 and 64 less cluster.nodes, not %d", c.Spares)
	}
	if c.Replicas < 1 {
		bad("cluster.replicas", "must be at least 1, not %d", c.Replicas)
	} else if c.Replicas > c.Nodes {
		bad("cluster.replicas", "%d replicas need at least as many nodes, not %d", c.Replicas, c.Nodes)
	}
	if c.ReplicaOffset < 0 {
		bad("cluster.replica_offset", "must not be negative")
	}
	if _, err := node.ParseProtocol(c.Protocol); err != nil {
		bad("cluster.protocol", "%v", err)
	}
	if c.ClaimQuorum < 0 || c.ClaimQuorum > c.Replicas {
		bad("cluster.claim_quorum", "must be between 0 (majority) and replicas, not %d", c.ClaimQuorum)
	}
	if c.Storage != "memory" && c.Storage != "durable" {
		bad("cluster.storage", "must be memory or durable, not %q", c.Storage)
	}
	if c.MaxPending < 0 {
		bad("cluster.max_pending", "must not be negative (0: no limit), not %d", c.MaxPending)
	}
	if c.MaxQueuePending < 0 {
		bad("cluster.max_queue_pending", "must not be negative (0: no limit), not %d", c.MaxQueuePending)
	}
	if c.MaxClockDrift < 0 {
		bad("cluster.max_clock_drift", "must not be negative")
	}
	for _, u := range c.Unsafe {
		if _, ok := UnsafeSwitches[u]; !ok {
			bad("cluster.unsafe", "unknown switch %q (one of %s)", u, strings.Join(UnsafeNames(), ", "))
		}
	}
	if len(c.Unsafe) > 0 && sc.Expect.Outcome != "violation" {
		bad("cluster.unsafe", "deliberate slips are for negative controls only: needs expect.outcome violation, not %q", sc.Expect.Outcome)
	}
	if c.DedupWindow < 0 {
		bad("cluster.dedup_window", "must not be negative (0: the default, 1h)")
	}
	capped("cluster.dedup_window", c.DedupWindow)
	if c.Lease <= 2*c.MaxClockDrift {
		bad("cluster.lease", "must be longer than twice max_clock_drift")
	}
	if c.PermitValidity < 0 || c.PermitValidity > c.Lease/4 {
		bad("cluster.permit_validity", "must be positive and at most a quarter of the lease (0: the default, 200ms)")
	}
	n := sc.Network
	rng("network.latency", n.Latency)
	prob("network.drop", n.Drop)
	prob("network.duplicate", n.Duplicate)
	prob("network.reorder", n.Reorder)
	if n.ReorderDelay < 0 {
		bad("network.reorder_delay", "must not be negative")
	}
	if n.Partition != "" && n.Partition != "drop" && n.Partition != "hold" {
		bad("network.partition", "%q is neither drop nor hold", n.Partition)
	}
	rng("disk.sync_latency", sc.Disk.SyncLatency)
	prob("disk.torn_writes", sc.Disk.TornWrites)
	if sc.Disk.SegmentSize < 4<<10 || sc.Disk.SegmentSize > 1<<30 {
		bad("disk.segment_size", "must be between 4096 and 1073741824 bytes, not %d", sc.Disk.SegmentSize)
	}
	if sc.Disk.CompactEvery < 0 {
		bad("disk.compact_every", "must not be negative")
	}
	capped("disk.compact_every", sc.Disk.CompactEvery)
	if sc.Clocks.MaxOffset < 0 {
		bad("clocks.max_offset", "must not be negative")
	}
	if sc.Clocks.MaxDrift < 0 || sc.Clocks.MaxDrift >= 0.5 {
		bad("clocks.max_drift", "must be between 0 and 0.5, not %g", sc.Clocks.MaxDrift)
	}
	for _, nm := range slices.Sorted(maps.Keys(sc.Clocks.Offsets)) {
		if off := sc.Clocks.Offsets[nm]; off > maxDur || off < -maxDur {
			bad("clocks.offsets."+nm, "must be within ±%s, not %s", maxDur.D(), off.D())
		}
		if !validNodeName(sc, nm) {
			bad("clocks.offsets", "no node %q (nodes are n1..n%d)", nm, c.Nodes+c.Spares)
		}
	}
	w := sc.Workload
	if w.Tasks < 0 {
		bad("workload.tasks", "must not be negative")
	}
	if w.Rate <= 0 {
		bad("workload.rate", "must be positive (tasks per second), not %g", w.Rate)
	}
	rng("workload.countdown", w.Countdown)
	if nm := w.Names; nm != nil {
		prob("workload.names.fraction", nm.Fraction)
		if nm.Pool < 1 {
			bad("workload.names.pool", "must be at least 1, not %d", nm.Pool)
		}
		if nm.Resend < 0 || nm.Resend > 10 {
			bad("workload.names.resend", "must be 0 to 10, not %d", nm.Resend)
		}
	}
	if lk := w.Lookups; lk != nil {
		if lk.Rate <= 0 || lk.Rate > maxLookupRate {
			bad("workload.lookups.rate", "must be above 0 and at most %d (lookups per second), not %g", maxLookupRate, lk.Rate)
		}
		if lk.Until < 0 || lk.Until > sc.Duration+sc.LivenessBound {
			bad("workload.lookups.until", "must be 0 (the default) to duration + liveness_bound, not %s", lk.Until.D())
		}
	}
	seen := map[string]bool{}
	for i, q := range w.Queues {
		f := fmt.Sprintf("workload.queues[%d]", i)
		if q.Name == "" {
			bad(f+".name", "must not be empty")
		}
		if seen[q.Name] {
			bad(f+".name", "%q appears twice", q.Name)
		}
		seen[q.Name] = true
		if q.Weight < 0 {
			bad(f+".weight", "must not be negative")
		}
		if _, err := node.ParseDeliveryMode(q.Delivery); err != nil {
			bad(f+".delivery", "%v", err)
		}
		if err := q.config().Validate(); err != nil {
			bad(f, "%v", err)
		}
	}
	sc.validateSchedules(bad, seen)
	wk := sc.Workers
	for _, p := range []struct {
		f string
		v float64
	}{{"workers.client_error", wk.ClientError}, {"workers.server_error", wk.ServerError}, {"workers.slow", wk.Slow}, {"workers.never", wk.Never}} {
		prob(p.f, p.v)
	}
	if s := wk.ClientError + wk.ServerError + wk.Slow + wk.Never; s > 1+1e-9 {
		bad("workers", "client_error + server_error + slow + never must not exceed 1, not %g", s)
	}
	rng("workers.latency", wk.Latency)
	rng("workers.slow_latency", wk.SlowLatency)
	if wk.FailFirst < 0 {
		bad("workers.fail_first", "must not be negative")
	}
	names := map[string]bool{}
	for i := 1; i <= c.Nodes+c.Spares; i++ {
		names[nodeName(i-1)] = true
	}
	for i, f := range sc.Faults.Schedule {
		field := fmt.Sprintf("faults.schedule[%d]", i)
		if _, ok := FaultKinds[f.Kind]; !ok || f.Kind == "clock" {
			bad(field+".kind", "unknown fault kind %q (see scenarios/README.md)", f.Kind)
		}
		if f.At < 0 || f.At > sc.Duration {
			bad(field+".at", "must be within the safety phase (0 to duration %s)", sc.Duration.D())
		}
		if f.On != "" {
			if kinds, ok := FaultTriggers[f.On]; !ok {
				bad(field+".on", "unknown moment %q (roster_committed, roster_proposed)", f.On)
			} else if !slices.Contains(kinds, f.Kind) {
				bad(field+".on", "%s takes only %s", f.On, strings.Join(kinds, ", "))
			}
		}
		if f.Duration < 0 {
			bad(field+".duration", "must not be negative")
		}
		for _, nm := range f.Nodes {
			if !names[nm] {
				bad(field+".nodes", "no node %q (nodes are n1..n%d)", nm, c.Nodes+c.Spares)
			}
			if f.Kind == "join" && names[nm] && !isSpare(sc, nm) {
				bad(field+".nodes", "join takes spares (n%d..n%d), not the member %q", c.Nodes+1, c.Nodes+c.Spares, nm)
			}
		}
		if f.Kind == "join" && c.Spares == 0 {
			bad(field+".kind", "join needs cluster.spares")
		}
		if f.Kind == "replace" {
			if c.Spares == 0 || len(f.Nodes) > 2 {
				bad(field+".kind", "replace needs cluster.spares and takes at most two nodes (a member, then a spare)")
			}
			if len(f.Nodes) == 2 && !isSpare(sc, f.Nodes[1]) {
				bad(field+".nodes", "replace joins a spare (n%d..n%d), not %q", c.Nodes+1, c.Nodes+c.Spares, f.Nodes[1])
			}
		}
		if f.Kind == "bridge" && len(f.Nodes) > 1 {
			bad(field+".nodes", "bridge takes one node")
		}
		if f.Kind == "oneway" && (len(f.Nodes) > 2 || len(f.Nodes) == 2 && f.Nodes[0] == f.Nodes[1]) {
			bad(field+".nodes", "oneway takes one node (its messages to every other are lost) or two different ones (the first's messages to the second are lost)")
		}
		if diskFaults[f.Kind] && c.Storage != "durable" {
			bad(field+".kind", "%s needs cluster.storage durable", f.Kind)
		}
		switch f.Kind {
		case "drop", "duplicate", "reorder":
			prob(field+".value", f.Value)
		case "delay":
			if f.Value <= 0 || f.Value > 60 {
				bad(field+".value", "delay takes the extra seconds of latency, above 0 and at most 60, not %g", f.Value)
			}
		case "disk_slow":
			if f.Value <= 0 || f.Value > 60 {
				bad(field+".value", "disk_slow takes the most extra seconds per group commit, above 0 and at most 60, not %g", f.Value)
			}
		case "cancel_task", "requeue_task":
			if f.Queue != "" && !seen[f.Queue] {
				bad(field+".queue", "must be empty (any queue) or name a queue of workload.queues, not %q", f.Queue)
			}
		case "set_queue", "pause_queue", "resume_queue", "purge_queue", "delete_queue":
			if f.Kind == "delete_queue" && f.Value != 0 && f.Value != 1 {
				bad(field+".value", "delete_queue takes 0 (keep the tasks) or 1 (purge them too), not %g", f.Value)
			}
			if !seen[f.Queue] {
				bad(field+".queue", "must name a queue of workload.queues, not %q", f.Queue)
			}
			if f.Kind == "set_queue" {
				if f.Settings == nil {
					bad(field+".settings", "set_queue needs the new settings")
				} else if err := f.Settings.config().Validate(); err != nil {
					bad(field+".settings", "%v", err)
				}
			}
		}
	}
	if s := sc.Faults.Swarm; s != nil {
		if len(s.Kinds) == 0 {
			bad("faults.swarm.kinds", "must list at least one kind")
		}
		for _, k := range s.Kinds {
			if _, ok := FaultKinds[k]; !ok || managementKinds[k] {
				bad("faults.swarm.kinds", "unknown fault kind %q", k)
			} else if diskFaults[k] && c.Storage != "durable" {
				bad("faults.swarm.kinds", "%s needs cluster.storage durable", k)
			}
		}
		if s.Rate < 0 {
			bad("faults.swarm.rate", "must not be negative")
		}
		if s.MaxDuration <= 0 {
			bad("faults.swarm.max_duration", "must be positive")
		}
		if s.MaxDown < 0 || s.MaxDown >= c.Nodes && c.Nodes > 0 {
			bad("faults.swarm.max_down", "must be between 0 and nodes-1")
		}
	}
	if sc.Duration <= 0 {
		bad("duration", "must be positive")
	}
	if sc.LivenessBound <= 0 {
		bad("liveness_bound", "must be positive")
	}
	switch sc.Expect.Outcome {
	case "pass":
		if len(sc.Expect.Invariants) > 0 {
			bad("expect.invariants", "only goes with outcome violation")
		}
	case "violation":
		if len(sc.Expect.Invariants) == 0 {
			bad("expect.invariants", "must name the invariants the checker has to catch")
		}
		for _, inv := range sc.Expect.Invariants {
			if !knownInvariant(inv) {
				bad("expect.invariants", "unknown invariant %q (one of %s)", inv, strings.Join(invariants, ", "))
			}
		}
	default:
		bad("expect.outcome", "must be pass or violation, not %q", sc.Expect.Outcome)
	}
	return errors.Join(errs...)
}

// invariants lists every invariant the simulator checks (DESIGN.md, "What the
// simulator checks"): the names a scenario's expect.invariants may use. It is the
// one list: scenarios_test.go requires a negative control for each.
var invariants = []string{"S1", "S2", "S3", "S4", "S5", "S6", "S7", "S8", "L1", "L2", "L3", "D1", "Q1", "Q2", "Q3", "Q4", "Q5", "Q6", "SC1", "SC2", "M1", "M2", "V1"}

// Invariants returns the invariants the simulator checks, in order.
func Invariants() []string { return slices.Clone(invariants) }

func knownInvariant(s string) bool { return slices.Contains(invariants, s) }

// config turns a queue spec into node settings over App Engine's defaults.
func (q QueueSpec) config() node.QueueConfig {
	c := node.DefaultQueueConfig()
	c.Delivery, _ = node.ParseDeliveryMode(q.Delivery)
	r := q.Retry
	c.Retry.TaskRetryLimit = r.TaskRetryLimit
	c.Retry.TaskAgeLimit = r.TaskAgeLimit.D()
	if r.MinBackoff != 0 {
		c.Retry.MinBackoff = r.MinBackoff.D()
	}
	if r.MaxBackoff != 0 {
		c.Retry.MaxBackoff = r.MaxBackoff.D()
	}
	if r.MaxDoublings != nil {
		c.Retry.MaxDoublings = *r.MaxDoublings
	}
	if q.DispatchDeadline != 0 {
		c.DispatchDeadline = q.DispatchDeadline.D()
	}
	c.Rate, c.BucketSize, c.MaxConcurrent = q.Rate, q.BucketSize, q.MaxConcurrent
	if c.Rate > 0 && c.BucketSize == 0 {
		c.BucketSize = 1
	}
	return c
}

func nodeName(i int) string { return fmt.Sprintf("n%d", i+1) }

// validNodeName reports whether nm names a node of sc, member or spare.
func validNodeName(sc *Scenario, nm string) bool {
	for i := range sc.Cluster.Nodes + sc.Cluster.Spares {
		if nodeName(i) == nm {
			return true
		}
	}
	return false
}

// isSpare reports whether the node named nm starts outside the cluster.
func isSpare(sc *Scenario, nm string) bool {
	for i := sc.Cluster.Nodes; i < sc.Cluster.Nodes+sc.Cluster.Spares; i++ {
		if nodeName(i) == nm {
			return true
		}
	}
	return false
}
