package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// cliRun is one management command's outcome.
type cliRun struct {
	code           int
	stdout, stderr string
}

// cli runs a management command in this process with env as its environment.
func cli(env map[string]string, stdin string, args ...string) cliRun {
	var out, errOut bytes.Buffer
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	code := runManage(args, lookup, strings.NewReader(stdin), &out, &errOut)
	return cliRun{code, out.String(), errOut.String()}
}

// ok runs a command that must succeed and returns its output.
func (c cliEnv) ok(t *testing.T, args ...string) string {
	t.Helper()
	r := cli(c, "", args...)
	require.Equal(t, exitOK, r.code, "miyamoto %s: %s", strings.Join(args, " "), r.stderr)
	require.Empty(t, r.stderr)
	return r.stdout
}

// fails runs a command that must fail with code and one line on stderr.
func (c cliEnv) fails(t *testing.T, code int, args ...string) string {
	t.Helper()
	r := cli(c, "", args...)
	require.Equal(t, code, r.code, "miyamoto %s: %s%s", strings.Join(args, " "), r.stdout, r.stderr)
	require.Empty(t, r.stdout)
	require.Equal(t, 1, strings.Count(r.stderr, "\n"), "one line: %q", r.stderr)
	return r.stderr
}

type cliEnv map[string]string

// jsonOf runs a command with --json and decodes its output.
func (c cliEnv) jsonOf(t *testing.T, args ...string) map[string]any {
	t.Helper()
	var v map[string]any
	out := c.ok(t, append(args, "--json")...)
	require.NoError(t, json.Unmarshal([]byte(out), &v), out)
	return v
}

