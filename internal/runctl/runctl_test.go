package runctl_test

import (
	"errors"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/threadmill/threadmill/internal/redistest"
	"github.com/threadmill/threadmill/internal/runctl"
	"github.com/threadmill/threadmill/jobs"
	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/results"
	"github.com/threadmill/threadmill/runstore"
)

// running records a running run of one step with two planned items.
func running(t *testing.T, store *runstore.Store, id string) {
	t.Helper()
	p, err := pipelines.Parse("p.yaml", []byte("version: 1\nname: p\nworkspace: { project: proj_x }\nsteps:\n  - id: s\n    prompt: \"Hello.\"\n"),
		func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := store.CreateRun(ctx, p, pipelines.RunInfo{ID: id, Time: time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)}); err != nil {
		t.Fatal(err)
	}
	if err := store.MarkRunning(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := store.PlanStep(ctx, id, "s", 2); err != nil {
		t.Fatal(err)
	}
}

func TestCancelTakesTheRunsWaitingTasks(t *testing.T) {
	rs := redistest.Start(t)
	rdb := rs.Client(t)
	store := runstore.New(rdb, "")
	running(t, store, "r1")
	// A task of the run waits to run later, and one of another run.
	q := asynq.NewClientFromRedisClient(rdb)
	defer q.Close()
	for _, run := range []string{"r1", "other"} {
		task, err := jobs.NewRunStart(jobs.RunStart{RunID: run}, asynq.Queue("q"), asynq.ProcessIn(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := q.Enqueue(task); err != nil {
			t.Fatal(err)
		}
	}
	c, err := runctl.Cancel(t.Context(), rdb, "q", "r1", "test")
	if err != nil || c.Before != runstore.StatusRunning || c.Moved != 1 || c.MoveErr != nil {
		t.Fatalf("cancel: %+v, %v; want it running before and its one waiting task moved", c, err)
	}
	if st, stop, _ := store.Status(t.Context(), "r1"); stop != "canceled: test" {
		t.Errorf("run after cancel: %s, stop reason %q", st, stop)
	}
	if _, err := runctl.Cancel(t.Context(), rdb, "q", "missing", "test"); !errors.Is(err, runstore.ErrNotFound) {
		t.Errorf("cancel of an unknown run: %v, want ErrNotFound", err)
	}
}

func TestRetry(t *testing.T) {
	rs := redistest.Start(t)
	rdb := rs.Client(t)
	store := runstore.New(rdb, "")
	running(t, store, "r1")
	if _, err := runctl.Retry(t.Context(), rdb, "q", "r1", []string{results.StateFailed}); !errors.Is(err, runstore.ErrNotReopenable) {
		t.Errorf("retry of a running run: %v, want ErrNotReopenable", err)
	}
	for i, state := range []string{results.StateSucceeded, results.StateFailed} {
		if _, err := store.Record(t.Context(), "r1", results.Item{Step: "s", Key: string(rune('a' + i)), Index: i, State: state, Attempts: 1}, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.Finish(t.Context(), "r1", runstore.StatusFailed, ""); err != nil {
		t.Fatal(err)
	}
	if re, err := runctl.Retry(t.Context(), rdb, "q", "r1", []string{results.StateSkipped}); err != nil || re.Attempt != 0 {
		t.Errorf("retry with no skipped item: %+v, %v; want nothing to retry", re, err)
	}
	re, err := runctl.Retry(t.Context(), rdb, "q", "r1", []string{results.StateFailed})
	if err != nil || re.Attempt != 1 || re.Total() != 1 {
		t.Fatalf("retry: %+v, %v; want attempt 1 of one item", re, err)
	}
	pending, err := asynq.NewInspectorFromRedisClient(rdb).ListPendingTasks("q")
	if err != nil || len(pending) != 1 || pending[0].Type != jobs.KindRunStart {
		t.Errorf("want one run:start task on q, got %v, %v", pending, err)
	}
}
