package node

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// tokenHarness is three in-memory nodes with a short lease and queue "q" capped
// (and rated) on every node, run past the members' recovery wait.
func tokenHarness(t *testing.T, q QueueConfig) (*harness, NodeID) {
	h := newHarness(t, 3, 1, func(c *Config) {
		c.Lease, c.MaxClockDrift, c.ClaimTimeout = 2*time.Second, 100*time.Millisecond, 200*time.Millisecond
	})
	h.setQueues(map[string]QueueConfig{"q": q})
	return h, TokenNode(h.order, "q")
}

// askPermit steps a permit request for a new attempt of task id into the token
// node, from another member, and returns the answer it sent.
func askPermit(h *harness, token NodeID, id string, attempt uint64) Message {
	h.t.Helper()
	from := NodeID("client-side")
	for _, id := range h.order {
		if id != token {
			from = id
		}
	}
	n := h.node(token)
	before := len(h.sentOf(MsgPermitResp, id))
	n.input(func() {
		n.step(Message{Type: MsgPermit, From: from, To: token, TaskID: id, Attempt: attempt, Queue: "q", Lease: time.Second})
	})
	resps := h.sentOf(MsgPermitResp, id)
	require.Len(h.t, resps, before+1, "one answer to the permit request")
	return resps[len(resps)-1].Msg
}

func TestTokenNodeGrantsOnlyWhileItHoldsTheLeaseAndAfterItsWait(t *testing.T) {
	q := DefaultQueueConfig()
	q.MaxConcurrent = 1
	h, token := tokenHarness(t, q)
	n := h.node(token)

	// The members are still in their recovery wait: nobody answers yes.
	resp := askPermit(h, token, "a", 1)
	require.False(t, resp.Granted, "no lease yet")
	h.run(n.cfg.RecoveryWait)
	require.True(t, n.tok.held, "a majority answered once its recovery wait was over")

	// Held, but the wait after taking it up (term, drift, a lease, PermitValidity)
	// has not passed.
	resp = askPermit(h, token, "b", 1)
	require.False(t, resp.Granted)
	require.Positive(t, resp.Lease, "told when to come back")
	h.run(h.elapsed() + resp.Lease)
	require.True(t, askPermit(h, token, "c", 1).Granted, "granted once the wait passed")

	// Cut off from both others: once the answers are older than the term, it
	// grants nothing more, not even after the cap's slot frees.
	h.isolate(token)
	h.run(h.elapsed() + n.tokenLeaseTerm())
	n.input(func() {
		n.step(Message{Type: MsgPermitDone, From: h.order[0], To: token, TaskID: "c", Attempt: 1, Queue: "q"})
	})
	require.False(t, askPermit(h, token, "d", 1).Granted, "a token node cut off from a majority grants nothing")
	require.False(t, n.tok.held)

	// Back: it takes the lease up again and waits again before granting.
	h.heal()
	h.run(h.elapsed() + time.Second)
	require.True(t, n.tok.held)
	resp = askPermit(h, token, "e", 1)
	require.False(t, resp.Granted, "a lease taken up again starts with the wait")
	h.run(h.elapsed() + resp.Lease)
	require.True(t, askPermit(h, token, "f", 1).Granted)
}

func TestTokenLeaseRateOnlyWaitsLessThanACap(t *testing.T) {
	capped := DefaultQueueConfig()
	capped.MaxConcurrent = 1
	rated := DefaultQueueConfig()
	rated.Rate, rated.BucketSize = 100, 1
	h, token := tokenHarness(t, rated)
	n := h.node(token)
	now := n.now()
	n.tok = tokenLease{epoch: n.roster.Epoch, held: true, since: now, until: now.Add(time.Hour),
		answered: map[NodeID]time.Time{h.order[0]: now.Add(time.Hour), h.order[1]: now.Add(time.Hour), h.order[2]: now.Add(time.Hour)}}
	_, rateWait := n.tokenReady(rated, now)
	_, capWait := n.tokenReady(capped, now)
	require.Equal(t, n.tokenLeaseTerm()+2*n.cfg.MaxClockDrift, rateWait)
	require.Equal(t, rateWait+n.cfg.Lease+n.cfg.MaxClockDrift+n.cfg.PermitValidity, capWait)
}

