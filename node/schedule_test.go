package node

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseCronForms(t *testing.T) {
	at := func(s string) time.Time {
		tm, err := time.Parse(time.RFC3339, s)
		require.NoError(t, err)
		return tm.UTC()
	}
	cases := []struct {
		expr, zone, after string
		want              []string
	}{
		{"* * * * * *", "", "2030-01-01T00:00:00Z", []string{"2030-01-01T00:00:01Z", "2030-01-01T00:00:02Z"}},
		{"*/15 * * * * *", "", "2030-01-01T00:00:07Z", []string{"2030-01-01T00:00:15Z", "2030-01-01T00:00:30Z"}},
		{"0 3 * * *", "", "2030-01-01T00:00:00Z", []string{"2030-01-01T03:00:00Z", "2030-01-02T03:00:00Z"}},
		// Paris is UTC+1 in January and UTC+2 in July.
		{"0 3 * * *", "Europe/Paris", "2030-01-01T00:00:00Z", []string{"2030-01-01T02:00:00Z", "2030-01-02T02:00:00Z"}},
		{"0 3 * * *", "Europe/Paris", "2030-07-01T00:00:00Z", []string{"2030-07-01T01:00:00Z"}},
		{"@hourly", "", "2030-01-01T00:30:00Z", []string{"2030-01-01T01:00:00Z", "2030-01-01T02:00:00Z"}},
		// @every counts from the Unix epoch, whenever it is asked.
		{"@every 10s", "", "2030-01-01T00:00:03Z", []string{"2030-01-01T00:00:10Z", "2030-01-01T00:00:20Z"}},
		{"@every 10s", "", "2030-01-01T00:00:10Z", []string{"2030-01-01T00:00:20Z"}},
		{"@every 7s", "", "1969-12-31T23:59:50Z", []string{"1969-12-31T23:59:53Z", "1970-01-01T00:00:00Z", "1970-01-01T00:00:07Z"}},
	}
	for _, c := range cases {
		t.Run(c.expr+" "+c.zone, func(t *testing.T) {
			spec, err := ParseCron(c.expr, c.zone)
			require.NoError(t, err)
			tm := at(c.after)
			for _, w := range c.want {
				tm = spec.Next(tm)
				require.Equal(t, at(w), tm)
				require.Equal(t, time.UTC, tm.Location())
			}
		})
	}
	// Half a second past a tick, the next is the one after.
	spec, err := ParseCron("@every 5s", "")
	require.NoError(t, err)
	require.Equal(t, at("2030-01-01T00:00:05Z"), spec.Next(at("2030-01-01T00:00:00Z").Add(500*time.Millisecond)))
}

func TestParseCronErrorsNameTheField(t *testing.T) {
	cases := []struct{ expr, zone, field, says string }{
		{"", "", "cron", "is required"},
		{"* * *", "", "cron", "expected"},
		{"61 * * * * *", "", "cron", "61"},
		{"@fortnightly", "", "cron", "unrecognized descriptor"},
		{"TZ=Europe/Paris * * * * *", "", "cron", "time_zone"},
		{"* * * * *", "Mars/Olympus", "time_zone", "IANA"},
		{"* * * * *", "Local", "time_zone", "differs from node to node"},
	}
	for _, c := range cases {
		_, err := ParseCron(c.expr, c.zone)
		var fe *FieldError
		require.True(t, errors.As(err, &fe), "%q %q: %v", c.expr, c.zone, err)
		require.Equal(t, c.field, fe.Field, "%q", c.expr)
		require.Contains(t, fe.Message, c.says)
	}
}

