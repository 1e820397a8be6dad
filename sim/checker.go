package sim

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/miyamotohq/miyamoto/node"
)

// Violation is one broken invariant.
type Violation struct {
	Invariant string
	At        time.Duration // true time
	Tasks     []string
	Nodes     []node.NodeID
	Detail    string
}

func (v Violation) String() string {
	nodes := make([]string, len(v.Nodes))
	for i, n := range v.Nodes {
		nodes[i] = string(n)
	}
	return fmt.Sprintf("%s at %s: %s (tasks %s; nodes %s)", v.Invariant, v.At, v.Detail, strings.Join(v.Tasks, ","), strings.Join(nodes, ","))
}

// Excuse is a departure from exactly-once that the invariants allow, with its cause:
// Kind "duplicate" (a delivery after a success, S3's exception), "lost" (L2's
// exception: a majority of replicas lost their state), "stuck" (L1's: too few
// replicas hold the task after state loss to claim it), "failing" (L1's too: its
// worker failed every delivery of the liveness phase, and retries kept pace), "name" (Q3's: a name
// accepted again after the first task's replicas lost their state) or "forgotten"
// (Q4's: a retry early for failures that every replica able to know of lost).
type Excuse struct {
	Kind  string
	At    time.Duration
	Task  string
	Node  node.NodeID
	Cause string
}

// delivery is one webhook call as the worker saw it.
type delivery struct {
	task    *taskRec
	node    *simNode
	attempt uint64
	start   int64
	end     int64 // -1 while in flight
	status  int
	inc     uint64 // the node's incarnation that started it
	fail    int    // for a failed delivery: its number among the task's failures, from 0
	list    uint64 // the version of the replica list it was claimed under (node/move.go)
	// replicas: that list's members.
	replicas []node.NodeID
	// uncapped: started by a node that knew of no max_concurrent for the queue, and
	// no PUT setting one had been answered yet: not in the queue's count (Q2).
	uncapped bool
}

// taskRec is everything the checker knows about one task.
type taskRec struct {
	task *node.Task
	// members are the task's replicas across its lists: the first list, then each
	// member a move added (node/move.go). Ranks index it.
	members    []node.NodeID
	acked      bool
	deliveries []int // indexes into checker.deliveries
	active     int   // deliveries in flight
	byAttempt  map[uint64]*simNode

	success    int     // index of the first successful delivery, -1 none
	successEnd int64   // true time it ended
	knowsFinal []int64 // per rank: true time the replica learned the final state, -1 never
	finalState node.TaskState
	finalAt    int64  // -1: not final anywhere
	lostState  uint64 // replicas (by rank) that lost their memory of the task after holding it
	held       uint64 // replicas (by rank) holding it now
	// failures counts the task's failed deliveries. know, per rank, is the set of
	// them (bit j: failure j; from the 64th on, all share bit 63) that the replica
	// can have learned of: through its own delivery, a grant it gave the attempt,
	// or a message that carries a count of failures from a replica that could know
	// (Release, ClaimResp, Outcome, Store, naive push-back). A loss of its state of
	// the task clears it. See checkRetry.
	failures    int
	know        []uint64
	outcomeLost bool // an Outcome message about it was dropped
	// outcomeHeld: when the latest Outcome each node sent that the network held back
	// (a reorder's delay on top of its latency) reaches its replica.
	outcomeHeld map[node.NodeID]int64
	// doneSent: when each node last sent an Outcome with a final state; doneAcks: the
	// replicas (by rank) that answered each node's Outcome with a final state.
	doneSent map[node.NodeID]int64
	doneAcks map[node.NodeID]uint64
	died     bool  // some node ended it dead (the first one decided it: see checkDeath)
	finals   uint8 // the final states some node ended it in (bit: 1<<state), for V1
}

// checker verifies S1–S5 and Q1–Q5 as events happen, and L1, L2 at the end (S6, the
// pending-task and per-state counters, is checked by Run at the end).
type checker struct {
	w          *world
	tasks      map[taskKey]*taskRec
	byID       map[string][]*taskRec // every task that had this ID (one name, enqueued again)
	order      []*taskRec            // first-seen order, for deterministic reports
	deliveries []delivery
	violations []Violation
	nViolation map[string]int
	excused    []Excuse
	skew       int64 // S5 allowance: max clock drift
	// dedupWindow is how long replicas keep a finished task and its name (Q3).
	dedupWindow time.Duration

	acked      int
	livelocked bool    // the run was cut short: finish judges no task
	pausedAt   []int64 // per node: last pause, -1
	crashedAt  []int64 // per node: last crash, -1
	// cutEnded[i][j]: the last time a partition that cut node i off from node j
	// ended (-1: none). A success's Done held back by a partition reaches the replicas
	// a latency after the heal, so a claim that wins its quorum just after the heal
	// is still the partition's doing (S3; seed 154 of big-cluster-swarm).
	cutEnded [][]int64

	grants     map[grantKey]uint64 // replicas (by rank) that granted each claim and still know it (Q4)
	grantTimes map[grantKey]*grantInfo
	doneWindow time.Duration // two of a node's longest intervals between resends of Done
	acks       []*ackLog     // per node: what it acknowledged (S8)
	queues     map[string]*queueModel
	puts       []*putRec                         // clients' setting changes, in issue order (Q6)
	held       map[node.NodeID]map[string]uint64 // newest setting version held, per member and queue (Q6)
	members    []node.NodeID                     // sorted, as the nodes sort them
	driftRate  float64                           // clocks.max_drift: how much faster a token node may refill
	// permitLag is how long a start may lag its rate slot: node.SlotGrace to come
	// back for it, the configured permit validity for the permit to travel.
	permitLag time.Duration
	scheds    map[string]*schedModel    // the workload's schedules (SC1, SC2)
	boots     map[node.NodeID][]bootRec // every start of each node (SC2)
	// rosterChanges: the true time of every roster commit (SC2: ticks wait for the
	// token lease of the new epoch).
	rosterChanges []int64
	ticks         map[tickKey]*tickRec
	// M1: per node, the true time its roster lease ends (-1: none held); per
	// epoch, the roster committed under it.
	leaseEnds []int64
	committed map[uint64]*node.Roster
	// V1 (lookup.go): what may cancel a task, asked by when (cancels and refused
	// enqueues by task ID, purges and deletions by queue); the longest a lookup may
	// wait for its answer in the liveness phase; lookups made, and answered final.
	cancelReqs   map[string]int64
	purgeReqs    map[string]int64
	statusLost   map[string]int64 // by task ID: when a status message of it was last lost
	lookupBound  time.Duration
	lookups      int
	lookupsFinal int
}

const maxKeptViolations = 50