func TestTokenLeaseAnswers(t *testing.T) {
	q := DefaultQueueConfig()
	q.MaxConcurrent = 1
	h, _ := tokenHarness(t, q)
	h.run(h.node("n1").cfg.RecoveryWait)
	m := h.node("n2")
	answer := func(epoch uint64) bool {
		var got *Message
		m.input(func() {
			m.handleTokenLease(Message{Type: MsgTokenLease, From: "n1", To: "n2", Attempt: 7, Epoch: epoch})
		})
		for i := len(h.sent) - 1; i >= 0; i-- {
			if s := h.sent[i].Msg; s.Type == MsgTokenLeaseResp && s.From == "n2" && s.Attempt == 7 {
				got = &s
				break
			}
		}
		require.NotNil(t, got)
		require.Equal(t, epoch, got.Epoch)
		return got.Granted
	}
	require.True(t, answer(1), "at the round's epoch, nothing later stored")
	require.False(t, answer(2), "a round of an epoch this member does not have")

	m.input(func() { m.accepted, m.acceptedBallot = NewRoster(2, h.order, nil, "n3"), 5 })
	require.False(t, answer(1), "it stored a later roster: that one may be committed already")

	m.input(func() { m.accepted = nil; m.recoverUntil = m.now().Add(time.Minute) })
	require.False(t, answer(1), "recovering: it may have forgotten a later roster it stored")

	m.input(func() { m.recoverUntil = time.Time{}; m.maybeAdoptRoster(NewRoster(2, h.order, nil, "n3")) })
	require.True(t, answer(2))
	require.False(t, answer(1), "a member at a later epoch answers no to the old token node")
}

func TestTokenLeaseStartsOverAtANewEpoch(t *testing.T) {
	q := DefaultQueueConfig()
	q.MaxConcurrent = 1
	h, token := tokenHarness(t, q)
	n := h.node(token)
	h.run(n.cfg.RecoveryWait + n.tokenLeaseTerm() + 2*n.cfg.Lease)
	require.True(t, askPermit(h, token, "a", 1).Granted)
	since := n.tok.since

	// Every member adopts epoch 2 (same members): the lease of epoch 1 counts
	// for nothing, and the one of epoch 2 starts with the wait.
	r := NewRoster(2, h.order, nil, h.order[0])
	for _, id := range h.order {
		nn := h.node(id)
		nn.input(func() { nn.maybeAdoptRoster(r) })
	}
	h.run(h.elapsed() + time.Second)
	require.True(t, n.tok.held)
	require.True(t, n.tok.since.After(since), "taken up anew at the new epoch")
	require.False(t, askPermit(h, token, "b", 1).Granted, "the new epoch's lease starts with the wait")
}

func TestAloneTokenNodeNeedsNoLease(t *testing.T) {
	h := newHarness(t, 1, 1, nil)
	q := DefaultQueueConfig()
	q.Rate, q.BucketSize = 10, 2
	h.setQueues(map[string]QueueConfig{"q": q})
	h.run(time.Second)
	resp := askPermit(h, "n1", "a", 1) // a new bucket starts empty: a slot
	require.False(t, resp.Granted)
	require.LessOrEqual(t, resp.Lease, 100*time.Millisecond, "its slot, not a lease's wait")
	h.run(h.elapsed() + resp.Lease)
	require.True(t, askPermit(h, "n1", "a", 1).Granted)
	for _, s := range h.sent {
		require.NotEqual(t, MsgTokenLease, s.Msg.Type, "a node alone sends no token lease round")
	}
}

