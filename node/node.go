package node

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math/bits"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Node is one member's state machine. See the package doc for how to drive it.
type Node struct {
	cfg Config
	env Env
	// members sorted by ID: the ring, the IDs of roster (roster.go).
	members []NodeID
	roster  *Roster
	// wantReplicas is Config.Replicas as configured; cfg.Replicas is it capped by
	// the roster's size.
	wantReplicas int
	// joining: started with Config.Join and not listed by a roster yet.
	joining bool

	// The roster lease and roster changes (leader.go): what this node granted
	// (leaseAcc) and stored (accepted under acceptedBallot); as claimant and
	// leader, the highest ballot seen, the ballot it leads under until leaseUntil,
	// its claim round, the change it is committing and the joins waiting.
	leaseAcc       leaseAcceptor
	accepted       *Roster
	acceptedBallot uint64
	maxBallot      uint64
	leaderActive   bool
	leaderTimer    alarmID
	leaderSeen     time.Time // when it adopted a roster another leader committed
	leaderBackoff  time.Time // no claim of the lease before (after a failed round)
	ballot         uint64
	leaseUntil     time.Time
	leaseEpoch     uint64 // the roster epoch the lease was won (or last renewed) under
	leaderOp       *leaderClaim
	change         *rosterChange
	joins          []Member
	// Removals (remove.go): the members waiting to be removed (on the leader),
	// whether this node learnt it was removed, when it last heard from each
	// member and since when it leads (for Config.RemoveAfter).
	removals []NodeID
	removed  bool
	departed map[NodeID]bool // members removed while this node ran (door.go's isMember)
	// Re-replication (move.go): the scan's timer and the moves this node makes.
	moveTimer     alarmID
	movesInFlight int
	movesDone     uint64
	heard         map[NodeID]time.Time
	ledSince      time.Time

	tasks map[string]*entry
	// tombs holds the finished tasks frozen into their compact form, by ID;
	// toFreeze (from freezeHead on) the finished ones waiting to be, oldest first;
	// words and wordCode the dictionary their encoding names words by (tomb.go).
	tombs       map[rawID]uint64 // by raw key, inline (nothing to scan): handles in arena
	arena       tombArena
	tombScratch []byte // the encoding buffer, reused
	toFreeze    []string
	freezeHead  int
	// Cold tasks (cold.go): pending tasks in the compact form, in tombs beside the
	// finished ones (their handles marked coldHandle, their bytes in coldArena);
	// cold is their timers' heap, coldTopOK whether its first item is known valid;
	// colds counts them, coldsMade every time one went cold; toCool (from coolHead on) the pending tasks in line to go
	// cold, oldest first; lastNow the latest clock reading the node took.
	coldArena   tombArena
	cold        coldHeap
	coldTopOK   bool
	coldScratch []byte // the encoding buffer, reused
	colds       int
	coldsMade   uint64 // for tests (ColdsMade)
	toCool      []string
	coolHead    int
	lastNow     int64
	words       []string
	wordCode    map[string]uint32
	// tasksPeak is the most entries tasks held since it was last rebuilt: a Go map
	// keeps its buckets when entries leave it, so once most have been frozen or
	// forgotten freezeOld copies it into a smaller one.
	tasksPeak int
	// placed holds the replica lists new tasks share, by first replica (memory.go).
	placed map[NodeID][]NodeID
	// open counts the entries of tasks that are not final (overall, in bytes, by
	// queue), for the admission limits; see limits.go. Every insertion, removal and
	// state change of an entry goes through addEntry, removeEntry or setState.
	open        int
	openBytes   int64
	openByQueue map[string]int
	pending     map[string]*enqueueOp // enqueues this node coordinates, by task ID
	queries     map[string]*queryOp   // lookups and cancels this node coordinates

	settings   map[string]*QueueSetting // queues set through the API, by name
	maxVersion uint64                   // highest setting version seen
	setOps     []*setOp                 // setting changes this node coordinates
	sync       *settingsSync            // learning the settings at start; nil once known
	gossipStop alarmID                  // the gossip timer, once armed
	// gossipCursor: per member, the last entry sent it by gossip (gossip.go).
	gossipCursor map[NodeID]string
	// queueRefs says why each known queue is known (queuecap.go); tombstones
	// counts the deletions held, swept by the tombstoneStop timer; settingsFloor
	// is the highest version of a tombstone dropped.
	queueRefs     map[string]uint8
	tombstones    int
	tombstoneStop alarmID
	settingsFloor uint64

	schedules map[string]*Schedule // cron schedules by name, deleted ones included (schedule.go)
	runs      map[string]*schedRun // this node's running of each schedule in force
	schedOps  []*schedOp           // schedule changes this node coordinates

	// forgetQ holds the final entries waiting out their dedup window, in the order
	// their forget times were set (now + DedupWindow, so in time order), from
	// forgetHead on. One timer (forgetTimer, armed for the first of them) serves
	// them all instead of one timer per finished task.
	forgetQ     []forgetItem
	forgetHead  int
	forgetBase  int // the place in the queue's whole history of forgetQ[0]
	forgetTimer alarmID
	// timers holds the entries with a fire, claim or outcome timer armed, first due
	// first; wake is the one Clock timer, armed for wakeAt (timers.go).
	timers   timerHeap
	timerSeq uint64
	wake     alarmID
	wakeAt   int64
	buckets  map[string]*bucket // limited queues this node is the token node of
	// heldPermits: asks that came at most SlotEarly before their slot, by task ID;
	// they are answered at the slot (handlePermit).
	heldPermits map[string]Message
	// permitWaits: by queue, asks refused because the queue is at its concurrency
	// cap that the token node holds until a slot frees, in arrival order
	// (queues.go, waitForPermit).
	permitWaits map[string][]permitWait
	tok         tokenLease         // what lets it grant their permits (token.go)
	lists       map[uint64]*listOp // cluster-wide listings this node coordinates
	forgotten   []string           // tasks dropped after their dedup window, not yet compacted away
	forgetMark  time.Time          // the latest Created of a task dropped after its dedup window (see forget.go)
	superseded  int                // records logged since the last CompactionPolicy that supersede an earlier one
	listSeq     uint64
	opSeq       uint64 // numbers the operations alarms name (alarms.go)
	// alarms are the armed alarms by ID, alarmSeq the last ID given (alarms.go).
	alarms   map[alarmID]*armedAlarm
	alarmSeq uint64
	// syncs are the log syncs asked and not ended, by number, with what each
	// does then (nil: nothing); syncSeq the last number given (syncs.go).
	syncs   map[uint64]*syncAction
	syncSeq uint64
	// replySeq numbers the requests taken with a reply function, which funcs
	// keeps (nil when Env.Replies was given); see replies.go.
	replySeq uint64
	funcs    *replyFuncs

	// counts counts the entries of tasks by queue, state and the replicas ranked
	// before this node (see counts.go), kept like open. countOps are the
	// cluster-wide counts this node coordinates.
	counts   map[countKey]int
	countOps map[uint64]*countOp
	// index orders the IDs of the tasks held by queue and state, kept like
	// counts (index.go), for listings.
	index map[stateKey]*idIndex

	// bootTime is the local time Start ran. forgotAt is when the node may have lost
	// its memory: bootTime without durable storage, or the time a LossReporter gave.
	// It knows nothing from before forgotAt, and until recoverUntil it refuses to
	// learn any task created before it (see handleStore). Zero recoverUntil: not
	// recovering.
	bootTime     time.Time
	forgotAt     time.Time
	recoverUntil time.Time

	// selfq holds messages this node sent to itself; they are handled after the
	// current input finishes, so that no handler re-enters another.
	selfq   []Message
	msgObs  MessageObserver // the Observer's, when it has the ability
	inInput bool
	started bool
	// stopping: the node is shutting down; it starts no new claim or enqueue, but
	// finishes what is in flight.
	stopping bool
	// refused counts the peer messages the door refused, by reason (door.go).
	refused [numRefusals]uint64
}

