package node

import (
	"fmt"
	"slices"
	"unique"
)

// noExtra is the entryExtra of every entry that has not written one of its fields:
// all zero, shared, never written (checkNoExtra verifies that in tests).
var noExtra entryExtra

// ext returns e's own entryExtra, allocating it on the first write. Every write
// to a field of entryExtra goes through it.
func (e *entry) ext() *entryExtra {
	if e.entryExtra == &noExtra {
		e.entryExtra = new(entryExtra)
	}
	return e.entryExtra
}

// checkNoExtra reports a write that reached noExtra instead of going through ext
// (CheckCounts calls it): every field of it must still be zero.
func checkNoExtra() error {
	if got, want := fmt.Sprintf("%+v", noExtra), fmt.Sprintf("%+v", entryExtra{}); got != want {
		return fmt.Errorf("the shared zero entryExtra was written (a write not through ext): %s", got)
	}
	return nil
}

// common returns the canonical copy of a string that many tasks share (a queue
// name, a method, a content type, a counter key): a node holding a million tasks
// keeps one "default", not a million (an API request's queue name would otherwise
// keep its whole request line alive).
func common(s string) string { return unique.Make(s).Value() }

// sharedPlacement is Placement for a new task: a task's replica list is one of few
// (one per ring position), so tasks placed alike share one slice. Tasks never
// modify their lists (Task is immutable once created), so sharing is safe.
func (n *Node) sharedPlacement(id string) []NodeID {
	list := n.Placement(id)
	if len(list) == 0 {
		return list
	}
	if n.placed == nil {
		n.placed = map[NodeID][]NodeID{}
	}
	// Keyed by the first replica: with the ring's order, the first names the list
	// while the roster stays; a list of another roster replaces it.
	if shared, ok := n.placed[list[0]]; ok && slices.Equal(shared, list) {
		return shared
	}
	n.placed[list[0]] = list
	return list
}
