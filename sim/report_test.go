package sim

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSeedRanges(t *testing.T) {
	for _, c := range []struct {
		seeds []uint64
		want  string
	}{
		{nil, ""},
		{[]uint64{7}, "7"},
		{SeedRange(1, 20), "1-20"},
		{append(SeedRange(1, 20), 45, 2, 22, 23), "1-20,22-23,45"},
		{[]uint64{5, 3, 4, 9}, "3-5,9"},
	} {
		require.Equal(t, c.want, SeedRanges(c.seeds), "%v", c.seeds)
	}
}
