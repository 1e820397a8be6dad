package node

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The door's rules, one at a time: n3 (bootAcceptor) is stepped a message that
// breaks one rule, and must neither answer nor change, and count the refusal.

func (a *acceptorEnv) MessageRefused(_ Message, reason Refusal, _ string) {
	a.refusals = append(a.refusals, reason)
}

// doorTask is a task n3 takes: valid in every field.
func doorTask(now time.Time) *Task {
	return &Task{ID: "0b1d3f57-8a2e-4c6b-9d1e-2f3a4b5c6d7e", Queue: "mail", URL: "https://worker.example/send", Method: "POST",
		Headers: []Header{{"X-Trace", "abc"}}, ContentType: "application/json", Body: []byte(`{"to":"a"}`),
		ETA: now.Add(time.Minute), Created: now, Nonce: 77, Replicas: acceptorMembers}
}

func storeOf(t *Task) Message {
	return Message{Type: MsgStore, From: "n1", To: "n3", TaskID: t.ID, Task: t}
}

func TestDoorRefusesEachBrokenRule(t *testing.T) {
	now := epoch
	cases := []struct {
		name   string
		msg    func() Message
		reason Refusal
	}{
		{"unknown type", func() Message { m := storeOf(doorTask(now)); m.Type = MaxMsgType + 1; return m }, RefusedType},
		{"sender not a member", func() Message { m := storeOf(doorTask(now)); m.From = "evil"; return m }, RefusedSender},
		{"sender is this node", func() Message { m := storeOf(doorTask(now)); m.From = "n3"; return m }, RefusedSender},
		{"for another node", func() Message { m := storeOf(doorTask(now)); m.To = "n2"; return m }, RefusedSender},
		{"task ID differs from the message's", func() Message { m := storeOf(doorTask(now)); m.TaskID = "other"; return m }, RefusedTask},
		{"task ID too long", func() Message {
			tk := doorTask(now)
			tk.ID = strings.Repeat("a", MaxTaskIDLen+1)
			return storeOf(tk)
		}, RefusedRange},
		{"method CONNECT", func() Message { tk := doorTask(now); tk.Method = "CONNECT"; return storeOf(tk) }, RefusedTask},
		{"method in lower case", func() Message { tk := doorTask(now); tk.Method = "get"; return storeOf(tk) }, RefusedTask},
		{"URL not http", func() Message { tk := doorTask(now); tk.URL = "gopher://x/"; return storeOf(tk) }, RefusedTask},
		{"URL too long", func() Message {
			tk := doorTask(now)
			tk.URL = "http://w/" + strings.Repeat("a", MaxTaskURLLen)
			return storeOf(tk)
		}, RefusedTask},
		{"header name with a space", func() Message {
			tk := doorTask(now)
			tk.Headers = []Header{{"Bad Name", "v"}}
			return storeOf(tk)
		}, RefusedTask},
		{"reserved header name, underscore twin", func() Message {
			tk := doorTask(now)
			tk.Headers = []Header{{"X_Task_Id", "forged"}}
			return storeOf(tk)
		}, RefusedTask},
		{"hop-by-hop header", func() Message {
			tk := doorTask(now)
			tk.Headers = []Header{{"Transfer-Encoding", "chunked"}}
			return storeOf(tk)
		}, RefusedTask},
		{"header value with a line break", func() Message {
			tk := doorTask(now)
			tk.Headers = []Header{{"X-A", "v\r\nX-Injected: 1"}}
			return storeOf(tk)
		}, RefusedTask},
		{"too many headers", func() Message {
			tk := doorTask(now)
			tk.Headers = make([]Header, MaxTaskHeaders+1)
			for i := range tk.Headers {
				tk.Headers[i] = Header{"X-H", "v"}
			}
			return storeOf(tk)
		}, RefusedTask},
		{"bad queue name", func() Message { tk := doorTask(now); tk.Queue = "../etc"; return storeOf(tk) }, RefusedTask},
		{"bad task name", func() Message { tk := doorTask(now); tk.Name = "a b"; return storeOf(tk) }, RefusedTask},
		{"no replica is this node", func() Message {
			tk := doorTask(now)
			tk.Replicas = []NodeID{"n1", "n2"}
			return storeOf(tk)
		}, RefusedTask},
		{"a replica not a member", func() Message {
			tk := doorTask(now)
			tk.Replicas = []NodeID{"n1", "evil", "n3"}
			return storeOf(tk)
		}, RefusedTask},
		{"a replica's status answer with a replica twice", func() Message {
			tk := doorTask(now)
			tk.Replicas = []NodeID{"n1", "n1", "n3"}
			return Message{Type: MsgStatusResp, From: "n1", To: "n3", TaskID: tk.ID, Task: tk, State: StateSucceeded}
		}, RefusedTask},
		{"a replica twice", func() Message {
			tk := doorTask(now)
			tk.Replicas = []NodeID{"n3", "n3", "n1"}
			return storeOf(tk)
		}, RefusedTask},
		{"created past the drift", func() Message {
			tk := doorTask(now)
			tk.Created = now.Add(2 * time.Second)
			return storeOf(tk)
		}, RefusedFuture},
		{"ETA in year 9999", func() Message {
			tk := doorTask(now)
			tk.ETA = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
			return storeOf(tk)
		}, RefusedTask},
		{"delivery mode unknown", func() Message { tk := doorTask(now); tk.Delivery = 9; return storeOf(tk) }, RefusedType},
		{"state unknown", func() Message { m := storeOf(doorTask(now)); m.State = 200; return m }, RefusedType},
		{"attempt near overflow", func() Message {
			return Message{Type: MsgClaim, From: "n1", To: "n3", TaskID: "x", Attempt: math.MaxUint64, Lease: time.Second}
		}, RefusedRange},
		{"negative retries", func() Message { m := storeOf(doorTask(now)); m.Retries = -1; return m }, RefusedRange},
		{"failed bits without a failed attempt", func() Message {
			m := storeOf(doorTask(now))
			m.Retries, m.FailedBits = 1, 1
			return m
		}, RefusedRange},
		{"failed attempt without its bit", func() Message {
			m := storeOf(doorTask(now))
			m.Retries, m.Failed, m.FailedBits = 2, 3, 0b10
			return m
		}, RefusedRange},
		{"failed bits more than retries", func() Message {
			m := storeOf(doorTask(now))
			m.Retries, m.Failed, m.FailedBits = 2, 3, 0b111
			return m
		}, RefusedRange},
		{"lease of years", func() Message {
			return Message{Type: MsgClaim, From: "n1", To: "n3", TaskID: "x", Attempt: 1, Lease: 10 * 365 * 24 * time.Hour}
		}, RefusedRange},
		{"holder not a member", func() Message {
			return Message{Type: MsgClaimResp, From: "n1", To: "n3", TaskID: "x", Attempt: 1, Holder: "evil"}
		}, RefusedRange},
		{"status attempts too many", func() Message {
			return Message{Type: MsgStatusResp, From: "n1", To: "n3", TaskID: "x", Attempts: make([]DeliveryAttempt, MaxAttemptHistory+1)}
		}, RefusedRange},
		{"outcome that is not final", func() Message {
			tk := doorTask(now)
			return Message{Type: MsgOutcome, From: "n1", To: "n3", TaskID: tk.ID, Task: tk, State: StateScheduled}
		}, RefusedType},
		{"done without its task", func() Message {
			return Message{Type: MsgOutcome, From: "n1", To: "n3", TaskID: doorTask(now).ID, State: StateSucceeded, Attempt: 1}
		}, RefusedForged},
		{"setting version 2^64-1", func() Message {
			return settingMsg(QueueSetting{Queue: "mail", Config: DefaultQueueConfig(), Version: math.MaxUint64, Origin: "n1"})
		}, RefusedFuture},
		{"purge in year 9999", func() Message {
			return settingMsg(QueueSetting{Queue: "mail", Config: DefaultQueueConfig(), Version: uint64(now.UnixMilli()), Origin: "n1",
				PurgedBefore: time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)})
		}, RefusedSetting},
		{"purge a minute ahead", func() Message {
			return settingMsg(QueueSetting{Queue: "mail", Config: DefaultQueueConfig(), Version: uint64(now.UnixMilli()), Origin: "n1",
				PurgedBefore: now.Add(time.Minute)})
		}, RefusedFuture},
		{"setting rate below the minimum", func() Message {
			c := DefaultQueueConfig()
			c.Rate, c.BucketSize = 1e-12, 1
			return settingMsg(QueueSetting{Queue: "mail", Config: c, Version: uint64(now.UnixMilli()), Origin: "n1"})
		}, RefusedSetting},
		{"setting with no origin", func() Message {
			return settingMsg(QueueSetting{Queue: "mail", Config: DefaultQueueConfig(), Version: uint64(now.UnixMilli()), Origin: ""})
		}, RefusedSetting},
		{"schedule origin too long", func() Message {
			s := Schedule{Name: "beat", Cron: "@every 10s", Queue: "mail", URL: "http://w/", Method: "POST", Created: now, Version: 5, Origin: NodeID(strings.Repeat("n", MaxNodeIDLen+1))}
			return Message{Type: MsgScheduleSet, From: "n1", To: "n3", Schedule: &s}
		}, RefusedSchedule},
		{"schedule version 2^64-1", func() Message {
			s := Schedule{Name: "beat", Cron: "@every 10s", Queue: "mail", URL: "http://w/", Method: "POST", Created: now, Version: math.MaxUint64, Origin: "n1"}
			return Message{Type: MsgScheduleSet, From: "n1", To: "n3", Schedule: &s}
		}, RefusedFuture},
		{"schedule with a bad cron", func() Message {
			s := Schedule{Name: "beat", Cron: "every now and then", Queue: "mail", URL: "http://w/", Method: "POST", Created: now, Version: 5, Origin: "n1"}
			return Message{Type: MsgScheduleSet, From: "n1", To: "n3", Schedule: &s}
		}, RefusedSchedule},
		{"counts for a bad queue name", func() Message {
			return Message{Type: MsgCountResp, From: "n1", To: "n3", Counts: []QueueCount{{Queue: "", State: StateScheduled, N: 1}}}
		}, RefusedRange},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env := &acceptorEnv{now: now}
			n := bootAcceptor(t, env, 1)
			n.Step(c.msg())
			env.flush()
			assert.Empty(t, env.take(), "a refused message is not answered")
			assert.Equal(t, []Refusal{c.reason}, env.refusals)
			assert.Equal(t, map[Refusal]uint64{c.reason: 1}, n.Refused())
			assert.Empty(t, n.TaskIDs(), "nothing stored")
			_, ok := n.QueueSetting("mail")
			assert.False(t, ok, "no setting adopted")
		})
	}
}

