package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/miyamotohq/miyamoto/node"
)

// A batch enqueue is a JSON array to POST /{queue}, whatever its Content-Type:
// each item is what a single JSON enqueue takes (a task object), and each is
// enqueued on its own, concurrently. The answer is 200 with one result per item,
// in order:
//
//	{"results": [{"status": "scheduled", "id": ...},
//	             {"status": "error", "code": 400, "error": ..., "field": ...}, ...],
//	 "scheduled": N}
//
// A failed item's result is the body a single enqueue of it would have answered,
// with "code" its HTTP status ("status" is "error" for a 4xx without one of its
// own, "exists", "unknown", "full", ... otherwise). Bad items do not stop good
// ones; nothing is all-or-nothing. The whole request is refused (400) only when
// it is not a JSON array or holds more than MaxBatch items, and by the body limit.

// MaxBatch is the most tasks one batch enqueue may hold.
const MaxBatch = 1000

// batchParallelism bounds the items of one batch in flight at once.
const batchParallelism = 64

// isBatch reports whether an enqueue body is a JSON array.
func isBatch(body []byte) bool {
	t := bytes.TrimSpace(body)
	return len(t) > 0 && t[0] == '['
}

// splitBatch reads a JSON array into its raw items, stopping past MaxBatch.
func splitBatch(body []byte) ([]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	if _, err := dec.Token(); err != nil { // '[': isBatch checked the first byte
		return nil, jsonFieldError(err)
	}
	var items []json.RawMessage
	for dec.More() {
		if len(items) == MaxBatch {
			return nil, &node.FieldError{Field: "body", Message: fmt.Sprintf("holds more than %d tasks; send them in several batches", MaxBatch)}
		}
		var item json.RawMessage
		if err := dec.Decode(&item); err != nil {
			return nil, jsonFieldError(err)
		}
		items = append(items, item)
	}
	if _, err := dec.Token(); err != nil { // ']'
		return nil, jsonFieldError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, &node.FieldError{Field: "body", Message: "has data after the JSON array"}
	}
	return items, nil
}

func (s *server) enqueueBatch(w http.ResponseWriter, r *http.Request, queue string, body []byte) {
	items, err := splitBatch(body)
	if err != nil {
		writeNodeError(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
	defer cancel()
	results := make([]map[string]any, len(items))
	slots := make(chan struct{}, batchParallelism)
	var wg sync.WaitGroup
	for i, item := range items {
		wg.Add(1)
		slots <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			results[i] = s.enqueueItem(ctx, queue, item)
		}()
	}
	wg.Wait()
	scheduled := 0
	for _, res := range results {
		if res["status"] == "scheduled" {
			scheduled++
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"results": results, "scheduled": scheduled})
}

// enqueueItem enqueues one item of a batch and returns its result.
func (s *server) enqueueItem(ctx context.Context, queue string, item json.RawMessage) map[string]any {
	if t := bytes.TrimSpace(item); len(t) == 0 || t[0] != '{' {
		return itemError(http.StatusBadRequest, errorBody("body", "each item of a batch must be a JSON object (a task)"))
	}
	req, err := decodeTask(queue, "application/json", item, s.lim)
	if err != nil {
		code, body, _ := nodeErrorAnswer(err)
		return itemError(code, body)
	}
	if code, body := s.urlRefusal(ctx, req.URL); code != 0 {
		return itemError(code, body)
	}
	id, err := s.b.Enqueue(ctx, req)
	if err != nil {
		s.log.Warn("enqueue failed", "queue", queue, "err", err)
		code, body, _ := nodeErrorAnswer(err)
		return itemError(code, body)
	}
	return map[string]any{"status": "scheduled", "id": id}
}

// itemError is a failed item's result: the body a single enqueue would have
// answered, with its code, and "status": "error" unless it says otherwise.
func itemError(code int, body map[string]string) map[string]any {
	out := map[string]any{"code": code, "status": "error"}
	for k, v := range body {
		out[k] = v
	}
	return out
}
