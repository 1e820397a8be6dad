package node

import (
	"fmt"
	"strings"
	"time"
)

// NodeID names a member of the cluster. Members are ordered by ID.
type NodeID string

// TaskState is where a task stands on one node.
type TaskState uint8

const (
	StateNone      TaskState = iota
	StateScheduled           // waiting for its due time or its next attempt
	StateClaimed             // an attempt holds a quorum of grants and may be delivering
	StateSucceeded           // final: a delivery answered 2xx
	StateDead                // final: retries exhausted (or a failed at-most-once delivery)
	StateUnknown             // final: at-most-once attempt with no known outcome
	StateCancelled           // final: cancelled by a client
)

var stateNames = [...]string{"none", "scheduled", "claimed", "succeeded", "dead", "unknown", "cancelled"}

func (s TaskState) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// Final reports whether no delivery may follow this state.
func (s TaskState) Final() bool { return s >= StateSucceeded }

// DeliveryMode is a queue's delivery guarantee.
type DeliveryMode uint8

const (
	AtLeastOnce DeliveryMode = iota
	AtMostOnce
)

func (d DeliveryMode) String() string {
	switch d {
	case AtLeastOnce:
		return "at-least-once"
	case AtMostOnce:
		return "at-most-once"
	}
	return fmt.Sprintf("delivery(%d)", uint8(d))
}

// ParseDeliveryMode reads "at-least-once" or "at-most-once" ("" is at-least-once).
func ParseDeliveryMode(s string) (DeliveryMode, error) {
	switch s {
	case "", "at-least-once":
		return AtLeastOnce, nil
	case "at-most-once":
		return AtMostOnce, nil
	}
	return 0, fmt.Errorf("delivery must be at-least-once or at-most-once, not %q", s)
}

// Header is one HTTP header sent to the worker. Headers are kept as an ordered list
// so that nothing depends on map order.
type Header struct{ Name, Value string }

// Task is what a client enqueued. Once created by the coordinator a *Task is never
// modified: replicas and messages share the pointer.
type Task struct {
	ID          string
	Queue       string
	Name        string
	URL         string
	Method      string
	Headers     []Header
	ContentType string
	Body        []byte
	// ETA is when the task is due, on the coordinator's clock.
	ETA     time.Time
	Created time.Time
	// Nonce tells apart two enqueues that share an ID (one task name enqueued
	// twice): a replica that holds the ID with another nonce answers "exists".
	Nonce    uint64
	Delivery DeliveryMode
	// Replicas in rank order, chosen at enqueue; they travel with the task so that
	// safety never depends on the current roster.
	Replicas []NodeID
	// ListVersion is the version of Replicas: 0 as placed at enqueue, else the
	// attempt under which re-replication first proposed this list (move.go); a
	// mover that finishes another's move keeps it. Claims carry it; a replica
	// that stored a newer list refuses older claims.
	ListVersion uint64
}

// ParamsInQuery reports whether a task of this method (any case) carries its
// params in the URL's query string instead of a body: GET, HEAD and DELETE, as App
// Engine's push tasks do. The API gives such tasks no other body; net/webhook
// sends a form body of theirs as the query string.
func ParamsInQuery(method string) bool {
	switch strings.ToUpper(method) {
	case "GET", "HEAD", "DELETE":
		return true
	}
	return false
}

// Rank returns id's position in t.Replicas, or -1.
func (t *Task) Rank(id NodeID) int {
	for i, r := range t.Replicas {
		if r == id {
			return i
		}
	}
	return -1
}

// MsgType is the kind of a peer message. Requests and responses come in pairs.
type MsgType uint8