func settingMsg(s QueueSetting) Message {
	return Message{Type: MsgQueueSet, From: "n1", To: "n3", Setting: &s}
}

// The valid messages the cases above start from are taken: the door refuses only
// what breaks a rule.
func TestDoorAdmitsValidMessages(t *testing.T) {
	now := epoch
	env := &acceptorEnv{now: now}
	n := bootAcceptor(t, env, 1)
	tk := doorTask(now)
	tk.Created = now.Add(900 * time.Millisecond) // a coordinator's clock ahead, within the drift
	// Given back with three failures, two of them located (attempts 5 and 3).
	given := storeOf(tk)
	given.Retries, given.Failed, given.FailedBits = 3, 5, 0b101
	n.Step(given)
	env.flush()
	require.Equal(t, []string{tk.ID}, n.TaskIDs())
	st, _ := n.Task(tk.ID)
	assert.Equal(t, 3, st.Retries)
	n.Step(settingMsg(QueueSetting{Queue: "mail", Config: DefaultQueueConfig(), Version: uint64(now.UnixMilli()) + 500, Origin: "n1", Paused: true, PurgedBefore: now}))
	env.flush()
	s, ok := n.QueueSetting("mail")
	require.True(t, ok)
	assert.True(t, s.Paused)
	assert.Empty(t, env.refusals)
	assert.Empty(t, n.Refused())
}

