package bench

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseRelayTask(t *testing.T) {
	for _, tc := range []struct {
		name, body, url, fwd, err string
	}{
		{"form", "task.url=http%3A%2F%2F127.0.0.1%3A9%2Fw&a=1&task.countdown=5&b=x+y", "http://127.0.0.1:9/w", "a=1&b=x+y", ""},
		{"form without fields", "task.url=http://h/w", "http://h/w", "", ""},
		{"json", `{"url": "http://h/w", "countdown": 5, "params": {"b": "2", "a": 1, "l": [true, "x"]}}`, "http://h/w", "a=1&b=2&l=true&l=x", ""},
		{"form without url", "a=1", "", "", "task.url is required"},
		{"json without url", `{"params": {}}`, "", "", "url is required"},
		{"broken json", `{"url": `, "", "", "body is not a valid JSON object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			task, err := parseRelayTask([]byte(tc.body))
			if tc.err != "" {
				require.EqualError(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.url, task.url)
			require.Equal(t, tc.fwd, string(task.body))
			require.Equal(t, "application/x-www-form-urlencoded", task.contentType)
		})
	}
}

// The relay answers like Miyamoto and forwards with X-Task-Id; the sink counts a
// repeated ID as a duplicate.
func TestRelayForwardsAndSinkCounts(t *testing.T) {
	sink, err := StartSink()
	require.NoError(t, err)
	defer sink.Close()
	relay, err := StartRelay(RelayConfig{})
	require.NoError(t, err)
	defer relay.Close(context.Background())

	resp, err := http.Post(relay.URL()+"/q", "application/json", strings.NewReader(`{"url": "`+sink.URL()+`/w", "params": {"k": "v"}}`))
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	require.Regexp(t, `^\{"status": "scheduled", "id": "[0-9a-f-]{36}"\}\n$`, string(b))
	id := string(b[len(`{"status": "scheduled", "id": "`) : len(b)-3])
	require.Zero(t, sink.WaitFor(context.Background(), []string{id}, 5*time.Second))

	resp, err = http.Post(relay.URL()+"/q", "application/x-www-form-urlencoded", strings.NewReader("nope=1"))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 400, resp.StatusCode)

	req, _ := http.NewRequest(http.MethodPost, sink.URL()+"/w", strings.NewReader("again"))
	req.Header.Set("X-Task-Id", id)
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	st := sink.Stats()
	require.Equal(t, SinkStats{Total: 2, Distinct: 1, Duplicates: 1, First: st.First, Last: st.Last}, st)
	a, ok := sink.Arrival(id)
	require.True(t, ok)
	require.Equal(t, 2, a.Count)
	require.Eventually(t, func() bool { return relay.Stats() == RelayStats{Accepted: 1, Forwarded: 1} }, 5*time.Second, 5*time.Millisecond)
}