// Every management command against a real node with an API token: what it
// prints, what --json prints, and what reached the worker.
func TestE2EManageCommands(t *testing.T) {
	const token = "cli-test-token-0123456789abcdef"
	p := startCluster(t, 1, "--api-token", token)[0]
	env := cliEnv{"MIYAMOTO_SERVER": "http://" + p.http, "MIYAMOTO_API_TOKEN": token}

	var mu sync.Mutex
	got := map[string][]*http.Request{}
	bodies := map[string]string{}
	worker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		id := r.Header.Get("X-Task-Id")
		got[id] = append(got[id], r)
		bodies[id] = string(b)
		mu.Unlock()
		if strings.HasSuffix(r.URL.Path, "/fail") {
			w.WriteHeader(500)
			return
		}
		w.WriteHeader(200)
	}))
	t.Cleanup(worker.Close)
	deliveries := func(id string) int {
		mu.Lock()
		defer mu.Unlock()
		return len(got[id])
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if cond() {
				return
			}
		}
		t.Fatalf("%s did not happen within 20 s", what)
	}

	// cluster
	out := env.ok(t, "cluster")
	require.Regexp(t, `(?m)^self\s+n1$`, out)
	require.Regexp(t, `(?m)^ID\s+ADDR\s+SELF\s+REACHABLE`, out)
	require.Regexp(t, `(?m)^n1\s+\S+\s+true\s+true`, out)
	require.Equal(t, "n1", env.jsonOf(t, "cluster")["self"])

	// enqueue: params (one repeated), a header, and flags after the queue.
	out = env.ok(t, "enqueue", "emails", "--url", worker.URL+"/hook", "--param", "a=1", "--param", "a=2", "--param", "b=x y",
		"--header", "X-Custom: yes", "--name", "welcome-1")
	require.Regexp(t, `^task [0-9a-f-]{36} scheduled in queue emails\n$`, out)
	id := strings.Fields(out)[1]
	waitFor("the delivery", func() bool { return deliveries(id) == 1 })
	mu.Lock()
	require.Equal(t, "a=1&a=2&b=x+y", bodies[id])
	require.Equal(t, "yes", got[id][0].Header.Get("X-Custom"))
	require.Equal(t, "welcome-1", got[id][0].Header.Get("X-Task-Name"))
	mu.Unlock()
	// The same name again is the server's 409, as one line naming the field.
	line := env.fails(t, exitFailed, "enqueue", "emails", "--url", worker.URL+"/hook", "--name", "welcome-1")
	require.Contains(t, line, "miyamoto enqueue: ")
	require.Contains(t, line, "HTTP 409")
	require.Contains(t, line, "name")

	// task get: the delivered task, in a table and as the server's JSON.
	waitFor("the task to succeed", func() bool { return env.jsonOf(t, "task", "get", id)["state"] == "succeeded" })
	out = env.ok(t, "task", "get", id)
	require.Regexp(t, `(?m)^id\s+`+id+`$`, out)
	require.Regexp(t, `(?m)^state\s+succeeded$`, out)
	require.Regexp(t, `(?m)^url\s+`+worker.URL+`/hook$`, out)
	require.Regexp(t, `(?m)^eta\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`, out, "times are shown as RFC 3339")

	// enqueue --json with a body from the standard input and an eta; then cancel.
	r := cli(env, "raw body", "enqueue", "later", "--url", worker.URL+"/hook", "--body", "@-", "--countdown", "1h", "--json")
	require.Equal(t, exitOK, r.code, r.stderr)
	var enq map[string]string
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &enq), r.stdout)
	require.Equal(t, "scheduled", enq["status"])
	later := enq["id"]
	require.Equal(t, "task "+later+" cancelled\n", env.ok(t, "task", "cancel", later))
	require.Equal(t, "cancelled", env.jsonOf(t, "task", "get", later)["state"])
	line = env.fails(t, exitFailed, "task", "retry", later)
	require.Contains(t, line, "HTTP 409")

	// queue set, get, pause, resume: a retry limit of 1 with a short backoff.
	out = env.ok(t, "queue", "set", "flaky", "retry.task_retry_limit=1", "retry.min_backoff=100ms", "rate=50", "bucket_size=5")
	require.Regexp(t, `(?m)^name\s+flaky$`, out)
	require.Regexp(t, `(?m)^settings\.rate\s+50$`, out)
	require.Regexp(t, `(?m)^settings\.retry\.min_backoff\s+100ms$`, out)
	out = env.ok(t, "queue", "get", "flaky")
	require.Regexp(t, `(?m)^settings\.retry\.task_retry_limit\s+1$`, out)
	require.Regexp(t, `(?m)^settings\.bucket_size\s+5$`, out)
	line = env.fails(t, exitFailed, "queue", "set", "flaky", "retry.min_backoff=soon")
	require.Contains(t, line, "retry.min_backoff", "the server's error names the field")
	require.Contains(t, line, "HTTP 400")
	require.Equal(t, "queue flaky paused\n", env.ok(t, "queue", "pause", "flaky"))
	require.Equal(t, true, env.jsonOf(t, "queue", "get", "flaky")["paused"])
	require.Equal(t, "queue flaky resumed\n", env.ok(t, "queue", "resume", "flaky"))
	require.Equal(t, false, env.jsonOf(t, "queue", "get", "flaky")["paused"])

	// A task that fails dies after one retry; queue tasks lists it; task retry
	// re-queues it.
	out = env.ok(t, "enqueue", "flaky", "--url", worker.URL+"/fail")
	dead := strings.Fields(out)[1]
	waitFor("the task to die", func() bool { return env.jsonOf(t, "task", "get", dead)["state"] == "dead" })
	require.Equal(t, 2, deliveries(dead))
	out = env.ok(t, "queue", "tasks", "flaky", "--state", "dead")
	require.Regexp(t, `(?m)^ID\s+STATE\s+NAME\s+ETA\s+ATTEMPTS\s+LAST_STATUS\s+METHOD\s+URL$`, out)
	require.Regexp(t, `(?m)^`+dead+`\s+dead\s+-\s+\S+\s+\d+\s+500\s+POST\s+`, out)
	out = env.ok(t, "task", "retry", dead)
	require.Regexp(t, `^task `+dead+` re-queued as task [0-9a-f-]{36} \(scheduled\)\n$`, out)
	again := strings.Fields(out)[5]
	// It fails as well and dies after its one retry, 100 ms later: wait for that,
	// so that queue ls below has one count to show (waiting only for its first
	// delivery let a loaded machine show it dead or not yet).
	waitFor("the re-queued task to die", func() bool { return env.jsonOf(t, "task", "get", again)["state"] == "dead" })
	require.Equal(t, 2, deliveries(again))

	// queue ls: every queue with its counts.
	out = env.ok(t, "queue", "ls")
	require.Regexp(t, `(?m)^QUEUE\s+PAUSED\s+SCHEDULED\s+CLAIMED\s+SUCCEEDED\s+DEAD\s+UNKNOWN\s+CANCELLED\s+RATE$`, out)
	require.Regexp(t, `(?m)^emails\s+no\s+0\s+0\s+1\s+0\s+0\s+0\s+none$`, out)
	require.Regexp(t, `(?m)^later\s+no\s+0\s+0\s+0\s+0\s+0\s+1\s+none$`, out)
	require.Regexp(t, `(?m)^flaky\s+no\s+0\s+0\s+0\s+2\s+0\s+0\s+50/s$`, out)
	qs := env.jsonOf(t, "queue", "ls")["queues"].([]any)
	require.Len(t, qs, 3)

	// queue purge: a task due in an hour is cancelled.
	out = env.ok(t, "enqueue", "old", "--url", worker.URL+"/hook", "--countdown", "1h")
	purged := strings.Fields(out)[1]
	out = env.ok(t, "queue", "purge", "old")
	require.Regexp(t, `^queue old purged: its tasks created before \d{4}-\d\d-\d\dT\S+ are cancelled`, out)
	require.Equal(t, "cancelled", env.jsonOf(t, "task", "get", purged)["state"])

	// Errors: a task that does not exist, and no token or a wrong one.
	line = env.fails(t, exitFailed, "task", "get", "00000000-0000-0000-0000-000000000000")
	require.Equal(t, "miyamoto task get: id: no such task (HTTP 404)\n", line)
	line = cliEnv{"MIYAMOTO_SERVER": env["MIYAMOTO_SERVER"]}.fails(t, exitFailed, "queue", "ls")
	require.Contains(t, line, "HTTP 401")
	tokenFile := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte("wrong-token\n"), 0o600))
	line = env.fails(t, exitFailed, "queue", "ls", "--token-file", tokenFile)
	require.Contains(t, line, "HTTP 401", "--token-file wins over MIYAMOTO_API_TOKEN")
	require.NoError(t, os.WriteFile(tokenFile, []byte(token+"\n"), 0o600))
	cliEnv{}.ok(t, "cluster", "--server", "http://"+p.http, "--token-file", tokenFile)
}

