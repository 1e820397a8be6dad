package main

// The web console (net/ui) in a real headless browser against a real three-node
// cluster with an API token: what it shows, and what it changes.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/net/ui"
)

// browserNames are the programs findBrowser looks for, Debian's first.
var browserNames = []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell", "chrome"}

// findBrowser returns the Chromium (or Chrome) to drive: $MIYAMOTO_BROWSER when
// set, else the first of browserNames on the PATH; "" when there is none.
func findBrowser() string {
	if b := os.Getenv("MIYAMOTO_BROWSER"); b != "" {
		return b
	}
	for _, name := range browserNames {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// requireBrowser returns the browser to drive. Without one the test skips, or
// fails when CI=true: CI must never skip the console's browser tests.
func requireBrowser(t *testing.T) string {
	t.Helper()
	browser := findBrowser()
	if browser != "" {
		return browser
	}
	looked := "looked for $MIYAMOTO_BROWSER, then " + strings.Join(browserNames, ", ") + " on the PATH"
	if os.Getenv("CI") == "true" {
		t.Fatalf("no Chromium or Chrome found (%s): with CI=true the console's browser tests must run; .ci/run installs Debian's chromium", looked)
	}
	t.Skipf("no Chromium or Chrome installed (%s): the web console's browser test is skipped; install Debian's chromium to run it", looked)
	return ""
}

// authedAPI calls a node's API with the bearer token and decodes the JSON answer.
func authedAPI(t *testing.T, p *proc, token, method, path, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+p.http+path, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	if strings.HasPrefix(body, "{") {
		req.Header.Set("Content-Type", "application/json")
	} else if body != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := (&http.Client{Timeout: 15 * time.Second}).Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	require.NoError(t, json.Unmarshal(b, &out), "%s %s answered %q", method, path, b)
	return resp.StatusCode, out
}

// waitTaskState polls a task's state through the API until it is one of want.
func waitTaskState(t *testing.T, p *proc, token, id string, within time.Duration, want ...string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(within)
	var last map[string]any
	for time.Now().Before(deadline) {
		code, v := authedAPI(t, p, token, "GET", "/v1/tasks/"+id, "")
		last = v
		if code == 200 {
			for _, w := range want {
				if v["state"] == w {
					return v
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("task %s never reached %v; last answer %v", id, want, last)
	return nil
}

// page drives one browser tab; every wait is bounded.
type page struct {
	t   *testing.T
	ctx context.Context
}

// do runs actions, bounded by 15 s.
func (pg page) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	pg.t.Helper()
	ctx, cancel := context.WithTimeout(pg.ctx, 15*time.Second)
	defer cancel()
	require.NoError(pg.t, chromedp.Do(ctx, actions...), what)
}

// eval returns a JavaScript expression's value.
func eval[T any](pg page, expr string) T {
	pg.t.Helper()
	ctx, cancel := context.WithTimeout(pg.ctx, 15*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	require.NoError(pg.t, err, "evaluating %s", expr)
	return v
}

// text is the text of the first element matching a CSS selector ("" if none).
func (pg page) text(sel string) string {
	pg.t.Helper()
	js, _ := json.Marshal(sel)
	return strings.TrimSpace(eval[string](pg, fmt.Sprintf(`(document.querySelector(%s) || {}).textContent || ""`, js)))
}

// waitText waits until the element matching sel holds text containing want.
func (pg page) waitText(sel, want string) {
	pg.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	got := ""
	for time.Now().Before(deadline) {
		if got = pg.text(sel); strings.Contains(got, want) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	pg.t.Fatalf("%s shows %q, not %q; the console says %q", sel, got, want, pg.text("#msg"))
}

// noRenderingSlips fails when the page shows what a script slip prints: a
// JavaScript object, null, undefined or NaN where a value should be.
func (pg page) noRenderingSlips() {
	pg.t.Helper()
	shown := eval[string](pg, `document.body.innerText`)
	for _, slip := range []string{"[object", "undefined", "NaN", "null"} {
		require.NotContains(pg.t, shown, slip, "the console shows %q:\n%s", slip, shown)
	}
}

func (pg page) click(sel string) {
	pg.t.Helper()
	pg.do("clicking "+sel, chromedp.Click(chromedp.CSS(sel)))
}

// screenshot saves the whole page as PNG in the test's directory and, when
// MIYAMOTO_SCREENSHOT_DIR is set, there too.
func (pg page) screenshot(dir, name string) {
	pg.t.Helper()
	ctx, cancel := context.WithTimeout(pg.ctx, 15*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(pg.t, err, "taking a screenshot")
	require.NoError(pg.t, os.WriteFile(filepath.Join(dir, name), png, 0o644))
	if out := os.Getenv("MIYAMOTO_SCREENSHOT_DIR"); out != "" {
		require.NoError(pg.t, os.MkdirAll(out, 0o755))
		require.NoError(pg.t, os.WriteFile(filepath.Join(out, name), png, 0o644))
		pg.t.Logf("screenshot: %s", filepath.Join(out, name))
	}
}

// openBrowser starts a headless browser, stopped at the end of the test or after
// 90 s, whichever comes first, and returns a tab; the exceptions its scripts throw
// are collected.
func openBrowser(t *testing.T, browser string) (page, func() []string) {
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser),
		// The sandbox needs kernel features a container (and root) often lacks;
		// the page is our own, on loopback.
		chromedp.NoSandbox,
		chromedp.WindowSize(1400, 1000),
		chromedp.UserDataDir(t.TempDir()),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	// The first action binds the browser's life to this context: it is the bound.
	ctx, cancelAll := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() { cancelAll(); cancelTab(); cancelAlloc() }) // stops the browser
	require.NoError(t, chromedp.Do(ctx), "starting %s", browser)
	var mu sync.Mutex
	var thrown []string
	require.NoError(t, chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*runtime.EventExceptionThrown); ok {
			mu.Lock()
			thrown = append(thrown, fmt.Sprintf("%s (line %d)", e.ExceptionDetails.Text, e.ExceptionDetails.LineNumber+1))
			if e.ExceptionDetails.Exception != nil {
				thrown = append(thrown, e.ExceptionDetails.Exception.Description)
			}
			mu.Unlock()
		}
	}))
	return page{t: t, ctx: ctx}, func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), thrown...) }
}

