package main

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/threadmill/threadmill/internal/redistest"
	"github.com/threadmill/threadmill/internal/syncbuf"
	"github.com/threadmill/threadmill/runstore"
	"github.com/threadmill/threadmill/workspace/simulator"
)

// closedPortURL returns the URL of a loopback port nobody listens on.
func closedPortURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return "http://" + addr
}

// checkOneLine asserts stderr is exactly one line holding every want.
func checkOneLine(t *testing.T, stderr string, want ...string) {
	t.Helper()
	if n := strings.Count(stderr, "\n"); n != 1 || !strings.HasSuffix(stderr, "\n") {
		t.Errorf("stderr is %d lines, want one:\n%s", n, stderr)
	}
	for _, w := range want {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr lacks %q:\n%s", w, stderr)
		}
	}
}

// checkRedisEmpty asserts nothing was written to the Redis: no run record
// (no key with the run store's prefix), no asynq task, no key at all.
func checkRedisEmpty(t *testing.T, rs *redistest.Server) {
	t.Helper()
	rdb := rs.Client(t)
	keys, err := rdb.Keys(t.Context(), "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if strings.HasPrefix(k, runstore.DefaultPrefix) {
			t.Errorf("run store key %s left in Redis", k)
		}
	}
	if len(keys) != 0 {
		t.Errorf("Redis holds %d keys after a run that could not start: %v", len(keys), keys)
	}
}

// A Workspace on a closed port: run retries for its budget, then exits 1
// with one line naming the URL and the cause, and Redis stays empty.
func TestRunPreflightUnreachable(t *testing.T) {
	unsetRunnerEnv(t)
	rs := redistest.Start(t)
	base := closedPortURL(t)
	t.Setenv(envBaseURL, base)
	t.Setenv(envToken, "some-token")
	t.Setenv(envProject, simProject)
	dir := t.TempDir()
	file := writeRunnerPipeline(t, dir, "down", corpusPipeline("down", 2))

	const budget = 2 * time.Second
	start := time.Now()
	code, stdout, stderr := runnerCLI(t.Context(), "run", "--redis", rs.URL(), "--preflight-timeout", budget.String(),
		"--results", filepath.Join(dir, "out"), "--progress", "none", file)
	took := time.Since(start)
	if code != exitFailure {
		t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, exitFailure, stdout, stderr)
	}
	if took < budget-100*time.Millisecond || took > budget+3*time.Second {
		t.Errorf("exited after %s, want about the %s budget", took, budget)
	}
	checkOneLine(t, stderr, "threadmill: Workspace at "+base+" unreachable after 2", "connection refused")
	checkRedisEmpty(t, rs)
}

// A wrong token is refused at once (no retries), in one line, and nothing
// reaches Redis.
func TestRunPreflightWrongToken(t *testing.T) {
	unsetRunnerEnv(t)
	e := startRunnerSim(t, simulator.Config{})
	e.setenv(t)
	t.Setenv(envToken, "not-the-token")
	rs := redistest.Start(t)
	dir := t.TempDir()
	file := writeRunnerPipeline(t, dir, "badtok", corpusPipeline("badtok", 2))

	start := time.Now()
	code, stdout, stderr := runnerCLI(t.Context(), "run", "--redis", rs.URL(), "--results", filepath.Join(dir, "out"), "--progress", "none", file)
	if code != exitFailure {
		t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, exitFailure, stdout, stderr)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("a refused token took %s to report: it was retried", took)
	}
	checkOneLine(t, stderr, "Workspace at "+e.srv.URL+" refused the token or org", "401", envToken)
	if strings.Contains(stderr, "not-the-token") {
		t.Errorf("stderr shows the token:\n%s", stderr)
	}
	if n := e.sim.Counters().Total("GET /api/v1/app/me"); n != 1 {
		t.Errorf("GET /app/me sent %d times, want once", n)
	}
	checkRedisEmpty(t, rs)
}

// A project the token cannot see fails at once, naming the project.
func TestRunPreflightUnknownProject(t *testing.T) {
	unsetRunnerEnv(t)
	e := startRunnerSim(t, simulator.Config{})
	e.setenv(t)
	t.Setenv(envProject, "proj_nope")
	rs := redistest.Start(t)
	dir := t.TempDir()
	file := writeRunnerPipeline(t, dir, "noproj", corpusPipeline("noproj", 2))

	code, stdout, stderr := runnerCLI(t.Context(), "run", "--redis", rs.URL(), "--results", filepath.Join(dir, "out"), "--progress", "none", file)
	if code != exitFailure {
		t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, exitFailure, stdout, stderr)
	}
	checkOneLine(t, stderr, "has no project proj_nope", "404", envProject)
	checkRedisEmpty(t, rs)
}

// flakyHandler answers 503 to the first n requests for GET /api/v1/app/me,
// then hands everything to next.
type flakyHandler struct {
	next     http.Handler
	n        int32
	meCalls  atomic.Int32
	rejected atomic.Int32
}

