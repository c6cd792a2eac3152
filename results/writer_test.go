package results

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/workspace"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

var t0 = time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)

func ptr[T any](v T) *T { return &v }

// fixtureItems is a small weekly run: three map items (one failed, one
// skipped) and a reduce item.
func fixtureItems() []Item {
	req := func(text string) []workspace.ChatRequest {
		return []workspace.ChatRequest{{
			Messages:  []workspace.Message{workspace.UserText(text)},
			MaxTokens: ptr(400),
		}}
	}
	art := func(id, name string) *pipelines.ArtifactRef {
		return &pipelines.ArtifactRef{ID: id, Name: name, Type: "Document", Folder: "Support/Tickets", UpdatedAt: t0.Add(-48 * time.Hour)}
	}
	return []Item{
		{
			Step: "summarize", Key: "summarize/0001", Index: 0,
			Artifact: art("artifact_a1", "ticket-1042.md"), ArtifactIDs: []string{"artifact_a1"},
			Requests: req("Summarize ticket-1042.md in three bullets."),
			State:    StateSucceeded, Output: "- Login fails on Safari\n- Cookie <SameSite> issue\n- Fixed in 4.2",
			Outputs: []string{"- Login fails on Safari\n- Cookie <SameSite> issue\n- Fixed in 4.2"},
			Usage:   workspace.Usage{InputTokens: 812, OutputTokens: 41}, StopReason: "end_turn",
			Attempts: 1, LatencyMS: 1840, ThreadID: "thread_1", InteractionIDs: []string{"int_1"},
			StartedAt: t0.Add(time.Second), FinishedAt: t0.Add(2840 * time.Millisecond),
		},
		{
			Step: "summarize", Key: "summarize/0002", Index: 1,
			Artifact: art("artifact_a2", "ticket-1043.md"), ArtifactIDs: []string{"artifact_a2"},
			Requests: req("Summarize ticket-1043.md in three bullets."),
			State:    StateFailed, Attempts: 1, LatencyMS: 12,
			Error:     "validate: 400 Bad Request from POST /api/v1/app/chat/validate: messages[0].content is empty",
			StartedAt: t0.Add(time.Second), FinishedAt: t0.Add(1012 * time.Millisecond),
		},
		{
			Step: "summarize", Key: "summarize/0003", Index: 2,
			Artifact: art("artifact_a3", "ticket-1044.md"), ArtifactIDs: []string{"artifact_a3"},
			Requests: req("Summarize ticket-1044.md in three bullets."),
			State:    StateSkipped, Error: "token budget of 2,000 spent",
		},
		{
			Step: "brief", Key: "brief/0001", Index: 0, ArtifactIDs: []string{"artifact_hb"},
			Requests: req("Write this week's support brief from these summaries: ..."),
			State:    StateSucceeded, Output: "## Support brief\n\nOne login issue, fixed & shipped.",
			Outputs: []string{"## Support brief\n\nOne login issue, fixed & shipped."},
			Usage:   workspace.Usage{InputTokens: 950, OutputTokens: 120}, StopReason: "end_turn",
			Attempts: 3, LatencyMS: 5210, ThreadID: "thread_2", InteractionIDs: []string{"int_7"},
			StartedAt: t0.Add(4 * time.Second), FinishedAt: t0.Add(9210 * time.Millisecond),
		},
	}
}

func fixtureRun() Run {
	return Run{
		PipelineHash: "9f2c1e",
		FireTime:     ptr(t0),
		WindowStart:  ptr(t0.Add(-7 * 24 * time.Hour)),
		WindowEnd:    ptr(t0),
		StartedAt:    t0,
		FinishedAt:   t0.Add(9500 * time.Millisecond),
		ReportStep:   "brief",
		Steps:        []StepUsage{{Step: "summarize"}, {Step: "brief"}},
	}
}

