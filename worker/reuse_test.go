package worker_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/threadmill/threadmill/results"
	"github.com/threadmill/threadmill/reuse"
	"github.com/threadmill/threadmill/runstore"
	"github.com/threadmill/threadmill/worker"
	"github.com/threadmill/threadmill/workspace/simulator"
)

// reusePipeline maps then reduces, both steps with reuse: unchanged. The
// thread names carry the run id: they must not defeat reuse.
const reusePipeline = `
version: 1
name: reuse
workspace: { project: proj_test }
defaults: { max_tokens: 120 }
artifacts:
  docs: { folder: "Inbox" }
steps:
  - id: summarize
    for_each: docs
    reuse: unchanged
    thread: { name: "{{ .Run.ID }} {{ .Artifact.Name }}" }
    prompt: "Summarize {{ .Artifact.Name }} in one sentence."
  - id: brief
    needs: [summarize]
    reuse: unchanged
    thread: { name: "brief {{ .Run.ID }}" }
    prompt: |
      Brief from:
      {{ range .Steps.summarize.Items }}- {{ .Output }}
      {{ end }}
`

// runReuse runs the pipeline once with a fresh counter and returns the
// run's state, run.json, result lines and the simulator's counters.
func runReuse(t *testing.T, e *env, runID string, noReuse bool) (*runstore.RunState, *results.Run, []results.Item, simulator.Counters) {
	t.Helper()
	e.sim.ResetCounters()
	p := e.pipeline(reusePipeline)
	if noReuse {
		e.startNoReuse(p, runID)
	} else {
		e.start(p, runID)
	}
	st := e.wait(runID, time.Minute)
	if st.Status != runstore.StatusSucceeded {
		t.Fatalf("run %s: status %q (error %q)", runID, st.Status, st.Error)
	}
	return st, readRun(t, st.ResultDir), readItems(t, resultsFile(st.ResultDir)), e.sim.Counters()
}

func TestReuseUnchangedSendsOnlyWhatChanged(t *testing.T) {
	e := newEnv(t, simulator.Config{})
	e.folder("Inbox", 5)
	e.startWorker()

	_, run1, items1, c := runReuse(t, e, "reuse-1", false)
	if c.InteractionsCreated != 6 || run1.Reused != 0 {
		t.Fatalf("first run: %d interactions, %d reused; want 6 and 0", c.InteractionsCreated, run1.Reused)
	}
	paid := run1.Usage.Total()

	// Nothing changed: nothing is sent, not even a validation.
	_, run2, items2, c := runReuse(t, e, "reuse-2", false)
	if c.InteractionsCreated != 0 || c.Validations != 0 || c.ThreadsCreated != 0 {
		t.Errorf("unchanged corpus: %d interactions, %d validations, %d threads; want none", c.InteractionsCreated, c.Validations, c.ThreadsCreated)
	}
	if run2.Reused != 6 || run2.Usage.Total() != 0 || run2.TokensSaved != paid || run2.Counts[results.StateSucceeded] != 6 {
		t.Errorf("run.json: reused %d, usage %d, saved %d, succeeded %d; want 6, 0, %d, 6", run2.Reused, run2.Usage.Total(), run2.TokensSaved, run2.Counts[results.StateSucceeded], paid)
	}
	for i, it := range items2 {
		if it.ReusedFrom != "reuse-1" || it.Output != items1[i].Output || it.Usage.Total() != 0 || it.ReusedUsage != items1[i].Usage || it.ReuseKey != items1[i].ReuseKey {
			t.Errorf("item %s: reused_from %q, usage %d, reused_usage %+v; want reuse-1's output and usage %+v, no tokens", it.Key, it.ReusedFrom, it.Usage.Total(), it.ReusedUsage, items1[i].Usage)
		}
	}

	// One document changes: its summary is sent again, and the brief,
	// which reads it.
	doc := items1[2].Artifact
	if _, err := e.sim.UpdateArtifactContent(doc.ID, "The warehouse robot jammed twice on Tuesday; the operator asked for a firmware rollback."); err != nil {
		t.Fatal(err)
	}
	_, run3, items3, c := runReuse(t, e, "reuse-3", false)
	if c.InteractionsCreated != 2 || c.Validations != 2 || run3.Reused != 4 {
		t.Errorf("one changed document: %d interactions, %d validations, %d reused; want 2, 2 and 4", c.InteractionsCreated, c.Validations, run3.Reused)
	}
	for _, it := range items3 {
		changed := it.Key == items1[2].Key || it.Step == "brief"
		if changed != (it.ReusedFrom == "") {
			t.Errorf("item %s: reused_from %q (changed: %v)", it.Key, it.ReusedFrom, changed)
		}
		if it.Key != items1[2].Key && it.Step == "summarize" && it.ReusedFrom != "reuse-1" {
			t.Errorf("item %s: reused_from %q, want the run that paid for it, reuse-1", it.Key, it.ReusedFrom)
		}
	}

	// --no-reuse sends everything.
	_, run4, _, c := runReuse(t, e, "reuse-4", true)
	if c.InteractionsCreated != 6 || run4.Reused != 0 {
		t.Errorf("no reuse: %d interactions, %d reused; want 6 and 0", c.InteractionsCreated, run4.Reused)
	}
}