const (
	MsgStore             MsgType = iota + 1 // coordinator → replica: keep Task
	MsgStoreResp                            // replica → coordinator: stored (durably when storage is on)
	MsgClaim                                // claimant → replicas: grant Attempt with Lease
	MsgClaimResp                            // acceptor → claimant: Granted, or why not
	MsgRelease                              // claimant → replicas: Attempt failed or was abandoned; next at NextETA
	MsgOutcome                              // claimant → replicas: final State reached by Attempt
	MsgOutcomeResp                          // replica → claimant: final state recorded
	MsgNaiveCancel                          // naive protocol: sender is running the task, stand down
	MsgNaivePushBack                        // naive protocol: sender's delivery failed, re-arm at NextETA
	MsgStatus                               // any node → replica: what do you know of TaskID?
	MsgStatusResp                           // replica → asker: Task, State, Attempt, Retries, Status, NextETA (State none: not held)
	MsgQueueSet                             // any node → every member: adopt Setting if newer
	MsgQueueSetResp                         // member → sender: Setting.Version of Setting.Queue held now; Retries: tasks whose first replica it is that adopting Setting's purge cancelled here
	MsgPermit                               // claimant → token node (of Epoch's roster): may Attempt of TaskID (in Queue) start? Promised: how long it may be held at the cap (ns)
	MsgPermitResp                           // token node → claimant: Granted, or retry after Lease (also when not the token node); neither and Lease 0: a held ask woken, come now; Promised 1 on a refusal for "full": it waited in line
	MsgPermitDone                           // claimant → token node: Attempt of TaskID ended; free its slot
	MsgList                                 // any node → every member: list Queue's tasks (State filter, after TaskID, Attempt = limit, Promised = request)
	MsgListResp                             // member → asker: one task (Task, State, ...), or the end (Task nil, Retries = tasks sent)
	MsgQueueSync                            // starting node → member: send me your queue settings (Promised = round)
	MsgQueueSyncResp                        // member → starting node: one Setting or Schedule, or the end (both nil, Retries = settings and schedules sent)
	MsgScheduleSet                          // any node → every member: adopt Schedule if newer
	MsgScheduleSetResp                      // member → sender: the Schedule of that name held now
	MsgCount                                // any node → every member: send your task counters (Promised = request)
	MsgCountResp                            // member → asker: its Counts (Promised = request)
	MsgGossip                               // member → random member, every SyncInterval: Promised = digest of its settings and schedules, Retries = how many
	MsgGossipResp                           // member → gossiper whose digest differs: its own digest and count (each side then sends a chunk)
	MsgRoster                               // member → member of a lower epoch, leader → members after a commit: adopt Roster if newer (roster.go)
	MsgLeaderClaim                          // member → roster's members: grant the roster lease under ballot Attempt for Lease (Epoch: the claimant's roster)
	MsgLeaderClaimResp                      // member → claimant: Granted (Roster, Promised: the roster it stored last and its ballot), or why not
	MsgRosterPropose                        // leader → members of the old and new rosters: store Roster under ballot Attempt
	MsgRosterProposeResp                    // member → leader: Granted: stored Roster of Epoch under Attempt (or not: Promised)
	MsgJoin                                 // member → leader: add Member to the roster
	MsgLeaderRelease                        // claimant → members that granted its ballot Attempt: the round failed, the lease is free
	MsgRemove                               // member → leader: remove Member.ID from the roster
	MsgMove                                 // mover → replicas of the old list: store Task's new list (ListVersion at most Attempt) under the grant of Attempt, round Promised (move.go)
	MsgMoveResp                             // replica → mover: Granted: stored the new list of Attempt (or not; RejectFinal with State)
	MsgTokenLease                           // token node → roster's members: round Attempt of the token lease of Epoch (token.go)
	MsgTokenLeaseResp                       // member → token node: Granted: its roster is of Epoch and it stored none later
)

var msgNames = [...]string{"", "store", "store_resp", "claim", "claim_resp", "release", "outcome", "outcome_resp", "naive_cancel", "naive_push_back", "status", "status_resp", "queue_set", "queue_set_resp", "permit", "permit_resp", "permit_done", "list", "list_resp", "queue_sync", "queue_sync_resp", "schedule_set", "schedule_set_resp", "count", "count_resp", "gossip", "gossip_resp", "roster", "leader_claim", "leader_claim_resp", "roster_propose", "roster_propose_resp", "join", "leader_release", "remove", "move", "move_resp", "token_lease", "token_lease_resp"}