// The real binary reads MIYAMOTO_SERVER and MIYAMOTO_API_TOKEN (the first of a
// comma-separated list, as serve reads that variable) from its environment.
func TestE2EManageBinaryEnvironment(t *testing.T) {
	bin := binary(t)
	p := startCluster(t, 1, "--api-token", "tok-new-0123456789,tok-old-0123456789")[0]
	cmd := exec.Command(bin, "queue", "ls")
	cmd.Env = append(os.Environ(), "MIYAMOTO_SERVER=http://"+p.http, "MIYAMOTO_API_TOKEN=tok-new-0123456789,tok-old-0123456789")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	require.Equal(t, "no queues yet (a queue is created by its first task or setting)\n", string(out))

	cmd = exec.Command(bin, "cluster")
	cmd.Env = append(os.Environ(), "MIYAMOTO_SERVER=http://"+p.http, "MIYAMOTO_API_TOKEN=")
	out, err = cmd.CombinedOutput()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit)
	require.Equal(t, exitFailed, exit.ExitCode())
	require.Contains(t, string(out), "miyamoto cluster: ")
	require.Contains(t, string(out), "(HTTP 401")
}

// queue delete sends DELETE /v1/queues/{q} (with ?force=true on --force) and shows
// the answer: exactly what it sends, against a fake server (a real one below).
func TestManageQueueDeleteFakeServer(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.RequestURI()+" "+r.Header.Get("Authorization"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.URL.Path == "/v1/queues/busy" && r.URL.Query().Get("force") != "true":
			w.WriteHeader(409)
			fmt.Fprint(w, `{"error": "queue: has 3 pending tasks; purge it first or delete with ?force=true", "field": "queue", "pending": 3}`)
		case r.URL.Path == "/v1/queues/busy":
			fmt.Fprint(w, `{"queue": "busy", "status": "deleted", "cancelled": 3}`)
		default:
			fmt.Fprint(w, `{"queue": "typo", "status": "deleted"}`)
		}
	}))
	t.Cleanup(srv.Close)
	env := cliEnv{"MIYAMOTO_SERVER": srv.URL, "MIYAMOTO_API_TOKEN": "tok"}

	require.Equal(t, "queue typo deleted\n", env.ok(t, "queue", "delete", "typo"))
	line := env.fails(t, exitFailed, "queue", "delete", "busy")
	require.Equal(t, "miyamoto queue delete: queue: has 3 pending tasks; purge it first or delete with ?force=true; from here: miyamoto queue delete busy --force (HTTP 409)\n", line)
	require.Equal(t, "queue busy deleted (3 pending tasks cancelled)\n", env.ok(t, "queue", "delete", "--force", "busy"))
	require.Equal(t, `{"queue": "busy", "status": "deleted", "cancelled": 3}`+"\n", env.ok(t, "queue", "delete", "busy", "--force", "--json"))
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []string{
		"DELETE /v1/queues/typo Bearer tok",
		"DELETE /v1/queues/busy Bearer tok",
		"DELETE /v1/queues/busy?force=true Bearer tok",
		"DELETE /v1/queues/busy?force=true Bearer tok",
	}, seen)
}

