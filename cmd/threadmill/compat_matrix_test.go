package main

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/threadmill/threadmill/internal/redistest"
	"github.com/threadmill/threadmill/results"
	"github.com/threadmill/threadmill/workspace/simulator"
)

// compatMatrix are the servers the examples run against besides the
// current one (the simulator's default), as --compat switches: every switch
// on its own, the stream switches also behind asynchronous creates (where a
// stream is opened), and the oldest and newest profiles. The routes are
// detected at preflight, except where scheme sets WORKSPACE_API_SCHEME.
// Without artifact sizes the token estimates differ (by design: the
// fallback), so they are compared apart.
// docs/compatibility.md shows the same matrix.
var compatMatrix = []struct{ spec, scheme string }{
	{"routes=project", ""},
	{"routes=project", "project"},
	{"create=async", ""},
	{"finished-stream=close", ""},
	{"finished-stream=409", ""},
	{"create=async,finished-stream=close", ""},
	{"create=async,finished-stream=409", ""},
	{"cancel-end=error", ""},
	{"cancel-end=stop", ""},
	{"chat-usage=without", ""},
	{"validate-400=detail-list", ""},
	{"validate-400=detail-string", ""},
	{"validate-400=message", ""},
	{"validate-400=error", ""},
	{"validate-400=text", ""},
	{"artifact-size=without", ""},
	{"max-page-size=20", ""},
	{"pagination=cursor", ""},
	{"profile=oldest", ""},
	{"profile=newest", ""},
}

// matrixRun is what one run of an example left: its result files with ids
// and timings masked, the simulator's counters and the number of items.
type matrixRun struct {
	files    map[string]string
	counters simulator.Counters
	items    int
	compat   simulator.Compat
}

// Ids and timings that differ between two runs of the same pipeline.
var (
	maskIDs   = regexp.MustCompile(`\b(thread|inter)_[0-9a-f]{16}\b`)
	maskTimes = regexp.MustCompile(`"(started_at|finished_at|latency_ms)": ?("[^"]*"|[0-9]+)`)
	maskTook  = regexp.MustCompile(`(?m)^- Started: .*$`)
	// The estimates: the artifacts' sizes, the items' estimates and the
	// steps' comparisons in run.json.
	maskEstimates = regexp.MustCompile(`,"size":[0-9]+|"estimated_tokens":[0-9]+,|"unsized":true,|,\s*"estimate": \{[^}]*\}`)
)

// normalise masks what differs between two runs of the same pipeline on
// the same data: thread and interaction ids, start and end times and
// latencies (the rest, fire time and window included, is fixed by --at).
func normalise(b []byte) string {
	s := maskIDs.ReplaceAllString(string(b), "${1}_<id>")
	s = maskTimes.ReplaceAllString(s, `"$1": <time>`)
	return maskTook.ReplaceAllString(s, "- Started: <time>")
}

// runMatrix runs example with `run --redis` against a fresh simulator
// serving the --compat switches spec, with WORKSPACE_API_SCHEME=scheme
// ("": unset, the routes are detected at preflight), and checks that every
// item succeeded at its first attempt.
func runMatrix(t *testing.T, spec, scheme, example string) matrixRun {
	t.Helper()
	c, err := simulator.ParseCompat(spec)
	if err != nil {
		t.Fatal(err)
	}
	// The example's own pacing (600 requests a minute) only slows the
	// matrix down: the same file with a higher rate.
	src, err := os.ReadFile(filepath.Join("..", "..", "examples", example))
	if err != nil {
		t.Fatal(err)
	}
	fast := bytes.Replace(src, []byte("requests_per_minute: 600"), []byte("requests_per_minute: 600000"), 1)
	if bytes.Equal(fast, src) {
		t.Fatalf("%s: no requests_per_minute: 600 to raise", example)
	}
	dir, sim, err := runInProcess(t, c, scheme, example, fast)
	if err != nil {
		t.Fatalf("%s against --compat %q: %v", example, spec, err)
	}
	out := matrixRun{files: map[string]string{}, counters: sim.Counters(), compat: c}
	for _, name := range []string{results.RunFile, results.ResultsFile, results.ErrorsFile, results.ReportFile} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		out.files[name] = normalise(b)
	}
	for _, it := range readResultItems(t, filepath.Join(dir, results.ResultsFile)) {
		out.items++
		if it.State != results.StateSucceeded || it.Attempts != 1 {
			t.Errorf("%s: item %s: %s after %d attempts: %s", example, it.Key, it.State, it.Attempts, it.Error)
		}
	}
	return out
}