func TestValidateSchedule(t *testing.T) {
	now := epoch
	ok := Schedule{Name: "nightly", Cron: "0 3 * * *", URL: "http://w/x"}
	spec, err := ValidateSchedule(&ok, now)
	require.NoError(t, err)
	require.NotNil(t, spec)
	require.Equal(t, "default", ok.Queue)
	require.Equal(t, "POST", ok.Method)
	bad := []struct {
		s     Schedule
		field string
	}{
		{Schedule{Name: "", Cron: "@hourly", URL: "http://w/"}, "name"},
		{Schedule{Name: "a b", Cron: "@hourly", URL: "http://w/"}, "name"},
		{Schedule{Name: strings.Repeat("a", 101), Cron: "@hourly", URL: "http://w/"}, "name"},
		{Schedule{Name: "x", Cron: "@hourly"}, "task.url"},
		{Schedule{Name: "x", Cron: "@hourly", URL: "ftp://w/"}, "task.url"},
		{Schedule{Name: "x", Cron: "0 0 30 2 *", URL: "http://w/"}, "cron"}, // 30 February
		{Schedule{Name: "x", Cron: "@hourly", URL: "http://w/", Missed: 7}, "missed"},
	}
	for _, b := range bad {
		_, err := ValidateSchedule(&b.s, now)
		var fe *FieldError
		require.True(t, errors.As(err, &fe), "%+v: %v", b.s, err)
		require.Equal(t, b.field, fe.Field)
	}
	_, err = ParseMissedPolicy("all")
	require.ErrorContains(t, err, "skip")
	for s, want := range map[string]MissedPolicy{"": MissedSkip, "skip": MissedSkip, "one": MissedOne} {
		p, err := ParseMissedPolicy(s)
		require.NoError(t, err)
		require.Equal(t, want, p)
		if s != "" {
			require.Equal(t, s, p.String())
		}
	}
}

// durableDisk is a Storage that keeps across restarts every record a Sync covered.
type durableDisk struct {
	h       *harness
	synced  []Record
	pending []Record
}

type durableView struct{ d *durableDisk }

func (v durableView) Durable() bool           { return true }
func (v durableView) Append(recs ...Record)   { v.d.pending = append(v.d.pending, recs...) }
func (v durableView) Load() ([]Record, error) { return append([]Record(nil), v.d.synced...), nil }
func (v durableView) Sync(done func())        { v.d.sync(done) }
func (d *durableDisk) sync(done func()) {
	recs := d.pending
	d.pending = nil
	d.h.schedule(time.Millisecond, func() { d.synced = append(d.synced, recs...); done() })
}
func (h *harness) giveDisks() map[NodeID]*durableDisk {
	disks := map[NodeID]*durableDisk{}
	for _, id := range h.order {
		d := &durableDisk{h: h}
		disks[id] = d
		h.nodes[id].storage = func() Storage { return durableView{d} }
	}
	return disks
}

// putSchedule makes a client's PUT through node via and runs until it is answered.
func (h *harness) putSchedule(via NodeID, s Schedule) (Schedule, error) {
	var got Schedule
	var err error
	done := false
	h.node(via).PutSchedule(s, func(r Schedule, e error) { got, err, done = r, e, true })
	for i := 0; !done && i < 100; i++ {
		h.run(h.elapsed() + 100*time.Millisecond)
	}
	require.True(h.t, done, "PutSchedule never answered")
	return got, err
}

// tickDeliveries counts the deliveries of a schedule's tasks by tick (Unix seconds)
// and checks that each started at or after its tick, within late of it.
func (h *harness) tickDeliveries(schedule string, late time.Duration) map[int64]int {
	out := map[int64]int{}
	for _, d := range h.deliveries {
		rest, ok := strings.CutPrefix(d.Name, schedule+"-")
		if !ok {
			continue
		}
		sec, err := strconv.ParseInt(rest, 10, 64)
		require.NoError(h.t, err)
		tick := time.Unix(sec, 0).Sub(epoch)
		require.Equal(h.t, tick, d.ETA, "the task of tick %d is due at its tick", sec)
		require.GreaterOrEqual(h.t, d.At, tick, "tick %d delivered early", sec)
		if late > 0 {
			require.LessOrEqual(h.t, d.At, tick+late, "tick %d delivered %s late", sec, d.At-tick)
		}
		out[sec]++
	}
	return out
}

