package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/miyamotohq/miyamoto/net/client"
)

// Bounds of a replace's steps. The first join into a cluster of --peers nodes
// waits for a leader (the roster lease: a lease, the drift, and a second a rank);
// the moves of the dead node's tasks are 8 at a time on each node.
const (
	joinTimeout   = 90 * time.Second
	removeTimeout = 60 * time.Second
	moveTimeout   = 60 * time.Second
	membershipAsk = 500 * time.Millisecond // how often a step asks again
)

// errMembership marks a replace step that did not finish in its time: the
// cluster's failure, which the report counts, not the tool's.
var errMembership = errors.New("membership")

// replace kills f.Nodes[0] for good, starts f.Joiner with --join through f.Via and
// waits until it takes tasks (the load then sends to it), removes the dead node
// through f.Via's API as `miyamoto cluster remove` does (POST
// /v1/cluster/members/{id}/remove until it answers 200 "removed"), and waits until
// every member's roster leaves it out and no member holds a task still listing it
// (tasks_on_removed). An error wrapping errMembership is a step that did not end in
// its time; any other is the tool's own failure.
func replace(ctx context.Context, c *Cluster, f Fault, logf func(string, ...any)) error {
	victim, via := f.Nodes[0], f.Via
	start := time.Now()
	since := func() string { return time.Since(start).Round(100 * time.Millisecond).String() }
	if err := c.Retire(victim); err != nil {
		return err
	}
	joiner, err := c.Join(via)
	if err != nil {
		return err
	}
	if joiner != f.Joiner {
		return fmt.Errorf("replace: the new node is %s, the schedule says %s", nodeName(joiner), nodeName(f.Joiner))
	}
	if err := waitCtx(ctx, joinTimeout, func(ctx context.Context) error { return c.WaitNodeHealthy(ctx, joiner) }); err != nil {
		return fmt.Errorf("%w: %s joining through %s: %v", errMembership, nodeName(joiner), nodeName(via), err)
	}
	c.MarkReady(joiner)
	logf("replace: %s joined through %s after %s; removing %s", nodeName(joiner), nodeName(via), since(), nodeName(victim))
	cl, _ := client.New(c.URL(via), "", 5*time.Second)
	if err := askUntil(ctx, removeTimeout, func(ctx context.Context) (bool, error) {
		body, err := cl.RemoveMember(ctx, nodeName(victim))
		if err != nil {
			return false, err
		}
		var ans struct{ Status string }
		json.Unmarshal(body, &ans)
		return ans.Status == "removed", fmt.Errorf("answered %q", ans.Status)
	}); err != nil {
		return fmt.Errorf("%w: removing %s through %s: %v", errMembership, nodeName(victim), nodeName(via), err)
	}
	logf("replace: %s removed after %s; waiting for its tasks to move", nodeName(victim), since())
	members := c.Members()
	clients := make([]*client.Client, len(members))
	for i, m := range members {
		clients[i], _ = client.New(c.URL(m), "", 5*time.Second)
	}
	if err := askUntil(ctx, moveTimeout, func(ctx context.Context) (bool, error) {
		for i, cl := range clients {
			if why := notSettled(ctx, cl, nodeName(victim)); why != "" {
				return false, fmt.Errorf("%s: %s", nodeName(members[i]), why)
			}
		}
		return true, nil
	}); err != nil {
		return fmt.Errorf("%w: %s's tasks not moved: %v", errMembership, nodeName(victim), err)
	}
	logf("replace: %s's tasks moved; done after %s", nodeName(victim), since())
	return nil
}

// notSettled says why a member is not done with the removal of gone: it still
// lists it, or holds tasks whose replica list names it; "" when done.
func notSettled(ctx context.Context, cl *client.Client, gone string) string {
	body, err := cl.Cluster(ctx)
	if err != nil {
		return err.Error()
	}
	var view struct {
		Members        []memberID `json:"members"`
		TasksOnRemoved int        `json:"tasks_on_removed"`
	}
	if err := json.Unmarshal(body, &view); err != nil {
		return "bad /v1/cluster: " + err.Error()
	}
	if slices.Contains(view.Members, memberID{gone}) {
		return "still lists " + gone
	}
	if view.TasksOnRemoved > 0 {
		return fmt.Sprintf("%d tasks on removed members", view.TasksOnRemoved)
	}
	return ""
}

type memberID struct {
	ID string `json:"id"`
}

// askUntil calls ask every membershipAsk until it says done, or d passes (the
// error then is ask's last).
func askUntil(ctx context.Context, d time.Duration, ask func(context.Context) (bool, error)) error {
	deadline := time.Now().Add(d)
	for {
		done, err := ask(ctx)
		if done {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not done in %s: %v", d, err)
		}
		if !sleepUntil(ctx, time.Now().Add(membershipAsk)) {
			return ctx.Err()
		}
	}
}
