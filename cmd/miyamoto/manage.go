package main

// The management commands: miyamoto enqueue, task, queue and cluster, each one
// request to a node's API through package client. This file parses their
// arguments; manage_print.go renders the answers.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/miyamotohq/miyamoto/net/client"
)

// manageCommand is one management command: its words ("queue set"), what its
// positional arguments are, its own flags, the request it makes and how its
// answer is shown.
type manageCommand struct {
	words    string // "queue set"
	args     string // for the usage line: "QUEUE KEY=VALUE..."
	min, max int    // positional arguments after the words; max -1: no limit
	help     string
	flags    func(fs *flag.FlagSet, inv *invocation)
	call     func(ctx context.Context, c *client.Client, inv *invocation) ([]byte, error)
	show     func(w io.Writer, answer []byte, inv *invocation) error
}

// invocation is what one command line asked for.
type invocation struct {
	args []string // positional arguments after the command's words
	json bool     // print the server's JSON as it came
	enq  enqueueFlags
	// queue delete
	force bool
	// queue tasks
	state, after string
	limit        int
	stdin        io.Reader
}

// enqueueFlags are `miyamoto enqueue`'s task fields.
type enqueueFlags struct {
	url, method, name, countdown, eta, body string
	params, headers                         pairFlag
}

// pairFlag is a repeatable key=value flag, kept in order.
type pairFlag []string

func (p *pairFlag) String() string     { return strings.Join(*p, ",") }
func (p *pairFlag) Set(v string) error { *p = append(*p, v); return nil }

// onArg makes a command's call of a client method that takes its one argument.
func onArg(f func(*client.Client, context.Context, string) ([]byte, error)) func(context.Context, *client.Client, *invocation) ([]byte, error) {
	return func(ctx context.Context, c *client.Client, inv *invocation) ([]byte, error) {
		return f(c, ctx, inv.args[0])
	}
}

var manageCommands = []manageCommand{
	{words: "enqueue", args: "QUEUE --url URL", min: 1, max: 1, help: "enqueue a task",
		flags: enqueueFlagSet, call: callEnqueue, show: showEnqueued},
	{words: "task get", args: "ID", min: 1, max: 1, help: "a task's state and attempts",
		call: onArg((*client.Client).Task), show: showTask},
	{words: "task cancel", args: "ID", min: 1, max: 1, help: "cancel a task that has not finished",
		call: onArg((*client.Client).CancelTask), show: showCancelled},
	{words: "task retry", args: "ID", min: 1, max: 1, help: "re-queue a dead task as a new task",
		call: onArg((*client.Client).RetryTask), show: showRequeued},
	{words: "queue ls", help: "every queue with its counts by state",
		call: func(ctx context.Context, c *client.Client, _ *invocation) ([]byte, error) { return c.Queues(ctx) },
		show: showQueues},
	{words: "queue get", args: "QUEUE", min: 1, max: 1, help: "a queue's settings",
		call: onArg((*client.Client).Queue), show: showQueue},
	{words: "queue set", args: "QUEUE KEY=VALUE...", min: 2, max: -1, help: "change settings, e.g. rate=5 retry.min_backoff=1s",
		call: callSetQueue, show: showQueue},
	{words: "queue pause", args: "QUEUE", min: 1, max: 1, help: "stop delivering the queue's tasks",
		call: onArg((*client.Client).PauseQueue), show: showPaused},
	{words: "queue resume", args: "QUEUE", min: 1, max: 1, help: "deliver the queue's tasks again",
		call: onArg((*client.Client).ResumeQueue), show: showPaused},
	{words: "queue purge", args: "QUEUE", min: 1, max: 1, help: "cancel every task of the queue created until now",
		call: onArg((*client.Client).PurgeQueue), show: showPurged},
	{words: "queue delete", args: "QUEUE", min: 1, max: 1, help: "remove a queue's settings",
		flags: func(fs *flag.FlagSet, inv *invocation) {
			fs.BoolVar(&inv.force, "force", false, "purge the queue's pending tasks first (sends ?force=true)")
		},
		call: func(ctx context.Context, c *client.Client, inv *invocation) ([]byte, error) {
			out, err := c.DeleteQueue(ctx, inv.args[0], inv.force)
			var ce *client.Error
			if errors.As(err, &ce) && ce.Code == http.StatusConflict && !inv.force {
				ce.Message += "; from here: miyamoto queue delete " + inv.args[0] + " --force"
			}
			return out, err
		}, show: showDeleted},
	{words: "queue tasks", args: "QUEUE", min: 1, max: 1, help: "a queue's tasks, paged",
		flags: func(fs *flag.FlagSet, inv *invocation) {
			fs.StringVar(&inv.state, "state", "", "only tasks in this state: scheduled, claimed, succeeded, dead, unknown, cancelled")
			fs.IntVar(&inv.limit, "limit", 0, "at most this many tasks (server default 100, at most 1000)")
			fs.StringVar(&inv.after, "after", "", "the page after this task ID (the previous page's next)")
		},
		call: callQueueTasks, show: showQueueTasks},
	// Before "cluster": findCommand takes the first command whose words match.
	{words: "cluster remove", args: "ID", min: 1, max: 1, help: "remove a member from the cluster; waits until the roster no longer lists it",
		call: callClusterRemove, show: showClusterRemove},
	{words: "cluster", help: "the members and what this node sees of them",
		call: func(ctx context.Context, c *client.Client, _ *invocation) ([]byte, error) { return c.Cluster(ctx) },
		show: showCluster},
}