func writeFixture(t *testing.T, root, runID string) string {
	t.Helper()
	w, err := Create(root, "weekly-support-brief", runID)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	for _, it := range fixtureItems() {
		if err := w.Add(it); err != nil {
			t.Fatal(err)
		}
	}
	dir, err := w.Commit(fixtureRun(), fixtureItems()[3].Output)
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestGolden(t *testing.T) {
	root := t.TempDir()
	dir := writeFixture(t, root, "weekly-support-brief-20260105T090000Z")
	if want := filepath.Join(root, "weekly-support-brief", "weekly-support-brief-20260105T090000Z"); dir != want {
		t.Fatalf("dir = %s, want %s", dir, want)
	}
	for _, name := range []string{RunFile, ResultsFile, ErrorsFile, ReportFile} {
		t.Run(name, func(t *testing.T) {
			checkGoldenFile(t, filepath.Join(dir, name), filepath.Join("testdata", "weekly", name))
		})
	}
}

// checkGoldenFile compares the file at path with the golden file, or
// rewrites the golden file with -update.
func checkGoldenFile(t *testing.T, path, golden string) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from %s:\n--- got\n%s\n--- want\n%s", filepath.Base(path), golden, got, want)
	}
}

func TestRunSummaryAgreesWithItems(t *testing.T) {
	root := t.TempDir()
	dir := writeFixture(t, root, "r1")
	run, err := ReadRun(dir)
	if err != nil {
		t.Fatal(err)
	}
	if run.Status != StatusFailed {
		t.Errorf("status = %q, want %q (a failed and a skipped item)", run.Status, StatusFailed)
	}
	want := map[string]int{StateSucceeded: 2, StateFailed: 1, StateSkipped: 1}
	if fmt.Sprint(run.Counts) != fmt.Sprint(want) || run.Total != 4 {
		t.Errorf("counts = %v total %d, want %v total 4", run.Counts, run.Total, want)
	}
	if run.Usage.Total() != 812+41+950+120 {
		t.Errorf("usage = %+v", run.Usage)
	}
	if run.Retries != 2 {
		t.Errorf("retries = %d, want 2 (one item took 3 attempts)", run.Retries)
	}
	if len(run.Steps) != 2 || run.Steps[0].Step != "summarize" || run.Steps[1].Step != "brief" {
		t.Fatalf("steps = %+v", run.Steps)
	}
	if run.Steps[0].Usage.Total() != 853 || run.Steps[1].Items[StateSucceeded] != 1 {
		t.Errorf("steps = %+v", run.Steps)
	}
	// Every results.jsonl line decodes back to the item that was added.
	lines := readLines(t, filepath.Join(dir, ResultsFile))
	items := fixtureItems()
	if len(lines) != len(items) {
		t.Fatalf("%d lines, want %d", len(lines), len(items))
	}
	for i, l := range lines {
		var got Item
		if err := json.Unmarshal([]byte(l), &got); err != nil {
			t.Fatal(err)
		}
		a, _ := json.Marshal(got)
		b, _ := json.Marshal(items[i])
		if !bytes.Equal(a, b) {
			t.Errorf("line %d round trip:\n%s\n%s", i+1, a, b)
		}
	}
	if errs := readLines(t, filepath.Join(dir, ErrorsFile)); len(errs) != 1 || !strings.Contains(errs[0], `"summarize/0002"`) {
		t.Errorf("errors.jsonl = %q", errs)
	}
}

func TestStatusSucceededAndCallerStatusKept(t *testing.T) {
	root := t.TempDir()
	w, err := Create(root, "p", "ok")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Add(fixtureItems()[0]); err != nil {
		t.Fatal(err)
	}
	dir, err := w.Commit(Run{StartedAt: t0, FinishedAt: t0.Add(time.Second)}, "")
	if err != nil {
		t.Fatal(err)
	}
	run, err := ReadRun(dir)
	if err != nil {
		t.Fatal(err)
	}
	if run.Status != StatusSucceeded {
		t.Errorf("status = %q", run.Status)
	}
	report, _ := os.ReadFile(filepath.Join(dir, ReportFile))
	if !strings.Contains(string(report), "produced no output") {
		t.Errorf("report without text does not say so:\n%s", report)
	}

	w, err = Create(root, "p", "stopped")
	if err != nil {
		t.Fatal(err)
	}
	dir, err = w.Commit(Run{Status: StatusStopped}, "")
	if err != nil {
		t.Fatal(err)
	}
	if run, err = ReadRun(dir); err != nil || run.Status != StatusStopped || run.Total != 0 {
		t.Errorf("run = %+v, %v", run, err)
	}
	if errs := readLines(t, filepath.Join(dir, ErrorsFile)); len(errs) != 0 {
		t.Errorf("errors.jsonl of an empty run = %q", errs)
	}
}

