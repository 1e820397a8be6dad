package node

import (
	"time"
)

// Clock is the node's only source of time.
type Clock interface {
	// Now returns the node's current local time.
	Now() time.Time
	// AfterFunc calls f after d has passed on this clock. f runs as an input of the
	// node, on its goroutine, never while another input is running. The returned
	// function cancels the timer; it reports whether it stopped f from running.
	AfterFunc(d time.Duration, f func()) (cancel func() bool)
}

// AlarmClock is an optional ability of a Clock: AfterAlarm is AfterFunc told which
// of the node's alarms it arms, numbered 1, 2, ... in the order the node armed them
// since it was built. A restored node (Restore) arms its alarms again under the
// numbers they had, so such a clock can match them with the original's. The node
// calls it instead of AfterFunc.
type AlarmClock interface {
	AfterAlarm(id uint64, d time.Duration, f func()) (cancel func() bool)
}

// Network carries messages to peers. Send never blocks and may lose, delay,
// duplicate or reorder messages; the protocol tolerates all of these.
// The receiver calls (*Node).Step with the message.
type Network interface {
	Send(m Message)
}

// Dispatcher starts webhooks. Dispatch must not block; the result comes back as a
// call to (*Node).HandleDeliveryResult, exactly once per Dispatch, no later than
// Delivery.Deadline after the call on the node's clock (a deadline that passes is a
// result with Status 0 and Err set).
type Dispatcher interface {
	Dispatch(d Delivery)
}

// Storage keeps the node's records across crashes.
//
// Append adds records in order; they are durable only once the done function of a
// later Sync ran. Sync's done runs as an input of the node, never inside the call to
// Sync. Load returns every durable record in append order; the node calls it once, in
// Start. A Storage whose Durable reports false keeps nothing across a crash; the node
// then neither appends nor syncs, and applies the recovery wait after a restart.
type Storage interface {
	Durable() bool
	Append(recs ...Record)
	Sync(done func())
	Load() ([]Record, error)
}

// RecordStreamer is an optional ability of a durable Storage: LoadEach is Load
// handing the records to visit one at a time, in append order, instead of as one
// slice, so that a restart does not hold every record of the log at once (a
// million tasks' records were about 200 MB beside the tasks rebuilt from them).
// The node then calls LoadEach instead of Load, once, in Start, and asks
// LostSince (LossReporter) before it: a streaming Storage must know of its losses
// before it is read. visit must not keep r. An error may come after some records
// were visited; the node then fails to start as with Load's.
type RecordStreamer interface {
	LoadEach(visit func(r *Record)) error
}

// LossReporter is an optional ability of a durable Storage: LostSince reports, after
// Load, that records synced before the local time since may be lost (a corrupt disk
// truncated, a directory wiped or new). Records synced since then are all there. The
// node then treats itself as having forgotten at that time, like a node without
// durable storage that started then: it applies the recovery wait counted from since.
// A zero since means the node's start.
type LossReporter interface {
	LostSince() (since time.Time, lost bool)
}

// Observer is told of every task state change, for traces, metrics and the
// simulator's checker. It must not call back into the node.
type Observer interface {
	TaskStateChanged(t *Task, from, to TaskState, attempt uint64)
}

// MessageObserver is an optional ability of an Observer: MessageSent is told of every
// message the node sends, to itself included, as it sends it (the simulator's checker
// sees grants and acknowledgements this way). It must not call back into the node.
type MessageObserver interface {
	MessageSent(m Message)
}

// DeliveryObserver is an optional ability of an Observer: DeliveryEnded is told of
// every delivery this node made, when its result comes in (a stale one too), with
// when the attempt was due (the task's due time, or the end of a failure's backoff),
// for the lateness and duration metrics. It must not call back into the node.
type DeliveryObserver interface {
	DeliveryEnded(t *Task, a DeliveryAttempt, due time.Time)
}

// DecisionObserver is an optional ability of an Observer: TaskDecided is told when
// this node decides a task's final state (not when it adopts one another replica
// decided), with the reason for a dead or unknown task, for the log. It must not
// call back into the node.
type DecisionObserver interface {
	TaskDecided(t *Task, state TaskState, reason string)
}

// Env is everything a node touches outside itself.
type Env struct {
	Clock      Clock
	Network    Network
	Dispatcher Dispatcher
	Storage    Storage
	// Rand is the node's seeded random source: task IDs, claim rounds and jitter.
	Rand     Rand
	Observer Observer // optional
	// Replies takes the answers to clients' requests (replies.go). Optional: nil
	// means the node takes reply functions (Enqueue's, Lookup's, ...) and calls
	// them.
	Replies Replies
}

// Rand is the node's source of randomness, seeded by whoever builds the node (a
// *math/rand/v2.Rand fits): the node never draws from a global source.
type Rand interface {
	Uint64() uint64
	IntN(n int) int
	Int64N(n int64) int64
}

// MemoryStorage is a Storage that keeps nothing: the original Miyamoto's behaviour.
type MemoryStorage struct{}

var _ Storage = MemoryStorage{}

func (MemoryStorage) Durable() bool           { return false }
func (MemoryStorage) Append(...Record)        {}
func (MemoryStorage) Sync(func())             { panic("node: Sync on MemoryStorage") }
func (MemoryStorage) Load() ([]Record, error) { return nil, nil }