// An ask that comes at most SlotEarly before its slot is held and granted at the
// slot, not answered "wait" (the claimant could not come back in time: on slow
// links its next ask would be late for the slot); one that comes earlier is told
// the wait left and keeps its slot.
func TestEarlyAskForASlotIsHeldToTheSlot(t *testing.T) {
	rated := DefaultQueueConfig()
	rated.Rate, rated.BucketSize = 5, 1
	h, token := tokenHarness(t, rated)
	n := h.node(token)
	h.run(n.cfg.RecoveryWait)
	resp := askPermit(h, token, "warm-up", 1)
	require.False(t, resp.Granted)
	h.run(h.elapsed() + resp.Lease)

	resp = askPermit(h, token, "b", 1)
	require.False(t, resp.Granted, "a new bucket starts empty: the first slot is 200 ms away")
	require.Equal(t, 200*time.Millisecond, resp.Lease)
	slot := h.elapsed() + resp.Lease

	h.run(slot - SlotEarly - 10*time.Millisecond)
	resp = askPermit(h, token, "b", 1)
	require.False(t, resp.Granted, "too early to be held")
	require.Equal(t, SlotEarly+10*time.Millisecond, resp.Lease, "told the wait left to the same slot")

	h.run(slot - SlotEarly/2)
	before := len(h.sentOf(MsgPermitResp, "b"))
	n.input(func() {
		n.step(Message{Type: MsgPermit, From: h.order[0], To: token, TaskID: "b", Attempt: 1, Queue: "q", Lease: time.Second})
	})
	require.Len(t, h.sentOf(MsgPermitResp, "b"), before, "held: no answer before the slot")
	h.run(slot - time.Millisecond)
	require.Len(t, h.sentOf(MsgPermitResp, "b"), before, "held: no answer before the slot")
	h.run(slot)
	resps := h.sentOf(MsgPermitResp, "b")
	require.Len(t, resps, before+1)
	require.True(t, resps[len(resps)-1].Msg.Granted, "granted at the slot")
}

// A member that is not a queue's token node in its own roster grants no permit of
// that queue, even while it holds the token lease of its epoch (it needs the lease
// for another queue, or for schedules): the lease proves only that the token node
// of the epoch grants alone. A claimant at another epoch (a removed member stays
// at the roster that dropped it) names another token node than ours; granting it
// from a bucket of our own would start the queue at twice its rate beside the
// real token node (seeds 53 and 54 of remove-during-partition-limits). The
// claimant is told to come back, and given our roster when it is behind.
func TestOnlyTheTokenNodeOfOurRosterGrants(t *testing.T) {
	rated := DefaultQueueConfig()
	rated.Rate, rated.BucketSize = 2, 1
	h, token := tokenHarness(t, rated)
	h.run(h.node(token).cfg.RecoveryWait)
	r := NewRoster(2, h.order, nil, h.order[0])
	for _, id := range h.order {
		nn := h.node(id)
		nn.input(func() { nn.maybeAdoptRoster(r) })
	}
	var other, asker NodeID
	for _, id := range h.order {
		switch {
		case id == token:
		case other == "":
			other = id
		default:
			asker = id
		}
	}
	n := h.node(other)
	n.input(func() {
		// It holds the lease of epoch 2, taken up long ago: only the token check is left.
		now := n.now()
		n.tok = tokenLease{epoch: n.roster.Epoch, held: true, since: now.Add(-time.Hour), until: now.Add(time.Hour),
			answered: map[NodeID]time.Time{h.order[0]: now.Add(time.Hour), h.order[1]: now.Add(time.Hour), h.order[2]: now.Add(time.Hour)}}
	})
	ok, _ := n.tokenReady(rated, n.now())
	require.True(t, ok, "the lease and its wait would let it grant")

	ask := func(id string) Message {
		t.Helper()
		before := len(h.sentOf(MsgPermitResp, id))
		n.input(func() {
			n.step(Message{Type: MsgPermit, From: asker, To: other, TaskID: id, Attempt: 1, Queue: "q", Lease: time.Second, Epoch: 1})
		})
		resps := h.sentOf(MsgPermitResp, id)
		require.Len(t, resps, before+1, "one answer to the permit request")
		return resps[len(resps)-1].Msg
	}
	for i := range 3 { // the bucket starts empty: a bucket of its own would grant the second
		resp := ask("a")
		require.False(t, resp.Granted, "ask %d: not the token node of q at its epoch", i)
		require.Equal(t, pausePoll, resp.Lease, "told to come back")
		h.run(h.elapsed() + resp.Lease)
	}
	require.Nil(t, n.buckets["q"], "no bucket of a queue it is not the token node of")
	var pushed bool
	for _, s := range h.sent {
		if s.Msg.Type == MsgRoster && s.Msg.From == other && s.Msg.To == asker && s.Msg.Roster.Epoch == 2 {
			pushed = true
		}
	}
	require.True(t, pushed, "the asker, at epoch 1, is sent the roster of epoch 2")
}