func TestNothingVisibleBeforeCommit(t *testing.T) {
	root := t.TempDir()
	w, err := Create(root, "p", "run-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Add(fixtureItems()[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(w.Dir()); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("run dir exists before Commit: %v", err)
	}
	if names := visible(t, filepath.Join(root, "p")); len(names) != 0 {
		t.Fatalf("visible entries before Commit: %v", names)
	}
	if _, err := w.Commit(Run{}, "x"); err != nil {
		t.Fatal(err)
	}
	if names := visible(t, filepath.Join(root, "p")); fmt.Sprint(names) != "[latest run-1]" {
		t.Fatalf("entries after Commit: %v", names)
	}
	if hidden := hiddenEntries(t, filepath.Join(root, "p")); len(hidden) != 0 {
		t.Fatalf("temporary entries left after Commit: %v", hidden)
	}
	if err := w.Add(fixtureItems()[0]); err == nil {
		t.Fatal("Add after Commit succeeded")
	}
	if err := w.Abort(); err != nil {
		t.Fatalf("Abort after Commit: %v", err)
	}
	if _, err := os.Stat(filepath.Join(w.Dir(), RunFile)); err != nil {
		t.Fatalf("Abort after Commit removed the run: %v", err)
	}
}

func TestAbortRemovesEverything(t *testing.T) {
	root := t.TempDir()
	w, err := Create(root, "p", "run-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Add(fixtureItems()[1]); err != nil {
		t.Fatal(err)
	}
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(filepath.Join(root, "p"))
	if len(entries) != 0 {
		t.Fatalf("entries left after Abort: %v", entries)
	}
	if _, err := w.Commit(Run{}, ""); err == nil {
		t.Fatal("Commit after Abort succeeded")
	}
}

// A second attempt of the same run replaces the first atomically: a reader
// polling run.json during the replacement always finds a complete file.
func TestCommitReplacesOlderAttemptAtomically(t *testing.T) {
	root := t.TempDir()
	const id = "run-1"
	dir := writeFixture(t, root, id)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var readerErr error
	var reads int
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := ReadRun(dir); err != nil {
				readerErr = err
				return
			}
			reads++
		}
	}()
	for attempt := range 20 {
		w, err := Create(root, "weekly-support-brief", id)
		if err != nil {
			t.Fatal(err)
		}
		it := fixtureItems()[0]
		it.Output = fmt.Sprintf("attempt %d", attempt)
		if err := w.Add(it); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Commit(Run{}, it.Output); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if readerErr != nil {
		t.Fatalf("a reader saw a missing or partial run.json after %d reads: %v", reads, readerErr)
	}
	lines := readLines(t, filepath.Join(dir, ResultsFile))
	if len(lines) != 1 || !strings.Contains(lines[0], `"attempt 19"`) {
		t.Fatalf("results.jsonl after 20 attempts = %q", lines)
	}
	if hidden := hiddenEntries(t, filepath.Join(root, "weekly-support-brief")); len(hidden) != 0 {
		t.Fatalf("old attempts left behind: %v", hidden)
	}
}