// timerKind says what an entry's single timer is for.
type timerKind uint8

const (
	timerNone    timerKind = iota
	timerFire              // replica timer: try to claim (or, naive, deliver)
	timerClaim             // claim round timed out
	timerOutcome           // resend the final outcome to replicas that did not acknowledge
	timerForget            // drop the final task after the dedup window
	timerPermit            // a won claim kept while its rate slot comes: ask the token node again
	timerDeliver           // a claim won ahead of the due time (ClaimAhead): deliver now
)

// entry is one replica's state for one task. Invariants:
//   - state.Final() ⇒ no delivery is started from this entry again;
//   - promised only grows; holder is who promised was granted to;
//   - floor only grows; an attempt is granted only above max(promised, floor);
//   - claiming != 0 ⇒ claiming > every attempt this node delivered before;
//   - delivering ⇒ state == StateClaimed and claiming is the attempt in flight.
//
// Most tasks wait for their due time and are never claimed, failed or moved: the
// fields only claims, failures, outcomes and moves use live in entryExtra, which a
// pending task does not allocate (see ext): its entry is 112 bytes, not 456.
type entry struct {
	// entryExtra is never nil: until a field of it is first written it is
	// noExtra, shared and all zero, so reads need no check. Every write goes
	// through ext() (memory.go).
	*entryExtra

	task *Task

	nextETA   time.Time // base due time of the next attempt (rank offset not added)
	notBefore time.Time // acceptor: grant no claim before this (less the drift allowance)
	// floor: no attempt up to floor is ever granted here. It covers attempts
	// released by claimants we did not grant (they may have been delivered with
	// others' grants), and those we may have granted before we forgot the task
	// (forgetFloor).
	floor uint64

	// The timer (timers.go): due at local time timerAt (Unix nanoseconds), armed
	// as the timerSeq-th; timerIdx is its place in the node's heap plus one (0: not
	// in it). Armed for forgetting, timerAt is its place in the forget queue
	// (forget.go).
	timerAt   int64
	timerSeq  uint64
	rank      int
	timerIdx  int32
	timerKind timerKind
	state     TaskState
	// frozen: this entry was replaced by its tomb (tomb.go); a closure that kept it
	// reads the task's state through stateNow.
	frozen bool
}

// entryExtra is the part of an entry that only a task claimed, failed, ended or
// moved needs.
type entryExtra struct {
	retries    int    // failed deliveries so far (a lower bound of those known here)
	failed     uint64 // the highest attempt whose failure retries counts (see failureCount)
	failedBits uint64 // the failed attempts located below failed (see failureCount)
	lastStatus int    // last HTTP status seen

	// acceptor side
	promised uint64 // highest attempt granted
	holder   NodeID // to whom promised was granted
	// holderRound is the random number of the claim round that won promised: a
	// duplicate of that claim is granted again, and only a Release of that round
	// frees the grant (it is in the grant's record).
	holderRound uint64
	leaseEnd    time.Time // local time the grant's lease ends (the grant itself never expires in at-most-once)
	released    bool      // promised attempt was released by its holder

	// claimant side
	claiming     uint64        // attempt whose grants we are gathering or delivering
	round        uint64        // random number of the claim round for claiming (sent as Claim's and Release's Promised)
	permitting   bool          // won the claim, waiting for the token node's permit
	permitted    bool          // holds the token node's permit for claiming
	permitAsked  time.Time     // local time the permit was asked for
	claimTook    time.Duration // how long the claim round of claiming took, to the first permit asked
	seen         uint64        // highest attempt this node has claimed or heard of
	failedRounds int           // claim rounds in a row that won no quorum
	claimSent    time.Time     // local time the claim was sent: the lease counts from here
	grants       uint64        // bitmask over replica ranks
	rejects      uint64        // bitmask over replica ranks
	unknowns     uint64        // replicas (by rank) that said they do not hold the task
	delivering   bool

	// re-replication (move.go): moving: the claim is (or became) for a move; move:
	// the move under way once it won; bestPending: the pending list the grants of
	// this round reported that was stored under the highest attempt, bestBallot;
	// pending (acceptor): a new list stored under a grant, not known to be in
	// force, and pendingBallot the attempt of the grant it was last stored under
	// (a Paxos acceptor's accepted ballot).
	moving        bool
	move          *moveOp
	bestPending   *Task
	bestBallot    uint64
	pending       *Task
	pendingBallot uint64

	// outcome propagation (the node that ended the task)
	outcomeAcks  uint64 // bitmask over replica ranks
	outcomeSends int    // rounds of Outcome sent so far

	// amnesiac: an at-most-once task whose records this node partly lost; it grants
	// and claims it no more (others decide it).
	amnesiac       bool
	amnesiacWaited bool

	// naive protocol: another replica said it is running the task
	naiveStoodDown bool

	// history holds the deliveries this node made itself, oldest first, at most
	// MaxAttemptHistory; in memory only (see history.go). due is when the one in
	// flight was due. reason says why the task ended dead or unknown (durable, in
	// its RecOutcome).
	history []DeliveryAttempt
	due     time.Time
	reason  string
}

// enqueueOp is an enqueue this node coordinates. It answers the client at a
// majority, and keeps re-sending Store to the replicas that have not answered until
// all have or EnqueueTimeout passed, so that a lost message does not leave a task
// with fewer copies than it could have.
type enqueueOp struct {
	seq      uint64 // what alarms name it by (alarms.go)
	task     *Task
	acks     uint64
	exists   uint64 // replicas that hold another task with this ID (same name)
	full     uint64 // replicas that refused it under their limits (RejectFull)
	client   enqueueClient
	replied  bool
	deadline time.Time
	stop     alarmID
}

