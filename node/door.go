package node

import (
	"bytes"
	"fmt"
	"math/bits"
	"slices"
	"time"
)

// The node's door: every message a peer sends goes through admitMessage before any
// handler sees it (Step), in the daemon and in the simulator alike. A message that
// breaks a rule is dropped and counted by reason (Refused, RefusalObserver), never
// applied. The rules bound every field as strictly as the HTTP API bounds what a
// client gives, so that a peer cannot do through the peer port what a client
// cannot do through the API: a task is checked as at enqueue, times and setting
// versions may be no later than now plus MaxClockDrift, counts and numbers stay far
// from any overflow.
//
// What the door cannot tell is a lie told with valid values by a member: the
// protocol tolerates crashes, lost and repeated messages, not a member that grants
// twice. Peers prove they are members with the cluster secret (net/peer); the door
// only makes sure that what a member says is something a member could say.

// Refusal says why the door refused a message. The set is fixed and small: it
// labels a metric.
type Refusal uint8

const (
	RefusedNone     Refusal = iota
	RefusedSender           // the sender is not a member (or is this node), or the message is for another node
	RefusedType             // an unknown message type, state, reject or enum value
	RefusedTask             // the task breaks a rule of enqueue (URL, method, headers, sizes, replicas, times)
	RefusedURL              // the task's URL is refused by the URL policy (Config.CheckTaskURL)
	RefusedFuture           // a time or a version later than now plus MaxClockDrift
	RefusedRange            // a number or a list out of its bounds
	RefusedSetting          // a queue setting breaks the rules of the settings API
	RefusedSchedule         // a schedule breaks the rules of the schedules API
	RefusedForged           // an outcome about a task held here that is not the task held here
	numRefusals
)

var refusalNames = [...]string{"", "sender", "type", "task", "url_policy", "future", "range", "setting", "schedule", "forged"}

func (r Refusal) String() string {
	if int(r) < len(refusalNames) {
		return refusalNames[r]
	}
	return fmt.Sprintf("refusal(%d)", uint8(r))
}

// Refusals lists every Refusal but RefusedNone, in order: the metric's labels.
func Refusals() []Refusal {
	out := make([]Refusal, 0, numRefusals-1)
	for r := RefusedNone + 1; r < numRefusals; r++ {
		out = append(out, r)
	}
	return out
}

// RefusalObserver is an optional ability of an Observer: MessageRefused is told of
// every peer message the door refused, with the reason and a short detail naming
// the field. It must not call back into the node.
type RefusalObserver interface {
	MessageRefused(m Message, reason Refusal, detail string)
}

// Bounds of the door. The task's bounds are the HTTP API's defaults (net/api) or
// looser; the others keep every number far from an overflow.
const (
	MaxTaskIDLen       = 100
	MaxTaskURLLen      = 8 << 10 // the API's bound on a URL with its query string
	MaxTaskHeaders     = 100
	MaxTaskHeaderBytes = 16 << 10
	MaxReasonLen       = 1 << 10
	MaxCountEntries    = 1 << 16
	// MaxAttempt bounds attempt numbers (claim ballots, floors): they count from 1,
	// and jump by milliseconds of a recovery wait at most, so they never come near it.
	MaxAttempt = 1 << 62
	// MaxRetries bounds a failure count.
	MaxRetries = 1 << 30
	// MaxMembers bounds a roster's members, MaxEpoch its epoch (one per change),
	// MaxNodeIDLen and MaxPeerAddrLen a member's ID and address.
	MaxMembers     = 1024
	MaxEpoch       = 1 << 62
	MaxNodeIDLen   = 100
	MaxPeerAddrLen = 300
	// MaxLease bounds a lease asked for or reported.
	MaxLease = 7 * 24 * time.Hour
	// versionSlack is how far past now plus the drift a setting's or a schedule's
	// version may be: a version is its origin's clock in milliseconds, or one more
	// than the highest seen when several changes fall in one millisecond, so a burst
	// of changes runs ahead of the clock. A version refused now is taken once the
	// clock caught up (gossip repeats it).
	versionSlack = time.Minute
)

// maxUnixSeconds is the latest ETA the API takes (task.eta), as Unix seconds.
const maxUnixSeconds = 1e11

// TaskMethods are the methods a task may use: App Engine's push task methods and
// PATCH, in upper case. The API refuses any other at enqueue, the door in a task
// from a peer.
var TaskMethods = []string{"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"}