// MaxMsgType is the highest message type this version knows.
const MaxMsgType = MsgTokenLeaseResp

func (t MsgType) String() string {
	if int(t) < len(msgNames) && t != 0 {
		return msgNames[t]
	}
	return fmt.Sprintf("msg(%d)", uint8(t))
}

// Reject says why an acceptor did not grant a claim.
type Reject uint8

const (
	RejectNone       Reject = iota
	RejectPromised          // another attempt holds the task: see Attempt, Holder, Lease
	RejectFinal             // the task is final: see State
	RejectUnknown           // the acceptor does not hold the task
	RejectRecovering        // the acceptor restarted without durable state and is waiting
	RejectExists            // StoreResp: another task with this ID (the same name) is held
	RejectFull              // StoreResp: the replica holds its limit of pending tasks
	RejectForgotten         // the replica may have finished this task and forgotten it after its dedup window
	RejectMoved             // the claim's replica list was replaced: Task is the list in force (move.go)
)

// MaxReject is the highest Reject this version knows.
const MaxReject = RejectMoved

var rejectNames = [...]string{"none", "promised", "final", "unknown", "recovering", "exists", "full", "forgotten", "moved"}

func (r Reject) String() string {
	if int(r) < len(rejectNames) {
		return rejectNames[r]
	}
	return fmt.Sprintf("reject(%d)", uint8(r))
}

// Message is every message between nodes, one struct for all types (like raftpb.Message);
// which fields matter depends on Type.
type Message struct {
	Type     MsgType
	From     NodeID
	To       NodeID
	TaskID   string
	Task     *Task         // Store; Claim; Outcome (so that a replica that lost it keeps it final); StatusResp
	Attempt  uint64        // Claim, ClaimResp (echoed), Release, Outcome, naive
	Promised uint64        // ClaimResp reject: the highest attempt the acceptor refuses; Claim, Release: the round's random number; Permit, PermitResp: see their types
	Lease    time.Duration // Claim: lease asked for; ClaimResp reject: lease left on the acceptor
	Granted  bool          // ClaimResp
	Reject   Reject        // ClaimResp
	Holder   NodeID        // ClaimResp reject: current holder
	State    TaskState     // Outcome; OutcomeResp (state after it); ClaimResp RejectFinal; StatusResp
	NextETA  time.Time     // Release, naive push-back; Store giving a task back: no attempt before it
	Retries  int           // Release, Outcome, ClaimResp, Store giving a task back: failed deliveries so far
	Failed   uint64        // with Retries: the highest attempt whose failure Retries counts (0: none known)
	// FailedBits, with Retries and Failed: bit i set means attempt Failed−i failed
	// (bit 0 set iff Failed > 0); Retries counts these and, unlocated, failures below
	// the window (see failureCount).
	FailedBits uint64
	Status     int           // Release, Outcome, Store giving a task back: last HTTP status (0: none)
	Queue      string        // Permit, PermitDone: the task's queue
	Setting    *QueueSetting // QueueSet, QueueSetResp, QueueSyncResp
	Schedule   *Schedule     // ScheduleSet, ScheduleSetResp, QueueSyncResp
	// Reason says why a task ended dead or unknown: Outcome, ClaimResp RejectFinal,
	// StatusResp.
	Reason string
	// Attempts: StatusResp: the deliveries the answering replica made itself (at
	// most MaxAttemptHistory, oldest first).
	Attempts []DeliveryAttempt
	Counts   []QueueCount // CountResp
	// Epoch: Gossip, GossipResp: the sender's roster epoch (0 for the static roster
	// of epoch 1).
	Epoch uint64
	// Round: ClaimResp: the claim's round (its Promised), echoed, so that the
	// claimant counts no answer to a round it did not send (a round of the process
	// it was before a restart, for the same attempt, duplicated or late).
	// LeaderClaim and its answer: the claim's round. StoreResp: the Nonce of the
	// Store's task, so that an enqueue counts no answer to another enqueue's Store
	// of the same name.
	Round  uint64
	Roster *Roster // Roster, RosterPropose, LeaderClaimResp
	Member *Member // Join, Remove (its ID)
}