func TestLatestNeverMovesBackwards(t *testing.T) {
	root := t.TempDir()
	commit := func(id string, fire time.Time) {
		t.Helper()
		w, err := Create(root, "p", id)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Commit(Run{FireTime: &fire, StartedAt: time.Now()}, ""); err != nil {
			t.Fatal(err)
		}
	}
	latest := func() string {
		t.Helper()
		d, err := LatestDir(root, "p")
		if err != nil {
			t.Fatal(err)
		}
		return filepath.Base(d)
	}
	if _, err := LatestDir(root, "p"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("LatestDir before any run: %v", err)
	}
	commit("week-2", t0.Add(7*24*time.Hour))
	if got := latest(); got != "week-2" {
		t.Fatalf("latest = %s", got)
	}
	commit("week-1", t0) // a backfill of an earlier week
	if got := latest(); got != "week-2" {
		t.Fatalf("latest moved back to %s", got)
	}
	commit("week-3", t0.Add(14*24*time.Hour))
	if got := latest(); got != "week-3" {
		t.Fatalf("latest = %s", got)
	}
	if run, err := ReadRun(filepath.Join(root, "p", LatestLink)); err != nil || run.RunID != "week-3" {
		t.Fatalf("reading through latest: %+v %v", run, err)
	}
}

func TestCreateRejectsBadNames(t *testing.T) {
	root := t.TempDir()
	for _, c := range []struct{ pipeline, run, want string }{
		{"", "r", "empty pipeline name"},
		{"p", "", "empty run id"},
		{"p", "../x", "dot"},
		{"p", "x/../y", "slash"},
		{"p", ".hidden", "dot"},
		{"a/b", "r", "slash"},
		{"p", "latest", "reserved"},
		{"p", strings.Repeat("x", 201), "longer than 200"},
	} {
		_, err := Create(root, c.pipeline, c.run)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Create(%q, %q) = %v, want an error containing %q", c.pipeline, c.run, err, c.want)
		}
	}
	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Errorf("rejected names created %v", entries)
	}
}

func TestAddRejectsUnknownState(t *testing.T) {
	w, err := Create(t.TempDir(), "p", "r")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	it := fixtureItems()[0]
	it.State = "done"
	if err := w.Add(it); err == nil || !strings.Contains(err.Error(), `unknown state "done"`) {
		t.Fatalf("Add = %v", err)
	}
}

func TestCreateInUnwritablePlace(t *testing.T) {
	root := t.TempDir()
	// The results root is a regular file: nothing can be created under it.
	file := filepath.Join(root, "results")
	if err := os.WriteFile(file, []byte("not a directory"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Create(file, "p", "r")
	if err == nil || !strings.Contains(err.Error(), filepath.Join(file, "p")) || !errors.Is(err, syscall.ENOTDIR) {
		t.Fatalf("Create under a file = %v, want ENOTDIR naming %s", err, filepath.Join(file, "p"))
	}

	if os.Geteuid() == 0 {
		t.Log("running as root: permission bits are not enforced, read-only directory case skipped")
		return
	}
	ro := filepath.Join(root, "ro")
	if err := os.MkdirAll(filepath.Join(ro, "p"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(ro, "p"), 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(filepath.Join(ro, "p"), 0o755) })
	_, err = Create(ro, "p", "r")
	if err == nil || !strings.Contains(err.Error(), filepath.Join(ro, "p")) || !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("Create in a read-only dir = %v", err)
	}
}

// failingFile fails writes once more than limit bytes were written, like a
// full disk.
type failingFile struct {
	*os.File
	limit   int
	written int
}

func (f *failingFile) Write(p []byte) (int, error) {
	if f.written+len(p) > f.limit {
		return 0, &fs.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
	}
	f.written += len(p)
	return f.File.Write(p)
}

func withDiskLimit(t *testing.T, limit int) {
	t.Helper()
	orig := openFile
	openFile = func(name string) (fileWriter, error) {
		f, err := orig(name)
		if err != nil {
			return nil, err
		}
		return &failingFile{File: f.(*os.File), limit: limit}, nil
	}
	t.Cleanup(func() { openFile = orig })
}

// A full disk while streaming items fails Add (or Commit, when the error is
// still in the buffer) with the file's path, and leaves nothing behind.
func TestDiskFullLeavesNothing(t *testing.T) {
	for _, c := range []struct {
		name  string
		items int
		limit int
	}{
		{"during Add", 400, 128 << 10}, // overflows the 64 KiB buffer while adding
		{"at Commit", 1, 100},          // only the final flush fails
		{"writing run.json", 0, 10},    // the empty jsonl files fit; run.json does not
	} {
		t.Run(c.name, func(t *testing.T) {
			withDiskLimit(t, c.limit)
			root := t.TempDir()
			w, err := Create(root, "p", "r")
			if err != nil {
				t.Fatal(err)
			}
			var addErr error
			it := fixtureItems()[0]
			it.Output = strings.Repeat("x", 1024)
			for range c.items {
				if addErr = w.Add(it); addErr != nil {
					break
				}
			}
			_, commitErr := w.Commit(Run{}, "report")
			err = cmpErr(addErr, commitErr)
			if err == nil {
				t.Fatal("no error on a full disk")
			}
			if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), filepath.Join(root, "p")) {
				t.Fatalf("error = %v, want ENOSPC naming the file", err)
			}
			entries, _ := os.ReadDir(filepath.Join(root, "p"))
			if len(entries) != 0 {
				t.Fatalf("left behind after a disk error: %v", entries)
			}
		})
	}
}

