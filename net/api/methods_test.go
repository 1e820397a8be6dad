package api

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// A task's method is one of GET, HEAD, POST, PUT, DELETE and PATCH, in any case,
// stored in upper case; anything else is refused naming the field.
func TestTaskMethodAllowList(t *testing.T) {
	for in, want := range map[string]string{"get": "GET", "Head": "HEAD", "post": "POST", "PUT": "PUT", "delete": "DELETE", "pAtCh": "PATCH", "": "POST"} {
		b := &fakeBackend{}
		h := NewHandler(b, Config{})
		w := do(t, h, "POST", "/q", formCT, "task.url=http://w.test/&task.method="+in)
		require.Equal(t, 200, w.Code, "%q: %s", in, w.Body.String())
		w = do(t, h, "POST", "/q", "application/json", `{"url": "http://w.test/", "method": "`+in+`"}`)
		require.Equal(t, 200, w.Code, "%q: %s", in, w.Body.String())
		require.Len(t, b.got, 2)
		require.Equal(t, want, b.got[0].Method, in)
		require.Equal(t, want, b.got[1].Method, in)
	}
	for _, bad := range []string{"FOO", "CONNECT", "trace", "*", "OPTIONS", "GET /x", "POST\r\n"} {
		b := &fakeBackend{}
		h := NewHandler(b, Config{})
		e := requireError(t, do(t, h, "POST", "/q", "application/json", `{"url": "http://w.test/", "method": `+jsonString(bad)+`}`), 400, "method")
		require.Contains(t, e["error"], "GET, HEAD, POST, PUT, DELETE, PATCH", bad)
		requireError(t, do(t, h, "POST", "/q", formCT, "task.url=http://w.test/&task.method="+strings.ReplaceAll(bad, " ", "%20")), 400, "task.method")
		require.Empty(t, b.got, bad)
	}
}

func jsonString(s string) string {
	return `"` + strings.NewReplacer(`"`, `\"`, "\r", `\r`, "\n", `\n`).Replace(s) + `"`
}

// A GET, HEAD or DELETE task carries its params in the query string (net/webhook
// sends them so): it takes params but no body and no Content-Type, and its URL
// with the params must fit in 8 KiB.
func TestBodylessMethodsTakeParamsOnly(t *testing.T) {
	b := &fakeBackend{}
	h := NewHandler(b, Config{})
	w := do(t, h, "POST", "/q", formCT, "task.url=http://w.test/x&task.method=GET&a=1&b=x+y")
	require.Equal(t, 200, w.Code, w.Body.String())
	require.Equal(t, "a=1&b=x+y", string(b.got[0].Body))
	w = do(t, h, "POST", "/q", "application/json", `{"url": "http://w.test/x", "method": "delete", "params": {"a": 1}}`)
	require.Equal(t, 200, w.Code, w.Body.String())
	require.Equal(t, "a=1", string(b.got[1].Body))
	require.Equal(t, "application/x-www-form-urlencoded", b.got[1].ContentType)

	requireError(t, do(t, h, "POST", "/q", "application/json", `{"url": "http://w.test/", "method": "GET", "body": {"a": 1}}`), 400, "body")
	requireError(t, do(t, h, "POST", "/q", "application/json", `{"url": "http://w.test/", "method": "HEAD", "body": "x"}`), 400, "body")
	requireError(t, do(t, h, "POST", "/q", "application/json", `{"url": "http://w.test/", "method": "GET", "params": {"a": 1}, "headers": {"content-type": "text/csv"}}`), 400, "headers.Content-Type")
	long := strings.Repeat("x", maxDeliveredURL)
	requireError(t, do(t, h, "POST", "/q", formCT, "task.url=http://w.test/&task.method=GET&a="+long), 400, "params")
	require.Len(t, b.got, 2, "a refused task reached the node")

	// The same body is fine for POST, PUT and PATCH.
	for _, m := range []string{"POST", "PUT", "PATCH"} {
		w := do(t, h, "POST", "/q", "application/json", `{"url": "http://w.test/", "method": "`+m+`", "body": {"a": 1}}`)
		require.Equal(t, 200, w.Code, w.Body.String())
	}
	w = do(t, h, "POST", "/q", formCT, "task.url=http://w.test/&a="+long)
	require.Equal(t, 200, w.Code, "a POST's params are its body: no URL limit")
}
