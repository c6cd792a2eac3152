package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

func TestHealthcheck(t *testing.T) {
	var ready atomic.Bool // written here, read by the server's goroutines
	ready.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !ready.Load() {
			http.Error(w, "fail redis: redis ping: connection refused", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok redis\nok\n"))
	}))
	defer srv.Close()

	run := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := execute(context.Background(), append([]string{"healthcheck"}, args...), &out, &errOut)
		return code, out.String(), errOut.String()
	}

	if code, out, _ := run(srv.URL + "/readyz"); code != exitOK || out != "ok redis\nok\n" {
		t.Errorf("healthy: exit %d, stdout %q", code, out)
	}
	ready.Store(false)
	if code, _, errOut := run(srv.URL + "/readyz"); code != exitFailure || !strings.Contains(errOut, "503 Service Unavailable: fail redis: redis ping: connection refused") {
		t.Errorf("unready: exit %d, stderr %q", code, errOut)
	}
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	if code, _, errOut := run(deadURL + "/readyz"); code != exitFailure || !strings.Contains(errOut, "GET "+deadURL+"/readyz") {
		t.Errorf("refused: exit %d, stderr %q", code, errOut)
	}
	if code, _, errOut := run("localhost:9090/readyz"); code != exitUsage || !strings.Contains(errOut, "want http://host:port/path") {
		t.Errorf("bad URL: exit %d, stderr %q", code, errOut)
	}
	if code, _, errOut := run("--timeout", "0s", srv.URL); code != exitUsage || !strings.Contains(errOut, "--timeout") {
		t.Errorf("bad timeout: exit %d, stderr %q", code, errOut)
	}
}