// A forged Done: a member ID and the task's ID (a named task's is derivable) but
// not the task itself (its nonce is never shown outside the replicas). It is
// refused and the task stays scheduled; the replica's real Done is taken.
// Two enqueues of one name (a client re-sent it through another node after a
// timeout) can leave the replicas holding different nonces of one ID. Claims are per
// ID, so the holder of this replica's grant delivered the ID: its Outcome is taken
// whatever the nonce. Any other node's Outcome with another nonce is not taken, but
// answered with the final state held here, so that a replica of the other enqueue
// that ended the task unknown learns what became of it.
func TestOutcomeOfAnotherEnqueueOfTheName(t *testing.T) {
	now := epoch
	env := &acceptorEnv{now: now}
	n := bootAcceptor(t, env, 1)
	tk := doorTask(now)
	tk.ETA = now
	step(env, n, storeOf(tk))
	other := *tk
	other.Nonce = tk.Nonce + 1

	// n2 holds the other enqueue; it was granted attempt 1 here and delivered it.
	resp := claim(t, env, n, &other, "n2", 1, 1)
	require.Zero(t, resp.Reject, "claims are per ID")
	n.Step(Message{Type: MsgOutcome, From: "n1", To: "n3", TaskID: tk.ID, Task: &other, State: StateSucceeded, Attempt: 1})
	env.flush()
	assert.Empty(t, env.take(), "n1 holds no grant of attempt 1 here: not taken, nothing final to tell")
	st, _ := n.Task(tk.ID)
	require.False(t, st.State.Final())

	step(env, n, Message{Type: MsgOutcome, From: "n2", To: "n3", TaskID: tk.ID, Task: &other, State: StateSucceeded, Attempt: 1})
	st, _ = n.Task(tk.ID)
	require.Equal(t, StateSucceeded, st.State, "the holder of the grant delivered the ID")

	// n1 ended its enqueue of the name unknown and asks: told succeeded.
	n.Step(Message{Type: MsgOutcome, From: "n1", To: "n3", TaskID: tk.ID, Task: &other, State: StateUnknown, Attempt: 1})
	env.flush()
	sent := env.take()
	require.Len(t, sent, 1)
	assert.Equal(t, MsgOutcomeResp, sent[0].Type)
	assert.Equal(t, StateSucceeded, sent[0].State)
	st, _ = n.Task(tk.ID)
	assert.Equal(t, StateSucceeded, st.State)
}

