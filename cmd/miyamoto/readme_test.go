package main

// Tests that run the README's commands as written, against the real binary. The
// only changes are the ports (a free port for 8088, a test worker's for 9099) and
// the binary, which the test has built already; each test checks that they were
// made, so a README edit that breaks the commands breaks the test.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// requireTools skips a test whose README commands need tools this machine lacks,
// except in CI, where it fails: CI must run every README command.
func requireTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("the README's commands need %s; install it (CI=true must run them)", tool)
			}
			t.Skipf("the README's commands need %s, which is not installed (set CI=true to make this a failure)", tool)
		}
	}
}

// readmeBlock returns the first ```sh block of README.md after the line heading.
func readmeBlock(t *testing.T, heading string) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	_, rest, ok := strings.Cut(string(b), "\n"+heading+"\n")
	require.True(t, ok, "README.md has no line %q", heading)
	_, rest, ok = strings.Cut(rest, "```sh\n")
	require.True(t, ok, "no sh block after %q", heading)
	block, _, ok := strings.Cut(rest, "```")
	require.True(t, ok, "the sh block after %q does not end", heading)
	return block
}

// replaceAll replaces each old with new in s, requiring that old occurs.
func replaceAll(t *testing.T, s string, pairs ...string) string {
	t.Helper()
	for i := 0; i+1 < len(pairs); i += 2 {
		require.Contains(t, s, pairs[i], "the README no longer says %q", pairs[i])
		s = strings.ReplaceAll(s, pairs[i], pairs[i+1])
	}
	return s
}

// commands splits a block into its commands: a line starting with "curl " or
// "export " starts one, any other line continues the one before.
func commands(block string) []string {
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(block), "\n") {
		if len(out) == 0 || strings.HasPrefix(line, "curl ") || strings.HasPrefix(line, "export ") {
			out = append(out, line)
			continue
		}
		out[len(out)-1] += "\n" + line
	}
	return out
}

// runShell runs script with bash in dir, in a process group of its own that is
// killed (by its ID) when the test ends, and returns its stdout and stderr.
func runShell(t *testing.T, dir, script string, env []string, within time.Duration) (stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	require.NoError(t, cmd.Start())
	pgid := cmd.Process.Pid
	t.Cleanup(func() { syscall.Kill(-pgid, syscall.SIGKILL) }) // what the script left running
	err := cmd.Wait()
	require.NoError(t, ctx.Err(), "the script did not finish within %s; stdout:\n%s\nstderr:\n%s", within, out.String(), errOut.String())
	require.NoError(t, err, "stdout:\n%s\nstderr:\n%s", out.String(), errOut.String())
	return out.String(), errOut.String()
}

// jsonDocs decodes the JSON documents printed one after the other, leaving out
// the lines a node in the background prints ("miyamoto: node n1 serving on ...").
func jsonDocs(t *testing.T, s string) []map[string]any {
	t.Helper()
	var kept []string
	for _, line := range strings.SplitAfter(s, "\n") {
		if !strings.HasPrefix(line, "miyamoto: ") {
			kept = append(kept, line)
		}
	}
	dec := json.NewDecoder(strings.NewReader(strings.Join(kept, "")))
	var docs []map[string]any
	for {
		var d map[string]any
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			return docs
		}
		require.NoError(t, err, "output is not JSON documents: %s", s)
		docs = append(docs, d)
	}
}

// readmeWorker records the requests it gets and answers 200.
type readmeWorker struct {
	srv  *httptest.Server
	port string
	mu   sync.Mutex
	got  []*http.Request
	body []string
}

func newReadmeWorker(t *testing.T, status int) *readmeWorker {
	w := &readmeWorker{}
	w.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.mu.Lock()
		w.got = append(w.got, r.Clone(context.Background()))
		w.body = append(w.body, string(b))
		w.mu.Unlock()
		rw.WriteHeader(status)
	}))
	t.Cleanup(w.srv.Close)
	_, w.port, _ = net.SplitHostPort(w.srv.Listener.Addr().String())
	return w
}

// waitFor waits (bounded) for the request carrying task id.
func (w *readmeWorker) waitFor(t *testing.T, id string) (*http.Request, string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		w.mu.Lock()
		for i, r := range w.got {
			if r.Header.Get("X-Task-Id") == id {
				w.mu.Unlock()
				return r, w.body[i]
			}
		}
		w.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("the worker did not receive task %s", id)
	return nil, ""
}

func portOf(t *testing.T, addr string) string {
	_, port, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	return port
}

// The Security example, run as one script: a node with every control on, the
// local worker allowed, a task that reaches it signed, a metadata address refused,
// a request without a token refused, and kill %1 stopping the node.
func TestREADMESecurityExample(t *testing.T) {
	bin := binary(t)
	requireTools(t, "bash", "curl", "openssl")
	w := newReadmeWorker(t, 200)
	addr := freePort(t)
	script := replaceAll(t, readmeBlock(t, "## Security"),
		"go build -o miyamoto ./cmd/miyamoto", "cp "+bin+" miyamoto",
		"localhost:8088", "localhost:"+portOf(t, addr),
		"localhost:9099", "localhost:"+w.port)
	env := []string{"MIYAMOTO_HTTP_ADDR=" + addr, "MIYAMOTO_PEER_ADDR=" + freePort(t)}
	stdout, stderr := runShell(t, t.TempDir(), script, env, 60*time.Second)

	docs := jsonDocs(t, stdout)
	require.GreaterOrEqual(t, len(docs), 4, "stdout: %s\nstderr: %s", stdout, stderr)
	health, task, metadata, noToken := docs[len(docs)-4], docs[len(docs)-3], docs[len(docs)-2], docs[len(docs)-1]
	require.Equal(t, "ok", health["status"], stdout)
	require.Equal(t, "scheduled", task["status"], stdout)
	require.Equal(t, "url", metadata["field"], stdout)
	require.Contains(t, metadata["error"], "169.254.169.254")
	require.Equal(t, "Authorization", noToken["field"], stdout)

	id := task["id"].(string)
	r, body := w.waitFor(t, id)
	require.Equal(t, "foo=bar", body)
	require.Equal(t, id, r.Header.Get("webhook-id"), "the delivery is signed")
	require.True(t, strings.HasPrefix(r.Header.Get("webhook-signature"), "v1,"), r.Header.Get("webhook-signature"))

	require.Eventually(t, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	}, 20*time.Second, 50*time.Millisecond, "kill %%1 did not stop the node")
}

