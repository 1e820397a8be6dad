package node

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// A small seeded fault-injection run at node level: partitions, isolation, message
// loss, duplication and reordering, and one node that crashes and restarts without
// memory, against a workload of at-least-once and at-most-once tasks and a worker
// that succeeds, fails, stalls or never answers. After the faults stop the network
// heals and every acknowledged task must end. The full simulator lives in sim/; this
// keeps the node's own safety rules under test in node/.

const (
	faultPhase = 60 * time.Second
	faultEnd   = faultPhase + 15*time.Minute
)

type faultRun struct {
	h     *harness
	acked map[string]bool
	amo   map[string]bool
	log   []string
}

func runFaults(t testing.TB, seed uint64) *faultRun {
	amo := DefaultQueueConfig()
	amo.Delivery = AtMostOnce
	amo.DispatchDeadline = 4 * time.Second
	alo := DefaultQueueConfig()
	alo.Retry.MaxBackoff = 5 * time.Second
	alo.DispatchDeadline = 4 * time.Second
	h := newHarness(t, 5, seed, func(c *Config) {
		c.Replicas = 3
		c.Lease = 6 * time.Second
		c.ReplicaOffset = time.Second
		c.ClaimTimeout = 500 * time.Millisecond
		c.DefaultQueue = alo
	})
	h.setQueues(map[string]QueueConfig{"once": amo})
	r := rand.New(rand.NewPCG(seed, 99))
	wr := rand.New(rand.NewPCG(seed, 98))
	h.worker = func(d Delivery, k int) (int, time.Duration) {
		lat := time.Duration(wr.Int64N(int64(300 * time.Millisecond)))
		switch x := wr.IntN(100); {
		case x < 55:
			return 200, lat
		case x < 80:
			return 500, lat
		case x < 90:
			return 200, 3*time.Second + lat // slow, maybe past a short deadline
		default:
			return 0, 0 // never answers
		}
	}
	fr := &faultRun{h: h, acked: map[string]bool{}, amo: map[string]bool{}}

	// Workload.
	for i := 0; i < 40; i++ {
		at := time.Duration(r.Int64N(int64(40 * time.Second)))
		from := h.order[r.IntN(len(h.order))]
		q := ""
		if r.IntN(3) == 0 {
			q = "once"
		}
		cd := time.Duration(r.Int64N(int64(8 * time.Second)))
		h.at(at, func() {
			if h.nodes[from].down {
				return
			}
			res := h.enqueue(from, reqQ(q, cd))
			// Collect answers after the run; remember which queue.
			fr.log = append(fr.log, "")
			idx := len(fr.log) - 1
			h.schedule(0, func() {}) // keep ordering identical whether or not reply is immediate
			check := func() {
				if res.done && res.Err == nil {
					fr.acked[res.ID] = true
					if q == "once" {
						fr.amo[res.ID] = true
					}
				}
			}
			// The reply comes within EnqueueTimeout at the latest.
			h.schedule(10*time.Second, check)
			_ = idx
		})
	}

	// Faults, one every 1–4 s during the fault phase.
	crashed := false
	for at := time.Second; at < faultPhase; at += time.Duration(1+r.IntN(3)) * time.Second {
		kind := r.IntN(8)
		a, b := h.order[r.IntN(5)], h.order[r.IntN(5)]
		perm := r.Perm(5)
		cut := 1 + r.IntN(2)
		p := r.Float64() * 0.2
		h.at(at, func() {
			switch kind {
			case 0: // majority/minority split
				var x, y []NodeID
				for i, j := range perm {
					if i < cut {
						x = append(x, h.order[j])
					} else {
						y = append(y, h.order[j])
					}
				}
				h.partition(x, y)
				fr.log = append(fr.log, fmt.Sprintf("%v partition %v|%v", h.elapsed(), x, y))
			case 1:
				h.isolate(a)
				fr.log = append(fr.log, fmt.Sprintf("%v isolate %s", h.elapsed(), a))
			case 2:
				if a != b {
					h.block(a, b)
					fr.log = append(fr.log, fmt.Sprintf("%v block %s→%s", h.elapsed(), a, b))
				}
			case 3, 4:
				h.heal()
				fr.log = append(fr.log, fmt.Sprintf("%v heal", h.elapsed()))
			case 5:
				h.dropProb, h.dupProb, h.jitterMax = p, p, time.Duration(p*float64(time.Second))
				fr.log = append(fr.log, fmt.Sprintf("%v net drop/dup %.2f", h.elapsed(), p))
			case 6:
				if !crashed {
					crashed = true
					h.crash("n5")
					fr.log = append(fr.log, fmt.Sprintf("%v crash n5", h.elapsed()))
					h.schedule(time.Duration(1+p*50)*time.Second, func() {
						h.restart("n5")
						fr.log = append(fr.log, fmt.Sprintf("%v restart n5", h.elapsed()))
					})
				}
			case 7:
				h.dropProb, h.dupProb, h.jitterMax = 0, 0, 0
			}
		})
	}
	h.at(faultPhase, func() {
		h.heal()
		h.dropProb, h.dupProb = 0, 0
		fr.log = append(fr.log, fmt.Sprintf("%v heal all", h.elapsed()))
	})
	h.run(faultEnd)
	return fr
}