func TestDoorRefusesADoneForAnotherTask(t *testing.T) {
	now := epoch
	env := &acceptorEnv{now: now}
	n := bootAcceptor(t, env, 1)
	tk := doorTask(now)
	n.Step(storeOf(tk))
	env.flush()
	env.take()

	forged := *tk
	forged.Nonce = 1
	n.Step(Message{Type: MsgOutcome, From: "n1", To: "n3", TaskID: tk.ID, Task: &forged, State: StateSucceeded, Attempt: 1})
	env.flush()
	assert.Empty(t, env.take())
	assert.Equal(t, []Refusal{RefusedForged}, env.refusals)
	st, _ := n.Task(tk.ID)
	assert.Equal(t, StateScheduled, st.State)

	n.Step(Message{Type: MsgOutcome, From: "n1", To: "n3", TaskID: tk.ID, Task: tk, State: StateSucceeded, Attempt: 1})
	env.flush()
	st, _ = n.Task(tk.ID)
	assert.Equal(t, StateSucceeded, st.State)
}

// A setting or schedule whose origin this node never knew (a member removed before
// this node joined) is taken: the origin only breaks ties between versions.
// (Refused once, a joiner never learnt a schedule made through a member replaced
// before it joined: schedules-ship-of-theseus, stop 24.)
func TestDoorTakesAnOriginThatLeftBeforeThisNodeJoined(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	env := &acceptorEnv{now: now}
	n := bootAcceptor(t, env, 1)
	n.Step(settingMsg(QueueSetting{Queue: "mail", Config: DefaultQueueConfig(), Version: uint64(now.UnixMilli()), Origin: "n9"}))
	s := Schedule{Name: "beat", Cron: "@every 10s", Queue: "mail", URL: "http://w/", Method: "POST", Created: now, Version: uint64(now.UnixMilli()), Origin: "n9"}
	n.Step(Message{Type: MsgScheduleSet, From: "n1", To: "n3", Schedule: &s})
	env.flush()
	assert.Empty(t, env.refusals)
	_, ok := n.QueueSetting("mail")
	assert.True(t, ok, "the setting is adopted")
	_, ok = n.Schedule("beat")
	assert.True(t, ok, "the schedule is adopted")
}

// A replica's answer to a lookup may name, in the task's replica list, a member
// this node never knew (removed before it joined: a task final by then keeps its
// list): it is admitted, as it only reports the task; the same list in a Store is
// refused (TestDoorRefusesEachBrokenRule, "a replica not a member").
func TestDoorAdmitsStatusNamingRemovedMember(t *testing.T) {
	env := &acceptorEnv{now: epoch}
	n := bootAcceptor(t, env, 1)
	tk := doorTask(epoch)
	tk.Replicas = []NodeID{"n1", "gone", "n2"}
	n.Step(Message{Type: MsgStatusResp, From: "n1", To: "n3", TaskID: tk.ID, Task: tk, State: StateSucceeded})
	env.flush()
	assert.Empty(t, env.refusals)
	assert.Empty(t, n.Refused())

	n.Step(storeOf(tk))
	env.flush()
	assert.Equal(t, []Refusal{RefusedTask}, env.refusals)
}
