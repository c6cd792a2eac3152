package metrics

import (
	"net/http"
	"net/http/pprof"
)

// AddPprof serves Go's profiles under /debug/pprof/ on mux (CPU, heap,
// goroutines, mutex and block profiles, execution traces), for an operator
// who wants to see where a worker's or the scheduler's time goes. Serve it
// only on an address reachable by operators: profiles show the process's
// internals (never the API token, which is not kept in memory profiles'
// labels or paths).
func AddPprof(mux *http.ServeMux) {
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
}
