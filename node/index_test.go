package node

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
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
			require.NoError(t, x.ids.check(), "seed %d step %d", seed, step)
			want := sortedKeys(model)
			require.Equal(t, len(want), x.held())
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
	require.Greater(t, len(x.ids.blocks), 1, "should have split")
	for i := range 2000 {
		x.remove(fmt.Sprintf("%04d", i))
	}
	require.NoError(t, x.ids.check())
	require.Empty(t, x.ids.blocks)
	require.Empty(t, x.ids.lasts)
}

// UUIDs are kept as raw keys, in the order of the IDs they stand for, other IDs as
// they are; a listing past any ID, a UUID or not, yields the IDs above it in order
// from both.
func TestRawIndexAgreesWithSortedIDs(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 0))
	x := &idIndex{}
	model := map[string]bool{}
	var ids []string
	for range 3000 {
		var k [16]byte
		for j := range k {
			k[j] = byte(r.IntN(4)) * 85 // few distinct bytes: long common prefixes
		}
		id := rawIDOf(k).id()
		ids = append(ids, id)
		x.insert(id)
		model[id] = true
	}
	for i := range 300 {
		id := fmt.Sprintf("%x-named-%d", i%16, i) // not a UUID
		x.insert(id)
		model[id] = true
	}
	for _, id := range ids[:1000] {
		x.remove(id)
		delete(model, id)
	}
	require.NoError(t, x.check())
	require.Equal(t, 300, x.ids.len())
	require.Equal(t, len(model), x.held())
	want := sortedKeys(model)
	for _, after := range []string{"", want[0], want[len(want)/2], "3", "zz", want[len(want)-1], ids[0], ids[2000]} {
		require.Equal(t, model[after], x.has(after), after)
		cursors := []idCursor{x.after(after), x.rawAfter(after)}
		var got []string
		for len(got) < 40 {
			best, bestID := -1, ""
			for i, c := range cursors {
				if id, ok := c.peek(); ok && (best < 0 || id < bestID) {
					best, bestID = i, id
				}
			}
			if best < 0 {
				break
			}
			got = append(got, bestID)
			cursors[best].next()
		}
		i := sort.SearchStrings(want, after)
		if i < len(want) && want[i] == after {
			i++
		}
		exp := want[i:min(i+40, len(want))]
		if len(exp) == 0 {
			exp = nil
		}
		require.Equal(t, exp, got, "after %q", after)
	}
}
