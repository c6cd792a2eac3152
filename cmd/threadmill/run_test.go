package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/threadmill/threadmill/internal/redistest"
	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/results"
	"github.com/threadmill/threadmill/workspace/simulator"
)

// `run` on the embedded default against the simulator over HTTP: every item
// lands once in results.jsonl, the reduce step read every map output, the
// usage agrees with what the simulator billed, and the journal is gone.
func TestRunEmbeddedEndToEnd(t *testing.T) {
	unsetRunnerEnv(t)
	// 100 ms a turn keeps the summarize step going for several 50 ms
	// progress ticks (at 20 ms a fast run could finish it between two).
	e := startRunnerSim(t, simulator.Config{Async: true, Latency: 100 * time.Millisecond})
	e.setenv(t)
	dir := t.TempDir()
	file := writeRunnerPipeline(t, dir, "digest", corpusPipeline("digest", 8))
	root := filepath.Join(dir, "out")

	code, stdout, stderr := runnerCLI(t.Context(), "run", "--results", root, "--run-id", "digest-1",
		"--progress", "lines", "--progress-interval", "50ms", file)
	if code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	runDir := filepath.Join(root, "digest", "digest-1")
	if !strings.Contains(stdout, "results: "+runDir) || !strings.Contains(stdout, "run digest-1 succeeded: 35 items (35 succeeded, 0 failed, 0 skipped)") {
		t.Errorf("stdout does not name the results and counts:\n%s", stdout)
	}
	if !strings.Contains(stderr, "digest-1: step summarize, ") || !strings.Contains(stderr, "digest-1: 35/35 items (100%)") {
		t.Errorf("stderr has no progress lines:\n%s", stderr)
	}

	items := checkEachItemOnce(t, filepath.Join(runDir, results.ResultsFile), corpusDocs+1)
	digest := items["digest|digest"]
	if digest.State != results.StateSucceeded || len(digest.Requests) != 1 {
		t.Fatalf("digest item: %+v", digest)
	}
	prompt := digest.Requests[0].Messages[len(digest.Requests[0].Messages)-1].Content[0].Text
	for k, it := range items {
		if it.Step == "summarize" && !strings.Contains(prompt, strings.TrimSpace(it.Output)) {
			t.Errorf("the digest prompt lacks the output of %s", k)
		}
	}

	run, err := results.ReadRun(runDir)
	if err != nil {
		t.Fatal(err)
	}
	c := e.sim.Counters()
	if int64(run.Usage.InputTokens) != c.TokensIn || int64(run.Usage.OutputTokens) != c.TokensOut {
		t.Errorf("run.json usage %+v, simulator billed in %d out %d", run.Usage, c.TokensIn, c.TokensOut)
	}
	if c.InteractionsCreated != corpusDocs+1 {
		t.Errorf("simulator created %d interactions, want %d", c.InteractionsCreated, corpusDocs+1)
	}
	report, err := os.ReadFile(filepath.Join(runDir, results.ReportFile))
	if err != nil || !strings.Contains(string(report), strings.TrimSpace(digest.Output)) {
		t.Errorf("report.md lacks the digest (%v):\n%s", err, report)
	}
	if latest, err := results.LatestDir(root, "digest"); err != nil || latest != runDir {
		t.Errorf("latest = %q, %v", latest, err)
	}
	jpath := results.JournalPath(root, "digest", "digest-1")
	for _, p := range []string{jpath, metaPath(jpath)} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s left after a finished run (%v)", p, err)
		}
	}
}

// A prompt that fails validation is sent once, recorded as failed with the
// server's message, and the run exits with exitItemsFailed.
func TestRunSimulateFailedItemExitCode(t *testing.T) {
	unsetRunnerEnv(t)
	dir := t.TempDir()
	file := writeRunnerPipeline(t, dir, "vfail", `version: 1
name: vfail
limits: { concurrency: 4, requests_per_minute: 1000000 }
artifacts:
  docs: { folder: Policies }
steps:
  - id: s
    for_each: docs
    prompt: '{{ if eq .Artifact.Name "refund-policy.md" }} {{ else }}Summarize {{ .Artifact.Name }}.{{ end }}'
`)
	root := filepath.Join(dir, "out")
	code, stdout, stderr := runnerCLI(t.Context(), "run", "--simulate", "--results", root, "--progress", "none", file)
	if code != exitItemsFailed {
		t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, exitItemsFailed, stdout, stderr)
	}
	if !strings.Contains(stderr, "1 failed, 0 skipped of 6 items") {
		t.Errorf("stderr does not say what failed:\n%s", stderr)
	}
	latest, err := results.LatestDir(root, "vfail")
	if err != nil {
		t.Fatal(err)
	}
	errs := readResultItems(t, filepath.Join(latest, results.ErrorsFile))
	if len(errs) != 1 || errs[0].Attempts != 1 || errs[0].Artifact.Name != "refund-policy.md" ||
		!strings.Contains(errs[0].Error, "text must not be empty") {
		t.Fatalf("errors.jsonl = %+v", errs)
	}
	run, err := results.ReadRun(latest)
	if err != nil || run.Status != results.StatusFailed || run.Counts[results.StateSucceeded] != 5 {
		t.Fatalf("run.json = %+v, %v", run, err)
	}
}