func newChecker(w *world) *checker {
	c := &checker{w: w, ticks: map[tickKey]*tickRec{}, scheds: map[string]*schedModel{}, tasks: map[taskKey]*taskRec{}, byID: map[string][]*taskRec{}, nViolation: map[string]int{}, skew: int64(w.sc.Cluster.MaxClockDrift), grants: map[grantKey]uint64{}, grantTimes: map[grantKey]*grantInfo{}}
	for i := range w.sc.Cluster.Nodes + w.sc.Cluster.Spares {
		c.pausedAt = append(c.pausedAt, -1)
		c.crashedAt = append(c.crashedAt, -1)
		c.cutEnded = append(c.cutEnded, nil)
		c.acks = append(c.acks, newAckLog())
		c.leaseEnds = append(c.leaseEnds, -1)
		if i < w.sc.Cluster.Nodes {
			// The static roster. (A limited queue's token node follows the roster:
			// scenarios with joins use no limited queue until its handover is safe.)
			c.members = append(c.members, node.NodeID(nodeName(i)))
		}
	}
	slices.Sort(c.members)
	c.driftRate = w.sc.Clocks.MaxDrift
	c.permitLag = node.SlotGrace + node.DefaultPermitValidity
	if pv := w.sc.Cluster.PermitValidity; pv > 0 {
		c.permitLag = node.SlotGrace + pv.D()
	}
	c.dedupWindow = w.sc.Cluster.DedupWindow.D()
	if c.dedupWindow == 0 {
		c.dedupWindow = time.Hour // node.Config's default
	}
	var cfg node.Config // the simulator leaves the resend intervals at their defaults
	cfg.EnsureDefaults()
	c.doneWindow = 2 * max(cfg.ClaimTimeout, cfg.OutcomeRetry)
	// A lookup's coordinator answers when its EnqueueTimeout runs out on its own
	// clock at the latest, which may run slow by clocks.max_drift; a second more
	// for the replicas' answers to arrive and the event that fires it.
	c.lookupBound = time.Duration(float64(cfg.EnqueueTimeout)/(1-w.sc.Clocks.MaxDrift)) + time.Second
	c.cancelReqs, c.purgeReqs, c.statusLost = map[string]int64{}, map[string]int64{}, map[string]int64{}
	c.queues = map[string]*queueModel{}
	c.held = map[node.NodeID]map[string]uint64{}
	for _, q := range w.sc.Workload.Queues {
		cfg := q.config()
		m := &queueModel{cfg: cfg, retry: cfg.Retry, retryKnown: true, pausedSince: -1, lastResume: -1}
		m.tokens = m.capacity(c.driftRate, c.permitLag)
		c.queues[q.Name] = m
	}
	return c
}

func (c *checker) violate(inv string, tasks []string, nodes []node.NodeID, format string, args ...any) {
	c.nViolation[inv]++
	if len(c.violations) < maxKeptViolations {
		c.violations = append(c.violations, Violation{Invariant: inv, At: time.Duration(c.w.now), Tasks: tasks, Nodes: nodes, Detail: fmt.Sprintf(format, args...)})
	}
	if c.w.trace != nil {
		c.w.trace.violation(c.w.now, inv, tasks, nodes, fmt.Sprintf(format, args...))
	}
}

// taskKey tells tasks apart: two enqueues of one name share an ID, not a nonce.
type taskKey struct {
	id    string
	nonce uint64
}

func keyOf(t *node.Task) taskKey { return taskKey{t.ID, t.Nonce} }

// rank is id's position among the task's members (-1: none).
func (r *taskRec) rank(id node.NodeID) int { return slices.Index(r.members, id) }

// addList adds the members of a moved list t (node/move.go) that r does not have.
func (r *taskRec) addList(t *node.Task) {
	if t.ListVersion == 0 {
		return
	}
	for _, id := range t.Replicas {
		if !slices.Contains(r.members, id) && len(r.members) < 64 {
			r.members = append(slices.Clip(r.members), id)
			r.knowsFinal = append(r.knowsFinal, -1)
			r.know = append(r.know, 0)
		}
	}
}

func (c *checker) rec(t *node.Task) *taskRec {
	r := c.tasks[keyOf(t)]
	if r == nil {
		r = &taskRec{task: t, members: t.Replicas, success: -1, finalAt: -1, knowsFinal: make([]int64, len(t.Replicas)), know: make([]uint64, len(t.Replicas)), byAttempt: map[uint64]*simNode{}}
		for i := range r.knowsFinal {
			r.knowsFinal[i] = -1
		}
		c.tasks[keyOf(t)] = r
		c.byID[t.ID] = append(c.byID[t.ID], r)
		c.order = append(c.order, r)
	}
	return r
}

// enqueueAcked records a client's success. Q3: a name is taken by one task at a
// time: accepting a second task with a name while an earlier one is kept (not yet
// forgotten after its dedup window) is a violation, unless replicas of the earlier
// one lost their state (then nobody can know the name was taken).
//
// A task acknowledged that no replica stored is the node's error, not the
// simulator's: a coordinator that counts acknowledgements of another enqueue of
// the same name (late answers to Stores of an earlier one, which name only the ID)
// answers for a task nobody holds. It is recorded like any other, so that Q3 judges
// the name now and L2 the lost task at the end; it used to stop the sweep with a
// panic (names and a delay fault into the coordinator).
func (c *checker) enqueueAcked(t *node.Task, sentAt int64) {
	r := c.rec(t)
	if r.acked {
		return
	}
	r.acked = true
	c.acked++
	c.checkQ6AtEnqueue(t, sentAt)
	if t.Name == "" {
		return
	}
	for _, other := range c.byID[t.ID] {
		if other == r || !other.acked {
			continue
		}
		if other.finalAt >= 0 && c.w.now >= other.finalAt+int64(c.dedupWindow)-c.skew {
			continue // the first task's dedup window is over: its name is free again
		}
		if other.lostState != 0 {
			c.excused = append(c.excused, Excuse{Kind: "name", At: time.Duration(c.w.now), Task: t.ID, Cause: fmt.Sprintf("name %q accepted again after replicas of the first task lost their state", t.Name)})
			continue
		}
		c.violate("Q3", []string{t.ID}, t.Replicas, "a second task named %q was accepted in queue %q while the first is kept", t.Name, t.Queue)
	}
}

func (c *checker) stateChanged(s *simNode, t *node.Task, from, to node.TaskState) {
	r := c.rec(t)
	r.addList(t)
	rank := r.rank(s.id)
	if from == node.StateNone && rank >= 0 {
		r.held |= 1 << rank
	}
	if to == node.StateDead && !r.died {
		r.died = true
		c.checkDeath(s, r)
	}
	if to.Final() {
		r.finals |= 1 << to
		if rank >= 0 && r.knowsFinal[rank] < 0 {
			r.knowsFinal[rank] = c.w.now
		}
		if r.finalAt < 0 {
			r.finalAt = c.w.now
			r.finalState = to
		} else if to == node.StateSucceeded {
			r.finalState = to
		}
	}
}

func (c *checker) deliveriesOf(t *node.Task) int {
	if r := c.tasks[keyOf(t)]; r != nil {
		return len(r.deliveries)
	}
	return 0
}

// deliveryStarted checks S1, S2, S3, S4 and S5 for a delivery that starts now.
func (c *checker) deliveryStarted(s *simNode, d node.Delivery) int {
	now := c.w.now
	r := c.rec(d.Task)
	id := len(c.deliveries)
	c.deliveries = append(c.deliveries, delivery{task: r, node: s, inc: s.incarnation, attempt: d.Attempt, start: now, end: -1, list: d.Task.ListVersion, replicas: d.Task.Replicas})
	tasks := []string{d.Task.ID}

	if r.active > 0 { // S1
		other := c.deliveries[r.deliveries[len(r.deliveries)-1]]
		for _, di := range r.deliveries {
			if c.deliveries[di].end < 0 {
				other = c.deliveries[di]
			}
		}
		c.violate("S1", tasks, []node.NodeID{other.node.id, s.id}, "delivery of attempt %d by %s overlaps attempt %d by %s, in flight since %s",
			d.Attempt, s.id, other.attempt, other.node.id, time.Duration(other.start))
		c.checkMovedDuplicate(tasks, other, s, d)
	}
	if prev, ok := r.byAttempt[d.Attempt]; ok && prev != s { // S2
		c.violate("S2", tasks, []node.NodeID{prev.id, s.id}, "attempt %d delivered by both %s and %s", d.Attempt, prev.id, s.id)
	}
	r.byAttempt[d.Attempt] = s
	if d.Task.Delivery == node.AtMostOnce && len(r.deliveries) > 0 { // S4
		first := c.deliveries[r.deliveries[0]]
		c.violate("S4", tasks, []node.NodeID{first.node.id, s.id}, "at-most-once task delivered again (attempt %d by %s; first attempt %d by %s at %s)",
			d.Attempt, s.id, first.attempt, first.node.id, time.Duration(first.start))
	}
	if due := d.Task.ETA.Sub(epoch); now < int64(due)-c.skew { // S5
		c.violate("S5", tasks, []node.NodeID{s.id}, "delivery started at %s, before the due time %s minus the allowed skew %s",
			time.Duration(now), due, time.Duration(c.skew))
	}
	if r.success >= 0 { // S3
		if c.checkAfterSuccess(r, s, d.Attempt, d.Task.ListVersion) {
			c.checkMovedDuplicate(tasks, c.deliveries[r.success], s, d)
		}
	}
	c.deliveries[id].uncapped = c.checkQueue(r, s, d)
	c.checkQ6AtDelivery(s, d)
	r.deliveries = append(r.deliveries, id)
	r.active++
	return id
}

