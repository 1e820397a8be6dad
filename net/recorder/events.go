package recorder

import (
	"hash/crc32"
	"slices"
	"sort"
	"time"

	"github.com/miyamotohq/miyamoto/node"
)

// EventKind says what an Event is.
type EventKind uint8

// What a replayed node did, as Observe reports it.
const (
	EventStart         EventKind = iota + 1 // a run began: Durable, Loaded
	EventStop                               // a run ended (the process stopped or was killed)
	EventState                              // a task's state changed here: Task, From, To, Attempt
	EventSent                               // the node sent Message (to itself too): node.MessageObserver
	EventSend                               // Message left through the network: Key matches its EventReceive
	EventReceive                            // Message arrived from a peer
	EventDispatch                           // a delivery started: Delivery
	EventResult                             // a delivery ended: Result (Synthetic: never recorded, see Observe)
	EventAcked                              // an enqueue this node coordinated was acknowledged: Task
	EventQueueChanged                       // the node's copy of a queue's setting changed: Setting
	EventQueuePut                           // a client's queue change came to this node: Op, Put, Setting.Queue, Setting.Paused (asked)
	EventQueueAnswered                      // the change Put was answered: Setting, OK
	// EventInFlight: a delivery the node started before the kept part of its run
	// (see Snapshot) was still in flight there: its result came after. At is the
	// kept part's start; Delivery has no Deadline.
	EventInFlight
)

// Event is one thing a recorded node did, at a reading of its own clock.
type Event struct {
	Node NodeRun
	At   time.Time // the node's clock: its latest reading when the event happened
	Kind EventKind

	Task      *node.Task
	From, To  node.TaskState
	Attempt   uint64
	Message   node.Message
	Key       uint64 // EventSend, EventReceive: a hash of the message's wire frame
	Delivery  node.Delivery
	Result    node.DeliveryResult
	Synthetic bool // EventResult made up for a delivery whose result was never recorded
	Setting   node.QueueSetting
	Durable   bool
	Loaded    []node.Record
	// Snapshot, on an EventStart: the ring dropped the run's start, and what is
	// kept begins at a snapshot of the node (At: its first clock reading after it).
	// Known is then every task the restored node held, in the state it had there.
	Snapshot bool
	Known    []node.TaskStatus
	// Set by Merge: for an EventReceive, the index of its EventSend in the merged
	// history (-1: no recording shows it sent); for an EventSend, Lost when no
	// recording shows it received.
	SendIndex int
	Lost      bool
	// Read is At as the node recorded it, before Merge moved it (to keep a node's
	// events in order, or a receive after its send): the node's own clock.
	Read time.Time
	// Bound places an EventSend or EventReceive on the node's clock for measuring
	// clocks, where At may not: for a send, the latest reading the node took before
	// it (the send came no earlier); for a receive, the first reading of the input
	// that took it (the message had arrived by then). Zero when the node took no
	// such reading.
	Bound time.Time
	// EventQueuePut, EventQueueAnswered: the call (Op, as in Call), its number in
	// the run, and whether it was answered with success.
	Op  string
	Put int
	OK  bool
}

// NodeRun names one run of one node.
type NodeRun struct {
	ID  node.NodeID
	Run uint64
}

// Observed is what Observe found in one run.
type Observed struct {
	Replayed
	Config node.Config
	Events []Event
}

// Observe replays every run of the recording in dir, as Replay does, and reports
// what each node did, event by event, with its clock reading. A run that cannot be
// replayed gives no events (Skipped says why); one that departs from its recording
// gives those before the difference. A run whose start the ring dropped is
// replayed from the snapshot opening its oldest file kept: its first event is then
// an EventStart with Snapshot set and Known the tasks the node held there, followed
// by the queue settings it held (EventQueueChanged) and an EventInFlight for each
// delivery it had started before and that ended after. A delivery whose result the recording lacks
// (the process ended first) ends, as far as the worker is concerned, by its deadline:
// a synthetic EventResult with status 0 at the delivery's start plus its deadline.
func Observe(dir string) ([]Observed, error) {
	runs, err := ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []Observed
	for _, r := range runs {
		obs := &observer{who: NodeRun{node.NodeID(r.Header.NodeID), r.Header.Run}, open: map[deliveryKey]Event{}}
		res := replayRun(r, obs)
		obs.stop()
		out = append(out, Observed{Replayed: res, Config: r.Header.Config, Events: obs.events})
	}
	return out, nil
}

type deliveryKey struct {
	task    string
	attempt uint64
}

// observer collects the events of one replayed run. Every method is a no-op on a
// nil observer (a plain replay).
type observer struct {
	who NodeRun
	now time.Time
	// lastRead is the latest reading the node took (not a look ahead); inputRead
	// the first reading of the current input, zero when it takes none.
	lastRead, inputRead time.Time
	events              []Event
	open                map[deliveryKey]Event // deliveries started and not ended
	puts                int                   // queue changes issued here
	// window: the events that open a run kept from a snapshot, waiting for the
	// first clock reading after it (their time); windowEnd: how many events open
	// it once added (an EventInFlight found later goes there).
	window    []Event
	windowAt  time.Time
	windowEnd int
	known     map[string]*node.Task // the tasks the snapshot held, by ID
}