func TestRunConfigurationErrors(t *testing.T) {
	unsetRunnerEnv(t)
	dir := t.TempDir()
	file := writeRunnerPipeline(t, dir, "p", corpusPipeline("p", 2))
	root := filepath.Join(dir, "out")
	// A journal left by an interrupted run of p-busy.
	jpath := results.JournalPath(root, "p", "p-busy")
	if err := os.MkdirAll(filepath.Dir(jpath), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(jpath, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		env  map[string]string
		args []string
		code int
		want []string
		not  string
	}{
		{name: "no workspace", args: []string{file}, code: exitFailure,
			want: []string{"WORKSPACE_BASE_URL is not set", "WORKSPACE_API_TOKEN is not set"}},
		{name: "bad concurrency", args: []string{"--concurrency", "-1", file}, code: exitUsage, want: []string{"--concurrency"}},
		{name: "bad progress", args: []string{"--progress", "fancy", file}, code: exitUsage, want: []string{"--progress must be auto, bar, lines or none"}},
		{name: "bad run id", args: []string{"--run-id", "a/b", file}, code: exitUsage, want: []string{"--run-id", "slash"}},
		{name: "bad log level", args: []string{"--log-level", "loud", file}, code: exitUsage, want: []string{"--log-level"}},
		{name: "pprof without an address", args: []string{"--pprof", file}, code: exitUsage, want: []string{"--pprof needs --metrics-addr"}},
		{name: "bad metrics address", args: []string{"--simulate", "--metrics-addr", "127.0.0.1:99999", "--results", root, file}, code: exitUsage,
			want: []string{"--metrics-addr", "99999"}},
		{name: "missing file", args: []string{"--simulate", filepath.Join(dir, "none.yaml")}, code: exitFailure, want: []string{"none.yaml"}},
		{name: "redis down", args: []string{"--simulate", "--redis", "redis://:s3cretpw@127.0.0.1:1", file}, code: exitFailure,
			want: []string{"from --redis", "127.0.0.1:1"}, not: "s3cretpw"},
		{name: "redis env bad", env: map[string]string{envRedisURL: "http://x"}, args: []string{"--simulate", file}, code: exitFailure,
			want: []string{envRedisURL}},
		{name: "nothing to resume", args: []string{"--simulate", "--resume", "--run-id", "p-none", "--results", root, file}, code: exitFailure,
			want: []string{"nothing to resume for run p-none"}},
		{name: "journal exists", args: []string{"--simulate", "--run-id", "p-busy", "--results", root, file}, code: exitUsage,
			want: []string{"was interrupted earlier", "--resume"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			code, stdout, stderr := runnerCLI(t.Context(), append([]string{"run", "--progress", "none"}, c.args...)...)
			if code != c.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, c.code, stdout, stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			if c.not != "" && strings.Contains(stdout+stderr, c.not) {
				t.Errorf("output shows %q:\n%s", c.not, stderr)
			}
		})
	}
}

// With a real Redis, `run` keeps no journal (Redis holds the run), and
// `status` shows the finished run.
func TestRunOnRealRedisThenStatus(t *testing.T) {
	unsetRunnerEnv(t)
	e := startRunnerSim(t, simulator.Config{})
	e.setenv(t)
	rs := redistest.Start(t)
	dir := t.TempDir()
	file := writeRunnerPipeline(t, dir, "onredis", corpusPipeline("onredis", 8))
	root := filepath.Join(dir, "out")

	code, stdout, stderr := runnerCLI(t.Context(), "run", "--redis", rs.URL(), "--results", root, "--run-id", "onredis-1", "--progress", "none", file)
	if code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	checkEachItemOnce(t, filepath.Join(root, "onredis", "onredis-1", results.ResultsFile), corpusDocs+1)
	if m, _ := filepath.Glob(filepath.Join(root, "onredis", "*.journal*")); len(m) != 0 {
		t.Errorf("journal files with a real Redis: %v", m)
	}

	t.Setenv(envRedisURL, rs.URL())
	code, stdout, stderr = runnerCLI(t.Context(), "status")
	if code != exitOK || !strings.Contains(stdout, "onredis-1") || !strings.Contains(stdout, "succeeded") || !strings.Contains(stdout, "35/35") {
		t.Fatalf("status: exit %d\n%s\n%s", code, stdout, stderr)
	}
	code, stdout, stderr = runnerCLI(t.Context(), "status", "--json", "onredis-1")
	if code != exitOK {
		t.Fatalf("status --json: exit %d\n%s", code, stderr)
	}
	var v runView
	if err := json.Unmarshal([]byte(stdout), &v); err != nil {
		t.Fatal(err)
	}
	if v.Status != "succeeded" || v.Done != 35 || v.Total != 35 || v.ResultDir == "" || v.ElapsedMS <= 0 || v.ETAMS != 0 {
		t.Fatalf("status --json = %+v", v)
	}
	code, stdout, _ = runnerCLI(t.Context(), "status", "onredis-1")
	for _, want := range []string{"status    succeeded", "items     35/35 done: 35 succeeded", "summarize  34/34", "digest     1/1"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("status RUN lacks %q:\n%s", want, stdout)
		}
	}
	if code, _, stderr = runnerCLI(t.Context(), "status", "nosuch"); code != exitFailure || !strings.Contains(stderr, "run nosuch not found") {
		t.Errorf("status of an unknown run: exit %d, %s", code, stderr)
	}
}

