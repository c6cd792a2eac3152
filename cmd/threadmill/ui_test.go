package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/threadmill/threadmill/internal/redistest"
	"github.com/threadmill/threadmill/internal/syncbuf"
	"github.com/threadmill/threadmill/results"
	"github.com/threadmill/threadmill/worker"
	"github.com/threadmill/threadmill/workspace/simulator"
)

func TestUICmdErrors(t *testing.T) {
	unsetRunnerEnv(t)
	t.Setenv(envPipelines, "")
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"ui", "--addr", "nope"}, exitUsage, `--addr "nope": want host:port`},
		{[]string{"ui", "--addr", "127.0.0.1:0", "--pipelines", filepath.Join(dir, "missing")}, exitFailure, "(from --pipelines): stat"},
		{[]string{"ui", "--addr", "127.0.0.1:0", "--redis", "unix:///nonexistent/redis.sock"}, exitFailure, "does not answer"},
		{[]string{"ui", "--addr", "127.0.0.1:0", "--log-level", "loud"}, exitUsage, "--log-level"},
		{[]string{"ui", "extra"}, exitUsage, "unknown command"},
		{[]string{"worker", "--ui"}, exitUsage, "--ui needs --metrics-addr"},
		{[]string{"scheduler", "--pipelines", dir, "--ui"}, exitUsage, "--ui needs --health-addr"},
	} {
		code, _, errb := runCmdline(t, c.args...)
		if code != c.code || !strings.Contains(errb, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", c.args, code, errb, c.code, c.want)
		}
	}
}

func TestUICmdServesTheResultsRoot(t *testing.T) {
	unsetRunnerEnv(t)
	t.Setenv(envPipelines, "")
	root := t.TempDir()
	commitRun(t, root, "alpha", "alpha-1", time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC), results.StateSucceeded, results.StateFailed)
	base := startUICmd(t, "--results", root, "--pipelines", "../../examples")
	code, body := obsGet(base + "/")
	if code != 200 || !strings.Contains(body, `href="/runs/alpha/alpha-1"`) {
		t.Errorf("GET /: %d\n%s", code, body)
	}
	code, body = obsGet(base + "/schedules")
	if code != 200 || !strings.Contains(body, "weekly-support-brief") || !strings.Contains(body, "0 9 * * MON") {
		t.Errorf("GET /schedules: %d\n%s", code, body)
	}
}

// --ui serves the same pages under /ui/ on a worker's and a scheduler's
// metrics server, beside /metrics.
func TestUIMountedOnTheMetricsServers(t *testing.T) {
	unsetRunnerEnv(t)
	rs := redistest.Start(t)
	sim := startRunnerSim(t, simulator.Config{})
	root := t.TempDir()
	commitRun(t, root, "alpha", "alpha-1", time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC), results.StateSucceeded)
	env := sim.vars()
	env[envRedisURL] = rs.URL()
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }

	ctx, cancel := context.WithCancel(t.Context())
	logs := &syncbuf.Buffer{}
	workerDone := make(chan error, 1)
	go func() {
		workerDone <- runWorker(ctx, &workerOptions{
			Concurrency: 2, Queue: worker.DefaultQueue, ResultsDir: root, ShutdownTimeout: 10 * time.Second,
			Log:     logFlags{Level: "info", Format: "json"},
			Metrics: metricsFlags{Addr: "127.0.0.1:0", UI: true}, LookupEnv: lookup,
		}, logs)
	}()
	pdir := t.TempDir()
	if err := os.WriteFile(filepath.Join(pdir, "nightly.yaml"), []byte(`version: 1
name: nightly
schedule: { cron: "0 2 * * *", timezone: UTC }
workspace: { project: proj_x }
steps:
  - id: s
    prompt: "Hello."
`), 0o644); err != nil {
		t.Fatal(err)
	}
	schedAddr := make(chan string, 1)
	schedDone := make(chan error, 1)
	go func() {
		schedDone <- runScheduler(ctx, &schedulerOptions{
			Pipelines: pipelinesDirFlag{Dir: pdir}, Queue: worker.DefaultQueue, HealthAddr: "127.0.0.1:0", UI: true,
			SyncInterval: time.Minute, NoWatch: true, Log: logFlags{Level: "warn", Format: "text"}, LookupEnv: lookup,
			ready: func(addr string) { schedAddr <- addr },
		}, &syncbuf.Buffer{})
	}()
	t.Cleanup(func() {
		cancel()
		for _, done := range []chan error{workerDone, schedDone} {
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("stopped with %v", err)
				}
			case <-time.After(time.Minute):
				t.Error("did not stop within a minute")
			}
		}
	})

	var base string
	obsWaitFor(t, 20*time.Second, "the worker to log its metrics address", func() bool {
		if m := obsAddrRe.FindStringSubmatch(logs.String()); m != nil {
			base = "http://" + m[1]
		}
		return base != ""
	})
	code, body := obsGet(base + "/ui/")
	if code != 200 || !strings.Contains(body, `href="/ui/runs/alpha/alpha-1"`) || !strings.Contains(body, `href="/ui/static/style.css"`) {
		t.Errorf("worker GET /ui/: %d\n%s", code, body)
	}
	if code, body := obsGet(base + "/ui/runs/alpha/alpha-1/files/run.json"); code != 200 || !strings.Contains(body, `"run_id": "alpha-1"`) {
		t.Errorf("worker GET run.json: %d\n%s", code, body)
	}
	if code, _ := obsGet(base + "/metrics"); code != 200 {
		t.Errorf("worker /metrics beside the UI: %d", code)
	}

	var sbase string
	select {
	case a := <-schedAddr:
		sbase = "http://" + a
	case <-time.After(time.Minute):
		t.Fatal("the scheduler did not start")
	}
	code, body = obsGet(sbase + "/ui/schedules")
	if code != 200 || !strings.Contains(body, ">nightly<") || !strings.Contains(body, "0 2 * * *") {
		t.Errorf("scheduler GET /ui/schedules: %d\n%s", code, body)
	}
}