// Answers this version does not expect are still shown: a partial listing, new
// fields (an attempt history as a table), unset settings, and a server error
// that is not the API's JSON.
// queue delete against a real node: a queue with a pending task is refused (exit 1,
// one line saying how to force it), --force purges and deletes it, and its settings
// are gone (the queue shows defaults again).
func TestE2EManageQueueDelete(t *testing.T) {
	p := startCluster(t, 1)[0]
	env := cliEnv{"MIYAMOTO_SERVER": "http://" + p.http}
	env.ok(t, "queue", "set", "typo", "max_concurrent=3")
	require.Contains(t, env.ok(t, "queue", "get", "typo"), "max_concurrent")
	env.ok(t, "enqueue", "typo", "--url", "http://127.0.0.1:9/x", "--countdown", "600")
	line := env.fails(t, exitFailed, "queue", "delete", "typo")
	require.Contains(t, line, "1 pending tasks")
	require.Contains(t, line, "miyamoto queue delete typo --force")
	require.Equal(t, "queue typo deleted (1 pending tasks cancelled)\n", env.ok(t, "queue", "delete", "typo", "--force"))
	require.NotContains(t, env.ok(t, "queue", "get", "typo", "--json"), `"max_concurrent": 3`)
}

func TestManageShowsWhatItDoesNotKnow(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/queues":
			fmt.Fprint(w, `{"queues": [{"name": "q", "paused": true, "settings": {"rate": null}, "counts": {"scheduled": 2, "late": 1}, "partial": true}],
				"partial": true, "missing": ["n2", "n3"]}`)
		case "/v1/queues/q":
			fmt.Fprint(w, `{"name": "q", "paused": false, "settings": {"rate": null, "retry": {"task_retry_limit": null}}, "effective": {"rate": 0}}`)
		case "/v1/tasks/t1":
			fmt.Fprint(w, `{"id": "t1", "state": "dead", "dead_reason": "retry limit reached",
				"attempts_history": [{"attempt": 1, "node": "n1", "start": 1795756893.9, "error_kind": "refused", "error": "connection\trefused"},
				                     {"attempt": 2, "node": "n2", "status": 500, "body": "oops"}]}`)
		default:
			w.WriteHeader(502)
			fmt.Fprint(w, "<html>bad gateway</html>")
		}
	}))
	t.Cleanup(srv.Close)
	env := cliEnv{"MIYAMOTO_SERVER": srv.URL}

	out := env.ok(t, "queue", "ls")
	require.Regexp(t, `(?m)^QUEUE\s+PAUSED\s+SCHEDULED\s+CLAIMED\s+SUCCEEDED\s+DEAD\s+UNKNOWN\s+CANCELLED\s+LATE\s+RATE$`, out)
	require.Regexp(t, `(?m)^q\*\s+yes\s+2\s+0\s+0\s+0\s+0\s+0\s+1\s+none$`, out)
	require.Contains(t, out, "partial: no answer from n2, n3;")

	out = env.ok(t, "queue", "get", "q")
	require.Regexp(t, `(?m)^settings\.rate\s+unset$`, out)
	require.Regexp(t, `(?m)^settings\.retry\.task_retry_limit\s+unset$`, out)
	require.Regexp(t, `(?m)^effective\.rate\s+0$`, out)

	out = env.ok(t, "task", "get", "t1")
	require.Regexp(t, `(?m)^dead_reason\s+retry limit reached$`, out)
	require.Contains(t, out, "\nattempts_history:\n")
	require.Regexp(t, `(?m)^ATTEMPT\s+NODE\s+START\s+STATUS\s+ERROR_KIND\s+ERROR\s+BODY$`, out)
	require.Regexp(t, `(?m)^1\s+n1\s+2026-11-27T\S+\s+-\s+refused\s+"connection\\trefused"\s+-$`, out)
	require.Regexp(t, `(?m)^2\s+n2\s+-\s+500\s+-\s+-\s+oops$`, out)

	line := env.fails(t, exitFailed, "cluster")
	require.Equal(t, "miyamoto cluster: Bad Gateway (HTTP 502)\n", line)
}

