package node

import "fmt"

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
