package sim

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Machine-readable reports of a sweep, for CI: a JSON summary (WriteJSON) and a JUnit
// XML report (WriteJUnit). Both are built from the Summaries a sweep returns and say
// the same things as the human report: per scenario the seeds run, the verdict, and
// for every failing seed its invariants, violations and replay command.

// ReportMeta is what a report says about the whole invocation.
type ReportMeta struct {
	Build    string // the build that ran (version.String())
	Protocol string // the --protocol override, "" when none
}

// JSONReport is the JSON summary of a sweep of one or more scenarios.
type JSONReport struct {
	Build     string         `json:"build"`
	Protocol  string         `json:"protocol,omitempty"` // the override, when given
	Met       bool           `json:"met"`                // every scenario met its expectation
	Scenarios []JSONScenario `json:"scenarios"`
}

// JSONScenario is one scenario's sweep.
type JSONScenario struct {
	Scenario string      `json:"scenario"`
	Path     string      `json:"path"`
	Expect   Expectation `json:"expect"`
	Met      bool        `json:"met"`
	Seeds    string      `json:"seeds"`     // the seeds run, as ranges: "1-20,45"
	SeedsRun int         `json:"seeds_run"` // how many
	Passed   int         `json:"passed"`    // seeds without any violation
	// Caught counts the seeds that violated an invariant the expectation names (a
	// negative control needs at least one).
	Caught     int            `json:"caught"`
	Enqueued   int            `json:"enqueued"`
	Acked      int            `json:"acknowledged"`
	Deliveries int            `json:"deliveries"`
	Violating  int            `json:"violating_duplicates"` // S1–S4 violations
	Excused    JSONExcused    `json:"excused"`
	Refused    JSONRefused    `json:"refused"`
	SimTime    string         `json:"sim_time"`
	WallMS     int64          `json:"wall_ms"`
	Failures   []JSONSeed     `json:"failures"` // every seed with a violation, in seed order
	Nondet     []uint64       `json:"nondeterministic"`
	Violations map[string]int `json:"violations"` // by invariant, over every seed
}

// JSONExcused counts the departures from exactly-once the invariants allow, by cause
// (see Excuse).
type JSONExcused struct {
	Duplicates  int `json:"duplicates"`
	LostOrStuck int `json:"lost_or_stuck"`
	Names       int `json:"names"`
	Forgotten   int `json:"forgotten"`
	Failing     int `json:"failing"`
}

// JSONRefused counts enqueues the cluster refused.
type JSONRefused struct {
	Full int `json:"full"` // 503: full, starting, or a disk that cannot write
	Name int `json:"name"` // 409: the name was taken
}

// JSONSeed is one failing seed.
type JSONSeed struct {
	Seed       uint64          `json:"seed"`
	Protocol   string          `json:"protocol"`
	Invariants []string        `json:"invariants"`
	Counts     map[string]int  `json:"counts"`
	Expected   bool            `json:"expected"`   // a violation the expectation names
	Violations []JSONViolation `json:"violations"` // the first ones kept (up to 50)
	Replay     string          `json:"replay"`
	Swarm      []string        `json:"swarm,omitempty"` // fault kinds the seed enabled
}

// JSONViolation is one violation of a failing seed.
type JSONViolation struct {
	Invariant string   `json:"invariant"`
	At        string   `json:"at"`    // true time since the run began, as a Go duration
	AtNS      int64    `json:"at_ns"` // the same in nanoseconds
	Tasks     []string `json:"tasks"`
	Nodes     []string `json:"nodes"`
	Detail    string   `json:"detail"`
}

// NewJSONReport builds the JSON summary of sums.
func NewJSONReport(meta ReportMeta, sums []*Summary) *JSONReport {
	r := &JSONReport{Build: meta.Build, Protocol: meta.Protocol, Met: true, Scenarios: []JSONScenario{}}
	for _, s := range sums {
		r.Met = r.Met && s.Met()
		r.Scenarios = append(r.Scenarios, jsonScenario(s))
	}
	return r
}

