package api

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

// Every header a task may not set is refused at enqueue with a 400 naming it,
// whatever its case and with '_' for '-'; the ones a worker may need pass.
func TestReservedHeadersAreRefusedAtEnqueue(t *testing.T) {
	refused := []string{
		"Connection", "Keep-Alive", "Proxy-Connection", "Upgrade", "TE", "Trailer",
		"Transfer-Encoding", "Proxy-Authorization", "Proxy-Authenticate", "Expect",
		"Host", "Content-Length", "User-Agent",
		"X-Task-Id", "X-Task-Queue", "X-Task-Name", "X-Task-Attempt", "X-Task-Retry-Count",
		"X-Task-ETA", "X-Task-Deadline", "X-Task-Previous-Response", "X-Task-Anything",
		"X-Miyamoto-Node", "Webhook-Id", "Webhook-Timestamp", "Webhook-Signature",
		// Twins and other spellings.
		"X_Task_Id", "Webhook_Signature", "x-task-id", "CONNECTION", "transfer_encoding",
		"te", "Proxy_Authorization", "x_miyamoto_node", "USER_AGENT",
	}
	for _, name := range refused {
		t.Run(name, func(t *testing.T) {
			b := &fakeBackend{}
			body, err := json.Marshal(map[string]any{"url": "http://w.test/", "headers": map[string]string{name: "x"}})
			require.NoError(t, err)
			w := doReq(t, NewHandler(b, Config{}), "POST", "/q", string(body), "Content-Type", "application/json")
			e := requireError(t, w, 400, "headers."+name)
			require.Contains(t, e["error"], name)
			require.Empty(t, b.got, "a refused task must not reach the node")
		})
	}
	allowed := []string{"Authorization", "X-Request-Id", "X-Tasks", "Accept", "Cookie", "X-Taskid", "Webhooks", "Content-Type"}
	for _, name := range allowed {
		t.Run("allowed "+name, func(t *testing.T) {
			b := &fakeBackend{}
			body, err := json.Marshal(map[string]any{"url": "http://w.test/", "headers": map[string]string{name: "x"}})
			require.NoError(t, err)
			w := doReq(t, NewHandler(b, Config{}), "POST", "/q", string(body), "Content-Type", "application/json")
			require.Equal(t, 200, w.Code, w.Body.String())
			require.Len(t, b.got, 1)
		})
	}
}
