package worker_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/threadmill/threadmill/internal/hostile"
	"github.com/threadmill/threadmill/results"
	"github.com/threadmill/threadmill/runstore"
	"github.com/threadmill/threadmill/workspace/simulator"
)

const cancelPipeline = `
version: 1
name: cancel
workspace: { project: proj_test }
defaults: { max_tokens: 60 }
limits: { concurrency: 4, max_attempts: 3 }
artifacts:
  docs: { folder: "Inbox" }
steps:
  - id: summarize
    for_each: docs
    prompt: "Summarize {{ .Artifact.Name }}."
  - id: brief
    needs: [summarize]
    prompt: "Brief: {{ range .Steps.summarize.Items }}{{ .Output }} {{ end }}"
`

// Cancel mid-run with items in flight: the interactions in flight are
// cancelled through the API, the items not sent yet are recorded canceled
// without being sent, no further step is planned, and the run is finalized
// as canceled with result files.
func TestCancelStopsTheRunAndItsInteractionsInFlight(t *testing.T) {
	e := newEnv(t, simulator.Config{Async: true, Latency: time.Minute})
	e.folder("Inbox", 20)
	e.startWorker()
	run := e.start(e.pipeline(cancelPipeline), "cancel-1")
	waitFor(t, 30*time.Second, "4 interactions in flight", func() bool { return e.sim.Counters().InteractionsCreated == 4 })

	start := time.Now()
	before, err := e.store.Cancel(context.Background(), run, "wrong folder")
	if err != nil || before != runstore.StatusRunning {
		t.Fatalf("Cancel: %q, %v", before, err)
	}
	st := e.wait(run, 30*time.Second)
	t.Logf("canceled run finalized %s after the cancel", time.Since(start).Round(time.Millisecond))
	if st.Status != runstore.StatusCanceled {
		t.Fatalf("status %q, want canceled (%+v)", st.Status, st)
	}
	c := e.sim.Counters()
	if c.InteractionsCreated != 4 || c.InteractionsCancelled != 4 {
		t.Errorf("simulator: %d interactions created, %d cancelled; want 4 and 4", c.InteractionsCreated, c.InteractionsCancelled)
	}
	if st.Canceled != 20 || st.Total != 20 || st.Steps[1].Planned {
		t.Errorf("run: %d of %d items canceled, brief planned %v; want 20 of 20 and the brief not planned", st.Canceled, st.Total, st.Steps[1].Planned)
	}
	r := readRun(t, st.ResultDir)
	if r.Status != results.StatusCanceled || r.Counts[results.StateCanceled] != 20 {
		t.Errorf("run.json: status %s, counts %v", r.Status, r.Counts)
	}
	sent := 0
	for _, it := range readItems(t, resultsFile(st.ResultDir)) {
		if it.State != results.StateCanceled || it.Error != "run canceled: wrong folder" {
			t.Errorf("item %s: %s %q", it.Key, it.State, it.Error)
		}
		if len(it.InteractionIDs) > 0 {
			sent++
		}
	}
	if sent != 4 {
		t.Errorf("%d canceled items list an interaction, want the 4 in flight", sent)
	}
	// Canceling again, or a finished run, changes nothing.
	if again, err := e.store.Cancel(context.Background(), run, "again"); err != nil || again != runstore.StatusCanceled {
		t.Errorf("second Cancel: %q, %v", again, err)
	}
}

// An interaction that finished before the cancel reached it (the server
// answers 409) keeps its answer: the item is recorded succeeded.
func TestCancelKeepsTheAnswerOfAnInteractionThatFinished(t *testing.T) {
	e := newEnv(t, simulator.Config{Async: true, Latency: 500 * time.Millisecond})
	e.folder("Inbox", 1)
	conflict := e.front.Add(&hostile.Rule{Method: http.MethodPost, Path: "/api/v1/app/interaction/*/cancel",
		Do: hostile.Respond(http.StatusConflict, `{"message":"interaction has already finished"}`)})
	e.startWorker()
	run := e.start(e.pipeline(cancelPipeline), "cancel-2")
	waitFor(t, 30*time.Second, "the interaction in flight", func() bool { return e.sim.Counters().InteractionsCreated == 1 })
	if _, err := e.store.Cancel(context.Background(), run, ""); err != nil {
		t.Fatal(err)
	}
	st := e.wait(run, 30*time.Second)
	if st.Status != runstore.StatusCanceled || st.Succeeded != 1 || st.Canceled != 0 {
		t.Fatalf("status %q: %d succeeded, %d canceled; want canceled with the item succeeded", st.Status, st.Succeeded, st.Canceled)
	}
	if conflict.Hits() != 1 {
		t.Errorf("cancel requests answered 409: %d, want 1", conflict.Hits())
	}
	items := readItems(t, resultsFile(st.ResultDir))
	if len(items) != 1 || items[0].Output == "" || items[0].Usage.OutputTokens == 0 {
		t.Errorf("items %+v: want the finished answer kept", items)
	}
}

// A run canceled before a worker took its start task is finalized empty.
func TestCancelBeforeTheRunStarts(t *testing.T) {
	e := newEnv(t, simulator.Config{})
	e.folder("Inbox", 3)
	run := e.start(e.pipeline(cancelPipeline), "cancel-3")
	if before, err := e.store.Cancel(context.Background(), run, "not today"); err != nil || before != runstore.StatusPending {
		t.Fatalf("Cancel: %q, %v", before, err)
	}
	e.startWorker()
	st := e.wait(run, 30*time.Second)
	if st.Status != runstore.StatusCanceled || st.Total != 0 || e.sim.Counters().InteractionsCreated != 0 {
		t.Errorf("status %q, %d items, %d interactions; want canceled, 0, 0", st.Status, st.Total, e.sim.Counters().InteractionsCreated)
	}
}