func (m Message) String() string {
	return fmt.Sprintf("%s %s→%s task=%s attempt=%d", m.Type, m.From, m.To, m.TaskID, m.Attempt)
}

// QueueSetting is one queue's settings as the cluster agrees on them: the one with
// the highest (Version, Origin) wins everywhere.
type QueueSetting struct {
	Queue  string
	Config QueueConfig
	// Explicit lists the fields of Config that a client set; the others hold the
	// defaults. It changes nothing in how the queue runs: it tells "unset" from
	// "set to the default" when the settings are shown.
	Explicit SettingFields
	Paused   bool
	// Deleted marks a tombstone: a client deleted the queue's settings, so it runs
	// on the defaults, unpaused (Config holds the defaults, Explicit none). It is
	// kept, and replicated, like any setting, so that a member that missed the
	// deletion is overruled instead of spreading the older setting back.
	Deleted bool
	// PurgedBefore cancels every task of the queue created before it (zero: never).
	PurgedBefore time.Time
	Version      uint64
	Origin       NodeID
}

// newer reports whether s supersedes o.
func (s *QueueSetting) newer(o *QueueSetting) bool {
	if o == nil {
		return true
	}
	if s.Version != o.Version {
		return s.Version > o.Version
	}
	return s.Origin > o.Origin
}

// Delivery asks the Dispatcher to call a task's webhook once.
type Delivery struct {
	Task    *Task
	Attempt uint64
	Retries int
	// Deadline bounds the whole call, measured from the Dispatch call on the node's clock.
	Deadline time.Duration
	// PreviousStatus is the last attempt's HTTP status (0: none).
	PreviousStatus int
}

// DeliveryResult is what became of a Delivery.
type DeliveryResult struct {
	TaskID  string
	Attempt uint64
	Status  int   // HTTP status; 0 when no answer came
	Err     error // transport error or deadline exceeded, when Status is 0
	// ErrorKind classifies Err (NoError when Status is set).
	ErrorKind ErrorKind
	// Body is the first bytes of the worker's answer (the node keeps at most
	// MaxAttemptBody of them).
	Body string
	// RetryAfter is the worker's Retry-After, when it sent one.
	RetryAfter time.Duration
}

// ErrorKind says why a delivery got no HTTP answer, for a task's attempt history
// and the metrics.
type ErrorKind uint8

const (
	NoError      ErrorKind = iota // an HTTP answer came (or the attempt is still in flight)
	ErrorTimeout                  // the deadline passed before an answer came
	ErrorRefused                  // the worker's host refused the connection
	ErrorDNS                      // the URL's host name did not resolve
	ErrorTLS                      // the TLS handshake or the certificate check failed
	ErrorPolicy                   // the URL policy (--deny-private) refused the address
	ErrorReset                    // the connection was reset or closed before an answer
	ErrorOther                    // any other transport error
)

// MaxErrorKind is the highest ErrorKind this version knows.
const MaxErrorKind = ErrorOther

var errorKindNames = [...]string{"", "timeout", "refused", "dns", "tls", "policy", "reset", "other"}

func (k ErrorKind) String() string {
	if int(k) < len(errorKindNames) {
		return errorKindNames[k]
	}
	return fmt.Sprintf("error_kind(%d)", uint8(k))
}

// Bounds of a task's attempt history (see DeliveryAttempt).
const (
	MaxAttemptHistory = 20  // attempts a node keeps per task, the latest
	MaxAttemptBody    = 256 // bytes of the worker's answer kept per attempt
	MaxAttemptMessage = 200 // bytes of a transport error's text kept per attempt
)

