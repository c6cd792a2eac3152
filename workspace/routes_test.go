package workspace_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/threadmill/threadmill/workspace"
	"github.com/threadmill/threadmill/workspace/simulator"
)

var projectRoutes = simulator.Config{Compat: simulator.Compat{Routes: simulator.RoutesProject}, Async: true}

// Every thread and interaction call works on a server of the project-scoped
// routes with a client configured for them, and goes to those routes only.
func TestProjectScopedRoutesEndToEnd(t *testing.T) {
	env := newSim(t, projectRoutes, workspace.WithRouteScheme(workspace.RoutesProjectScoped), workspace.WithProject(testProj))
	ctx := ctxT(t)
	_, docs := seedDocs(env.sim, 2)
	th, err := env.c.CreateThread(ctx, testProj, workspace.CreateThreadRequest{Name: "old server"})
	if err != nil {
		t.Fatal(err)
	}
	req := ask("Why does the login page loop?", 100)
	req.CorrelationID = "corr-1"
	in, err := env.c.CreateInteraction(ctx, th.ID, workspace.CreateInteractionRequest{PGPT: req, ArtifactIDs: docs})
	if err != nil {
		t.Fatal(err)
	}
	done, err := env.c.WaitInteraction(ctx, in.ID)
	if err != nil || done.State != workspace.StateCompleted || !strings.Contains(done.Output(), "login") {
		t.Fatalf("wait: %v %+v", err, done)
	}
	if got, found, err := env.c.FindInteraction(ctx, th.ID, "corr-1"); err != nil || !found || got.ID != in.ID {
		t.Fatalf("find: %v %v %+v", err, found, got)
	}
	if err := env.c.CancelInteraction(ctx, in.ID); !errors.Is(err, workspace.ErrAlreadyFinished) {
		t.Fatalf("cancel of a finished interaction: %v", err)
	}
	if _, err := env.c.GetThread(ctx, th.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := env.c.UpdateThread(ctx, th.ID, workspace.UpdateThreadRequest{Name: new("renamed")}); err != nil {
		t.Fatal(err)
	}
	if err := env.c.DeleteThread(ctx, th.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := env.c.GetThread(ctx, th.ID); !errors.Is(err, workspace.ErrNotFound) || errors.Is(err, workspace.ErrRouteMismatch) {
		t.Fatalf("a deleted thread must be not found, not a route mismatch: %v", err)
	}

	c := env.sim.Counters()
	for route := range c.Requests {
		if strings.HasPrefix(route, "GET /api/v1/app/interaction/") || strings.HasPrefix(route, "POST /api/v1/app/thread/") || route == "unmatched" {
			t.Errorf("a current route was called: %s %v", route, c.Requests[route])
		}
	}
	for _, route := range []string{
		"POST /api/v1/app/project/{projectId}/interaction",
		"GET /api/v1/app/project/{projectId}/interaction/{interactionId}/stream",
		"GET /api/v1/app/project/{projectId}/thread/{threadId}/interaction",
		"POST /api/v1/app/project/{projectId}/interaction/{interactionId}/cancel",
		"DELETE /api/v1/app/project/{projectId}/thread/{threadId}",
	} {
		if c.Total(route) == 0 {
			t.Errorf("%s was never called: %v", route, c.Requests)
		}
	}
	if c.InteractionsCreated != 1 {
		t.Errorf("created %d interactions, want 1", c.InteractionsCreated)
	}
}

// A per-call project (as the worker sets it for each run) overrides the
// client's, and a project-scoped client without any says so.
func TestProjectScopedRoutesNeedAProject(t *testing.T) {
	env := newSim(t, projectRoutes, workspace.WithRouteScheme(workspace.RoutesProjectScoped))
	ctx := ctxT(t)
	th, err := env.c.CreateThread(ctx, testProj, workspace.CreateThreadRequest{Name: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.c.GetThread(ctx, th.ID); err == nil || !strings.Contains(err.Error(), "project id") {
		t.Fatalf("no project: %v", err)
	}
	if _, err := env.c.GetThread(workspace.ContextWithProject(ctx, testProj), th.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := env.c.GetThread(workspace.ContextWithProject(ctx, "proj_other"), th.ID); !errors.Is(err, workspace.ErrNotFound) {
		t.Fatalf("another project: %v", err)
	}
}

// A client on the current routes against an old server gets a permanent
// route mismatch that names the fix, never a "not found" of the
// interaction (which the worker would answer with a new thread).
func TestRouteMismatchIsNotNotFound(t *testing.T) {
	env := newSim(t, projectRoutes)
	ctx := ctxT(t)
	th, err := env.c.CreateThread(ctx, testProj, workspace.CreateThreadRequest{Name: "t"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = env.c.CreateInteraction(ctx, th.ID, workspace.CreateInteractionRequest{PGPT: ask("hi", 10)})
	if !errors.Is(err, workspace.ErrRouteMismatch) || errors.Is(err, workspace.ErrNotFound) {
		t.Fatalf("create on the wrong routes: %v", err)
	}
	if !workspace.IsPermanent(err) || workspace.IsRetryable(err) {
		t.Errorf("a route mismatch must be permanent: %v", err)
	}
	for _, want := range []string{"POST /api/v1/app/thread/" + th.ID + "/interaction", "404", "WORKSPACE_API_SCHEME=project", "2025-11"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if _, err := env.c.GetThread(ctx, th.ID); !errors.Is(err, workspace.ErrRouteMismatch) {
		t.Errorf("get thread: %v", err)
	}
	if _, err := env.c.WaitInteraction(ctx, "inter_x"); !errors.Is(err, workspace.ErrRouteMismatch) {
		t.Errorf("wait: %v", err)
	}
	if env.sim.Counters().InteractionsCreated != 0 {
		t.Error("an interaction was created")
	}

	// The reverse: project-scoped routes against a current server.
	cur := newSim(t, simulator.Config{}, workspace.WithRouteScheme(workspace.RoutesProjectScoped), workspace.WithProject(testProj))
	_, err = cur.c.GetInteraction(ctx, "inter_x")
	if !errors.Is(err, workspace.ErrRouteMismatch) || !strings.Contains(err.Error(), "WORKSPACE_API_SCHEME=current") {
		t.Fatalf("project routes on a current server: %v", err)
	}
}

// CheckRoutes with auto chooses the scheme the server serves, with GETs
// only, and the choice holds for the client's copies.
func TestCheckRoutesDetects(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     simulator.Config
		project string
		want    workspace.RouteScheme
	}{
		{"current server", simulator.Config{}, testProj, workspace.RoutesCurrent},
		{"old server", projectRoutes, testProj, workspace.RoutesProjectScoped},
		{"current server, no project", simulator.Config{}, "", workspace.RoutesCurrent},
		{"old server, no project", projectRoutes, "", workspace.RoutesProjectScoped},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := newSim(t, tc.cfg, workspace.WithRouteScheme(workspace.RoutesAuto), workspace.WithProject(testProj))
			ctx := ctxT(t)
			cp := env.c.WithTransport(func(rt http.RoundTripper) http.RoundTripper { return rt })
			got, err := env.c.CheckRoutes(ctx, tc.project)
			if err != nil || got != tc.want || env.c.RouteScheme() != tc.want || cp.RouteScheme() != tc.want {
				t.Fatalf("CheckRoutes = %s, %v; client %s, copy %s; want %s", got, err, env.c.RouteScheme(), cp.RouteScheme(), tc.want)
			}
			c := env.sim.Counters()
			for route, byStatus := range c.Requests {
				if !strings.HasPrefix(route, "GET ") && route != "unmatched" {
					t.Errorf("the probe sent %s %v", route, byStatus)
				}
			}
			if c.ThreadsCreated != 0 || c.InteractionsCreated != 0 {
				t.Errorf("the probe created something: %+v", c)
			}
			th, err := cp.CreateThread(ctx, testProj, workspace.CreateThreadRequest{Name: "t"})
			if err != nil {
				t.Fatal(err)
			}
			in, err := cp.CreateInteraction(ctx, th.ID, workspace.CreateInteractionRequest{PGPT: ask("hello", 20)})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := cp.WaitInteraction(ctx, in.ID); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// With a fixed scheme CheckRoutes asks that scheme's route only, and a
// route-level 404 is a mismatch naming the fix.
func TestCheckRoutesFixedScheme(t *testing.T) {
	env := newSim(t, projectRoutes, workspace.WithRouteScheme(workspace.RoutesCurrent))
	_, err := env.c.CheckRoutes(ctxT(t), testProj)
	if !errors.Is(err, workspace.ErrRouteMismatch) || !strings.Contains(err.Error(), "WORKSPACE_API_SCHEME=project") {
		t.Fatalf("CheckRoutes on the wrong scheme: %v", err)
	}
	ok := newSim(t, projectRoutes, workspace.WithRouteScheme(workspace.RoutesProjectScoped))
	if s, err := ok.c.CheckRoutes(ctxT(t), testProj); err != nil || s != workspace.RoutesProjectScoped {
		t.Fatalf("CheckRoutes on the right scheme: %s, %v", s, err)
	}
}

// A server whose 404s all look alike (an empty body, or Spring's default
// error JSON) cannot be told apart: auto asks for the scheme to be set.
func TestCheckRoutesUndecided(t *testing.T) {
	for name, body := range map[string]string{
		"empty":  "",
		"spring": `{"timestamp":"2026-01-01T00:00:00Z","status":404,"error":"Not Found","path":"/x"}`,
	} {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusNotFound)
				_, _ = w.Write([]byte(body))
			}))
			t.Cleanup(srv.Close)
			c := newClient(t, srv, workspace.WithRouteScheme(workspace.RoutesAuto))
			_, err := c.CheckRoutes(ctxT(t), testProj)
			if !errors.Is(err, workspace.ErrRouteUndecided) || !strings.Contains(err.Error(), "WORKSPACE_API_SCHEME") {
				t.Fatalf("CheckRoutes: %v", err)
			}
			// Such a 404 on a call is a plain not found: nothing proves a mismatch.
			_, err = c.GetInteraction(ctxT(t), "inter_x")
			if !errors.Is(err, workspace.ErrNotFound) || errors.Is(err, workspace.ErrRouteMismatch) {
				t.Fatalf("get: %v", err)
			}
		})
	}
}

// The rule that tells a route-level 404 from a missing resource, on the
// bodies real frameworks send.
func TestRouteLevel404Shapes(t *testing.T) {
	for _, tc := range []struct {
		name, ctype, body string
		mismatch          bool
	}{
		{"simulator unknown route", "application/json", `{"message":"no route for GET /api/v1/app/thread/x"}`, true},
		{"simulator missing thread", "application/json", `{"message":"thread \"x\" not found"}`, false},
		{"spring 6 problem detail", "application/problem+json", `{"type":"about:blank","title":"Not Found","status":404,"detail":"No static resource api/v1/app/thread/x.","instance":"/api/v1/app/thread/x"}`, true},
		{"spring no handler", "application/json", `{"message":"No handler found for GET /api/v1/app/thread/x"}`, true},
		{"micronaut", "application/json", `{"message":"Not Found","_embedded":{"errors":[{"message":"Page Not Found"}]}}`, true},
		{"html page", "text/html", `<html><head><title>404 Not Found</title></head><body>nginx</body></html>`, true},
		{"express", "text/html", `Cannot GET /api/v1/app/thread/x`, true},
		{"spring default", "application/json", `{"status":404,"error":"Not Found","path":"/api/v1/app/thread/x"}`, false},
		{"empty", "", ``, false},
		{"plain text", "text/plain", `stream unsupported`, false},
		{"kotlin resource", "application/json", `{"error":{"type":"not_found_error","message":"Interaction inter_x not found"}}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tc.ctype != "" {
					w.Header().Set("Content-Type", tc.ctype)
				}
				w.WriteHeader(http.StatusNotFound)
				_, _ = w.Write([]byte(tc.body))
			}))
			t.Cleanup(srv.Close)
			_, err := newClient(t, srv).GetInteraction(ctxT(t), "inter_x")
			if got := errors.Is(err, workspace.ErrRouteMismatch); got != tc.mismatch {
				t.Fatalf("mismatch = %v, want %v: %v", got, tc.mismatch, err)
			}
			if errors.Is(err, workspace.ErrNotFound) == tc.mismatch {
				t.Fatalf("ErrNotFound must match exactly the 404s that are no mismatch: %v", err)
			}
		})
	}
}

func TestParseRouteScheme(t *testing.T) {
	for in, want := range map[string]workspace.RouteScheme{
		"current": workspace.RoutesCurrent, " Project ": workspace.RoutesProjectScoped,
		"project-scoped": workspace.RoutesProjectScoped, "AUTO": workspace.RoutesAuto,
	} {
		if got, err := workspace.ParseRouteScheme(in); err != nil || got != want {
			t.Errorf("ParseRouteScheme(%q) = %s, %v", in, got, err)
		}
	}
	if _, err := workspace.ParseRouteScheme("2025-11"); err == nil || !strings.Contains(err.Error(), "current, project or auto") {
		t.Errorf("bad scheme: %v", err)
	}
	if _, err := workspace.New("http://x", workspace.WithRouteScheme("old")); err == nil || !strings.Contains(err.Error(), "WithRouteScheme") {
		t.Errorf("New with a bad scheme: %v", err)
	}
}

// Whatever the stream of a finished interaction answers (replay, an empty
// 200, 409), WaitInteraction returns the interaction with its output and
// usage, and StreamInteraction reports the short ones as errors.
func TestWaitWhateverAFinishedStreamAnswers(t *testing.T) {
	for _, mode := range []string{simulator.FinishedStreamReplay, simulator.FinishedStreamClose, simulator.FinishedStream409} {
		t.Run(mode, func(t *testing.T) {
			env := newSim(t, simulator.Config{Compat: simulator.Compat{FinishedStream: mode}})
			ctx := ctxT(t)
			th, err := env.c.CreateThread(ctx, testProj, workspace.CreateThreadRequest{Name: "t"})
			if err != nil {
				t.Fatal(err)
			}
			in, err := env.c.CreateInteraction(ctx, th.ID, workspace.CreateInteractionRequest{PGPT: ask("hello there", 50)})
			if err != nil {
				t.Fatal(err)
			}
			_, serr := env.c.StreamInteraction(ctx, in.ID, nil)
			switch mode {
			case simulator.FinishedStreamReplay:
				if serr != nil {
					t.Fatalf("replay: %v", serr)
				}
			case simulator.FinishedStreamClose:
				if !errors.Is(serr, workspace.ErrStreamIncomplete) {
					t.Fatalf("close: %v", serr)
				}
			case simulator.FinishedStream409:
				if ae, ok := errors.AsType[*workspace.APIError](serr); !ok || ae.StatusCode != http.StatusConflict {
					t.Fatalf("409: %v", serr)
				}
			}
			got, err := env.c.WaitInteraction(ctx, in.ID)
			if err != nil || got.Output() != in.Output() || got.Usage() != in.Usage() || got.State != workspace.StateCompleted {
				t.Fatalf("wait: %v %+v", err, got)
			}
		})
	}
}