// New builds a node. Call Start before any other input.
func New(cfg Config, env Env) (*Node, error) {
	cfg.EnsureDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if env.Clock == nil || env.Network == nil || env.Dispatcher == nil || env.Rand == nil {
		return nil, fmt.Errorf("node: Env needs Clock, Network, Dispatcher and Rand")
	}
	if env.Storage == nil {
		env.Storage = MemoryStorage{}
	}
	if cfg.ClaimQuorum > min(cfg.Replicas, len(cfg.Members)) {
		cfg.ClaimQuorum = min(cfg.Replicas, len(cfg.Members))
	}
	msgObs, _ := env.Observer.(MessageObserver)
	var funcs *replyFuncs
	if env.Replies == nil {
		funcs = &replyFuncs{fns: map[ReplyID]func(Answer){}}
		env.Replies = funcs
	}
	n := &Node{
		funcs:        funcs,
		cfg:          cfg,
		env:          env,
		msgObs:       msgObs,
		wantReplicas: cfg.Replicas,
		joining:      cfg.Join,
		heard:        map[NodeID]time.Time{},
		tasks:        make(map[string]*entry),
		tombs:        make(map[rawID]uint64),
		wordCode:     make(map[string]uint32),
		openByQueue:  make(map[string]int),
		pending:      make(map[string]*enqueueOp),
		queries:      make(map[string]*queryOp),
		settings:     make(map[string]*QueueSetting),
		schedules:    make(map[string]*Schedule),
		runs:         make(map[string]*schedRun),
		buckets:      make(map[string]*bucket),
		lists:        make(map[uint64]*listOp),
		countOps:     make(map[uint64]*countOp),
		counts:       make(map[countKey]int),
		index:        make(map[stateKey]*idIndex),
		queueRefs:    make(map[string]uint8),
		gossipCursor: make(map[NodeID]string),
		alarms:       make(map[alarmID]*armedAlarm),
		syncs:        make(map[uint64]*syncAction),
	}
	n.setRoster(initialRoster(cfg))
	return n, nil
}

// ID returns the node's ID.
func (n *Node) ID() NodeID { return n.cfg.ID }

// Config returns the node's configuration with defaults filled in.
func (n *Node) Config() Config { return n.cfg }

// Start recovers the node's records from Storage and arms its timers.
func (n *Node) Start() error {
	if n.started {
		panic("node: Start called twice")
	}
	n.started = true
	// Start is the node's first input (see now).
	n.inInput = true
	defer func() { n.inInput = false }()
	n.bootTime = n.now()
	if !n.env.Storage.Durable() {
		// A joiner may be a member that forgot: it waits as one.
		if len(n.members) > 1 || n.joining {
			n.forgotAt = n.bootTime
			n.recoverUntil = n.bootTime.Add(n.cfg.RecoveryWait)
			n.startSettingsSync()
		}
		n.kickTokenLease()
		return nil
	}
	streamer, streams := n.env.Storage.(RecordStreamer)
	var recs []Record
	if !streams {
		var err error
		if recs, err = n.env.Storage.Load(); err != nil {
			return fmt.Errorf("node: loading storage: %w", err)
		}
	}
	lossy := n.noteLoss()
	// Tasks are kept compact from the log on (restart.go); not on a lossy start,
	// where each needs its extra, nor for the negative control that counts nothing.
	store := newReplayStore(n, lossy || n.cfg.Unsafe.SkipRecount)
	if streams {
		if err := streamer.LoadEach(store.apply); err != nil {
			return fmt.Errorf("node: loading storage: %w", err)
		}
	} else {
		for i := range recs {
			store.apply(&recs[i])
		}
	}
	if lossy || n.cfg.Join && !n.joining && len(n.members) > 1 {
		// The settings in the log may lack changes it acknowledged: learn them again.
		// So may a node that joined: the round that learns them when it is added is
		// not in its log, and a restart before it ended took tasks under the
		// defaults (Q6, seed 144 of replace-power-loss: a spare killed 30 ms after
		// it was added). It learns them again at every start, as a joiner.
		n.startSettingsSync()
	}
	if lossy {
		for _, e := range n.tasks {
			// An at-most-once grant never expires, so no wait makes up for one we
			// may have forgotten: never grant nor claim such a task again.
			e.ext().amnesiac = e.task.Delivery == AtMostOnce && !e.state.Final() && !n.bornAfterForgetting(e.task)
		}
	}
	var notes []coldCount
	store.eachInOrder(func(id string) {
		n.armStarted(store.entry(id))
		if !store.off {
			notes = n.coolStarted(notes)
		}
	})
	for _, name := range sortedKeys(n.settings) {
		if o, ok := n.env.Observer.(QueueObserver); ok {
			o.QueueChanged(n.cfg.ID, *n.settings[name])
		}
	}
	for _, name := range sortedKeys(n.schedules) {
		n.runSchedule(n.schedules[name], true) // it may have missed ticks while down
	}
	if len(n.settings)+len(n.schedules) > 0 && n.gossipStop == 0 {
		n.armGossip()
	}
	if n.roster.Epoch > 1 {
		// A roster learnt before the restart: reach its members, and keep spreading it.
		if o, ok := n.env.Observer.(RosterObserver); ok {
			o.RosterChanged(n.cfg.ID, n.roster)
		}
		n.armGossipIfIdle()
	}
	if n.roster.Epoch > 1 || n.leaseAcc.holder != "" {
		n.activateLeader()
	}
	n.maybeArmTombstoneSweep()
	if lossy {
		// The floors of what we may have forgotten must outlive this start: a later
		// start that reports no loss would not know them. A Release with no holder
		// records one.
		var recs []Record
		for _, id := range sortedKeys(n.tasks) {
			if e := n.tasks[id]; e.floor > 0 && !e.state.Final() {
				recs = append(recs, Record{Kind: RecRelease, TaskID: id, Attempt: e.floor})
			}
		}
		if len(recs) > 0 {
			n.persist(nil, recs...)
		}
	}
	n.recount(notes)
	n.kickTokenLease()
	return nil
}

// noteLoss asks a durable Storage that may have lost records since when (see
// LossReporter) and, if it did, makes the node one that forgot then. It reports
// whether it did.
func (n *Node) noteLoss() bool {
	lr, ok := n.env.Storage.(LossReporter)
	if !ok || len(n.members) <= 1 {
		return false
	}
	since, lost := lr.LostSince()
	if !lost {
		return false
	}
	// What we acknowledged before since may be gone: we may have granted an
	// attempt or held an outcome we no longer know of. Wait as a node that
	// forgot at since does; what we logged after since is all here.
	n.forgotAt = n.bootTime
	if !since.IsZero() && since.Before(n.bootTime) {
		n.forgotAt = since
	}
	n.recoverUntil = n.forgotAt.Add(n.cfg.RecoveryWait)
	return true
}

// armStarted arms the timer of e, a task replayed from the log, in Start.
func (n *Node) armStarted(e *entry) {
	switch {
	case e.state == StateUnknown && e.task.Delivery == AtMostOnce:
		// Unknown here, maybe not elsewhere: ask every replica again (see
		// tellsMore), as before the restart.
		n.dropBody(e, e.state)
		n.arm(e, timerForget, n.now().Add(n.cfg.DedupWindow))
		n.resendOutcome(e)
	case e.state.Final():
		n.dropBody(e, e.state)
		n.arm(e, timerForget, n.now().Add(n.cfg.DedupWindow))
	default:
		// Whatever we were doing before the crash is gone: a delivery in flight was
		// cut with the process. Wait for the lease we might hold, then try again.
		e.state = StateScheduled
		n.armFire(e)
		if e.promised > 0 && !e.released {
			// Later still if the grant ends later; never earlier than armed, so not
			// before the task is due (or a failure's backoff is over): a grant may
			// end before that (a move is claimed early, move.go), and acceptors
			// grant a drift allowance early (seed 18 of mover-restarts-before-due).
			n.pushBack(e, e.leaseEnd)
		}
	}
}