func (f *flakyHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && r.URL.Path == "/api/v1/app/me" {
		if f.meCalls.Add(1) <= f.n {
			f.rejected.Add(1)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"message":"starting up"}`))
			return
		}
	}
	f.next.ServeHTTP(w, r)
}

// A Workspace that answers 503 twice, then 200: the preflight retries and
// the run goes through.
func TestRunPreflightRetriesTransientErrors(t *testing.T) {
	unsetRunnerEnv(t)
	e := startRunnerSim(t, simulator.Config{})
	flaky := &flakyHandler{next: e.sim, n: 2}
	srv := httptest.NewServer(flaky)
	t.Cleanup(srv.Close)
	e.setenv(t)
	t.Setenv(envBaseURL, srv.URL)
	dir := t.TempDir()
	file := writeRunnerPipeline(t, dir, "flaky", `version: 1
name: flaky
limits: { concurrency: 4, requests_per_minute: 1000000 }
artifacts:
  docs: { folder: Policies }
steps:
  - id: s
    for_each: docs
    prompt: "Summarize {{ .Artifact.Name }}."
`)
	code, stdout, stderr := runnerCLI(t.Context(), "run", "--preflight-timeout", "10s", "--results", filepath.Join(dir, "out"), "--progress", "none", file)
	if code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if got := flaky.rejected.Load(); got != 2 {
		t.Errorf("%d answers of 503, want 2", got)
	}
	if got := flaky.meCalls.Load(); got != 3 {
		t.Errorf("GET /app/me sent %d times, want 3 (two 503s, then 200)", got)
	}
	if !strings.Contains(stdout, "run flaky-") || !strings.Contains(stdout, "succeeded: 6 items") {
		t.Errorf("stdout:\n%s", stdout)
	}
}

// A budget too short for a Workspace that keeps answering 503 ends with the
// 503 as the cause.
func TestRunPreflight503UntilBudget(t *testing.T) {
	unsetRunnerEnv(t)
	e := startRunnerSim(t, simulator.Config{})
	flaky := &flakyHandler{next: e.sim, n: 1 << 30}
	srv := httptest.NewServer(flaky)
	t.Cleanup(srv.Close)
	e.setenv(t)
	t.Setenv(envBaseURL, srv.URL)
	dir := t.TempDir()
	file := writeRunnerPipeline(t, dir, "busy", corpusPipeline("busy", 2))
	code, stdout, stderr := runnerCLI(t.Context(), "run", "--preflight-timeout", "1s", "--results", filepath.Join(dir, "out"), "--progress", "none", file)
	if code != exitFailure {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	checkOneLine(t, stderr, "Workspace at "+srv.URL+" unreachable after 1", "503 Service Unavailable: starting up")
	if n := flaky.meCalls.Load(); n < 3 {
		t.Errorf("GET /app/me sent %d times in 1s, want retries", n)
	}
}

// enqueue checks the Workspace when WORKSPACE_BASE_URL is set here: a wrong
// token or a closed port fails at the user's terminal, before Redis.
func TestEnqueuePreflight(t *testing.T) {
	unsetRunnerEnv(t)
	e := startRunnerSim(t, simulator.Config{})
	rs := redistest.Start(t)
	dir := t.TempDir()
	file := writeRunnerPipeline(t, dir, "enq", corpusPipeline("enq", 2))
	base := closedPortURL(t)
	for _, c := range []struct {
		name string
		env  map[string]string
		args []string
		want []string
	}{
		{"wrong token", map[string]string{envToken: "nope"}, nil,
			[]string{"Workspace at " + e.srv.URL + " refused the token or org", "401"}},
		{"unreachable", map[string]string{envBaseURL: base}, []string{"--preflight-timeout", "500ms"},
			[]string{"Workspace at " + base + " unreachable after", "connection refused"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e.setenv(t)
			t.Setenv(envRedisURL, rs.URL())
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			args := append(append([]string{"enqueue"}, c.args...), file)
			code, stdout, stderr := runnerCLI(t.Context(), args...)
			if code != exitFailure || stdout != "" {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, exitFailure, stdout, stderr)
			}
			checkOneLine(t, stderr, c.want...)
			checkRedisEmpty(t, rs)
		})
	}
}

// A worker whose token is refused exits 1 at start with one line; a worker
// whose Workspace does not answer warns once and serves.
func TestWorkerPreflight(t *testing.T) {
	unsetRunnerEnv(t)
	e := startRunnerSim(t, simulator.Config{})
	rs := redistest.Start(t)

	t.Run("wrong token", func(t *testing.T) {
		e.setenv(t)
		t.Setenv(envToken, "nope")
		code, stdout, stderr := runnerCLI(t.Context(), "worker", "--redis", rs.URL(), "--log-level", "warn")
		if code != exitFailure {
			t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, exitFailure, stdout, stderr)
		}
		checkOneLine(t, stderr, "Workspace at "+e.srv.URL+" refused the token or org", "401")
	})

	t.Run("unreachable", func(t *testing.T) {
		e.setenv(t)
		base := closedPortURL(t)
		t.Setenv(envBaseURL, base)
		ctx, stop := context.WithCancel(t.Context())
		defer stop()
		var errb syncbuf.Buffer
		done := make(chan int, 1)
		go func() {
			done <- execute(ctx, []string{"worker", "--redis", rs.URL(), "--preflight-timeout", "300ms", "--log-level", "info"}, &syncbuf.Buffer{}, &errb)
		}()
		pollUntil(t, "the worker to start serving", 20*time.Second, func() bool { return strings.Contains(errb.String(), "worker started") })
		out := errb.String()
		if n := strings.Count(out, "Workspace unreachable at start"); n != 1 {
			t.Errorf("%d warnings about the Workspace, want one:\n%s", n, out)
		}
		if !strings.Contains(out, base) || !strings.Contains(out, "connection refused") {
			t.Errorf("the warning does not name the URL and the cause:\n%s", out)
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
