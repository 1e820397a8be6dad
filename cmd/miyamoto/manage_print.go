package main

// How the management commands show the server's answers to a person: key-value
// lines and tables. Fields this version does not know are shown too (generically),
// so a newer server's additions are never hidden; --json prints the answer as it
// came.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
)

// decodeObject reads a JSON object, keeping numbers as they were written.
func decodeObject(answer []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(answer))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil {
		return nil, err
	}
	if obj == nil {
		return nil, fmt.Errorf("want a JSON object")
	}
	return obj, nil
}

func str(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

func showEnqueued(w io.Writer, answer []byte, inv *invocation) error {
	obj, err := decodeObject(answer)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "task %s %s in queue %s\n", str(obj["id"]), str(obj["status"]), inv.args[0])
	return nil
}

// taskFirst orders a task's fields: who it is, where it stands, then the rest.
var taskFirst = []string{"id", "queue", "name", "state", "method", "url", "eta", "next_eta", "delivery",
	"attempts", "retries", "last_status", "replicas"}

func showTask(w io.Writer, answer []byte, _ *invocation) error {
	obj, err := decodeObject(answer)
	if err != nil {
		return err
	}
	printObject(w, obj, taskFirst)
	return nil
}

func showCancelled(w io.Writer, answer []byte, inv *invocation) error {
	obj, err := decodeObject(answer)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "task %s %s\n", inv.args[0], str(obj["status"]))
	return nil
}

func showRequeued(w io.Writer, answer []byte, inv *invocation) error {
	obj, err := decodeObject(answer)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "task %s re-queued as task %s (%s)\n", inv.args[0], str(obj["id"]), str(obj["status"]))
	return nil
}

// queueFirst orders a queue's fields.
var queueFirst = []string{"name", "paused", "version", "settings", "counts"}

func showQueue(w io.Writer, answer []byte, _ *invocation) error {
	obj, err := decodeObject(answer)
	if err != nil {
		return err
	}
	printObject(w, obj, queueFirst)
	return nil
}

// showPaused says whether the queue is paused now, on every member.
func showPaused(w io.Writer, answer []byte, inv *invocation) error {
	obj, err := decodeObject(answer)
	if err != nil {
		return err
	}
	p, ok := obj["paused"].(bool)
	if !ok {
		return fmt.Errorf(`no "paused"`)
	}
	word := "resumed"
	if p {
		word = "paused"
	}
	fmt.Fprintf(w, "queue %s %s\n", inv.args[0], word)
	return nil
}

// stateOrder is the order of task states in tables (others follow, sorted).
var stateOrder = []string{"scheduled", "claimed", "succeeded", "dead", "unknown", "cancelled"}