var (
	_ node.MessageObserver = (*observer)(nil)
	_ node.QueueObserver   = (*observer)(nil)
)

func (o *observer) add(e Event) {
	o.openWindow()
	e.Node, e.At = o.who, o.now
	o.events = append(o.events, e)
}

// restored: the run's kept part begins at a snapshot, from which n was restored;
// what it held is told as soon as the next clock reading gives it a time.
func (o *observer) restored(n *node.Node, durable bool) {
	if o == nil {
		return
	}
	start := Event{Kind: EventStart, Durable: durable, Snapshot: true}
	o.known = map[string]*node.Task{}
	for _, id := range n.TaskIDs() {
		st, ok := n.Task(id)
		if !ok || st.Task == nil {
			continue
		}
		start.Known = append(start.Known, st)
		o.known[id] = st.Task
	}
	o.window = []Event{start}
	if o.now.IsZero() {
		// The window opens at the first clock reading after the snapshot, or, if
		// the first event comes before any (an input that reads no clock), at the
		// node's last reading before it.
		o.now = n.LastClockReading()
	}
	for _, q := range n.QueueNames() {
		if s, ok := n.QueueSetting(q); ok {
			o.window = append(o.window, Event{Kind: EventQueueChanged, Setting: s})
		}
	}
}

// openWindow adds the events that open a run kept from a snapshot, at the time
// the observer has now.
func (o *observer) openWindow() {
	if len(o.window) == 0 {
		return
	}
	w := o.window
	o.window, o.windowAt = nil, o.now
	for _, e := range w {
		e.Node, e.At = o.who, o.now
		o.events = append(o.events, e)
	}
	o.windowEnd = len(o.events)
}

// inFlight: the result r came for a delivery started before the kept part of the
// run: it was in flight since (at least) that part's start.
func (o *observer) inFlight(r node.DeliveryResult) (Event, bool) {
	t := o.known[r.TaskID]
	if t == nil || o.windowAt.IsZero() {
		return Event{}, false
	}
	delete(o.known, r.TaskID) // one delivery per task can be in flight there
	e := Event{Node: o.who, At: o.windowAt, Kind: EventInFlight, Task: t, Attempt: r.Attempt,
		Delivery: node.Delivery{Task: t, Attempt: r.Attempt}}
	o.events = slices.Insert(o.events, o.windowEnd, e)
	o.windowEnd++
	return e, true
}

// beginInput sets the clock to the input's first reading, so that what the input
// does before it reads the clock is not placed at the previous input's time.
func (o *observer) beginInput(d dec) {
	o.inputRead = time.Time{}
	for len(d.b) > 0 && d.err == nil {
		if d.b[0] == evNow {
			d.byte()
			o.inputRead = nanosTime(d.varint())
			o.clock(o.inputRead)
			return
		}
		describeEvent(&d) // skips the event
	}
}

func (o *observer) clock(t time.Time) {
	if o != nil && t.After(o.now) {
		o.now = t
		o.openWindow()
	}
}

// read is a reading the node took.
func (o *observer) read(t time.Time) {
	if o != nil {
		o.lastRead = t
		o.clock(t)
	}
}

func (o *observer) TaskStateChanged(t *node.Task, from, to node.TaskState, attempt uint64) {
	o.add(Event{Kind: EventState, Task: t, From: from, To: to, Attempt: attempt})
}

func (o *observer) MessageSent(m node.Message) { o.add(Event{Kind: EventSent, Message: m}) }

func (o *observer) QueueChanged(_ node.NodeID, s node.QueueSetting) {
	o.add(Event{Kind: EventQueueChanged, Setting: s})
}

func (o *observer) sent(m node.Message, frame []byte) {
	if o != nil {
		o.add(Event{Kind: EventSend, Message: m, Key: frameKey(frame), Bound: o.lastRead})
	}
}

func (o *observer) received(m node.Message, frame []byte) {
	if o != nil {
		o.add(Event{Kind: EventReceive, Message: m, Key: frameKey(frame), Bound: o.inputRead})
	}
}

func (o *observer) dispatched(d node.Delivery) {
	if o == nil {
		return
	}
	o.add(Event{Kind: EventDispatch, Task: d.Task, Attempt: d.Attempt, Delivery: d})
	o.open[deliveryKey{d.Task.ID, d.Attempt}] = o.events[len(o.events)-1]
}

func (o *observer) result(r node.DeliveryResult) {
	if o == nil {
		return
	}
	k := deliveryKey{r.TaskID, r.Attempt}
	start, ok := o.open[k]
	if !ok {
		if start, ok = o.inFlight(r); !ok {
			return // a stale result: its start was in an earlier run
		}
	}
	delete(o.open, k)
	o.add(Event{Kind: EventResult, Task: start.Task, Attempt: r.Attempt, Result: r})
}