// deliveryInFlight takes a delivery by s that started before the checker could
// see it (before a recording's window, see RecordedEvent.Snapshot) and is in flight
// now: nothing is judged of its start, whose time is unknown, but later deliveries
// are judged against it (S1, S2, Q2) as against any in flight.
func (c *checker) deliveryInFlight(s *simNode, d node.Delivery) int {
	r := c.rec(d.Task)
	id := len(c.deliveries)
	c.deliveries = append(c.deliveries, delivery{task: r, node: s, inc: s.incarnation, attempt: d.Attempt, start: c.w.now, end: -1, list: d.Task.ListVersion, replicas: d.Task.Replicas})
	r.byAttempt[d.Attempt] = s
	r.deliveries = append(r.deliveries, id)
	r.active++
	if q := c.queues[r.task.Queue]; q != nil {
		q.active++
	}
	return id
}

// checkAfterSuccess decides whether a delivery starting after a success is excused
// (and reports whether it was a violation):
// it is only when the success's outcome had not reached a majority of replicas that
// still remember it when the delivery's claim won its quorum, because its holder
// crashed, paused or lost contact, or because a replica that knew lost its state.
//
// What counts is what was known when the grants were given, not when the delivery
// starts: a claimant that won its quorum before the success reached a majority may
// start after (it was paused with its last grant in its input buffer, say), and no
// replica could have stopped it.
func (c *checker) checkAfterSuccess(r *taskRec, s *simNode, attempt, list uint64) (violated bool) {
	succ := c.deliveries[r.success]
	holder := succ.node
	tasks := []string{r.task.ID}
	if g := c.grantTimes[grantKey{r.task.ID, attempt, s.id}]; g != nil && list == succ.list && c.quorum(r.task) > len(r.task.Replicas)/2 {
		// A replica that knew of the success when it granted this claim should have
		// refused it (at the same instant, the grant came first). What S3 judges is
		// what each granter knew as it granted (under one replica list): a replica
		// that granted before the success reached it cannot take its grant back, so
		// a majority that knew before the claim's last grant does not make a
		// violation by itself (seed 45 of big-cluster-swarm: a grant given before a
		// partition healed, the success's Done and the claim's last grant both held
		// back by it and delivered at the heal, the Done first).
		for rank, at := range g.byRank {
			if t := r.knowsFinal[rank]; t >= 0 && t < at {
				c.violate("S3", tasks, []node.NodeID{holder.id, s.id}, "attempt %d by %s started after %s's success at %s: %s knew of the success at %s and granted the attempt at %s",
					attempt, s.id, holder.id, time.Duration(r.successEnd), r.task.Replicas[rank], time.Duration(t), time.Duration(at))
				return true
			}
		}
	} else {
		// Under another replica list than the success's (a move: granters of the
		// new list are not tracked by the first list's ranks), with no grants known
		// (the naive protocol has none), or with claim quorums smaller than a
		// majority (which need not meet a knower: the small-quorum control): a
		// success a majority of the first list knew of before the claim won its
		// quorum, as two lists both deciding the task shows (M2 beside it:
		// checkMovedDuplicate). The knowers are counted among the replicas of the
		// success's list only: counted among every list's, a success its holder
		// could not tell (cut off, then stopped) and a later duplicate's own
		// success, known only to its holder on the next list, made two knowers of
		// three and an S3, though no majority of either list knew (seed 12 of
		// replace-joiner-cut-off).
		won := c.quorumAt(r, s, attempt)
		knowers := 0
		for _, id := range succ.replicas {
			if rank := r.rank(id); rank >= 0 && r.knowsFinal[rank] >= 0 && r.knowsFinal[rank] < won { // at the same instant, the grant came first (or the acceptor would have refused)
				knowers++
			}
		}
		if knowers >= len(succ.replicas)/2+1 {
			c.violate("S3", tasks, []node.NodeID{holder.id, s.id}, "attempt %d by %s started after %s's success at %s had reached a majority of replicas (before the claim won its quorum at %s)",
				attempt, s.id, holder.id, time.Duration(r.successEnd), time.Duration(won))
			return true
		}
	}
	var causes []string
	if c.crashedAt[holder.idx] >= succ.start {
		causes = append(causes, "holder crashed")
	}
	if c.pausedAt[holder.idx] >= succ.start || holder.paused {
		causes = append(causes, "holder paused")
	}
	for _, rep := range r.task.Replicas {
		if o := c.w.byID[rep]; o != holder && (c.w.blocked(holder.idx, o.idx) || c.cutSince(holder.idx, o.idx, succ.start)) {
			causes = append(causes, "holder partitioned")
			break
		}
	}
	if r.outcomeLost && c.keptSendingDone(r, holder, c.quorumAt(r, s, attempt)) {
		causes = append(causes, "outcome messages lost")
	}
	if r.outcomeHeld[holder.id] > c.quorumAt(r, s, attempt) {
		// A Done on its way when the claim won, held back by the network (a
		// message delay beyond the lease is, to the acceptors, a loss that
		// ends later: seed 36 of grant-sync-race, a Done 1.15 s late).
		causes = append(causes, "outcome messages held back")
	}
	if r.lostState != 0 {
		causes = append(causes, "a replica lost its state")
	}
	if len(causes) == 0 {
		c.violate("S3", tasks, []node.NodeID{holder.id, s.id}, "attempt %d by %s started after %s's success at %s with no crash, pause, partition or loss to excuse it",
			attempt, s.id, holder.id, time.Duration(r.successEnd))
		return true
	}
	c.excused = append(c.excused, Excuse{Kind: "duplicate", At: time.Duration(c.w.now), Task: r.task.ID, Node: s.id, Cause: strings.Join(causes, ", ")})
	return false
}

// rulesEnding notes, for S3's excuses, the nodes that rules cut off from another
// node, as the rules end.
func (c *checker) rulesEnding(rules ...*linkRule) {
	n := len(c.cutEnded)
	for _, r := range rules {
		for i := range n {
			for j := range n {
				if i != j && (r.blocks(i, j) || r.blocks(j, i)) {
					if c.cutEnded[i] == nil {
						c.cutEnded[i] = slices.Repeat([]int64{-1}, n)
					}
					c.cutEnded[i][j] = c.w.now
				}
			}
		}
	}
}

// cutSince reports whether a partition between nodes i and j ended at or after t.
func (c *checker) cutSince(i, j int, t int64) bool {
	return c.cutEnded[i] != nil && c.cutEnded[i][j] >= t
}

