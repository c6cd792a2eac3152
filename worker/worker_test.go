package worker_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/threadmill/threadmill/results"
	"github.com/threadmill/threadmill/runstore"
	"github.com/threadmill/threadmill/worker"
	"github.com/threadmill/threadmill/workspace"
	"github.com/threadmill/threadmill/workspace/simulator"
)

func TestMain(m *testing.M) {
	if os.Getenv(simulatorEnv) != "" {
		serveSimulator() // the benchmark's child process
		return
	}
	goleak.VerifyTestMain(m,
		// httptest and net/http keep idle connections until the transport is
		// closed; go-redis pools close in Cleanup.
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		// A go-redis pool whose Redis went away probes it once a second
		// until it is closed, and sees the close a second later at most
		// (TestDeadWorkersItemsAreRescued).
		goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial"),
	)
}

const bulkPipeline = `
version: 1
name: bulk
workspace: { project: proj_test }
defaults: { max_tokens: 120 }
limits: { concurrency: 32, max_attempts: 5 }
artifacts:
  docs: { folder: "Inbox" }
steps:
  - id: summarize
    for_each: docs
    prompt: "Summarize {{ .Artifact.Name }} in one sentence: what failed and what the customer asked."
`

func TestBulkEveryItemOneLineUsageMatchesSimulator(t *testing.T) {
	e := newEnv(t, simulator.Config{Async: true, Latency: 5 * time.Millisecond})
	e.folder("Inbox", 200)
	e.startWorker()
	run := e.start(e.pipeline(bulkPipeline), "bulk-1")
	st := e.wait(run, 2*time.Minute)

	if st.Status != runstore.StatusSucceeded {
		t.Fatalf("status %q, want %q (error %q)", st.Status, runstore.StatusSucceeded, st.Error)
	}
	items := readItems(t, resultsFile(st.ResultDir))
	if len(items) != 200 {
		t.Fatalf("results.jsonl has %d lines, want 200", len(items))
	}
	seen := map[string]bool{}
	var in, out int64
	for i, it := range items {
		if it.Index != i {
			t.Errorf("line %d has index %d: results are not in plan order", i, it.Index)
		}
		if seen[it.Key] {
			t.Errorf("item %s appears twice", it.Key)
		}
		seen[it.Key] = true
		if it.State != results.StateSucceeded || it.Output == "" || it.ThreadID == "" || len(it.InteractionIDs) != 1 {
			t.Errorf("item %s: state %q, output %q, thread %q, interactions %v", it.Key, it.State, it.Output, it.ThreadID, it.InteractionIDs)
		}
		if it.Usage.InputTokens == 0 || it.Usage.OutputTokens == 0 {
			t.Errorf("item %s has no usage: %+v", it.Key, it.Usage)
		}
		in += int64(it.Usage.InputTokens)
		out += int64(it.Usage.OutputTokens)
	}
	c := e.sim.Counters()
	if in != c.TokensIn || out != c.TokensOut {
		t.Errorf("usage in results: %d in / %d out; simulator billed %d in / %d out", in, out, c.TokensIn, c.TokensOut)
	}
	if c.InteractionsCreated != 200 {
		t.Errorf("simulator created %d interactions, want 200", c.InteractionsCreated)
	}
	run1 := readRun(t, st.ResultDir)
	if run1.Counts[results.StateSucceeded] != 200 || int64(run1.Usage.InputTokens) != c.TokensIn {
		t.Errorf("run.json: counts %v, usage %+v", run1.Counts, run1.Usage)
	}
	if int64(st.Usage.InputTokens) != c.TokensIn || int64(st.Usage.OutputTokens) != c.TokensOut {
		t.Errorf("run store usage %+v; simulator %d/%d", st.Usage, c.TokensIn, c.TokensOut)
	}
	if _, err := os.Stat(st.ResultDir + "/" + results.ReportFile); err != nil {
		t.Error(err)
	}
	if !strings.HasSuffix(st.ResultDir, "/bulk/bulk-1") {
		t.Errorf("result dir %s, want .../bulk/bulk-1", st.ResultDir)
	}
}

