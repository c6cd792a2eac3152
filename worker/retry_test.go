package worker_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/threadmill/threadmill/internal/hostile"
	"github.com/threadmill/threadmill/jobs"
	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/results"
	"github.com/threadmill/threadmill/runstore"
	"github.com/threadmill/threadmill/worker"
	"github.com/threadmill/threadmill/workspace/simulator"
)

// retry reopens a finished run for its items in states and enqueues the new
// attempt's start, as `threadmill retry` does.
func (e *env) retry(runID string, states ...string) *runstore.Reopened {
	e.t.Helper()
	re, err := e.store.Reopen(context.Background(), runID, states)
	if err != nil {
		e.t.Fatalf("Reopen: %v", err)
	}
	e.retryStart(runID, re.Attempt)
	return re
}

// Three summaries fail for good (validate answers 400); a retry sends only
// them, then the brief again (it reads their outputs), and rewrites the
// result files with the first attempt in run.json's history.
func TestRetrySendsOnlyTheFailedItemsThenTheStepsThatReadThem(t *testing.T) {
	e := newEnv(t, simulator.Config{Async: true, Latency: 10 * time.Millisecond})
	e.folder("Inbox", 10)
	bad := e.front.Add(&hostile.Rule{Method: http.MethodPost, Path: hostile.Validate, Times: 3,
		Do: hostile.Respond(http.StatusBadRequest, `{"message":"messages.0.content: too long"}`)})
	e.startWorker()
	run := e.start(e.pipeline(cancelPipeline), "retry-1")
	st := e.wait(run, time.Minute)
	if st.Status != runstore.StatusFailed || st.Failed != 3 || bad.Hits() != 3 {
		t.Fatalf("first attempt: %s with %d failed (%d 400s), want failed with 3", st.Status, st.Failed, bad.Hits())
	}
	if got := e.sim.Counters().InteractionsCreated; got != 8 {
		t.Fatalf("first attempt created %d interactions, want 7 summaries and the brief", got)
	}

	re := e.retry(run, results.StateFailed, results.StateSkipped)
	if re.Attempt != 1 || re.Items["summarize"] != 3 || len(re.Replanned) != 1 || re.Replanned[0] != "brief" {
		t.Fatalf("Reopen: %+v", re)
	}
	st = e.wait(run, time.Minute)
	if st.Status != runstore.StatusSucceeded || st.Succeeded != 11 || st.Total != 11 {
		t.Fatalf("after the retry: %s, %d of %d succeeded", st.Status, st.Succeeded, st.Total)
	}
	if got := e.sim.Counters().InteractionsCreated; got != 12 {
		t.Errorf("%d interactions in all, want 8 + the 3 retried summaries + the brief again", got)
	}
	r := readRun(t, st.ResultDir)
	if r.Status != results.StatusSucceeded || len(r.Attempts) != 1 || r.Attempts[0].Status != results.StatusFailed || r.Attempts[0].Failed != 3 {
		t.Errorf("run.json: status %s, attempts %+v", r.Status, r.Attempts)
	}
	items := readItems(t, resultsFile(st.ResultDir))
	if len(items) != 11 {
		t.Fatalf("%d result lines, want 11", len(items))
	}
	for _, it := range items {
		if it.State != results.StateSucceeded {
			t.Errorf("item %s: %s", it.Key, it.State)
		}
	}
	// Nothing left to retry: the run stays as it is.
	if re, err := e.store.Reopen(context.Background(), run, []string{results.StateFailed}); err != nil || re.Attempt != 0 {
		t.Errorf("second Reopen: %+v, %v", re, err)
	}
}