func cmpErr(a, b error) error {
	if a != nil {
		if b == nil {
			return errors.New("Commit succeeded after Add failed")
		}
		return a
	}
	return b
}

// The Writer's memory does not grow with the number of items: 20,000 items
// of 2 KiB each (40 MiB written) leave the heap within a few MiB.
func TestWriterMemoryFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 40 MiB")
	}
	w, err := Create(t.TempDir(), "p", "r")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	it := fixtureItems()[1] // failed: written to both files, kept in the report's list
	it.Output = strings.Repeat("y", 2048)
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	for i := range 20000 {
		it.Key = fmt.Sprintf("summarize/%05d", i)
		if err := w.Add(it); err != nil {
			t.Fatal(err)
		}
	}
	after := heap()
	if after > before && after-before > 4<<20 {
		t.Fatalf("heap grew by %d KiB over 20,000 items", (after-before)>>10)
	}
	t.Logf("heap before %d KiB, after 20,000 items %d KiB", before>>10, after>>10)
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.TrimSuffix(string(b), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func visible(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names
}

func hiddenEntries(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	return names
}

// A report streamed in pieces with AppendReport is the report given whole
// to Commit: same bytes, the same trimming, and nothing else left in the
// run directory.
func TestAppendReportStreamsTheSameReport(t *testing.T) {
	root := t.TempDir()
	commit := func(id string, pieces []string, tail string) (string, []byte) {
		t.Helper()
		w, err := Create(root, "p", id)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pieces {
			if err := w.AppendReport(p); err != nil {
				t.Fatal(err)
			}
		}
		dir, err := w.Commit(Run{StartedAt: t0, FinishedAt: t0.Add(time.Second)}, tail)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(dir, ReportFile))
		if err != nil {
			t.Fatal(err)
		}
		return dir, bytes.ReplaceAll(b, []byte(id), []byte("RUN"))
	}
	whole := "## a\n\nfirst  text\n\n## b\n\n  second\n\n## c\n\nthird"
	_, want := commit("whole", nil, "\n\n"+whole+"\n \n")
	dir, got := commit("pieces", []string{" \n", "\n## a\n\nfirst", "  text\n\n", "", "## b\n\n  second", "\n\n", "## c\n\nthird\n\n", "  \n"}, "")
	if !bytes.Equal(got, want) {
		t.Errorf("streamed report differs:\n%s\nwant:\n%s", got, want)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("run directory keeps %s", e.Name())
		}
	}
	_, got = commit("split", []string{"## a\n\nfirst  text\n\n## b\n\n  second"}, "## c\n\nthird")
	if !bytes.Equal(got, want) {
		t.Errorf("streamed report followed by Commit's text differs:\n%s\nwant:\n%s", got, want)
	}
	if _, got = commit("blank", []string{" ", "\n\n"}, ""); !bytes.Contains(got, []byte("produced no output")) {
		t.Errorf("a report of white space does not say it is empty:\n%s", got)
	}
}