// The console against a real cluster with a token: it shows nothing without the
// token and refuses a wrong one; with it, it shows the three members, the queues
// and their counts; it pauses a queue and re-queues a dead task, and the API
// (asked through another node) agrees.
func TestE2EConsoleInBrowser(t *testing.T) {
	t.Parallel()
	binary(t) // skips with -short
	browser := requireBrowser(t)
	var secret [16]byte
	rand.Read(secret[:])
	token := "console-" + hex.EncodeToString(secret[:])
	procs := startCluster(t, 3, "--api-token", token)

	// A worker that fails every call to /fail until the test mends it (that task
	// dies after one retry), and answers 200 to everything else.
	var mu sync.Mutex
	failCalls, broken := 0, true
	wsrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fail" {
			mu.Lock()
			failCalls++
			fail := broken
			mu.Unlock()
			if fail {
				w.WriteHeader(500)
				io.WriteString(w, "worker failure for the console test")
				return
			}
		}
		w.WriteHeader(200)
	}))
	t.Cleanup(wsrv.Close)

	code, out := authedAPI(t, procs[0], token, "PUT", "/v1/queues/failing", `{"retry": {"task_retry_limit": 1, "min_backoff": "100ms"}}`)
	require.Equal(t, 200, code, out)
	enq := func(p *proc, queue string, form url.Values) string {
		code, out := authedAPI(t, p, token, "POST", "/"+queue, form.Encode())
		require.Equal(t, 200, code, out)
		return out["id"].(string)
	}
	deadID := enq(procs[1], "failing", url.Values{"task.url": {wsrv.URL + "/fail"}})
	for i := 0; i < 3; i++ {
		enq(procs[i], "work", url.Values{"task.url": {wsrv.URL + "/later"}, "task.countdown": {"3600"}})
	}
	var done []string
	for i := 0; i < 2; i++ {
		done = append(done, enq(procs[i], "work", url.Values{"task.url": {wsrv.URL + "/ok"}}))
	}
	waitTaskState(t, procs[0], token, deadID, 20*time.Second, "dead")
	for _, id := range done {
		waitTaskState(t, procs[2], token, id, 20*time.Second, "succeeded")
	}

	pg, thrown := openBrowser(t, browser)
	shots := t.TempDir()
	base := "http://" + procs[0].http + "/ui/"

	// Without the token the page asks for it and shows no data; a wrong token is refused.
	pg.do("opening the console", chromedp.Navigate(base), chromedp.WaitVisible(chromedp.CSS("#login")))
	require.False(t, eval[bool](pg, `!!document.querySelector('#members, #queues')`), "the console showed data without the token")
	require.NotContains(t, eval[string](pg, `document.body.innerText`), "failing")
	pg.do("typing a wrong token", chromedp.SendKeys(chromedp.CSS("#token"), "not-the-token"), chromedp.Click(chromedp.CSS("#login-submit")))
	pg.waitText("#login-error", "refused")
	require.False(t, eval[bool](pg, `!!document.querySelector('#members, #queues')`), "the console showed data with a wrong token")

	// With the token: the three members, this node healthy, the queues with their counts.
	pg.do("typing the token", chromedp.SendKeys(chromedp.CSS("#token"), token), chromedp.Click(chromedp.CSS("#login-submit")))
	pg.waitText("#members tr[data-id=n3]", "n3")
	require.Equal(t, 3, eval[int](pg, `document.querySelectorAll('#members tbody tr').length`))
	for _, p := range procs {
		require.Contains(t, pg.text(fmt.Sprintf("#members tr[data-id=%s]", p.id)), p.peer, "member %s's address", p.id)
	}
	pg.waitText("#members tr.self [data-col=health]", "healthy")
	pg.waitText("#members tr[data-id=n2] [data-col=health]", "reachable")
	pg.waitText("#members tr[data-id=n3] [data-col=health]", "reachable")
	pg.waitText("#health", "healthy")
	pg.waitText("#queues tr[data-queue=work] td[data-state=scheduled]", "3")
	pg.waitText("#queues tr[data-queue=work] td[data-state=succeeded]", "2")
	pg.waitText("#queues tr[data-queue=work] td[data-state=total]", "5")
	pg.waitText("#queues tr[data-queue=failing] td[data-state=dead]", "1")
	require.NotContains(t, eval[string](pg, `location.href`), token, "the token is never put in a URL")
	pg.noRenderingSlips()

	// Pause a queue through the console; another node's API says it is paused.
	pg.click("#queues tr[data-queue=work] a")
	pg.waitText("#queue-name", "work")
	pg.waitText("#settings tr[data-key='retry.max_backoff'] td", "1h")
	pg.waitText("#tasks-view", "scheduled")
	require.Equal(t, 5, eval[int](pg, `document.querySelectorAll('#tasks tbody tr').length`))
	pg.noRenderingSlips()
	pg.click("#pause")
	pg.waitText("#queue-status", "paused")
	code, out = authedAPI(t, procs[2], token, "GET", "/v1/queues/work", "")
	require.Equal(t, 200, code, out)
	require.Equal(t, true, out["paused"], "the console's pause did not reach the cluster: %v", out)

	// Re-queue the dead task through the console; the API says the new task runs
	// and succeeds.
	pg.click("a.brand")
	pg.click("#queues tr[data-queue=failing] a")
	pg.click("#states a[data-state=dead]")
	deadRow := fmt.Sprintf("#tasks tr[data-id='%s']", deadID)
	pg.waitText(deadRow, "HTTP 500")
	pg.screenshot(shots, "console-dead-task.png")
	mu.Lock()
	broken = false // the worker is mended: the re-queued task succeeds
	mu.Unlock()
	pg.click(deadRow + " button.requeue")
	pg.waitText("#msg", "re-queued as")
	newID := pg.text("#requeued-id")
	require.NotEmpty(t, newID)
	require.NotEqual(t, deadID, newID)
	waitTaskState(t, procs[2], token, newID, 20*time.Second, "succeeded")
	mu.Lock()
	require.Equal(t, 3, failCalls, "two failed attempts, then the re-queued task once")
	mu.Unlock()

	// The new task's page shows its state; the dead one's says why it died.
	pg.click("#requeued-id")
	pg.waitText("#task-state", "succeeded")
	pg.waitText("#task tr[data-key=queue] td", "failing")
	pg.do("opening the dead task", chromedp.Navigate(base+"#/task/"+deadID))
	pg.waitText("#task-state", "dead")
	pg.waitText("#task tr[data-key=last_status] td", "500")
	pg.noRenderingSlips()
	pg.screenshot(shots, "console-task.png")
	require.True(t, eval[bool](pg, `!!document.querySelector('#task-actions button.requeue')`), "a dead task offers re-queue")

	pg.click("a.brand")
	pg.waitText("#queues tr[data-queue=work] .status", "paused")
	pg.waitText("#queues tr[data-queue=failing] td[data-state=succeeded]", "1")
	pg.screenshot(shots, "console-overview.png")

	// Sign out forgets the token: the data goes, the question comes back.
	pg.click("#signout")
	pg.do("waiting for the login form", chromedp.WaitVisible(chromedp.CSS("#login")))
	require.False(t, eval[bool](pg, `!!document.querySelector('#members, #queues')`), "data still shown after signing out")
	require.Equal(t, 0, eval[int](pg, `sessionStorage.length`), "the token is still stored")
	require.Empty(t, thrown(), "the console's scripts threw")
}