// manageUsage lists the management commands and their shared flags.
func manageUsage(w io.Writer) {
	fmt.Fprintln(w, "management commands (against --server, default "+client.DefaultServer+", or MIYAMOTO_SERVER):")
	for _, c := range manageCommands {
		fmt.Fprintf(w, "  miyamoto %-40s %s\n", strings.TrimSpace(c.words+" "+c.args), c.help)
	}
	fmt.Fprint(w, `shared flags: --server URL, --json (print the server's JSON), --timeout 30s,
  --token-file FILE (else the token is MIYAMOTO_API_TOKEN)
`)
}

// isManageCommand says whether word starts a management command.
func isManageCommand(word string) bool {
	for _, c := range manageCommands {
		if strings.Fields(c.words)[0] == word {
			return true
		}
	}
	return false
}

// runManage runs a management command line (args starts with its first word).
// It exits 0 on a 2xx answer, 1 when the server refused or could not be reached
// (one line saying why), 2 on bad arguments.
func runManage(args []string, env func(string) (string, bool), stdin io.Reader, stdout, stderr io.Writer) int {
	cmd, rest, err := findCommand(args)
	if err != nil {
		fmt.Fprintf(stderr, "miyamoto: %v\n", err)
		return exitBadArgs
	}
	name := "miyamoto " + cmd.words
	inv := &invocation{stdin: stdin}
	c, err := parseManage(cmd, rest, env, inv)
	if errors.Is(err, flag.ErrHelp) {
		commandHelp(stdout, cmd)
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return exitBadArgs
	}
	answer, err := cmd.call(context.Background(), c, inv)
	var bad *badArgError
	switch {
	case errors.As(err, &bad):
		fmt.Fprintf(stderr, "%s: %v\n", name, bad.err)
		return exitBadArgs
	case err != nil:
		fmt.Fprintf(stderr, "%s: %s\n", name, oneLine(err))
		return exitFailed
	}
	if inv.json {
		stdout.Write(answer)
		if len(answer) > 0 && answer[len(answer)-1] != '\n' {
			fmt.Fprintln(stdout)
		}
		return exitOK
	}
	if err := cmd.show(stdout, answer, inv); err != nil {
		fmt.Fprintf(stderr, "%s: the server's answer is not what this version understands (%v); --json prints it as it came\n", name, err)
		return exitFailed
	}
	return exitOK
}

// findCommand picks the command named by the first one or two words of args.
func findCommand(args []string) (manageCommand, []string, error) {
	var groupWords []string
	for _, c := range manageCommands {
		w := strings.Fields(c.words)
		if len(w) == 1 && args[0] == w[0] {
			return c, args[1:], nil
		}
		if len(w) == 2 && args[0] == w[0] {
			groupWords = append(groupWords, w[1])
			if len(args) > 1 && args[1] == w[1] {
				return c, args[2:], nil
			}
		}
	}
	want := strings.Join(groupWords, ", ")
	if len(args) < 2 || strings.HasPrefix(args[1], "-") {
		return manageCommand{}, nil, fmt.Errorf("%s needs a subcommand: %s", args[0], want)
	}
	return manageCommand{}, nil, fmt.Errorf("%s %s: unknown subcommand (want %s)", args[0], args[1], want)
}

