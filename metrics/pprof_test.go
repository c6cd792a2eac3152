package metrics_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/threadmill/threadmill/metrics"
)

func TestPprofIsServedOnlyWhenAdded(t *testing.T) {
	get := func(mux *http.ServeMux, path string) (int, string) {
		srv := httptest.NewServer(mux)
		defer srv.Close()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	plain := metrics.NewServeMux(prometheus.NewRegistry(), nil)
	if code, _ := get(plain, "/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("/debug/pprof/ without AddPprof: %d, want 404", code)
	}
	mux := metrics.NewServeMux(prometheus.NewRegistry(), nil)
	metrics.AddPprof(mux)
	if code, body := get(mux, "/debug/pprof/"); code != http.StatusOK || !strings.Contains(body, "goroutine") {
		t.Errorf("/debug/pprof/: %d\n%.200s", code, body)
	}
	if code, body := get(mux, "/debug/pprof/goroutine?debug=1"); code != http.StatusOK || !strings.Contains(body, "goroutine profile") {
		t.Errorf("/debug/pprof/goroutine: %d\n%.200s", code, body)
	}
	if code, _ := get(mux, "/metrics"); code != http.StatusOK {
		t.Errorf("/metrics next to pprof: %d", code)
	}
}
