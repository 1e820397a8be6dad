package sim

import (
	"errors"
	"time"

	"github.com/miyamotohq/miyamoto/node"
)

// Management reaches simulated nodes as it reaches the daemon: a client's request,
// made at a time the scenario sets, through a random live node, by the same node
// inputs the HTTP API uses (SetQueue after QueueSetting for PUT, pause and resume;
// PurgeQueue; DeleteQueue; Cancel; Lookup then Enqueue of node.RequeueRequest for a
// re-queue).
// Nothing the API can change is handed to a node as configuration: a queue's
// settings in workload.queues are a PUT made at the start of the run, repeated until
// it is answered 200, and clients begin only then.

// managementKinds are the scenario events that are clients' requests, not faults.
var managementKinds = map[string]bool{
	"set_queue": true, "pause_queue": true, "resume_queue": true, "purge_queue": true,
	"delete_queue": true, "cancel_task": true, "requeue_task": true,
}

// liveNode draws a node that is up and not paused (nil: none).
func (w *world) liveNode() *simNode {
	var live []*simNode
	for _, s := range w.nodes {
		if s.up && !s.paused && s.member() {
			live = append(live, s)
		}
	}
	if len(live) == 0 {
		return nil
	}
	return live[w.rngFault.IntN(len(live))]
}

// manage makes the client request f through a random live node (waiting a second
// for one when none is). A queue change is repeated, as a client would repeat it,
// until it is answered 200: after a 503 (not every member acknowledged in time), or
// when no answer came within the client's timeout (the node it went through died).
func (w *world) manage(f FaultEvent) {
	if !queueChange[f.Kind] {
		w.manageThen(f, nil)
		return
	}
	if w.settingUp[f.Queue] {
		// The operator's changes of a queue follow its setup, as the clients do:
		// made now, a change would end the setup PUT's repeats (see
		// changeUntilDone), and a setup never answered holds the clients back for
		// the whole run, which then tests nothing (seeds 2, 3 and 8 of a swarm
		// with messages held 12 s sent no task at all).
		w.heldChanges[f.Queue] = append(w.heldChanges[f.Queue], heldChange{f: f, at: w.now})
		return
	}
	w.changeGen[f.Queue]++
	w.changeUntilDone(f, nil)
}

// heldChange is a scenario's change of a queue held until the queue's setup was
// answered, and when it was due.
type heldChange struct {
	f  FaultEvent
	at int64
}

// setUpDone makes the changes of queue held during its setup, keeping their
// spacing, the first at once.
func (w *world) setUpDone(queue string) {
	delete(w.settingUp, queue)
	held := w.heldChanges[queue]
	delete(w.heldChanges, queue)
	for _, h := range held {
		f := h.f
		w.after(time.Duration(h.at-held[0].at), func() { w.manage(f) })
	}
}

// queueChange are the management requests that change a queue's setting.
var queueChange = map[string]bool{"set_queue": true, "pause_queue": true, "resume_queue": true, "purge_queue": true, "delete_queue": true}

// changeUntilDone makes the queue change f until it is answered 200, then calls
// then. A later change of the same queue ends the repeats: the client moved on (a
// pause repeated after the resume that followed it would pause the queue for good).
func (w *world) changeUntilDone(f FaultEvent, then func()) {
	gen := w.changeGen[f.Queue]
	w.changeOnce(f, gen, then)
}

func (w *world) changeOnce(f FaultEvent, gen int, then func()) {
	if w.changeGen[f.Queue] != gen {
		return
	}
	answered := false
	w.manageThen(f, func(ok bool) {
		if answered {
			return
		}
		answered = true
		if !ok {
			w.after(time.Second, func() { w.changeOnce(f, gen, then) })
			return
		}
		if then != nil {
			then()
		}
	})
	w.after(manageTimeout, func() {
		if !answered {
			answered = true
			w.changeOnce(f, gen, then)
		}
	})
}

// manageTimeout is how long a client waits for the answer to a queue change (the
// node answers within EnqueueTimeout, 5 s, unless it died).
const manageTimeout = 10 * time.Second

