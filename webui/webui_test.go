package webui_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/threadmill/threadmill/internal/redistest"
	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/results"
	"github.com/threadmill/threadmill/runstore"
	"github.com/threadmill/threadmill/webui"
	"github.com/threadmill/threadmill/worker"
)

var t0 = time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)

// hostileReport is a report step's output that tries to run script.
const hostileReport = "Weekly brief: **all good**.\n\n<script>alert('x')</script>\n\n" +
	"[click](javascript:alert(1)) <img src=x onerror=alert(2)>\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"

// commit writes a finished run under root: items a (succeeded) and b
// (failed with err), and report as the report step's output.
func commit(t testing.TB, root, pipeline, runID string, started time.Time, report string) {
	t.Helper()
	w, err := results.Create(root, pipeline, runID)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	items := []results.Item{
		{Step: "summarize", Key: "a", Index: 0, State: results.StateSucceeded, Attempts: 1, LatencyMS: 1200,
			Artifact: &pipelines.ArtifactRef{ID: "artifact_a", Name: "TCK-1.md"}, Output: "Summary of ticket one.",
			StartedAt: started, FinishedAt: started.Add(time.Second)},
		{Step: "summarize", Key: "b", Index: 1, State: results.StateFailed, Attempts: 3, LatencyMS: 300,
			Artifact: &pipelines.ArtifactRef{ID: "artifact_b", Name: "TCK-2.md"}, Error: "validate: 400 prompt refused <b>by policy</b>",
			StartedAt: started, FinishedAt: started.Add(time.Second)},
	}
	items[0].Usage.InputTokens, items[0].Usage.OutputTokens = 100, 20
	for _, it := range items {
		if err := w.Add(it); err != nil {
			t.Fatal(err)
		}
	}
	ws, we := started.Add(-7*24*time.Hour), started
	if _, err := w.Commit(results.Run{Pipeline: pipeline, PipelineHash: "abc123def4567890", RunID: runID, StartedAt: started,
		FinishedAt: started.Add(90 * time.Second), WindowStart: &ws, WindowEnd: &we, Steps: []results.StepUsage{{Step: "summarize"}}}, report); err != nil {
		t.Fatal(err)
	}
}

// serve starts the UI over opts until the test ends.
func serve(t *testing.T, opts webui.Options) *httptest.Server {
	t.Helper()
	opts.Now = func() time.Time { return t0.Add(time.Hour) }
	ui, err := webui.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(ui)
	t.Cleanup(func() { ui.Close(); srv.Close() })
	return srv
}

// browser is an HTTP client with cookies that does not follow redirects.
func browser(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// get fetches path and returns the status, the body and the answer.
func get(t *testing.T, c *http.Client, base, path string) (int, string, *http.Response) {
	t.Helper()
	resp, err := c.Get(base + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b), resp
}

// post sends a form to path, with extra headers as name, value pairs.
func post(t *testing.T, c *http.Client, base, path string, form url.Values, header ...string) (int, string, *http.Response) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+path, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp
}

func mustContain(t *testing.T, what, body string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(body, w) {
			t.Errorf("%s: missing %q", what, w)
			if testing.Verbose() {
				t.Log(body)
			}
		}
	}
}

func mustNotContain(t *testing.T, what, body string, bad ...string) {
	t.Helper()
	for _, b := range bad {
		if strings.Contains(body, b) {
			t.Errorf("%s: has %q", what, b)
		}
	}
}