// keptSendingDone reports whether the success's holder did its part by time `at`:
// it was still sending Done then (within two of its longest resend intervals), or a
// majority of replicas had acknowledged it. Lost outcome messages excuse a duplicate
// only then: a holder that gives up early must not hide behind them.
func (c *checker) keptSendingDone(r *taskRec, holder *simNode, at int64) bool {
	if popcount(r.doneAcks[holder.id]) >= len(r.task.Replicas)/2+1 {
		return true
	}
	last, ok := r.doneSent[holder.id]
	return ok && last >= at-int64(c.doneWindow)
}

// quorumAt is when the claim that s delivers attempt under won its quorum: when the
// quorum-th of its acceptors granted it (as they sent their grants, to s itself
// included), or now when the grants are unknown (the naive protocol has none).
func (c *checker) quorumAt(r *taskRec, s *simNode, attempt uint64) int64 {
	g := c.grantTimes[grantKey{r.task.ID, attempt, s.id}]
	if q := c.quorum(r.task); g != nil && len(g.at) >= q {
		return g.at[q-1]
	}
	return c.w.now
}

// grantInfo is when each acceptor first granted one claim.
type grantInfo struct {
	ranks  uint64
	at     []int64       // in the order they were given
	byRank map[int]int64 // by the granter's rank
}

// nodeSent sees every message a node sends, to itself included, as it sends it
// (node.MessageObserver).
func (c *checker) nodeSent(s *simNode, m node.Message) {
	recs := c.byID[m.TaskID]
	if len(recs) == 0 {
		return
	}
	rank := recs[0].rank(s.id) // one ID, one placement
	if rank < 0 {
		return
	}
	c.noteAck(s, m)
	switch {
	case m.Type == node.MsgOutcome && m.State.Final():
		for _, r := range recs {
			if r.doneSent == nil {
				r.doneSent = map[node.NodeID]int64{}
			}
			r.doneSent[s.id] = c.w.now
		}
	case m.Type == node.MsgOutcomeResp && m.State.Final():
		for _, r := range recs {
			if r.doneAcks == nil {
				r.doneAcks = map[node.NodeID]uint64{}
			}
			r.doneAcks[m.To] |= 1 << rank
		}
	case m.Type == node.MsgClaimResp && m.Granted:
		k := grantKey{m.TaskID, m.Attempt, m.To}
		c.grants[k] |= 1 << rank
		g := c.grantTimes[k]
		if g == nil {
			g = &grantInfo{}
			c.grantTimes[k] = g
		}
		if g.ranks&(1<<rank) == 0 {
			g.ranks |= 1 << rank
			g.at = append(g.at, c.w.now)
			if g.byRank == nil {
				g.byRank = map[int]int64{}
			}
			g.byRank[rank] = c.w.now
		}
	}
}

func (c *checker) deliveryEnded(id int, status int) {
	d := &c.deliveries[id]
	d.end, d.status = c.w.now, status
	r := d.task
	r.active--
	if q := c.queues[r.task.Queue]; q != nil && !d.uncapped {
		q.active--
	}
	if status >= 200 && status < 300 && r.success < 0 {
		r.success, r.successEnd = id, c.w.now
	}
	if status < 200 || status >= 300 {
		d.fail = r.failures
		r.failures++
		bit := failBit(d.fail)
		if rank := r.rank(d.node.id); rank >= 0 && d.node.up && d.node.incarnation == d.inc {
			r.know[rank] |= bit // the result reaches only the incarnation that started it
		}
		for i := range r.know {
			if c.grants[grantKey{r.task.ID, d.attempt, d.node.id}]&(1<<i) != 0 {
				r.know[i] |= bit // it learns when the lease it gave runs out
			}
		}
	}
}

// outcomeHeldBack notes that the network holds an Outcome back until arrival, for
// S3's excuses.
func (c *checker) outcomeHeldBack(m node.Message, arrival int64) {
	if m.Type != node.MsgOutcome {
		return
	}
	for _, r := range c.byID[m.TaskID] {
		if r.outcomeHeld == nil {
			r.outcomeHeld = map[node.NodeID]int64{}
		}
		r.outcomeHeld[m.From] = max(r.outcomeHeld[m.From], arrival)
	}
}

func (c *checker) messageLost(m node.Message) {
	if m.Type == node.MsgStatus || m.Type == node.MsgStatusResp {
		c.statusLost[m.TaskID] = c.w.now
	}
	if m.Type == node.MsgOutcome {
		for _, r := range c.byID[m.TaskID] {
			r.outcomeLost = true
		}
	}
}

func (c *checker) paused(s *simNode) { c.pausedAt[s.idx] = c.w.now }

// crashed notes that s's process died; lost are the records it had appended that
// no sync confirmed (with durable storage: they may be gone). Without durable
// storage it forgot everything at once; with it, what it still knows is what its
// log gives back at the next start (recovered).
func (c *checker) crashed(s *simNode, lost []node.Record) {
	c.crashedAt[s.idx] = c.w.now
	c.leaseEnds[s.idx] = -1 // a dead process leads no more
	cut := map[string]bool{}
	for _, rec := range lost {
		if rec.Task != nil {
			cut[rec.Task.ID] = true
		}
		cut[rec.TaskID] = true
	}
	c.forgetKnowledge(s, s.disk == nil, cut)
	if s.disk == nil {
		c.forget(s, nil, nil)
		c.settingsForgotten(s, true)
	}
}

// forgetKnowledge: s no longer knows the failures (Q4) nor the grants it gave, of
// every task when all, or of the tasks in cut.
func (c *checker) forgetKnowledge(s *simNode, all bool, cut map[string]bool) {
	for _, r := range c.order {
		if rank := r.rank(s.id); rank >= 0 && (all || cut[r.task.ID]) {
			r.know[rank] = 0
		}
	}
	for k, ranks := range c.grants {
		if r := c.byID[k.task]; len(r) > 0 && (all || cut[k.task]) {
			if rank := r[0].rank(s.id); rank >= 0 {
				c.grants[k] = ranks &^ (1 << rank) // it no longer knows it gave them
			}
		}
	}
}

// recovered is called when s started on durable storage, once its log was loaded
// (and repaired, if it had to be): s now knows exactly what the loaded records say.
// A repair cut records on purpose: what s acknowledged before is not checked (S8),
// and it no longer knows what the cut records said.
func (c *checker) recovered(s *simNode) {
	repaired := s.disk.repaired
	s.disk.repaired = false
	if repaired {
		c.corrupted(s)
		c.forgetKnowledge(s, false, s.disk.cut)
	}
	idx := &s.disk.index
	stored := make(map[string]bool, len(idx.tasks))
	for k := range idx.tasks {
		stored[k.id] = true
	}
	final := make(map[string]bool, len(idx.outcomes))
	for id := range idx.outcomes {
		final[id] = true
	}
	c.forget(s, stored, final)
	c.settingsForgotten(s, repaired)
}

// forget makes s forget every task it does not hold in stored, and the final state
// of every task not in final.
func (c *checker) forget(s *simNode, stored, final map[string]bool) {
	for _, r := range c.order {
		rank := r.rank(s.id)
		if rank < 0 {
			continue
		}
		if r.held&(1<<rank) != 0 && !stored[r.task.ID] {
			r.lostState |= 1 << rank
			r.held &^= 1 << rank
		}
		if !final[r.task.ID] {
			r.knowsFinal[rank] = -1
		}
	}
}