// manageThen is manage, then done(ok) once the request was answered (set, pause,
// resume and purge: ok when every member acknowledged).
func (w *world) manageThen(f FaultEvent, done func(ok bool)) {
	s := w.liveNode()
	if s == nil {
		w.after(time.Second, func() { w.manageThen(f, done) })
		return
	}
	via := " via " + string(s.id)
	switch f.Kind {
	case "set_queue", "pause_queue", "resume_queue", "purge_queue", "delete_queue":
		cur, _ := s.n.QueueSetting(f.Queue)
		cfg, explicit, paused := cur.Config, cur.Explicit, cur.Paused
		switch f.Kind {
		case "set_queue":
			cfg = f.Settings.config()
			explicit = cfg.Differing(node.DefaultQueueConfig())
		case "pause_queue":
			paused = true
		case "resume_queue", "delete_queue": // a deleted queue runs unpaused
			paused = false
			w.check.queueResumed(f.Queue)
		}
		if w.trace != nil {
			w.trace.fault(w.now, f.Kind, f.Queue+via)
		}
		if f.Kind == "purge_queue" || f.Kind == "delete_queue" {
			w.check.queueCancelRequested(f.Queue) // V1: it may cancel the queue's tasks
		}
		put := w.check.putIssued(f.Queue)
		answer := func(set node.QueueSetting, _ int, err error) {
			if f.Kind == "delete_queue" {
				// Q6 holds the queue to what the client asked for, not to the node's
				// word: after a deletion, the defaults.
				set.Config, set.Paused = node.DefaultQueueConfig(), false
			}
			w.check.putAnswered(put, set, err == nil)
			if err == nil && set.Paused && f.Kind != "purge_queue" {
				w.check.queuePaused(f.Queue, put)
			}
			if w.trace != nil {
				res := "acknowledged by every member"
				if err != nil {
					res = err.Error()
				}
				w.trace.fault(w.now, f.Kind+"_answer", f.Queue+": "+res)
			}
			if done != nil {
				done(err == nil)
			}
		}
		switch f.Kind {
		case "purge_queue":
			s.n.PurgeQueue(f.Queue, answer)
		case "delete_queue":
			s.n.DeleteQueue(f.Queue, f.Value == 1, answer)
		default:
			s.n.SetQueue(f.Queue, cfg, explicit, paused, func(set node.QueueSetting, err error) { answer(set, 0, err) })
		}
	case "cancel_task":
		r := w.check.pickTask(w.rngFault, f.Queue, func(r *taskRec) bool { return r.finalAt < 0 })
		if r == nil {
			return
		}
		if w.trace != nil {
			w.trace.fault(w.now, f.Kind, r.task.ID+via)
		}
		w.check.cancelRequested(r.task.ID)
		s.n.Cancel(r.task.ID, func(st node.TaskState, err error) {
			if w.trace != nil {
				res := st.String()
				if err != nil {
					res = err.Error()
				}
				w.trace.fault(w.now, f.Kind+"_answer", r.task.ID+": "+res)
			}
		})
	case "requeue_task":
		r := w.check.pickTask(w.rngFault, f.Queue, func(r *taskRec) bool { return r.finalState == node.StateDead })
		if r == nil {
			return
		}
		if w.trace != nil {
			w.trace.fault(w.now, f.Kind, r.task.ID+via)
		}
		inc := s.incarnation
		s.n.Lookup(r.task.ID, func(st node.TaskStatus, err error) {
			if err == nil {
				var req node.EnqueueRequest
				if req, err = node.RequeueRequest(st); err == nil {
					// The client sends the re-queue as its next request, not from
					// inside the node's answer.
					w.after(0, func() {
						if s.up && s.incarnation == inc && !s.paused {
							w.wl.submit(s, req, -1)
						}
					})
				}
			}
			if err != nil && w.trace != nil {
				w.trace.fault(w.now, f.Kind+"_answer", r.task.ID+": "+err.Error())
			}
		})
	}
}

// setUpQueues makes, at the start, the PUT of every queue of workload.queues whose
// settings are not the defaults, repeating each until every member acknowledged it,
// then calls then.
func (w *world) setUpQueues(then func()) {
	pending := 0
	for _, q := range w.sc.Workload.Queues {
		if q.config() == node.DefaultQueueConfig() {
			continue
		}
		pending++
		qs := q
		if w.settingUp == nil {
			w.settingUp, w.heldChanges = map[string]bool{}, map[string][]heldChange{}
		}
		w.settingUp[q.Name] = true
		w.changeUntilDone(FaultEvent{Kind: "set_queue", Queue: q.Name, Settings: &qs}, func() {
			w.setUpDone(q.Name)
			if pending--; pending == 0 {
				then()
			}
		})
	}
	if pending == 0 {
		then()
	}
}

// errRefused tells the enqueue errors that mean "nothing was stored, retry": the
// node (or a majority of replicas) is full, starting, or cannot write its disk.
func errRefused(err error) bool {
	return errors.Is(err, node.ErrNodeFull) || errors.Is(err, node.ErrQueueFull) ||
		errors.Is(err, node.ErrStarting) || errors.Is(err, node.ErrStorage) || errors.Is(err, node.ErrJoining)
}

// pickTask draws an acknowledged task (of queue, when not empty) that ok accepts.
func (c *checker) pickTask(r interface{ IntN(int) int }, queue string, ok func(*taskRec) bool) *taskRec {
	var cands []*taskRec
	for _, t := range c.order {
		if t.acked && (queue == "" || t.task.Queue == queue) && ok(t) {
			cands = append(cands, t)
		}
	}
	if len(cands) == 0 {
		return nil
	}
	return cands[r.IntN(len(cands))]
}