// replay applies one durable record at start.
func (n *Node) replay(r Record) {
	switch r.Kind {
	case RecRoster:
		n.replayRoster(r.Roster)
		return
	case RecLeaseGrant, RecRosterAccept:
		n.replayLeader(r)
		return
	}
	if r.Kind == RecSchedule {
		if r.Schedule != nil {
			n.keepSchedule(r.Schedule)
		}
		return
	}
	if r.Kind == RecSetting {
		if r.Setting != nil {
			n.keepSetting(r.Setting)
		}
		return
	}
	if r.Kind == RecForgotten {
		if r.NextETA.After(n.forgetMark) {
			n.forgetMark = r.NextETA
		}
		n.settingsFloor = max(n.settingsFloor, r.Attempt)
		return
	}
	if r.Kind == RecTask {
		if _, ok := n.tasks[r.Task.ID]; !ok {
			// A task given back carries its floor and the count of failures so far.
			e := n.newEntry(r.Task) // counted by recount at the end of Start
			e.floor = max(e.floor, r.Attempt)
			n.adoptCount(e, recordedFailures(&r), r.Status, r.NextETA)
			n.tasks[r.Task.ID] = e
		} else if r.Task.ListVersion > 0 {
			n.replayMove(n.tasks[r.Task.ID], r)
		}
		return
	}
	e := n.tasks[r.TaskID]
	if e == nil {
		return
	}
	switch r.Kind {
	case RecMove:
		n.replayMove(e, r)
	case RecGrant:
		if r.Attempt > e.promised {
			x := e.ext()
			x.promised, x.holder, x.holderRound, x.leaseEnd, x.released = r.Attempt, r.Holder, r.Round, r.LeaseEnd, false
		}
	case RecRelease:
		n.applyRelease(e, r.Holder, r.Attempt, r.Round, r.NextETA, recordedFailures(&r), r.Status)
	case RecOutcome:
		e.state, e.ext().lastStatus, e.ext().reason = r.State, r.Status, r.Reason
		e.mergeFailures(recordedFailures(&r))
	}
}

// adoptCount merges the failures counted elsewhere into e: retries so far, the last
// status, and the end of their backoff.
func (n *Node) adoptCount(e *entry, count failureCount, status int, notBefore time.Time) {
	e.mergeFailures(count)
	if status != 0 {
		e.ext().lastStatus = status
	}
	if notBefore.After(e.notBefore) {
		e.notBefore = notBefore
	}
	if notBefore.After(e.nextETA) {
		e.nextETA = notBefore
	}
}

func (n *Node) newEntry(t *Task) *entry {
	rank := t.Rank(n.cfg.ID)
	return &entry{entryExtra: &noExtra, task: t, rank: rank, state: StateScheduled, nextETA: t.ETA, notBefore: t.ETA, floor: n.forgetFloor(t)}
}

// forgetFloor is the attempt floor of a task this node may have granted and then
// forgotten (it lost its memory at forgotAt, and t is older): the milliseconds from
// t's creation to the end of our recovery wait.
//
// Invariant: an attempt number is delivered by one node at most, even once every
// replica that granted it has forgotten it. Attempt numbers count claim rounds, and
// a task goes through fewer claim rounds than milliseconds pass (each failed round
// waits ClaimTimeout/2 at least), so every attempt claimed before forgotAt, on any
// clock within MaxClockDrift of ours, is below the milliseconds from t's creation to
// forgotAt plus the drift; the recovery wait (more than a lease, itself more than
// twice the drift) is the margin. Nobody learns of this floor before recoverUntil
// (we grant nothing for such tasks until then), so the attempts that outbid it are
// again below the milliseconds passed when they are claimed. A floor is recorded (in
// the record of a task given back, by a Release with no holder for a task kept
// through a lossy start): a later start may not know of the loss.
func (n *Node) forgetFloor(t *Task) uint64 {
	if n.recoverUntil.IsZero() || n.bornAfterForgetting(t) {
		return 0
	}
	return uint64(max(n.recoverUntil.Sub(t.Created).Milliseconds(), 0))
}

// now reads the clock. Inside an input (Start and New count as inputs) the reading
// is kept in lastNow, for coolOld, which must not read the clock (cold.go). A read
// of the node's state between inputs (Leader, NotReady, Recovering: the API's, the
// metrics', the daemon's checks) keeps nothing: it must leave the state as it found
// it, for the flight recorder does not record it, and a replay would not reach a
// state it changed (a later file's snapshot would differ from the replayed node's).
func (n *Node) now() time.Time {
	t := n.env.Clock.Now()
	if n.inInput || !n.started {
		n.lastNow = t.UnixNano()
	}
	return t
}

func (n *Node) recovering() bool {
	return !n.recoverUntil.IsZero() && n.now().Before(n.recoverUntil)
}

// quorum is how many grants (or acknowledgements) out of a task's replicas suffice.
func (n *Node) quorum(t *Task) int {
	if n.cfg.ClaimQuorum > 0 {
		return min(n.cfg.ClaimQuorum, len(t.Replicas))
	}
	return len(t.Replicas)/2 + 1
}

func majority(t *Task) int { return len(t.Replicas)/2 + 1 }

// Placement returns the replicas of a task ID: R consecutive members of the ring,
// starting where the ID hashes.
func (n *Node) Placement(id string) []NodeID {
	h := fnv.New64a()
	h.Write([]byte(id))
	start := int(h.Sum64() % uint64(len(n.members)))
	out := make([]NodeID, n.cfg.Replicas)
	for i := range out {
		out[i] = n.members[(start+i)%len(n.members)]
	}
	return out
}

// send hands m to the network, or to the self queue when it is for this node.
func (n *Node) send(m Message) {
	m.From = n.cfg.ID
	if n.msgObs != nil {
		n.msgObs.MessageSent(m)
	}
	if m.To == n.cfg.ID {
		n.selfq = append(n.selfq, m)
		return
	}
	n.env.Network.Send(m)
}

// bcast sends a copy of m to every replica of t, this node included when it is one.
func (n *Node) bcast(t *Task, m Message) {
	for _, r := range t.Replicas {
		m.To = r
		n.send(m)
	}
}

// maxKeptSelfq is the longest self-message queue whose array input keeps for the
// next input.
const maxKeptSelfq = 1024

// input wraps every public entry point: it runs f, then the messages this node sent
// to itself, so that each handler runs to completion before the next starts.
func (n *Node) input(f func()) {
	if !n.started {
		panic("node: input before Start")
	}
	if n.inInput {
		panic("node: re-entered from inside an input")
	}
	n.inInput = true
	f()
	// By index, not by re-slicing: the queue may grow while it is drained, and its
	// array is reused by the next input instead of allocated anew.
	for i := 0; i < len(n.selfq); i++ {
		n.step(n.selfq[i])
	}
	clear(n.selfq)
	n.selfq = n.selfq[:0]
	if cap(n.selfq) > maxKeptSelfq {
		n.selfq = nil // a burst's array (a wake that fired many timers) is not kept
	}
	n.coolOld()
	n.freezeOld()
	n.inInput = false
}

