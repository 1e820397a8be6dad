package node

import (
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
)

// BenchmarkAcceptorMessages is one replica's side of a task that succeeds at once:
// a Store, a Claim and an Outcome from the coordinator, each synced. ns/op, B/op and
// allocs/op are per task (three messages), the test's storage included.
func BenchmarkAcceptorMessages(b *testing.B) {
	b.Run("names", func(b *testing.B) {
		benchAcceptorMessages(b, func(i int) string { return "task-" + strconv.Itoa(i) })
	})
	// UUIDs, as a node makes them, in random order: each finished task is frozen once
	// 1,000 more finished (tomb.go), and indexed by its raw key.
	b.Run("uuids", func(b *testing.B) {
		r := rand.New(rand.NewPCG(1, 2))
		benchAcceptorMessages(b, func(int) string {
			var u uuid.UUID
			for j := range u {
				u[j] = byte(r.Uint32())
			}
			return u.String()
		})
	})
}

func benchAcceptorMessages(b *testing.B, id func(int) string) {
	env := &acceptorEnv{now: time.Unix(1_700_000_000, 0)}
	n := bootAcceptor(b, env, 1)
	env.flush()
	env.take()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		env.now = env.now.Add(time.Millisecond)
		t := acceptorTask(env.now)
		t.ID = id(i)
		n.Step(Message{Type: MsgStore, From: "n1", To: "n3", TaskID: t.ID, Task: t})
		env.flush()
		n.Step(Message{Type: MsgClaim, From: "n1", To: "n3", TaskID: t.ID, Task: t, Attempt: 1, Promised: 7, Lease: 10 * time.Second})
		env.flush()
		n.Step(Message{Type: MsgOutcome, From: "n1", To: "n3", TaskID: t.ID, Task: t, Attempt: 1, State: StateSucceeded, Status: 200})
		env.flush()
		sent := env.take()
		if len(sent) < 3 || sent[0].Type != MsgStoreResp || sent[1].Type != MsgClaimResp || !sent[1].Granted {
			b.Fatalf("task %d: the replica answered %v", i, sent)
		}
		env.recs, env.synced = env.recs[:0], 0
	}
}