func showQueues(w io.Writer, answer []byte, _ *invocation) error {
	obj, err := decodeObject(answer)
	if err != nil {
		return err
	}
	raw, ok := obj["queues"]
	if !ok {
		return fmt.Errorf(`no "queues" list`)
	}
	list, _ := raw.([]any) // null when there are none
	if len(list) == 0 {
		fmt.Fprintln(w, "no queues yet (a queue is created by its first task or setting)")
		printPartial(w, obj)
		return nil
	}
	states := slices.Clone(stateOrder)
	for _, q := range list {
		counts, _ := field(q, "counts").(map[string]any)
		for _, k := range sortedKeys(counts) {
			if !slices.Contains(states, k) {
				states = append(states, k)
			}
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	header := []string{"QUEUE", "PAUSED"}
	for _, s := range states {
		header = append(header, strings.ToUpper(s))
	}
	fmt.Fprintln(tw, strings.Join(append(header, "RATE"), "\t"))
	anyPartial := false
	for _, q := range list {
		name := str(field(q, "name"))
		if field(q, "partial") == true {
			name += "*"
			anyPartial = true
		}
		row := []string{name, yesNo(field(q, "paused"))}
		counts, _ := field(q, "counts").(map[string]any)
		for _, s := range states {
			row = append(row, cellText(s, counts[s], "0"))
		}
		fmt.Fprintln(tw, strings.Join(append(row, rateText(field(q, "settings"))), "\t"))
	}
	tw.Flush()
	if anyPartial {
		fmt.Fprintln(w, "* partial: some member did not answer; tasks only it holds are not counted")
	}
	printPartial(w, obj)
	return nil
}

// printPartial notes an answer that some members did not contribute to.
func printPartial(w io.Writer, obj map[string]any) {
	if obj["partial"] != true {
		return
	}
	missing := listText(obj["missing"])
	if missing == "" {
		missing = "some members"
	}
	fmt.Fprintf(w, "partial: no answer from %s; tasks only they hold are missing\n", missing)
}

// rateText is a queue's rate for a table: "none" when it has no limit.
func rateText(settings any) string {
	r := field(settings, "rate")
	if r == nil {
		return "none"
	}
	if n, ok := r.(json.Number); ok {
		if f, err := n.Float64(); err == nil && f == 0 {
			return "none"
		}
		return n.String() + "/s"
	}
	return cellText("rate", r, "none")
}

func showPurged(w io.Writer, answer []byte, inv *invocation) error {
	obj, err := decodeObject(answer)
	if err != nil {
		return err
	}
	line := fmt.Sprintf("queue %s purged: its tasks created before %s are cancelled", inv.args[0], scalarText("purged_before", obj["purged_before"]))
	if n, ok := obj["cancelled"]; ok {
		line += fmt.Sprintf(" (%s cancelled)", str(n))
	}
	fmt.Fprintln(w, line)
	return nil
}

func showDeleted(w io.Writer, answer []byte, inv *invocation) error {
	line := fmt.Sprintf("queue %s deleted", inv.args[0])
	if obj, err := decodeObject(answer); err == nil {
		if n, ok := obj["cancelled"]; ok {
			line += fmt.Sprintf(" (%s pending tasks cancelled)", str(n))
		}
	}
	fmt.Fprintln(w, line)
	return nil
}

func showQueueTasks(w io.Writer, answer []byte, _ *invocation) error {
	obj, err := decodeObject(answer)
	if err != nil {
		return err
	}
	list, ok := obj["tasks"].([]any)
	if !ok {
		return fmt.Errorf(`no "tasks" list`)
	}
	if len(list) == 0 {
		fmt.Fprintln(w, "no tasks")
	} else {
		// The columns that tell tasks apart; task get shows the rest.
		printTable(w, list, []string{"id", "state", "name", "eta", "attempts", "last_status", "method", "url"}, true)
	}
	if next := str(obj["next"]); next != "" {
		fmt.Fprintf(w, "more: --after %s\n", next)
	}
	printPartial(w, obj)
	return nil
}

func showCluster(w io.Writer, answer []byte, _ *invocation) error {
	obj, err := decodeObject(answer)
	if err != nil {
		return err
	}
	members, _ := obj["members"].([]any)
	rest := map[string]any{}
	for k, v := range obj {
		if k != "members" {
			rest[k] = v
		}
	}
	printObject(w, rest, []string{"self", "epoch", "leader", "replicas"})
	if len(members) > 0 {
		fmt.Fprintln(w)
		printTable(w, members, allColumns(members, []string{"id", "addr", "self", "reachable"}), false)
	}
	return nil
}

// field is obj[key] when obj is a JSON object, else nil.
func field(obj any, key string) any {
	m, _ := obj.(map[string]any)
	return m[key]
}

// printObject writes obj as aligned "key  value" lines: first's keys in that
// order, then the others sorted. A nested object's fields are shown with dotted
// keys; a list of objects is shown as a table after the lines.
func printObject(w io.Writer, obj map[string]any, first []string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	type table struct {
		name string
		rows []any
	}
	var tables []table
	var emit func(key string, v any)
	emit = func(key string, v any) {
		switch x := v.(type) {
		case map[string]any:
			if len(x) == 0 {
				fmt.Fprintf(tw, "%s\t-\n", key)
			}
			for _, k := range sortedKeys(x) {
				emit(key+"."+k, x[k])
			}
		case []any:
			if len(x) > 0 && allObjects(x) {
				tables = append(tables, table{key, x})
				return
			}
			fmt.Fprintf(tw, "%s\t%s\n", key, orDash(listText(x)))
		default:
			fmt.Fprintf(tw, "%s\t%s\n", key, scalarText(key, v))
		}
	}
	for _, k := range orderKeys(obj, first) {
		emit(k, obj[k])
	}
	tw.Flush()
	for _, t := range tables {
		fmt.Fprintf(w, "\n%s:\n", t.name)
		printTable(w, t.rows, allColumns(t.rows, nil), true)
	}
}

// orderKeys is first's keys that m has, then m's other keys sorted.
func orderKeys(m map[string]any, first []string) []string {
	var keys []string
	for _, k := range first {
		if _, ok := m[k]; ok {
			keys = append(keys, k)
		}
	}
	for _, k := range sortedKeys(m) {
		if !slices.Contains(first, k) {
			keys = append(keys, k)
		}
	}
	return keys
}

// columnOrder puts the usual columns first in any table.
var columnOrder = []string{"id", "number", "attempt", "state", "name", "node", "start", "started", "at", "duration",
	"status", "code", "error_kind", "kind", "error", "addr", "self", "reachable"}

// allColumns is every key of any row: first's (else the usual columns) in that
// order, then the others sorted.
func allColumns(rows []any, first []string) []string {
	if first == nil {
		first = columnOrder
	}
	seen := map[string]any{}
	for _, r := range rows {
		if m, ok := r.(map[string]any); ok {
			for k := range m {
				seen[k] = nil
			}
		}
	}
	return orderKeys(seen, first)
}

// printTable writes rows (JSON objects) as a table of cols, "-" where a row has
// no such key. Cells are cut to a readable width when truncate is set.
func printTable(w io.Writer, rows []any, cols []string, truncate bool) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	header := make([]string, len(cols))
	for i, c := range cols {
		header[i] = strings.ToUpper(c)
	}
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		cells := make([]string, len(cols))
		for i, c := range cols {
			v, ok := r.(map[string]any)[c]
			cells[i] = "-"
			if ok {
				cells[i] = cellText(c, v, "-")
			}
			if truncate {
				cells[i] = cut(cells[i], 60)
			}
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	tw.Flush()
}

// cellText is a value in a table cell; missing (nil) shows as def.
func cellText(key string, v any, def string) string {
	switch x := v.(type) {
	case nil:
		return def
	case []any:
		if !allObjects(x) {
			return orDash(strings.Join(strings.Split(listText(x), ", "), ","))
		}
		b, _ := json.Marshal(x)
		return string(b)
	case map[string]any:
		b, _ := json.Marshal(x)
		return string(b)
	}
	return scalarText(key, v)
}

// scalarText shows one value: null as "unset" (an unset setting), Unix times (by
// their key's name) as RFC 3339 UTC, strings with control characters quoted.
func scalarText(key string, v any) string {
	switch x := v.(type) {
	case nil:
		return "unset"
	case json.Number:
		if isTimeKey(key) {
			if f, err := x.Float64(); err == nil && f > 1e8 {
				return time.Unix(0, int64(f*1e9)).UTC().Format("2006-01-02T15:04:05.000Z07:00")
			}
		}
		return x.String()
	case string:
		if strings.ContainsFunc(x, unicode.IsControl) {
			return strconv.Quote(x)
		}
		return orDash(x)
	case bool:
		return strconv.FormatBool(x)
	case map[string]any, []any:
		return cellText(key, v, "-")
	}
	return fmt.Sprint(v)
}

// isTimeKey says whether a field named key holds a time (Unix seconds).
func isTimeKey(key string) bool {
	key = key[strings.LastIndex(key, ".")+1:]
	switch key {
	case "eta", "next_eta", "purged_before", "start", "started", "at", "time":
		return true
	}
	return strings.HasSuffix(key, "_at") || strings.HasSuffix(key, "_time")
}

func allObjects(list []any) bool {
	for _, v := range list {
		if _, ok := v.(map[string]any); !ok {
			return false
		}
	}
	return true
}

// listText joins a list of scalars with ", ".
func listText(v any) string {
	list, _ := v.([]any)
	parts := make([]string, len(list))
	for i, e := range list {
		parts[i] = cellText("", e, "-")
	}
	return strings.Join(parts, ", ")
}

func yesNo(v any) string {
	if v == true {
		return "yes"
	}
	return "no"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// cut shortens s to n runes, marking the cut.
func cut(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
