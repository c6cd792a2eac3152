package simulator

import (
	"cmp"
	"crypto/subtle"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/threadmill/threadmill/workspace"
)

const appPrefix = "/api/v1/app/"

// routes registers every route. The pattern is the counters' key.
func (s *Server) routes() {
	s.mux = http.NewServeMux()
	h := func(pattern string, fn func(http.ResponseWriter, *http.Request) *httpError) {
		s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			// A nil error means the answer was written; an error with
			// status 0 means the client went away or the answer was
			// written already.
			if e := fn(w, r); e != nil && e.status != 0 {
				writeError(w, e)
			}
		})
	}
	s.mux.HandleFunc("GET /api/health", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	s.mux.HandleFunc("GET /_sim/counters", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.Counters())
	})
	s.mux.HandleFunc("DELETE /_sim/counters", func(w http.ResponseWriter, _ *http.Request) {
		s.ResetCounters()
		w.WriteHeader(http.StatusNoContent)
	})
	h("GET /api/v1/app/me", s.handleMe)
	h("POST /api/v1/app/project/{projectId}/thread", s.handleCreateThread)
	h("GET /api/v1/app/project/{projectId}/thread", s.handleListThreads)
	h(s.routeIn(RoutesCurrent, "GET /api/v1/app/thread/{threadId}"), s.handleGetThread)
	h(s.routeIn(RoutesCurrent, "PUT /api/v1/app/thread/{threadId}"), s.handleUpdateThread)
	h(s.routeIn(RoutesCurrent, "DELETE /api/v1/app/thread/{threadId}"), s.handleDeleteThread)
	h(s.routeIn(RoutesCurrent, "POST /api/v1/app/thread/{threadId}/interaction"), s.handleCreateInteraction)
	h(s.routeIn(RoutesCurrent, "GET /api/v1/app/thread/{threadId}/interaction"), s.handleListInteractions)
	h(s.routeIn(RoutesCurrent, "GET /api/v1/app/interaction/{interactionId}"), s.handleGetInteraction)
	h(s.routeIn(RoutesCurrent, "DELETE /api/v1/app/interaction/{interactionId}"), s.handleDeleteInteraction)
	h(s.routeIn(RoutesCurrent, "POST /api/v1/app/interaction/{interactionId}/cancel"), s.handleCancel)
	h(s.routeIn(RoutesCurrent, "GET /api/v1/app/interaction/{interactionId}/stream"), s.handleStream)
	h("POST /api/v1/app/chat", s.handleChat)
	h("POST /api/v1/app/chat/validate", s.handleValidate)
	h("GET /api/v1/app/project/{projectId}/artifact", s.handleListArtifacts)
	h("GET /api/v1/app/project/{projectId}/artifact/{artifactId}", s.handleGetArtifact)
	h("POST /api/v1/app/project/{projectId}/artifact", s.handleCreateArtifact)
	h("PUT /api/v1/app/project/{projectId}/artifact/{artifactId}", s.handleUpdateArtifact)

	// Project-scoped twins of the thread and interaction routes, served
	// instead of the current ones with Compat.Routes = RoutesProject.
	h(s.routeIn(RoutesProject, "GET /api/v1/app/project/{projectId}/thread/{threadId}"), s.projectScoped(s.handleGetThread))
	h(s.routeIn(RoutesProject, "PUT /api/v1/app/project/{projectId}/thread/{threadId}"), s.projectScoped(s.handleUpdateThread))
	h(s.routeIn(RoutesProject, "DELETE /api/v1/app/project/{projectId}/thread/{threadId}"), s.projectScoped(s.handleDeleteThread))
	h(s.routeIn(RoutesProject, "POST /api/v1/app/project/{projectId}/interaction"), s.handleCreateInteractionInProject)
	h(s.routeIn(RoutesProject, "GET /api/v1/app/project/{projectId}/thread/{threadId}/interaction"), s.projectScoped(s.handleListInteractions))
	h(s.routeIn(RoutesProject, "GET /api/v1/app/project/{projectId}/interaction/{interactionId}"), s.projectScoped(s.handleGetInteraction))
	h(s.routeIn(RoutesProject, "DELETE /api/v1/app/project/{projectId}/interaction/{interactionId}"), s.projectScoped(s.handleDeleteInteraction))
	h(s.routeIn(RoutesProject, "POST /api/v1/app/project/{projectId}/interaction/{interactionId}/cancel"), s.projectScoped(s.handleCancel))
	h(s.routeIn(RoutesProject, "GET /api/v1/app/project/{projectId}/interaction/{interactionId}/stream"), s.projectScoped(s.handleStream))
}