// An item that ran out of attempts while its interaction was still being
// answered resumes that interaction on the retry: never paid twice.
func TestRetryResumesTheInteractionAFailedItemHadCreated(t *testing.T) {
	e := newEnv(t, simulator.Config{Async: true, Latency: 3 * time.Second})
	e.folder("Inbox", 1)
	e.startWorker()
	run := e.start(e.pipeline(`
version: 1
name: slow
workspace: { project: proj_test }
limits: { max_attempts: 1, item_timeout: 1s }
artifacts:
  docs: { folder: "Inbox" }
steps:
  - id: summarize
    for_each: docs
    prompt: "Summarize {{ .Artifact.Name }}."
`), "retry-2")
	st := e.wait(run, time.Minute)
	if st.Status != runstore.StatusFailed || st.Failed != 1 {
		t.Fatalf("first attempt: %s, %d failed", st.Status, st.Failed)
	}
	e.retry(run, results.StateFailed)
	// The item times out again until the interaction has finished, then
	// resumes it: retry until it succeeds.
	deadline := time.Now().Add(time.Minute)
	for st = e.wait(run, time.Minute); st.Status != runstore.StatusSucceeded; st = e.wait(run, time.Minute) {
		if time.Now().After(deadline) {
			t.Fatalf("run still %s", st.Status)
		}
		e.retry(run, results.StateFailed)
	}
	if c := e.sim.Counters(); c.InteractionsCreated != 1 {
		t.Errorf("%d interactions for one item, want 1 (resumed, not created again)", c.InteractionsCreated)
	}
	if r := readRun(t, st.ResultDir); len(r.Attempts) == 0 {
		t.Error("run.json keeps no history of the failed attempts")
	}
}

// A run that is still running, or ended in error, cannot be reopened.
func TestRetryRefusesARunThatIsNotFinished(t *testing.T) {
	e := newEnv(t, simulator.Config{})
	e.folder("Inbox", 1)
	run := e.start(e.pipeline(cancelPipeline), "retry-3")
	if _, err := e.store.Reopen(context.Background(), run, []string{results.StateFailed}); err == nil {
		t.Error("a pending run was reopened")
	}
}

// The retry of a run whose store is gone (the embedded runner's): the item
// that failed after creating its interaction is seeded with its thread and
// a Creating mark, and the retry finds that interaction by its correlation
// id instead of paying for another.
func TestSeedRetryFindsTheInteractionOfALostStore(t *testing.T) {
	e := newEnv(t, simulator.Config{Async: true, Latency: 3 * time.Second})
	e.folder("Inbox", 1)
	e.startWorker()
	p := e.pipeline(`
version: 1
name: slow
workspace: { project: proj_test }
limits: { max_attempts: 1, item_timeout: 1s }
artifacts:
  docs: { folder: "Inbox" }
steps:
  - id: summarize
    for_each: docs
    prompt: "Summarize {{ .Artifact.Name }}."
`)
	run := e.start(p, "lost-store-1")
	st := e.wait(run, time.Minute)
	failed := readItems(t, resultsFile(st.ResultDir))
	if st.Failed != 1 || len(failed) != 1 || failed[0].ThreadID == "" {
		t.Fatalf("first attempt: %s, %d failed, items %+v", st.Status, st.Failed, failed)
	}
	// The store is lost; a new one gets the run again, seeded from the
	// result file.
	if err := e.rdb().FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.CreateRun(context.Background(), p, pipelines.RunInfo{ID: run, Time: time.Date(2026, 7, 6, 9, 0, 0, 0, time.UTC)}); err != nil {
		t.Fatal(err)
	}
	if err := e.store.SeedRetry(context.Background(), run, failed[0]); err != nil {
		t.Fatal(err)
	}
	if err := e.store.AddHistory(context.Background(), run, results.Attempt{Status: st.Status, Failed: 1, Total: 1}); err != nil {
		t.Fatal(err)
	}
	// The item times out again until the interaction has finished, then
	// resumes it: retry until it succeeds.
	deadline := time.Now().Add(time.Minute)
	for attempt := 1; ; {
		e.retryStart(run, attempt)
		st = e.wait(run, time.Minute)
		if st.Status == runstore.StatusSucceeded {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("run still %s", st.Status)
		}
		re, err := e.store.Reopen(context.Background(), run, []string{results.StateFailed})
		if err != nil {
			t.Fatal(err)
		}
		attempt = re.Attempt
	}
	if c := e.sim.Counters(); c.InteractionsCreated != 1 {
		t.Errorf("%d interactions for one item, want 1: the retry must find the first by its correlation id", c.InteractionsCreated)
	}
	if r := readRun(t, st.ResultDir); len(r.Attempts) == 0 || r.Attempts[0].Failed != 1 {
		t.Errorf("run.json attempts %+v", r.Attempts)
	}
}

