// Package node is the state machine of one Miyamoto node: task placement, replica
// timers, quorum claims with leases, outcomes, retries with backoff, and the naive
// cancel-and-push-back protocol kept as a negative control (as are the deliberate
// slips of Config.Unsafe, which only the simulator switches on: see unsafe.go).
//
// A Node is single-threaded and deterministic. Every input is a method call made on
// one goroutine at a time:
//
//	n.Start()                       // once, after New: recover from Storage, arm timers
//	n.Enqueue(req, reply)           // a client asks for a task
//	n.Step(msg)                     // a peer message arrived (checked at the door first: door.go)
//	n.HandleDeliveryResult(result)  // a webhook started by the Dispatcher finished
//	timer callbacks                 // alarms (alarms.go), armed with Clock.AfterFunc
//	storage callbacks               // sync actions (syncs.go), run when Storage.Sync is done
//
// Its effects go through the environment handed to New (Env): the Clock, the Network,
// the Dispatcher, the Storage, a seeded random source, an Observer and, optionally,
// Replies for the answers to clients (replies.go). Between two inputs, Snapshot
// writes the node's whole state as bytes, and Restore builds a node from them that
// goes on exactly as the original would (snapshot.go). In production
// net/ implements these with real IO and posts every callback into the goroutine that
// owns the node; in the simulator sim/ implements them on one event loop in virtual
// time. The same code runs in both.
//
// What this package must never do: start goroutines, take locks, read the wall clock
// (time.Now), use the global math/rand, import os or net, or let map iteration order
// reach an output. purity_test.go enforces this by reading the package's source.
//
// # Protocol
//
// Members are ordered by ID and form a ring. A task's R replicas are chosen by hashing
// its ID over the ring and stored in the task; a replica's rank is its position in
// that list. Replica k arms its timer at next_eta + k×ReplicaOffset. When the timer
// fires it sends Claim(task, attempt, lease) to every replica; it delivers only once a
// quorum (a majority of R unless Config.ClaimQuorum overrides it) granted that attempt.
// Acceptors grant attempt a to the first claimant only, and a later attempt only once
// the earlier one was released, its lease expired on the acceptor's clock, or the same
// claim round arrives again. The claimant's deadline ends MaxClockDrift before its
// lease (measured from when it sent the claim), and the lease is checked again right
// before the Dispatcher is called. A 2xx answer sends Done to every replica until a
// majority acknowledged; anything else sends Release with the next due time from the
// queue's backoff, or ends the task as dead when its retry limits are exhausted.
//
// Each claim round carries a random number (Message.Promised). A Release names the
// round it ends, and frees a grant only when it is the round that won it: a holder
// that restarted without the record of its attempt may claim the same number again,
// and the release of that refused round must not free the grant its earlier
// incarnation is still delivering under. Grant records keep the round.
//
// Attempt numbers are claim ballots: they only grow, are unique per delivery, and may
// skip values when a claim round is abandoned. An acceptor never grants a number at or
// below its floor: the numbers claimants released without its grant (they may have
// been delivered with others'), and, for a task it may have granted and forgotten
// (see below), the milliseconds from the task's creation to the end of its recovery
// wait, which is above every number claimed before it forgot. Attempt numbers thus
// stay 1, 2, 3 ... until a replica forgets a task, then jump. Floors are recorded.
//
// Retries counts failed deliveries and drives the backoff and the retry limits. An
// attempt whose lease ran out on an acceptor with no outcome counts as one: the
// acceptor adds it and grants nothing before its backoff, counted from the lease's
// end, is over (the holder's Release may be lost for good, under a one-way partition).
// The holder of a quorum ends the task dead instead of delivering when the count has
// used the limits up. A task given back to a replica that lost it carries the count.
// Replicas learn failures apart, so a count locates its failed attempts in a window of
// 64 below the highest (Failed, FailedBits): counts merge by union, without loss, and
// a failure is counted once however many replicas report it (see failureCount).
//
// Nothing is acknowledged before it is durable: a Store, a grant, a final state are
// answered once their record is synced, a repeated request once a sync covers the
// first one's record. A start rebuilds the acceptor from the log without reading the
// clock to decide what a record means.
//
// In an at-most-once queue a grant never expires and the task has exactly one delivery:
// a 2xx ends it succeeded, another status dead, and an attempt with no known outcome
// unknown. It is never delivered again.
//
// A node whose Storage is not durable forgets everything when it crashes. For
// Config.RecoveryWait after it starts (long enough for every lease it may have granted
// and every message sent before the crash to have expired) it refuses to learn any
// task created before it started, and answers claims for tasks it does not hold with
// RejectRecovering; tasks created since it started work at once. After the wait, a
// claimant gives an at-least-once task back to a replica that lost it; at-most-once
// tasks are never given back, since the replica may have granted their one attempt.
// This relies on the Network never delivering a message older than RecoveryWait minus
// a lease (net/peer drops what waited longer than 5 s; the simulator's delays are
// bounded by its latency and reorder settings). A durable Storage that lost records
// (LossReporter: a corrupt, wiped or new directory) makes the node act as one that
// forgot at the time it reports, with the same wait counted from then.
//
// # Membership
//
// The roster (roster.go) is the cluster's membership by epoch: a static member list is
// epoch 1; a node started with Config.Join waits outside until a roster lists it. A
// leader holds a lease on the roster granted by a majority of its members, by the claim
// rule of tasks, and commits each change on a majority of the old roster and of the new
// one under its lease's ballot (leader.go). The roster decides where new tasks go,
// never anything about a task stored: its replica list travels with it.
//
// # Schedules
//
// Cron schedules (schedule.go) are replicated data like queue settings: versioned,
// logged before they are acknowledged, gossiped and learnt at start. Every member
// runs every schedule; a tick's task is a function of the schedule's name and the
// tick (its ID, nonce, name, due and creation times), so the replicas store one
// task however many nodes enqueue the tick, and only the tick's replicas do, in
// rank order, ScheduleLead ahead of it and then ReplicaOffset apart. Expressions are
// parsed by github.com/robfig/cron/v3 (its parser only: a parsed expression's Next
// is pure; node/ may import it besides uuid, see purity_test.go).
//
// # Admission limits
//
// With Config.MaxPending, MaxPendingBytes or MaxQueuePending set, a node refuses new
// tasks past them, as coordinator (ErrNodeFull, ErrQueueFull) and as replica (a Store
// answered RejectFull; when no majority can store a task the coordinator answers
// ErrNodeFull and cancels the copies stored meanwhile). Only tasks that are not final
// count (limits.go); a finished task is kept for the dedup window without its body.
//
// # Compact forms
//
// Most tasks a node holds are idle: finished and waiting out the dedup window, or
// pending and waiting for their due time. Those are kept encoded, not as entries:
// finished ones as tombs (tomb.go, Config.FinishedDetail), pending ones with no
// protocol state as cold tasks (cold.go, Config.PendingDetail and ColdAhead), and
// thawed back into entries whenever anything may change them. Neither form changes
// what the node sends, records or decides, nor any timer it arms.
package node