func TestManageBadArguments(t *testing.T) {
	env := cliEnv{"MIYAMOTO_SERVER": "http://127.0.0.1:1"} // never reached: the arguments are wrong
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"queue"}, "miyamoto: queue needs a subcommand: ls, get, set, pause, resume, purge, delete, tasks\n"},
		{[]string{"queue", "frob"}, "miyamoto: queue frob: unknown subcommand (want ls, get, set, pause, resume, purge, delete, tasks)\n"},
		{[]string{"task", "get"}, "miyamoto task get: usage: miyamoto task get ID (0 argument(s) given)\n"},
		{[]string{"task", "get", "a", "b"}, "miyamoto task get: usage: miyamoto task get ID (2 argument(s) given)\n"},
		{[]string{"queue", "set", "q"}, "miyamoto queue set: usage: miyamoto queue set QUEUE KEY=VALUE... (1 argument(s) given)\n"},
		{[]string{"queue", "set", "q", "rate"}, "miyamoto queue set: settings are KEY=VALUE (e.g. rate=5 retry.min_backoff=1s), not \"rate\"\n"},
		{[]string{"queue", "set", "q", "rate=1", "rate=2"}, "miyamoto queue set: rate is given twice\n"},
		{[]string{"queue", "set", "q", "retry=1", "retry.min_backoff=1s"}, "miyamoto queue set: retry is given both as a value and as a group (retry.min_backoff)\n"},
		{[]string{"queue", "ls", "--token", "secret"}, "miyamoto queue ls: --token is not accepted (a token on the command line shows in ps): set MIYAMOTO_API_TOKEN or use --token-file FILE\n"},
		{[]string{"queue", "ls", "--frob"}, "miyamoto queue ls: --frob is not a flag of this command (see -h)\n"},
		{[]string{"queue", "ls", "--server", "ftp://x"}, "miyamoto queue ls: --server: \"ftp://x\" is not a server URL such as http://127.0.0.1:8088\n"},
		{[]string{"queue", "ls", "--timeout", "0s"}, "miyamoto queue ls: --timeout must be positive, not 0s\n"},
		{[]string{"queue", "ls", "--token-file", "/nonexistent/token"}, "miyamoto queue ls: --token-file: open /nonexistent/token: no such file or directory\n"},
		{[]string{"enqueue", "q"}, "miyamoto enqueue: --url is required: the URL the task calls\n"},
		{[]string{"enqueue", "q", "--url", "http://w/", "--countdown", "soon"}, "miyamoto enqueue: --countdown: want seconds (5, 1.5) or a duration (10m, 1h30m), not \"soon\"\n"},
		{[]string{"enqueue", "q", "--url", "http://w/", "--eta", "tomorrow"}, "miyamoto enqueue: --eta: want Unix seconds or an RFC 3339 time (2030-01-02T15:04:05Z), not \"tomorrow\"\n"},
		{[]string{"enqueue", "q", "--url", "http://w/", "--param", "novalue"}, "miyamoto enqueue: --param wants key=value, not \"novalue\"\n"},
		{[]string{"enqueue", "q", "--url", "http://w/", "--header", "novalue"}, "miyamoto enqueue: --header wants Name=value or 'Name: value', not \"novalue\"\n"},
		{[]string{"enqueue", "q", "--url", "http://w/", "--body", "@/nonexistent/body"}, "miyamoto enqueue: --body: open /nonexistent/body: no such file or directory\n"},
		{[]string{"queue", "tasks", "q", "--limit", "-1"}, "miyamoto queue tasks: --limit must not be negative, not -1\n"},
	} {
		line := env.fails(t, exitBadArgs, c.args...)
		require.Equal(t, c.want, line, c.args)
	}
	r := cli(env, "", "queue", "set", "-h")
	require.Equal(t, exitOK, r.code)
	require.Contains(t, r.stdout, "usage: miyamoto queue set QUEUE KEY=VALUE... [flags]")
	require.Contains(t, r.stdout, "-token-file")
}