// DeliveryAttempt is one delivery a node made of a task: a line of the task's
// history, kept in memory by the node that made it (GET /v1/tasks/{id} merges the
// replicas' lists).
type DeliveryAttempt struct {
	Number   uint64        // the attempt (claim ballot)
	Node     NodeID        // who delivered it
	Start    time.Time     // when it started, on Node's clock
	Duration time.Duration // how long it took (0 while in flight)
	InFlight bool          // no result yet
	Status   int           // the worker's HTTP status (0: no answer)
	Error    ErrorKind     // why no answer came
	Message  string        // the transport error's text, at most MaxAttemptMessage bytes
	Body     string        // the answer's first bytes, at most MaxAttemptBody
}

// OK reports whether the worker answered 2xx.
func (r DeliveryResult) OK() bool { return r.Status >= 200 && r.Status < 300 }

// RecordKind is the kind of a durable record.
type RecordKind uint8

const (
	RecTask         RecordKind = iota + 1 // Task was stored, its attempt floor in Attempt (given back: with Retries, Status and the backoff's end in NextETA)
	RecGrant                              // Attempt granted to Holder in claim Round until LeaseEnd (local clock)
	RecRelease                            // Holder's Attempt (claim Round) released; next at NextETA with Retries (no Holder: attempts up to Attempt are never granted)
	RecOutcome                            // final State reached
	RecSetting                            // a queue's Setting was adopted (settings, pause, purge)
	RecForgotten                          // tasks created up to NextETA may have been forgotten after their dedup window
	RecSchedule                           // a Schedule was adopted (created, changed or deleted)
	RecRoster                             // a committed Roster was adopted (roster.go)
	RecLeaseGrant                         // the roster lease was granted to Holder under ballot Attempt until LeaseEnd (local clock; leader.go)
	RecRosterAccept                       // a proposed Roster was stored under ballot Attempt (leader.go)
	RecMove                               // Task's new replica list was stored under the grant of attempt Attempt, not known to be in force yet (move.go)
)

// Record is one durable fact about a task.
type Record struct {
	Kind     RecordKind
	Task     *Task // RecTask
	TaskID   string
	Attempt  uint64
	Holder   NodeID
	Round    uint64 // RecGrant, RecRelease: the claim round's random number (Message.Promised of its Claim)
	LeaseEnd time.Time
	NextETA  time.Time
	Retries  int
	Failed   uint64 // with Retries: the highest attempt whose failure it counts
	// FailedBits, with Retries and Failed: the failed attempts located below Failed,
	// as in Message.FailedBits (0 in records of older formats, which locate at most
	// Failed).
	FailedBits uint64
	State      TaskState
	Status     int
	Setting    *QueueSetting // RecSetting
	Reason     string        // RecOutcome: why the task ended dead or unknown
	Schedule   *Schedule     // RecSchedule
	Roster     *Roster       // RecRoster
}

// EnqueueRequest is a client's task, already parsed.
type EnqueueRequest struct {
	Queue       string
	Name        string
	URL         string
	Method      string
	Headers     []Header
	ContentType string
	Body        []byte
	// Countdown delays the task from now; ETA, when not zero, is the absolute due time.
	Countdown time.Duration
	ETA       time.Time
}

// EnqueueResult answers an EnqueueRequest. Err is nil when a majority of replicas
// stored the task; ErrOutcomeUnknown when none answered in time; or a *FieldError.
type EnqueueResult struct {
	ID   string
	Task *Task // the task stored, when Err is nil
	Err  error
}

// TaskStatus is one node's view of a task.
type TaskStatus struct {
	Task       *Task
	State      TaskState
	Attempt    uint64
	Retries    int
	LastStatus int
	NextETA    time.Time
	// Reason says why a dead or unknown task ended so.
	Reason string
	// Attempts is the task's delivery history, oldest first: this node's own
	// deliveries from Task, those of every replica that answered from Lookup and
	// Describe (the latest MaxAttemptHistory).
	Attempts []DeliveryAttempt
}