// finish checks L1 and L2 once the run is over.
func (c *checker) finish() {
	w := c.w
	if c.livelocked {
		return // reported as such; every task would be "not final" too
	}
	c.finishSchedules(int64(w.sc.Duration))
	c.checkM2()
	agreed := map[string]bool{}
	for _, r := range c.order {
		if !agreed[r.task.ID] {
			agreed[r.task.ID] = true
			c.checkAgreement(r)
		}
	}
	for _, r := range c.order {
		if !r.acked || r.finalAt >= 0 {
			continue
		}
		q := len(r.task.Replicas)
		holders := 0
		for _, s := range w.nodes {
			if s.up && s.n != nil {
				if ts, ok := s.n.Task(r.task.ID); ok && ts.Task.Nonce == r.task.Nonce {
					holders++
				}
			}
		}
		lost := popcount(r.lostState)
		tasks := []string{r.task.ID}
		switch {
		case holders == 0 && lost >= q/2+1:
			c.excused = append(c.excused, Excuse{Kind: "lost", At: time.Duration(w.now), Task: r.task.ID, Cause: fmt.Sprintf("%d of %d replicas lost their state", lost, q)})
		case holders == 0:
			c.violate("L2", tasks, r.task.Replicas, "acknowledged task lost although only %d of %d replicas lost their state", lost, q)
		case lost > 0 && holders < c.quorum(r.task):
			c.excused = append(c.excused, Excuse{Kind: "stuck", At: time.Duration(w.now), Task: r.task.ID, Cause: fmt.Sprintf("%d of %d replicas hold it after state loss, fewer than a quorum", holders, q)})
		case c.stillFailing(r) > 0:
			c.excused = append(c.excused, Excuse{Kind: "failing", At: time.Duration(w.now), Task: r.task.ID,
				Cause: fmt.Sprintf("its worker failed all %d deliveries of the liveness phase, the last one ended %s before its end", c.stillFailing(r), time.Duration(w.now-c.lastEnd(r)))})
		case w.liveQueue != "" && r.task.Queue != w.liveQueue:
			// Not judged: see Options.liveQueue.
		default:
			st := "unknown"
			for _, s := range w.nodes {
				if s.up && s.n != nil {
					if ts, ok := s.n.Task(r.task.ID); ok && ts.Task.Nonce == r.task.Nonce {
						st = fmt.Sprintf("%s on %s (attempt %d, retries %d)", ts.State, s.id, ts.Attempt, ts.Retries)
						break
					}
				}
			}
			c.violate("L1", tasks, r.task.Replicas, "acknowledged task not final by the end of the liveness phase: %s", st)
		}
	}
}

// stillFailing returns how many deliveries of the liveness phase r had if it is
// pending only because its worker keeps failing, 0 otherwise: every delivery that
// ended in the liveness phase failed at the worker (an at-least-once task with no
// retry limit may rightly stay pending as long as that goes on), and the queue kept
// retrying at pace: the last delivery ended no longer before the end than the
// backoff after it plus a lease and the replicas' stagger, or one is in flight,
// started less than a lease ago. A task the cluster stopped trying is still an L1
// violation.
func (c *checker) stillFailing(r *taskRec) int {
	w := c.w
	q := c.queues[r.task.Queue]
	if !w.liveness || q == nil || !q.retryKnown || r.task.Delivery != node.AtLeastOnce {
		return 0
	}
	n, failures, inFlight := 0, 0, int64(-1)
	for _, di := range r.deliveries {
		d := c.deliveries[di]
		ok := d.end >= 0 && d.status >= 200 && d.status < 300
		switch {
		case d.end < 0:
			inFlight = max(inFlight, d.start)
		case ok:
			failures = 0
		default:
			failures++
		}
		if d.start >= w.livenessAt {
			if ok {
				return 0
			}
			n++
		}
	}
	lease := int64(w.sc.Cluster.Lease)
	pace := int64(backoff(q.retry, failures)) + lease + int64(len(r.task.Replicas))*int64(w.sc.Cluster.ReplicaOffset)
	switch {
	case n == 0:
		return 0
	case inFlight >= 0 && w.now-inFlight <= lease:
	case inFlight < 0 && w.now-c.lastEnd(r) <= pace:
	default:
		return 0
	}
	return n
}

// lastEnd is the true time r's last delivery ended (-1: none).
func (c *checker) lastEnd(r *taskRec) int64 {
	end := int64(-1)
	for _, di := range r.deliveries {
		end = max(end, c.deliveries[di].end)
	}
	return end
}

// checkAgreement is L3, at the end of the liveness phase: the replicas that are up
// and hold r's ID final hold the same final state. Excused: a cancel that raced the
// success (some replicas took the cancel while one delivered; kind "cancel-race"),
// and a disagreement after some replica lost its state (kind "lost").
//
// By ID, not by incarnation: a client that re-sends a named enqueue after a timeout
// may leave another incarnation of the name (another nonce) on a minority of the
// replicas, and a client asking that replica about the task must still hear what
// happened to it. Checked once per ID.
func (c *checker) checkAgreement(r *taskRec) {
	w := c.w
	byState := map[node.TaskState][]node.NodeID{}
	var states []node.TaskState
	for _, s := range w.nodes {
		if !s.up || s.n == nil {
			continue
		}
		if ts, ok := s.n.Task(r.task.ID); ok && ts.State.Final() {
			if byState[ts.State] == nil {
				states = append(states, ts.State)
			}
			byState[ts.State] = append(byState[ts.State], s.id)
		}
	}
	if len(states) < 2 {
		return
	}
	desc := fmt.Sprint(byState)
	lost := false
	for _, o := range c.byID[r.task.ID] {
		lost = lost || o.lostState != 0
	}
	switch {
	case len(states) == 2 && byState[node.StateCancelled] != nil && byState[node.StateSucceeded] != nil:
		c.excused = append(c.excused, Excuse{Kind: "cancel-race", At: time.Duration(w.now), Task: r.task.ID, Cause: "a cancel raced a successful delivery: " + desc})
	case len(states) == 2 && byState[node.StateCancelled] != nil && byState[node.StateUnknown] != nil:
		// The same race for an at-most-once task: a replica that granted a claim which
		// the cancel then stopped (the claimant learnt "cancelled" and never released
		// nor delivered) sees the grant's holder silent and ends it unknown, and keeps
		// it so (unknown gives way only to what a delivery did). Seen first on seed 9
		// of swarm-durable.
		c.excused = append(c.excused, Excuse{Kind: "cancel-race", At: time.Duration(w.now), Task: r.task.ID, Cause: "a cancel raced an at-most-once claim: " + desc})
	case lost:
		c.excused = append(c.excused, Excuse{Kind: "lost", At: time.Duration(w.now), Task: r.task.ID, Cause: "replicas disagree after a state loss: " + desc})
	case c.staleUnknown(r, byState[node.StateUnknown]):
		c.excused = append(c.excused, Excuse{Kind: "forgotten", At: time.Duration(w.now), Task: r.task.ID, Cause: "a copy the list in force left out ended unknown after the list forgot the task: " + desc})
	default:
		c.violate("L3", []string{r.task.ID}, r.task.Replicas, "replicas disagree on the final state: %s", desc)
	}
}

// staleUnknown reports whether every node in unknown holds a copy of r's task that
// the newest list a live node holds leaves out (a removed member's, or one a move
// replaced), after the task's dedup window: such a copy, back after the list in
// force forgot the task, hears only that it was forgotten and ends it unknown, as
// the design says a replica away longer than the window does (node/forget.go);
// nobody on its list remembers what the delivery did. A member of the list in
// force holding unknown is not excused (replace-by-stop, seeds 47 and 50, before
// replicas stopped taking a forgotten task's Outcome).
func (c *checker) staleUnknown(r *taskRec, unknown []node.NodeID) bool {
	if len(unknown) == 0 || !c.pastDedupWindow(r.task.ID) {
		return false
	}
	var list *node.Task
	for _, s := range c.w.nodes {
		if s.up && s.n != nil {
			if ts, ok := s.n.Task(r.task.ID); ok && (list == nil || ts.Task.ListVersion > list.ListVersion) {
				list = ts.Task
			}
		}
	}
	if list == nil || list.ListVersion == 0 {
		return false
	}
	for _, id := range unknown {
		if list.Rank(id) >= 0 {
			return false
		}
	}
	return true
}

