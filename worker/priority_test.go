package worker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/threadmill/threadmill/jobs"
	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/worker"
	"github.com/threadmill/threadmill/workspace/simulator"
)

// With a 10,000-item bulk run in progress on the same workers (its items
// waiting for their pipeline's two in-flight slots), the first item of a
// scheduled run, started in the priority queue, begins within two seconds.
func TestAScheduledRunStartsPromptlyBehindABulkRun(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 items")
	}
	e := newEnv(t, simulator.Config{Async: true, Latency: 100 * time.Millisecond})
	e.folder("Bulk", 10000)
	e.folder("Weekly", 1)
	e.startWorker(func(c *worker.Config) { c.Concurrency = 8 })
	bulk := e.start(e.pipeline(`
version: 1
name: bulk
workspace: { project: proj_test }
limits: { concurrency: 2 }
artifacts:
  docs: { folder: "Bulk" }
steps:
  - id: summarize
    for_each: docs
    prompt: "Summarize {{ .Artifact.Name }}."
`), "bulk-1")
	waitFor(t, 2*time.Minute, "the bulk run's items under way", func() bool {
		done, total, err := e.store.StepProgress(context.Background(), bulk, "summarize")
		return err == nil && total == 10000 && done >= 10
	})

	q := asynq.NewClient(e.asynqOpt())
	defer q.Close()
	weekly := e.pipeline(`
version: 1
name: weekly
workspace: { project: proj_test }
artifacts:
  docs: { folder: "Weekly" }
steps:
  - id: summarize
    for_each: docs
    prompt: "Summarize {{ .Artifact.Name }}."
`)
	fired := time.Now()
	info := pipelines.RunInfo{ID: "weekly-1", Time: fired}
	if err := jobs.StartRun(context.Background(), q, e.store, weekly, info, asynq.Queue(worker.PriorityQueue(worker.DefaultQueue))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "the scheduled run's first interaction", func() bool {
		for corr := range e.sim.Counters().Correlations {
			if strings.HasPrefix(corr, "threadmill:weekly-1:") {
				return true
			}
		}
		return false
	})
	started := time.Since(fired)
	t.Logf("scheduled run's first item sent %s after its start", started.Round(time.Millisecond))
	if started > 2*time.Second {
		t.Errorf("the scheduled run's first item was sent %s after its start, want at most 2s", started)
	}
	st := e.wait("weekly-1", time.Minute)
	if st.Succeeded != 1 {
		t.Errorf("scheduled run: %s, %d succeeded", st.Status, st.Succeeded)
	}
	done, _, _ := e.store.StepProgress(context.Background(), bulk, "summarize")
	if done >= 10000 {
		t.Errorf("the bulk run finished (%d items) before the check: the test proves nothing", done)
	}
}

// Items waiting for their pipeline's in-flight slot give their worker slot
// back: another run's items in the same queue get through, and the waits
// use up no attempt.
func TestItemsWaitingForASlotGiveTheirWorkerSlotBack(t *testing.T) {
	e := newEnv(t, simulator.Config{Async: true, Latency: 300 * time.Millisecond})
	e.folder("Narrow", 20)
	e.folder("Other", 1)
	e.startWorker(func(c *worker.Config) { c.Concurrency = 4 })
	narrow := e.start(e.pipeline(`
version: 1
name: narrow
workspace: { project: proj_test }
limits: { concurrency: 1, max_attempts: 2 }
artifacts:
  docs: { folder: "Narrow" }
steps:
  - id: summarize
    for_each: docs
    prompt: "Summarize {{ .Artifact.Name }}."
`), "narrow-1")
	waitFor(t, time.Minute, "the narrow run's items enqueued", func() bool {
		_, total, err := e.store.StepProgress(context.Background(), narrow, "summarize")
		return err == nil && total == 20
	})
	began := time.Now()
	other := e.start(e.pipeline(`
version: 1
name: other
workspace: { project: proj_test }
artifacts:
  docs: { folder: "Other" }
steps:
  - id: summarize
    for_each: docs
    prompt: "Summarize {{ .Artifact.Name }}."
`), "other-1")
	if st := e.wait(other, time.Minute); st.Succeeded != 1 {
		t.Fatalf("other run: %s", st.Status)
	}
	took := time.Since(began)
	done, _, _ := e.store.StepProgress(context.Background(), narrow, "summarize")
	t.Logf("the other run finished %s after its start, with %d of the narrow run's 20 items done", took.Round(time.Millisecond), done)
	if done >= 14 {
		t.Errorf("the other run waited for %d of the narrow run's 20 items: its worker slots were held", done)
	}
	st := e.wait(narrow, time.Minute)
	for _, it := range readItems(t, resultsFile(st.ResultDir)) {
		if it.State != "succeeded" || it.Attempts != 1 {
			t.Errorf("narrow item %s: %s after %d attempts; waiting for a slot must not count", it.Key, it.State, it.Attempts)
		}
	}
}