// A server that is not there is one line naming it.
func TestManageUnreachable(t *testing.T) {
	addr := freePort(t) // nothing listens there
	line := cliEnv{}.fails(t, exitFailed, "cluster", "--server", addr)
	require.Regexp(t, `^miyamoto cluster: cannot reach http://`+addr+`: .*connection refused\n$`, line)

	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	t.Cleanup(slow.Close)
	line = cliEnv{"MIYAMOTO_SERVER": slow.URL}.fails(t, exitFailed, "cluster", "--timeout", "200ms")
	require.Equal(t, "miyamoto cluster: cannot reach "+slow.URL+": no answer in time\n", line)
}

func TestSettingsArgs(t *testing.T) {
	got, err := settingsArgs([]string{"rate=5/s", "bucket_size=10", "paused=false", "retry.min_backoff=1s",
		"retry.task_retry_limit=null", "delivery=at-most-once", `dispatch_deadline="10"`})
	require.NoError(t, err)
	b, err := json.Marshal(got)
	require.NoError(t, err)
	require.JSONEq(t, `{"rate": "5/s", "bucket_size": 10, "paused": false, "delivery": "at-most-once", "dispatch_deadline": "10",
		"retry": {"min_backoff": "1s", "task_retry_limit": null}}`, string(b))
}

func TestEnqueueTask(t *testing.T) {
	task, err := enqueueTask(enqueueFlags{url: "http://w/", method: "PUT", name: "n", countdown: "1m30s", eta: "2030-01-02T15:04:05Z",
		params: pairFlag{"a=1", "a=2", "b=c=d"}, headers: pairFlag{"X-A=1", "X-B: two words", "Content-Type: text/csv"}}, nil)
	require.NoError(t, err)
	b, err := json.Marshal(task)
	require.NoError(t, err)
	require.JSONEq(t, `{"url": "http://w/", "method": "PUT", "name": "n", "countdown": 90, "eta": 1893596645,
		"params": {"a": ["1", "2"], "b": "c=d"}, "headers": {"X-A": "1", "X-B": "two words", "Content-Type": "text/csv"}}`, string(b))
	task, err = enqueueTask(enqueueFlags{url: "http://w/", countdown: "2.5", eta: "1893596645.5", body: "@-"}, strings.NewReader("from stdin"))
	require.NoError(t, err)
	require.Equal(t, map[string]any{"url": "http://w/", "countdown": 2.5, "eta": 1893596645.5, "body": "from stdin"}, task)
}

