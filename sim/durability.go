package sim

import (
	"fmt"
	"strconv"
	"time"

	"github.com/miyamotohq/miyamoto/node"
)

// S8 and Q6: what was acknowledged must be what is durable, and what a client set
// must be what the tasks get. Both are checked against the simulated world (the
// disks' synced bytes, the history of the clients' requests), never against a node's
// own word.

// ackCounted is S8: with durable storage, when a node counts an acknowledgement (a
// Store, a grant, a final state, a setting), the acknowledger's disk holds that
// record durably. Excused: an acknowledger whose log a repair cut within the last
// minute (the record may be what was cut; that loss is a fault of its own).
func (c *checker) ackCounted(by *simNode, a node.Ack) {
	from := c.w.byID[a.From]
	if from == nil || from.disk == nil {
		return
	}
	d := from.disk
	if d.repairedAt >= 0 && c.w.now-d.repairedAt < int64(time.Minute) {
		return
	}
	idx := &d.index
	var ok bool
	what := ""
	switch a.Kind {
	case node.RecTask:
		ok, what = idx.tasks[taskKey{a.TaskID, a.Nonce}], "the task"
	case node.RecGrant:
		ok, what = idx.grants[grantKey{a.TaskID, a.Attempt, a.Holder}], "its grant of attempt "+strconv.FormatUint(a.Attempt, 10)+" to "+string(a.Holder)
	case node.RecOutcome:
		st, held := idx.outcomes[a.TaskID]
		ok, what = held && st.Final(), "the task's final state"
	case node.RecSetting:
		ok, what = a.Setting != nil && idx.settings[a.Setting.Queue] >= a.Setting.Version, "the setting of queue "+a.Setting.Queue
	case node.RecSchedule:
		ok, what = a.Schedule != nil && idx.scheds[a.Schedule.Name] >= a.Schedule.Version, "schedule "+a.Schedule.Name
	default:
		return
	}
	if !ok {
		var tasks []string
		if a.TaskID != "" {
			tasks = []string{a.TaskID}
		}
		c.violate("S8", tasks, []node.NodeID{a.From, by.id}, "%s counted %s's acknowledgement of %s, which is not durable on %s's disk", by.id, a.From, what, a.From)
	}
}

// putRec is one client request that changed a queue's setting (PUT, pause, resume
// or purge), for Q6.
type putRec struct {
	queue    string
	issued   int64
	answered int64 // -1: not (yet) answered 200
	setting  node.QueueSetting
	lostAt   int64 // true time a majority of members stopped holding it (-1: never)
}

func (p *putRec) String() string {
	return fmt.Sprintf("PUT %s issued at %s", p.queue, time.Duration(p.issued))
}

func (c *checker) putIssued(queue string) *putRec {
	p := &putRec{queue: queue, issued: c.w.now, answered: -1, lostAt: -1}
	c.puts = append(c.puts, p)
	return p
}

func (c *checker) putAnswered(p *putRec, set node.QueueSetting, ok bool) {
	if ok {
		p.answered, p.setting = c.w.now, set
	}
}

// settled is the PUT whose setting every task of queue must get at true time t: the
// last one answered 200 before t, provided no other change of the queue was made
// from when it was issued until t (a concurrent or later one may win, by its
// version) and none made before it was still unanswered then. nil: none, or not
// decidable.
func (c *checker) settled(queue string, t int64) *putRec {
	var best *putRec
	for _, p := range c.puts {
		if p.queue == queue && p.answered >= 0 && p.answered <= t && (best == nil || p.issued > best.issued) {
			best = p
		}
	}
	if best == nil {
		return nil
	}
	for _, q := range c.puts {
		if q == best || q.queue != queue || q.issued > t {
			continue
		}
		if q.issued >= best.issued || q.answered < 0 || q.answered > best.issued {
			return nil
		}
	}
	return best
}

// settingHeld tracks, per member, the newest setting version of each queue it holds,
// so that Q6 can tell a setting lost with a majority of members' state (excused,
// like a task lost that way) from one a node ignored.
func (c *checker) settingHeld(id node.NodeID, set node.QueueSetting) {
	h := c.held[id]
	if h == nil {
		h = map[string]uint64{}
		c.held[id] = h
	}
	h[set.Queue] = max(h[set.Queue], set.Version)
}

// settingsForgotten: s lost its settings in a crash (memory storage), or a repair
// cut its log (durable: then it holds what its log gave back). A durable node that
// lost nothing still holds every setting it adopted: forgetting one is what Q6
// catches, not an excuse.
func (c *checker) settingsForgotten(s *simNode, lost bool) {
	if !lost {
		return
	}
	h := map[string]uint64{}
	if s.disk != nil {
		for q, v := range s.disk.index.settings {
			h[q] = v
		}
	}
	c.held[s.id] = h
	for _, p := range c.puts {
		if p.answered < 0 || p.lostAt >= 0 {
			continue
		}
		holders := 0
		for _, m := range c.members {
			if c.held[m][p.queue] >= p.setting.Version {
				holders++
			}
		}
		if holders < len(c.members)/2+1 {
			p.lostAt = c.w.now
		}
	}
}

// checkQ6AtEnqueue: a task acknowledged to a client, sent at sentAt, is stored under
// the queue's settled delivery mode.
func (c *checker) checkQ6AtEnqueue(t *node.Task, sentAt int64) {
	p := c.settled(t.Queue, sentAt)
	if p == nil || p.lostAt >= 0 && p.lostAt <= sentAt {
		return
	}
	if t.Delivery != p.setting.Config.Delivery {
		c.violate("Q6", []string{t.ID}, t.Replicas, "task of queue %q stored as %s, but the %s (answered 200 at %s) made it %s",
			t.Queue, t.Delivery, p, time.Duration(p.answered), p.setting.Config.Delivery)
	}
}

// checkQ6AtDelivery: a delivery that starts now is bounded by the queue's settled
// dispatch deadline.
func (c *checker) checkQ6AtDelivery(s *simNode, d node.Delivery) {
	p := c.settled(d.Task.Queue, c.w.now)
	if p == nil || p.lostAt >= 0 {
		return
	}
	if limit := p.setting.Config.DispatchDeadline; d.Deadline > limit {
		c.violate("Q6", []string{d.Task.ID}, []node.NodeID{s.id}, "%s delivers with a deadline of %s, but the %s (answered 200 at %s) set dispatch_deadline %s",
			s.id, d.Deadline, p, time.Duration(p.answered), limit)
	}
}