// requireEveryTickOnce: every tick from `from` to `to` (virtual times, every
// `every`) was delivered exactly once, and no other tick at all.
func requireEveryTickOnce(t *testing.T, got map[int64]int, from, to, every time.Duration) {
	t.Helper()
	want := map[int64]int{}
	for d := from; d <= to; d += every {
		want[epoch.Add(d).Unix()] = 1
	}
	for sec, n := range got {
		if _, ok := want[sec]; !ok && sec >= epoch.Add(from).Unix() && sec <= epoch.Add(to).Unix() {
			t.Errorf("tick %s is not a tick of the schedule", time.Unix(sec, 0).Sub(epoch))
		}
		if n > 1 {
			t.Errorf("tick %s delivered %d times", time.Unix(sec, 0).Sub(epoch), n)
		}
	}
	for sec := range want {
		if got[sec] == 0 {
			t.Errorf("tick %s never delivered", time.Unix(sec, 0).Sub(epoch))
		}
	}
}

// establishedCluster is the configuration of the schedule tests' nodes: in memory,
// a node answers no to the token lease's rounds, which ticks need, for its recovery
// wait (37 s with the defaults) after every start, so that a fresh cluster runs no
// tick for that long (schedule.go, "Ticks and the roster"). These tests are about
// the ticks of a cluster past that: its nodes wait a millisecond.
func establishedCluster(c *Config) { c.RecoveryWait = time.Millisecond }

// A fresh cluster in memory runs no tick before a majority of its members is past
// its recovery wait; then every tick.
func TestScheduleFreshClusterWaitsForTheLease(t *testing.T) {
	h := newHarness(t, 3, 1, func(c *Config) { c.Lease = 8 * time.Second; c.MaxClockDrift = 500 * time.Millisecond })
	_, err := h.putSchedule("n2", Schedule{Name: "beat", Cron: "* * * * * *", URL: "http://w/beat"})
	require.NoError(t, err)
	h.run(40 * time.Second)
	ticks := h.tickDeliveries("beat", 0)
	// Started 2 s before zero: the wait (8 s + 1 s + 5 s) ends at 12 s, and a tick is
	// enqueued from a second before it (its last replica's slot two seconds later).
	for _, d := range h.deliveries {
		require.GreaterOrEqual(t, d.At, 12*time.Second, "a tick delivered before the lease could be held")
	}
	require.NotContains(t, ticks, epoch.Add(9*time.Second).Unix(), "every slot of tick 9 s came before the lease")
	requireEveryTickOnce(t, ticks, 14*time.Second, 39*time.Second, time.Second)
}

// Three nodes all run the schedule; every tick is delivered once, on time: its
// first replica enqueues it ahead of the tick.
func TestScheduleEveryTickOnce(t *testing.T) {
	h := newHarness(t, 3, 1, establishedCluster)
	got, err := h.putSchedule("n2", Schedule{Name: "beat", Cron: "*/2 * * * * *", URL: "http://w/beat", Queue: "cron"})
	require.NoError(t, err)
	require.Equal(t, "cron", got.Queue)
	for _, id := range h.order {
		s, ok := h.node(id).Schedule("beat")
		require.True(t, ok, "%s holds the schedule", id)
		require.Equal(t, got.Version, s.Version)
	}
	h.run(41 * time.Second)
	ticks := h.tickDeliveries("beat", 200*time.Millisecond)
	requireEveryTickOnce(t, ticks, 2*time.Second, 40*time.Second, 2*time.Second)
	// The later replicas found the task held (or final) and added no Store round of
	// their own beyond one per tick and replica.
	stores := 0
	for _, s := range h.sent {
		if s.Msg.Type == MsgStore {
			stores++
		}
	}
	require.LessOrEqual(t, stores, 3*3*len(ticks), "Stores per tick")
}