func TestRunsPageListsAndFiltersNewestFirst(t *testing.T) {
	root := t.TempDir()
	commit(t, root, "alpha", "alpha-1", t0, "A")
	commit(t, root, "beta", "beta-1", t0.Add(time.Hour), "B")
	srv := serve(t, webui.Options{Root: root})
	c := browser(t)

	code, body, resp := get(t, c, srv.URL, "/")
	if code != http.StatusOK {
		t.Fatalf("GET /: %d\n%s", code, body)
	}
	if i, j := strings.Index(body, ">beta-1<"), strings.Index(body, ">alpha-1<"); i < 0 || j < 0 || i > j {
		t.Errorf("want beta-1 listed before alpha-1:\n%s", body)
	}
	mustContain(t, "runs page", body, `href="/runs/alpha/alpha-1"`, "2/2", "120", "1m30s", `<label for="f-pipeline">`, `<label for="f-status">`,
		`<html lang="en">`, `name="viewport"`)
	mustNotContain(t, "runs page without live runs", body, "data-events=", "data-run=")
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("security headers: %v", resp.Header)
	}

	_, body, _ = get(t, c, srv.URL, "/?pipeline=alpha")
	mustContain(t, "pipeline filter", body, ">alpha-1<", "1 of 2 runs")
	mustNotContain(t, "pipeline filter", body, ">beta-1<")
	_, body, _ = get(t, c, srv.URL, "/?status=succeeded")
	mustContain(t, "status filter", body, "0 of 2 runs", "No runs match the filter")

	for _, q := range []string{"/?pipeline=..%2Fetc", "/?pipeline=.hidden", "/?status=%3Cscript%3E"} {
		if code, body, _ := get(t, c, srv.URL, q); code != http.StatusBadRequest || strings.Contains(body, "<script>") {
			t.Errorf("GET %s: %d, want 400 with the value escaped\n%s", q, code, body)
		}
	}
	if code, _, _ := get(t, c, srv.URL, "/nope"); code != http.StatusNotFound {
		t.Errorf("GET /nope: %d, want 404", code)
	}
	if code, body, resp := get(t, c, srv.URL, "/static/style.css"); code != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/css") || !strings.Contains(body, "focus-visible") {
		t.Errorf("style.css: %d %s", code, resp.Header.Get("Content-Type"))
	}
	if code, _, _ := get(t, c, srv.URL, "/static/"); code != http.StatusNotFound {
		t.Errorf("GET /static/: %d, want 404 (no listing)", code)
	}
}

func TestRunPageShowsSanitisedReportItemsAndFiles(t *testing.T) {
	root := t.TempDir()
	commit(t, root, "alpha", "alpha-1", t0, hostileReport)
	srv := serve(t, webui.Options{Root: root})
	c := browser(t)

	code, body, _ := get(t, c, srv.URL, "/runs/alpha/alpha-1")
	if code != http.StatusOK {
		t.Fatalf("run page: %d\n%s", code, body)
	}
	mustContain(t, "run page", body,
		"Weekly brief: <strong>all good</strong>.", "<table>", // Markdown with tables
		"validate: 400 prompt refused &lt;b&gt;by policy&lt;/b&gt;", // the failed item's error, escaped
		"TCK-1.md", "TCK-2.md", ">failed<", "1.2s", ">3<", // items: artifact, state, latency, attempts
		`href="/runs/alpha/alpha-1/items/2"`,                          // each output one click away
		"abc123def456", "2026-11-23 09:00:00Z → 2026-11-30 09:00:00Z", // hash and window
		`href="/runs/alpha/alpha-1/files/report.md"`, `href="/runs/alpha/alpha-1/files/results.jsonl"`,
		`href="/runs/alpha/alpha-1/files/errors.jsonl"`, `href="/runs/alpha/alpha-1/files/run.json"`,
		"Usage per step", ">summarize<")
	mustNotContain(t, "run page", body, "<script>alert", "javascript:", "onerror", "<img")
	mustNotContain(t, "run page without actions", body, "Action token", "/cancel", "/retry")

	_, body, _ = get(t, c, srv.URL, "/runs/alpha/alpha-1?state=failed")
	mustContain(t, "state filter", body, "1 items failed", "TCK-2.md")
	mustNotContain(t, "state filter", body, "TCK-1.md")

	code, body, _ = get(t, c, srv.URL, "/runs/alpha/alpha-1/items/1")
	if code != http.StatusOK {
		t.Fatalf("item page: %d", code)
	}
	mustContain(t, "item page", body, "Summary of ticket one.", "artifact_a", "120")

	for path, want := range map[string]int{
		"/runs/alpha/alpha-1/items/3":     http.StatusNotFound,
		"/runs/alpha/alpha-1/items/0":     http.StatusBadRequest,
		"/runs/alpha/alpha-1/items/x":     http.StatusBadRequest,
		"/runs/alpha/alpha-2":             http.StatusNotFound,
		"/runs/alpha/alpha-1?page=0":      http.StatusBadRequest,
		"/runs/alpha/alpha-1?state=weird": http.StatusBadRequest,
	} {
		if code, _, _ := get(t, c, srv.URL, path); code != want {
			t.Errorf("GET %s: %d, want %d", path, code, want)
		}
	}

	for file, ctype := range map[string]string{
		"report.md": "text/plain; charset=utf-8", "results.jsonl": "text/plain; charset=utf-8",
		"errors.jsonl": "text/plain; charset=utf-8", "run.json": "application/json; charset=utf-8",
	} {
		code, body, resp := get(t, c, srv.URL, "/runs/alpha/alpha-1/files/"+file)
		want, err := os.ReadFile(filepath.Join(root, "alpha", "alpha-1", file))
		if err != nil {
			t.Fatal(err)
		}
		if code != http.StatusOK || body != string(want) || resp.Header.Get("Content-Type") != ctype ||
			!strings.Contains(resp.Header.Get("Content-Security-Policy"), "sandbox") {
			t.Errorf("file %s: %d %q, want the file as %s in a sandbox", file, code, resp.Header.Get("Content-Type"), ctype)
		}
	}
}

