package ui

import (
	"io/fs"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func get(t *testing.T, method, path string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	Handler().ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return rec
}

// The page and its files are served with their types and the security headers.
func TestServesTheConsole(t *testing.T) {
	for _, c := range []struct{ path, ctype, holds string }{
		{"/ui/", "text/html", `<script src="app.js" defer></script>`},
		{"/ui/app.js", "javascript", "Authorization"},
		{"/ui/style.css", "text/css", "--accent"},
		{"/ui/favicon.svg", "image/svg+xml", "<svg"},
	} {
		rec := get(t, "GET", c.path)
		require.Equal(t, 200, rec.Code, c.path)
		require.Contains(t, rec.Header().Get("Content-Type"), c.ctype, c.path)
		require.Contains(t, rec.Body.String(), c.holds, c.path)
		for k, v := range securityHeaders {
			require.Equal(t, v, rec.Header().Get(k), "%s: header %s", c.path, k)
		}
	}
	csp := get(t, "GET", "/ui/").Header().Get("Content-Security-Policy")
	require.Contains(t, csp, "script-src 'self'")
	require.NotContains(t, csp, "unsafe-inline")
	require.Contains(t, csp, "frame-ancestors 'none'")

	require.Equal(t, 404, get(t, "GET", "/ui/nothing-here.js").Code)
	require.Equal(t, 200, get(t, "HEAD", "/ui/app.js").Code)
	rec := get(t, "POST", "/ui/")
	require.Equal(t, 405, rec.Code)
	require.Equal(t, "GET, HEAD", rec.Header().Get("Allow"))
}

// external matches a reference to another origin: a scheme or a protocol-relative
// URL. The SVG namespace is a name, not something loaded.
var external = regexp.MustCompile(`(?i)(\b[a-z][a-z0-9+.-]*:)?//[a-z0-9.-]+\.[a-z]{2,}`)

// The console loads nothing from elsewhere (no CDN: it works offline and cannot
// be changed by a third party), and every file the page names is embedded.
func TestNothingFromElsewhere(t *testing.T) {
	for _, ref := range []string{`<script src="https://cdn.example.com/x.js">`, `@import url(//fonts.example.org/a.css)`, `fetch("http://10.0.0.1.nip.io/v1")`} {
		require.True(t, external.MatchString(ref), "the check would miss %s", ref)
	}
	err := fs.WalkDir(files, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(files, path)
		require.NoError(t, err)
		text := strings.ReplaceAll(string(b), `xmlns="http://www.w3.org/2000/svg"`, "")
		require.Empty(t, external.FindAllString(text, -1), "%s refers to another origin", path)
		return nil
	})
	require.NoError(t, err)
	page, err := fs.ReadFile(files, "index.html")
	require.NoError(t, err)
	refs := regexp.MustCompile(`(?:src|href)="([^"#]+)"`).FindAllStringSubmatch(string(page), -1)
	require.NotEmpty(t, refs)
	for _, m := range refs {
		_, err := fs.Stat(files, m[1])
		require.NoError(t, err, "index.html names %s, which is not embedded", m[1])
	}
}

// The page writes what the API answers as text only, and never runs strings as
// code: task URLs, names and worker answers are anyone's input. The CSP would
// also refuse inline handlers and eval; this keeps the source honest.
func TestScriptWritesDataAsTextOnly(t *testing.T) {
	src, err := fs.ReadFile(files, "app.js")
	require.NoError(t, err)
	for _, banned := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "localStorage", "document.cookie"} {
		require.NotContains(t, string(src), banned)
	}
	// The token goes in a header and in this tab's storage, nowhere else.
	require.Contains(t, string(src), "headers.Authorization = 'Bearer ' + token")
	require.Contains(t, string(src), "sessionStorage.setItem(TOKEN_KEY, token)")
	require.Equal(t, 1, strings.Count(string(src), "sessionStorage.setItem("), "the token is stored in one place")
	page, err := fs.ReadFile(files, "index.html")
	require.NoError(t, err)
	require.NotRegexp(t, `(?i)\son[a-z]+=`, string(page), "no inline event handlers")
	require.NotRegexp(t, `(?i)<script>`, string(page), "no inline scripts")
	require.NotRegexp(t, `(?i)\sstyle=`, string(page), "no inline styles")
}
