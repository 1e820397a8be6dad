package client

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestNewServerURL(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:8088":               "http://127.0.0.1:8088",
		"http://node-1:8088/":          "http://node-1:8088",
		"https://lb.example/miyamoto/": "https://lb.example/miyamoto",
	} {
		c, err := New(in, "", time.Second)
		require.NoError(t, err, in)
		require.Equal(t, want, c.Server(), in)
	}
	for _, bad := range []string{"ftp://x", "http://", "http://x/?a=1", "http://x/#f", "::"} {
		_, err := New(bad, "", time.Second)
		require.Error(t, err, bad)
	}
}

// A redirect is an error, never followed: following it would send the token
// elsewhere.
func TestRedirectIsNotFollowed(t *testing.T) {
	reached := false
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached = true }))
	t.Cleanup(elsewhere.Close)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+"/v1/cluster", http.StatusFound)
	}))
	t.Cleanup(srv.Close)
	c, err := New(srv.URL, "secret-token", time.Second)
	require.NoError(t, err)
	_, err = c.Cluster(context.Background())
	var apiErr *Error
	require.True(t, errors.As(err, &apiErr), "%v", err)
	require.Equal(t, http.StatusFound, apiErr.Code)
	require.Contains(t, err.Error(), "redirect to "+elsewhere.URL)
	require.NotContains(t, err.Error(), "secret-token")
	require.False(t, reached)
}

func TestErrorNamesTheFieldOnce(t *testing.T) {
	require.Equal(t, "rate: must be a number (HTTP 400)", (&Error{Code: 400, Message: "rate: must be a number", Field: "rate"}).Error())
	require.Equal(t, "no such endpoint (HTTP 404, field path)", (&Error{Code: 404, Message: "no such endpoint", Field: "path"}).Error())
	require.Equal(t, "no majority answered (HTTP 503, status unknown)", (&Error{Code: 503, Message: "no majority answered", Status: "unknown"}).Error())
}
