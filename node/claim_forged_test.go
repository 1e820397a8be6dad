package node

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// gatedStorage is a durable Storage whose syncs complete only while its gate is
// open (a slow disk held still).
type gatedStorage struct {
	h    *harness
	shut *bool
	held *[]func()
}

func (s gatedStorage) Durable() bool           { return true }
func (s gatedStorage) Append(...Record)        {}
func (s gatedStorage) Load() ([]Record, error) { return nil, nil }
func (s gatedStorage) Sync(done func()) {
	if *s.shut {
		*s.held = append(*s.held, done)
		return
	}
	s.h.schedule(time.Millisecond, done)
}

// An Outcome refused as another enqueue's (another nonce) is answered with the
// state held here only once that state is durable, as every answer to an Outcome:
// its asker counts the answer as a replica holding the task final (S8 on seed 6 of
// names-forged-outcome-answer-not-durable).
func TestRefusedOutcomeIsAnsweredOnceDurable(t *testing.T) {
	shut, held := false, []func(){}
	h := newHarnessEnv(t, 3, 1, nil, func(h *harness, id NodeID, env *Env) {
		if id == "n3" {
			env.Storage = gatedStorage{h: h, shut: &shut, held: &held}
		}
	})
	res := h.enqueue("n1", EnqueueRequest{URL: "http://worker.example/hook", Name: "job-1", Countdown: time.Minute})
	h.run(h.elapsed() + time.Second)
	require.True(t, res.done)
	require.NoError(t, res.Err)
	n3 := h.node("n3")
	task := *n3.entryOf(res.ID).task

	// n3 learns the task succeeded; its record waits on the disk.
	shut = true
	n3.input(func() {
		n3.step(Message{Type: MsgOutcome, From: "n1", To: "n3", TaskID: task.ID, Task: &task, State: StateSucceeded, Attempt: 1})
	})
	require.Equal(t, StateSucceeded, n3.entryOf(task.ID).state)
	// Another enqueue of the name asks: refused, and not answered yet.
	other := task
	other.Nonce++
	before := len(h.sentOf(MsgOutcomeResp, task.ID))
	n3.input(func() {
		n3.step(Message{Type: MsgOutcome, From: "n2", To: "n3", TaskID: task.ID, Task: &other, State: StateUnknown, Attempt: 1})
	})
	for _, s := range h.sentOf(MsgOutcomeResp, task.ID)[before:] {
		require.NotEqual(t, NodeID("n2"), s.Msg.To, "answered before its final state was durable")
	}
	// The disk catches up: now it answers.
	shut = false
	for _, done := range held {
		done() // a sync's end is an input of its own
	}
	answered := false
	for _, s := range h.sentOf(MsgOutcomeResp, task.ID)[before:] {
		answered = answered || s.Msg.To == "n2" && s.Msg.State == StateSucceeded
	}
	require.True(t, answered, "answered once durable")
}
