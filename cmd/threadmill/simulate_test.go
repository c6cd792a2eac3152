package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/threadmill/threadmill/examples"
	"github.com/threadmill/threadmill/internal/syncbuf"
	"github.com/threadmill/threadmill/workspace"
	"github.com/threadmill/threadmill/workspace/simulator"
)

// startSimulateCmd runs `threadmill simulate args...` in-process and waits
// for its banner. The returned stop func cancels the command and returns its
// exit code.
func startSimulateCmd(t *testing.T, args ...string) (banner string, stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	var stdout, stderr syncbuf.Buffer
	code := make(chan int, 1)
	go func() {
		code <- execute(ctx, append([]string{"simulate", "--addr", "127.0.0.1:0"}, args...), &stdout, &stderr)
	}()
	deadline := time.After(10 * time.Second)
	for !strings.Contains(stdout.String(), "curl ") {
		select {
		case c := <-code:
			cancel()
			t.Fatalf("simulate exited with %d before its banner; stderr: %s", c, stderr.String())
		case <-deadline:
			cancel()
			t.Fatalf("no banner after 10s; stdout %q stderr %q", stdout.String(), stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	stopped := false
	var exit int
	stop = func() int {
		if !stopped {
			stopped = true
			cancel()
			select {
			case exit = <-code:
			case <-time.After(10 * time.Second):
				t.Fatal("simulate did not stop within 10s of cancellation")
			}
		}
		return exit
	}
	t.Cleanup(func() { stop() })
	return stdout.String(), stop
}

var baseURLRe = regexp.MustCompile(`base URL:\s+(http://\S+)`)

func TestSimulateServesEmbeddedCorpus(t *testing.T) {
	t.Setenv("SIM_TEST_TOKEN", "tok-9f8e7d")
	banner, stop := startSimulateCmd(t, "--token-env", "SIM_TEST_TOKEN", "--project", "proj_cli")
	for _, want := range []string{"project:   proj_cli", "org:       default", "34 documents in 7 folders from examples/artifacts (embedded)",
		"Bearer token from $SIM_TEST_TOKEN", "/_sim/counters"} {
		if !strings.Contains(banner, want) {
			t.Errorf("banner lacks %q:\n%s", want, banner)
		}
	}
	if strings.Contains(banner, "tok-9f8e7d") {
		t.Fatal("banner prints the token")
	}
	m := baseURLRe.FindStringSubmatch(banner)
	if m == nil {
		t.Fatalf("no base URL in banner:\n%s", banner)
	}
	base := m[1]

	// The printed curl line works as printed.
	var line string
	for l := range strings.Lines(banner) {
		if strings.HasPrefix(strings.TrimSpace(l), "curl ") {
			line = strings.TrimSpace(l)
		}
	}
	if _, err := exec.LookPath("curl"); err == nil {
		out, err := exec.CommandContext(t.Context(), "bash", "-c", line).Output()
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		var page workspace.Page[workspace.Artifact]
		if err := json.Unmarshal(out, &page); err != nil || len(page.Data) != 5 || !page.HasNextPage || page.Data[0].Type != "Document" {
			t.Fatalf("curl answered %s (%v)", out, err)
		}
	} else {
		t.Log("curl not installed; skipping the printed curl line")
	}

	// Without the token the API refuses; with it, it answers.
	req, _ := http.NewRequestWithContext(t.Context(), "GET", base+"/api/v1/app/me", nil)
	req.Header.Set("x-org", "default")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("without token: %d", resp.StatusCode)
	}
	req.Header.Set("Authorization", "Bearer tok-9f8e7d")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"org_id"`) {
		t.Fatalf("with token: %d %s", resp.StatusCode, body)
	}

	if code := stop(); code != exitOK {
		t.Fatalf("exit code after cancellation = %d", code)
	}
	if _, err := http.Get(base + "/api/health"); err == nil {
		t.Fatal("server still answers after shutdown")
	}
}

func TestSimulateArtifactsDirAndKnobs(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "Notes"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{
		"readme.md":      "The team ships a release every second Tuesday of the month.",
		"Notes/a.txt":    "Alpha notes describe the first customer call in detail.",
		"Notes/skip.bin": "binary",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	banner, _ := startSimulateCmd(t, "--artifacts", dir, "--async", "--latency", "10ms", "--fault-429", "1", "--retry-after", "3s")
	if !strings.Contains(banner, "2 documents in 1 folders from "+dir) || !strings.Contains(banner, "mode:      async, latency 10ms") ||
		!strings.Contains(banner, "none (set WORKSPACE_API_TOKEN") {
		t.Fatalf("banner:\n%s", banner)
	}
	base := baseURLRe.FindStringSubmatch(banner)[1]
	req, _ := http.NewRequestWithContext(t.Context(), "GET", base+"/api/v1/app/me", nil)
	req.Header.Set("x-org", "default")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "3" {
		t.Fatalf("--fault-429 1: %d Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}

func TestSimulateFlagErrors(t *testing.T) {
	t.Setenv("SIM_TEST_UNSET", "")
	empty := t.TempDir()
	if err := os.MkdirAll(filepath.Join(empty, "Folder"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(empty, "Folder", "image.png"), []byte("png"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		msg  string
	}{
		{[]string{"--fault-500", "1.5"}, "--fault-500 must be a rate in [0, 1]"},
		{[]string{"--fault-5xx", "0.6", "--fault-429", "0.6"}, "their sum must not exceed 1"},
		{[]string{"--latency", "-1s"}, "--latency must not be negative"},
		{[]string{"--rate-limit", "-2"}, "--rate-limit must be >= 0"},
		{[]string{"--artifacts", "/nonexistent/threadmill"}, "--artifacts: stat /nonexistent/threadmill"},
		{[]string{"--project", " "}, "--project must not be empty"},
		{[]string{"--token-env", "SIM_TEST_UNSET"}, "environment variable SIM_TEST_UNSET is not set or empty"},
		{[]string{"--latency", "soon"}, `invalid argument "soon" for "--latency"`},
		{[]string{"extra"}, `unknown command "extra"`},
		{[]string{"--fault-cut", "NaN"}, "--fault-cut must be a rate in [0, 1], got NaN"},
		{[]string{"--rate-limit", "NaN"}, "--rate-limit must be >= 0 requests per second, got NaN"},
		{[]string{"--addr", "bogus"}, `--addr "bogus": want host:port`},
		{[]string{"--addr", "127.0.0.1:99999"}, `port "99999" is not a number in [0, 65535]`},
		{[]string{"--artifacts", empty}, "no .md, .markdown, .txt or .text files found"},
		{[]string{"--compat", "routes=old"}, "--compat: compat switch routes=old: want one of current | project"},
		{[]string{"--compat", "chat-usage=maybe"}, "--compat: compat switch chat-usage=maybe: want one of with | without"},
		{[]string{"--compat", "max-page-size=-3"}, "--compat: compat switch max-page-size=-3: want an integer >= 1"},
		{[]string{"--compat", "paging=cursor"}, `--compat: compat switch "paging=cursor": unknown key "paging"`},
		{[]string{"--async", "--compat", "create=blocking"}, "--async contradicts --compat create=blocking"},
		{[]string{"--compat", "profile=ancient"}, "--compat: compat switch profile=ancient: want one of 2025-11 | 2025-12 | newest | oldest"},
	}
	for _, tc := range cases {
		var stdout, stderr bytes.Buffer
		args := append([]string{"simulate", "--addr", "127.0.0.1:0"}, tc.args...)
		code := execute(t.Context(), args, &stdout, &stderr)
		if code != exitUsage || !strings.Contains(stderr.String(), tc.msg) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d mentioning %q", tc.args, code, stderr.String(), exitUsage, tc.msg)
		}
	}
}

// The standalone simulator dates the corpus over the two weeks before it
// started, so the latest completed weekly window holds part of it.
func TestSpreadDatesCoverTheLastWeeklyWindow(t *testing.T) {
	sim := simulator.New(simulator.Config{})
	defer sim.Close()
	if err := sim.AddDir(examples.Artifacts, "."); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 4, 18, 0, 0, 0, time.UTC) // a Friday evening
	if err := spreadDates(sim, now, 14*24*time.Hour); err != nil {
		t.Fatal(err)
	}
	// The weekly Monday 09:00 window last completed: Nov 23 to Nov 30.
	from, to := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC), time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	in, docs := 0, 0
	for _, a := range sim.Artifacts() {
		if a.Type == workspace.ArtifactTypeFolder {
			continue
		}
		docs++
		at, err := time.Parse(time.RFC3339Nano, a.UpdatedAt)
		if err != nil {
			t.Fatal(err)
		}
		if at.Before(now.Add(-14*24*time.Hour)) || at.After(now) {
			t.Errorf("%s updated at %s, outside the two weeks before %s", a.Name, at, now)
		}
		if !at.Before(from) && at.Before(to) {
			in++
		}
	}
	if in < docs/3 || in == docs {
		t.Errorf("%d of %d documents in the last weekly window, want about half", in, docs)
	}
}

// `simulate --compat routes=project` serves the project-scoped routes over
// HTTP, says so in its banner, and a threadmill client detects them.
func TestSimulateCompatRoutesProject(t *testing.T) {
	banner, _ := startSimulateCmd(t, "--compat", "routes=project,finished-stream=close")
	if !strings.Contains(banner, "compat:    routes=project,finished-stream=close") {
		t.Fatalf("banner:\n%s", banner)
	}
	base := baseURLRe.FindStringSubmatch(banner)[1]
	get := func(path string) int {
		req, _ := http.NewRequestWithContext(t.Context(), "GET", base+path, nil)
		req.Header.Set("x-org", "default")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := get("/api/v1/app/thread/t_none"); got != http.StatusNotFound {
		t.Errorf("current route: %d", got)
	}
	c, err := workspace.New(base, workspace.WithOrg("default"), workspace.WithRouteScheme(workspace.RoutesAuto))
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	if s, err := c.CheckRoutes(t.Context(), simulator.DefaultProjectID); err != nil || s != workspace.RoutesProjectScoped {
		t.Fatalf("CheckRoutes = %s, %v", s, err)
	}
}

// `simulate --compat chat-usage=without,max-page-size=25,pagination=cursor`
// serves the three switches over HTTP, and a threadmill client lists every
// artifact through them.
func TestSimulateCompatChatAndPaging(t *testing.T) {
	banner, _ := startSimulateCmd(t, "--compat", "chat-usage=without,max-page-size=25,pagination=cursor")
	if !strings.Contains(banner, "compat:    chat-usage=without,max-page-size=25,pagination=cursor") {
		t.Fatalf("banner:\n%s", banner)
	}
	base := baseURLRe.FindStringSubmatch(banner)[1]
	c, err := workspace.New(base, workspace.WithOrg("default"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	q := workspace.ArtifactQuery{IncludeDescendants: true}
	q.PageSize, q.TotalCount = 25, true
	first, err := c.ListArtifacts(t.Context(), simulator.DefaultProjectID, q)
	if err != nil || first.TotalCount == nil || *first.TotalCount <= 25 {
		t.Fatalf("first page: %+v, %v (want more than one page)", first, err)
	}
	q.PageSize = 0
	n := 0
	for _, err := range c.Artifacts(t.Context(), simulator.DefaultProjectID, q) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != int(*first.TotalCount) {
		t.Errorf("listed %d artifacts, want %d", n, *first.TotalCount)
	}
	resp, err := c.Chat(t.Context(), workspace.ChatRequest{Messages: []workspace.Message{workspace.UserText("Give one-line status.")}})
	if err != nil || resp.Usage != nil || resp.StopReason != "" || resp.Text() == "" {
		t.Errorf("chat: %+v, %v; want an answer without usage or stop_reason", resp, err)
	}
}