func (c *checker) quorum(t *node.Task) int {
	if q := c.w.sc.Cluster.ClaimQuorum; q > 0 {
		return q
	}
	return len(t.Replicas)/2 + 1
}

func popcount(x uint64) int {
	n := 0
	for ; x != 0; x &= x - 1 {
		n++
	}
	return n
}

// pendingFinal counts acknowledged tasks not yet final anywhere.
func (c *checker) pendingFinal() int {
	n := 0
	for _, r := range c.order {
		if r.acked && r.finalAt < 0 {
			n++
		}
	}
	return n
}

// queueModel is what the checker knows of a queue: the settings its token node
// holds, a token bucket in true time that refills as fast as the token node's clock
// may run, deliveries in flight, and whether it is paused.
type queueModel struct {
	cfg         node.QueueConfig
	retry       node.RetryConfig // the scenario's; Q4 is not checked once changed
	retryKnown  bool
	tokens      float64
	last        int64
	active      int
	pausedSince int64   // true time every member acknowledged the pause; -1: running
	pausePut    *putRec // the client's pause behind pausedSince
	lastResume  int64   // true time the last resume was asked
	// After a settings change, permits the token node gave under the old settings
	// may still start, until graceUntil: the bucket keeps the old size till then.
	graceCap   float64
	graceUntil int64
	version    uint64 // of the setting cfg is
}

func (c *checker) queueChanged(id node.NodeID, set node.QueueSetting) {
	c.settingHeld(id, set)
	q := c.queues[set.Queue]
	if q == nil || node.TokenNode(c.members, set.Queue) != id {
		return
	}
	q.refill(c.w.now, c.driftRate, c.permitLag)
	q.graceCap, q.graceUntil = q.capacity(c.driftRate, c.permitLag), c.w.now+int64(c.permitLag)
	q.cfg, q.version = set.Config, set.Version
	if set.Config.Retry != q.retry {
		q.retryKnown = false
	}
}

// capacity is the model bucket's size: bucket_size plus what the rate adds while a
// start may lag its slot (checker.permitLag).
func (q *queueModel) capacity(drift float64, lag time.Duration) float64 {
	return float64(q.cfg.BucketSize) + q.cfg.Rate*(1+drift)*lag.Seconds()
}

func (q *queueModel) refill(now int64, drift float64, lag time.Duration) {
	capacity := q.capacity(drift, lag)
	if now < q.graceUntil {
		capacity = max(capacity, q.graceCap)
	}
	if q.cfg.Rate > 0 {
		q.tokens = min(capacity, q.tokens+q.cfg.Rate*(1+drift)*time.Duration(now-q.last).Seconds())
	}
	q.last = now
}

func (c *checker) queuePaused(queue string, put *putRec) {
	if q := c.queues[queue]; q != nil && put.issued > q.lastResume && q.pausedSince < 0 {
		q.pausedSince, q.pausePut = c.w.now, put
	}
}

func (c *checker) queueResumed(queue string) {
	if q := c.queues[queue]; q != nil {
		q.pausedSince, q.lastResume = -1, c.w.now
	}
}

// checkQueue checks the queue invariants for a delivery that starts now:
// Q1 rate (deliveries in any window T ≤ rate×(T + permit validity + SlotGrace) + bucket_size,
// cluster-wide, with the rate scaled by the clock drift bound), Q2
// concurrency (in flight ≤ max_concurrent), Q4 backoff (the gap after a failed
// delivery is at least the queue's backoff), Q5 pause (none while paused). It
// reports whether the delivery stays out of Q2's count (see delivery.uncapped).
func (c *checker) checkQueue(r *taskRec, s *simNode, d node.Delivery) (uncapped bool) {
	q := c.queues[r.task.Queue]
	if q == nil {
		return false
	}
	tasks := []string{r.task.ID}
	now := c.w.now
	if q.pausedSince >= 0 && q.pausePut != nil && q.pausePut.lostAt >= 0 {
		// A majority of members lost the pause (memory storage, or logs cut) before
		// they learnt it again: it is gone, like a task all of whose replicas forgot it.
		c.excused = append(c.excused, Excuse{Kind: "settings", At: time.Duration(now), Task: r.task.ID, Node: s.id,
			Cause: fmt.Sprintf("queue %q was paused, but a majority of members lost the pause at %s", r.task.Queue, time.Duration(q.pausePut.lostAt))})
	} else if q.pausedSince >= 0 {
		c.violate("Q5", tasks, []node.NodeID{s.id}, "delivery started on %s while queue %q is paused (since %s)", s.id, r.task.Queue, time.Duration(q.pausedSince))
	}
	// Once a node holds a newer setting that lifts a limit, starts are not held to
	// the old limit, which the model keeps until the token node it knows learns the
	// change: the node starts without asking, or is the token node of a roster the
	// checker's does not match yet and permits freely, as the client asked (Q1 in
	// settings-flip-restarts before this: a token node paused through the PUT that
	// took the rate off). Asked of every node, so only of a queue with a limit.
	var view node.QueueSetting
	if s.n != nil { // the checker's own tests start deliveries on bare nodes
		view, _ = s.n.QueueSetting(r.task.Queue)
	}
	var rateLifted, capLifted bool
	if q.cfg.Rate > 0 || q.cfg.MaxConcurrent > 0 {
		rateLifted, capLifted = c.limitsLifted(r.task.Queue, q.version)
	}
	if q.cfg.Rate > 0 && !rateLifted {
		q.refill(now, c.driftRate, c.permitLag)
		if q.tokens < 1-1e-9 {
			c.violate("Q1", tasks, []node.NodeID{s.id}, "queue %q started more than rate %g/s with bucket %d allows", r.task.Queue, q.cfg.Rate, q.cfg.BucketSize)
		}
		q.tokens = max(q.tokens-1, 0)
	}
	// A lowered cap binds the starts of nodes that know it, and every start once the
	// PUT that set it was answered 200; until then a node that has not learnt it
	// starts without asking the token node, as under the setting before, and that
	// start does not count against the cap (Q2 in settings-flip-restarts before
	// this: a node paused through the PUT resumed and delivered before it learnt it).
	if view.Config.MaxConcurrent == 0 {
		if p := c.settled(r.task.Queue, now); p == nil || p.setting.Config.MaxConcurrent == 0 {
			uncapped = true
		}
	}
	if !uncapped && q.cfg.MaxConcurrent > 0 && !capLifted && q.active >= q.cfg.MaxConcurrent {
		c.violate("Q2", tasks, []node.NodeID{s.id}, "queue %q has %d deliveries in flight, max_concurrent is %d", r.task.Queue, q.active+1, q.cfg.MaxConcurrent)
	}
	if !uncapped {
		q.active++
	}
	if q.retryKnown && r.task.Delivery == node.AtLeastOnce {
		c.checkRetry(r, s, q.retry)
	}
	return uncapped
}

// limitsLifted reports whether a node that is up holds a setting of queue newer
// than version (the model's) without a rate, and one without a max_concurrent.
func (c *checker) limitsLifted(queue string, version uint64) (rate, concurrency bool) {
	for _, o := range c.w.nodes {
		if !o.up || o.n == nil {
			continue
		}
		if v, _ := o.n.QueueSetting(queue); v.Version > version {
			rate = rate || v.Config.Rate == 0
			concurrency = concurrency || v.Config.MaxConcurrent == 0
		}
	}
	return rate, concurrency
}

