package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Scores counts the scored mutants (built, not equivalent) and how many each check
// caught.
type Scores struct {
	Scored, Sweep, Unit, Either int
	Equivalent, Anchor, NoBuild int
}

func score(results []*Result) Scores {
	var s Scores
	for _, r := range results {
		switch {
		case r == nil:
		case r.Status == StatusAnchor:
			s.Anchor++
		case r.Status == StatusNoBuild:
			s.NoBuild++
		case r.Equivalent != "":
			s.Equivalent++
		default:
			s.Scored++
			sweep := r.Status == StatusCaught
			if sweep {
				s.Sweep++
			}
			if r.UnitCaught {
				s.Unit++
			}
			if sweep || r.UnitCaught {
				s.Either++
			}
		}
	}
	return s
}

func pct(a, b int) string {
	if b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.0f%%", 100*float64(a)/float64(b))
}

// sweepCell is the mutant's status as the sweep saw it.
func sweepCell(r *Result) string {
	switch {
	case r.Equivalent != "" && r.Status == StatusCaught:
		return "caught (claimed equivalent!)"
	case r.Equivalent != "" && r.Status == StatusSurvived:
		return "equivalent"
	case r.Status == StatusCaught && r.TimedOut:
		return "caught (hung)"
	}
	return string(r.Status)
}

// caughtBy is "S1, S3 in partition-split (+3 scenarios)", or why it is empty.
func caughtBy(r *Result, md bool) string {
	b := r.Best()
	switch {
	case r.Status == StatusAnchor || r.Status == StatusNoBuild:
		return r.Error
	case b == nil:
		return ""
	}
	name := b.Scenario
	if md {
		name = "`" + name + "`"
	}
	s := strings.Join(b.Why, ", ") + " in " + name
	if n := len(r.Catches) - 1; n > 0 {
		s += fmt.Sprintf(" (+%d scenario%s)", n, plural(n))
	}
	return s
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func seedsCell(r *Result) (seeds, first string) {
	b := r.Best()
	if b == nil || b.Run == 0 {
		return "", ""
	}
	seeds = fmt.Sprintf("%d/%d", b.Seeds, b.Run)
	if b.Seeds > 0 {
		first = fmt.Sprint(b.First)
	}
	return seeds, first
}

func unitCell(r *Result, o options) string {
	switch {
	case !o.unit || r.Status == StatusAnchor || r.Status == StatusNoBuild:
		return ""
	case r.UnitCaught && r.UnitDetail != "":
		return "caught: " + r.UnitDetail
	case r.UnitCaught:
		return "caught"
	}
	return "survived"
}

func progressLine(r *Result) string {
	s := sweepCell(r)
	if c := caughtBy(r, false); c != "" {
		s += ": " + c
	}
	if seeds, first := seedsCell(r); seeds != "" {
		s += ", seeds " + seeds
		if first != "" {
			s += ", first " + first
		}
	}
	if r.UnitCaught {
		s += "; unit tests: caught"
	}
	return fmt.Sprintf("%s (%.0fs)", s, r.WallS)
}

func printTable(w io.Writer, results []*Result, o options) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MUTANT\tSWEEP\tCAUGHT BY (INVARIANT IN SCENARIO)\tSEEDS\tFIRST\tUNIT TESTS")
	for _, r := range results {
		seeds, first := seedsCell(r)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, sweepCell(r), caughtBy(r, false), seeds, first, unitCell(r, o))
	}
	tw.Flush()
	fmt.Fprintln(w)
	printNotes(w, results, o, false)
}

func printMarkdown(w io.Writer, results []*Result, o options) {
	fmt.Fprintln(w, "| mutant | slip | sweep | caught by (invariant in scenario) | seeds caught / run | first seed | `go test ./node/` |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	for _, r := range results {
		seeds, first := seedsCell(r)
		fmt.Fprintf(w, "| `%s` | %s | %s | %s | %s | %s | %s |\n", r.Name, mdEscape(r.Desc), sweepCell(r), mdEscape(caughtBy(r, true)), seeds, first, mdEscape(unitCell(r, o)))
	}
	fmt.Fprintln(w)
	printNotes(w, results, o, true)
}

func mdEscape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// printNotes prints the scores, then the survivors, the equivalents and the broken.
func printNotes(w io.Writer, results []*Result, o options, md bool) {
	s := score(results)
	bullet := ""
	if md {
		bullet = "* "
	}
	fmt.Fprintf(w, "%sSeeds 1-%d per scenario; %d mutants scored (%d judged equivalent, %d anchors lost, %d did not build: not scored).\n",
		bullet, o.seeds, s.Scored, s.Equivalent, s.Anchor, s.NoBuild)
	fmt.Fprintf(w, "%sMutation score, sweep alone: %d/%d = %s\n", bullet, s.Sweep, s.Scored, pct(s.Sweep, s.Scored))
	if o.unit {
		fmt.Fprintf(w, "%sMutation score, unit tests alone: %d/%d = %s\n", bullet, s.Unit, s.Scored, pct(s.Unit, s.Scored))
		fmt.Fprintf(w, "%sMutation score, sweep or unit tests: %d/%d = %s\n", bullet, s.Either, s.Scored, pct(s.Either, s.Scored))
	}
	section := func(title string, keep func(*Result) bool, line func(*Result) string) {
		var lines []string
		for _, r := range results {
			if keep(r) {
				lines = append(lines, line(r))
			}
		}
		if len(lines) == 0 {
			return
		}
		fmt.Fprintf(w, "\n%s\n", title)
		if md {
			fmt.Fprintln(w)
		}
		for _, l := range lines {
			fmt.Fprintf(w, "%s%s\n", map[bool]string{true: "* ", false: "  "}[md], l)
		}
	}
	name := func(r *Result) string {
		if md {
			return "`" + r.Name + "`"
		}
		return r.Name
	}
	section("Survived the sweep:", func(r *Result) bool { return r.Equivalent == "" && r.Status == StatusSurvived },
		func(r *Result) string {
			u := ""
			if r.UnitCaught {
				u = " (the unit tests catch it)"
			}
			if len(r.Shifts) > 0 {
				u += "; moved: " + strings.Join(r.Shifts, ", ")
			}
			return name(r) + ": " + r.Desc + u
		})
	section("Judged equivalent (not scored):", func(r *Result) bool { return r.Equivalent != "" },
		func(r *Result) string { return name(r) + ": " + r.Equivalent })
	section("Not run:", func(r *Result) bool { return r.Status == StatusAnchor || r.Status == StatusNoBuild },
		func(r *Result) string { return name(r) + ": " + string(r.Status) + ": " + r.Error })
}
