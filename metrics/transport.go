package metrics

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// EndpointOther labels a request whose path matches no known route, so that
// unknown paths cannot grow the label set without bound.
const EndpointOther = "other"

// routes are the Workspace API paths threadmill calls or may call
// (workspace-api.md), as patterns whose {name} segments match one id.
var routes = []string{
	"/api/health",
	"/api/v1/app/me",
	"/api/v1/app/chat",
	"/api/v1/app/chat/validate",
	"/api/v1/app/project/{projectId}/chat",
	"/api/v1/app/project/{projectId}/thread",
	"/api/v1/app/project/{projectId}/thread/interaction",
	"/api/v1/app/thread/{threadId}",
	"/api/v1/app/thread/{threadId}/interaction",
	"/api/v1/app/interaction/{interactionId}",
	"/api/v1/app/interaction/{interactionId}/cancel",
	"/api/v1/app/interaction/{interactionId}/stream",
	"/api/v1/app/project/{projectId}/artifact",
	"/api/v1/app/project/{projectId}/artifact/bulk",
	"/api/v1/app/project/{projectId}/artifact/{artifactId}",
	"/api/v1/app/project/{projectId}/artifact/{artifactId}/private",
	"/api/v1/app/project/{projectId}/artifact/{artifactId}/download",
	"/api/v1/app/project/{projectId}/artifact/{artifactId}/parsed-content",
	"/api/v1/app/project/{projectId}/artifact/{artifactId}/sync",
	"/api/v1/app/search",
}

// Routes returns the route patterns Endpoint knows, in a new slice.
func Routes() []string { return slices.Clone(routes) }

var routeSegs = func() [][]string {
	out := make([][]string, len(routes))
	for i, r := range routes {
		out[i] = strings.Split(strings.TrimPrefix(r, "/"), "/")
	}
	return out
}()

// Endpoint returns the route pattern of a Workspace API request path, such as
// "/api/v1/app/thread/{threadId}/interaction" for
// "/api/v1/app/thread/thr_91c0/interaction", or EndpointOther. Ids never
// become label values. A prefix before "/api/" (a base URL with a path, as
// behind a reverse proxy) is ignored; literal segments win over ids, so
// ".../artifact/bulk" is not taken for an artifact id.
func Endpoint(path string) string {
	for off := 0; ; {
		i := strings.Index(path[off:], "/api/")
		if i < 0 {
			return EndpointOther
		}
		if r := matchRoute(path[off+i+1:]); r >= 0 {
			return routes[r]
		}
		off += i + 1
	}
}

// matchRoute returns the index in routes of the pattern matching rest (a
// path without its leading slash), preferring the most literal segments, or -1.
func matchRoute(rest string) int {
	segs := strings.Split(strings.TrimSuffix(rest, "/"), "/")
	best, bestLiterals := -1, -1
	for r, pat := range routeSegs {
		if len(pat) != len(segs) {
			continue
		}
		literals, ok := 0, true
		for j, p := range pat {
			if strings.HasPrefix(p, "{") {
				if segs[j] == "" {
					ok = false
					break
				}
				continue
			}
			if p != segs[j] {
				ok = false
				break
			}
			literals++
		}
		if ok && literals > bestLiterals {
			best, bestLiterals = r, literals
		}
	}
	return best
}

// InstrumentTransport wraps next (http.DefaultTransport when nil) so that
// every request is counted in threadmill_api_requests_total, timed in
// threadmill_api_request_duration_seconds (until the response headers, so a
// stream's open time is not counted) and, for a 429, counted in
// threadmill_api_rate_limited_total. It reads no header and no body, so the
// Authorization token never reaches a label. On a nil *Metrics it returns
// next.
func (m *Metrics) InstrumentTransport(next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	if m == nil {
		return next
	}
	return &transport{m: m, next: next}
}

type transport struct {
	m    *Metrics
	next http.RoundTripper
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ep := Endpoint(req.URL.Path)
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	t.m.apiInFlight.Inc()
	start := time.Now()
	resp, err := t.next.RoundTrip(req)
	t.m.apiInFlight.Dec()
	t.m.apiDuration.WithLabelValues(ep, method).Observe(time.Since(start).Seconds())
	code := "error"
	if err == nil {
		code = strconv.Itoa(resp.StatusCode)
		if resp.StatusCode == http.StatusTooManyRequests {
			t.m.apiRateLimited.WithLabelValues(ep).Inc()
		}
	}
	t.m.apiRequests.WithLabelValues(ep, method, code).Inc()
	return resp, err
}