// checkRetry is Q4 for a delivery of an at-least-once task that starts now: after k
// failed deliveries it starts no earlier than backoff(k) after the last one ended
// (less 2 × the drift bound), and none starts once the retry limits are used up
// (the task's age counted when the delivery starts, as the holder does: a retry
// whose backoff ran past task_age_limit is not made).
//
// Failures count from the last success (what follows a success is a duplicate, S3's
// business), and only those the starting node can know of (taskRec.know): the
// others were forgotten by every replica that could have told it, in crashes without
// durable storage or records cut from a log. The backoff and the limits are then
// counted without them, and a start that would have broken them is an excuse of kind
// "forgotten".
func (c *checker) checkRetry(r *taskRec, s *simNode, retry node.RetryConfig) {
	now := c.w.now
	var known uint64
	if rank := r.rank(s.id); rank >= 0 {
		known = r.know[rank]
	}
	failures, forgotten, lastEnd, lastForgotten := 0, 0, int64(-1), int64(-1)
	for _, di := range r.deliveries {
		pd := c.deliveries[di]
		switch {
		case pd.end < 0:
		case pd.status >= 200 && pd.status < 300:
			failures, forgotten, lastEnd, lastForgotten = 0, 0, -1, -1
		case known&failBit(pd.fail) == 0:
			forgotten++
			lastForgotten = max(lastForgotten, pd.end)
		default:
			failures++
			lastEnd = max(lastEnd, pd.end)
		}
	}
	tasks := []string{r.task.ID}
	if failures > 0 {
		gap := int64(backoff(retry, failures))
		if now < lastEnd+gap-2*c.skew {
			c.violate("Q4", tasks, []node.NodeID{s.id}, "retry after %d failures started %s after the last failure; the backoff is %s",
				failures, time.Duration(now-lastEnd), time.Duration(gap))
			return
		}
		if exhausted(retry, failures, now-int64(r.task.Created.Sub(epoch)), 2*c.skew) {
			c.violate("Q4", tasks, []node.NodeID{s.id}, "delivery after %d failures, over the retry limits (task_retry_limit %d, task_age_limit %s)",
				failures, retry.TaskRetryLimit, retry.TaskAgeLimit)
			return
		}
	}
	if all := failures + forgotten; forgotten > 0 && now < max(lastEnd, lastForgotten)+int64(backoff(retry, all))-2*c.skew {
		c.excused = append(c.excused, Excuse{Kind: "forgotten", At: time.Duration(now), Task: r.task.ID, Node: s.id,
			Cause: fmt.Sprintf("%d of %d failures not counted: every replica that knew of them lost its state since", forgotten, all)})
	}
}

func failBit(j int) uint64 { return 1 << min(j, 63) }

// checkDeath is Q4's other half, for the first node that ends an at-least-once task
// dead (a node adopts dead only from one that holds it, so the first one decided
// it): a task dies only once its retry limits are used up, by the decider's own
// count of failures (every limit that is set exceeded: more than task_retry_limit
// failures, an age past task_age_limit on its clock). White-box, like S8's check of
// the acceptor: the decider's count is read from the node (node.Node.Task, a read
// made while the node reports the change, not an input), since failures the checker
// cannot see (leases that ran out) count too. At-most-once tasks die at their one
// failed delivery, whatever the limits.
func (c *checker) checkDeath(s *simNode, r *taskRec) {
	q := c.queues[r.task.Queue]
	if q == nil || !q.retryKnown || r.task.Delivery != node.AtLeastOnce || s.n == nil {
		return
	}
	st, ok := s.n.Task(r.task.ID)
	if !ok {
		return
	}
	age := s.localNow().Sub(r.task.Created)
	c.checkDeathCount(s, r, q.retry, st.Retries, age)
}

func (c *checker) checkDeathCount(s *simNode, r *taskRec, retry node.RetryConfig, retries int, age time.Duration) {
	if retry.TaskRetryLimit == 0 && retry.TaskAgeLimit == 0 || exhausted(retry, retries, int64(age), 0) {
		return
	}
	c.violate("Q4", []string{r.task.ID}, []node.NodeID{s.id}, "%s ended the task dead after %d failures at age %s, before the retry limits were used up (task_retry_limit %d, task_age_limit %s)",
		s.id, retries, age, retry.TaskRetryLimit, retry.TaskAgeLimit)
}

// grantKey names one claim: the attempt of a task claimed by holder.
type grantKey struct {
	task    string
	attempt uint64
	holder  node.NodeID
}

// sent sees every message a node hands to the network, before faults decide its
// fate, and returns what the receiver learns from it if it arrives (see learn).
func (c *checker) sent(from *simNode, m node.Message) []uint64 {
	recs := c.byID[m.TaskID]
	if len(recs) == 0 {
		return nil
	}
	if m.Task != nil && m.Task.ListVersion != 0 {
		for _, r := range recs {
			if r.task.Nonce == m.Task.Nonce {
				r.addList(m.Task)
			}
		}
	}
	switch m.Type {
	case node.MsgRelease, node.MsgClaimResp, node.MsgOutcome, node.MsgStore, node.MsgNaivePushBack:
	default:
		return nil
	}
	know := make([]uint64, len(recs))
	for i, r := range recs {
		if rank := r.rank(from.id); rank >= 0 {
			know[i] = r.know[rank]
		}
	}
	return know
}

// learn: to handled a message that carried know (from sent). A replica that does
// not hold the task drops what the message says. A Store, which may give the task
// (back) to it, is learnt after the node took it (receive), and only if it then
// holds the task: a node that refused it (in its recovery wait, say) learnt nothing
// (seed 160 of corruption-rolling-r5 with a restart that waited out the backoff: a
// refused Store was taken to carry two failures no replica still knew, and a
// correct retry was reported as early).
func (c *checker) learn(to *simNode, m node.Message, know []uint64) {
	for i, r := range c.byID[m.TaskID] {
		if rank := r.rank(to.id); rank >= 0 && i < len(know) && r.held&(1<<rank) != 0 {
			r.know[rank] |= know[i]
		}
	}
}

// backoff is the queue's delay after k failed deliveries (k >= 1), computed apart from
// node.RetryConfig.Backoff so that a bug there cannot hide in Q4. App Engine's rule:
// min_backoff doubles for each of the first max_doublings retries, then grows by
// min_backoff × 2^max_doublings per retry; never above max_backoff.
func backoff(r node.RetryConfig, k int) time.Duration {
	minB, maxB := float64(r.MinBackoff), float64(r.MaxBackoff)
	var d float64
	if k-1 <= r.MaxDoublings {
		d = minB * math.Pow(2, float64(k-1))
	} else {
		d = minB * math.Pow(2, float64(r.MaxDoublings)) * float64(k-r.MaxDoublings)
	}
	return time.Duration(math.Min(d, maxB))
}

// exhausted reports whether k failures, the last at age (true time since the task was
// created), used up the retry limits: every limit that is set is exceeded, the age by
// more than slack (the clocks that measured it may be off).
func exhausted(r node.RetryConfig, k int, age, slack int64) bool {
	limit, ageLimit := r.TaskRetryLimit, int64(r.TaskAgeLimit)
	if limit == 0 && ageLimit == 0 {
		return false
	}
	return (limit == 0 || k > limit) && (ageLimit == 0 || age > ageLimit+slack)
}