// A node crashes (losing its memory) and comes back: the other replicas take the
// ticks whose turn was its own, and the restarted node learns the schedule from
// the others. No tick is missed or run twice.
func TestScheduleSurvivesACrash(t *testing.T) {
	h := newHarness(t, 3, 2, establishedCluster)
	_, err := h.putSchedule("n1", Schedule{Name: "beat", Cron: "* * * * * *", URL: "http://w/beat"})
	require.NoError(t, err)
	h.at(10*time.Second+300*time.Millisecond, func() { h.crash("n1") })
	h.at(20*time.Second, func() { h.restart("n1") })
	h.run(60 * time.Second)
	_, ok := h.node("n1").Schedule("beat")
	require.True(t, ok, "the restarted node learnt the schedule")
	requireEveryTickOnce(t, h.tickDeliveries("beat", 0), time.Second, 59*time.Second, time.Second)
}

// A tick's first replica is cut off: the second one enqueues it.
func TestScheduleTickSurvivesAnIsolatedFirstReplica(t *testing.T) {
	h := newHarness(t, 3, 3, establishedCluster)
	_, err := h.putSchedule("n1", Schedule{Name: "beat", Cron: "* * * * * *", URL: "http://w/beat"})
	require.NoError(t, err)
	h.at(5*time.Second, func() { h.isolate("n3") })
	h.at(25*time.Second, func() { h.heal() })
	h.run(45 * time.Second)
	requireEveryTickOnce(t, h.tickDeliveries("beat", 0), time.Second, 44*time.Second, time.Second)
}

// Deleting a schedule stops its ticks on every node; an older copy gossiped later
// does not bring it back.
func TestScheduleDelete(t *testing.T) {
	h := newHarness(t, 3, 4, nil)
	old, err := h.putSchedule("n1", Schedule{Name: "beat", Cron: "* * * * * *", URL: "http://w/beat"})
	require.NoError(t, err)
	h.run(5 * time.Second)
	var delErr error
	deleted := false
	h.node("n2").DeleteSchedule("beat", func(_ Schedule, e error) { delErr, deleted = e, true })
	h.run(6 * time.Second)
	require.True(t, deleted)
	require.NoError(t, delErr)
	n3 := h.node("n3")
	n3.Step(Message{Type: MsgScheduleSet, From: "n1", To: "n3", Schedule: &old})
	h.run(20 * time.Second)
	for _, id := range h.order {
		_, ok := h.node(id).Schedule("beat")
		require.False(t, ok, "%s still runs the deleted schedule", id)
		require.Empty(t, h.node(id).Schedules())
	}
	last := int64(0)
	for sec := range h.tickDeliveries("beat", 0) {
		last = max(last, sec)
	}
	require.LessOrEqual(t, time.Unix(last, 0).Sub(epoch), 7*time.Second, "ticks after the deletion")
	var missing error
	h.node("n1").DeleteSchedule("beat", func(_ Schedule, e error) { missing = e })
	require.ErrorIs(t, missing, ErrScheduleNotFound)
}

// A member that missed the PUT (down) answers it 503-style, and learns the
// schedule by gossip once it is back.
func TestScheduleSpreadsByGossip(t *testing.T) {
	h := newHarness(t, 3, 5, nil)
	h.isolate("n3")
	_, err := h.putSchedule("n1", Schedule{Name: "beat", Cron: "@every 5s", URL: "http://w/beat"})
	require.ErrorIs(t, err, ErrNotEveryMember)
	_, ok := h.node("n3").Schedule("beat")
	require.False(t, ok)
	h.heal()
	h.run(h.elapsed() + 20*time.Second)
	_, ok = h.node("n3").Schedule("beat")
	require.True(t, ok, "gossip brought the schedule to n3")
}

