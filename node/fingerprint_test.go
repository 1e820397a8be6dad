package node

import (
	"hash/fnv"
	"reflect"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestStateFingerprintSeesAField(t *testing.T) {
	require.Len(t, StateFingerprint(), 16)
	require.Equal(t, StateFingerprint(), StateFingerprint())
	shape := func(t reflect.Type) uint64 {
		h := fnv.New64a()
		describeType(h, t, map[reflect.Type]bool{})
		return h.Sum64()
	}
	type before struct {
		A int
		B []string
	}
	type after struct {
		A int
		B []string
		C uint64
	}
	type renamed struct {
		A int
		D []string
	}
	require.NotEqual(t, shape(reflect.TypeFor[before]()), shape(reflect.TypeFor[after]()), "an added field")
	require.NotEqual(t, shape(reflect.TypeFor[before]()), shape(reflect.TypeFor[renamed]()), "a renamed field")
	type inner struct{ X int }
	type inner2 struct{ X string }
	type outer struct{ I *inner }
	type outer2 struct{ I *inner2 }
	require.NotEqual(t, shape(reflect.TypeFor[outer]()), shape(reflect.TypeFor[outer2]()), "a field's type changed deep down")
}
