package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/threadmill/threadmill/internal/redistest"
	"github.com/threadmill/threadmill/internal/syncbuf"
	"github.com/threadmill/threadmill/results"
	"github.com/threadmill/threadmill/workspace/simulator"
)

// The distributed path in process: `worker` serves a Redis, `enqueue --wait`
// starts a run there and follows it to its end, `status` lists it, and the
// worker stops cleanly when its context ends.
func TestEnqueueWorkerStatus(t *testing.T) {
	unsetRunnerEnv(t)
	e := startRunnerSim(t, simulator.Config{Async: true, Latency: 10 * time.Millisecond})
	e.setenv(t)
	rs := redistest.Start(t)
	t.Setenv(envRedisURL, rs.URL())
	dir := t.TempDir()
	file := writeRunnerPipeline(t, dir, "dist", corpusPipeline("dist", 8))
	root := filepath.Join(dir, "out")

	wctx, stop := context.WithCancel(t.Context())
	defer stop()
	var wout, werr syncbuf.Buffer
	workerCode := make(chan int, 1)
	go func() {
		workerCode <- execute(wctx, []string{"worker", "--concurrency", "8", "--results", root, "--log-level", "warn"}, &wout, &werr)
	}()

	code, stdout, stderr := runnerCLI(t.Context(), "enqueue", "--wait", "--run-id", "dist-1", "--progress", "lines", "--progress-interval", "50ms", file)
	if code != exitOK {
		t.Fatalf("enqueue --wait: exit %d\nstdout:\n%s\nstderr:\n%s\nworker:\n%s", code, stdout, stderr, werr.String())
	}
	if first, _, _ := strings.Cut(stdout, "\n"); first != "dist-1" {
		t.Errorf("enqueue's first stdout line is %q, want the run id", first)
	}
	if !strings.Contains(stderr, "run dist-1 of dist enqueued on unix://") || !strings.Contains(stdout, "run dist-1 succeeded") {
		t.Errorf("enqueue output:\n%s\n%s", stdout, stderr)
	}
	checkEachItemOnce(t, filepath.Join(root, "dist", "dist-1", results.ResultsFile), corpusDocs+1)

	// The same run id again: nothing is enqueued, nothing is sent.
	before := e.sim.Counters().InteractionsCreated
	code, stdout, stderr = runnerCLI(t.Context(), "enqueue", "--run-id", "dist-1", file)
	if code != exitOK || !strings.Contains(stderr, "exists already") || strings.TrimSpace(stdout) != "dist-1" {
		t.Errorf("second enqueue: exit %d\n%s\n%s", code, stdout, stderr)
	}

	// A default run id, followed with status --watch.
	code, stdout, stderr = runnerCLI(t.Context(), "enqueue", file)
	if code != exitOK || !strings.HasPrefix(stdout, "dist-") {
		t.Fatalf("enqueue: exit %d\n%s\n%s", code, stdout, stderr)
	}
	id := strings.TrimSpace(stdout)
	code, stdout, stderr = runnerCLI(t.Context(), "status", "--watch", "--progress", "none", id)
	if code != exitOK || !strings.Contains(stdout, "run "+id+" succeeded: 35 items") {
		t.Fatalf("status --watch: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if got := e.sim.Counters().InteractionsCreated - before; got != corpusDocs+1 {
		t.Errorf("%d interactions after the duplicate enqueue and a new run, want %d", got, corpusDocs+1)
	}

	code, stdout, _ = runnerCLI(t.Context(), "status")
	if code != exitOK || strings.Index(stdout, id) > strings.Index(stdout, "dist-1") || !strings.Contains(stdout, "queue threadmill:") {
		t.Errorf("status lists runs newest first with the queue:\n%s", stdout)
	}

	stop()
	select {
	case c := <-workerCode:
		if c != exitOK {
			t.Errorf("worker exited %d\n%s", c, werr.String())
		}
	case <-time.After(time.Minute):
		t.Fatal("worker did not stop within a minute of its context ending")
	}
}

func TestWorkerEnqueueStatusConfigErrors(t *testing.T) {
	unsetRunnerEnv(t)
	dir := t.TempDir()
	file := writeRunnerPipeline(t, dir, "cfg", corpusPipeline("cfg", 2))
	for _, c := range []struct {
		name string
		env  map[string]string
		args []string
		code int
		want []string
	}{
		{"worker without workspace", nil, []string{"worker"}, exitFailure, []string{"WORKSPACE_BASE_URL is not set", "WORKSPACE_API_TOKEN is not set"}},
		{"worker without redis", map[string]string{envBaseURL: "http://127.0.0.1:1", envToken: "t"}, []string{"worker"}, exitFailure,
			[]string{"no Redis", "--redis", envRedisURL}},
		{"worker bad concurrency", nil, []string{"worker", "--concurrency", "0"}, exitUsage, []string{"--concurrency"}},
		{"enqueue without project", map[string]string{envRedisURL: "redis://127.0.0.1:1"}, []string{"enqueue", file}, exitFailure,
			[]string{"names no project", envProject}},
		{"enqueue without redis", map[string]string{envProject: "p"}, []string{"enqueue", file}, exitFailure, []string{"--redis", envRedisURL}},
		{"status without redis", nil, []string{"status"}, exitFailure, []string{"--redis", envRedisURL}},
		{"status watch without run", nil, []string{"status", "--watch"}, exitUsage, []string{"--watch needs a RUN"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			code, stdout, stderr := runnerCLI(t.Context(), c.args...)
			if code != c.code {
				t.Fatalf("exit %d, want %d\n%s\n%s", code, c.code, stdout, stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
		})
	}
}