// fakeAPI answers like a node whose API has grown fields the console does not
// know yet (an attempt history, member health, unset settings as null) and that
// lost a member: listings are partial and the node is not ready.
func fakeAPI(t *testing.T) *httptest.Server {
	due := float64(time.Now().Add(-time.Minute).Unix())
	answers := map[string]string{
		"/healthz":                `{"status": "unavailable", "reason": "a majority of the ring is unreachable (n2, n3)"}`,
		"/v1/cluster":             `{"self": "n1", "replicas": 3, "epoch": 4, "members": [{"id": "n1", "addr": "127.0.0.1:7101", "self": true, "reachable": true, "http": "127.0.0.1:8081"}, {"id": "n2", "addr": "127.0.0.1:7102", "self": false, "reachable": false, "last_seen": ` + fmt.Sprint(due) + `}, {"id": "n3", "addr": "127.0.0.1:7103", "self": false, "reachable": false}]}`,
		"/v1/queues":              `{"partial": true, "missing": ["n2", "n3"], "queues": [{"name": "emails", "paused": false, "settings": {"rate": null, "bucket_size": null, "retry": {"task_retry_limit": 2, "min_backoff": null}}, "counts": {"scheduled": 4, "dead": 1}, "partial": true, "missing": ["n2", "n3"], "depth_bytes": 2048}]}`,
		"/v1/queues/emails":       `{"name": "emails", "paused": false, "version": 7, "settings": {"rate": null, "bucket_size": null, "retry": {"task_retry_limit": 2, "min_backoff": null}}, "unset": ["rate", "bucket_size", "retry.min_backoff"]}`,
		"/v1/queues/emails/tasks": `{"next": "", "partial": true, "missing": ["n2", "n3"], "tasks": [{"id": "t-dead", "queue": "emails", "state": "dead", "attempts": 3, "retries": 3, "eta": ` + fmt.Sprint(due) + `, "last_error": "timeout", "dead_reason": "retry limit 2 exceeded"}]}`,
		"/v1/tasks/t-dead": `{"id": "t-dead", "queue": "emails", "url": "http://worker.internal/hook", "method": "POST", "state": "dead", "eta": ` + fmt.Sprint(due) + `, "dead_reason": "retry limit 2 exceeded",
			"attempts": [{"start": ` + fmt.Sprint(due) + `, "node": "n2", "duration": "10s", "error": "timeout"},
			             {"start": ` + fmt.Sprint(due+1) + `, "node": "n1", "duration": "3ms", "status": 500, "body": "<img src=x onerror=alert(1)><script>document.title='owned'</script> a long answer from the worker that goes on and on"}],
			"replicas": ["n1", "n2", "n3"]}`,
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, ui.Path) {
			ui.Handler().ServeHTTP(w, r)
			return
		}
		body, ok := answers[r.URL.Path]
		w.Header().Set("Content-Type", "application/json")
		switch {
		case !ok:
			w.WriteHeader(404)
			io.WriteString(w, `{"error": "no such endpoint", "field": "path"}`)
		case r.URL.Path == "/healthz":
			w.WriteHeader(503)
			io.WriteString(w, body)
		default:
			io.WriteString(w, body)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// The console shows what it does not know yet as plain values, partial listings
// as partial, unset settings as unset, a node that is not ready as such, and a
// worker's answer as text, never as markup.
func TestConsoleRendersUnknownFieldsAndPartialAnswers(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("browser test: skipped with -short")
	}
	browser := requireBrowser(t)
	srv := fakeAPI(t)
	pg, thrown := openBrowser(t, browser)
	pg.do("opening the console", chromedp.Navigate(srv.URL+"/ui/"))
	// An open API (no token): no login, the data at once.
	pg.waitText("#members tr[data-id=n3]", "n3")
	require.False(t, eval[bool](pg, `!document.querySelector('#login').hidden`), "asked for a token the node does not want")
	pg.waitText("#health", "a majority of the ring is unreachable")
	pg.waitText("#members tr.self [data-col=health]", "unavailable")
	pg.waitText("#members tr[data-id=n2] [data-col=health]", "unreachable")
	pg.waitText("#members thead", "last_seen")
	pg.waitText("#cluster-info .summary", "epoch 4")
	pg.waitText("#queues-view .partial", "no answer from n2, n3")
	pg.waitText("#queues tr[data-queue=emails] td[data-state=scheduled]", "4")
	pg.waitText("#queues tr[data-queue=emails] .notes", "depth_bytes: 2048")
	pg.noRenderingSlips()

	pg.click("#queues tr[data-queue=emails] a")
	pg.waitText("#settings tr[data-key=rate] td", "unset")
	pg.waitText("#settings tr[data-key='retry.min_backoff'] td", "unset")
	pg.waitText("#settings tr[data-key='retry.task_retry_limit'] td", "2")
	pg.waitText("#queue-tasks .partial", "no answer from n2, n3")
	pg.waitText("#tasks tr[data-id=t-dead]", "timeout")
	pg.noRenderingSlips()

	pg.click("#tasks tr[data-id=t-dead] a")
	pg.waitText("#task tr[data-key=dead_reason] td", "retry limit 2 exceeded")
	pg.waitText("#list-attempts", "timeout")
	pg.waitText("#list-attempts", "<script>document.title='owned'</script>")
	require.Equal(t, 2, eval[int](pg, `document.querySelectorAll('#list-attempts tbody tr').length`))
	require.Equal(t, 0, eval[int](pg, `document.querySelectorAll('#view img, #view script').length`), "a worker's answer became markup")
	require.Equal(t, "Miyamoto console", eval[string](pg, `document.title`))
	pg.noRenderingSlips()
	pg.screenshot(t.TempDir(), "console-unknown-fields.png")
	require.Empty(t, thrown(), "the console's scripts threw")
}
