package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/miyamotohq/miyamoto/node"
)

// DELETE /v1/queues/{queue}[?force=true] removes a queue's settings on every member
// (a replicated tombstone: see node.DeleteQueue), so that a queue made by a typo
// can go. Its tasks are not touched by a plain delete, so it refuses (409, with
// their count) while the queue has pending (scheduled or claimed) tasks anywhere in
// the cluster, and answers 503 when a member did not say; ?force=true purges them
// in the same change instead. A task enqueued between the check and the deletion
// runs on the defaults. The queue stays listed while this node holds tasks of it
// (finished ones until their dedup window ends). Deleting a queue that has no
// settings answers 200 too: the deletion is idempotent.

// maxPendingCounted bounds how many pending tasks a DELETE counts before refusing.
const maxPendingCounted = 1000

func (s *server) deleteQueue(w http.ResponseWriter, r *http.Request, qb QueueBackend) {
	name, ok := s.queueParam(w, r)
	if !ok {
		return
	}
	force := false
	if v := r.URL.Query().Get("force"); v != "" {
		f, err := strconv.ParseBool(v)
		if err != nil {
			writeError(w, http.StatusBadRequest, "force", fmt.Sprintf("must be true or false, not %q", v))
			return
		}
		force = f
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
	defer cancel()
	if !force && !s.refuseIfPending(ctx, w, qb, name) {
		return
	}
	_, cancelled, err := qb.DeleteQueue(ctx, name, force)
	if writeChangeError(w, name, cancelled, err) {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"queue": name, "status": "deleted", "cancelled": cancelled})
}

// refuseIfPending answers 409 when the queue has pending tasks in the cluster, or
// 503 when some member did not answer, and then returns false.
func (s *server) refuseIfPending(ctx context.Context, w http.ResponseWriter, qb QueueBackend, name string) bool {
	pending, missing := 0, map[string]bool{}
	for _, st := range []node.TaskState{node.StateScheduled, node.StateClaimed} {
		list, miss, err := qb.ListTasks(ctx, name, st, "", maxPendingCounted)
		if err != nil {
			writeNodeError(w, err)
			return false
		}
		pending += len(list)
		for _, m := range miss {
			missing[m] = true
		}
	}
	if len(missing) > 0 {
		names := sortedKeys(missing)
		setRetryAfter(w, time.Second)
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{
			"error":   fmt.Sprintf("members %s did not answer: cannot tell whether queue %q has pending tasks; retry, or delete with ?force=true to purge them", strings.Join(names, ", "), name),
			"field":   "queue",
			"missing": names,
		})
		return false
	}
	if pending > 0 {
		count := strconv.Itoa(pending)
		if pending >= maxPendingCounted {
			count = "at least " + count
		}
		writeJSON(w, http.StatusConflict, map[string]any{
			"error":   fmt.Sprintf("queue %q has %s pending tasks (scheduled or claimed): let them finish or cancel them, or delete with ?force=true to purge them first", name, count),
			"field":   "queue",
			"pending": pending,
		})
		return false
	}
	return true
}

// writeChangeError answers a queue change's error, if any, and reports whether
// it did: 503 with how many tasks were cancelled so far when not every member
// acknowledged (the change keeps spreading), else as writeNodeError.
func writeChangeError(w http.ResponseWriter, queue string, cancelled int, err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, node.ErrNotEveryMember):
		setRetryAfter(w, time.Second)
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": err.Error(), "queue": queue, "cancelled": cancelled})
	default:
		writeNodeError(w, err)
	}
	return true
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
