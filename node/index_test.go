package node

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// The index is compared with a dumb model (a map, sorted on every query) over
// random inserts, removes and pages.
func TestIDIndexAgreesWithASortedSet(t *testing.T) {
	for seed := uint64(1); seed <= 5; seed++ {
		r := rand.New(rand.NewPCG(seed, 0))
		x := &idIndex{}
		model := map[string]bool{}
		for step := range 20000 {
			id := fmt.Sprintf("%05d", r.IntN(3000))
			switch r.IntN(3) {
			case 0, 1:
				x.insert(id)
				model[id] = true
			default:
				x.remove(id)
				delete(model, id)
			}
			if step%500 != 0 {
				continue
			}
			require.NoError(t, x.check(), "seed %d step %d", seed, step)
			want := sortedKeys(model)
			require.Equal(t, len(want), x.len())
			after := fmt.Sprintf("%05d", r.IntN(3000))
			if r.IntN(4) == 0 {
				after = ""
			}
			var got []string
			for c := x.after(after); len(got) < 50; c.next() {
				id, ok := c.peek()
				if !ok {
					break
				}
				got = append(got, id)
			}
			i, _ := slices.BinarySearch(want, after)
			if i < len(want) && want[i] == after {
				i++
			}
			want = want[i:min(i+50, len(want))]
			if len(want) == 0 {
				want = nil
			}
			require.Equal(t, want, got, "seed %d step %d after %q", seed, step, after)
		}
	}
}

func TestIDIndexFromEmptyToEmpty(t *testing.T) {
	x := &idIndex{}
	c := x.after("")
	_, ok := c.peek()
	require.False(t, ok)
	for i := range 2000 {
		x.insert(fmt.Sprintf("%04d", i))
	}
	require.Greater(t, len(x.blocks), 1, "should have split")
	for i := range 2000 {
		x.remove(fmt.Sprintf("%04d", i))
	}
	require.NoError(t, x.check())
	require.Empty(t, x.blocks)
}
