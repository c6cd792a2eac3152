package main

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/threadmill/threadmill/internal/hostile"
	"github.com/threadmill/threadmill/internal/redistest"
	"github.com/threadmill/threadmill/internal/syncbuf"
	"github.com/threadmill/threadmill/results"
	"github.com/threadmill/threadmill/runstore"
)

// envChromium names a Chromium or Chrome binary for the browser test;
// default: chromium (Debian's package), chromium-browser or google-chrome
// on the PATH.
const envChromium = "THREADMILL_CHROMIUM"

// envScreenshots is the directory the browser test saves its screenshots
// in; default: the test's temporary directory.
const envScreenshots = "THREADMILL_SCREENSHOTS"

// chromiumPath finds a Chromium binary, "" when there is none.
func chromiumPath() string {
	if p := os.Getenv(envChromium); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// startUICmd runs `threadmill ui` in process until the test ends and
// returns its base URL.
func startUICmd(t *testing.T, args ...string) string {
	t.Helper()
	ctx, stop := context.WithCancel(t.Context())
	var out, errb syncbuf.Buffer
	code := make(chan int, 1)
	go func() {
		code <- execute(ctx, append([]string{"ui", "--addr", "127.0.0.1:0", "--log-level", "warn"}, args...), &out, &errb)
	}()
	t.Cleanup(func() {
		stop()
		select {
		case c := <-code:
			if c != exitOK {
				t.Errorf("ui exited %d\n%s", c, errb.String())
			}
		case <-time.After(time.Minute):
			t.Error("ui did not stop within a minute")
		}
	})
	serving := regexp.MustCompile(`serving (http://\S+)/ `)
	var base string
	pollUntil(t, "the ui to serve", time.Minute, func() bool {
		if m := serving.FindStringSubmatch(errb.String()); m != nil {
			base = m[1]
		}
		return base != ""
	})
	return base
}

// The web UI in a real browser (headless Chromium), over real runs of the
// embedded runner against the simulator: a finished run with a refused
// item, and a run in flight on Redis whose progress the page follows.
func TestUIInABrowser(t *testing.T) {
	chrome := chromiumPath()
	if chrome == "" {
		t.Skip("no Chromium binary (chromium, chromium-browser or google-chrome on the PATH, or " + envChromium + "): install Debian's chromium package (apt-get install chromium; .ci/run does) to run the browser test")
	}
	shots := os.Getenv(envScreenshots)
	if shots == "" {
		shots = t.TempDir()
	}
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}

	unsetRunnerEnv(t)
	_, front := startHostileRunnerSim(t)
	dir := t.TempDir()
	root := filepath.Join(dir, "results")
	file := writeRunnerPipeline(t, dir, "brief", corpusPipeline("brief", 4))

	// A finished run: validate refuses the third summary.
	const refusal = "prompt refused by the content policy"
	refused := front.Add(&hostile.Rule{Method: http.MethodPost, Path: hostile.Validate, Skip: 2, Times: 1,
		Do: hostile.Respond(http.StatusBadRequest, `{"message":"`+refusal+`"}`)})
	code, stdout, stderr := runnerCLI(t.Context(), "run", "--progress", "none", "--results", root, "--run-id", "brief-done", file)
	if code != exitItemsFailed || refused.Hits() != 1 {
		t.Fatalf("run: exit %d (want 3), %d refusals\n%s\n%s", code, refused.Hits(), stdout, stderr)
	}
	var digest string
	for _, it := range readResultItems(t, filepath.Join(root, "brief", "brief-done", results.ResultsFile)) {
		if it.Step == "digest" {
			digest = it.Output
		}
	}
	if digest == "" {
		t.Fatal("the finished run has no digest")
	}

	// A run in flight on Redis: every validate waits for the test's word.
	rs := redistest.Start(t)
	gate, open := make(chan struct{}, corpusDocs+1), make(chan struct{})
	opened := false
	openGate := func() {
		if !opened {
			opened = true
			close(open)
		}
	}
	front.Add(&hostile.Rule{Method: http.MethodPost, Path: hostile.Validate, Do: func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		select {
		case <-gate:
		case <-open:
		case <-r.Context().Done():
			return
		}
		next.ServeHTTP(w, r)
	}})
	liveDone := make(chan int, 1)
	go func() {
		code, _, _ := runnerCLI(t.Context(), "run", "--progress", "none", "--redis", rs.URL(), "--results", root, "--run-id", "brief-live", file)
		liveDone <- code
	}()
	t.Cleanup(func() {
		openGate()
		select {
		case <-liveDone:
		case <-time.After(2 * time.Minute):
			t.Error("the live run did not end within two minutes")
		}
	})
	store := runstore.New(rs.Client(t), "")
	pollUntil(t, "the live run to be planned", time.Minute, func() bool {
		st, err := store.Run(t.Context(), "brief-live")
		return err == nil && st.Status == runstore.StatusRunning && st.Total == corpusDocs
	})

	base := startUICmd(t, "--results", root, "--redis", rs.URL())

	alloc, cancelAlloc := chromedp.NewExecAllocator(t.Context(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome), chromedp.NoSandbox, chromedp.WindowSize(1280, 900))...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(alloc, chromedp.WithLogf(t.Logf))
	defer cancelBrowser()
	bctx, cancelTimeout := context.WithTimeout(bctx, 3*time.Minute)
	defer cancelTimeout()
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}
	shot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(shots, name), png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot %s", filepath.Join(shots, name))
	}

	// The finished run: the report a person reads, the refused item's error.
	do("the finished run's page",
		chromedp.Navigate(base+"/runs/brief/brief-done"),
		chromedp.WaitVisible(chromedp.CSS("#report")),
	)
	report, items := text("#report"), text("table.items")
	shot("run-finished.png")
	// The first Tab reaches the skip link: the page works from a keyboard.
	do("a Tab", chromedp.KeyEvent("\t"))
	focused, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.activeElement.textContent`))
	if err != nil {
		t.Fatal(err)
	}
	// The digest's first line, as Markdown renders it (without a list's "- ").
	first, _, _ := strings.Cut(digest, "\n")
	want := strings.Fields(strings.TrimPrefix(first, "- "))
	if !strings.Contains(strings.Join(strings.Fields(report), " "), strings.Join(want[:min(8, len(want))], " ")) {
		t.Errorf("the report shows no digest %q:\n%s", digest, report)
	}
	if !strings.Contains(items, refusal) || !strings.Contains(items, "failed") {
		t.Errorf("the items table shows no refused item:\n%s", items)
	}
	if focused != "Skip to content" {
		t.Errorf("first Tab focuses %q, want the skip link", focused)
	}
	// An item's output is one click away (the first succeeded item's: which
	// summary validate refused depends on the order the requests came in).
	do("an item's page",
		chromedp.Click(chromedp.CSS(`table.items tbody tr.state-succeeded a`)),
		chromedp.WaitVisible(chromedp.CSS("pre.output")),
	)
	h1, output := text("h1"), text("pre.output")
	if !strings.HasPrefix(h1, "Item ") || !strings.Contains(h1, ": summarize") || strings.TrimSpace(output) == "" {
		t.Errorf("item page: %q with output %q", h1, output)
	}

	// The run in flight: its progress moves on the open page.
	do("the live run's page",
		chromedp.Navigate(base+"/runs/brief/brief-live"),
		chromedp.WaitVisible(chromedp.CSS("#run-items")),
	)
	before := text("#run-items")
	if before != "0/34" {
		t.Errorf("live run before any item: %q, want 0/34", before)
	}
	for range 5 {
		gate <- struct{}{}
	}
	// The summary and the usage per step follow, without a reload.
	if _, err := chromedp.Run(bctx, chromedp.Poll[chromedp.Void](`parseInt(document.getElementById("run-items").textContent, 10) >= 5 &&
		parseInt(document.querySelector('tr[data-step="summarize"] [data-field="succeeded"]').textContent, 10) >= 5`,
		chromedp.WithPollingTimeout(time.Minute))); err != nil {
		t.Fatalf("progress did not move on the open page: %v (shows %q)", err, text("#run-items"))
	}
	shot("run-live.png")
	do("the runs page",
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-run="brief/brief-live"]`)),
	)
	rows := text("table.runs")
	// Every control of the page has a label a screen reader announces.
	unlabeled, err := chromedp.Run(bctx, chromedp.Evaluate[int](`[...document.querySelectorAll("input:not([type=hidden]), select, progress")]
		.filter(e => e.labels.length === 0 && !e.getAttribute("aria-label")).length`))
	if err != nil || unlabeled != 0 {
		t.Errorf("runs page: %d controls without a label (%v)", unlabeled, err)
	}
	do("a phone's screen", chromedp.EmulateViewport(390, 844))
	shot("runs-phone.png")
	do("a desktop's screen", chromedp.EmulateViewport(1280, 900))
	if !strings.Contains(rows, "brief-done") || !strings.Contains(rows, "running") {
		t.Errorf("runs page:\n%s", rows)
	}

	// Once the run ends, its open page reloads with the report.
	do("back to the live run", chromedp.Navigate(base+"/runs/brief/brief-live"), chromedp.WaitVisible(chromedp.CSS("#run-items")))
	openGate()
	do("the live run to finish on its page", chromedp.WaitVisible(chromedp.CSS("#report")))
	status := text(`[data-field="status"]`)
	shot("run-live-finished.png")
	if status != "succeeded" {
		t.Errorf("finished live run: status %q", status)
	}
	if code := <-liveDone; code != exitOK {
		t.Errorf("live run exit %d", code)
	}
	liveDone <- exitOK // for the cleanup
}