// sharedFlags are the flags of every management command.
type sharedFlags struct {
	server, tokenFile *string
	timeout           *time.Duration
}

// manageFlags is cmd's flag set: the shared flags and its own, filling inv.
func manageFlags(cmd manageCommand, inv *invocation) (*flag.FlagSet, sharedFlags) {
	fs := flag.NewFlagSet(cmd.words, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	sh := sharedFlags{
		server:    fs.String("server", "", "the node's API URL (default MIYAMOTO_SERVER, else "+client.DefaultServer+")"),
		tokenFile: fs.String("token-file", "", "read the API token from FILE (default: MIYAMOTO_API_TOKEN)"),
		timeout:   fs.Duration("timeout", 30*time.Second, "give up on the server after this long"),
	}
	fs.BoolVar(&inv.json, "json", false, "print the server's JSON answer as it came")
	if cmd.flags != nil {
		cmd.flags(fs, inv)
	}
	return fs, sh
}

// parseManage reads the shared flags, the command's own flags and its positional
// arguments, in any order, and returns the client they ask for.
func parseManage(cmd manageCommand, args []string, env func(string) (string, bool), inv *invocation) (*client.Client, error) {
	fs, sh := manageFlags(cmd, inv)
	server, tokenFile, timeout := sh.server, sh.tokenFile, sh.timeout
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return nil, flagError(err)
	}
	inv.args = pos
	if len(pos) < cmd.min || (cmd.max >= 0 && len(pos) > cmd.max) {
		return nil, fmt.Errorf("usage: miyamoto %s %s (%d argument(s) given)", cmd.words, cmd.args, len(pos))
	}
	if *timeout <= 0 {
		return nil, fmt.Errorf("--timeout must be positive, not %s", *timeout)
	}
	if *server == "" {
		*server, _ = env("MIYAMOTO_SERVER")
	}
	if *server == "" {
		*server = client.DefaultServer
	}
	token, err := apiToken(*tokenFile, env)
	if err != nil {
		return nil, err
	}
	c, err := client.New(*server, token, *timeout)
	if err != nil {
		return nil, fmt.Errorf("--server: %v", err)
	}
	return c, nil
}

// apiToken is the token in file when given (its first line), else
// MIYAMOTO_API_TOKEN's first (serve reads that variable as a comma-separated
// list). A token is never taken from a flag's value: it would show in ps.
func apiToken(file string, env func(string) (string, bool)) (string, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("--token-file: %v", err)
		}
		line, _, _ := strings.Cut(string(b), "\n")
		tok := strings.TrimSpace(line)
		if tok == "" {
			return "", fmt.Errorf("--token-file %s: the first line is empty; it should hold the API token", file)
		}
		return tok, nil
	}
	v, _ := env("MIYAMOTO_API_TOKEN")
	first, _, _ := strings.Cut(v, ",")
	return strings.TrimSpace(first), nil
}

// parseInterleaved parses fs's flags wherever they stand among the positional
// arguments (the flag package stops at the first of those), which it returns in
// order. After "--" everything is positional.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// flagError makes the flag package's errors one line that says what to do.
func flagError(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return err
	}
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		name = strings.TrimPrefix(name, "-")
		if name == "token" || name == "api-token" {
			return fmt.Errorf("--%s is not accepted (a token on the command line shows in ps): set MIYAMOTO_API_TOKEN or use --token-file FILE", name)
		}
		return fmt.Errorf("--%s is not a flag of this command (see -h)", name)
	}
	return errors.New(msg)
}

func commandHelp(w io.Writer, cmd manageCommand) {
	fmt.Fprintf(w, "usage: miyamoto %s [flags]\n\n%s\n\n", strings.TrimSpace(cmd.words+" "+cmd.args), cmd.help)
	fs, _ := manageFlags(cmd, &invocation{})
	fs.SetOutput(w)
	fs.PrintDefaults()
}

// badArgError is an argument found wrong only when the request is built.
type badArgError struct{ err error }

func (e *badArgError) Error() string { return e.err.Error() }

func badArg(format string, a ...any) error { return &badArgError{fmt.Errorf(format, a...)} }

