// Package ui is Miyamoto's web console: a page served by the daemon at /ui/ that
// shows the cluster's members and health, the queues with their counts, settings
// and live rates, a queue's tasks by state with their attempts, and that pauses,
// resumes and purges queues and re-queues dead tasks.
//
// The console is plain HTML, CSS and JavaScript embedded in the binary (no build
// step, nothing loaded from another origin). It holds no data itself: the page
// reads and changes everything through the HTTP API (package api) from the
// browser, with the API's bearer token when the node has one. So its files are
// public and this package must never serve data, take a token, or call the
// node: every request for data passes the API's token check.
//
// # The token
//
// When the API answers 401, the page asks for the token, keeps it in the tab's
// sessionStorage (gone when the tab closes; never in a URL, a cookie or a log)
// and sends it as "Authorization: Bearer" on its own requests only. A header is
// never sent by the browser on its own, so another site cannot act with it (no
// CSRF). The strict Content-Security-Policy below, and a page that writes data
// only as text (never as HTML), keep scripts from elsewhere from reading it.
package ui

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

// Path is where the console is mounted; every file lies under it.
const Path = "/ui/"

//go:embed static
var static embed.FS

// files is the console's files, rooted at the static directory.
var files = mustSub(static, "static")

func mustSub(f fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(f, dir)
	if err != nil {
		panic("ui: " + err.Error())
	}
	return sub
}

// securityHeaders are sent with every file. The policy allows scripts, styles,
// images and requests from this origin only, no inline script or style, no
// frames (no clickjacking) and no form posts anywhere.
var securityHeaders = map[string]string{
	"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
		"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
	"X-Content-Type-Options": "nosniff",
	"X-Frame-Options":        "DENY",
	"Referrer-Policy":        "no-referrer",
	// Revalidate every time, so that a new binary's console is never mixed
	// with an old one's cached script.
	"Cache-Control": "no-cache",
}

// Handler serves the console's files for GET and HEAD requests whose path starts
// with Path; Path itself serves the page. Mount it at Path.
func Handler() http.Handler {
	fileServer := http.StripPrefix(strings.TrimSuffix(Path, "/"), http.FileServerFS(files))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "the console's files are read-only", http.StatusMethodNotAllowed)
			return
		}
		for k, v := range securityHeaders {
			w.Header().Set(k, v)
		}
		fileServer.ServeHTTP(w, r)
	})
}
