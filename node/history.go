package node

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// A task's history is what operators ask first about a task that failed: who
// called the worker, when, for how long, and what came back. Each node keeps the
// deliveries it made itself (bounded, in memory: a restart forgets them), and a
// status query merges the lists of the replicas that answer. Why a task ended dead
// or unknown is part of its final outcome: it travels with the Outcome and is
// logged with it, so it survives a restart.

// recordStart adds the delivery of e's attempt in flight to e's history.
func (n *Node) recordStart(e *entry) {
	e.ext().due = e.notBefore
	e.ext().history = append(e.history, DeliveryAttempt{Number: e.claiming, Node: n.cfg.ID, Start: n.now(), InFlight: true})
	if over := len(e.history) - MaxAttemptHistory; over > 0 {
		e.ext().history = slices.Delete(e.history, 0, over)
	}
}

// recordResult completes the history's line of r's attempt and tells the
// DeliveryObserver.
func (n *Node) recordResult(e *entry, r DeliveryResult) {
	i := len(e.history) - 1
	if i < 0 || e.history[i].Number != r.Attempt || !e.history[i].InFlight {
		return
	}
	a := &e.ext().history[i]
	a.InFlight = false
	a.Duration = n.now().Sub(a.Start)
	a.Status = r.Status
	a.Body = truncate(r.Body, MaxAttemptBody)
	if r.Status == 0 {
		a.Error = r.ErrorKind
		if a.Error == NoError {
			a.Error = ErrorOther
		}
		if r.Err != nil {
			a.Message = truncate(r.Err.Error(), MaxAttemptMessage)
		}
	}
	if o, ok := n.env.Observer.(DeliveryObserver); ok {
		o.DeliveryEnded(e.task, *a, e.due)
	}
}

// truncate cuts s to at most max bytes, on a UTF-8 boundary when there is one
// close by.
func truncate(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > max-4 && cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut]
}

// historyOf returns a copy of e's history, safe to hand to another goroutine.
func historyOf(e *entry) []DeliveryAttempt { return slices.Clone(e.history) }

// decided tells the DecisionObserver that this node ended e in e.state.
func (n *Node) decided(e *entry) {
	if o, ok := n.env.Observer.(DecisionObserver); ok {
		o.TaskDecided(e.task, e.state, e.reason)
	}
}

// finalReason says why e ends in state (dead or unknown) when its caller did not
// say: the last delivery failed and used up the retry limits, or an at-most-once
// delivery failed or got no answer.
func (n *Node) finalReason(e *entry, state TaskState) string {
	// The last failure is described only for the states that name it: a task
	// that succeeded (most of them) has no reason, and describing its attempt cost
	// a dozen allocations per task.
	switch {
	case state == StateDead && e.task.Delivery == AtMostOnce:
		return "at-most-once: its one delivery failed (" + n.lastFailure(e) + ")"
	case state == StateDead:
		return fmt.Sprintf("retry limits reached (%s) after %d failed deliveries; last: %s", limitsText(n.queue(e.task.Queue).Retry), e.retries, n.lastFailure(e))
	case state == StateUnknown:
		return "at-most-once: its one delivery got no answer (" + n.lastFailure(e) + ")"
	}
	return ""
}

// lastFailure describes the last failed delivery this node knows of: its own last
// attempt, or the last status another replica reported.
func (n *Node) lastFailure(e *entry) string {
	if i := len(e.history) - 1; i >= 0 && !e.history[i].InFlight {
		return describeAttempt(e.history[i])
	}
	if e.lastStatus != 0 {
		return fmt.Sprintf("HTTP %d", e.lastStatus)
	}
	return "no answer"
}

// describeAttempt is one line about a finished attempt: "HTTP 500: body" or
// "timeout: message".
func describeAttempt(a DeliveryAttempt) string {
	var b strings.Builder
	if a.Status != 0 {
		fmt.Fprintf(&b, "HTTP %d", a.Status)
		if body := strings.TrimSpace(a.Body); body != "" {
			b.WriteString(": " + truncate(body, 80))
		}
	} else {
		b.WriteString(a.Error.String())
		if a.Message != "" {
			b.WriteString(": " + a.Message)
		}
	}
	fmt.Fprintf(&b, " (attempt %d by %s after %s)", a.Number, a.Node, a.Duration.Round(time.Millisecond))
	return b.String()
}

// limitsText names the retry limits that are set.
func limitsText(r RetryConfig) string {
	var parts []string
	if r.TaskRetryLimit > 0 {
		parts = append(parts, fmt.Sprintf("task_retry_limit %d", r.TaskRetryLimit))
	}
	if r.TaskAgeLimit > 0 {
		parts = append(parts, "task_age_limit "+r.TaskAgeLimit.String())
	}
	if len(parts) == 0 {
		return "no limit set"
	}
	return strings.Join(parts, ", ")
}

// mergeAttempts adds more to list, each attempt once (by number and node; a
// finished copy wins over one in flight), and returns the latest
// MaxAttemptHistory of them by attempt number, then start.
func mergeAttempts(list, more []DeliveryAttempt) []DeliveryAttempt {
	for _, a := range more {
		i := slices.IndexFunc(list, func(b DeliveryAttempt) bool { return b.Number == a.Number && b.Node == a.Node })
		switch {
		case i < 0:
			list = append(list, a)
		case list[i].InFlight && !a.InFlight:
			list[i] = a
		}
	}
	slices.SortStableFunc(list, func(a, b DeliveryAttempt) int {
		if a.Number != b.Number {
			if a.Number < b.Number {
				return -1
			}
			return 1
		}
		return a.Start.Compare(b.Start)
	})
	if over := len(list) - MaxAttemptHistory; over > 0 {
		list = slices.Delete(list, 0, over)
	}
	return list
}
