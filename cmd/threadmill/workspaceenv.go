package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/threadmill/threadmill/examples"
	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/workspace"
	"github.com/threadmill/threadmill/workspace/simulator"
)

// Environment variables of the Workspace connection.
const (
	envBaseURL = "WORKSPACE_BASE_URL"   // required: https://zylon.example.com
	envToken   = "WORKSPACE_API_TOKEN"  // required: the Workspace API token
	envOrg     = "WORKSPACE_ORG"        // optional: the org slug or UUID; default "default"
	envProject = "WORKSPACE_PROJECT"    // optional: the project when the pipeline names none
	envScheme  = "WORKSPACE_API_SCHEME" // optional: current | project | auto (default auto)

	defaultOrg = "default"
)

// workspaceEnvHelp documents the variables; commands that talk to the
// Workspace append it to their long help.
const workspaceEnvHelp = `Environment:
  WORKSPACE_BASE_URL   the Workspace server, e.g. https://zylon.example.com (required)
  WORKSPACE_API_TOKEN  the Workspace API token (required; never logged or stored)
  WORKSPACE_ORG        the organisation slug or UUID sent as x-org (default "default")
  WORKSPACE_PROJECT    the project id, when the pipeline's workspace.project is unset
  WORKSPACE_API_SCHEME the routes of threads and interactions: current (spec
                       2025-12 on), project (the project-scoped routes of
                       servers up to spec 2025-11) or auto (default: detected
                       once at preflight; see docs/compatibility.md)

With --simulate none of them is needed: an in-process simulator serves the
example corpus on a loopback port.`

// workspaceEnv is the Workspace connection read from the environment.
type workspaceEnv struct {
	BaseURL string
	Token   string
	Org     string
	Project string
	// Scheme is WORKSPACE_API_SCHEME; default workspace.RoutesAuto.
	Scheme workspace.RouteScheme
}

// String never shows the token.
func (e workspaceEnv) String() string {
	return fmt.Sprintf("workspace %s (org %s)", e.BaseURL, e.Org)
}

// readWorkspaceEnv reads the WORKSPACE_* variables. A missing or malformed
// required variable is an error that names it; every problem is reported.
func readWorkspaceEnv(lookup func(string) (string, bool)) (workspaceEnv, error) {
	get := func(k string) string {
		v, _ := lookup(k)
		return strings.TrimSpace(v)
	}
	e := workspaceEnv{
		BaseURL: get(envBaseURL),
		Token:   get(envToken),
		Org:     cmp.Or(get(envOrg), defaultOrg),
		Project: get(envProject),
	}
	var problems []error
	e.Scheme = workspace.RoutesAuto
	if v := get(envScheme); v != "" {
		s, err := workspace.ParseRouteScheme(v)
		if err != nil {
			problems = append(problems, fmt.Errorf("%s=%q: want current, project or auto", envScheme, v))
		}
		e.Scheme = s
	}
	if e.BaseURL == "" {
		problems = append(problems, fmt.Errorf("%s is not set: give the Workspace server, e.g. https://zylon.example.com (or use --simulate)", envBaseURL))
	} else if u, err := url.Parse(e.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		problems = append(problems, fmt.Errorf("%s=%q is not an http(s) URL", envBaseURL, e.BaseURL))
	}
	if e.Token == "" {
		problems = append(problems, fmt.Errorf("%s is not set: create a token in the Workspace (API Tokens) and export it (or use --simulate)", envToken))
	}
	if len(problems) > 0 {
		return workspaceEnv{}, errors.Join(problems...)
	}
	return e, nil
}

// client returns a Workspace client for the environment.
func (e workspaceEnv) client(logger *slog.Logger, extra ...workspace.Option) (*workspace.Client, error) {
	opts := []workspace.Option{workspace.WithToken(e.Token), workspace.WithOrg(e.Org),
		workspace.WithLogger(logger), workspace.WithUserAgent("threadmill/" + buildVersion()),
		workspace.WithRouteScheme(e.Scheme), workspace.WithProject(e.Project)}
	return workspace.New(e.BaseURL, append(opts, extra...)...)
}