// ValidQueueName reports whether s can name a queue (net/api: a path segment):
// 1-100 letters, digits, '_', '-' or '.', the first a letter or digit. It is
// ^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$ checked by hand: the door checks it on every
// message that carries a task, and as a regexp it was 4% of a node's CPU time
// in BenchmarkClusterTasks.
func ValidQueueName(s string) bool {
	if len(s) == 0 || len(s) > 100 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		if !alnum && (i == 0 || c != '_' && c != '.' && c != '-') {
			return false
		}
	}
	return true
}

// admitMessage runs the door's rules on m, a message from a peer, and reports
// whether to handle it; a refusal is counted and told to the RefusalObserver.
func (n *Node) admitMessage(m Message) bool {
	reason, detail := n.checkMessage(&m)
	if reason == RefusedNone {
		return true
	}
	n.refuse(m, reason, detail)
	return false
}

// refuse counts a refused message and tells the RefusalObserver.
func (n *Node) refuse(m Message, reason Refusal, detail string) {
	n.refused[reason]++
	if o, ok := n.env.Observer.(RefusalObserver); ok {
		o.MessageRefused(m, reason, detail)
	}
}

// Refused returns how many peer messages the door refused, by reason.
func (n *Node) Refused() map[Refusal]uint64 {
	out := map[Refusal]uint64{}
	for r, c := range n.refused {
		if c > 0 {
			out[Refusal(r)] = c
		}
	}
	return out
}

// checkMessage returns why m must be refused (RefusedNone: it may be handled) and
// which field broke the rule.
func (n *Node) checkMessage(m *Message) (Refusal, string) {
	switch {
	case m.Type == 0 || m.Type > MaxMsgType:
		return RefusedType, "type"
	case m.To != n.cfg.ID:
		return RefusedSender, "to"
	case m.From == n.cfg.ID || !n.isMember(m.From) && !n.newMemberSends(m):
		return RefusedSender, "from"
	}
	if r, d := n.checkScalars(m); r != RefusedNone {
		return r, d
	}
	if m.Task != nil {
		if m.Task.ID != m.TaskID {
			return RefusedTask, "task.id"
		}
		// A replica's answer to a lookup only reports the task: its list may name a
		// member removed before this node joined (a task final by then is never
		// moved, so its list keeps the removed member), which this node never knew.
		if r, d := n.checkTask(m.Task, m.Type == MsgStatusResp); r != RefusedNone {
			return r, d
		}
	}
	if r, d := n.checkLists(m); r != RefusedNone {
		return r, d
	}
	if m.Setting != nil {
		if r, d := n.checkSetting(m.Setting); r != RefusedNone {
			return r, d
		}
	}
	if m.Schedule != nil {
		if r, d := n.checkSchedule(m.Schedule); r != RefusedNone {
			return r, d
		}
	}
	if m.Roster != nil {
		if r, d := checkRoster(m.Roster); r != RefusedNone {
			return r, d
		}
	}
	return n.checkByType(m)
}

// checkScalars bounds the message's own numbers, enums and strings.
func (n *Node) checkScalars(m *Message) (Refusal, string) {
	switch {
	case m.State > StateCancelled:
		return RefusedType, "state"
	case m.Reject > MaxReject:
		return RefusedType, "reject"
	case len(m.TaskID) > MaxTaskIDLen:
		return RefusedRange, "task_id"
	case m.Attempt > MaxAttempt && m.Type != MsgList:
		return RefusedRange, "attempt"
	case m.Failed > MaxAttempt:
		return RefusedRange, "failed"
	case m.Retries < 0 || m.Retries > MaxRetries:
		return RefusedRange, "retries"
	case (m.Failed > 0) != (m.FailedBits&1 != 0) || bits.OnesCount64(m.FailedBits) > m.Retries:
		// A failure count whose bits say more than it counts, or locate failures
		// below no highest one, would make a merge count failures nobody saw.
		return RefusedRange, "failed_bits"
	case m.Status < 0 || m.Status > 999:
		return RefusedRange, "status"
	case m.Lease < 0 || m.Lease > MaxLease:
		return RefusedRange, "lease"
	case len(m.Reason) > MaxReasonLen:
		return RefusedRange, "reason"
	case m.Holder != "" && !n.isMember(m.Holder):
		return RefusedRange, "holder"
	case m.Queue != "" && !ValidQueueName(m.Queue):
		return RefusedRange, "queue"
	case !m.NextETA.IsZero() && !plausibleTime(m.NextETA):
		return RefusedRange, "next_eta"
	case m.Epoch > MaxEpoch:
		return RefusedRange, "epoch"
	}
	return RefusedNone, ""
}

