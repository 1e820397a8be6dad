package webhook

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/miyamotohq/miyamoto/node"
)

// benchDelivery is a delivery as bench/cmd/compare makes them: a form body, no
// task headers, no name.
func benchDelivery() node.Delivery {
	return node.Delivery{Task: &node.Task{ID: "0f8fad5b-d9cb-469f-a165-70867728950e", Queue: "bench",
		URL: "http://127.0.0.1:41234/work", Method: "POST", ContentType: "application/x-www-form-urlencoded",
		Body: []byte("n=12345"), ETA: time.Unix(1700000000, 250_000_000)}, Attempt: 1, Deadline: 10 * time.Second}
}

// NewRequest's allocations: it runs once per delivery.
func BenchmarkNewRequest(b *testing.B) {
	dl := benchDelivery()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NewRequest(context.Background(), dl); err != nil {
			b.Fatal(err)
		}
	}
}

// Miyamoto's headers share one backing array: adding a value to one of them (as
// a signer or a round tripper may) must leave every other header as it was.
func TestOwnHeadersStayApart(t *testing.T) {
	dl := benchDelivery()
	dl.Task.Name, dl.PreviousStatus = "welcome", 503
	req, err := NewRequest(context.Background(), dl)
	if err != nil {
		t.Fatal(err)
	}
	before := req.Header.Clone()
	for k := range before {
		req.Header.Add(k, "added")
	}
	for k, vs := range before {
		got := req.Header.Values(k)
		if len(got) != len(vs)+1 || got[len(vs)] != "added" {
			t.Fatalf("%s: %q after adding to it, want %q then \"added\"", k, got, vs)
		}
		for i, v := range vs {
			if got[i] != v {
				t.Fatalf("%s: %q after adding to every header, want %q first", k, got, vs)
			}
		}
	}
	if got := req.Header.Get("X-Task-Previous-Response"); got != "503" {
		t.Fatalf("X-Task-Previous-Response = %q, want 503", got)
	}
}

// NewRequest allocates a bounded number of times (it ran 19 allocations before
// the headers shared their values' storage).
func TestNewRequestAllocations(t *testing.T) {
	dl := benchDelivery()
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := NewRequest(context.Background(), dl); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 13 {
		t.Fatalf("NewRequest made %.0f allocations per call, want at most 13", allocs)
	}
}

// readPrefix keeps the first bytes and drains the rest up to the bound; a short
// answer is read once, into a pooled buffer.
func TestReadPrefix(t *testing.T) {
	long := strings.Repeat("x", 300) + strings.Repeat("y", 200)
	r := strings.NewReader(long)
	if got := readPrefix(r, node.MaxAttemptBody, 400); got != long[:node.MaxAttemptBody] {
		t.Fatalf("readPrefix kept %q, want the first %d bytes", got, node.MaxAttemptBody)
	}
	if r.Len() != 100 {
		t.Fatalf("%d bytes left unread, want 100 (read up to the bound of 400)", r.Len())
	}
	if got := readPrefix(strings.NewReader("database is down"), node.MaxAttemptBody, 400); got != "database is down" {
		t.Fatalf("readPrefix kept %q of a short answer", got)
	}
	if got := readPrefix(strings.NewReader(long), 10, 400); got != long[:10] {
		t.Fatalf("readPrefix kept %q, want the first 10 bytes", got)
	}
	empty := strings.NewReader("")
	if allocs := testing.AllocsPerRun(100, func() { empty.Reset(""); readPrefix(empty, node.MaxAttemptBody, 400) }); allocs > 0 {
		t.Fatalf("readPrefix of an empty answer made %.0f allocations, want none", allocs)
	}
}