// startSimulator serves a simulator of project projectID (the simulator's
// default when empty), seeded with the embedded example corpus, over real
// HTTP on 127.0.0.1 and a free port. stop shuts the server down and is
// safe to call more than once. The server stops too when ctx ends.
func startSimulator(ctx context.Context, projectID string) (baseURL string, sim *simulator.Server, stop func(), err error) {
	sim = simulator.New(simulator.Config{ProjectID: projectID})
	if err := sim.AddDir(examples.Artifacts, "."); err != nil {
		sim.Close()
		return "", nil, nil, fmt.Errorf("simulator: seed the example corpus: %w", err)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		sim.Close()
		return "", nil, nil, fmt.Errorf("simulator: listen on 127.0.0.1: %w", err)
	}
	// unused holds the connections a client opened but has sent nothing on
	// (http.StateNew): Shutdown waits up to 5 s for those, though nothing
	// will come once the command is done with the simulator.
	var unused sync.Map
	srv := &http.Server{Handler: sim, ReadHeaderTimeout: 10 * time.Second,
		ConnState: func(c net.Conn, st http.ConnState) {
			if st == http.StateNew {
				unused.Store(c, struct{}{})
			} else {
				unused.Delete(c)
			}
		}}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(ln) // returns http.ErrServerClosed after Shutdown
	}()
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
		case <-done:
		}
		sim.Close() // ends open streams so Shutdown does not wait for them
		unused.Range(func(c, _ any) bool {
			_ = c.(net.Conn).Close()
			return true
		})
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			_ = srv.Close()
		}
		<-served
		close(stopped)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() { close(done) })
		<-stopped
	}
	return "http://" + ln.Addr().String(), sim, stop, nil
}

// workspaceConn is a Workspace client and the project to use, from the
// environment or from an in-process simulator.
type workspaceConn struct {
	Client    *workspace.Client
	ProjectID string
	// BaseURL is the Workspace as configured (WORKSPACE_BASE_URL, or the
	// simulator's loopback URL), for messages.
	BaseURL string
	// Sim is the in-process simulator with --simulate, else nil.
	Sim   *simulator.Server
	close func()
}

// Close stops the simulator, if any.
func (c *workspaceConn) Close() {
	if c.close != nil {
		c.close()
	}
}

// connectWorkspace returns a client and project: with simulate, an
// in-process simulator (of projectID, or the simulator's default project);
// otherwise the WORKSPACE_* environment, where projectID (the pipeline's,
// already defaulted from WORKSPACE_PROJECT) must be set.
func connectWorkspace(ctx context.Context, lookup func(string) (string, bool), simulate bool, projectID string, logger *slog.Logger) (*workspaceConn, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if simulate {
		base, sim, stop, err := startSimulator(ctx, projectID)
		if err != nil {
			return nil, err
		}
		c, err := workspace.New(base, workspace.WithOrg(simulator.DefaultOrg), workspace.WithLogger(logger),
			workspace.WithUserAgent("threadmill/"+buildVersion()))
		if err != nil {
			stop()
			return nil, err
		}
		return &workspaceConn{Client: c, ProjectID: sim.ProjectID(), BaseURL: base, Sim: sim, close: stop}, nil
	}
	env, err := readWorkspaceEnv(lookup)
	if err != nil {
		return nil, err
	}
	projectID = cmp.Or(projectID, env.Project)
	if projectID == "" {
		return nil, fmt.Errorf("no project: set workspace.project in the pipeline or %s", envProject)
	}
	env.Project = projectID
	c, err := env.client(logger)
	if err != nil {
		return nil, err
	}
	return &workspaceConn{Client: c, ProjectID: projectID, BaseURL: env.BaseURL}, nil
}

// dateCorpus stamps every artifact of the in-process simulator (--simulate)
// as updated in the middle of run's window, so that `updated:
// within_run_window` finds the example corpus whichever window the run
// covers (the corpus is otherwise stamped with the time the simulator
// started, which lies after the window of the latest completed fire time).
// A run without a window stamps it at 00:00 UTC of the run's day: the
// corpus does not change between two runs of one day, so the second one
// reuses what the first paid for (reuse: unchanged). It does nothing
// without a simulator.
func (c *workspaceConn) dateCorpus(run pipelines.RunInfo) error {
	if c.Sim == nil {
		return nil
	}
	if run.WindowStart.IsZero() || !run.WindowEnd.After(run.WindowStart) {
		if run.Time.IsZero() {
			return nil
		}
		return c.stampCorpus(run.Time.UTC().Truncate(24 * time.Hour))
	}
	return c.stampCorpus(run.WindowStart.Add(run.WindowEnd.Sub(run.WindowStart) / 2))
}

// stampCorpus sets the updated_at of every artifact of the simulator to t.
func (c *workspaceConn) stampCorpus(t time.Time) error {
	for _, a := range c.Sim.Artifacts() {
		if err := c.Sim.SetUpdatedAt(a.ID, t); err != nil {
			return fmt.Errorf("simulator: date artifact %s: %w", a.ID, err)
		}
	}
	return nil
}
