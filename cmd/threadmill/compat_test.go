package main

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/threadmill/threadmill/internal/redistest"
	"github.com/threadmill/threadmill/internal/syncbuf"
	"github.com/threadmill/threadmill/results"
	"github.com/threadmill/threadmill/workspace/simulator"
)

// compatAt is the --at of the compatibility runs: the weekly example covers
// the week before it, and the corpus is dated over the two weeks before it,
// so that every run sees the same tickets.
var compatAt = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

// A run whose scheme does not match the server fails at preflight with one
// line naming the fix, before anything is created or enqueued.
func TestWrongRouteSchemeFailsPreflight(t *testing.T) {
	for _, tc := range []struct {
		name, scheme, fix string
		cfg               simulator.Config
	}{
		{"current scheme on an old server", "current", envScheme + "=project",
			simulator.Config{Compat: simulator.Compat{Routes: simulator.RoutesProject}}},
		{"project scheme on a current server", "project", envScheme + "=current", simulator.Config{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			unsetRunnerEnv(t)
			e := startRunnerSim(t, tc.cfg)
			e.setenv(t)
			t.Setenv(envScheme, tc.scheme)
			rs := redistest.Start(t)
			root := filepath.Join(t.TempDir(), "out")
			code, stdout, stderr := runnerCLI(t.Context(), "run", "--redis", rs.URL(), "--results", root,
				"--progress", "none", filepath.Join("..", "..", "examples", "bulk-summarize.yaml"))
			if code != exitFailure {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, exitFailure, stdout, stderr)
			}
			checkOneLine(t, stderr, "Workspace at "+e.srv.URL+" does not serve the thread and interaction routes", "route-level 404", tc.fix)
			c := e.sim.Counters()
			if c.ThreadsCreated != 0 || c.InteractionsCreated != 0 {
				t.Errorf("created %d threads, %d interactions before failing", c.ThreadsCreated, c.InteractionsCreated)
			}
			if keys, err := rs.Client(t).Keys(t.Context(), "*").Result(); err != nil || len(keys) != 0 {
				t.Errorf("Redis holds %v (%v) after a failed preflight", keys, err)
			}
		})
	}
}

// WORKSPACE_API_SCHEME accepts current, project and auto, and names itself
// otherwise.
func TestWorkspaceEnvScheme(t *testing.T) {
	base := map[string]string{envBaseURL: "http://127.0.0.1:1", envToken: "t"}
	lookup := func(extra map[string]string) func(string) (string, bool) {
		return func(k string) (string, bool) {
			if v, ok := extra[k]; ok {
				return v, true
			}
			v, ok := base[k]
			return v, ok
		}
	}
	for v, want := range map[string]string{"": "auto", "current": "current", "Project": "project", "auto": "auto"} {
		e, err := readWorkspaceEnv(lookup(map[string]string{envScheme: v}))
		if err != nil || string(e.Scheme) != want {
			t.Errorf("%s=%q: %v %v", envScheme, v, e.Scheme, err)
		}
	}
	if _, err := readWorkspaceEnv(lookup(map[string]string{envScheme: "2025-11"})); err == nil || !strings.Contains(err.Error(), envScheme+`="2025-11": want current, project or auto`) {
		t.Errorf("a bad scheme: %v", err)
	}
}