// checkLimits is S7: no node that is up holds more pending tasks than
// cluster.max_pending, or of one queue than cluster.max_queue_pending. Run after every
// event when a limit is set (the counters are O(1); S6 checks them against a recount).
func (w *world) checkLimits() {
	c := w.sc.Cluster
	for _, s := range w.nodes {
		if !s.up || s.n == nil {
			continue
		}
		for _, q := range w.sc.Workload.Queues {
			total, inQueue := s.n.PendingCount(q.Name)
			if c.MaxPending > 0 && total > c.MaxPending {
				w.check.violate("S7", nil, []node.NodeID{s.id}, "node holds %d pending tasks, over max_pending %d", total, c.MaxPending)
			}
			if c.MaxQueuePending > 0 && inQueue > c.MaxQueuePending {
				w.check.violate("S7", nil, []node.NodeID{s.id}, "node holds %d pending tasks of queue %q, over max_queue_pending %d", inQueue, q.Name, c.MaxQueuePending)
			}
		}
	}
}

// S8: with durable storage, a replica keeps across a crash what it acknowledged. An
// acknowledgement is sent only once what it stands on is synced, and a restart
// rebuilds the node from its log: after a restart the node holds every task whose
// Store it acknowledged, every final state it acknowledged, and, for each task, the
// last grant it acknowledged (same attempt, same holder, not released) unless that
// grant's release reached it or its lease may have run out. A corrupt fault loses
// synced records on purpose: what the node acknowledged before it is not checked.

// ackLog is what one node acknowledged since its last corruption.
type ackLog struct {
	stores map[string]bool       // tasks whose Store it acknowledged
	finals map[string]bool       // tasks whose final state it acknowledged
	grants map[string]ackedGrant // the last grant it acknowledged, per task
	// releases: the Releases that reached the node (a Release may overtake the
	// acknowledgement of the grant it releases).
	releases map[grantKey]bool
}

type ackedGrant struct {
	attempt uint64
	holder  node.NodeID
	at      int64 // true time of the first acknowledgement
}

func newAckLog() *ackLog {
	return &ackLog{stores: map[string]bool{}, finals: map[string]bool{}, grants: map[string]ackedGrant{}, releases: map[grantKey]bool{}}
}

// noteAck records what m, sent by s, acknowledges.
func (c *checker) noteAck(s *simNode, m node.Message) {
	if s.disk == nil {
		return
	}
	a := c.acks[s.idx]
	switch {
	case m.Type == node.MsgStoreResp && m.Reject == node.RejectNone:
		a.stores[m.TaskID] = true
	case m.Type == node.MsgOutcomeResp && m.State.Final():
		a.finals[m.TaskID] = true
	case m.Type == node.MsgClaimResp && m.Granted:
		if g, ok := a.grants[m.TaskID]; !ok || m.Attempt > g.attempt {
			a.grants[m.TaskID] = ackedGrant{attempt: m.Attempt, holder: m.To, at: c.w.now}
		}
	}
}

// releaseReached notes that a Release reached s (S8 need not find the grant it
// releases).
func (c *checker) releaseReached(s *simNode, m node.Message) {
	c.acks[s.idx].releases[grantKey{m.TaskID, m.Attempt, m.From}] = true
}

// pastDedupWindow reports whether every task with this ID finished long enough ago
// that a node may have forgotten it (its dedup window is over on any clock).
func (c *checker) pastDedupWindow(id string) bool {
	recs := c.byID[id]
	for _, r := range recs {
		if r.finalAt < 0 || c.w.now < r.finalAt+int64(c.dedupWindow)-c.skew {
			return false
		}
	}
	return len(recs) > 0
}

// corrupted forgets what s acknowledged: a corrupt fault loses it on purpose.
func (c *checker) corrupted(s *simNode) { c.acks[s.idx] = newAckLog() }

// restarted checks S8 on a node that just started again after a crash.
func (c *checker) restarted(s *simNode) {
	if s.disk == nil || s.n == nil {
		return
	}
	a := c.acks[s.idx]
	nodes := []node.NodeID{s.id}
	// A grant acknowledged this long ago may have run out on the node's clock (it
	// then ends as a failure at the next claim).
	lease := int64(float64(c.w.sc.Cluster.Lease.D()) / (1 + c.driftRate))
	// What is reported once is dropped: the next restart need not report it again.
	for _, id := range sortedKeys(a.stores) {
		if c.pastDedupWindow(id) {
			delete(a.stores, id) // forgotten after its dedup window, as it should be
			continue
		}
		if _, ok := s.n.Task(id); !ok {
			c.violate("S8", []string{id}, nodes, "%s acknowledged storing the task and does not hold it after restarting", s.id)
			delete(a.stores, id)
		}
	}
	for _, id := range sortedKeys(a.finals) {
		if c.pastDedupWindow(id) {
			delete(a.finals, id)
			continue
		}
		if st, ok := s.n.Task(id); !ok || !st.State.Final() {
			c.violate("S8", []string{id}, nodes, "%s acknowledged the task's final state and does not hold it after restarting", s.id)
			delete(a.finals, id)
		}
	}
	for _, id := range sortedKeys(a.grants) {
		g := a.grants[id]
		st, ok := s.n.Task(id)
		if a.releases[grantKey{id, g.attempt, g.holder}] || c.w.now-g.at >= lease || (ok && st.State.Final()) {
			continue
		}
		acc, _ := s.n.Acceptor(id)
		if ok && acc.Promised > g.attempt {
			// A later attempt granted since, whose answer never went out (its record
			// was synced, its answer waited for the sync, and the process ended
			// first: a graceful stop closes the log, so seed 27 of graceful-stops):
			// it refuses every attempt up to its own, the acknowledged one included.
			continue
		}
		if !ok || acc.Promised != g.attempt || acc.Holder != g.holder || acc.Released {
			c.violate("S8", []string{id}, nodes, "%s granted attempt %d to %s at %s and after restarting holds attempt %d of %q (released %t)",
				s.id, g.attempt, g.holder, time.Duration(g.at), acc.Promised, acc.Holder, acc.Released)
			delete(a.grants, id)
		}
	}
}

// checkM2, at the end of a run in which a member was removed: every acknowledged
// task that is not final has a majority of its replica list in force (the newest
// list a live node holds: node/move.go) on live members, that is nodes up that
// the cluster still lists.
func (c *checker) checkM2() {
	w := c.w
	if !w.removals {
		return
	}
	for _, r := range c.order {
		if !r.acked || r.finalAt >= 0 {
			continue
		}
		var list *node.Task
		for _, s := range w.nodes {
			if s.up && s.n != nil {
				if ts, ok := s.n.Task(r.task.ID); ok && ts.Task.Nonce == r.task.Nonce && (list == nil || ts.Task.ListVersion > list.ListVersion) {
					list = ts.Task
				}
			}
		}
		if list == nil {
			continue // L2 judges a lost task
		}
		live := 0
		for _, id := range list.Replicas {
			if s := w.byID[id]; s != nil && s.up && s.member() {
				live++
			}
		}
		if live < len(list.Replicas)/2+1 {
			c.violate("M2", []string{r.task.ID}, list.Replicas, "only %d of the %d replicas of its list in force (version %d) are live members after the removals", live, len(list.Replicas), list.ListVersion)
		}
	}
}

// checkMovedDuplicate reports M2 beside a duplicate (S1, S3) whose two deliveries
// were claimed under different replica lists: a reconfiguration let both happen.
func (c *checker) checkMovedDuplicate(tasks []string, prev delivery, s *simNode, d node.Delivery) {
	if prev.list != d.Task.ListVersion {
		c.violate("M2", tasks, []node.NodeID{prev.node.id, s.id}, "delivered under two replica lists: attempt %d by %s under list version %d, attempt %d by %s under version %d",
			prev.attempt, prev.node.id, prev.list, d.Attempt, s.id, d.Task.ListVersion)
	}
}