// Step handles a message from a peer, once the door let it in (see door.go): a
// message that breaks a rule is counted and dropped.
func (n *Node) Step(m Message) {
	n.input(func() {
		if n.admitMessage(m) {
			n.heardFrom(m.From)
			n.step(m)
		}
	})
}

func (n *Node) step(m Message) {
	switch m.Type {
	case MsgStore:
		n.handleStore(m)
	case MsgStoreResp:
		n.handleStoreResp(m)
	case MsgClaim:
		n.handleClaim(m)
	case MsgClaimResp:
		n.handleClaimResp(m)
	case MsgRelease:
		n.handleRelease(m)
	case MsgOutcome:
		n.handleOutcome(m)
	case MsgOutcomeResp:
		n.handleOutcomeResp(m)
	case MsgNaiveCancel:
		n.handleNaiveCancel(m)
	case MsgNaivePushBack:
		n.handleNaivePushBack(m)
	case MsgStatus:
		n.handleStatus(m)
	case MsgStatusResp:
		n.handleStatusResp(m)
	case MsgQueueSet:
		n.handleQueueSet(m)
	case MsgQueueSetResp:
		n.handleQueueSetResp(m)
	case MsgPermit:
		n.handlePermit(m)
	case MsgPermitResp:
		n.handlePermitResp(m)
	case MsgPermitDone:
		n.handlePermitDone(m)
	case MsgTokenLease:
		n.handleTokenLease(m)
	case MsgTokenLeaseResp:
		n.handleTokenLeaseResp(m)
	case MsgList:
		n.handleList(m)
	case MsgListResp:
		n.handleListResp(m)
	case MsgQueueSync:
		n.handleQueueSync(m)
	case MsgQueueSyncResp:
		n.handleQueueSyncResp(m)
	case MsgScheduleSet:
		n.handleScheduleSet(m)
	case MsgScheduleSetResp:
		n.handleScheduleSetResp(m)
	case MsgCount:
		n.handleCount(m)
	case MsgCountResp:
		n.handleCountResp(m)
	case MsgGossip:
		n.handleGossip(m)
	case MsgGossipResp:
		n.handleGossipResp(m)
	case MsgRoster:
		n.handleRoster(m)
	case MsgLeaderClaim:
		n.handleLeaderClaim(m)
	case MsgLeaderClaimResp:
		n.handleLeaderClaimResp(m)
	case MsgRosterPropose:
		n.handleRosterPropose(m)
	case MsgRosterProposeResp:
		n.handleRosterProposeResp(m)
	case MsgJoin:
		n.handleJoin(m)
	case MsgLeaderRelease:
		n.handleLeaderRelease(m)
	case MsgRemove:
		n.handleRemove(m)
	case MsgMove:
		n.handleMove(m)
	case MsgMoveResp:
		n.handleMoveResp(m)
	}
}

// --- enqueue -------------------------------------------------------------------

// Enqueue coordinates a new task: it validates the request, picks the replicas and
// answers reply once a majority stored it (or ErrOutcomeUnknown after EnqueueTimeout).
// reply is called exactly once, as part of some later input or of this one.
func (n *Node) Enqueue(req EnqueueRequest, reply func(EnqueueResult)) {
	n.input(func() { n.enqueue(req, n.await(func(a Answer) { reply(a.Enqueue) })) })
}

func (n *Node) enqueue(req EnqueueRequest, client ReplyID) {
	reply := func(res EnqueueResult) { n.answer(client, Answer{Enqueue: res}) }
	if err := n.refuseNew(); err != nil {
		reply(EnqueueResult{Err: err})
		return
	}
	if err := ValidateRequest(&req); err != nil {
		reply(EnqueueResult{Err: err})
		return
	}
	now := n.now()
	id, err := uuid.NewRandomFromReader(randReader{n.env.Rand})
	if err != nil {
		panic(fmt.Sprintf("node: uuid from seeded source: %v", err))
	}
	if req.Name != "" {
		// A named task's ID is derived from its queue and name, so every node sends
		// it to the same replicas, and those that hold it answer "exists".
		id = uuid.NewSHA1(nameSpace, []byte(req.Queue+"\x00"+req.Name))
		if n.pending[id.String()] != nil {
			reply(EnqueueResult{ID: id.String(), Err: &DuplicateNameError{Queue: req.Queue, Name: req.Name, ID: id.String()}})
			return
		}
	}
	eta := req.ETA
	if eta.IsZero() {
		eta = now.Add(req.Countdown)
	}
	t := &Task{
		ID:          id.String(),
		Queue:       common(req.Queue),
		Name:        req.Name,
		URL:         req.URL,
		Method:      common(req.Method),
		Headers:     req.Headers,
		ContentType: common(req.ContentType),
		Body:        req.Body,
		ETA:         eta,
		Created:     now,
		Nonce:       n.env.Rand.Uint64(),
		Delivery:    n.queue(req.Queue).Delivery,
	}
	t.Replicas = n.sharedPlacement(t.ID)
	n.coordinate(t, enqueueClient{id: client})
}

// refuseNew says why this node takes no new task now (nil when it does): it is
// stopping, still learning the settings, or cannot write its log.
func (n *Node) refuseNew() error {
	switch {
	case n.stopping:
		return ErrStopping
	case n.joining:
		return ErrJoining
	case n.removed:
		return ErrRemoved
	case !n.settingsKnown():
		return ErrStarting
	}
	return n.storageErr()
}

// coordinate stores the new task t on its replicas and answers reply once a
// majority holds it (see sendStores). A task this node already coordinates answers
// as a duplicate name.
func (n *Node) coordinate(t *Task, client enqueueClient) {
	reply := func(res EnqueueResult) { n.answerEnqueue(client, t, res) }
	if n.pending[t.ID] != nil {
		reply(EnqueueResult{ID: t.ID, Err: &DuplicateNameError{Queue: t.Queue, Name: t.Name, ID: t.ID}})
		return
	}
	if err := n.admit(t); err != nil {
		reply(EnqueueResult{Err: err})
		return
	}
	if err := n.admitQueue(t.Queue); err != nil {
		reply(EnqueueResult{Err: err})
		return
	}
	op := &enqueueOp{seq: n.nextOpSeq(), task: t, client: client, deadline: n.now().Add(n.cfg.EnqueueTimeout)}
	n.pending[t.ID] = op
	n.sendStores(op)
}

// sendStores sends Store to every replica that has not acknowledged op yet and arms
// the next resend; at the deadline it gives up, answering ErrOutcomeUnknown if no
// majority was reached.
func (n *Node) sendStores(op *enqueueOp) {
	t := op.task
	if !n.now().Before(op.deadline) {
		delete(n.pending, t.ID)
		if !op.replied {
			n.answerEnqueue(op.client, op.task, EnqueueResult{ID: t.ID, Err: ErrOutcomeUnknown})
		}
		return
	}
	for i, r := range t.Replicas {
		if op.acks&(1<<i) == 0 {
			n.send(Message{Type: MsgStore, To: r, TaskID: t.ID, Task: t})
		}
	}
	wait := min(n.cfg.OutcomeRetry, op.deadline.Sub(n.now()))
	op.stop = n.after(wait, alarm{kind: alarmStoreResend, id: op.seq, key: t.ID})
}