// Without a preflight, a client on the wrong routes meets the mismatch on
// each item: the item fails at once (one attempt, one thread, nothing
// retried and no new thread), with the fix in its error.
func TestRouteMismatchFailsItemsPermanently(t *testing.T) {
	unsetRunnerEnv(t)
	var reqLog syncbuf.Buffer // the simulator's debug line of every request
	e := startRunnerSim(t, simulator.Config{Compat: simulator.Compat{Routes: simulator.RoutesProject},
		Logger: slog.New(slog.NewTextHandler(&reqLog, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	e.setenv(t)
	t.Setenv(envScheme, "current")
	rs := redistest.Start(t)
	root := filepath.Join(t.TempDir(), "out")
	code, stdout, stderr := runnerCLI(t.Context(), "run", "--redis", rs.URL(), "--results", root, "--run-id", "mismatch-1",
		"--progress", "none", "--preflight-timeout", "0", filepath.Join("..", "..", "examples", "bulk-summarize.yaml"))
	if code != exitItemsFailed {
		t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, exitItemsFailed, stdout, stderr)
	}
	items := readResultItems(t, filepath.Join(root, "bulk-summarize", "mismatch-1", results.ResultsFile))
	if len(items) < 2 {
		t.Fatalf("%d items", len(items))
	}
	for _, it := range items {
		if it.State != results.StateFailed || it.Attempts != 1 || !strings.Contains(it.Error, envScheme+"=project") || !strings.Contains(it.Error, "404") {
			t.Errorf("item %s: state %s, %d attempts, error %q", it.Key, it.State, it.Attempts, it.Error)
		}
	}
	c := e.sim.Counters()
	if c.InteractionsCreated != 0 || c.ThreadsCreated != len(items) {
		t.Errorf("%d interactions in %d threads for %d items; want none in one thread each", c.InteractionsCreated, c.ThreadsCreated, len(items))
	}
	// Each item's create met the route-level 404 once; the only other
	// unknown route is the thread's deletion at the end of the run
	// (delete_after), which fails the same way.
	creates, deletes := 0, 0
	for _, line := range strings.Split(reqLog.String(), "\n") {
		if !strings.Contains(line, "route=unmatched") {
			continue
		}
		switch {
		case strings.Contains(line, "method=POST") && strings.HasSuffix(strings.Fields(strings.SplitN(line, "path=", 2)[1])[0], "/interaction"):
			creates++
		case strings.Contains(line, "method=DELETE") && strings.Contains(line, "path=/api/v1/app/thread/"):
			deletes++
		default:
			t.Errorf("unexpected request to an unknown route: %s", line)
		}
	}
	if creates != len(items) || deletes > len(items) {
		t.Errorf("%d creates and %d deletes met the mismatch for %d items: it was retried", creates, deletes, len(items))
	}
}

// The worker checks its scheme at start: a wrong one stops it with one
// line; auto without a project detects the project-scoped routes from the
// current route's 404 alone.
func TestWorkerRouteScheme(t *testing.T) {
	unsetRunnerEnv(t)
	e := startRunnerSim(t, simulator.Config{Compat: simulator.Compat{Routes: simulator.RoutesProject}})
	rs := redistest.Start(t)

	t.Run("wrong scheme", func(t *testing.T) {
		e.setenv(t)
		t.Setenv(envScheme, "current")
		code, stdout, stderr := runnerCLI(t.Context(), "worker", "--redis", rs.URL(), "--log-level", "warn")
		if code != exitFailure {
			t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, exitFailure, stdout, stderr)
		}
		checkOneLine(t, stderr, "Workspace at "+e.srv.URL+" does not serve", envScheme+"=project")
	})

	t.Run("auto without a project", func(t *testing.T) {
		e.setenv(t)
		t.Setenv(envProject, "")
		ctx, stop := context.WithCancel(t.Context())
		defer stop()
		var errb syncbuf.Buffer
		done := make(chan int, 1)
		go func() {
			done <- execute(ctx, []string{"worker", "--redis", rs.URL(), "--log-level", "info"}, &syncbuf.Buffer{}, &errb)
		}()
		pollUntil(t, "the worker to start serving", 20*time.Second, func() bool { return strings.Contains(errb.String(), "worker started") })
		if out := errb.String(); !strings.Contains(out, "project-scoped routes") {
			t.Errorf("the worker does not say it uses the project-scoped routes:\n%s", out)
		}
		stop()
		select {
		case code := <-done:
			if code != exitOK {
				t.Errorf("worker exited %d\n%s", code, errb.String())
			}
		case <-time.After(time.Minute):
			t.Fatal("worker did not stop within a minute")
		}
	})
}
