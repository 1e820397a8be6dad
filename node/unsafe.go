package node

// Unsafe switches on deliberate slips in the protocol, one field per slip. Each
// breaks exactly one rule that the simulator's checker guards, and exists only so
// that a negative-control scenario (scenarios/negative-*.json, cluster.unsafe) can
// show that the checker catches the slip: an invariant nobody has seen fail proves
// nothing.
//
// The zero value is the protocol. Nothing but the simulator sets a field: the
// daemon (net/daemon) and the command (cmd/miyamoto) build node.Config without this
// field, and no flag, environment variable, API or file reaches it
// (net/daemon/unsafe_test.go checks their source). The simulator refuses a scenario
// that sets one unless it expects a violation (sim.Scenario.Validate), so no passing
// run ever has a slip switched on.
//
// Each field is read at exactly one site, as a single if, so that the protocol's
// code reads as it did without it.
type Unsafe struct {
	// SkipRecount: negative controls only: breaks S6 by not counting, at start, the
	// pending tasks a node recovered from its log (limits.go, recount), so its
	// admission counters no longer match the tasks it holds.
	SkipRecount bool
	// AdmitPastLimits: negative controls only: breaks S7 by admitting every task, as
	// coordinator and as replica, whatever MaxPending and MaxQueuePending say
	// (limits.go, admit).
	AdmitPastLimits bool
	// AckRepeatedStoreEarly: negative controls only: breaks S8 by answering a
	// repeated Store at once instead of once the first copy's record is synced
	// (node.go, handleStore): with a stalled disk the coordinator counts an
	// acknowledgement of a task that is not durable.
	AckRepeatedStoreEarly bool
	// DropStoredTasks: negative controls only: breaks L2 by acknowledging a Store and
	// then dropping the task (node.go, handleStore): an acknowledged task is lost
	// although no replica lost its state.
	DropStoredTasks bool
	// BurstOffByOne: negative controls only: breaks Q1 by having the token node
	// allow bursts one delivery larger than bucket_size (queues.go, handlePermit): the
	// GCRA's burst allowance counted from bucket_size instead of bucket_size-1.
	BurstOffByOne bool
	// ConcurrencyOffByOne: negative controls only: breaks Q2 by letting the token
	// node grant a permit while max_concurrent are already in flight, one over the
	// cap (queues.go, handlePermit).
	ConcurrencyOffByOne bool
	// ForgetAtOnce: negative controls only: breaks Q3 by dropping a finished task
	// (and its name) at once instead of after the dedup window (forget.go,
	// queueForget), so a second task with the name is accepted.
	ForgetAtOnce bool
	// RetryWithoutBackoff: negative controls only: breaks Q4 by making a failed
	// delivery due again at once instead of after the queue's backoff (claim.go,
	// handleDeliveryResult).
	RetryWithoutBackoff bool
	// IgnorePause: negative controls only: breaks Q5 by never seeing a queue as
	// paused, so nothing checks the pause before a delivery (queues.go, queuePaused).
	IgnorePause bool
	// SettingsNotLogged: negative controls only: breaks Q6 by not writing adopted
	// queue settings to the log (queues.go, adoptSetting): a durable node that
	// restarts runs under the defaults, and an at-most-once queue turns
	// at-least-once.
	SettingsNotLogged bool
	// KeepUnknown: negative controls only: breaks L3 by never replacing unknown with
	// the succeeded or dead another replica answers (claim.go, tellsMore), so a
	// replica cut off from an at-most-once delivery keeps unknown for good.
	KeepUnknown bool
	// TickTaskPerNode: negative controls only: breaks SC1 by deriving a schedule
	// tick's task from the enqueuing node as well as the tick (schedule.go,
	// tickTask), so that each replica that enqueues the tick makes a task of its own.
	TickTaskPerNode bool
	// TickPrimaryOnly: negative controls only: breaks SC2 by letting only a tick's
	// first replica enqueue it (schedule.go, planTick): while that node is down its
	// ticks are not run although a majority could take them.
	TickPrimaryOnly bool
	// TickWithoutLease: negative controls only: breaks S1 during a roster change by
	// letting a scheduler enqueue a tick without the token lease (schedule.go's
	// "Ticks and the roster"): schedulers of two rosters place one tick on two lists.
	TickWithoutLease bool
	// LeaseWithoutDrift: negative controls only: breaks M1 by letting the leader
	// hold the roster lease until its claim's send time plus the whole lease,
	// without the MaxClockDrift allowance (leader.go, winLease): with clocks that
	// measure time at different rates, it still leads after a majority's grants
	// ran out and another member won the lease.
	LeaseWithoutDrift bool
	// MoveSkipOldMajority: negative controls only: breaks M2 by having a mover store
	// a task on its new replica list without first making a majority of the old
	// list store the new one (move.go, claimedForMove): the old list's replicas
	// still grant claims under it, so a task can be delivered under both lists.
	MoveSkipOldMajority bool
	// TokenWithoutLease: negative controls only: breaks Q2 (and Q1) by letting a
	// token node grant permits without holding the token lease and without waiting
	// after it takes one up (token.go, tokenReady): around a roster change the old
	// and the new token node of a queue both grant.
	TokenWithoutLease bool
	// ClaimedAnsweredSucceeded: negative controls only: breaks V1 by having the
	// replica that is delivering a task (claimed) answer a status query with
	// succeeded, the outcome it hopes for, before its webhook answered (query.go,
	// handleStatus): a client's GET /v1/tasks/{id} reads a success that never was.
	ClaimedAnsweredSucceeded bool
}