func TestParseInterleaved(t *testing.T) {
	inv := &invocation{}
	fs, _ := manageFlags(manageCommands[0], inv)
	pos, err := parseInterleaved(fs, []string{"--json", "q", "--url", "http://w/", "extra", "--", "--not-a-flag"})
	require.NoError(t, err)
	require.Equal(t, []string{"q", "extra", "--not-a-flag"}, pos)
	require.True(t, inv.json)
	require.Equal(t, "http://w/", inv.enq.url)
}

// The README's management commands, run as written by bash against a real node
// (MIYAMOTO_SERVER points them at it) with the binary as ./miyamoto.
func TestREADMEManageCommands(t *testing.T) {
	bin := binary(t)
	p := startCluster(t, 1)[0]
	dir := t.TempDir()
	require.NoError(t, os.Symlink(bin, filepath.Join(dir, "miyamoto")))
	lines := readmeCommands(t, "## Managing a cluster from the command line")
	require.GreaterOrEqual(t, len(lines), 10)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", strings.Join(lines, "\n"))
	cmd.Dir = dir
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MIYAMOTO_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "MIYAMOTO_SERVER=http://"+p.http)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "the README's commands failed:\n%s", out)
	text := string(out)
	m := regexp.MustCompile(`(?m)^task ([0-9a-f-]{36}) cancelled$`).FindStringSubmatch(text)
	require.NotNil(t, m, "task cancel ran:\n%s", text)
	id := m[1]
	require.Regexp(t, `(?m)^id\s+`+id+`$`, text, "task get showed the task")
	require.Regexp(t, `(?m)^settings\.rate\s+5$`, text, "queue set and get")
	require.Regexp(t, `(?m)^queue emails paused\nqueue emails resumed$`, text)
	require.Regexp(t, `(?m)^emails\s+no\s+0\s+0\s+0\s+0\s+0\s+1\s+5/s$`, text, "queue ls")
	require.Regexp(t, `(?m)^`+id+`\s+cancelled\s+`, text, "queue tasks --state cancelled")
	require.Regexp(t, `(?m)^queue emails purged: `, text)
	require.Regexp(t, `(?m)^miyamoto \S+.* go1\.`, text, "--version")
}

// cluster remove refuses an ID the cluster does not list (exit 1, naming the
// members), and otherwise asks again while the removal is pending, then prints
// the roster left; against a fake server.
func TestManageClusterRemoveFakeServer(t *testing.T) {
	var mu sync.Mutex
	asked := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Method == "GET" && r.URL.Path == "/v1/cluster":
			fmt.Fprint(w, `{"self": "a1", "epoch": 3, "members": [{"id": "a1"}, {"id": "a2"}, {"id": "a3"}]}`)
		case r.Method == "POST" && r.URL.Path == "/v1/cluster/members/a3/remove":
			asked++
			if asked < 3 {
				w.WriteHeader(http.StatusAccepted)
				fmt.Fprint(w, `{"status": "pending", "roster": {"epoch": 3, "members": [{"id": "a1"}, {"id": "a2"}, {"id": "a3"}]}}`)
				return
			}
			fmt.Fprint(w, `{"status": "removed", "roster": {"epoch": 4, "leader": "a1", "members": [{"id": "a1"}, {"id": "a2"}]}}`)
		default:
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprintf(w, `{"error": "unexpected %s %s"}`, r.Method, r.URL.Path)
		}
	}))
	t.Cleanup(srv.Close)
	env := cliEnv{"MIYAMOTO_SERVER": srv.URL}

	require.Equal(t, "miyamoto cluster remove: a4 is not a member of the cluster (members: a1, a2, a3)\n", env.fails(t, exitFailed, "cluster", "remove", "a4"))
	require.Equal(t, "removed a3; roster epoch 4: a1, a2\n", env.ok(t, "cluster", "remove", "a3"))
	mu.Lock()
	require.Equal(t, 3, asked, "asked again while pending")
	mu.Unlock()
	require.Equal(t, "miyamoto cluster remove: usage: miyamoto cluster remove ID (0 argument(s) given)\n", env.fails(t, exitBadArgs, "cluster", "remove"))
	require.Contains(t, env.ok(t, "cluster"), "epoch", "plain `cluster` still shows the cluster")
}