// checkLists bounds a status answer's attempts and a count answer's entries.
func (n *Node) checkLists(m *Message) (Refusal, string) {
	if len(m.Attempts) > MaxAttemptHistory {
		return RefusedRange, "attempts"
	}
	for _, a := range m.Attempts {
		switch {
		case !n.isMember(a.Node):
			return RefusedRange, "attempts.node"
		case a.Number > MaxAttempt, a.Status < 0 || a.Status > 999, a.Duration < 0:
			return RefusedRange, "attempts.number"
		case a.Error > MaxErrorKind:
			return RefusedType, "attempts.error"
		case len(a.Message) > MaxAttemptMessage || len(a.Body) > MaxAttemptBody:
			return RefusedRange, "attempts.body"
		}
	}
	if len(m.Counts) > MaxCountEntries {
		return RefusedRange, "counts"
	}
	for _, c := range m.Counts {
		switch {
		case !ValidQueueName(c.Queue):
			return RefusedRange, "counts.queue"
		case c.State > StateCancelled:
			return RefusedType, "counts.state"
		case c.N < 0 || c.N > MaxRetries*4 || len(c.Before) > 64:
			return RefusedRange, "counts.n"
		}
		for _, b := range c.Before {
			if !n.isMember(b) {
				return RefusedRange, "counts.before"
			}
		}
	}
	return RefusedNone, ""
}

// checkByType applies the rules of one message type.
func (n *Node) checkByType(m *Message) (Refusal, string) {
	switch m.Type {
	case MsgStore:
		if m.Task == nil {
			return RefusedTask, "task"
		}
		if m.Task.Rank(n.cfg.ID) < 0 {
			return RefusedTask, "task.replicas"
		}
	case MsgClaim:
		if m.Attempt == 0 || m.Lease <= 0 {
			return RefusedRange, "attempt"
		}
	case MsgOutcome:
		if !m.State.Final() {
			return RefusedType, "state"
		}
		// Only a replica that held a claim ends a task succeeded, dead or unknown,
		// and it says which task it ended; a cancel may come from any member (the
		// node a client asked) and names only the ID.
		if m.State != StateCancelled && (m.Task == nil || m.Task.Rank(m.From) < 0) {
			return RefusedForged, "task"
		}
	case MsgQueueSet:
		if m.Setting == nil {
			return RefusedSetting, "setting"
		}
	case MsgScheduleSet:
		if m.Schedule == nil {
			return RefusedSchedule, "schedule"
		}
	case MsgRoster, MsgRosterPropose:
		if m.Roster == nil {
			return RefusedRange, "roster"
		}
		if m.Type == MsgRosterPropose && m.Attempt == 0 {
			return RefusedRange, "attempt"
		}
	case MsgLeaderClaim:
		if m.Attempt == 0 || m.Lease <= 0 {
			return RefusedRange, "attempt"
		}
	case MsgMove:
		if m.Task == nil || m.Attempt == 0 || m.Task.ListVersion == 0 || m.Task.ListVersion > m.Attempt {
			return RefusedRange, "task.list_version"
		}
	case MsgJoin, MsgRemove:
		if m.Member == nil || checkMember(*m.Member) != nil {
			return RefusedRange, "member"
		}
	}
	return RefusedNone, ""
}

// checkTask checks a task a peer sends as the API checks one a client enqueues.
// reported: the task is only reported (a lookup's answer), so its replica list need
// only be well formed.
func (n *Node) checkTask(t *Task, reported bool) (Refusal, string) {
	switch {
	case t.ID == "" || len(t.ID) > MaxTaskIDLen:
		return RefusedTask, "task.id"
	case !ValidQueueName(t.Queue):
		return RefusedTask, "task.queue"
	case len(t.Name) > 500 || !validTaskName(t.Name):
		return RefusedTask, "task.name"
	case len(t.URL) > MaxTaskURLLen || !hasHTTPHost(t.URL):
		return RefusedTask, "task.url"
	case !validMethod(t.Method):
		return RefusedTask, "task.method"
	case !validHeaders(t.Headers):
		return RefusedTask, "task.headers"
	case len(t.ContentType) > MaxTaskHeaderBytes || !ValidHeaderValue(t.ContentType):
		return RefusedTask, "task.content_type"
	case n.cfg.MaxTaskBody > 0 && int64(len(t.Body)) > n.cfg.MaxTaskBody:
		return RefusedTask, "task.body"
	case t.Delivery > AtMostOnce:
		return RefusedType, "task.delivery"
	case t.ETA.IsZero() || !plausibleTime(t.ETA):
		return RefusedTask, "task.eta"
	case t.Created.IsZero() || !plausibleTime(t.Created):
		return RefusedTask, "task.created"
	case t.Created.After(n.latest()):
		return RefusedFuture, "task.created"
	}
	if !n.validReplicas(t.Replicas) && !((t.ListVersion > 0 || reported) && wellFormedList(t.Replicas)) {
		// A moved list (move.go) may name members added after this node's roster:
		// a removed node learns no newer roster, yet stores the list it is moved to.
		return RefusedTask, "task.replicas"
	}
	if n.cfg.CheckTaskURL != nil {
		if err := n.cfg.CheckTaskURL(t.URL); err != nil {
			return RefusedURL, "task.url"
		}
	}
	return RefusedNone, ""
}