// ValidateRequest checks a request and fills its defaults (method POST, queue "default").
func ValidateRequest(req *EnqueueRequest) error {
	if req.Queue == "" {
		req.Queue = "default"
	}
	if req.Method == "" {
		req.Method = "POST"
	}
	if req.URL == "" {
		return fieldErr("url", "is required")
	}
	if !hasHTTPHost(req.URL) {
		return fieldErr("url", "must be an absolute http or https URL, not %q", req.URL)
	}
	if req.Countdown < 0 {
		return fieldErr("countdown", "must not be negative")
	}
	if len(req.Name) > 500 || strings.Trim(req.Name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") != "" {
		return fieldErr("name", "must be 1-500 letters, digits, '_' or '-' (App Engine's task names), not %q", req.Name)
	}
	return nil
}

// hasHTTPHost reports whether url starts with http:// or https:// (any case) and a
// host follows the scheme ("http://" and "http:///path" have none).
func hasHTTPHost(url string) bool {
	for _, scheme := range []string{"http://", "https://"} {
		if hasPrefixFold(url, scheme) {
			rest := url[len(scheme):]
			return rest != "" && rest[0] != '/' && rest[0] != '?' && rest[0] != '#'
		}
	}
	return false
}

func hasPrefixFold(s, prefix string) bool {
	if len(s) < len(prefix) {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != prefix[i] {
			return false
		}
	}
	return true
}

func (n *Node) handleStore(m Message) {
	// The acknowledgements below wait for a sync: they keep the two fields they need,
	// not m, which would then be moved to the heap for every Store.
	t := m.Task
	if t == nil || t.Rank(n.cfg.ID) < 0 {
		return
	}
	ack := storeAck{to: m.From, taskID: m.TaskID, nonce: t.Nonce}
	// A node that may have lost its memory must not learn a task from before its
	// start until every grant it could have given has expired and every message sent
	// before it started is gone: it might have granted or finished that task and
	// forgotten. Tasks surely created since it started are safe to take at once.
	if n.recovering() && !n.bornAfterForgetting(t) {
		return
	}
	if e := n.entryOf(t.ID); e != nil {
		if e.task.Nonce == t.Nonce && t.ListVersion > e.task.ListVersion {
			// A move's new list, in force: take it with the failures and floor.
			e.floor = max(e.floor, m.Attempt)
			n.adoptCount(e, failuresOf(&m), m.Status, m.NextETA)
			n.adoptList(e, t)
			if !e.state.Final() && e.claiming == 0 && !e.delivering {
				n.armFire(e)
			}
			n.afterSync(ack.then())
			return
		}
		if e.task.Nonce != t.Nonce {
			// Another enqueue of the same name: the first one stands.
			n.send(ack.answer(RejectExists, e.state))
			return
		}
		// A duplicate Store (the coordinator resends until it hears back): answer only
		// once the first copy's record is durable. Invariant: no Store is acknowledged
		// before its task is synced, even when the request is repeated.
		if n.cfg.Unsafe.AckRepeatedStoreEarly {
			n.ackStore(ack) // negative controls only (S8)
			return
		}
		n.afterSync(ack.then())
		return
	}
	if n.mayHaveForgotten(t) {
		// Perhaps a task this node finished and forgot after its dedup window, given
		// back by a replica that was away longer: never bring it back.
		n.send(ack.answer(RejectForgotten, StateNone))
		return
	}
	if s := n.settings[t.Queue]; s != nil && t.Created.Before(s.PurgedBefore) {
		// Purged: keep it as cancelled, so that it never runs. The task's own record
		// goes first: a replay drops an outcome of a task it does not hold, so with
		// the outcome alone the acknowledged task was gone after a restart (S8 in
		// settings-flip-restarts: a coordinator whose clock ran behind made a task
		// dated before a purge it had just learnt).
		e := n.newEntry(t)
		n.addEntry(e)
		n.persist(nil, Record{Kind: RecTask, Task: t, TaskID: t.ID, Attempt: e.floor, Status: m.Status, NextETA: m.NextETA}.withFailures(e.failures()))
		n.adoptFinal(e, StateCancelled, ack.then())
		return
	}
	if err := n.admit(t); err != nil || n.storageErr() != nil {
		// Full under the limits, or unable to write its log (a full disk, a failed
		// fsync): this replica takes no new task.
		n.send(ack.answer(RejectFull, StateNone))
		return
	}

	e := n.newEntry(t)
	// A task given back (see handleClaimResp) carries the failures counted so far;
	// a moved one also its floor (move.go).
	e.floor = max(e.floor, m.Attempt)
	n.adoptCount(e, failuresOf(&m), m.Status, m.NextETA)
	n.addEntry(e)
	n.observe(e, StateNone, StateScheduled)
	n.armFireStored(e)
	rec := Record{Kind: RecTask, Task: t, TaskID: t.ID, Attempt: e.floor, Status: m.Status, NextETA: m.NextETA}.withFailures(e.failures())
	n.persist(ack.then(), rec)
	if n.cfg.Unsafe.DropStoredTasks {
		n.removeEntry(e) // negative controls only (L2)
	}
}

// storeAck is whom to acknowledge a Store to, and for which task: its ID and the
// nonce of the enqueue that made it, which every answer to a Store echoes (Round).
type storeAck struct {
	to     NodeID
	taskID string
	nonce  uint64
}

func (n *Node) ackStore(a storeAck) { n.send(a.answer(RejectNone, StateNone)) }

// answer is the answer to the Store, stored or refused (with the state held
// when the name is taken). Every answer goes through here, so that each echoes
// the Store's nonce, which the coordinator matches (handleStoreResp).
func (a storeAck) answer(reject Reject, state TaskState) Message {
	return Message{Type: MsgStoreResp, To: a.to, TaskID: a.taskID, Reject: reject, State: state, Round: a.nonce}
}

func (n *Node) handleStoreResp(m Message) {
	op := n.pending[m.TaskID]
	if op == nil || m.Round != op.task.Nonce {
		// Invariant: an enqueue counts only the answers to its own Stores. An answer
		// names the task's ID, which another enqueue of the same name shares: an
		// answer to an earlier one's Store, late on a slow link, would otherwise count
		// as this one stored (names-late-store-answers: Q3, L2).
		n.handleMoveStoreResp(m)
		return
	}
	rank := op.task.Rank(m.From)
	if rank < 0 {
		return
	}
	if m.Reject == RejectForgotten {
		// It may have held this task, finished it and forgotten it after its dedup
		// window (a window shorter than the enqueue's timeout): not a copy held now.
		return
	}
	if m.Reject == RejectFull {
		n.refuseFull(op, rank, m.From)
		return
	}
	if m.Reject == RejectExists {
		op.exists |= 1 << rank
		if !op.replied && bits.OnesCount64(op.exists) >= majority(op.task) {
			op.replied = true
			delete(n.pending, m.TaskID)
			n.stopAlarm(op.stop)
			t := op.task
			n.answerEnqueue(op.client, op.task, EnqueueResult{ID: t.ID, Err: &DuplicateNameError{Queue: t.Queue, Name: t.Name, ID: t.ID}})
		}
		return
	}
	op.acks |= 1 << rank
	n.ackCounted(Ack{Kind: RecTask, From: m.From, TaskID: m.TaskID, Nonce: op.task.Nonce})
	if !op.replied && bits.OnesCount64(op.acks) >= majority(op.task) {
		op.replied = true
		n.answerEnqueue(op.client, op.task, EnqueueResult{ID: m.TaskID, Task: op.task})
	}
	if bits.OnesCount64(op.acks) == len(op.task.Replicas) {
		delete(n.pending, m.TaskID)
		n.stopAlarm(op.stop)
	}
}