func TestNothingOutsideTheResultsRootIsServed(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "results")
	commit(t, root, "alpha", "alpha-1", t0, "inside")
	// A secret next to the root, and a run elsewhere, reachable only by links.
	secret := filepath.Join(dir, "secret.txt")
	if err := os.WriteFile(secret, []byte("TOP SECRET"), 0o600); err != nil {
		t.Fatal(err)
	}
	commit(t, filepath.Join(dir, "elsewhere"), "alpha", "outside-1", t0, "TOP SECRET REPORT")
	if err := os.Symlink(filepath.Join(dir, "elsewhere", "alpha", "outside-1"), filepath.Join(root, "alpha", "linked-1")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "elsewhere", "alpha"), filepath.Join(root, "linkedpipe")); err != nil {
		t.Fatal(err)
	}
	// A run directory under the root whose report is a link to the secret.
	commit(t, root, "alpha", "alpha-2", t0, "x")
	report := filepath.Join(root, "alpha", "alpha-2", results.ReportFile)
	if err := os.Remove(report); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, report); err != nil {
		t.Fatal(err)
	}
	srv := serve(t, webui.Options{Root: root})

	for _, path := range []string{
		"/runs/alpha/alpha-2/files/report.md",
		"/runs/alpha/linked-1/files/report.md",
		"/runs/alpha/linked-1/files/run.json",
		"/runs/linkedpipe/outside-1/files/report.md",
		"/runs/alpha/linked-1",
		"/runs/linkedpipe/outside-1",
		"/runs/alpha/alpha-2",
		"/runs/alpha/%2e%2e/files/run.json",
		"/runs/%2e%2e/results/files/run.json",
		"/runs/alpha/..%2f..%2fsecret.txt/files/report.md",
		"/runs/alpha/alpha-1/files/..%2f..%2f..%2fsecret.txt",
		"/runs/alpha/alpha-1/files/%2e%2e",
		"/runs/alpha/alpha-1/files/.journal",
		"/runs/alpha/alpha-1/files/secret.txt",
		"/runs/alpha/alpha-1/files/..%5c..%5csecret.txt",
		"/runs/alpha/.alpha-1.lock/files/run.json",
		"/runs/alpha/alpha-1/files/report.md%00",
		"/runs/../../secret.txt",
		"/static/../../secret.txt",
		"/static/%2e%2e/%2e%2e/secret.txt",
	} {
		req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.URL.Opaque = path // send the path as written, undecoded and uncleaned
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(b), "TOP SECRET") {
			t.Errorf("GET %s: %d served what is outside the root", path, resp.StatusCode)
		}
		if resp.StatusCode == http.StatusOK && !strings.HasSuffix(path, "/runs/alpha/alpha-2") {
			t.Errorf("GET %s: 200, want a refusal", path)
		}
	}
	// The run whose report links out is listed, without its report.
	_, body, _ := get(t, http.DefaultClient, srv.URL, "/runs/alpha/alpha-2")
	mustContain(t, "run with a linked report", body, "alpha-2")
	mustNotContain(t, "run with a linked report", body, "TOP SECRET", `id="report"`)
}

