package webhook

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
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

// BenchmarkDeliver is one delivery to a loopback worker that answers 200 with no
// body, the Dispatcher's side and the worker's together.
func BenchmarkDeliver(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
	}))
	defer srv.Close()
	d := New(Config{NodeID: "n1"}, func(node.DeliveryResult) {})
	defer d.Close(context.Background())
	dl := benchDelivery()
	dl.Task.URL = srv.URL + "/work"
	b.ReportAllocs()
	for b.Loop() {
		if r := d.deliver(dl); r.Status != http.StatusOK {
			b.Fatalf("answered %d (%v)", r.Status, r.Err)
		}
	}
}

// Without http.Client.Do, a delivery still does what Do did for it: a URL's user
// and password become Basic authorization (unless the task set its own), and an
// error reads as Do's did, the password masked.
func TestSendAsClientDoDid(t *testing.T) {
	auth := make(chan string, 2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth <- r.Header.Get("Authorization")
	}))
	defer srv.Close()
	d := New(Config{}, func(node.DeliveryResult) {})
	defer d.Close(context.Background())
	dl := benchDelivery()
	dl.Task.URL = strings.Replace(srv.URL, "http://", "http://alice:s3cret@", 1) + "/work"
	if r := d.deliver(dl); r.Status != http.StatusOK {
		t.Fatalf("answered %d (%v)", r.Status, r.Err)
	}
	if got := <-auth; got != "Basic YWxpY2U6czNjcmV0" {
		t.Fatalf("Authorization = %q, want alice's Basic credentials", got)
	}
	dl.Task.Headers = []node.Header{{Name: "Authorization", Value: "Bearer mine"}}
	d.deliver(dl)
	if got := <-auth; got != "Bearer mine" {
		t.Fatalf("Authorization = %q, want the task's own", got)
	}

	dl.Task.Headers = nil
	dl.Task.URL = "http://bob:hunter2@127.0.0.1:1/work"
	r := d.deliver(dl)
	want := `Post "http://bob:***@127.0.0.1:1/work": `
	if r.Err == nil || !strings.HasPrefix(r.Err.Error(), want) || strings.Contains(r.Err.Error(), "hunter2") {
		t.Fatalf("error %v, want it to start %q and hide the password", r.Err, want)
	}
	if r.ErrorKind != node.ErrorRefused {
		t.Fatalf("error kind %v, want refused", r.ErrorKind)
	}
}