// afterSync does then once everything this node appended so far is durable: the
// answer to a request whose record may still be on its way to disk (a repeated
// Store, claim round or Outcome, a setting). Without durable storage it does then at
// once. After a storage error that stops the log it never does.
func (n *Node) afterSync(then *syncAction) { n.persist(then) }

// sendAfterSync sends m once every record appended so far is durable (afterSync).
// It takes its own copy of m, so that only the call that waits moves a message to
// the heap, not every caller's.
func (n *Node) sendAfterSync(m Message) { n.afterSync(sendThen(m)) }

// persistThenSend is persist(recs) then send m, with its own copy of m, as
// sendAfterSync.
func (n *Node) persistThenSend(m Message, recs ...Record) { n.persist(sendThen(m), recs...) }

// persist makes recs durable, then does then (nil: nothing). Without durable
// storage it does then at once: the records would not survive a crash anyway.
//
// It keeps neither then nor recs: it copies them when it must wait, so that
// without durable storage the callers' action and records stay on their stacks
// (they were about 1 KB of allocations a task on each replica).
func (n *Node) persist(then *syncAction, recs ...Record) {
	s := n.env.Storage
	if !s.Durable() {
		n.afterSynced(then)
		return
	}
	// The records and the action may live on the caller's stack (and recs be a
	// buffer it reuses): keep copies, only now that they wait for a sync.
	s.Append(slices.Clone(recs)...)
	var waiting *syncAction
	if then != nil {
		a := *then
		waiting = &a
	}
	n.syncSeq++
	id := n.syncSeq
	n.syncs[id] = waiting
	n.askSync(id)
}

// askSync asks Storage for sync id (syncs.go), whose end is an input.
func (n *Node) askSync(id uint64) {
	n.env.Storage.Sync(func() { n.input(func() { n.synced(id) }) })
}

// synced does what sync id waited for (syncs.go).
func (n *Node) synced(id uint64) {
	then := n.syncs[id]
	delete(n.syncs, id)
	n.afterSynced(then)
}

// --- timers ----------------------------------------------------------------------

// arm sets e's single timer to fire at local time at, replacing whatever was set.
func (n *Node) arm(e *entry, kind timerKind, at time.Time) {
	n.disarm(e)
	e.timerKind = kind
	if kind == timerForget {
		n.queueForget(e, at)
		return
	}
	n.schedule(e, at)
	if kind == timerFire && e.entryExtra == &noExtra {
		n.queueCool(e.task.ID) // a task waiting for its due time may go cold (cold.go)
	}
}

func (n *Node) disarm(e *entry) {
	n.unschedule(e)
	e.timerKind = timerNone
}

// armFire arms the replica timer at next_eta + rank × replica_offset.
func (n *Node) armFire(e *entry) {
	at := e.nextETA.Add(time.Duration(e.rank) * n.cfg.ReplicaOffset)
	if e.rank == 0 {
		// Only the first replica claims ahead: the others' stagger is rank 0's
		// time to deliver, kept whole.
		at = at.Add(-n.claimAhead())
	}
	n.arm(e, timerFire, at)
}

// DefaultClaimAhead is Config.ClaimAhead's default: longer than a claim's round
// trip with its fsyncs on a healthy disk (a few milliseconds), so that a task due
// at a time is delivered at it, not a round trip after.
const DefaultClaimAhead = 50 * time.Millisecond

// claimAhead is how long before a replica timer's due time its claim starts: see
// Config.ClaimAhead.
func (n *Node) claimAhead() time.Duration {
	if n.cfg.Protocol != ProtocolQuorum || n.cfg.ClaimAhead < 0 {
		return 0 // the naive protocol delivers when its timer fires
	}
	return min(n.cfg.ClaimAhead, n.cfg.MaxClockDrift/2)
}

// armFireStored arms the replica timer of a task just stored. A task that arrives
// past its due time (enqueued late, as a schedule's missed tick, or with an ETA in
// the past) keeps the replicas' stagger from its arrival: were every replica to fire
// at once, their claims would refuse each other and the task wait out a lease. (The
// naive protocol has no claims: its negative control keeps its replicas' timing.)
func (n *Node) armFireStored(e *entry) {
	stagger := time.Duration(e.rank) * n.cfg.ReplicaOffset
	if late := n.now(); e.nextETA.Add(stagger).Before(late) && e.rank > 0 && n.cfg.Protocol == ProtocolQuorum {
		n.arm(e, timerFire, late.Add(stagger))
		return
	}
	n.armFire(e)
}

// pushBack moves the replica timer past another node's lease: it fires no earlier
// than until + rank × replica_offset.
func (n *Node) pushBack(e *entry, until time.Time) {
	at := until.Add(time.Duration(e.rank) * n.cfg.ReplicaOffset)
	if e.timerKind == timerFire {
		if base := e.nextETA.Add(time.Duration(e.rank) * n.cfg.ReplicaOffset); base.After(at) {
			at = base
		}
	}
	n.arm(e, timerFire, at)
}

func (n *Node) onTimer(e *entry, kind timerKind) {
	switch kind {
	case timerFire:
		if n.cfg.Protocol == ProtocolNaive {
			n.naiveFire(e)
		} else {
			n.fire(e)
		}
	case timerClaim:
		n.abandonClaim(e, n.now().Add(n.claimBackoff(e)))
	case timerPermit:
		n.askPermitAgain(e)
	case timerDeliver:
		if e.claiming != 0 && !e.delivering && !e.state.Final() {
			n.deliver(e)
		}
	case timerOutcome:
		n.sendOutcome(e)
	case timerForget:
		n.removeEntry(e)
		if n.env.Storage.Durable() {
			n.forgotten = append(n.forgotten, e.task.ID)
		}
	}
}

// jitter returns a random duration in [d/2, 3d/2).
func (n *Node) jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d/2 + time.Duration(n.env.Rand.Int64N(int64(d)))
}

// setState changes e's state and tells the observer.
func (n *Node) setState(e *entry, to TaskState) {
	if e.state == to {
		return
	}
	from := e.state
	if n.tasks[e.task.ID] == e {
		n.count(e, from, -1)
		n.count(e, to, +1)
		if from.Final() != to.Final() {
			if to.Final() {
				n.countOpen(e, -1)
			} else {
				n.countOpen(e, +1)
			}
		}
	}
	if to.Final() {
		n.dropBody(e, to)
	}
	e.state = to
	n.observe(e, from, to)
	if to.Final() {
		e.ext().delivering = false
		if e.moving {
			n.endMove(e) // a final task is not moved: its move no longer counts (move.go)
		}
	}
}

