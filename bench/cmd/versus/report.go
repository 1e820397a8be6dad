package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
)

// metric is one line of the table: where its figures are kept, and how it reads.
type metric struct {
	key   string
	label string
	// judged figures are better when higher and count against the tolerance; the
	// others are shown to explain them.
	judged bool
	format func(float64) string
}

// metricsFor lists the table's lines for the simulator benchmarks and the compare
// targets measured, in the order printed.
func metricsFor(benches, targets []string) []metric {
	var ms []metric
	for _, b := range benches {
		name := strings.TrimPrefix(b, "Benchmark")
		ms = append(ms,
			metric{simKey(b, "events/s"), name + " events/s", true, thousands},
			metric{simKey(b, "x-realtime"), name + " × real time", true, func(v float64) string { return thousands(v) + "×" }},
			metric{simKey(b, "ns/op"), name + " ms per run", false, func(v float64) string { return fmt.Sprintf("%.1f", v/1e6) }},
			metric{simKey(b, "events/run"), name + " events per run", false, thousands},
			metric{simKey(b, "allocs/op"), name + " allocs per run", false, thousands},
		)
	}
	if len(targets) > 0 {
		ms = append(ms,
			metric{throughputKey("baseline", "delivered"), "relay baseline delivered/s", false, thousands},
			metric{throughputKey("baseline", "per-cpu"), "relay baseline tasks per CPU second", false, thousands},
		)
	}
	for _, t := range targets {
		ms = append(ms,
			metric{throughputKey(t, "share"), t + " delivered/s ÷ relay", true, func(v float64) string { return fmt.Sprintf("%.1f%%", 100*v) }},
			metric{throughputKey(t, "delivered"), t + " delivered/s", true, thousands},
			metric{throughputKey(t, "per-cpu"), t + " tasks per CPU second", true, thousands},
		)
	}
	return ms
}

// row is one metric's medians on both sides, and the figures of every round they
// are the medians of (in the order run).
type row struct {
	metric
	base, current             float64
	baseRounds, currentRounds []float64
}

// ratio is current over base.
func (r row) ratio() float64 { return r.current / r.base }

// within reports whether the current figure is no more than tolerance percent
// worse than the base's.
func (r row) within(tolerance float64) bool { return r.ratio() >= 1-tolerance/100 }

// rowsFrom makes the rows of the metrics both sides measured, each figure the median
// of its rounds.
func rowsFrom(metrics []metric, base, current []figures) []row {
	var rows []row
	for _, m := range metrics {
		b, c := valuesOf(base, m.key), valuesOf(current, m.key)
		if len(b) == 0 || len(c) == 0 {
			continue
		}
		rows = append(rows, row{metric: m, base: median(b), current: median(c), baseRounds: b, currentRounds: c})
	}
	return rows
}

func valuesOf(rounds []figures, key string) []float64 {
	var vs []float64
	for _, f := range rounds {
		if v, ok := f[key]; ok {
			vs = append(vs, v)
		}
	}
	return vs
}

// median is the middle value of vs (the mean of the two middle ones for an even
// count); vs must not be empty.
func median(vs []float64) float64 {
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// report is the comparison's outcome.
type report struct {
	base, current string // the commits compared, as printed
	rounds        int
	tolerance     float64 // percent
	metrics       []metric
	rows          []row
	notes         []string // said under the table
}

// outOfTolerance names the judged rows whose current figure is worse than the
// tolerance allows.
func (r report) outOfTolerance() []string {
	var names []string
	for _, row := range r.rows {
		if row.judged && !row.within(r.tolerance) {
			names = append(names, row.label)
		}
	}
	return names
}

// writeTable prints the rows as an aligned table (metric, base, current,
// current/base, within the tolerance), then how they were measured and the notes.
func (r report) writeTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	current, _, _ := strings.Cut(r.current, " ") // the commit, without "with uncommitted changes"
	fmt.Fprintf(tw, "metric\tbase %s\tcurrent %s\tcurrent/base\twithin %g%%\t\n", r.base, current, r.tolerance)
	for _, row := range r.rows {
		verdict := "-"
		if row.judged {
			verdict = "yes"
			if !row.within(r.tolerance) {
				verdict = fmt.Sprintf("NO (%+.1f%%)", 100*(row.ratio()-1))
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\n", row.label, row.format(row.base), row.format(row.current), ratio(row.ratio()), verdict)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "Medians of %d interleaved round(s); base %s, current %s. Within %g%%: the current figure is no more than %g%% below the base's (judged figures are better when higher; rows with - are shown to explain them, not judged).\n",
		r.rounds, r.base, r.current, r.tolerance, r.tolerance)
	for _, n := range r.notes {
		fmt.Fprintf(w, "Note: %s.\n", n)
	}
	if r.rounds > 1 {
		return r.writeRounds(w)
	}
	return nil
}

// writeRounds prints every round's figures of each row, so that a reader sees how
// much the machine's noise moved them.
func (r report) writeRounds(w io.Writer) error {
	fmt.Fprintf(w, "\nEach round, in order (the base went first in odd rounds, the current side in even ones):\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "metric\tbase\tcurrent\t\n")
	for _, row := range r.rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t\n", row.label, joinFormatted(row.baseRounds, row.format), joinFormatted(row.currentRounds, row.format))
	}
	return tw.Flush()
}

func joinFormatted(vs []float64, format func(float64) string) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = format(v)
	}
	return strings.Join(s, " / ")
}

func ratio(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "n/a"
	}
	return fmt.Sprintf("%.3f", v)
}

// thousands prints v rounded to a whole number, with a comma between thousands.
func thousands(v float64) string {
	s := fmt.Sprintf("%.0f", math.Abs(v))
	var b strings.Builder
	if v < 0 && s != "0" {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
