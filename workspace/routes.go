package workspace

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"
	"sync/atomic"
)

// RouteScheme names the set of routes a Workspace server serves for threads
// and interactions (workspace-api.md §11). Artifacts, thread creation and
// listing, /app/me and /app/chat have the same routes in every scheme.
type RouteScheme string

// Route schemes.
const (
	// RoutesCurrent are the routes of the spec from 2025-12 on:
	// POST /app/thread/{threadId}/interaction, /app/interaction/{id}[/cancel|/stream],
	// /app/thread/{threadId}.
	RoutesCurrent RouteScheme = "current"
	// RoutesProjectScoped are the routes of servers up to spec 2025-11-25:
	// POST /app/project/{projectId}/interaction (thread_id in the body),
	// /app/project/{projectId}/interaction/{id}[/cancel|/stream],
	// /app/project/{projectId}/thread/{threadId}[/interaction]. Every
	// thread and interaction call then needs the project: WithProject, or
	// ContextWithProject per call.
	RoutesProjectScoped RouteScheme = "project"
	// RoutesAuto uses the current routes until CheckRoutes has probed the
	// server once and chosen the scheme it serves.
	RoutesAuto RouteScheme = "auto"
)

// ParseRouteScheme reads a scheme name: "current", "project" (or
// "project-scoped") or "auto". Case and surrounding space are ignored.
func ParseRouteScheme(s string) (RouteScheme, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "current":
		return RoutesCurrent, nil
	case "project", "project-scoped", "project_scoped":
		return RoutesProjectScoped, nil
	case "auto":
		return RoutesAuto, nil
	}
	return "", fmt.Errorf("unknown route scheme %q: want current, project or auto", s)
}

// ErrRouteMismatch is matched by an *APIError whose 404 says the route does
// not exist on the server (not that a thread or interaction is missing):
// the server serves another route scheme than the client uses, usually an
// older server (spec up to 2025-11) called with the current routes. It is
// permanent, and it never matches ErrNotFound.
var ErrRouteMismatch = errors.New("workspace: the server does not serve this route (route scheme mismatch)")

// ErrRouteUndecided is matched by the error of CheckRoutes when its probes
// cannot tell which scheme the server serves: set one explicitly.
var ErrRouteUndecided = errors.New("workspace: cannot tell which route scheme the server serves")

// routeState is the scheme in use, shared by a client and its copies
// (WithTransport) so that a scheme chosen at preflight holds for all.
type routeState struct {
	configured RouteScheme
	active     atomic.Value // RouteScheme
}

func newRouteState(s RouteScheme) *routeState {
	r := &routeState{configured: s}
	if s == RoutesAuto {
		s = RoutesCurrent
	}
	r.active.Store(s)
	return r
}

func (r *routeState) get() RouteScheme { return r.active.Load().(RouteScheme) }

// WithRouteScheme sets the route scheme (default RoutesCurrent). With
// RoutesAuto the client uses the current routes until CheckRoutes chose.
func WithRouteScheme(s RouteScheme) Option {
	return func(c *Client) {
		switch s {
		case "":
			s = RoutesCurrent
		case RoutesCurrent, RoutesProjectScoped, RoutesAuto:
		default:
			c.errs = append(c.errs, fmt.Errorf("WithRouteScheme: unknown scheme %q", string(s)))
			return
		}
		c.scheme = s
	}
}

// WithProject sets the project of the project-scoped routes, used when the
// call's context carries none (ContextWithProject).
func WithProject(projectID string) Option { return func(c *Client) { c.project = projectID } }

type projectKey struct{}

// ContextWithProject returns a context whose calls use projectID on
// project-scoped routes, overriding WithProject: a worker serving several
// pipelines tags each call with its pipeline's project.
func ContextWithProject(ctx context.Context, projectID string) context.Context {
	return context.WithValue(ctx, projectKey{}, projectID)
}

// RouteScheme returns the scheme the client uses now: the configured one,
// or, for RoutesAuto, RoutesCurrent until CheckRoutes chose.
func (c *Client) RouteScheme() RouteScheme { return c.routes.get() }

