package sim

import (
	"bytes"
	"encoding/xml"
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

// A seed whose two runs differed is a D1 failure in JUnit and listed in JSON, even
// when no invariant was violated.
func TestReportsNameNondeterministicSeeds(t *testing.T) {
	s := &Summary{Scenario: "x", Path: "scenarios/x.json", Expect: Expectation{Outcome: "pass"}, Seeds: 2, SeedsRun: []uint64{1, 2}, Nondeterministic: []uint64{2}}
	var b bytes.Buffer
	require.NoError(t, WriteJUnit(&b, ReportMeta{Build: "test"}, []*Summary{s}))
	var doc struct {
		Failures int `xml:"failures,attr"`
		Suite    struct {
			Case struct {
				Name     string `xml:"name,attr"`
				Failures []struct {
					Type    string `xml:"type,attr"`
					Message string `xml:"message,attr"`
					Body    string `xml:",chardata"`
				} `xml:"failure"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	require.NoError(t, xml.Unmarshal(b.Bytes(), &doc), b.String())
	require.Equal(t, 1, doc.Failures)
	require.Equal(t, "x seeds 1-2", doc.Suite.Case.Name)
	require.Len(t, doc.Suite.Case.Failures, 1)
	f := doc.Suite.Case.Failures[0]
	require.Equal(t, "D1", f.Type)
	require.Contains(t, f.Message, "seed 2")
	require.Contains(t, f.Body, "go run ./cmd/miyamoto sim --seed 2 --check-determinism scenarios/x.json")

	rep := NewJSONReport(ReportMeta{Build: "test"}, []*Summary{s})
	require.False(t, rep.Met)
	require.Equal(t, []uint64{2}, rep.Scenarios[0].Nondet)
	require.Equal(t, 2, rep.Scenarios[0].Passed)
}