// checkSetting checks a queue setting as the settings API checks a client's.
func (n *Node) checkSetting(s *QueueSetting) (Refusal, string) {
	switch {
	case !ValidQueueName(s.Queue):
		return RefusedSetting, "setting.queue"
	case !wellFormedOrigin(s.Origin):
		return RefusedSetting, "setting.origin"
	case s.Version == 0:
		return RefusedSetting, "setting.version"
	case s.Version > n.latestVersion():
		return RefusedFuture, "setting.version"
	case !s.PurgedBefore.IsZero() && !plausibleTime(s.PurgedBefore):
		return RefusedSetting, "setting.purged_before"
	case s.PurgedBefore.After(n.latest()):
		return RefusedFuture, "setting.purged_before"
	case s.Explicit&^AllSettingFields != 0:
		return RefusedSetting, "setting.explicit"
	case s.Config.Delivery > AtMostOnce:
		return RefusedType, "setting.delivery"
	case s.Config.Validate() != nil:
		return RefusedSetting, "setting.config"
	}
	return RefusedNone, ""
}

// checkSchedule checks a schedule as the schedules API checks a client's.
func (n *Node) checkSchedule(s *Schedule) (Refusal, string) {
	switch {
	case !scheduleName.MatchString(s.Name):
		return RefusedSchedule, "schedule.name"
	case !wellFormedOrigin(s.Origin):
		return RefusedSchedule, "schedule.origin"
	case s.Version == 0:
		return RefusedSchedule, "schedule.version"
	case s.Version > n.latestVersion():
		return RefusedFuture, "schedule.version"
	case !s.Created.IsZero() && !plausibleTime(s.Created):
		return RefusedSchedule, "schedule.created"
	case s.Created.After(n.latest()):
		return RefusedFuture, "schedule.created"
	case s.Missed > MissedOne:
		return RefusedType, "schedule.missed"
	case s.Deleted:
		return RefusedNone, ""
	case !validHeaders(s.Headers) || !ValidHeaderValue(s.ContentType) || len(s.URL) > MaxTaskURLLen:
		return RefusedSchedule, "schedule.task"
	case n.cfg.MaxTaskBody > 0 && int64(len(s.Body)) > n.cfg.MaxTaskBody:
		return RefusedSchedule, "schedule.body"
	case s.Method != "" && !validMethod(s.Method):
		return RefusedSchedule, "schedule.method"
	}
	c := *s
	if _, err := ValidateSchedule(&c, n.now()); err != nil {
		return RefusedSchedule, "schedule"
	}
	if n.cfg.CheckTaskURL != nil && n.cfg.CheckTaskURL(s.URL) != nil {
		return RefusedURL, "schedule.url"
	}
	return RefusedNone, ""
}

// latest is the latest time a peer's clock may read now: ours plus the drift.
func (n *Node) latest() time.Time { return n.now().Add(n.cfg.MaxClockDrift) }

// latestVersion is the highest setting or schedule version a peer may have made by
// now (see versionSlack).
func (n *Node) latestVersion() uint64 {
	return uint64(max(n.latest().Add(versionSlack).UnixMilli(), 0))
}

// newMemberSends reports whether m is a roster, or a roster's proposal, from a
// member of that roster, newer than this node's: a member this node does not
// know yet (the leader of a joiner, a member added while it was away); or the
// answer of a member of the roster this node is committing.
func (n *Node) newMemberSends(m *Message) bool {
	if m.Type == MsgRosterProposeResp {
		return n.change != nil && n.change.roster.Has(m.From) // a joiner storing its roster
	}
	return (m.Type == MsgRoster || m.Type == MsgRosterPropose) && m.Roster != nil &&
		m.Roster.Epoch > n.roster.Epoch && m.Roster.Has(m.From)
}

