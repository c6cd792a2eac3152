package worker_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/results"
	"github.com/threadmill/threadmill/runstore"
	"github.com/threadmill/threadmill/worker"
	"github.com/threadmill/threadmill/workspace"
	"github.com/threadmill/threadmill/workspace/simulator"
)

const resumePipeline = `
version: 1
name: resume
workspace: { project: proj_test }
defaults: { max_tokens: 60 }
limits: { concurrency: 8, max_attempts: 3 }
artifacts:
  docs: { folder: "Inbox" }
steps:
  - id: summarize
    for_each: docs
    prompt: "Summarize {{ .Artifact.Name }}."
    turns: ["Now list the amounts mentioned."]
`

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, bounded by the deadline
	}
}

// checkExactlyOnce checks that a finished run of the resume pipeline over n
// documents has every item once, succeeded, and that the simulator made
// exactly one interaction per turn: nothing was paid for twice.
func checkExactlyOnce(t *testing.T, e *env, st *runstore.RunState, n int) {
	t.Helper()
	if st.Status != runstore.StatusSucceeded {
		t.Fatalf("status %q (failed %d, error %q)", st.Status, st.Failed, st.Error)
	}
	items := readItems(t, resultsFile(st.ResultDir))
	if len(items) != n {
		t.Fatalf("%d result lines, want %d", len(items), n)
	}
	seen := map[string]bool{}
	ids := map[string]bool{}
	for _, it := range items {
		if seen[it.Key] {
			t.Errorf("item %s twice in results.jsonl", it.Key)
		}
		seen[it.Key] = true
		if it.State != results.StateSucceeded || len(it.Outputs) != 2 || len(it.InteractionIDs) != 2 {
			t.Errorf("item %s: state %s, %d outputs, interactions %v", it.Key, it.State, len(it.Outputs), it.InteractionIDs)
		}
		for _, id := range it.InteractionIDs {
			if ids[id] {
				t.Errorf("interaction %s recorded twice", id)
			}
			ids[id] = true
		}
	}
	c := e.sim.Counters()
	if c.InteractionsCreated != 2*n {
		t.Errorf("simulator created %d interactions for %d items of 2 turns: an interaction was paid for twice", c.InteractionsCreated, n)
	}
}

func TestShutdownDrainsInFlightItemsThenAnotherWorkerFinishes(t *testing.T) {
	e := newEnv(t, simulator.Config{Async: true, Latency: 150 * time.Millisecond})
	e.folder("Inbox", 24)
	var done1 atomic.Int64
	_, stop1 := e.startWorker(func(c *worker.Config) {
		c.Concurrency = 4
		c.OnItemDone = func(results.Item) { done1.Add(1) }
	})
	run := e.start(e.pipeline(resumePipeline), "drain-1")
	waitFor(t, 30*time.Second, "interactions in flight", func() bool { return e.sim.Counters().InteractionsCreated >= 6 })
	stop1() // SIGTERM: stop fetching, let in-flight items finish
	st, err := e.store.Run(context.Background(), run)
	if err != nil {
		t.Fatal(err)
	}
	// Every item that was taken finished: each has both its interactions
	// recorded, none is left half done for the next worker.
	if c := e.sim.Counters(); c.InteractionsCreated != 2*st.Done {
		t.Errorf("after the drain: %d interactions, %d items done; in-flight items were not finished", c.InteractionsCreated, st.Done)
	}
	if st.Done == 0 || st.Done == 24 || int(done1.Load()) != st.Done {
		t.Fatalf("after the drain %d items done (hook saw %d): the test needs some, not all", st.Done, done1.Load())
	}
	e.startWorker()
	checkExactlyOnce(t, e, e.wait(run, time.Minute), 24)
}

func TestAbortedItemsResumeTheirInteractions(t *testing.T) {
	// The first worker is stopped with almost no grace: its items are cut
	// while they wait on interactions and handed back to the queue. The next
	// worker must resume those interactions from their checkpoints, never
	// create them again.
	e := newEnv(t, simulator.Config{Async: true, Latency: 600 * time.Millisecond})
	e.folder("Inbox", 12)
	_, stop1 := e.startWorker(func(c *worker.Config) {
		c.Concurrency = 6
		c.ShutdownTimeout = time.Millisecond
	})
	run := e.start(e.pipeline(resumePipeline), "abort-1")
	waitFor(t, 30*time.Second, "interactions in flight", func() bool { return e.sim.Counters().InteractionsCreated >= 6 })
	stop1()
	before := e.sim.Counters().InteractionsCreated
	st, err := e.store.Run(context.Background(), run)
	if err != nil {
		t.Fatal(err)
	}
	if st.Done*2 >= before {
		t.Fatalf("%d items done, %d interactions: no interaction was cut mid-wait, the test proves nothing", st.Done, before)
	}
	e.startWorker()
	checkExactlyOnce(t, e, e.wait(run, time.Minute), 12)
}

func TestRetryFindsAnInteractionCreatedButNotCheckpointed(t *testing.T) {
	// An attempt that died between POST .../interaction and checkpointing
	// the new id leaves the turn marked "creating". The retry must find the
	// interaction by its correlation id instead of paying for another.
	e := newEnv(t, simulator.Config{Async: true, Latency: 20 * time.Millisecond})
	p := e.pipeline(`
version: 1
name: lost
workspace: { project: proj_test }
defaults: { max_tokens: 40 }
steps:
  - id: ask
    prompt: "Say hello to the support team."
`)
	run := e.start(p, "lost-1")
	ctx := context.Background()
	items, err := pipelines.Plan(p, "ask", pipelines.RunInfo{ID: run}, nil, map[string]pipelines.StepOutput{})
	if err != nil || len(items) != 1 {
		t.Fatalf("plan: %v, %d items", err, len(items))
	}
	it := items[0]
	// The first attempt, up to its death.
	if _, err := e.store.BeginItem(ctx, run, it.Step, it.Key); err != nil {
		t.Fatal(err)
	}
	th, err := e.api.CreateThread(ctx, testProject, workspace.CreateThreadRequest{Name: "lost", Visibility: workspace.VisibilityPrivate})
	if err != nil {
		t.Fatal(err)
	}
	req := it.Requests[0]
	req.CorrelationID = worker.CorrelationID(run, it.Key, 0)
	in, err := e.api.CreateInteraction(ctx, th.ID, workspace.CreateInteractionRequest{ThreadID: th.ID, PGPT: req, ArtifactIDs: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []error{
		e.store.CheckpointValidated(ctx, run, it.Step, it.Key),
		e.store.CheckpointThread(ctx, run, it.Step, it.Key, th.ID, "?"),
	} {
		if step != nil {
			t.Fatal(step)
		}
	}
	e.startWorker()
	st := e.wait(run, time.Minute)
	if st.Status != runstore.StatusSucceeded {
		t.Fatalf("status %q (error %q)", st.Status, st.Error)
	}
	got := readItems(t, resultsFile(st.ResultDir))
	if len(got) != 1 || len(got[0].InteractionIDs) != 1 || got[0].InteractionIDs[0] != in.ID {
		t.Fatalf("results %+v, want the interaction %s", got, in.ID)
	}
	if got[0].Attempts != 2 || got[0].ThreadID != th.ID {
		t.Errorf("attempts %d, thread %s; want 2 and %s", got[0].Attempts, got[0].ThreadID, th.ID)
	}
	if c := e.sim.Counters(); c.InteractionsCreated != 1 || c.Validations != 0 {
		t.Errorf("%d interactions, %d validations: the retry must reuse both", c.InteractionsCreated, c.Validations)
	}
}