// violations checks the safety and liveness rules a node is responsible for.
func (fr *faultRun) violations() []string {
	h := fr.h
	var out []string
	byTask := map[string][]deliveryRec{}
	for _, d := range h.deliveries {
		byTask[d.TaskID] = append(byTask[d.TaskID], d)
	}
	ids := sortedKeys(byTask)
	for _, id := range ids {
		ds := byTask[id]
		seen := map[uint64]NodeID{}
		for i, d := range ds {
			// S2 (stronger: attempts are unique ballots): one delivery per attempt.
			if n, ok := seen[d.Attempt]; ok {
				out = append(out, fmt.Sprintf("S2 task %s attempt %d delivered by %s and %s", id, d.Attempt, n, d.Node))
			}
			seen[d.Attempt] = d.Node
			// S1: deliveries of one task never overlap.
			for _, e := range ds[:i] {
				if d.At < e.End {
					out = append(out, fmt.Sprintf("S1 task %s: %s started at %v while %s (attempt %d) ran until %v", id, d.Node, d.At, e.Node, e.Attempt, e.End))
				}
			}
			// S5 (no clock skew here): never before due.
			if d.At < d.ETA {
				out = append(out, fmt.Sprintf("S5 task %s delivered at %v before its ETA %v", id, d.At, d.ETA))
			}
		}
		// S4.
		if fr.amo[id] && len(ds) > 1 {
			out = append(out, fmt.Sprintf("S4 at-most-once task %s delivered %d times: %v", id, len(ds), ds))
		}
	}
	// L1: every acknowledged task is still held by some replica and is final on
	// every replica that holds it. (A replica that lost the task in a crash after it
	// ended is not given it back: nothing asks for it any more.)
	for _, id := range sortedKeys(fr.acked) {
		reps := h.replicas(id)
		held, final := 0, 0
		var states []string
		for _, n := range reps {
			s := h.stateOn(n, id)
			states = append(states, fmt.Sprintf("%s=%s", n, s))
			if s != StateNone {
				held++
			}
			if s.Final() {
				final++
			}
		}
		if held == 0 || final < held {
			out = append(out, fmt.Sprintf("L1 task %s not final after %v: %v", id, faultEnd-faultPhase, states))
		}
	}
	// Quiescence: long after the faults, with every task final, nodes stop talking
	// about tasks (no endless resend loops).
	for _, m := range h.sent {
		// The settings' digest is gossiped for ever; once the members agree, nothing
		// else is (no digest answer, no setting).
		gossip := m.Msg.Type == MsgGossip
		if m.At > faultEnd-time.Minute && !gossip {
			out = append(out, fmt.Sprintf("quiet: %v still sending %s", m.At, m.Msg))
			break
		}
	}
	return out
}

func TestRandomFaults(t *testing.T) {
	seeds := 30
	if testing.Short() {
		seeds = 5
	}
	if s := os.Getenv("NODE_FAULT_SEEDS"); s != "" {
		seeds, _ = strconv.Atoi(s)
	}
	total, amo, delivered := 0, 0, 0
	for seed := uint64(1); seed <= uint64(seeds); seed++ {
		fr := runFaults(t, seed)
		total += len(fr.acked)
		amo += len(fr.amo)
		delivered += len(fr.h.deliveries)
		if vs := fr.violations(); len(vs) > 0 {
			t.Errorf("seed %d: %d violations:\n%s\nfaults:\n%s", seed, len(vs), join(vs[:min(len(vs), 10)]), join(slices.DeleteFunc(fr.log, func(s string) bool { return s == "" })))
		}
	}
	// The workload must have done something for the checks to mean anything.
	assert.Greater(t, total, seeds*20, "too few tasks acknowledged")
	assert.Positive(t, amo)
	assert.Greater(t, delivered, total)
	t.Logf("%d seeds: %d tasks acknowledged (%d at-most-once), %d deliveries", seeds, total, amo, delivered)
}

func join(ss []string) string {
	out := ""
	for _, s := range ss {
		out += "  " + s + "\n"
	}
	return out
}