// isMember reports whether id is a member of the ring, or a member removed from
// it while this node ran (departed): tasks stored before a removal still name it
// as a replica, and it still answers for them (remove.go).
// wellFormedOrigin reports whether id may name the member that made a setting or
// a schedule: a node ID, which need not be a member this node knows. It was once
// required to be one (or one seen leaving), and a node that joined after the
// origin had left refused the setting or schedule for good: a schedule made
// through a member later replaced ran on elsewhere after a DELETE through the
// joiner, which had never learnt it (schedules-ship-of-theseus, stop 24). The
// origin only breaks ties between versions; a member could name any member in it
// anyway.
func wellFormedOrigin(id NodeID) bool { return id != "" && len(id) <= MaxNodeIDLen }

func (n *Node) isMember(id NodeID) bool {
	for _, m := range n.members {
		if m == id {
			return true
		}
	}
	return n.departed[id]
}

// validReplicas: one to min(64, members) distinct members (ranks are bits of a
// uint64).
func (n *Node) validReplicas(rs []NodeID) bool {
	if len(rs) == 0 || len(rs) > min(64, len(n.members)+len(n.departed)) {
		return false
	}
	for i, r := range rs {
		if !n.isMember(r) {
			return false
		}
		for _, o := range rs[:i] {
			if o == r {
				return false
			}
		}
	}
	return true
}

// checkRoster: an epoch above the static one, 1 to MaxMembers members sorted by
// ID and distinct, bounded IDs and addresses, and a leader among the members (or
// none).
func checkRoster(r *Roster) (Refusal, string) {
	if r.Epoch < 2 || r.Epoch > MaxEpoch {
		return RefusedRange, "roster.epoch"
	}
	if len(r.Members) == 0 || len(r.Members) > MaxMembers {
		return RefusedRange, "roster.members"
	}
	for i, m := range r.Members {
		switch {
		case m.ID == "" || len(m.ID) > MaxNodeIDLen:
			return RefusedRange, "roster.members.id"
		case i > 0 && r.Members[i-1].ID >= m.ID:
			return RefusedRange, "roster.members.order"
		case len(m.Addr) > MaxPeerAddrLen:
			return RefusedRange, "roster.members.addr"
		}
	}
	if r.Leader != "" && !r.Has(r.Leader) {
		return RefusedRange, "roster.leader"
	}
	if len(r.Removed) > MaxMembers {
		return RefusedRange, "roster.removed"
	}
	for i, id := range r.Removed {
		if id == "" || len(id) > MaxNodeIDLen || r.Has(id) || slices.Contains(r.Removed[:i], id) {
			return RefusedRange, "roster.removed"
		}
	}
	return RefusedNone, ""
}

// plausibleTime: between the Unix epoch and the latest ETA the API takes.
func plausibleTime(t time.Time) bool {
	s := t.Unix()
	return s >= 0 && s <= maxUnixSeconds
}

// validTaskName: App Engine's task names (empty: unnamed).
func validTaskName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// validMethod: one of TaskMethods, exactly (the API stores them in upper case).
func validMethod(m string) bool {
	for _, ok := range TaskMethods {
		if m == ok {
			return true
		}
	}
	return false
}

// validHeaders: at most MaxTaskHeaders, MaxTaskHeaderBytes of names and values,
// names that are tokens and not reserved (CheckTaskHeaderName), values without
// control characters.
func validHeaders(hs []Header) bool {
	if len(hs) > MaxTaskHeaders {
		return false
	}
	size := 0
	for _, h := range hs {
		size += len(h.Name) + len(h.Value)
		if size > MaxTaskHeaderBytes || !ValidHeaderName(h.Name) || !ValidHeaderValue(h.Value) || CheckTaskHeaderName(h.Name) != nil {
			return false
		}
	}
	return true
}

// ValidHeaderName reports whether s is an RFC 9110 token: a valid header name.
func ValidHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case bytes.IndexByte([]byte("!#$%&'*+-.^_`|~"), c) >= 0:
		default:
			return false
		}
	}
	return true
}

// ValidHeaderValue reports whether v can be sent as a header value: no control
// characters but tab.
func ValidHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// wellFormedList: one to 64 distinct, non-empty IDs of at most MaxNodeIDLen bytes.
func wellFormedList(rs []NodeID) bool {
	if len(rs) == 0 || len(rs) > 64 {
		return false
	}
	for i, r := range rs {
		if r == "" || len(r) > MaxNodeIDLen || slices.Contains(rs[:i], r) {
			return false
		}
	}
	return true
}
