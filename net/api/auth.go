package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"log/slog"
	"net/http"
	"strings"
)

// auth requires a bearer token on every request but GET /healthz and /livez (see the package
// doc). It holds only the tokens' SHA-256 sums.
type auth struct {
	sums    [][sha256.Size]byte
	log     *slog.Logger
	next    http.Handler
	refused func() // may be nil
}

func newAuth(tokens []string, log *slog.Logger, next http.Handler) *auth {
	a := &auth{log: log, next: next}
	for _, t := range tokens {
		a.sums = append(a.sums, sha256.Sum256([]byte(t)))
	}
	return a
}

func (a *auth) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The mux cleans paths by redirecting, so "/healthz" is the only spelling that
	// reaches the health check (and "/livez" the liveness check); any other is
	// checked here first.
	if (r.URL.Path == "/healthz" || r.URL.Path == "/livez") && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		a.next.ServeHTTP(w, r)
		return
	}
	tok, given := bearer(r.Header.Get("Authorization"))
	if (!given || !a.valid(tok)) && a.refused != nil {
		a.refused()
	}
	switch {
	case !given:
		a.log.Debug("request without a bearer token", "remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path)
		w.Header().Set("WWW-Authenticate", `Bearer realm="miyamoto"`)
		writeError(w, http.StatusUnauthorized, "Authorization", `a bearer token is required ("Authorization: Bearer <token>")`)
	case !a.valid(tok):
		// Never log tok.
		a.log.Debug("request with a wrong bearer token", "remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path)
		w.Header().Set("WWW-Authenticate", `Bearer realm="miyamoto", error="invalid_token"`)
		writeError(w, http.StatusUnauthorized, "Authorization", "the bearer token is not valid")
	default:
		a.next.ServeHTTP(w, r)
	}
}

// bearer returns the token of an "Authorization: Bearer <token>" header (the
// scheme in any case); given is false when there is none.
func bearer(h string) (tok string, given bool) {
	scheme, rest, _ := strings.Cut(strings.TrimSpace(h), " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(rest)
	return tok, tok != ""
}

// valid compares tok with every token in constant time: the SHA-256 sums have one
// length whatever the tokens', and every sum is compared, so the time taken tells
// neither a token's length nor which one matched.
func (a *auth) valid(tok string) bool {
	sum := sha256.Sum256([]byte(tok))
	ok := 0
	for i := range a.sums {
		ok |= subtle.ConstantTimeCompare(sum[:], a.sums[i][:])
	}
	return ok == 1
}