func enqueueFlagSet(fs *flag.FlagSet, inv *invocation) {
	e := &inv.enq
	fs.StringVar(&e.url, "url", "", "the worker's URL (required)")
	fs.StringVar(&e.method, "method", "", "the HTTP method of the delivery (default POST)")
	fs.StringVar(&e.name, "name", "", "a task name, unique in the queue for the dedup window")
	fs.StringVar(&e.countdown, "countdown", "", "deliver after this long: seconds (1.5) or a duration (10m)")
	fs.StringVar(&e.eta, "eta", "", "deliver at this time: Unix seconds or RFC 3339 (2030-01-02T15:04:05Z)")
	fs.Var(&e.params, "param", "a form parameter for the worker, key=value; repeat for more")
	fs.Var(&e.headers, "header", "a header for the worker, Name=value or 'Name: value'; repeat for more")
	fs.StringVar(&e.body, "body", "", "the body for the worker (instead of params); @FILE reads a file, @- the standard input")
}

// callEnqueue builds the JSON task from the flags and posts it.
func callEnqueue(ctx context.Context, c *client.Client, inv *invocation) ([]byte, error) {
	task, err := enqueueTask(inv.enq, inv.stdin)
	if err != nil {
		return nil, &badArgError{err}
	}
	return c.Enqueue(ctx, inv.args[0], task)
}

// enqueueTask is the API's JSON task for the flags. It checks only what the
// server could not tell apart (how a countdown, a time or a pair is written); the
// server checks the rest and names the field.
func enqueueTask(e enqueueFlags, stdin io.Reader) (map[string]any, error) {
	if e.url == "" {
		return nil, errors.New("--url is required: the URL the task calls")
	}
	task := map[string]any{"url": e.url}
	for k, v := range map[string]string{"method": e.method, "name": e.name} {
		if v != "" {
			task[k] = v
		}
	}
	if e.countdown != "" {
		s, err := secondsArg(e.countdown)
		if err != nil {
			return nil, fmt.Errorf("--countdown: %v", err)
		}
		task["countdown"] = s
	}
	if e.eta != "" {
		s, err := timeArg(e.eta)
		if err != nil {
			return nil, fmt.Errorf("--eta: %v", err)
		}
		task["eta"] = s
	}
	if len(e.params) > 0 {
		params, err := pairsToParams(e.params)
		if err != nil {
			return nil, err
		}
		task["params"] = params
	}
	if len(e.headers) > 0 {
		headers := map[string]string{}
		for _, h := range e.headers {
			k, v, ok := cutHeader(h)
			if !ok {
				return nil, fmt.Errorf("--header wants Name=value or 'Name: value', not %q", h)
			}
			headers[k] = v
		}
		task["headers"] = headers
	}
	if e.body != "" {
		body, err := bodyArg(e.body, stdin)
		if err != nil {
			return nil, fmt.Errorf("--body: %v", err)
		}
		task["body"] = body
	}
	return task, nil
}

// pairsToParams groups key=value pairs into the API's params object; a key given
// several times becomes an array, in order.
func pairsToParams(pairs []string) (map[string]any, error) {
	grouped := map[string][]string{}
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--param wants key=value, not %q", p)
		}
		grouped[k] = append(grouped[k], v)
	}
	params := map[string]any{}
	for k, vs := range grouped {
		if len(vs) == 1 {
			params[k] = vs[0]
		} else {
			params[k] = vs
		}
	}
	return params, nil
}

// cutHeader splits "Name=value" or "Name: value" at the first '=' or ':' (neither
// can be part of a header name).
func cutHeader(h string) (string, string, bool) {
	i := strings.IndexAny(h, "=:")
	if i <= 0 {
		return "", "", false
	}
	return strings.TrimSpace(h[:i]), strings.TrimSpace(h[i+1:]), true
}

// secondsArg reads a countdown: seconds as a number, or a Go duration.
func secondsArg(s string) (float64, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
		return f, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("want seconds (5, 1.5) or a duration (10m, 1h30m), not %q", s)
	}
	return d.Seconds(), nil
}

// timeArg reads an ETA: Unix seconds, or an RFC 3339 time.
func timeArg(s string) (float64, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
		return f, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, fmt.Errorf("want Unix seconds or an RFC 3339 time (2030-01-02T15:04:05Z), not %q", s)
	}
	return float64(t.UnixNano()) / 1e9, nil
}

