package main

// Edit is one exact-text substitution in a file of the module. Old must occur exactly
// once in the file; New must then occur exactly once in the edited file, so that the
// edit can be reverted (the catalogue test checks both against the current sources).
type Edit struct {
	File string // relative to the module root, slash-separated: "node/claim.go"
	Old  string
	New  string
}

// Mutant is one slip a careful engineer could make in node/, as one or more edits.
type Mutant struct {
	Name  string // short, unique, kebab-case
	Desc  string // one line: the slip
	Edits []Edit
	// Equivalent, when not empty, says why no invariant could see the change: the
	// mutant is still run (a catch would refute the argument) but not scored.
	Equivalent string
}

func edit(file, old, new string) []Edit { return []Edit{{File: file, Old: old, New: new}} }

// Catalogue is every mutant, in the order they are run and reported. Anchors are
// short and distinctive because node/ changes under them: a lost anchor is reported,
// never skipped.
var Catalogue = []Mutant{
	// --- claimant: delivery and its deadline --------------------------------------
	{
		Name:  "no-lease-recheck",
		Desc:  "deliver skips the lease re-check: a claim whose lease a pause ate is delivered anyway",
		Edits: edit("node/claim.go", "\tif deadline <= 0 {\n", "\tif false {\n"),
	},
	{
		Name:  "deadline-not-cut-by-lease",
		Desc:  "the webhook deadline is the queue's dispatch deadline, not cut to what is left of the lease",
		Edits: edit("node/claim.go", "deadline := min(q.DispatchDeadline, leaseEnd.Sub(now))", "deadline := q.DispatchDeadline"),
	},
	{
		Name:  "deadline-no-drift",
		Desc:  "the claimant's lease end has no drift allowance (claimSent + lease, not lease - max_clock_drift)",
		Edits: edit("node/claim.go", "e.claimSent.Add(n.cfg.Lease - n.cfg.MaxClockDrift)", "e.claimSent.Add(n.cfg.Lease)"),
	},
	{
		Name:  "quorum-half",
		Desc:  "the claim quorum is R/2 instead of R/2+1 (one grant of three fires)",
		Edits: edit("node/node.go", "\treturn len(t.Replicas)/2 + 1\n", "\treturn len(t.Replicas) / 2\n"),
	},
	{
		Name:  "no-pause-check-in-deliver",
		Desc:  "deliver does not look at the queue's pause: a claim won as the pause lands is delivered",
		Edits: edit("node/claim.go", "\tif n.queuePaused(e.task.Queue) {\n\t\tn.abandonClaim(", "\tif false {\n\t\tn.abandonClaim("),
	},
	{
		Name:  "claim-ignores-seen",
		Desc:  "a new claim bids max(promised, floor)+1, ignoring the higher attempts it heard of (seen)",
		Edits: edit("node/claim.go", "x.claiming = max(x.promised, e.floor, x.seen) + 1", "x.claiming = max(x.promised, e.floor) + 1"),
	},
	{
		Name:  "stagger-from-rank-one",
		Desc:  "the replica stagger counts from rank 1: rank 0's timer goes off one offset before the ETA",
		Edits: edit("node/node.go", "at := e.nextETA.Add(time.Duration(e.rank) * n.cfg.ReplicaOffset)", "at := e.nextETA.Add(time.Duration(e.rank-1) * n.cfg.ReplicaOffset)"),
	},

	// --- acceptor: grants ----------------------------------------------------------
	{
		Name:  "grant-during-lease",
		Desc:  "an acceptor grants a later attempt while the previous holder's lease is live",
		Edits: edit("node/claim.go", "\treturn n.leaseExpired(e)\n", "\treturn true // lease not checked\n"),
	},
	{
		Name:  "acceptor-lease-early",
		Desc:  "the acceptor's lease expires a drift early (grant time + lease - max_clock_drift)",
		Edits: edit("node/claim.go", "e.ext().leaseEnd = now.Add(m.Lease)", "e.ext().leaseEnd = now.Add(m.Lease - n.cfg.MaxClockDrift)"),
	},
	{
		Name:  "holder-asks-again",
		Desc:  "grantable shortcut: a later attempt is granted at once to the holder that asks again",
		Edits: edit("node/claim.go", "if e.promised == 0 || e.released {", "if e.promised == 0 || e.released || e.holder == from {"),
	},
	{
		Name:  "regrant-without-round-check",
		Desc:  "the same attempt is granted again to its holder without checking the claim round (a restarted holder's new round passes)",
		Edits: edit("node/claim.go", "m.From == e.holder && !e.released && m.Promised == e.holderRound && m.Promised != 0:", "m.From == e.holder && !e.released:"),
	},
	{
		Name:  "no-pushback-on-grant",
		Desc:  "granting another node's claim does not push this replica's own timer past the lease",
		Edits: edit("node/claim.go", "if m.From != n.cfg.ID && e.timerKind == timerFire {", "if false && m.From != n.cfg.ID && e.timerKind == timerFire {"),
		Equivalent: "push-back only saves messages: a replica whose timer goes off during a lease it granted claims " +
			"an attempt above the holder's, which its own acceptor and every acceptor of the holder's quorum refuse " +
			"(the lease is live; quorums intersect), with the lease's remainder as when to come back; its Release " +
			"of the refused round only raises floors. Attempt numbers skip values (allowed) and a retry may wait " +
			"up to a lease longer, which no invariant bounds more tightly than L1",
	},
	{
		Name:  "release-frees-others-grant",
		Desc:  "a Release of attempt a frees the grant of a whoever sent it, not only the holder of the grant (in the round that won it)",
		Edits: edit("node/claim.go", "case a == e.promised && e.holder == from && round == e.holderRound && !e.released:", "case a == e.promised && !e.released:"),
	},
	{
		Name:  "release-ignores-round",
		Desc:  "a Release frees its sender's grant of that attempt whatever claim round it names (a restarted holder's refused round frees its earlier incarnation's live grant)",
		Edits: edit("node/claim.go", "case a == e.promised && e.holder == from && round == e.holderRound && !e.released:", "case a == e.promised && e.holder == from && !e.released:"),
	},
	{
		Name:  "grant-ignores-floor",
		Desc:  "an acceptor grants an attempt at or below its floor (released without its grant, or claimed before it forgot the task)",
		Edits: edit("node/claim.go", "case m.Attempt <= max(e.promised, e.floor) || !n.grantable(e, m.From):", "case m.Attempt <= e.promised || !n.grantable(e, m.From):"),
	},
	{
		Name:  "grant-ignores-backoff",
		Desc:  "an acceptor grants a claim that comes before the failed delivery's backoff is over (notBefore not checked)",
		Edits: edit("node/claim.go", "case n.now().Before(e.notBefore.Add(-n.cfg.MaxClockDrift)) && m.Reason != moveClaim:", "case false:"),
	},
	{
		Name:  "regrant-acked-before-sync",
		Desc:  "a repeated claim round is granted again at once, before the first grant's record is synced",
		Edits: edit("node/claim.go", "n.sendAfterSync(resp)", "n.send(resp) // at once, not after the sync"),
	},
	{
		Name:  "store-back-at-most-once",
		Desc:  "a replica that answers unknown is given the task back even when it is at-most-once",
		Edits: edit("node/claim.go", "if m.Reject == RejectUnknown && e.task.Delivery == AtLeastOnce {", "if m.Reject == RejectUnknown && e.task != nil {"),
	},

	// --- outcomes ------------------------------------------------------------------
	{
		Name: "at-most-once-timeout-retried",
		Desc: "an at-most-once delivery that got no answer is retried like a failure, not ended unknown",
		Edits: edit("node/claim.go",
			"case e.task.Delivery == AtMostOnce && r.Status == 0:\n\t\tn.finish(e, StateUnknown, 0)\n\tcase e.task.Delivery == AtMostOnce:",
			"case e.task.Delivery == AtMostOnce && r.Status != 0:"),
	},
	{
		Name:  "done-one-ack",
		Desc:  "the finisher stops resending Done after one acknowledgement (its own), not a majority",
		Edits: edit("node/claim.go", "e.timerKind == timerOutcome && bits.OnesCount64(e.outcomeAcks) >= outcomeAcksNeeded(e)", "e.timerKind == timerOutcome && e.outcomeAcks != 0"),
	},
	{
		Name:  "ack-adopted-before-sync",
		Desc:  "an adopted final outcome is acknowledged before its record is synced",
		Edits: edit("node/claim.go", "\tn.persist(then, Record{Kind: RecOutcome", "\tn.afterSynced(then)\n\tn.persist(nil, Record{Kind: RecOutcome"),
	},
	{
		Name:  "majority-half",
		Desc:  "majority() is R/2: enqueues are acknowledged, and Done stops, after one replica of three",
		Edits: edit("node/node.go", "func majority(t *Task) int { return len(t.Replicas)/2 + 1 }", "func majority(t *Task) int { return len(t.Replicas) / 2 }"),
	},
	{
		Name:  "done-counts-forgetful-replica",
		Desc:  "an OutcomeResp counts towards Done's majority even when the replica does not hold the task final",
		Edits: edit("node/claim.go", "if e == nil || !e.state.Final() || !m.State.Final() {", "if e == nil || !e.state.Final() {"),
		Equivalent: "every OutcomeResp a finisher can get says final: handleOutcome answers only after " +
			"the replica holds the task final (it creates a final entry for a task it lost), and Cancel's " +
			"answers are taken by cancelAnswered first",
	},

	// --- retries -------------------------------------------------------------------
	{
		Name:  "backoff-ignores-max-doublings",
		Desc:  "Backoff keeps doubling past max_doublings",
		Edits: edit("node/config.go", "if i <= r.MaxDoublings {", "if true {"),
	},
	{
		Name:  "backoff-one-short",
		Desc:  "after k failures the retry waits the backoff for k-1",
		Edits: edit("node/claim.go", "max(retry.Backoff(e.retries), r.RetryAfter)", "max(retry.Backoff(e.retries-1), r.RetryAfter)"),
	},
	{
		Name:  "retry-limit-off-by-one",
		Desc:  "a task dies after task_retry_limit failures instead of after more than that",
		Edits: edit("node/config.go", "retries <= r.TaskRetryLimit {", "retries < r.TaskRetryLimit {"),
	},
	{
		Name:  "expired-lease-not-counted",
		Desc:  "an attempt whose lease ran out on the acceptor with no outcome is not counted as a failure",
		Edits: edit("node/claim.go", "\te.countFailure(e.promised)\n", "\t_ = e.promised // mutant: not counted\n"),
	},
	{
		Name:  "failures-merged-by-max",
		Desc:  "two failure counts merge with max, not by the union of the failures they locate (a failure ours does not know is lost)",
		Edits: edit("node/failures.go", "retries: max(bits.OnesCount64(union)+unlocated, c.retries, o.retries),", "retries: max(c.retries, o.retries+0*unlocated),"),
	},
	{
		Name:  "failure-below-highest-ignored",
		Desc:  "a late failure of an attempt below the highest failed one known is not counted, although the window shows it is new",
		Edits: edit("node/failures.go", "\tcase c.bits&(1<<(c.failed-a)) != 0:\n", "\tcase a < c.failed || c.bits&(1<<(c.failed-a)) != 0:\n"),
	},
	{
		Name:  "holder-ignores-known-backoff",
		Desc:  "the holder of a quorum delivers before the backoff of a failure it heard of while claiming is over",
		Edits: edit("node/claim.go", "if e.task.Delivery == AtLeastOnce && now.Before(e.notBefore.Add(-n.cfg.MaxClockDrift)) {", "if false {"),
	},
	{
		Name:  "no-exhaustion-check-in-deliver",
		Desc:  "the holder of a quorum delivers although the failures counted elsewhere used up the retry limits",
		Edits: edit("node/claim.go", "if e.task.Delivery == AtLeastOnce && e.retries > 0 && q.Retry.Exhausted(", "if false && e.task.Delivery == AtLeastOnce && e.retries > 0 && q.Retry.Exhausted("),
	},

	{
		Name:  "unknown-not-replaced",
		Desc:  "a replica holding an at-most-once task unknown keeps it so when another answers with the delivery's outcome",
		Edits: edit("node/claim.go", "return from == StateUnknown && (to == StateSucceeded || to == StateDead)", "return false // mutant: unknown kept"),
	},

	// --- recovery after a loss ---------------------------------------------------------
	{
		Name:  "no-recovery-wait",
		Desc:  "a restart without durable storage sets no recovery deadline",
		Edits: edit("node/node.go", "n.recoverUntil = n.bootTime.Add(n.cfg.RecoveryWait)", "n.recoverUntil = time.Time{}"),
	},
	{
		Name:  "learn-old-task-in-recovery",
		Desc:  "handleStore learns a task created before the node forgot, during the recovery wait",
		Edits: edit("node/node.go", "if n.recovering() && !n.bornAfterForgetting(t) {", "if false {"),
	},
	{
		Name:  "no-recovery-guard-in-claim",
		Desc:  "handleClaim grants during the recovery wait for a task that may predate the loss",
		Edits: edit("node/claim.go", "case n.recovering() && !n.bornAfterForgetting(e.task):", "case false:"),
	},
	{
		Name:  "no-amnesiac-marking",
		Desc:  "after a reported loss, at-most-once tasks from before it are not marked amnesiac",
		Edits: edit("node/node.go", "e.ext().amnesiac = e.task.Delivery == AtMostOnce &&", "e.ext().amnesiac = false && e.task.Delivery == AtMostOnce &&"),
	},
	{
		Name:  "born-after-no-drift",
		Desc:  "bornAfterForgetting has no drift allowance: Created >= forgotAt is taken as surely after",
		Edits: edit("node/claim.go", "!t.Created.Before(n.forgotAt.Add(n.cfg.MaxClockDrift))", "!t.Created.Before(n.forgotAt)"),
	},
	{
		Name:  "no-forget-floor",
		Desc:  "a task learnt after a loss gets no attempt floor: attempts claimed before the node forgot may be granted again",
		Edits: edit("node/node.go", "if n.recoverUntil.IsZero() || n.bornAfterForgetting(t) {", "if true {"),
	},
	{
		Name:  "forget-mark-ignored",
		Desc:  "the forget watermark is not consulted: a replica stores again a task it finished and forgot after its dedup window",
		Edits: edit("node/forget.go", "return !n.forgetMark.IsZero() && !t.Created.After(n.forgetMark)", "return false && !t.Created.After(n.forgetMark)"),
	},
	{
		Name:  "no-recount-after-replay",
		Desc:  "Start does not recount the pending tasks after replaying the log",
		Edits: edit("node/node.go", "\tn.recount(notes)\n", "\t// n.recount(notes) forgotten\n"),
	},

	// --- queues: limits and admission ------------------------------------------------
	{
		Name:  "gcra-burst-off-by-one",
		Desc:  "the GCRA burst allowance is bucket_size/rate, one token more than bucket_size allows",
		Edits: edit("node/queues.go", "max(q.BucketSize-1, 0)", "max(q.BucketSize, 0)"),
	},
	{
		Name:  "max-concurrent-off-by-one",
		Desc:  "the token node grants a permit while max_concurrent are in flight (> for >=)",
		Edits: edit("node/queues.go", "b.busy() >= n.capLimit(q):", "b.busy() > n.capLimit(q):"),
	},
	{
		Name:  "slot-wait-gives-claim-up",
		Desc:  "a claimant told to wait for its rate slot always gives its won claim up and claims again, so on slow links it misses its slot every time",
		Edits: edit("node/queues.go", "if wait <= keep && !now.Add(wait)", "if false && wait <= keep && !now.Add(wait)"),
	},
	{
		Name:  "early-permit-not-held",
		Desc:  "the token node answers an ask that came a little before its slot with the wait left instead of holding it to the slot",
		Edits: edit("node/queues.go", "if slot.Sub(now) <= SlotEarly {", "if slot.Sub(now) <= 0 {"),
	},
	{
		Name:  "tick-without-lease",
		Desc:  "a scheduler enqueues a tick whether or not it holds the token lease of its roster's epoch, so during a join two rosters place one tick on two lists",
		Edits: edit("node/schedule.go", "if n.cfg.Unsafe.TickWithoutLease || n.alone() {", "if true || n.cfg.Unsafe.TickWithoutLease || n.alone() {"),
	},
	{
		Name:  "tick-lease-no-wait",
		Desc:  "at an epoch above 1 a scheduler enqueues ticks as soon as it takes the token lease up, without the wait that outlasts the leases of the epoch before",
		Edits: edit("node/schedule.go", "!taken.Add(n.tokenLeaseTerm()+2*n.cfg.MaxClockDrift).After(", "!taken.After("),
	},
	{
		Name:  "refused-change-keeps-ballot",
		Desc:  "a leader whose roster change a member refuses for a higher promise goes on proposing under its own ballot, so a change that needs that member never commits",
		Edits: edit("node/leader.go", "if ch != nil && m.Promised > ch.ballot && n.leading() && n.leaderOp == nil {", "if false && ch != nil && m.Promised > ch.ballot && n.leading() && n.leaderOp == nil {"),
	},
	{
		Name:  "reclaim-while-leading-released",
		Desc:  "a claim the leader makes while it leads is released when it fails, ending at the acceptors the lease it still holds",
		Edits: edit("node/leader.go", "if op.renewal || op.whileLeading {", "if op.renewal {"),
	},
	{
		Name:  "slot-retry-waits-for-others",
		Desc:  "a claimant given a rate slot comes back no earlier than the next try another replica announced, even when that is after its slot",
		Edits: edit("node/queues.go", "if at.Before(e.nextETA) {", "if false && at.Before(e.nextETA) {"),
	},
	{
		Name:  "token-wait-only-without-storage",
		Desc:  "a restarted token node waits out forgotten permits only when it has no durable storage",
		Edits: edit("node/queues.go", "q.MaxConcurrent > 0 && now.Before(wait) {", "q.MaxConcurrent > 0 && !n.env.Storage.Durable() && now.Before(wait) {"),
	},
	{
		Name:  "token-answer-older-epoch",
		Desc:  "a member answers yes to a token lease round of an older epoch than its roster's: the old token node keeps its lease after a roster change",
		Edits: edit("node/token.go", "yes := m.Epoch == n.roster.Epoch &&", "yes := m.Epoch <= n.roster.Epoch &&"),
	},
	{
		Name:  "token-answer-ignores-stored",
		Desc:  "a member that stored (accepted) the next epoch's roster still answers yes to the current epoch's token node",
		Edits: edit("node/token.go", "n.accepted.Epoch <= m.Epoch)", "n.accepted.Epoch <= m.Epoch+1)"),
		Equivalent: "every roster change adds or removes one member (a new leader's keeps them), so a majority of " +
			"the next roster that adopted it meets every majority of this one, and a member's adopted epoch only " +
			"grows (a member that forgot answers no while recovering): the old token node loses its lease " +
			"before the new one takes its own up, whatever a member stored but did not adopt yet. The check " +
			"only guards a change of several members at once, which no leader proposes",
	},
	{
		Name:  "token-answer-while-recovering",
		Desc:  "a member in its recovery wait (it may have forgotten a later roster it stored) answers yes to a token lease round",
		Edits: edit("node/token.go", "!n.joining && !(n.recovering() && !n.alone()) &&", "!n.joining &&"),
	},
	{
		Name:  "token-no-wait",
		Desc:  "a token node grants as soon as it takes up the token lease, without waiting for the old one to stop",
		Edits: edit("node/token.go", "if ready := n.tok.since.Add(wait); now.Before(ready) {", "if ready := n.tok.since; now.Before(ready) {"),
	},
	{
		Name:  "token-cap-no-permit-wait",
		Desc:  "a new token node of a capped queue waits for the old one to stop, but not for the permits it gave to lapse",
		Edits: edit("node/token.go", "wait += n.cfg.Lease + n.cfg.MaxClockDrift + n.cfg.PermitValidity", "wait += n.cfg.PermitValidity"),
	},
	{
		Name:  "token-lapse-unseen",
		Desc:  "a token node whose lease lapsed between two looks takes the next answer as a renewal, not as a lease taken up again (no wait)",
		Edits: edit("node/token.go", "if t.held && !now.Before(t.until) {", "if false && t.held && !now.Before(t.until) {"),
	},
	{
		Name:  "permit-from-any-lease-holder",
		Desc:  "a member holding the token lease grants permits of a queue whose token node in its roster is another member (asked by a claimant at another epoch, such as a removed member)",
		Edits: edit("node/queues.go", "if n.tokenNode(m.Queue) != n.cfg.ID {", "if false && n.tokenNode(m.Queue) != n.cfg.ID {"),
	},
	{
		Name:  "admission-off-by-one",
		Desc:  "a node admits a task while already holding max_pending (> for >=)",
		Edits: edit("node/limits.go", "n.open >= c.MaxPending {", "n.open > c.MaxPending {"),
	},

	// --- queue settings ----------------------------------------------------------------
	{
		Name:  "setting-acked-before-sync",
		Desc:  "a member acknowledges a queue setting before its record is synced",
		Edits: edit("node/queues.go", "n.afterSync(sendThen(Message{Type: MsgQueueSetResp, To: m.From, Setting: cur, Retries: cancelled}))", "n.send(Message{Type: MsgQueueSetResp, To: m.From, Setting: cur, Retries: cancelled})"),
	},
	{
		Name:  "fire-before-settings-known",
		Desc:  "a replica fires before the start-up settings sync is done (it delivers under the defaults)",
		Edits: edit("node/claim.go", "\tif !n.settingsKnown() {\n\t\t// Not before this node knows", "\tif false {\n\t\t// Not before this node knows"),
	},

	// --- membership: the roster lease, roster changes, moves ---------------------------
	{
		Name:  "leader-grant-during-lease",
		Desc:  "a member grants the roster lease to a higher ballot of another claimant while the lease it granted runs",
		Edits: edit("node/leader.go", "acc.holder != m.From && now.Before(acc.leaseEnd)", "acc.holder != m.From && false"),
	},
	{
		Name:  "roster-commit-old-majority-only",
		Desc:  "a roster change commits once a majority of the old roster stored it, not of the new one too",
		Edits: edit("node/leader.go", "if !majorityStored(ch.old, ch.acks) || !majorityStored(ch.roster, ch.acks) {", "if !majorityStored(ch.old, ch.acks) {"),
		Equivalent: "every roster change adds or removes one member (a new leader's keeps them), and then a " +
			"majority of either roster meets every majority of the other: the roster stored by a majority of " +
			"one is met by every later majority of both, which is what the two halves of the rule are for. " +
			"The rule is the general one, for a change of several members at once, which no leader proposes",
	},
	{
		Name:  "roster-commit-new-majority-only",
		Desc:  "a roster change commits once a majority of the new roster stored it, not of the old one too",
		Edits: edit("node/leader.go", "if !majorityStored(ch.old, ch.acks) || !majorityStored(ch.roster, ch.acks) {", "if !majorityStored(ch.roster, ch.acks) {"),
		Equivalent: "every roster change adds or removes one member (a new leader's keeps them), and then a " +
			"majority of either roster meets every majority of the other: the roster stored by a majority of " +
			"one is met by every later majority of both, which is what the two halves of the rule are for. " +
			"The rule is the general one, for a change of several members at once, which no leader proposes",
	},
	{
		Name:  "roster-change-without-renewal",
		Desc:  "the leader changes the members again before its lease is renewed under the roster it just committed",
		Edits: edit("node/leader.go", "if (len(n.joins) > 0 || len(n.removals) > 0) && n.leaseEpoch < n.roster.Epoch {", "if false {"),
	},
	{
		Name:  "new-leader-drops-stored-roster",
		Desc:  "a new leader does not finish the highest roster a majority may have stored, and proposes its own at that epoch",
		Edits: edit("node/leader.go", "if op.best != nil && op.best.Epoch > n.roster.Epoch {\n\t\t// It may have been committed", "if false {\n\t\t// It may have been committed"),
	},
	{
		Name:  "roster-stored-under-lower-ballot",
		Desc:  "a member stores a proposed roster whatever its ballot (below one it granted or stored under)",
		Edits: edit("node/leader.go", "if m.Attempt < n.leaseAcc.promised || m.Attempt < n.acceptedBallot {", "if false {"),
	},
	{
		Name:  "claim-under-moved-list",
		Desc:  "an acceptor grants a claim made under a replica list a move replaced",
		Edits: edit("node/claim.go", "case m.Task != nil && m.Task.ListVersion < e.task.ListVersion:", "case false:"),
	},
	{
		Name:  "move-without-floor",
		Desc:  "a finished move does not raise the floor to the attempt it was claimed under",
		Edits: edit("node/move.go", "\te.floor = max(e.floor, op.attempt)\n\tn.adoptList(e, op.next)", "\tn.adoptList(e, op.next)"),
	},
	{
		Name:  "claim-resp-ignores-round",
		Desc:  "a claimant counts a grant of its attempt whatever claim round it answers (a duplicated grant meant for the process it was before a restart counts)",
		Edits: edit("node/claim.go", "m.Attempt != e.claiming || m.Round != e.round {", "m.Attempt != e.claiming {"),
	},
	{
		Name:  "restart-fires-at-grant-end",
		Desc:  "a restarted node with an unreleased grant arms the task at the grant's end, even when that is before the task is due or its backoff is over",
		Edits: edit("node/node.go", "\t\t\tn.pushBack(e, e.leaseEnd)\n\t\t}", "\t\t\tn.disarm(e)\n\t\t\tn.pushBack(e, e.leaseEnd)\n\t\t}"),
	},
	{
		Name:  "win-expired-leader-lease",
		Desc:  "a claimant that counts the grants of its roster lease claim after a pause took the lease even when it had already run out",
		Edits: edit("node/leader.go", "\tif !n.now().Before(until) {\n\t\t// A pause between the grants", "\tif false {\n\t\t// A pause between the grants"),
	},
	{
		Name:  "ignore-claims-of-left-out-replica",
		Desc:  "an acceptor ignores a claim from a replica of a list a move replaced that the list in force leaves out (a removed member), rather than telling it the task's end or the list",
		Edits: edit("node/claim.go", "\treturn m.Task != nil && m.Task.Rank(m.From) >= 0 && m.Task.ListVersion < e.task.ListVersion\n", "\treturn false && m.Task != nil\n"),
	},
	{
		Name: "removed-node-delivers",
		Desc: "a removed node delivers the tasks it still holds, under the queue settings it had when removed, instead of moving them when they fall due",
		Edits: []Edit{
			{File: "node/claim.go", Old: "\tif n.removed {\n\t\t// Invariant: a removed node delivers nothing", New: "\tif false {\n\t\t// Invariant: a removed node delivers nothing"},
			{File: "node/claim.go", Old: "if e.moving || e.bestPending != nil || n.removed {", New: "if e.moving || e.bestPending != nil {"},
		},
	},
	{
		Name:  "outcome-under-replaced-list-adopted",
		Desc:  "a replica holding a later list takes the final state of an Outcome sent under a list a move replaced (a stale unknown spreads to the list in force)",
		Edits: edit("node/claim.go", "case m.State != StateCancelled && m.Task != nil && m.Task.ListVersion < e.task.ListVersion:", "case false:"),
	},
	{
		Name:  "left-out-copy-takes-unknown",
		Desc:  "a copy the list in force leaves out takes unknown from a claim's answer, though it will never hear what the delivery did",
		Edits: edit("node/claim.go", "if e.task.ListVersion > 0 && e.rank < 0 && (m.Reject == RejectForgotten", "if false && e.task.ListVersion > 0 && e.rank < 0 && (m.Reject == RejectForgotten"),
	},
	{
		Name:  "leader-grant-any-round",
		Desc:  "a roster lease claimant counts a grant of its ballot whatever claim round it answers (a renewal's late grant, given before this round was sent, counts for the lease this round counts from its sending)",
		Edits: edit("node/leader.go", "m.Attempt != op.ballot || m.Round != op.round ||", "m.Attempt != op.ballot ||"),
	},
	{
		Name:  "token-round-starts-at-one",
		Desc:  "a token node's lease rounds count from 1 in every process, so that a member's yes to a round of the process before a restart, still on its way, counts for the new process's round of that number, sent later",
		Edits: edit("node/token.go", "if t.round == 0 {\n\t\t// A random first round", "if false && t.round == 0 {\n\t\t// A random first round"),
	},
	{
		Name:  "store-answers-of-any-enqueue-count",
		Desc:  "a coordinator counts every Store answer for the task's ID toward the enqueue it has pending, an answer to an earlier enqueue of the same name (late on a slow link) among them",
		Edits: edit("node/node.go", "if op == nil || m.Round != op.task.Nonce {", "if op == nil {"),
	},
	{
		Name:  "forgotten-answer-counts-as-stored",
		Desc:  "a coordinator counts a replica's answer that it may have finished and forgotten the task (RejectForgotten) as a stored copy",
		Edits: edit("node/node.go", "if m.Reject == RejectForgotten {\n\t\t// It may have held", "if false && m.Reject == RejectForgotten {\n\t\t// It may have held"),
	},
	{
		Name:  "refused-outcome-answered-before-durable",
		Desc:  "a replica refusing an Outcome of another enqueue of the same name answers it with the final state it holds at once, before that state's record is durable",
		Edits: edit("node/claim.go", "n.sendAfterSync(Message{Type: MsgOutcomeResp, To: m.From, TaskID: m.TaskID, State: e.state})", "n.send(Message{Type: MsgOutcomeResp, To: m.From, TaskID: m.TaskID, State: e.state})"),
	},
	{
		Name:  "superseded-change-acknowledged",
		Desc:  "a queue change counts a member's answer carrying a newer change of the queue, which stands there instead, as an acknowledgement of its own",
		Edits: edit("node/queues.go", "if !same && !(op.purge && !s.PurgedBefore.Before(op.setting.PurgedBefore)) {", "if false && !same && !(op.purge && !s.PurgedBefore.Before(op.setting.PurgedBefore)) {"),
	},
	{
		Name:  "acks-of-removed-members-count",
		Desc:  "a queue change is answered as acknowledged by every member when as many answered as the roster has members, a member removed meanwhile standing in for one that never got it",
		Edits: edit("node/queues.go", "if membersIn(n.members, op.acks) == len(n.members) {\n\t\t\tn.finishSet(op, nil)", "if len(op.acks) == len(n.members) {\n\t\t\tn.finishSet(op, nil)"),
	},
	{
		Name:  "unknown-asks-replaced-list-only",
		Desc:  "a replica holding unknown under a list a move replaced asks only that list's replicas, which never learn what the list in force did",
		Edits: edit("node/claim.go", "if e != nil && e.state == StateUnknown && m.Task != nil && m.Task.Nonce == e.task.Nonce", "if false && e != nil && e.state == StateUnknown && m.Task != nil && m.Task.Nonce == e.task.Nonce"),
	},
	{
		Name:  "grant-sent-after-final",
		Desc:  "a grant whose record became durable is sent even when the task turned final while it waited for the sync",
		Edits: edit("node/syncs.go", "if e := n.peek(m.TaskID); e != nil && e.state.Final() {", "if e := n.peek(m.TaskID); false && e != nil && e.state.Final() {"),
	},
	{
		Name:  "drain-releases-finished-attempts",
		Desc:  "a node that stops (SIGTERM's drain) releases the attempt of a task it delivered, as if the attempt were over undelivered",
		Edits: edit("node/node.go", "if e := n.tasks[id]; e.claiming != 0 && !e.delivering && !e.state.Final() {", "if e := n.tasks[id]; e.claiming != 0 && !e.delivering {"),
	},
	{
		Name:  "purged-store-keeps-outcome-only",
		Desc:  "a replica that takes a Store of a task its queue's purge covers logs only the cancelled outcome, not the task, before acknowledging",
		Edits: edit("node/node.go", "\t\tn.persist(nil, Record{Kind: RecTask, Task: t, TaskID: t.ID, Attempt: e.floor, Status: m.Status, NextETA: m.NextETA}.withFailures(e.failures()))\n\t\tn.adoptFinal(e, StateCancelled", "\t\tn.adoptFinal(e, StateCancelled"),
	},
	{
		Name:  "joiner-restart-skips-settings-sync",
		Desc:  "a node that joined and restarts from its log takes tasks at once, under the settings its log holds, though the round that learns them at the join may never have ended",
		Edits: edit("node/node.go", "if lossy || n.cfg.Join && !n.joining && len(n.members) > 1 {", "if lossy || false {"),
	},
	{
		Name:  "skipped-epochs-forget-removed",
		Desc:  "a node that adopts a roster after skipping epochs (a joiner, a member away) knows as departed only the members it saw leave, not those the roster names as removed: its door refuses their messages and lists naming them",
		Edits: edit("node/remove.go", "\tfor _, id := range next.Removed {\n", "\tfor _, id := range next.Removed[:0] {\n"),
	},

	// --- queries: Lookup, Describe (GET /v1/tasks/{id}) ---------------------------
	{
		Name:  "status-claimed-as-succeeded",
		Desc:  "a replica delivering a task (claimed) answers a status query with succeeded, the outcome it expects, before the webhook answered",
		Edits: edit("node/query.go", "if n.cfg.Unsafe.ClaimedAnsweredSucceeded && st.State == StateClaimed {", "if st.State == StateClaimed {"),
	},
	{
		Name:  "joined-lookup-not-reasked",
		Desc:  "a Lookup or Describe that joins one in flight waits for its answers instead of asking the replicas again: it reads a view older than its request",
		Edits: edit("node/query.go", "\t\tif op.lookups != nil {\n\t\t\t// The answers counted so far", "\t\tif false && op.lookups != nil {\n\t\t\t// The answers counted so far"),
	},
}
