package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPrinterWritesOneIDALineAndAnswers200(t *testing.T) {
	var out bytes.Buffer
	srv := httptest.NewServer(newPrinter(&out))
	defer srv.Close()
	for _, id := range []string{"a", "b", "a", ""} {
		req, err := http.NewRequest("POST", srv.URL+"/walk", strings.NewReader("n=1"))
		require.NoError(t, err)
		if id != "" {
			req.Header.Set("X-Task-Id", id)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}
	require.Equal(t, "a\nb\na\n-\n", out.String())
}

func TestBadArgumentsExit2WithOneLine(t *testing.T) {
	for _, args := range [][]string{{"--addr", "9099"}, {"127.0.0.1:9099"}, {"--port", "1"}} {
		var stdout, stderr bytes.Buffer
		require.Equal(t, 2, run(args, &stdout, &stderr), "%v", args)
		require.Contains(t, stderr.String(), "sink", "%v", args)
		require.Empty(t, stdout.String())
	}
}
