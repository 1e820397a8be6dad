package node

import (
	"fmt"
	"hash/fnv"
	"io"
	"reflect"
)

// StateFingerprint names the layout of what a node's snapshot, records and
// messages hold: a hash of the name and type of every field reachable from Node,
// Record and Message. A recording (net/recorder) carries it, so that a build whose
// state differs refuses the recording with a clear error rather than misreading it.
// It changes with any field (also one Snapshot leaves out): conservative, and free
// of the generator. Computed on each call (a node keeps no lock): callers ask once
// per file.
func StateFingerprint() string {
	h := fnv.New64a()
	seen := map[reflect.Type]bool{}
	for _, t := range []reflect.Type{reflect.TypeFor[Node](), reflect.TypeFor[Record](), reflect.TypeFor[Message]()} {
		describeType(h, t, seen)
	}
	return fmt.Sprintf("%016x", h.Sum64())
}

// describeType writes t's shape to w, each named type's fields once.
func describeType(w io.Writer, t reflect.Type, seen map[reflect.Type]bool) {
	fmt.Fprintf(w, "%s;", t.String())
	if seen[t] {
		return
	}
	seen[t] = true
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Array, reflect.Chan:
		describeType(w, t.Elem(), seen)
	case reflect.Map:
		describeType(w, t.Key(), seen)
		describeType(w, t.Elem(), seen)
	case reflect.Struct:
		for i := range t.NumField() {
			f := t.Field(i)
			fmt.Fprintf(w, "%s ", f.Name)
			describeType(w, f.Type, seen)
		}
	}
}
