package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/threadmill/threadmill/examples"
	"github.com/threadmill/threadmill/internal/hostile"
	"github.com/threadmill/threadmill/internal/syncbuf"
	"github.com/threadmill/threadmill/results"
	"github.com/threadmill/threadmill/workspace/simulator"
)

const (
	simToken   = "tm-runner-test-token-8c2f"
	simProject = "proj_runner_test"
)

// runnerSim is the simulator over real HTTP in the test process, seeded with
// the example corpus, and the environment that points threadmill at it.
type runnerSim struct {
	sim *simulator.Server
	srv *httptest.Server
}

func startRunnerSim(t testing.TB, cfg simulator.Config) *runnerSim {
	t.Helper()
	cfg.ProjectID = simProject
	cfg.Token = simToken
	sim := simulator.New(cfg)
	if err := sim.AddDir(examples.Artifacts, "."); err != nil {
		t.Fatal(err)
	}
	return &runnerSim{sim: sim, srv: httptestServer(t, sim)}
}

// startHostileRunnerSim is the simulator seeded with the example corpus
// behind a hostile front over real HTTP until the test ends, with the
// WORKSPACE_* variables of in-process commands pointing at the front.
func startHostileRunnerSim(t *testing.T) (*simulator.Server, *hostile.Front) {
	t.Helper()
	sim := simulator.New(simulator.Config{ProjectID: simProject, Token: simToken})
	if err := sim.AddDir(examples.Artifacts, "."); err != nil {
		t.Fatal(err)
	}
	front := hostile.New(sim)
	srv := httptest.NewServer(front)
	t.Cleanup(func() { sim.Close(); srv.Close(); front.Close() })
	for k, v := range map[string]string{envBaseURL: srv.URL, envToken: simToken, envOrg: simulator.DefaultOrg, envProject: simProject} {
		t.Setenv(k, v)
	}
	return sim, front
}

// httptestServer serves sim over HTTP until the test ends.
func httptestServer(t testing.TB, sim *simulator.Server) *httptest.Server {
	srv := httptest.NewServer(sim)
	t.Cleanup(func() {
		sim.Close()
		srv.Close()
	})
	return srv
}

// vars are the WORKSPACE_* variables for the simulator.
func (e *runnerSim) vars() map[string]string {
	return map[string]string{
		envBaseURL: e.srv.URL,
		envToken:   simToken,
		envOrg:     simulator.DefaultOrg,
		envProject: simProject,
	}
}

// setenv sets the variables for in-process commands.
func (e *runnerSim) setenv(t *testing.T) {
	for k, v := range e.vars() {
		t.Setenv(k, v)
	}
}

// environ is a subprocess environment: the test's own, without any
// WORKSPACE_* or THREADMILL_* variable, plus extra.
func runnerEnviron(extra map[string]string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "WORKSPACE_") || strings.HasPrefix(kv, "THREADMILL_") {
			continue
		}
		env = append(env, kv)
	}
	for k, v := range extra {
		env = append(env, k+"="+v)
	}
	return env
}

// unsetRunnerEnv hides the caller's Workspace and Redis from in-process
// commands.
func unsetRunnerEnv(t *testing.T) {
	for _, k := range []string{envBaseURL, envToken, envOrg, envProject, envRedisURL} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
}

// cli runs a command line in process.
func runnerCLI(ctx context.Context, args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = execute(ctx, args, &out, &errb)
	return code, out.String(), errb.String()
}

// corpusPipeline is a pipeline over every artifact of the corpus (34
// documents), with limits that never slow a test down, and a reduce step.
func corpusPipeline(name string, concurrency int) string {
	return fmt.Sprintf(`version: 1
name: %s
limits: { concurrency: %d, requests_per_minute: 1000000, tokens_per_minute: 100000000, max_attempts: 5 }
artifacts:
  docs: { all: true }
steps:
  - id: summarize
    for_each: docs
    prompt: "Summarize {{ .Artifact.Name }} in one sentence."
  - id: digest
    needs: [summarize]
    prompt: |
      Combine these summaries into one paragraph:
      {{ range .Steps.summarize.Items }}- {{ .Output }}
      {{ end }}
`, name, concurrency)
}

// corpusDocs is the number of documents (not folders) in the corpus: the
// items of corpusPipeline's first step.
const corpusDocs = 34

func writeRunnerPipeline(t testing.TB, dir, name, body string) string {
	t.Helper()
	path := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// readResultItems reads a results.jsonl (or a journal).
func readResultItems(t testing.TB, path string) []results.Item {
	t.Helper()
	var out []results.Item
	for it, err := range results.ReadItems(path) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, it)
	}
	return out
}

// countJournalLines counts the complete lines of a file (0 when it does not exist).
func countJournalLines(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return bytes.Count(b, []byte("\n"))
}

// pollUntil polls cond every 20ms until it holds or the deadline passes.
func pollUntil(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition, bounded by the deadline
	}
}

// checkEachItemOnce asserts results.jsonl holds every key of want once and
// nothing else, and returns the items by key.
func checkEachItemOnce(t testing.TB, path string, wantItems int) map[string]results.Item {
	t.Helper()
	items := readResultItems(t, path)
	byKey := map[string]results.Item{}
	for _, it := range items {
		k := it.Step + "|" + it.Key
		if _, dup := byKey[k]; dup {
			t.Errorf("%s: item %s appears twice", path, k)
		}
		byKey[k] = it
	}
	if len(items) != wantItems {
		t.Errorf("%s: %d lines, want %d", path, len(items), wantItems)
	}
	return byKey
}

// startWorkerCmd runs `threadmill worker` in process on the test's Redis
// (THREADMILL_REDIS_URL) until the test ends, and returns its log; the
// test waits for it to stop cleanly.
func startWorkerCmd(t *testing.T, root string) *syncbuf.Buffer {
	t.Helper()
	ctx, stop := context.WithCancel(t.Context())
	var out, log syncbuf.Buffer
	code := make(chan int, 1)
	go func() {
		code <- execute(ctx, []string{"worker", "--concurrency", "8", "--results", root, "--log-level", "warn"}, &out, &log)
	}()
	t.Cleanup(func() {
		stop()
		select {
		case c := <-code:
			if c != exitOK {
				t.Errorf("worker exited %d\n%s", c, log.String())
			}
		case <-time.After(time.Minute):
			t.Error("the worker did not stop within a minute")
		}
	})
	return &log
}