func TestSchedulesPage(t *testing.T) {
	root, pdir := t.TempDir(), t.TempDir()
	commit(t, root, "weekly", "weekly-1", t0, "r")
	files := map[string]string{
		"weekly.yaml": `version: 1
name: weekly
schedule: { cron: "0 9 * * MON", timezone: Europe/Madrid }
workspace: { project: proj_x }
steps:
  - id: s
    prompt: "Hello."
`,
		"adhoc.yaml": `version: 1
name: adhoc
workspace: { project: proj_x }
steps:
  - id: s
    prompt: "Hello."
`,
		"broken.yaml": "version: 1\nname: [\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(pdir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	srv := serve(t, webui.Options{Root: root, PipelinesDir: pdir, Load: func(p string) (*pipelines.Pipeline, error) {
		return pipelines.Load(p, func(string) (string, bool) { return "", false })
	}})
	code, body, _ := get(t, http.DefaultClient, srv.URL, "/schedules")
	if code != http.StatusOK {
		t.Fatalf("schedules: %d\n%s", code, body)
	}
	// Now is Monday 30 November 10:00 UTC: the next fire times are the
	// following Mondays at 09:00 in Madrid.
	mustContain(t, "schedules", body, ">weekly<", "0 9 * * MON", "Europe/Madrid",
		"Mon 2026-12-07 09:00 &#43;01:00", "Mon 2026-12-14 09:00 &#43;01:00", "Mon 2026-12-21 09:00 &#43;01:00",
		`href="/runs/weekly/weekly-1"`, "adhoc.yaml", "broken.yaml:")

	srv = serve(t, webui.Options{Root: root})
	_, body, _ = get(t, http.DefaultClient, srv.URL, "/schedules")
	mustContain(t, "schedules without a directory", body, "No pipelines directory")
}

func TestMountedUnderAPrefix(t *testing.T) {
	root := t.TempDir()
	commit(t, root, "alpha", "alpha-1", t0, "A")
	ui, err := webui.New(webui.Options{Root: root, Prefix: "/ui"})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/ui/", ui)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	code, body, _ := get(t, http.DefaultClient, srv.URL, "/ui/")
	if code != http.StatusOK {
		t.Fatalf("GET /ui/: %d", code)
	}
	mustContain(t, "mounted runs page", body, `href="/ui/runs/alpha/alpha-1"`, `href="/ui/static/style.css"`, `href="/ui/schedules"`)
	if code, _, _ := get(t, http.DefaultClient, srv.URL, "/ui/runs/alpha/alpha-1/files/run.json"); code != http.StatusOK {
		t.Errorf("mounted file: %d", code)
	}
	if _, err := webui.New(webui.Options{Prefix: "ui"}); err == nil || !strings.Contains(err.Error(), "Prefix") {
		t.Errorf("a prefix without a slash: %v, want an error naming Prefix", err)
	}
}