// Claimants refused because a capped queue is full come back at jittered times,
// even once their doubling backoff reached its cap of a lease: a backoff of exactly
// a lease put every contender in step, all asking in the same instant every lease
// while the one slot, freed a second after each grant, stayed idle until the next
// instant (L1 on 7 of seeds 1-100 of remove-during-partition-limits: queue c, at
// max_concurrent 1, delivered one task per 4 s lease in the liveness phase).
func TestCapRefusalsComeBackJittered(t *testing.T) {
	capped := DefaultQueueConfig()
	capped.MaxConcurrent = 1
	h, _ := tokenHarness(t, capped)
	h.run(h.node("n1").cfg.RecoveryWait)
	var ids []string
	for range 8 {
		res := h.enqueue("n1", EnqueueRequest{Queue: "q", URL: "http://w/", Countdown: time.Hour})
		h.run(h.elapsed() + time.Second)
		require.True(t, res.done)
		require.NoError(t, res.Err)
		ids = append(ids, res.ID)
	}
	n := h.node("n1")
	waits := map[time.Duration]bool{}
	for _, id := range ids {
		n.input(func() {
			e := n.entryOf(id)
			require.NotNil(t, e)
			e.nextETA = time.Time{} // due: only the refusal's wait counts
			x := e.ext()
			x.claiming, x.permitting, x.failedRounds = 7, true, 10
			x.permitAsked = n.now()
			n.handlePermitResp(Message{Type: MsgPermitResp, From: "n2", To: "n1", TaskID: id, Attempt: 7, Reject: RejectPromised, Lease: n.cfg.OutcomeRetry})
			require.Equal(t, timerFire, e.timerKind)
			wait := time.Duration(e.timerAt - n.now().UnixNano())
			require.Greater(t, wait, n.cfg.Lease/4)
			require.LessOrEqual(t, wait, n.cfg.Lease*3/2)
			waits[wait] = true
		})
	}
	require.Greater(t, len(waits), len(ids)/2, "refused claimants come back at different times: %v", waits)
}

// An answer to a round of the token node's previous process, held in the network
// across its restart, must not count for the new process's round: it would date
// the member's yes from the new round's sending, later than it was given.
func TestTokenLeaseAnswerToAnEarlierProcessDoesNotCount(t *testing.T) {
	q := DefaultQueueConfig()
	q.MaxConcurrent = 1
	h, token := tokenHarness(t, q)
	n := h.node(token)
	h.run(n.cfg.RecoveryWait + n.tokenLeaseTerm())
	require.True(t, n.tok.held)
	var rounds []uint64 // the first process's rounds, oldest first
	for _, s := range h.sent {
		if s.Msg.Type == MsgTokenLease && s.Msg.From == token && (len(rounds) == 0 || rounds[len(rounds)-1] != s.Msg.Attempt) {
			rounds = append(rounds, s.Msg.Attempt)
		}
	}
	require.NotEmpty(t, rounds)

	// Restarted and cut off: its own rounds get no answer from the others.
	h.crash(token)
	h.restart(token)
	h.isolate(token)
	h.setQueues(map[string]QueueConfig{"q": q}) // it forgot them (no storage)
	n = h.node(token)
	askPermit(h, token, "a", 1) // starts the lease's rounds
	h.run(h.elapsed() + n.cfg.RecoveryWait + n.tokenLeaseTerm()/2)
	require.NotEmpty(t, n.tok.sent, "the new process sends rounds")
	require.False(t, n.tok.held)

	// The others' yeses to the first process's rounds arrive now.
	for _, id := range h.order {
		if id == token {
			continue
		}
		for _, r := range rounds {
			n.input(func() {
				n.step(Message{Type: MsgTokenLeaseResp, From: id, To: token, Attempt: r, Epoch: n.roster.Epoch, Granted: true})
			})
		}
	}
	require.False(t, n.tok.held, "answers to the previous process's rounds count for nothing")
	for _, id := range h.order {
		if id != token { // it answers itself
			require.Zero(t, n.tok.answered[id], "no answer counted from %s", id)
		}
	}
}