// The whole cluster is down across two ticks, then restarts from its logs.
// "skip" runs neither; "one" runs the latest of them, once, late.
func TestScheduleMissedTicksPolicy(t *testing.T) {
	for _, policy := range []MissedPolicy{MissedSkip, MissedOne} {
		t.Run(policy.String(), func(t *testing.T) {
			h := newHarness(t, 3, 6, nil)
			h.giveDisks()
			for _, id := range h.order { // the disks apply from the next start on
				h.crash(id)
				h.restart(id)
			}
			h.run(h.elapsed() + 3*time.Second)
			start := h.elapsed()
			_, err := h.putSchedule("n1", Schedule{Name: "ten", Cron: "*/10 * * * * *", URL: "http://w/ten", Missed: policy})
			require.NoError(t, err)
			h.at(start+15*time.Second, func() {
				for _, id := range h.order {
					h.crash(id)
				}
			})
			// Back before the next tick's first slot: the latest tick before now is
			// the second missed one.
			h.at(start+33*time.Second, func() {
				for _, id := range h.order {
					h.restart(id)
				}
			})
			h.run(start + 55*time.Second)
			ticks := h.tickDeliveries("ten", 0)
			var ran []string
			for sec, n := range ticks {
				require.Equal(t, 1, n, "tick %d", sec)
				ran = append(ran, fmt.Sprint(time.Unix(sec, 0).Sub(epoch)))
			}
			missed1 := epoch.Add(start + 20*time.Second).Truncate(10 * time.Second).Unix()
			missed2 := missed1 + 10
			require.Zero(t, ticks[missed1], "an older missed tick never runs (ran %v)", ran)
			if policy == MissedSkip {
				require.Zero(t, ticks[missed2], "skip: the latest missed tick does not run (ran %v)", ran)
			} else {
				require.Equal(t, 1, ticks[missed2], "one: the latest missed tick runs once (ran %v)", ran)
			}
			require.Equal(t, 1, ticks[missed2+10], "the ticks after the restart run (ran %v)", ran)
		})
	}
}

// Two nodes that enqueue one tick at once store one task: the tick's task is the
// same on every node.
func TestTickTaskIsTheSameOnEveryNode(t *testing.T) {
	h := newHarness(t, 3, 7, nil)
	s := &Schedule{Name: "beat", Cron: "* * * * * *", URL: "http://w/", Queue: "q", Method: "POST", Version: 3}
	tick := epoch.Add(time.Hour)
	a, b := h.node("n1").tickTask(s, tick), h.node("n2").tickTask(s, tick)
	require.Equal(t, a, b)
	require.Equal(t, "beat-"+strconv.FormatInt(tick.Unix(), 10), a.Name)
	require.Equal(t, tick, a.ETA)
	s2 := *s
	s2.URL, s2.Version = "http://other/", 4
	c := h.node("n3").tickTask(&s2, tick)
	require.Equal(t, a.ID, c.ID, "a new version keeps the tick's task ID")
	require.Equal(t, a.Nonce, c.Nonce, "and its nonce")
	require.NotEqual(t, a.ID, h.node("n1").tickTask(s, tick.Add(time.Second)).ID)
}

// A compaction keeps the newest record of each schedule, a deletion included.
func TestCompactionKeepsTheNewestSchedule(t *testing.T) {
	h := newHarness(t, 1, 8, nil)
	n := h.node("n1")
	n.input(func() {
		n.adoptSchedule(&Schedule{Name: "a", Cron: "@hourly", URL: "http://w/", Version: 1})
		n.adoptSchedule(&Schedule{Name: "a", Cron: "@hourly", URL: "http://w/", Version: 2, Deleted: true})
	})
	_, ok := n.Schedule("a")
	require.False(t, ok, "deleted")
	p := n.CompactionPolicy()
	require.False(t, p.Keep(&Record{Kind: RecSchedule, Schedule: &Schedule{Name: "a", Version: 1}}))
	require.True(t, p.Keep(&Record{Kind: RecSchedule, Schedule: &Schedule{Name: "a", Version: 2, Deleted: true}}))
	require.True(t, p.Keep(&Record{Kind: RecSchedule, Schedule: &Schedule{Name: "b", Version: 1}}), "logged after the policy was taken")
}