// WriteJSON writes the JSON summary of sums, indented, to w.
func WriteJSON(w io.Writer, meta ReportMeta, sums []*Summary) error {
	b, err := json.MarshalIndent(NewJSONReport(meta, sums), "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

func jsonScenario(s *Summary) JSONScenario {
	js := JSONScenario{
		Scenario: s.Scenario, Path: s.Path, Expect: s.Expect, Met: s.Met(),
		Seeds: SeedRanges(s.SeedsRun), SeedsRun: s.Seeds, Passed: s.Seeds - len(s.Failed), Caught: len(s.Caught),
		Enqueued: s.Enqueued, Acked: s.Tasks, Deliveries: s.Deliveries, Violating: s.Violating,
		Excused: JSONExcused{Duplicates: s.Excused, LostOrStuck: s.Lost, Names: s.NamesExcused, Forgotten: s.Forgotten, Failing: s.Failing},
		Refused: JSONRefused{Full: s.FullRefused, Name: s.NameRefused},
		SimTime: s.SimTime.Round(time.Millisecond).String(), WallMS: s.Wall.Milliseconds(),
		Failures: []JSONSeed{}, Nondet: append([]uint64{}, s.Nondeterministic...), Violations: map[string]int{},
	}
	for _, r := range s.Failed {
		js.Failures = append(js.Failures, jsonSeed(s, r))
		for inv, n := range r.ViolationCounts {
			js.Violations[inv] += n
		}
	}
	return js
}

func jsonSeed(s *Summary, r *Result) JSONSeed {
	js := JSONSeed{Seed: r.Seed, Protocol: r.Protocol, Invariants: r.Invariants(), Counts: r.ViolationCounts,
		Expected: slices.Contains(s.Caught, r), Replay: r.Command, Swarm: r.Swarm, Violations: []JSONViolation{}}
	for _, v := range r.Violations {
		nodes := make([]string, len(v.Nodes))
		for i, n := range v.Nodes {
			nodes[i] = string(n)
		}
		js.Violations = append(js.Violations, JSONViolation{Invariant: v.Invariant, At: v.At.String(), AtNS: int64(v.At),
			Tasks: nonNil(v.Tasks), Nodes: nodes, Detail: v.Detail})
	}
	return js
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// SeedRanges writes seeds as sorted, comma-separated ranges: 1-20,45.
func SeedRanges(seeds []uint64) string {
	sorted := slices.Clone(seeds)
	slices.Sort(sorted)
	sorted = slices.Compact(sorted)
	var parts []string
	for i := 0; i < len(sorted); {
		j := i
		for j+1 < len(sorted) && sorted[j+1] == sorted[j]+1 {
			j++
		}
		p := strconv.FormatUint(sorted[i], 10)
		if j > i {
			p += "-" + strconv.FormatUint(sorted[j], 10)
		}
		parts = append(parts, p)
		i = j + 1
	}
	return strings.Join(parts, ",")
}

// The JUnit XML report: one test suite, one test case per scenario (named with its
// seed ranges), a failure element per seed that broke the scenario's expectation.
// A negative control that was caught passes; its caught seeds are listed in the test
// case's system-out, each with its violations and replay command. One that was not
// caught fails with one failure saying so. D1 (a seed whose two runs differed) is a
// failure of its own.

type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Time       string          `xml:"time,attr"`
	Properties []junitProperty `xml:"properties>property"`
	Cases      []junitCase     `xml:"testcase"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Name      string         `xml:"name,attr"`
	Classname string         `xml:"classname,attr"`
	File      string         `xml:"file,attr,omitempty"`
	Time      string         `xml:"time,attr"`
	Failures  []junitFailure `xml:"failure"`
	SystemOut *junitText     `xml:"system-out"`
}

// junitText is text kept readable in the XML (CDATA: newlines stay newlines).
type junitText struct {
	Text string `xml:",cdata"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Body    string `xml:",cdata"`
}

// WriteJUnit writes the JUnit XML report of sums to w.
func WriteJUnit(w io.Writer, meta ReportMeta, sums []*Summary) error {
	suite := junitSuite{Name: "miyamoto sim", Properties: []junitProperty{{"build", meta.Build}}}
	if meta.Protocol != "" {
		suite.Properties = append(suite.Properties, junitProperty{"protocol", meta.Protocol})
	}
	var wall time.Duration
	for _, s := range sums {
		c := junitCaseOf(s)
		suite.Cases = append(suite.Cases, c)
		suite.Tests++
		if len(c.Failures) > 0 {
			suite.Failures++
		}
		wall += s.Wall
	}
	suite.Time = seconds(wall)
	doc := junitSuites{Name: "miyamoto sim", Tests: suite.Tests, Failures: suite.Failures, Time: suite.Time, Suites: []junitSuite{suite}}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

func junitCaseOf(s *Summary) junitCase {
	c := junitCase{Name: fmt.Sprintf("%s seeds %s", s.Scenario, SeedRanges(s.SeedsRun)), Classname: "sim." + s.Scenario,
		File: s.Path, Time: seconds(s.Wall)}
	for _, seed := range s.Nondeterministic {
		c.Failures = append(c.Failures, junitFailure{Type: "D1",
			Message: fmt.Sprintf("seed %d: two runs gave two different traces", seed),
			Body:    fmt.Sprintf("replay: go run ./cmd/miyamoto sim --seed %d --check-determinism %s", seed, s.Path)})
	}
	var out strings.Builder
	fmt.Fprintf(&out, "expect %s; seeds %d, %d passed, tasks %d/%d acknowledged, deliveries %d\n",
		expectText(s.Expect), s.Seeds, s.Seeds-len(s.Failed), s.Tasks, s.Enqueued, s.Deliveries)
	if s.Expect.Outcome == "violation" {
		if len(s.Caught) == 0 {
			c.Failures = append(c.Failures, junitFailure{Type: "NOT caught",
				Message: fmt.Sprintf("no seed violated %s: the checker missed this negative control", strings.Join(s.Expect.Invariants, "/"))})
		}
		for _, r := range s.Caught {
			fmt.Fprintf(&out, "caught as expected: %s", r.Report())
		}
	} else {
		for _, r := range s.Failed {
			c.Failures = append(c.Failures, junitFailure{Type: strings.Join(r.Invariants(), ","), Message: failureMessage(r), Body: r.Report()})
		}
	}
	c.SystemOut = &junitText{out.String()}
	return c
}

// failureMessage is one line: the seed, its invariants, the first violation (time,
// tasks) and the replay command.
func failureMessage(r *Result) string {
	msg := fmt.Sprintf("seed %d: %d violation(s) of %s", r.Seed, sum(r.ViolationCounts), strings.Join(r.Invariants(), ", "))
	if len(r.Violations) > 0 {
		v := r.Violations[0]
		msg += fmt.Sprintf("; first %s at %s (tasks %s)", v.Invariant, v.At, strings.Join(v.Tasks, ","))
	}
	return msg + "; replay: " + r.Command
}

func expectText(e Expectation) string {
	if e.Outcome == "violation" {
		return "violation of " + strings.Join(e.Invariants, "/")
	}
	return e.Outcome
}

func seconds(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', 3, 64) }