// routePath returns the path of a thread or interaction route: "/app"+suffix
// in the current scheme, "/app/project/{projectId}"+projectSuffix in the
// project-scoped one. An empty projectSuffix means suffix.
func (c *Client) routePath(ctx context.Context, suffix, projectSuffix string) (string, error) {
	if c.routes.get() != RoutesProjectScoped {
		return "/app" + suffix, nil
	}
	proj, _ := ctx.Value(projectKey{}).(string)
	if proj == "" {
		proj = c.project
	}
	p, err := seg("project id (the project-scoped routes need one: WithProject or ContextWithProject)", proj)
	if err != nil {
		return "", err
	}
	if projectSuffix == "" {
		projectSuffix = suffix
	}
	return "/app/project/" + p + projectSuffix, nil
}

// markRouteMismatch flags a 404 whose body says that no such route exists.
func (c *Client) markRouteMismatch(e *APIError, h http.Header) {
	if e.StatusCode != http.StatusNotFound {
		return
	}
	e.shape = routeLevel404([]byte(e.Body), h.Get("Content-Type"), e.Message)
	if e.shape != shapeRoute {
		return
	}
	e.sentinel = ErrRouteMismatch
	e.routeMismatch = true
	e.scheme = c.routes.get()
}

// mismatchHint is the fix named in a route mismatch error.
func mismatchHint(s RouteScheme) string {
	switch s {
	case RoutesProjectScoped:
		return "the server does not serve the project-scoped routes of spec <= 2025-11; it is probably newer: use the current routes (WORKSPACE_API_SCHEME=current)"
	default:
		return "the server does not serve the current routes; it is probably older (spec <= 2025-11): use the project-scoped routes (WORKSPACE_API_SCHEME=project)"
	}
}

// notFoundShape is what a 404 says about itself.
type notFoundShape int

const (
	// shapeRoute: no such route (an unknown path).
	shapeRoute notFoundShape = iota
	// shapeUnknown: a 404 that says neither.
	shapeUnknown
	// shapeResource: the route exists, the resource does not.
	shapeResource
)

// routePhrases are what servers and frameworks say for an unknown path:
// the simulator ("no route for GET ..."), Spring ("No static resource ...",
// "No handler found for ..."), Micronaut ("Page Not Found"), and others.
var routePhrases = []string{
	"no route", "route not found", "unknown route", "no handler found", "no static resource",
	"no mapping", "no endpoint", "page not found", "cannot get", "cannot post",
}

// routeLevel404 classifies a 404 answer by its body (see docs/compatibility.md):
//   - shapeRoute: an HTML page (the API answers JSON for its own errors),
//     or a body with one of routePhrases;
//   - shapeResource: a JSON error whose message names something missing
//     other than the bare status text ("thread x not found");
//   - shapeUnknown: anything else, e.g. an empty body or Spring's default
//     {"error":"Not Found","path":...}, which both kinds of 404 may give.
func routeLevel404(body []byte, contentType, msg string) notFoundShape {
	mt, _, _ := mime.ParseMediaType(contentType)
	trimmed := bytes.TrimSpace(body)
	lower := strings.ToLower(string(trimmed))
	if strings.Contains(mt, "html") || strings.HasPrefix(lower, "<!doctype html") || strings.HasPrefix(lower, "<html") {
		return shapeRoute
	}
	// The whole body is searched: frameworks put the phrase in fields the
	// message decoder does not pick (a problem's detail, nested errors).
	lmsg := strings.ToLower(msg)
	for _, p := range routePhrases {
		if strings.Contains(lmsg, p) || strings.Contains(lower, p) {
			return shapeRoute
		}
	}
	if len(trimmed) == 0 || trimmed[0] != '{' || !json.Valid(trimmed) {
		return shapeUnknown
	}
	m := strings.Trim(strings.TrimSpace(lmsg), ".")
	if m == "" || m == "not found" || m == "404" || m == "404 not found" {
		return shapeUnknown
	}
	return shapeResource
}