// redisRun records a run of pipeline "alpha" in store: running, one step
// of two items, with the given items recorded.
func redisRun(t *testing.T, store *runstore.Store, id string, recorded ...results.Item) {
	t.Helper()
	ctx := t.Context()
	p, err := pipelines.Parse("alpha.yaml", []byte(`
version: 1
name: alpha
workspace: { project: proj_x }
steps:
  - id: s
    prompt: "Hello."
`), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.CreateRun(ctx, p, pipelines.RunInfo{ID: id, Time: t0}); err != nil {
		t.Fatal(err)
	}
	if err := store.MarkRunning(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := store.PlanStep(ctx, id, "s", 2); err != nil {
		t.Fatal(err)
	}
	for _, it := range recorded {
		if _, err := store.Record(ctx, id, it, 0); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLiveProgressOverServerSentEvents(t *testing.T) {
	rs := redistest.Start(t)
	store := runstore.New(rs.Client(t), "")
	redisRun(t, store, "live-1", results.Item{Step: "s", Key: "k0", Index: 0, State: results.StateSucceeded, Attempts: 1})
	srv := serve(t, webui.Options{Root: t.TempDir(), Store: store, Interval: 10 * time.Millisecond})

	_, body, _ := get(t, http.DefaultClient, srv.URL, "/")
	mustContain(t, "runs page with a live run", body, `data-events="/events"`, `data-run="alpha/live-1"`, "1/2", `src="/static/live.js"`)
	_, body, _ = get(t, http.DefaultClient, srv.URL, "/runs/alpha/live-1")
	mustContain(t, "live run page", body, `data-run="alpha/live-1" data-reload-when-done`, ">running<")

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("events: Content-Type %q", ct)
	}
	events := bufio.NewScanner(resp.Body)
	next := func() string {
		for events.Scan() {
			if data, ok := strings.CutPrefix(events.Text(), "data: "); ok {
				return data
			}
		}
		t.Fatalf("events ended: %v", events.Err())
		return ""
	}
	if first := next(); !strings.Contains(first, `"key":"alpha/live-1"`) || !strings.Contains(first, `"items":"1/2"`) || !strings.Contains(first, `"live":true`) {
		t.Fatalf("first event: %s", first)
	}
	// Progress moves: the next event says so.
	if _, err := store.Record(t.Context(), "live-1", results.Item{Step: "s", Key: "k1", Index: 1, State: results.StateFailed, Attempts: 1, Error: "refused while running"}, 0); err != nil {
		t.Fatal(err)
	}
	if second := next(); !strings.Contains(second, `"items":"2/2"`) || !strings.Contains(second, `"steps":[{"id":"s","total":2,"succeeded":1,"failed":1`) {
		t.Fatalf("event after an item finished: %s", second)
	}

	// Before its files are written, the run's finished items come from
	// Redis, the failed one with its error, each one click away.
	_, body, _ = get(t, http.DefaultClient, srv.URL, "/runs/alpha/live-1")
	mustContain(t, "live run's items", body, "as recorded in Redis", `href="/runs/alpha/live-1/steps/s/items/0"`,
		`href="/runs/alpha/live-1/steps/s/items/1"`, "refused while running")
	code, body, _ := get(t, http.DefaultClient, srv.URL, "/runs/alpha/live-1/steps/s/items/1")
	if code != http.StatusOK || !strings.Contains(body, "refused while running") || !strings.Contains(body, "Item s#1") {
		t.Errorf("a live run's item: %d\n%s", code, body)
	}
	for path, want := range map[string]int{
		"/runs/alpha/live-1/steps/s/items/5":  http.StatusNotFound,
		"/runs/alpha/live-1/steps/s/items/-1": http.StatusBadRequest,
		"/runs/alpha/live-1/steps/.x/items/0": http.StatusBadRequest,
		"/runs/alpha/live-1/steps/zz/items/0": http.StatusNotFound,
		"/runs/alpha/nope-1/steps/s/items/0":  http.StatusNotFound,
	} {
		if code, _, _ := get(t, http.DefaultClient, srv.URL, path); code != want {
			t.Errorf("GET %s: %d, want %d", path, code, want)
		}
	}

	// Without Redis there is nothing live: 204 stops EventSource.
	srv2 := serve(t, webui.Options{Root: t.TempDir()})
	if code, _, _ := get(t, http.DefaultClient, srv2.URL, "/events"); code != http.StatusNoContent {
		t.Errorf("events without Redis: %d, want 204", code)
	}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

func TestActionsAreOffByDefault(t *testing.T) {
	rs := redistest.Start(t)
	store := runstore.New(rs.Client(t), "")
	redisRun(t, store, "run-1")
	srv := serve(t, webui.Options{Root: t.TempDir(), Store: store})
	c := browser(t)
	for _, path := range []string{"/login", "/logout", "/runs/alpha/run-1/cancel", "/runs/alpha/run-1/retry"} {
		code, body, _ := post(t, c, srv.URL, path, url.Values{"token": {""}, "csrf": {""}})
		if code != http.StatusForbidden || !strings.Contains(body, "Actions are off") {
			t.Errorf("POST %s: %d, want 403 actions are off", path, code)
		}
	}
	if st, _ := store.Run(t.Context(), "run-1"); st.Status != runstore.StatusRunning {
		t.Errorf("run is %s after refused actions", st.Status)
	}
	if _, err := webui.New(webui.Options{Token: "short"}); err == nil || !strings.Contains(err.Error(), webui.TokenEnv) {
		t.Errorf("a short token: %v, want an error naming %s", err, webui.TokenEnv)
	}
}

func TestLoginAttemptsAreLimited(t *testing.T) {
	srv := serve(t, webui.Options{Root: t.TempDir(), Token: "ui-test-token-5f1c"})
	c := browser(t)
	codes := map[int]int{}
	for range 12 {
		code, _, _ := post(t, c, srv.URL, "/login", url.Values{"token": {"guess"}})
		codes[code]++
	}
	if codes[http.StatusForbidden] != 10 || codes[http.StatusTooManyRequests] != 2 {
		t.Errorf("12 wrong logins: %v, want 10 refused and 2 told to wait", codes)
	}
}

func TestActionsNeedTokenSessionAndCSRF(t *testing.T) {
	rs := redistest.Start(t)
	rdb := rs.Client(t)
	store := runstore.New(rdb, "")
	redisRun(t, store, "run-1")
	// A finished run with a failed item, to retry.
	redisRun(t, store, "done-1",
		results.Item{Step: "s", Key: "k0", Index: 0, State: results.StateSucceeded, Attempts: 1},
		results.Item{Step: "s", Key: "k1", Index: 1, State: results.StateFailed, Attempts: 1, Error: "refused"})
	if err := store.Finish(t.Context(), "done-1", runstore.StatusFailed, ""); err != nil {
		t.Fatal(err)
	}
	const token = "ui-test-token-5f1c"
	srv := serve(t, webui.Options{Root: t.TempDir(), Store: store, Token: token})
	c := browser(t)

	_, body, _ := get(t, c, srv.URL, "/runs/alpha/run-1")
	mustContain(t, "logged out run page", body, `<label for="token">Action token</label>`, `action="/login"`)
	mustNotContain(t, "logged out run page", body, "/cancel", token)

	if code, _, _ := post(t, c, srv.URL, "/runs/alpha/run-1/cancel", url.Values{}); code != http.StatusForbidden {
		t.Errorf("cancel without a session: %d, want 403", code)
	}
	if code, body, _ := post(t, c, srv.URL, "/login", url.Values{"token": {"wrong"}}); code != http.StatusForbidden || !strings.Contains(body, "Wrong action token") {
		t.Errorf("login with a wrong token: %d", code)
	}
	// A login form posted from another site is refused.
	if code, _, _ := post(t, c, srv.URL, "/login", url.Values{"token": {token}}, "Sec-Fetch-Site", "cross-site"); code != http.StatusForbidden {
		t.Errorf("cross-site login: %d, want 403", code)
	}
	code, _, resp := post(t, c, srv.URL, "/login", url.Values{"token": {token}, "next": {"/runs/alpha/run-1"}})
	if code != http.StatusSeeOther || resp.Header.Get("Location") != "/runs/alpha/run-1?notice=logged-in" {
		t.Fatalf("login: %d to %q", code, resp.Header.Get("Location"))
	}
	if ck := resp.Header.Get("Set-Cookie"); !strings.Contains(ck, "HttpOnly") || !strings.Contains(ck, "SameSite=Strict") || strings.Contains(ck, token) {
		t.Errorf("session cookie: %s", ck)
	}
	// A login's next that leaves the site goes to the runs page instead.
	if _, _, resp := post(t, c, srv.URL, "/login", url.Values{"token": {token}, "next": {"//evil.example/x"}}); resp.Header.Get("Location") != "/?notice=logged-in" {
		t.Errorf("login with an outside next: to %q", resp.Header.Get("Location"))
	}

	_, body, _ = get(t, c, srv.URL, "/runs/alpha/run-1")
	m := csrfField.FindStringSubmatch(body)
	if m == nil || !strings.Contains(body, "Cancel this run") {
		t.Fatalf("logged in run page has no cancel form:\n%s", body)
	}
	csrf := m[1]
	if code, body, _ := post(t, c, srv.URL, "/runs/alpha/run-1/cancel", url.Values{}); code != http.StatusForbidden || !strings.Contains(body, "CSRF") {
		t.Errorf("cancel without the CSRF token: %d", code)
	}
	if code, _, _ := post(t, c, srv.URL, "/runs/alpha/run-1/cancel", url.Values{"csrf": {csrf + "0"}}); code != http.StatusForbidden {
		t.Errorf("cancel with a wrong CSRF token: %d", code)
	}
	if code, _, _ := post(t, c, srv.URL, "/runs/alpha/run-1/cancel", url.Values{"csrf": {csrf}}, "Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site"); code != http.StatusForbidden {
		t.Errorf("cross-site cancel: %d", code)
	}
	if code, _, _ := post(t, c, srv.URL, "/runs/beta/run-1/cancel", url.Values{"csrf": {csrf}}); code != http.StatusNotFound {
		t.Errorf("cancel of a run under another pipeline: %d, want 404", code)
	}
	if code, _, _ := post(t, c, srv.URL, "/runs/alpha/run-1/retry", url.Values{"csrf": {csrf}}); code != http.StatusConflict {
		t.Errorf("retry of a running run: %d, want 409", code)
	}
	if st, _ := store.Run(t.Context(), "run-1"); st.Status != runstore.StatusRunning {
		t.Fatalf("run is %s before the real cancel", st.Status)
	}
	code, _, resp = post(t, c, srv.URL, "/runs/alpha/run-1/cancel", url.Values{"csrf": {csrf}}, "Sec-Fetch-Site", "same-origin")
	if code != http.StatusSeeOther || resp.Header.Get("Location") != "/runs/alpha/run-1?notice=canceled" {
		t.Fatalf("cancel: %d to %q", code, resp.Header.Get("Location"))
	}
	if _, stop, _ := store.Status(t.Context(), "run-1"); !strings.Contains(stop, "web UI") {
		t.Errorf("cancel not recorded: stop reason %q", stop)
	}

	code, _, resp = post(t, c, srv.URL, "/runs/alpha/done-1/retry", url.Values{"csrf": {csrf}})
	if code != http.StatusSeeOther || resp.Header.Get("Location") != "/runs/alpha/done-1?notice=retried" {
		t.Fatalf("retry: %d to %q", code, resp.Header.Get("Location"))
	}
	st, err := store.Run(t.Context(), "done-1")
	if err != nil || st.Status != runstore.StatusRunning || st.Failed != 0 || st.Done != 1 {
		t.Errorf("retried run: %+v, %v; want it running again without its failed item", st, err)
	}
	pending, err := asynq.NewInspectorFromRedisClient(rdb).ListPendingTasks(worker.DefaultQueue)
	if err != nil || len(pending) != 1 || pending[0].Type != "run:start" {
		t.Errorf("want one run:start task enqueued, got %v, %v", pending, err)
	}

	if code, _, resp := post(t, c, srv.URL, "/logout", url.Values{"csrf": {csrf}}); code != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Set-Cookie"), "Max-Age=0") {
		t.Errorf("logout: %d %s", code, resp.Header.Get("Set-Cookie"))
	}
	if code, _, _ := post(t, c, srv.URL, "/runs/alpha/done-1/cancel", url.Values{"csrf": {csrf}}); code != http.StatusForbidden {
		t.Errorf("cancel after logout: %d, want 403", code)
	}
}