// TestReuseDirStoreIsSharedUnderTheResultsRoot: two workers, each with its
// own Redis (as two embedded runs have), share outputs through a reuse.Dir
// under one results root. Both simulators serve the same corpus, with the
// same update times.
func TestReuseDirStoreIsSharedUnderTheResultsRoot(t *testing.T) {
	root := t.TempDir()
	dir := reuse.NewDir(root, 0)
	seeded := time.Date(2026, 7, 1, 8, 0, 0, 0, time.UTC)
	clock := simulator.Config{Now: func() time.Time { return seeded }}
	first := newEnv(t, clock)
	first.folder("Inbox", 3)
	first.results = root
	first.startWorker(func(c *worker.Config) { c.Reuse = dir })
	_, _, _, c := runReuse(t, first, "dir-1", false)
	if c.InteractionsCreated != 4 {
		t.Fatalf("first run: %d interactions, want 4", c.InteractionsCreated)
	}
	matches, _ := filepath.Glob(filepath.Join(root, "reuse", reuse.DirName, "*", "*.json"))
	if len(matches) != 4 {
		t.Errorf("%d outputs kept under %s, want 4", len(matches), root)
	}

	second := newEnv(t, clock)
	second.folder("Inbox", 3)
	second.results = root
	second.startWorker(func(c *worker.Config) { c.Reuse = reuse.NewDir(root, 0) })
	_, run, _, c := runReuse(t, second, "dir-2", false)
	if c.InteractionsCreated != 0 || run.Reused != 4 {
		t.Errorf("second run: %d interactions, %d reused; want 0 and 4", c.InteractionsCreated, run.Reused)
	}
}

// TestReuseThroughAWindowedFanOut: a step larger than a lookup batch,
// enqueued through a small fan-out window, is reused whole; a changed
// artifact in the middle is the one item sent.
func TestReuseThroughAWindowedFanOut(t *testing.T) {
	e := newEnv(t, simulator.Config{})
	e.folder("Inbox", 300)
	e.startWorker(func(c *worker.Config) { c.FanOutWindow = 40 })
	p := `
version: 1
name: wide
workspace: { project: proj_test }
defaults: { max_tokens: 40 }
limits: { concurrency: 16 }
artifacts:
  docs: { folder: "Inbox" }
steps:
  - id: summarize
    for_each: docs
    reuse: unchanged
    prompt: "Summarize {{ .Artifact.Name }}."
`
	count := func(runID string) (int, *results.Run) {
		e.sim.ResetCounters()
		st := e.wait(e.start(e.pipeline(p), runID), 2*time.Minute)
		if st.Status != runstore.StatusSucceeded {
			t.Fatalf("run %s: %s (%s)", runID, st.Status, st.Error)
		}
		return e.sim.Counters().InteractionsCreated, readRun(t, st.ResultDir)
	}
	if n, _ := count("wide-1"); n != 300 {
		t.Fatalf("first run: %d interactions, want 300", n)
	}
	if n, r := count("wide-2"); n != 0 || r.Reused != 300 {
		t.Errorf("second run: %d interactions, %d reused; want 0 and 300", n, r.Reused)
	}
	a, _ := e.sim.ArtifactByPath("Inbox/doc-0270.md")
	if _, err := e.sim.UpdateArtifactContent(a.ID, "A different document about a broken printer."); err != nil {
		t.Fatal(err)
	}
	if n, r := count("wide-3"); n != 1 || r.Reused != 299 {
		t.Errorf("one changed document: %d interactions, %d reused; want 1 and 299", n, r.Reused)
	}
}