// --resume seeds the journal's items into the run store: they are not sent
// again, and they appear in the results exactly once next to the new ones.
func TestRunResumeFromJournal(t *testing.T) {
	unsetRunnerEnv(t)
	e := startRunnerSim(t, simulator.Config{})
	e.setenv(t)
	dir := t.TempDir()
	file := writeRunnerPipeline(t, dir, "res", corpusPipeline("res", 8))
	root := filepath.Join(dir, "out")

	// A first, complete run gives real finished items.
	if code, stdout, stderr := runnerCLI(t.Context(), "run", "--results", root, "--run-id", "res-1", "--progress", "none", file); code != exitOK {
		t.Fatalf("first run: exit %d\n%s\n%s", code, stdout, stderr)
	}
	first := readResultItems(t, filepath.Join(root, "res", "res-1", results.ResultsFile))

	// The journal of an interrupted run res-2 that finished 20 map items.
	p, err := pipelines.Load(file, os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	jpath := results.JournalPath(root, "res", "res-2")
	j, err := results.OpenJournal(jpath)
	if err != nil {
		t.Fatal(err)
	}
	seeded := map[string]results.Item{}
	for _, it := range first[:20] {
		if err := j.Append(it); err != nil {
			t.Fatal(err)
		}
		seeded[it.Key] = it
	}
	if err := j.Append(first[0]); err != nil { // a duplicate line is harmless
		t.Fatal(err)
	}
	_ = j.Close()
	run := pipelines.RunInfo{ID: "res-2", Time: time.Now().UTC().Truncate(time.Second)}
	if err := writeMeta(metaPath(jpath), resumeMeta{Pipeline: "res", File: file, PipelineHash: p.Hash, Run: run}); err != nil {
		t.Fatal(err)
	}

	e.sim.ResetCounters()
	code, stdout, stderr := runnerCLI(t.Context(), "run", "--resume", "--results", root, "--progress", "none", file)
	if code != exitOK {
		t.Fatalf("resume: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if !strings.Contains(stderr, "resuming run res-2: 20 finished items") {
		t.Errorf("stderr:\n%s", stderr)
	}
	c := e.sim.Counters()
	if want := corpusDocs + 1 - 20; c.InteractionsCreated != want {
		t.Errorf("the resumed run created %d interactions, want %d (20 of 35 items were journaled)", c.InteractionsCreated, want)
	}
	for corr := range c.Correlations {
		for key := range seeded {
			if strings.Contains(corr, ":"+key+":") {
				t.Errorf("journaled item %s was sent again (%s)", key, corr)
			}
		}
	}
	items := checkEachItemOnce(t, filepath.Join(root, "res", "res-2", results.ResultsFile), corpusDocs+1)
	for key, it := range seeded {
		if got := items["summarize|"+key]; got.Output != it.Output || got.ThreadID != it.ThreadID {
			t.Errorf("item %s: resumed result differs from the journal's", key)
		}
	}
	if _, err := os.Stat(jpath); !os.IsNotExist(err) {
		t.Errorf("journal left after the resumed run finished: %v", err)
	}
}

func TestRunResumeRefusesAChangedPipeline(t *testing.T) {
	unsetRunnerEnv(t)
	dir := t.TempDir()
	file := writeRunnerPipeline(t, dir, "chg", corpusPipeline("chg", 2))
	root := filepath.Join(dir, "out")
	jpath := results.JournalPath(root, "chg", "chg-1")
	if err := writeMeta(metaPath(jpath), resumeMeta{Pipeline: "chg", File: file, PipelineHash: "0123456789abcdef", Run: pipelines.RunInfo{ID: "chg-1"}, Simulate: true}); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runnerCLI(t.Context(), "run", "--simulate", "--resume", "--results", root, "--progress", "none", file)
	if code != exitFailure || !strings.Contains(stderr, "changed since run chg-1 was interrupted") {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}

	// The same file, but the run was started with --simulate.
	p, err := pipelines.Load(file, os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeMeta(metaPath(jpath), resumeMeta{Pipeline: "chg", File: file, PipelineHash: p.Hash, Run: pipelines.RunInfo{ID: "chg-1"}, Simulate: true}); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = runnerCLI(t.Context(), "run", "--resume", "--run-id", "chg-1", "--results", root, "--progress", "none", file)
	if code != exitFailure || !strings.Contains(stderr, "run chg-1 was started with --simulate: resume it the same way") {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
}

func TestFreshRunID(t *testing.T) {
	asked := []string{}
	id, err := freshRunID(adHocRunID("brief", time.Now()), func(id string) (bool, error) {
		asked = append(asked, id)
		return len(asked) < 3, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(asked) != 3 || !strings.HasPrefix(asked[0], "brief-") || asked[1] != asked[0]+"-2" || asked[2] != asked[0]+"-3" {
		t.Fatalf("ids tried: %q, want <base>, <base>-2, <base>-3", asked)
	}
	if id != asked[2] {
		t.Errorf("id = %q, want the first free one, %q", id, asked[2])
	}
	if _, err := time.Parse(runIDTime, strings.TrimPrefix(asked[0], "brief-")); err != nil {
		t.Errorf("base %q is not <pipeline>-<UTC time>: %v", asked[0], err)
	}

	boom := errors.New("redis down")
	if _, err := freshRunID("brief", func(string) (bool, error) { return false, boom }); !errors.Is(err, boom) {
		t.Errorf("err = %v, want the lookup's error", err)
	}
}

// `run --metrics-addr --pprof` serves the run's metrics and Go's profiles
// while it runs (on the embedded default too), and says where on stderr:
// what an operator needs to see where an embedded run's time and memory go.
func TestRunServesMetricsAndProfilesWhileItRuns(t *testing.T) {
	unsetRunnerEnv(t)
	e := startRunnerSim(t, simulator.Config{Async: true, Latency: 150 * time.Millisecond})
	e.setenv(t)
	dir := t.TempDir()
	file := writeRunnerPipeline(t, dir, "watched", corpusPipeline("watched", 4))
	stderr := &obsBuffer{}
	var stdout bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- execute(t.Context(), []string{"run", "--results", filepath.Join(dir, "out"), "--progress", "none",
			"--metrics-addr", "127.0.0.1:0", "--pprof", file}, &stdout, stderr)
	}()
	addr := regexp.MustCompile(`serving metrics on http://(127\.0\.0\.1:\d+)/metrics while the run lasts \(profiles under /debug/pprof/\)`)
	var base string
	obsWaitFor(t, 30*time.Second, "the metrics address on stderr", func() bool {
		if m := addr.FindStringSubmatch(stderr.String()); m != nil {
			base = "http://" + m[1]
		}
		return base != ""
	})
	get := func(path string) string {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s while the run lasts: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
		}
		return string(b)
	}
	if heap := get("/debug/pprof/heap?debug=1"); !strings.Contains(heap, "heap profile") {
		t.Errorf("/debug/pprof/heap is not a heap profile:\n%.300s", heap)
	}
	obsWaitFor(t, 30*time.Second, "an item counted in /metrics", func() bool {
		return strings.Contains(get("/metrics"), `threadmill_items_total{`)
	})
	select {
	case code := <-done:
		if code != exitOK {
			t.Fatalf("exit %d\n%s\n%s", code, stdout.String(), stderr.String())
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("the run did not finish")
	}
	if _, err := http.Get(base + "/metrics"); err == nil {
		t.Error("the metrics server still answers after the run")
	}
}