// bodyArg is --body's text: as given, or a file's content after '@' ("@-": the
// standard input).
func bodyArg(s string, stdin io.Reader) (string, error) {
	name, ok := strings.CutPrefix(s, "@")
	if !ok {
		return s, nil
	}
	if name == "-" {
		b, err := io.ReadAll(stdin)
		return string(b), err
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// callSetQueue turns KEY=VALUE arguments into the PUT's JSON object.
func callSetQueue(ctx context.Context, c *client.Client, inv *invocation) ([]byte, error) {
	settings, err := settingsArgs(inv.args[1:])
	if err != nil {
		return nil, &badArgError{err}
	}
	return c.SetQueue(ctx, inv.args[0], settings)
}

// settingsArgs builds the JSON object of queue settings from key=value pairs, as
// PUT /v1/queues/{q} takes it: a dotted key names a nested field
// (retry.min_backoff=1s); a value that is JSON (5, 0.5, true, null, "10") is sent
// as that JSON, any other (1s, at-most-once, 5/s) as a string. The server checks
// the names and the values.
func settingsArgs(pairs []string) (map[string]any, error) {
	root := map[string]any{}
	for _, p := range pairs {
		key, val, ok := strings.Cut(p, "=")
		if !ok || key == "" {
			return nil, fmt.Errorf("settings are KEY=VALUE (e.g. rate=5 retry.min_backoff=1s), not %q", p)
		}
		path := strings.Split(key, ".")
		obj := root
		for i, name := range path {
			if name == "" {
				return nil, fmt.Errorf("%q: empty name in the key", key)
			}
			if i == len(path)-1 {
				if _, dup := obj[name]; dup {
					return nil, fmt.Errorf("%s is given twice", key)
				}
				obj[name] = settingValue(val)
				break
			}
			next, exists := obj[name]
			if !exists {
				next = map[string]any{}
				obj[name] = next
			}
			sub, isObj := next.(map[string]any)
			if !isObj {
				return nil, fmt.Errorf("%s is given both as a value and as a group (%s)", strings.Join(path[:i+1], "."), key)
			}
			obj = sub
		}
	}
	return root, nil
}

// settingValue is val as JSON when it is a JSON value, else as a string.
func settingValue(val string) any {
	var v json.RawMessage
	if json.Unmarshal([]byte(val), &v) == nil {
		return v
	}
	return val
}

// callQueueTasks lists a queue's tasks with the paging flags.
func callQueueTasks(ctx context.Context, c *client.Client, inv *invocation) ([]byte, error) {
	if inv.limit < 0 {
		return nil, badArg("--limit must not be negative, not %d", inv.limit)
	}
	return c.QueueTasks(ctx, inv.args[0], inv.state, inv.after, inv.limit)
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// removeEvery is how often `cluster remove` asks again while the removal is
// pending.
const removeEvery = 500 * time.Millisecond

// callClusterRemove checks that the ID names a member (so that a typo is not
// taken for a removal done), then asks the server to remove it until the answer
// says removed, or --timeout passes.
func callClusterRemove(ctx context.Context, c *client.Client, inv *invocation) ([]byte, error) {
	id := inv.args[0]
	view, err := c.Cluster(ctx)
	if err != nil {
		return nil, err
	}
	var cl struct {
		Members []struct{ ID string }
	}
	if err := json.Unmarshal(view, &cl); err != nil {
		return nil, fmt.Errorf("the server's /v1/cluster is not JSON: %v", err)
	}
	var ids []string
	for _, m := range cl.Members {
		ids = append(ids, m.ID)
	}
	if !slices.Contains(ids, id) {
		return nil, fmt.Errorf("%s is not a member of the cluster (members: %s)", id, strings.Join(ids, ", "))
	}
	for {
		answer, err := c.RemoveMember(ctx, id)
		if err != nil {
			return nil, err
		}
		var a struct{ Status string }
		if json.Unmarshal(answer, &a) == nil && a.Status == "removed" {
			return answer, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("the removal of %s is still pending after --timeout; run the command again to wait more", id)
		case <-time.After(removeEvery):
		}
	}
}

func showClusterRemove(w io.Writer, answer []byte, inv *invocation) error {
	obj, err := decodeObject(answer)
	if err != nil {
		return err
	}
	roster, _ := obj["roster"].(map[string]any)
	var ids []string
	members, _ := roster["members"].([]any)
	for _, m := range members {
		if id, ok := field(m, "id").(string); ok {
			ids = append(ids, id)
		}
	}
	fmt.Fprintf(w, "removed %s; roster epoch %v: %s\n", inv.args[0], roster["epoch"], strings.Join(ids, ", "))
	return nil
}
