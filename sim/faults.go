package sim

import (
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// A swarm's drawn delay fault adds between these to the latency into its node.
const (
	swarmDelayMin = 0.1 // seconds
	swarmDelayMax = 2.0
)

// maxFaultDelay is the most a delay fault of sc adds to a message's latency.
func maxFaultDelay(sc *Scenario) time.Duration {
	var most float64
	for _, f := range sc.Faults.Schedule {
		if f.Kind == "delay" {
			most = max(most, f.Value)
		}
	}
	if sw := sc.Faults.Swarm; sw != nil && slices.Contains(sw.Kinds, "delay") {
		most = max(most, swarmDelayMax)
	}
	return time.Duration(most * float64(time.Second))
}

// applyFault starts fault f now; it reverts after f.Duration (or at the liveness
// phase when Duration is 0). A fault aimed at a moment (f.On) is armed now and
// started at that moment (trigger).
func (w *world) applyFault(f FaultEvent) {
	if f.On != "" {
		if !w.liveness {
			w.armedFaults = append(w.armedFaults, f)
		}
		return
	}
	w.startFault(f)
}

// trigger starts the faults armed for moment on, which node s has just reached in
// its input: each is aimed at s.
func (w *world) trigger(on string, s *simNode) {
	if len(w.armedFaults) == 0 {
		return
	}
	var rest []FaultEvent
	for _, f := range w.armedFaults {
		if f.On != on {
			rest = append(rest, f)
			continue
		}
		if !w.liveness {
			f.Nodes = []string{string(s.id)}
			w.startFault(f)
		}
	}
	w.armedFaults = rest
}

// startFault starts f now (applyFault).
func (w *world) startFault(f FaultEvent) {
	if managementKinds[f.Kind] {
		w.record(f, f.Kind, f.Nodes)
		w.manage(f)
		return
	}
	if f.Kind == "join" {
		w.record(f, f.Kind, f.Nodes)
		w.join(f)
		return
	}
	if f.Kind == "remove" || f.Kind == "replace" {
		if w.liveness {
			return
		}
		var nodes []*simNode
		if f.Kind == "remove" {
			nodes = w.remove(f)
		} else {
			nodes = w.replace(f)
		}
		if len(nodes) > 0 {
			w.record(f, f.Kind, strings.Split(names(nodes), ","))
		}
		return
	}
	if w.liveness {
		return
	}
	nodes := w.pick(f.Nodes)
	defer func() { w.record(f, strings.TrimSuffix(f.Kind, "_holder"), strings.Split(names(nodes), ",")) }()
	var revert func()
	detail := ""
	switch f.Kind {
	case "crash", "crash_holder", "kill", "pause", "pause_holder", "corrupt":
		if f.Kind == "crash_holder" || f.Kind == "pause_holder" {
			nodes = []*simNode{w.holder()}
		} else if len(f.Nodes) == 0 {
			nodes = []*simNode{w.randomNode()}
		}
		crash := strings.HasPrefix(f.Kind, "crash") || f.Kind == "kill" || f.Kind == "corrupt"
		for _, s := range nodes {
			if crash {
				w.crash(s, f.Kind == "kill")
			} else {
				w.pause(s)
			}
			if f.Kind == "corrupt" && s.disk != nil {
				detail += " " + string(s.id) + ": " + s.disk.flipBit() + ";"
			}
		}
		detail = names(nodes) + detail
		revert = func() {
			for _, s := range nodes {
				if crash {
					w.restart(s)
				} else {
					w.resume(s)
				}
			}
		}
	case "stop", "stop_holder":
		if f.Kind == "stop_holder" {
			nodes = []*simNode{w.holder()}
		} else if len(f.Nodes) == 0 {
			nodes = []*simNode{w.randomNode()}
		}
		detail = names(nodes)
		for _, s := range nodes {
			w.stop(s)
		}
		revert = func() {
			for _, s := range nodes {
				if s.stopping {
					s.restartAfterStop = true // still draining: start it once it is down
				} else {
					w.restart(s)
				}
			}
		}
	case "crash_leader", "isolate_leader":
		leader := w.leader()
		if len(nodes) > 0 {
			leader = nodes[0] // as applied (a fixed schedule written by shrink names it)
		}
		if leader == nil {
			detail = "no leader"
			break
		}
		nodes, detail = []*simNode{leader}, string(leader.id)
		if f.Kind == "crash_leader" {
			w.crash(leader, false)
			revert = func() { w.restart(leader) }
		} else {
			revert = w.addRule(&linkRule{from: mask(nodes), to: ^mask(nodes) & all(len(w.nodes)), name: "isolate_leader " + detail})
		}
	case "disk_stall", "disk_slow", "disk_full", "disk_emfile", "fsync_error":
		if len(nodes) == 0 {
			nodes = []*simNode{w.randomNode()}
		}
		detail = names(nodes)
		revert = w.diskFault(f, nodes)
	case "isolate", "split":
		if len(nodes) == 0 {
			k := 1
			if f.Kind == "split" {
				k = max((len(w.nodes)-1)/2, 1)
			}
			nodes = w.randomSet(k)
		}
		detail = names(nodes)
		revert = w.addRule(&linkRule{from: mask(nodes), to: ^mask(nodes) & all(len(w.nodes)), name: f.Kind + " " + detail})
	case "oneway":
		if len(nodes) == 0 {
			nodes = []*simNode{w.randomNode()}
		}
		to := ^mask(nodes[:1]) & all(len(w.nodes))
		detail = names(nodes[:1]) + "->others"
		if len(nodes) == 2 { // one link, as an imported incident saw it
			to, detail = mask(nodes[1:]), names(nodes[:1])+"->"+names(nodes[1:])
		}
		revert = w.addRule(&linkRule{from: mask(nodes[:1]), to: to, oneway: true, name: "oneway " + detail})
	case "bridge":
		if len(nodes) == 0 {
			nodes = []*simNode{w.randomNode()}
		}
		var a, b []*simNode
		for _, s := range w.nodes {
			if s == nodes[0] {
				continue
			}
			if len(a) <= len(b) {
				a = append(a, s)
			} else {
				b = append(b, s)
			}
		}
		detail = names(a) + "|" + names(nodes) + "|" + names(b)
		revert = w.addRule(&linkRule{from: mask(a), to: mask(b), name: "bridge " + detail})
	case "delay":
		if len(nodes) == 0 {
			nodes = []*simNode{w.randomNode()}
		}
		detail = names(nodes)
		entry := &linkDelay{to: mask(nodes), d: time.Duration(f.Value * float64(time.Second))}
		w.net.delays = append(w.net.delays, entry)
		revert = func() {
			if i := slices.Index(w.net.delays, entry); i >= 0 {
				w.net.delays = slices.Delete(w.net.delays, i, i+1)
			}
		}
	case "drop", "duplicate", "reorder":
		// Overlapping faults of one kind: the latest still active wins; when all
		// have ended the scenario's own value comes back.
		active := &w.net.active
		entry := &messageFault{kind: f.Kind, value: f.Value}
		*active = append(*active, entry)
		w.net.recompute(w.sc.Network)
		revert = func() {
			if i := slices.Index(*active, entry); i >= 0 {
				*active = slices.Delete(*active, i, i+1)
			}
			if !w.liveness {
				w.net.recompute(w.sc.Network)
			}
		}
	}
	if w.trace != nil {
		w.trace.fault(w.now, f.Kind, detail)
	}
	if f.Duration > 0 && revert != nil {
		w.after(f.Duration.D(), func() {
			if w.trace != nil {
				w.trace.fault(w.now, "end_"+f.Kind, detail)
			}
			revert()
		})
	}
}

// record keeps f, as applied now, when the run records faults (Options.applied).
func (w *world) record(f FaultEvent, kind string, nodes []string) {
	if w.applied == nil {
		return
	}
	f.At, f.Kind, f.Nodes = Duration(w.now), kind, slices.DeleteFunc(nodes, func(s string) bool { return s == "" })
	if len(f.Nodes) == 0 {
		f.Nodes = nil
	}
	*w.applied = append(*w.applied, f)
}

func (w *world) addRule(r *linkRule) func() {
	w.net.rules = append(w.net.rules, r)
	return func() {
		if i := slices.Index(w.net.rules, r); i >= 0 {
			w.check.rulesEnding(r)
			w.net.rules = slices.Delete(w.net.rules, i, i+1)
			w.releaseHeld()
		}
	}
}

// holder is the live node with the most deliveries in flight (lowest index on ties;
// a random live node when none delivers).
func (w *world) holder() *simNode {
	var best *simNode
	for _, s := range w.nodes {
		if s.up && s.inflight > 0 && (best == nil || s.inflight > best.inflight) {
			best = s
		}
	}
	if best == nil {
		best = w.randomNode()
	}
	return best
}

func (w *world) randomNode() *simNode { return w.nodes[w.resolveRng().IntN(len(w.nodes))] }

func (w *world) randomSet(k int) []*simNode {
	perm := w.resolveRng().Perm(len(w.nodes))[:k]
	slices.Sort(perm)
	out := make([]*simNode, k)
	for i, p := range perm {
		out[i] = w.nodes[p]
	}
	return out
}

// resolveRng draws the nodes of a fault that names none: the swarm's stream while
// the swarm applies it, else the faults'.
func (w *world) resolveRng() *rand.Rand {
	if w.resolving != nil {
		return w.resolving
	}
	return w.rngFault
}

func (w *world) pick(names []string) []*simNode {
	out := make([]*simNode, 0, len(names))
	for _, nm := range names {
		for _, s := range w.nodes {
			if string(s.id) == nm {
				out = append(out, s)
			}
		}
	}
	return out
}

func mask(nodes []*simNode) uint64 {
	var m uint64
	for _, s := range nodes {
		m |= 1 << s.idx
	}
	return m
}

func all(n int) uint64 {
	if n >= 64 {
		return ^uint64(0)
	}
	return 1<<n - 1
}

func names(nodes []*simNode) string {
	s := make([]string, len(nodes))
	for i, n := range nodes {
		s[i] = string(n.id)
	}
	return strings.Join(s, ",")
}

// swarm draws which fault kinds this seed enables, then schedules random faults of
// those kinds through the safety phase.
type swarm struct {
	w       *world
	spec    *SwarmSpec
	enabled []string
}

func (w *world) startSwarm(spec *SwarmSpec) *swarm {
	sw := &swarm{w: w, spec: spec}
	for _, k := range spec.Kinds {
		if w.rngSwarm.IntN(2) == 0 {
			sw.enabled = append(sw.enabled, k)
		}
	}
	if len(sw.enabled) == 0 {
		sw.enabled = []string{spec.Kinds[w.rngSwarm.IntN(len(spec.Kinds))]}
	}
	if w.trace != nil {
		w.trace.fault(0, "swarm", strings.Join(sw.enabled, ","))
	}
	sw.next()
	return sw
}

func (sw *swarm) clockEnabled() bool { return slices.Contains(sw.enabled, "clock") }

func (sw *swarm) next() {
	w := sw.w
	if sw.spec.Rate <= 0 {
		return
	}
	gap := time.Duration(w.rngSwarm.ExpFloat64() / sw.spec.Rate * float64(time.Second))
	w.after(gap, func() {
		if w.liveness {
			return
		}
		kind := sw.enabled[w.rngSwarm.IntN(len(sw.enabled))]
		d := Duration(sw.spec.MaxDuration.D()/10 + time.Duration(w.rngSwarm.Int64N(int64(sw.spec.MaxDuration)*9/10+1)))
		f := FaultEvent{Kind: kind, Duration: d}
		switch kind {
		case "clock":
			// Clocks are set once per seed; nothing happens mid-run.
			f.Kind = ""
		case "crash", "crash_holder", "crash_leader", "kill", "pause", "pause_holder", "corrupt", "fsync_error", "stop", "stop_holder":
			if w.down() >= sw.spec.MaxDown {
				f.Kind = ""
			}
		case "drop":
			f.Value = 0.05 + 0.25*w.rngSwarm.Float64()
		case "disk_slow":
			f.Value = 0.05 + 2*w.rngSwarm.Float64()
		case "duplicate", "reorder":
			f.Value = 0.1 + 0.4*w.rngSwarm.Float64()
		case "delay":
			f.Value = swarmDelayMin + (swarmDelayMax-swarmDelayMin)*w.rngSwarm.Float64()
		}
		if f.Kind != "" {
			w.resolving = w.rngSwarm
			w.applyFault(f)
			w.resolving = nil
		}
		sw.next()
	})
}
