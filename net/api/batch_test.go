package api

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/node"
)

// batchBackend answers each enqueue by the task's name: "id-<name>"; "dup" is a
// duplicate, "full" finds the node full; names starting with "slow" answer late,
// so that items finish out of order.
type batchBackend struct{ fakeBackend }

func (b *batchBackend) Enqueue(ctx context.Context, req node.EnqueueRequest) (string, error) {
	switch {
	case req.Name == "dup":
		return "", &node.DuplicateNameError{Queue: req.Queue, Name: req.Name, ID: "first"}
	case req.Name == "full":
		return "", node.ErrNodeFull
	case strings.HasPrefix(req.Name, "slow"):
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := b.fakeBackend.Enqueue(ctx, req); err != nil {
		return "", err
	}
	return "id-" + req.Name, nil
}

type batchAnswer struct {
	Results   []map[string]any `json:"results"`
	Scheduled int              `json:"scheduled"`
}

func postBatch(t *testing.T, b Backend, cfg Config, ct, body string) (int, batchAnswer, string) {
	t.Helper()
	w := do(t, NewHandler(b, cfg), "POST", "/q", ct, body)
	var a batchAnswer
	if w.Code == 200 {
		require.NoError(t, json.Unmarshal(w.Body.Bytes(), &a), w.Body.String())
	}
	return w.Code, a, w.Body.String()
}

// Each item of a JSON array is enqueued as a single JSON task would be; the answer
// has one result per item, in order; bad items do not stop good ones.
func TestBatchEnqueueAnswersPerItem(t *testing.T) {
	b := &batchBackend{}
	body := `[
		{"url": "http://w.test/a", "name": "slow1", "params": {"n": 1}},
		{"url": "ftp://w.test/"},
		{"url": "http://w.test/b", "name": "dup"},
		{"url": "http://w.test/c", "method": "GET", "body": "x"},
		"not a task",
		{"url": "http://w.test/d", "colour": 1},
		{"url": "http://w.test/e", "name": "full"},
		{"url": "http://w.test/f", "name": "last", "method": "put"}
	]`
	code, a, raw := postBatch(t, b, Config{}, "application/json", body)
	require.Equal(t, 200, code, raw)
	require.Len(t, a.Results, 8, raw)
	require.Equal(t, 2, a.Scheduled)
	want := []struct {
		status, id, field string
		code              float64
	}{
		{"scheduled", "id-slow1", "", 0},
		{"error", "", "url", 400},
		{"exists", "first", "name", 409},
		{"error", "", "body", 400},
		{"error", "", "body", 400},
		{"error", "", "colour", 400},
		{"full", "", "", 503},
		{"scheduled", "id-last", "", 0},
	}
	for i, w := range want {
		r := a.Results[i]
		require.Equal(t, w.status, r["status"], "item %d: %v", i, r)
		if w.id != "" {
			require.Equal(t, w.id, r["id"], "item %d", i)
		}
		if w.code != 0 {
			require.Equal(t, w.code, r["code"], "item %d", i)
			require.NotEmpty(t, r["error"], "item %d", i)
			if w.field != "" {
				require.Equal(t, w.field, r["field"], "item %d", i)
			}
		}
	}
	require.Len(t, b.got, 2, "only the good items reach the node")
	for _, req := range b.got {
		require.Equal(t, "q", req.Queue)
	}
}

// A batch is recognised by its first byte whatever the Content-Type, may be empty,
// holds at most MaxBatch items, and is refused whole only when it is not a JSON array.
func TestBatchLimitsAndMalformedArrays(t *testing.T) {
	b := &batchBackend{}
	code, a, raw := postBatch(t, b, Config{}, formCT, ` [{"url": "http://w.test/", "name": "x"}]`)
	require.Equal(t, 200, code, raw)
	require.Equal(t, 1, a.Scheduled)

	code, a, raw = postBatch(t, b, Config{}, "application/json", `[]`)
	require.Equal(t, 200, code, raw)
	require.Empty(t, a.Results)
	require.Contains(t, raw, `"results": []`)

	item := `{"url": "http://w.test/"}`
	full := "[" + strings.TrimSuffix(strings.Repeat(item+",", MaxBatch), ",") + "]"
	code, a, raw = postBatch(t, &batchBackend{}, Config{}, "application/json", full)
	require.Equal(t, 200, code, raw)
	require.Equal(t, MaxBatch, a.Scheduled)

	for body, field := range map[string]string{
		"[" + strings.Repeat(item+",", MaxBatch) + item + "]": "body",
		`[{"url": "http://w.test/"},`:                         "body",
		`[{"url": "http://w.test/"}] {}`:                      "body",
		`[{"url": "http://w.test/"} {"url": "http://x/"}]`:    "body",
	} {
		bb := &batchBackend{}
		requireError(t, do(t, NewHandler(bb, Config{}), "POST", "/q", "application/json", body), 400, field)
		require.Empty(t, bb.got, "a refused batch must not reach the node")
	}
	requireError(t, do(t, NewHandler(b, Config{MaxBody: 100}), "POST", "/q", "application/json", "["+strings.Repeat(item+",", 10)+item+"]"), 413, "body")
}

// The URL check runs for each item: a refused URL fails its item only.
func TestBatchChecksEachURL(t *testing.T) {
	b := &batchBackend{}
	cfg := Config{CheckURL: func(_ context.Context, u string) error {
		if strings.Contains(u, "10.0.0.1") {
			return errors.New("10.0.0.1 is a private address")
		}
		return nil
	}}
	code, a, raw := postBatch(t, b, cfg, "application/json", `[{"url": "http://10.0.0.1/"}, {"url": "http://w.test/", "name": "ok"}]`)
	require.Equal(t, 200, code, raw)
	require.Equal(t, "url", a.Results[0]["field"])
	require.EqualValues(t, 400, a.Results[0]["code"])
	require.Equal(t, "id-ok", a.Results[1]["id"])
}