// probeThreadID is a thread id no server has: the route probe asks for it.
const probeThreadID = "threadmill-route-probe-0000000000000000"

// CheckRoutes makes sure the client's route scheme is one the server
// serves, with GETs of a thread that does not exist (they cannot create
// anything). With RoutesAuto it asks both schemes, chooses the one whose
// 404 says the thread is missing rather than the route (the project-scoped
// probe needs projectID, else the client's WithProject; without a project
// only the current route is asked and a route-level 404 chooses the
// project-scoped scheme), and keeps that choice for the client and all its
// copies. With a fixed scheme it asks that scheme's route only and returns
// an error matching ErrRouteMismatch when the route does not exist. It
// returns the scheme in use. Transport errors and 5xx are returned as is
// (retryable); a probe the rule cannot decide is an error that asks to set
// the scheme.
func (c *Client) CheckRoutes(ctx context.Context, projectID string) (RouteScheme, error) {
	if projectID == "" {
		projectID = c.project
	}
	probe := func(s RouteScheme) (notFoundShape, error) {
		path := "/app/thread/" + probeThreadID
		if s == RoutesProjectScoped {
			p, err := seg("project id", projectID)
			if err != nil {
				return 0, fmt.Errorf("workspace: route probe: %w", err)
			}
			path = "/app/project/" + p + "/thread/" + probeThreadID
		}
		var th Thread
		err := c.do(ctx, call{method: "GET", path: path, out: &th, emptyOK: true})
		ae, ok := errors.AsType[*APIError](err)
		switch {
		case err == nil:
			return shapeResource, nil // the route answered: it exists
		case ok && ae.StatusCode == http.StatusNotFound:
			return ae.shape, nil
		case ok && ae.StatusCode == http.StatusMethodNotAllowed:
			return shapeRoute, nil
		}
		return 0, err
	}
	if c.routes.configured != RoutesAuto {
		s := c.routes.get()
		if s == RoutesProjectScoped && projectID == "" {
			return s, nil // nothing to probe with; the calls carry it
		}
		shape, err := probe(s)
		if err != nil {
			return s, err
		}
		if shape == shapeRoute {
			return s, &routeProbeError{scheme: s, path: c.base.Path + c.probePath(s, projectID)}
		}
		return s, nil
	}
	cur, err := probe(RoutesCurrent)
	if err != nil {
		return c.routes.get(), err
	}
	if projectID == "" {
		choice := RoutesCurrent
		if cur == shapeRoute {
			choice = RoutesProjectScoped
		}
		c.routes.active.Store(choice)
		return choice, nil
	}
	proj, err := probe(RoutesProjectScoped)
	if err != nil {
		return c.routes.get(), err
	}
	var choice RouteScheme
	switch {
	case cur > proj, cur == shapeResource && proj == shapeResource:
		choice = RoutesCurrent
	case proj > cur:
		choice = RoutesProjectScoped
	default:
		return c.routes.get(), fmt.Errorf("%w: GET %s and GET %s answered alike 404s; set the scheme (WORKSPACE_API_SCHEME=current or project)",
			ErrRouteUndecided, c.base.Path+c.probePath(RoutesCurrent, projectID), c.base.Path+c.probePath(RoutesProjectScoped, projectID))
	}
	c.routes.active.Store(choice)
	return choice, nil
}

func (c *Client) probePath(s RouteScheme, projectID string) string {
	if s == RoutesProjectScoped {
		return "/app/project/" + projectID + "/thread/" + probeThreadID
	}
	return "/app/thread/" + probeThreadID
}

// routeProbeError is the mismatch CheckRoutes found for a fixed scheme.
type routeProbeError struct {
	scheme RouteScheme
	path   string
}

func (e *routeProbeError) Error() string {
	return fmt.Sprintf("workspace: GET %s answered a route-level 404 (no such route): %s", e.path, mismatchHint(e.scheme))
}

func (e *routeProbeError) Is(target error) bool { return target == ErrRouteMismatch }
