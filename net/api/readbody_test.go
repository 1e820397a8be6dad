package api

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestReadBodyAllocations: reading a body of known length costs its buffer and
// http.MaxBytesReader's reader, nothing per read (errors.As's target, declared in
// the loop, cost one allocation per read: two for every enqueue).
func TestReadBodyAllocations(t *testing.T) {
	const body = "task.url=http%3A%2F%2F127.0.0.1%3A38211%2Fsink&n=123456"
	src := strings.NewReader(body)
	r := httptest.NewRequest(http.MethodPost, "/default", nil)
	r.ContentLength = int64(len(body))
	w := httptest.NewRecorder()
	var got []byte
	allocs := testing.AllocsPerRun(100, func() {
		src.Reset(body)
		r.Body = io.NopCloser(src)
		b, ok := readBody(w, r, 1<<20)
		if !ok {
			t.Fatalf("readBody refused %q: %d %s", body, w.Code, w.Body)
		}
		got = b
	})
	if string(got) != body {
		t.Fatalf("read %q, want %q", got, body)
	}
	if allocs > 2 {
		t.Errorf("readBody made %.0f allocations, want at most 2 (the buffer and the MaxBytesReader)", allocs)
	}
}
