package daemon_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/net/daemon"
)

// send makes a request with a JSON body and decodes the JSON answer into out.
func send(t *testing.T, method, u, body string, out any) int {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		require.NoError(t, json.Unmarshal(b, out), "%s %s: %s", method, u, b)
	}
	return resp.StatusCode
}

type queueView struct {
	Name      string         `json:"name"`
	Settings  map[string]any `json:"settings"`
	Effective map[string]any `json:"effective"`
	Paused    bool           `json:"paused"`
}

// A queue made by a typo is deleted: refused while it has a pending task, then
// forced, which purges the task; the deletion is logged, so a restart on the same
// data directory does not bring the settings back.
func TestDeletedQueueStaysDeletedAfterRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := daemon.Config{HTTPAddr: "127.0.0.1:0", DataDir: dir}
	d, err := daemon.Start(cfg)
	require.NoError(t, err)
	base := "http://" + d.HTTPAddr()
	waitHealthy(t, base)

	var v queueView
	require.Equal(t, 200, send(t, "PUT", base+"/v1/queues/emial", `{"rate": "10/m", "paused": true}`, &v))
	require.Equal(t, map[string]any{"rate": 10.0 / 60}, v.Settings)
	id := enqueueTo(t, base, "emial", url.Values{"task.url": {"http://w.test/"}, "task.countdown": {"3600"}})

	var refused map[string]any
	require.Equal(t, 409, send(t, "DELETE", base+"/v1/queues/emial", "", &refused))
	require.EqualValues(t, 1, refused["pending"])
	var deleted map[string]any
	require.Equal(t, 200, send(t, "DELETE", base+"/v1/queues/emial?force=true", "", &deleted))
	require.EqualValues(t, 1, deleted["cancelled"])
	waitState(t, base, id, "cancelled")

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	require.NoError(t, d.Shutdown(ctx))
	d, err = daemon.Start(cfg)
	require.NoError(t, err)
	shutdownAtEnd(t, d)
	base = "http://" + d.HTTPAddr()
	waitHealthy(t, base)

	v = queueView{}
	require.Equal(t, 200, send(t, "GET", base+"/v1/queues/emial", "", &v))
	require.Empty(t, v.Settings, "the deleted settings came back from the log")
	require.False(t, v.Paused)
	require.Nil(t, v.Effective["rate"])
	// Listed only while its cancelled task is kept (the dedup window).
	var list struct{ Queues []queueView }
	require.Equal(t, 200, call(t, "GET", base+"/v1/queues", &list))
	for _, q := range list.Queues {
		if q.Name == "emial" {
			require.Empty(t, q.Settings)
		}
	}
}

// A GET task's params reach the worker in the query string, with no body.
func TestGetTaskParamsInQuery(t *testing.T) {
	_, base := start(t)
	w := newWorker(t, 0)
	id := enqueue(t, base, url.Values{"task.url": {w.srv.URL + "/work?x=1"}, "task.method": {"get"}, "foo": {"bar baz"}})
	got := w.waitFor(t, id, 10*time.Second)
	require.Empty(t, got.body)
	require.Equal(t, "x=1&foo=bar+baz", got.query)
	require.Equal(t, "GET", got.method)
	require.Empty(t, got.header.Get("Content-Type"))
}

func enqueueTo(t *testing.T, base, queue string, form url.Values) string {
	t.Helper()
	resp, err := client.PostForm(base+"/"+queue, form)
	require.NoError(t, err)
	defer resp.Body.Close()
	var out struct{ Status, ID string }
	b, _ := io.ReadAll(resp.Body)
	require.NoError(t, json.Unmarshal(b, &out), string(b))
	require.Equal(t, "scheduled", out.Status, string(b))
	return out.ID
}