func TestWeeklyMapThenReduceSeesEveryMapOutput(t *testing.T) {
	e := newEnv(t, simulator.Config{Async: true, Latency: 5 * time.Millisecond})
	e.folder("Tickets", 12)
	hb := e.sim.AddArtifact(simulator.ArtifactSpec{Name: "handbook.md", Content: "Escalate refunds above 100 euros to finance within one business day."})
	e.startWorker()
	p := e.pipeline(`
version: 1
name: weekly
workspace: { project: proj_test }
defaults: { max_tokens: 60 }
artifacts:
  tickets: { folder: "Tickets" }
  handbook: { ids: [` + hb.ID + `] }
steps:
  - id: summarize
    for_each: tickets
    prompt: "Summarize {{ .Artifact.Name }}: the failure and the refund asked."
  - id: brief
    needs: [summarize]
    artifacts: [handbook]
    thread: { name: "Weekly brief {{ .Run.ID }}", delete_after: true }
    prompt: |
      Write this week's support brief from these summaries:
      {{ range .Steps.summarize.Items }}- {{ .Artifact.Name }}: {{ .Output }}
      {{ end }}
output: { report: brief }
`)
	run := e.start(p, "weekly-1")
	st := e.wait(run, time.Minute)
	if st.Status != runstore.StatusSucceeded {
		t.Fatalf("status %q (error %q)", st.Status, st.Error)
	}
	items := readItems(t, resultsFile(st.ResultDir))
	if len(items) != 13 {
		t.Fatalf("%d result lines, want 12 summaries and 1 brief", len(items))
	}
	var brief results.Item
	var maps []results.Item
	for _, it := range items {
		switch it.Step {
		case "summarize":
			maps = append(maps, it)
		case "brief":
			brief = it
		}
	}
	if len(maps) != 12 || brief.Key == "" {
		t.Fatalf("%d summaries, brief %q", len(maps), brief.Key)
	}
	if items[12].Step != "brief" {
		t.Errorf("the brief is not the last line: steps are not in pipeline order")
	}
	prompt := brief.Requests[0].Messages[0].Content[0].Text
	for _, m := range maps {
		if m.Output == "" || !strings.Contains(prompt, m.Output) {
			t.Errorf("the brief's prompt lacks the output of %s (%q)", m.Key, m.Output)
		}
		if m.Artifact == nil || !strings.Contains(prompt, m.Artifact.Name) {
			t.Errorf("the brief's prompt lacks the artifact name of %s", m.Key)
		}
	}
	if len(brief.ArtifactIDs) != 1 || brief.ArtifactIDs[0] != hb.ID {
		t.Errorf("brief artifact ids %v, want [%s]", brief.ArtifactIDs, hb.ID)
	}
	report, err := os.ReadFile(st.ResultDir + "/" + results.ReportFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(report), strings.TrimSpace(brief.Output)) {
		t.Errorf("report.md does not contain the brief's output:\n%s", report)
	}
	// thread.delete_after: the brief's thread was deleted at the end.
	c := e.sim.Counters()
	if n := c.Total("DELETE /api/v1/app/thread/{threadId}"); n != 1 {
		t.Errorf("%d thread deletions, want 1 (the brief's thread)", n)
	}
}

func TestValidationFailureIsAttemptedOnceWithServerMessage(t *testing.T) {
	e := newEnv(t, simulator.Config{Async: true})
	e.folder("Inbox", 3)
	e.startWorker()
	p := e.pipeline(`
version: 1
name: invalid
workspace: { project: proj_test }
limits: { max_attempts: 5 }
artifacts:
  docs: { folder: "Inbox" }
steps:
  - id: good
    for_each: docs
    max_tokens: 50
    prompt: "Summarize {{ .Artifact.Name }}."
  - id: bad
    max_tokens: 50000
    prompt: "Write a very long essay."
`)
	run := e.start(p, "invalid-1")
	st := e.wait(run, time.Minute)
	if st.Status != runstore.StatusFailed {
		t.Fatalf("status %q, want %q (a run with a failed item)", st.Status, runstore.StatusFailed)
	}
	if st.Succeeded != 3 || st.Failed != 1 {
		t.Errorf("succeeded %d, failed %d; want 3 and 1", st.Succeeded, st.Failed)
	}
	errs := readItems(t, st.ResultDir+"/"+results.ErrorsFile)
	if len(errs) != 1 {
		t.Fatalf("errors.jsonl has %d lines, want 1", len(errs))
	}
	bad := errs[0]
	if bad.Step != "bad" || bad.State != results.StateFailed || bad.Attempts != 1 {
		t.Errorf("failed item: step %q, state %q, attempts %d; want bad, failed, 1", bad.Step, bad.State, bad.Attempts)
	}
	if !strings.Contains(bad.Error, "400") || !strings.Contains(bad.Error, "max_tokens must be in [1, 32768]") {
		t.Errorf("error %q lacks the server's message", bad.Error)
	}
	c := e.sim.Counters()
	if c.ValidationsFailed != 1 {
		t.Errorf("simulator saw %d failed validations, want exactly 1 (no retry)", c.ValidationsFailed)
	}
	if c.InteractionsCreated != 3 {
		t.Errorf("%d interactions created, want 3: the invalid request must never be sent", c.InteractionsCreated)
	}
}