// runInProcess writes the pipeline src as file (named after the pipeline)
// and runs it with `run --redis --run-id compat-1 --at compatAt` against a
// fresh simulator of c (50 ms to the first token, so that an asynchronous
// create answers Processing), with WORKSPACE_API_SCHEME=scheme when set. It
// runs in process with its own environment, so runs go in parallel. It
// returns the run directory, the simulator, and the command's error (with
// its output).
func runInProcess(t *testing.T, c simulator.Compat, scheme, file string, src []byte) (string, *simulator.Server, error) {
	t.Helper()
	e := startRunnerSim(t, simulator.Config{Compat: c, Latency: 50 * time.Millisecond})
	if err := spreadDates(e.sim, compatAt, 14*24*time.Hour); err != nil {
		t.Fatal(err)
	}
	env := e.vars()
	if scheme != "" {
		env[envScheme] = scheme
	}
	rs := redistest.Start(t)
	root := filepath.Join(t.TempDir(), "out")
	path := filepath.Join(t.TempDir(), file)
	if err := os.WriteFile(path, src, 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	cmd := newRunCmdWith(&runOptions{LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }})
	cmd.SetArgs([]string{"--redis", rs.URL(), "--results", root, "--run-id", "compat-1", "--progress", "none",
		"--at", compatAt.Format(time.RFC3339), path})
	cmd.SetOut(&stdout)
	cmd.SetErr(&stderr)
	if err := cmd.ExecuteContext(t.Context()); err != nil {
		err = fmt.Errorf("%w\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
		return filepath.Join(root, strings.TrimSuffix(file, ".yaml"), "compat-1"), e.sim, err
	}
	return filepath.Join(root, strings.TrimSuffix(file, ".yaml"), "compat-1"), e.sim, nil
}

// Whatever shape the server gives a 400 from validate, the item fails at
// once, before anything is created, and results.jsonl and errors.jsonl
// name the endpoint and carry the server's message.
func TestValidate400ShapesInResults(t *testing.T) {
	// max_tokens within the pipeline's range but beyond the simulator's.
	src := []byte(`version: 1
name: toolong
limits: { requests_per_minute: 600000 }
steps:
  - id: ask
    max_tokens: 40000
    prompt: "Summarize the refund policy."
`)
	for _, shape := range []string{simulator.Validate400Valid, simulator.Validate400DetailList, simulator.Validate400DetailString,
		simulator.Validate400Message, simulator.Validate400Error, simulator.Validate400Text} {
		t.Run(shape, func(t *testing.T) {
			t.Parallel()
			dir, sim, err := runInProcess(t, simulator.Compat{Validate400: shape}, "", "toolong.yaml", src)
			if ee, ok := errors.AsType[*exitError](err); !ok || ee.code != exitItemsFailed {
				t.Fatalf("run: %v; want exit %d (items failed)", err, exitItemsFailed)
			}
			failed := readResultItems(t, filepath.Join(dir, results.ErrorsFile))
			if len(failed) != 1 {
				t.Fatalf("%d failed items, want 1", len(failed))
			}
			it := failed[0]
			t.Logf("validate-400=%s: %s", shape, it.Error)
			const endpoint = "POST /api/v1/app/chat/validate: 400 Bad Request: "
			if it.State != results.StateFailed || it.Attempts != 1 || !strings.Contains(it.Error, endpoint) ||
				!strings.Contains(it.Error, "max_tokens must be in [1, 32768], got 40000") {
				t.Errorf("item %s after %d attempts: %q; want failed at once, naming %q and the server's message", it.State, it.Attempts, it.Error, endpoint)
			}
			if c := sim.Counters(); c.Validations != 1 || c.ValidationsFailed != 1 || c.InteractionsCreated != 0 {
				t.Errorf("%d validations (%d failed), %d interactions; want one failed validation and nothing created",
					c.Validations, c.ValidationsFailed, c.InteractionsCreated)
			}
		})
	}
}

// The bulk and weekly examples give the same result files (ids and timings
// masked) and send the same work, exactly once per item, against every
// server of the matrix as against the current one.
func TestCompatMatrix(t *testing.T) {
	for _, example := range []string{"bulk-summarize.yaml", "weekly-support-brief.yaml"} {
		t.Run(example, func(t *testing.T) {
			t.Parallel()
			base := runMatrix(t, "", "", example)
			if base.items < 2 {
				t.Fatalf("the current server's run has %d items", base.items)
			}
			bc := base.counters
			if bc.InteractionsCreated != base.items || bc.Validations != base.items || bc.ValidationsFailed != 0 {
				t.Fatalf("current server: %d interactions, %d validations (%d failed) for %d items",
					bc.InteractionsCreated, bc.Validations, bc.ValidationsFailed, base.items)
			}
			for _, m := range compatMatrix {
				name, spec := m.spec, m.spec
				if m.scheme != "" {
					name += " " + envScheme + "=" + m.scheme
				}
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					got := runMatrix(t, spec, m.scheme, example)
					c := got.counters
					if c.InteractionsCreated != bc.InteractionsCreated || c.ThreadsCreated != bc.ThreadsCreated ||
						c.Validations != bc.Validations || c.ValidationsFailed != 0 || c.InteractionsCancelled != 0 ||
						c.TokensIn != bc.TokensIn || c.TokensOut != bc.TokensOut || c.ChatsAnswered != bc.ChatsAnswered {
						t.Errorf("%d interactions in %d threads, %d validations (%d failed), %d cancelled, %d+%d tokens, %d chats;"+
							" want %d in %d, %d, none, none, %d+%d, %d as on the current server",
							c.InteractionsCreated, c.ThreadsCreated, c.Validations, c.ValidationsFailed, c.InteractionsCancelled,
							c.TokensIn, c.TokensOut, c.ChatsAnswered,
							bc.InteractionsCreated, bc.ThreadsCreated, bc.Validations, bc.TokensIn, bc.TokensOut, bc.ChatsAnswered)
					}
					for corr, n := range c.Correlations {
						if n != 1 {
							t.Errorf("correlation id %s was sent %d times", corr, n)
						}
					}
					sizes := got.compat.ArtifactSize != simulator.ArtifactSizeWithout
					if unsized := strings.Count(got.files[results.ResultsFile], `"unsized":true`); sizes != (unsized == 0) || !sizes && unsized != got.items {
						t.Errorf("%d of %d items estimated without an artifact size", unsized, got.items)
					}
					for name, want := range base.files {
						if !sizes {
							want = maskEstimates.ReplaceAllString(want, "")
							got.files[name] = maskEstimates.ReplaceAllString(got.files[name], "")
						}
						if got.files[name] != want {
							t.Errorf("%s differs from the current server's:\n got %s\nwant %s", name, got.files[name], want)
						}
					}
					t.Logf("%s, --compat %s: requests that differ from the current server's: %s", example, name, requestDiff(bc, c))
				})
			}
		})
	}
}

// requestDiff lists the routes and statuses whose answer counts differ
// between two servers' counters, as "route status: a -> b".
func requestDiff(a, b simulator.Counters) string {
	routes := slices.Sorted(maps.Keys(a.Requests))
	for r := range b.Requests {
		if _, ok := a.Requests[r]; !ok {
			routes = append(routes, r)
		}
	}
	var diffs []string
	for _, r := range routes {
		statuses := map[int]bool{}
		for s := range a.Requests[r] {
			statuses[s] = true
		}
		for s := range b.Requests[r] {
			statuses[s] = true
		}
		for _, s := range slices.Sorted(maps.Keys(statuses)) {
			if x, y := a.Requests[r][s], b.Requests[r][s]; x != y {
				diffs = append(diffs, fmt.Sprintf("%s %d: %d -> %d", r, s, x, y))
			}
		}
	}
	if len(diffs) == 0 {
		return "none"
	}
	return strings.Join(diffs, "; ")
}