// statusWriter records the status code of an answer.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// ServeHTTP serves the simulated API. For /api/v1/app/* requests it applies,
// in order: the rate limit, fault injection, then x-org and token checks.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, pattern := s.mux.Handler(r)
	unserved := pattern != "" && !s.served(pattern) // a route of the other scheme
	if unserved {
		pattern = ""
	}
	route := pattern
	if route == "" {
		route = "unmatched"
	}
	sw := &statusWriter{ResponseWriter: w}
	start := time.Now()
	defer func() {
		status := sw.status
		if status == 0 {
			status = http.StatusOK
		}
		if p := recover(); p != nil {
			// A cut stream aborts the connection with http.ErrAbortHandler
			// after its status line was sent: count it, then let net/http
			// close the connection.
			s.countRequest(route, status)
			panic(p)
		}
		s.countRequest(route, status)
		s.log.Debug("simulator request", "method", r.Method, "route", route, "path", r.URL.Path,
			"status", status, "duration", time.Since(start))
	}()

	if strings.HasPrefix(r.URL.Path, appPrefix) {
		defer s.arrive()()
		if e := s.gate(sw, r); e != nil {
			if e.status != 0 {
				writeError(sw, e)
			}
			return
		}
	}
	if unserved {
		// The same answer as any unknown path.
		writeError(sw, errorf(http.StatusNotFound, "no route for %s %s", r.Method, r.URL.Path))
		return
	}
	if pattern == "" {
		// Let the mux decide between 404 and 405, but answer in JSON.
		probe := &probeWriter{header: http.Header{}}
		s.mux.ServeHTTP(probe, r)
		if allow := probe.header.Get("Allow"); allow != "" {
			sw.Header().Set("Allow", allow)
		}
		status := cmp.Or(probe.status, http.StatusNotFound)
		writeError(sw, errorf(status, "no route for %s %s", r.Method, r.URL.Path))
		return
	}
	s.mux.ServeHTTP(sw, r)
}

// probeWriter captures what the mux would answer for an unmatched request.
type probeWriter struct {
	header http.Header
	status int
}

func (p *probeWriter) Header() http.Header         { return p.header }
func (p *probeWriter) Write(b []byte) (int, error) { return len(b), nil }
func (p *probeWriter) WriteHeader(code int)        { p.status = code }

// Proxy error pages, as an nginx in front of the API sends them.
const (
	badGatewayPage     = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
	gatewayTimeoutPage = "<html>\r\n<head><title>504 Gateway Time-out</title></head>\r\n<body>\r\n<center><h1>504 Gateway Time-out</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)

// gate applies the rate limit, faults and authentication. A returned error
// with status 0 means the answer was already written.
func (s *Server) gate(w http.ResponseWriter, r *http.Request) *httpError {
	s.knobMu.Lock()
	lim := s.limiter
	f := s.faults
	var u, slow float64
	u, slow = s.rng.Float64(), s.rng.Float64()
	s.knobMu.Unlock()

	if lim != nil {
		res := lim.Reserve()
		if d := res.Delay(); d > 0 {
			res.Cancel()
			s.mu.Lock()
			s.counters.RateLimited++
			s.mu.Unlock()
			w.Header().Set("Retry-After", retryAfter(d))
			return errorf(http.StatusTooManyRequests, "rate limit exceeded: more than %g requests per second; retry after %s", float64(lim.Limit()), d.Round(time.Millisecond))
		}
	}

	switch {
	case u < f.Error500:
		s.countFault("500")
		return errorf(http.StatusInternalServerError, "simulated internal server error (fault injection)")
	case u < f.Error500+f.Error502:
		s.countFault("502")
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusBadGateway)
		fmt.Fprint(w, badGatewayPage)
		return &httpError{}
	case u < f.Error500+f.Error502+f.Error503:
		s.countFault("503")
		w.Header().Set("Retry-After", retryAfter(cmpDur(f.RetryAfter, time.Second)))
		return errorf(http.StatusServiceUnavailable, "service temporarily unavailable (fault injection)")
	case u < f.Error500+f.Error502+f.Error503+f.TooMany429:
		s.countFault("429")
		w.Header().Set("Retry-After", retryAfter(cmpDur(f.RetryAfter, time.Second)))
		return errorf(http.StatusTooManyRequests, "too many requests (fault injection)")
	}
	if slow < f.Slow {
		s.countFault("slow")
		t := time.NewTimer(cmpDur(f.SlowDelay, 2*time.Second))
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return &httpError{}
		case <-s.stop:
			t.Stop()
		}
	}

	org := r.Header.Get("x-org")
	if org == "" {
		return errorf(http.StatusBadRequest, "missing x-org header: set it to the organisation slug (e.g. %q) or UUID", s.orgs[0])
	}
	if s.token != "" {
		auth := r.Header.Get("Authorization")
		tok, ok := strings.CutPrefix(auth, "Bearer ")
		if auth == "" {
			return errorf(http.StatusUnauthorized, "missing Authorization header: send \"Authorization: Bearer <API token>\"")
		}
		if !ok || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(tok)), []byte(s.token)) != 1 {
			return errorf(http.StatusUnauthorized, "invalid API token")
		}
	}
	if !slices.Contains(s.orgs, org) {
		return errorf(http.StatusForbidden, "organisation %q is not accessible with this token", org)
	}
	return nil
}

func cmpDur(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// retryAfter formats a delay as whole seconds, rounded up, at least 1.
func retryAfter(d time.Duration) string {
	secs := int64((d + time.Second - 1) / time.Second)
	return fmt.Sprint(max(1, secs))
}

// user is the UserDTO of the simulated caller.
func (s *Server) user() workspace.User {
	return workspace.User{
		ID:        "user_3b9e1c7a5d2f4e60",
		OrgID:     DefaultOrgID,
		AccountID: "acct_8c2d4e6f1a3b5c7d",
		Name:      "Simulator User",
		Email:     "simulator@threadmill.invalid",
		State:     "Active",
		Roles:     []string{"Admin"},
		CreatedAt: "2026-01-01T00:00:00Z",
	}
}

func (s *Server) handleMe(w http.ResponseWriter, _ *http.Request) *httpError {
	writeJSON(w, http.StatusOK, s.user())
	return nil
}

func (s *Server) checkProject(r *http.Request) *httpError {
	if id := r.PathValue("projectId"); id != s.projectID {
		return errorf(http.StatusNotFound, "project %q not found", id)
	}
	return nil
}