func (o *observer) enqueueAnswered(r node.EnqueueResult) {
	if o != nil && r.Err == nil && r.Task != nil {
		o.add(Event{Kind: EventAcked, Task: r.Task})
	}
}

// queuePut: a client's queue change (Op) of queue was issued here; it returns the
// change's number, for queueAnswered.
func (o *observer) queuePut(op, queue string, paused bool) int {
	if o == nil {
		return 0
	}
	o.puts++
	o.add(Event{Kind: EventQueuePut, Op: op, Put: o.puts, Setting: node.QueueSetting{Queue: queue, Paused: paused}})
	return o.puts
}

func (o *observer) queueAnswered(put int, s node.QueueSetting, err error) {
	if o != nil {
		o.add(Event{Kind: EventQueueAnswered, Put: put, Setting: s, OK: err == nil})
	}
}

func (o *observer) loaded(durable bool, recs []node.Record) {
	if o != nil {
		o.add(Event{Kind: EventStart, Durable: durable, Loaded: recs})
	}
}

// stop ends the run: deliveries still open end by their deadline, after the stop.
func (o *observer) stop() {
	if len(o.events) == 0 {
		return
	}
	if o.events[0].Kind != EventStart {
		// A node without durable storage loads nothing: its start is its first event.
		start := Event{Node: o.who, At: o.events[0].At, Kind: EventStart}
		o.events = append([]Event{start}, o.events...)
	}
	o.add(Event{Kind: EventStop})
	var late []Event
	for k, d := range o.open {
		late = append(late, Event{Node: o.who, At: d.At.Add(d.Delivery.Deadline), Kind: EventResult, Task: d.Task,
			Attempt: k.attempt, Synthetic: true, Result: node.DeliveryResult{TaskID: k.task, Attempt: k.attempt, ErrorKind: node.ErrorTimeout}})
	}
	sort.Slice(late, func(i, j int) bool { return late[i].At.Before(late[j].At) })
	o.events = append(o.events, late...)
}

// frameKey is a 64-bit hash of a frame: its CRC-32C and its CRC-32 (IEEE), both
// computed by the CPU's instructions where it has them, so that the recorder can
// hash every message it sends at little cost.
func frameKey(frame []byte) uint64 {
	return uint64(crc32.Checksum(frame, crcTable))<<32 | uint64(crc32.ChecksumIEEE(frame))
}

// Merge orders the events of several nodes into one history: by clock reading,
// except that a message is never received before it was sent (a receive whose send
// was recorded waits for it; its time becomes at least the send's). Each node's
// events keep their order. Synthetic results come after their run's stop on the
// node's clock; they keep their own times.
func Merge(runs []Observed) []Event {
	byNode := map[node.NodeID][]Event{}
	var ids []node.NodeID
	for _, r := range runs {
		id := node.NodeID(r.NodeID)
		if _, ok := byNode[id]; !ok {
			ids = append(ids, id)
		}
		byNode[id] = append(byNode[id], r.Events...)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	// Sends that some recording shows: a receive of one of them waits for it.
	pendingSends := map[uint64]int{}
	for _, id := range ids {
		for _, e := range byNode[id] {
			if e.Kind == EventSend {
				pendingSends[e.Key]++
			}
		}
	}
	sentAt := map[uint64][]int{} // emitted sends not yet matched, per key: indexes in out
	last := map[node.NodeID]time.Time{}
	heads := make([]int, len(ids))
	var out []Event
	ready := func(e Event) bool {
		return e.Kind != EventReceive || len(sentAt[e.Key]) > 0 || pendingSends[e.Key] == 0
	}
	for {
		best := -1
		for i, id := range ids {
			evs := byNode[id]
			if heads[i] >= len(evs) || !ready(evs[heads[i]]) {
				continue
			}
			if best < 0 || evs[heads[i]].At.Before(byNode[ids[best]][heads[best]].At) {
				best = i
			}
		}
		if best < 0 {
			// Only receives waiting for sends that never come first: take the earliest.
			for i, id := range ids {
				if heads[i] < len(byNode[id]) && (best < 0 || byNode[id][heads[i]].At.Before(byNode[ids[best]][heads[best]].At)) {
					best = i
				}
			}
			if best < 0 {
				for _, q := range sentAt {
					for _, i := range q {
						out[i].Lost = true
					}
				}
				return out
			}
		}
		id := ids[best]
		e := byNode[id][heads[best]]
		heads[best]++
		e.Read = e.At
		if e.At.Before(last[id]) && !e.Synthetic {
			e.At = last[id]
		}
		switch e.Kind {
		case EventSend:
			sentAt[e.Key] = append(sentAt[e.Key], len(out))
			pendingSends[e.Key]--
		case EventReceive:
			e.SendIndex = -1
			if q := sentAt[e.Key]; len(q) > 0 {
				if sendAt := out[q[0]].At; e.At.Before(sendAt) {
					e.At = sendAt
				}
				e.SendIndex = q[0]
				sentAt[e.Key] = q[1:]
			}
		}
		if !e.Synthetic {
			last[id] = e.At
		}
		out = append(out, e)
	}
}