func (n *Node) observe(e *entry, from, to TaskState) {
	if n.env.Observer != nil {
		n.env.Observer.TaskStateChanged(e.task, from, to, max(e.claiming, e.promised))
	}
}

// Ready reports whether the node takes new tasks. A node that forgot (without
// durable storage, or with a loss reported) refuses, for MaxClockDrift after it
// forgot, every task that may have been created before (see handleStore); until then
// a new task may not find a majority of replicas. A node that is still learning the
// queue settings, or cannot write its log, takes none either. NotReady says why.
func (n *Node) Ready() bool { return n.NotReady() == "" }

// NotReady says why the node is not Ready ("" when it is).
func (n *Node) NotReady() string {
	switch {
	case n.joining:
		return "joining: waiting for the leader to add this node to the roster"
	case n.removed:
		return fmt.Sprintf("removed: the cluster's roster (epoch %d) no longer lists this node", n.roster.Epoch)
	case !n.recoverUntil.IsZero() && n.now().Before(n.forgotAt.Add(n.cfg.MaxClockDrift)):
		return "starting: waiting out max_clock_drift after losing its memory"
	case !n.settingsKnown():
		return "starting: learning the queue settings from the other members"
	case n.storageErr() != nil:
		return n.storageErr().Error()
	}
	return ""
}

// StorageHealth is an optional ability of a durable Storage (net/disk's log has it):
// Err says why records cannot be made durable now (a full disk, too many open files,
// a failed fsync), nil while they can. The node then takes no new task, as
// coordinator (ErrStorage) or replica, and is not Ready. What waits for a sync is
// acknowledged only if the sync completes; what is durable stays.
type StorageHealth interface{ Err() error }

// ErrStorage: this node cannot write its log now; nothing was stored.
var ErrStorage = errors.New("this node cannot write to its disk now: nothing was stored, retry later or through another node")

func (n *Node) storageErr() error {
	if h, ok := n.env.Storage.(StorageHealth); ok && n.env.Storage.Durable() {
		if err := h.Err(); err != nil {
			return fmt.Errorf("%w (%v)", ErrStorage, err)
		}
	}
	return nil
}

// Ack is an acknowledgement this node counted, from another node or from itself,
// of something the acknowledger must hold durably by then (with durable storage): a
// Store (Kind RecTask), a grant (RecGrant: Attempt to Holder), a final state
// (RecOutcome), a queue setting (RecSetting) or a schedule (RecSchedule). The
// simulator checks each against the acknowledger's disk (invariant S8).
type Ack struct {
	Kind     RecordKind
	From     NodeID
	TaskID   string
	Nonce    uint64
	Attempt  uint64
	Holder   NodeID
	Setting  *QueueSetting
	Schedule *Schedule // RecSchedule
}

// AckObserver, when the Env's Observer implements it, is told of every Ack counted.
type AckObserver interface{ AckCounted(a Ack) }

func (n *Node) ackCounted(a Ack) {
	if o, ok := n.env.Observer.(AckObserver); ok {
		o.AckCounted(a)
	}
}

// Recovering reports whether the node still acts as one that forgot: inside its
// recovery wait, or holding an at-most-once task whose grant it may have lost. A
// storage that marks a loss (node.LossReporter) may drop the mark once this is false:
// the next start need not wait again.
func (n *Node) Recovering() bool {
	if n.recovering() {
		return true
	}
	for _, e := range n.tasks {
		if e.amnesiac && !e.state.Final() {
			return true
		}
	}
	return false
}

// TakeForgotten returns (and clears) the IDs of the tasks this node dropped after
// their dedup window since the last call: their records may be compacted away.
func (n *Node) TakeForgotten() []string {
	ids := n.forgotten
	n.forgotten = nil
	return ids
}

// Drain prepares a shutdown: the node takes no new task and starts no new claim;
// claim rounds in progress are abandoned (and released); deliveries in flight go on
// and their outcomes are still sent. Other replicas take over its tasks. The
// simulator's stop fault runs it as the daemon's SIGTERM does (sim/stop.go).
func (n *Node) Drain() {
	n.input(func() {
		n.stopping = true
		// Invariant: a stopping node releases only the claim rounds still in
		// progress, never the attempt of a task that is final. A finished task's
		// deliverer still names its attempt in claiming; released, it told acceptors
		// that had not yet heard the outcome that the attempt was over, undelivered,
		// and they granted the next: an at-most-once task delivered twice (S4 on 10
		// of seeds 1-200 of graceful-stops, where the simulator stops nodes as
		// SIGTERM does). Only live entries are walked: a frozen task is final and a
		// cold one has no claim (tomb.go, cold.go), and thawing every finished task
		// of the dedup window made a shutdown cost a Release per task to every
		// replica.
		for _, id := range sortedKeys(n.tasks) {
			if e := n.tasks[id]; e.claiming != 0 && !e.delivering && !e.state.Final() {
				n.abandonClaim(e, n.now().Add(n.cfg.Lease))
			}
		}
	})
}

// --- queries ---------------------------------------------------------------------

// Task returns this node's view of a task.
func (n *Node) Task(id string) (TaskStatus, bool) {
	e := n.peek(id)
	if e == nil {
		return TaskStatus{}, false
	}
	return TaskStatus{Task: e.task, State: e.state, Attempt: max(e.promised, e.floor, e.claiming), Retries: e.retries, LastStatus: e.lastStatus, NextETA: e.nextETA, Reason: e.reason}, true
}

// AcceptorState is what a replica's acceptor holds of a task: the highest attempt it
// granted, to whom, whether that attempt was released (or its lease ended as a
// failure), and the floor below which it grants nothing.
type AcceptorState struct {
	Promised uint64
	Holder   NodeID
	Released bool
	Floor    uint64
}

// Acceptor returns this node's acceptor state for a task (the simulator checks with
// it that a restart rebuilds the grants acknowledged before the crash).
func (n *Node) Acceptor(id string) (AcceptorState, bool) {
	e := n.peek(id)
	if e == nil {
		return AcceptorState{}, false
	}
	return AcceptorState{Promised: e.promised, Holder: e.holder, Released: e.released, Floor: e.floor}, true
}

// TaskIDs returns the IDs of every task this node holds, sorted.
func (n *Node) TaskIDs() []string {
	ids := append(sortedKeys(n.tasks), n.tombIDs()...)
	slices.Sort(ids)
	return ids
}

// nameSpace is the UUID namespace of IDs derived from task names.
var nameSpace = uuid.MustParse("6d69796d-616d-6f74-6f2d-7461736b6e6d")

// randReader adapts the node's seeded source to io.Reader for uuid.
type randReader struct{ r Rand }

func (rr randReader) Read(p []byte) (int, error) {
	for i := 0; i < len(p); i += 8 {
		v := rr.r.Uint64()
		for j := 0; j < 8 && i+j < len(p); j++ {
			p[i+j] = byte(v >> (8 * j))
		}
	}
	return len(p), nil
}