// The HTTP API section's examples against a running node: a batch with a good and
// a bad item, and a GET task whose params reach the worker in the query string.
func TestREADMEHTTPAPIExamples(t *testing.T) {
	requireTools(t, "bash", "curl")
	p := startNodes(t, []string{t.TempDir()})[0]
	w := newReadmeWorker(t, 200)
	cmds := commands(replaceAll(t, readmeBlock(t, "## HTTP API"),
		"localhost:8088", p.http, "localhost:9099", "localhost:"+w.port))
	require.Len(t, cmds, 2, "the test checks each command's answer: update it with the README")

	out, _ := runShell(t, t.TempDir(), cmds[0], nil, 20*time.Second)
	var batch struct {
		Results   []map[string]any
		Scheduled int
	}
	require.NoError(t, json.Unmarshal([]byte(out), &batch), out)
	require.Len(t, batch.Results, 2, out)
	require.Equal(t, 1, batch.Scheduled)
	require.Equal(t, "scheduled", batch.Results[0]["status"])
	require.Equal(t, "url", batch.Results[1]["field"])
	require.EqualValues(t, 400, batch.Results[1]["code"])
	r, body := w.waitFor(t, batch.Results[0]["id"].(string))
	require.Equal(t, "n=1", body)
	require.Equal(t, "/a", r.URL.Path)

	out, _ = runShell(t, t.TempDir(), cmds[1], nil, 20*time.Second)
	docs := jsonDocs(t, out)
	require.Len(t, docs, 1, out)
	r, body = w.waitFor(t, docs[0]["id"].(string))
	require.Equal(t, "GET", r.Method)
	require.Equal(t, "/report", r.URL.Path)
	require.Equal(t, "day=mon", r.URL.RawQuery)
	require.Empty(t, body)
}

// The Queues section's commands, one by one, against a running node; <id> is a
// dead task's ID (an at-most-once task its worker answered 500).
func TestREADMEQueuesExamples(t *testing.T) {
	requireTools(t, "bash", "curl")
	p := startNodes(t, []string{t.TempDir()})[0]
	failing := newReadmeWorker(t, 500)
	dead := deadTask(t, p, failing.srv.URL)

	cmds := commands(replaceAll(t, readmeBlock(t, "## Queues"), "localhost:8088", p.http, "<id>", dead))
	require.Len(t, cmds, 7, "the test checks each command's answer: update it with the README")
	run := func(i int) map[string]any {
		out, _ := runShell(t, t.TempDir(), cmds[i], nil, 20*time.Second)
		docs := jsonDocs(t, out)
		require.Len(t, docs, 1, "%s\n%s", cmds[i], out)
		return docs[0]
	}

	v := run(0) // PUT
	require.Equal(t, "emails", v["name"], v)
	settings := v["settings"].(map[string]any)
	require.EqualValues(t, 5, settings["rate"])
	require.EqualValues(t, 10, settings["max_concurrent"])
	require.Equal(t, "30s", settings["dispatch_deadline"])

	v = run(1) // GET
	require.EqualValues(t, 5, v["effective"].(map[string]any)["rate"])
	retry := v["effective"].(map[string]any)["retry"].(map[string]any)
	require.Nil(t, retry["task_age_limit"], "never set: no age limit, shown as null")
	require.Equal(t, "1s", retry["min_backoff"])

	v = run(2) // unset max_concurrent
	require.NotContains(t, v["settings"], "max_concurrent")
	require.Nil(t, v["effective"].(map[string]any)["max_concurrent"])

	v = run(3) // pause
	require.Equal(t, true, v["paused"])

	v = run(4) // list dead tasks of emails
	require.Contains(t, v, "tasks")

	v = run(5) // retry the dead task
	require.Equal(t, "scheduled", v["status"], v)
	require.Equal(t, dead, v["requeued_from"])

	v = run(6) // delete
	require.Equal(t, "deleted", v["status"], v)
	got, err := http.Get("http://" + p.http + "/v1/queues/emails")
	require.NoError(t, err)
	defer got.Body.Close()
	var after map[string]any
	require.NoError(t, json.NewDecoder(got.Body).Decode(&after))
	require.Empty(t, after["settings"])
	require.Equal(t, false, after["paused"])
}

// deadTask makes an at-most-once task that its worker (answering 500) kills, and
// returns its ID once it is dead.
func deadTask(t *testing.T, p *proc, workerURL string) string {
	t.Helper()
	putQueue(t, p, "flaky", `{"delivery": "at-most-once"}`)
	code, out := enqueueTo(t, p, "flaky", url.Values{"task.url": {workerURL}})
	require.Equal(t, 200, code, out)
	id := out["id"]
	require.Eventually(t, func() bool {
		_, v := getTask(t, p, id)
		return v.State == "dead"
	}, 15*time.Second, 50*time.Millisecond)
	return id
}