// retryStart enqueues the start task of a run's attempt.
func (e *env) retryStart(runID string, attempt int) {
	e.t.Helper()
	q := asynq.NewClient(e.asynqOpt())
	defer q.Close()
	t, err := jobs.NewRunStart(jobs.RunStart{RunID: runID, Attempt: attempt}, asynq.Queue(worker.DefaultQueue))
	if err == nil {
		_, err = q.Enqueue(t)
	}
	if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		e.t.Fatal(err)
	}
}

// A retried run is active again: the scheduler's overlap check sees it.
func TestRetryMakesTheRunActiveAgain(t *testing.T) {
	e := newEnv(t, simulator.Config{})
	e.folder("Inbox", 2)
	e.front.Add(&hostile.Rule{Method: http.MethodPost, Path: hostile.Validate, Times: 1,
		Do: hostile.Respond(http.StatusBadRequest, `{"message":"no"}`)})
	e.startWorker()
	run := e.start(e.pipeline(cancelPipeline), "retry-active-1")
	if st := e.wait(run, time.Minute); st.Failed != 1 {
		t.Fatalf("first attempt: %s, %d failed", st.Status, st.Failed)
	}
	if active, _ := e.store.ActiveRuns(context.Background(), "cancel"); len(active) != 0 {
		t.Fatalf("a finished run is active: %v", active)
	}
	if _, err := e.store.Reopen(context.Background(), run, []string{results.StateFailed}); err != nil {
		t.Fatal(err)
	}
	if active, _ := e.store.ActiveRuns(context.Background(), "cancel"); len(active) != 1 || active[0] != run {
		t.Errorf("active runs after Reopen: %v, want [%s]", active, run)
	}
}

// A canceled run whose threads were deleted at its end (thread.delete_after)
// is retried: each item whose thread is gone starts again in a new one, and
// its result line lists the cancelled interaction too.
func TestRetryOfACanceledRunWhoseThreadsWereDeleted(t *testing.T) {
	e := newEnv(t, simulator.Config{Async: true, Latency: time.Minute})
	e.folder("Inbox", 6)
	e.startWorker()
	p := e.pipeline(`
version: 1
name: tidy
workspace: { project: proj_test }
limits: { concurrency: 4 }
artifacts:
  docs: { folder: "Inbox" }
steps:
  - id: summarize
    for_each: docs
    thread: { delete_after: true }
    prompt: "Summarize {{ .Artifact.Name }}."
`)
	run := e.start(p, "tidy-1")
	waitFor(t, 30*time.Second, "4 interactions in flight", func() bool { return e.sim.Counters().InteractionsCreated == 4 })
	if _, err := e.store.Cancel(context.Background(), run, "later"); err != nil {
		t.Fatal(err)
	}
	if st := e.wait(run, 30*time.Second); st.Status != runstore.StatusCanceled || st.Canceled != 6 {
		t.Fatalf("canceled run: %s, %d canceled", st.Status, st.Canceled)
	}
	if c := e.sim.Counters(); c.Total("DELETE /api/v1/app/thread/{threadId}") != 4 {
		t.Fatalf("%d threads deleted at the end, want the 4 created", c.Total("DELETE /api/v1/app/thread/{threadId}"))
	}
	e.sim.SetLatency(10*time.Millisecond, 0, 0)
	re := e.retry(run, results.StateCanceled)
	if re.Items["summarize"] != 6 {
		t.Fatalf("Reopen: %+v", re)
	}
	st := e.wait(run, time.Minute)
	if st.Status != runstore.StatusSucceeded || st.Succeeded != 6 {
		t.Fatalf("after the retry: %s, %d succeeded", st.Status, st.Succeeded)
	}
	if c := e.sim.Counters(); c.InteractionsCreated != 10 {
		t.Errorf("%d interactions, want the 4 cancelled and 6 new", c.InteractionsCreated)
	}
	two := 0
	var in, out int64
	for _, it := range readItems(t, resultsFile(st.ResultDir)) {
		if len(it.InteractionIDs) == 2 {
			two++
		}
		in += int64(it.Usage.InputTokens)
		out += int64(it.Usage.OutputTokens)
	}
	if two != 4 {
		t.Errorf("%d result lines list two interactions, want the 4 that had one cancelled", two)
	}
	// What the cancelled interactions cost stays billed to their items.
	if c := e.sim.Counters(); in != c.TokensIn || out != c.TokensOut {
		t.Errorf("results usage %d/%d, the simulator billed %d/%d", in, out, c.TokensIn, c.TokensOut)
	}
}