func TestBudgetStopsSendingAndSkipsTheRest(t *testing.T) {
	e := newEnv(t, simulator.Config{Async: true})
	e.folder("Inbox", 40)
	e.startWorker(func(c *worker.Config) { c.Concurrency = 4 })
	p := e.pipeline(`
version: 1
name: budget
workspace: { project: proj_test }
defaults: { max_tokens: 100 }
limits: { concurrency: 4, max_total_tokens: 2000 }
artifacts:
  docs: { folder: "Inbox" }
steps:
  - id: summarize
    for_each: docs
    prompt: "Summarize {{ .Artifact.Name }}."
`)
	run := e.start(p, "budget-1")
	st := e.wait(run, time.Minute)
	if st.Status != runstore.StatusFailed {
		t.Fatalf("status %q, want %q", st.Status, runstore.StatusFailed)
	}
	items := readItems(t, resultsFile(st.ResultDir))
	if len(items) != 40 {
		t.Fatalf("%d result lines, want 40", len(items))
	}
	var sent, skipped int
	var used int64
	for _, it := range items {
		switch it.State {
		case results.StateSucceeded:
			sent++
			used += it.Usage.Total()
		case results.StateSkipped:
			skipped++
			if len(it.InteractionIDs) != 0 || it.ThreadID != "" || it.Usage.Total() != 0 {
				t.Errorf("skipped item %s was sent: %+v", it.Key, it)
			}
			if !strings.Contains(it.Error, "token budget") {
				t.Errorf("skipped item %s: error %q does not say why", it.Key, it.Error)
			}
		default:
			t.Errorf("item %s: state %s", it.Key, it.State)
		}
	}
	if sent == 0 || skipped == 0 {
		t.Fatalf("%d sent, %d skipped: the budget should let some through and stop the rest", sent, skipped)
	}
	// Items reserve their estimate before they are sent and settle with
	// their real usage; only the items in flight when the budget ran out
	// (at most limits.concurrency) can push the total past it.
	var maxItem int64
	for _, it := range items {
		maxItem = max(maxItem, it.Usage.Total())
	}
	t.Logf("%d items sent (%d tokens), %d skipped", sent, used, skipped)
	if used > 2000+4*maxItem {
		t.Errorf("%d tokens used: more than the budget (2000) plus what 4 items in flight can add", used)
	}
	c := e.sim.Counters()
	if c.InteractionsCreated != sent {
		t.Errorf("simulator created %d interactions, %d items succeeded", c.InteractionsCreated, sent)
	}
}

// A step is rendered whole before any of its items is enqueued: an item
// that cannot be rendered fails the run, naming the artifact, and nothing
// of the step reaches the API.
func TestStepThatCannotBeRenderedSendsNothing(t *testing.T) {
	e := newEnv(t, simulator.Config{})
	f := e.sim.AddArtifact(simulator.ArtifactSpec{Name: "Inbox", Type: workspace.ArtifactTypeFolder})
	for i := range 40 {
		e.sim.AddArtifact(simulator.ArtifactSpec{Name: fmt.Sprintf("doc-%04d.md", i), ParentID: f.ID, Content: "A document about billing."})
	}
	e.sim.AddArtifact(simulator.ArtifactSpec{Name: "x.md", ParentID: f.ID, Content: "A short one."})
	e.startWorker()
	p := e.pipeline(`
version: 1
name: unrenderable
workspace: { project: proj_test }
artifacts:
  docs: { folder: "Inbox" }
steps:
  - id: summarize
    for_each: docs
    prompt: "Summarize the document whose name starts {{ slice .Artifact.Name 0 8 }}."
`)
	run := e.start(p, "unrenderable-1")
	st := e.wait(run, time.Minute)
	if st.Status != runstore.StatusError {
		t.Fatalf("status %q, want %q", st.Status, runstore.StatusError)
	}
	if !strings.Contains(st.Error, `plan step summarize`) || !strings.Contains(st.Error, `"x.md"`) {
		t.Errorf("run error %q does not name the step and the artifact", st.Error)
	}
	c := e.sim.Counters()
	if c.Validations != 0 || c.InteractionsCreated != 0 {
		t.Errorf("%d validations and %d interactions: want none", c.Validations, c.InteractionsCreated)
	}
}
