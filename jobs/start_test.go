package jobs_test

import (
	"context"
	"strings"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/threadmill/threadmill/internal/redistest"
	"github.com/threadmill/threadmill/jobs"
	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/runstore"
)

func testPipeline(t *testing.T, name, prompt string) *pipelines.Pipeline {
	t.Helper()
	p, err := pipelines.Parse(name+".yaml", []byte(`
version: 1
name: `+name+`
workspace: { project: proj_test }
steps:
  - id: ask
    prompt: "`+prompt+`"
`), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	p.Hash = "hash-of-" + prompt
	return p
}

func TestStartRunIsIdempotent(t *testing.T) {
	srv := redistest.Start(t)
	opt := asynq.RedisClientOpt{Network: "unix", Addr: srv.Socket}
	q := asynq.NewClient(opt)
	defer q.Close()
	insp := asynq.NewInspector(opt)
	defer insp.Close()
	store := runstore.New(srv.Client(t), "")
	ctx := context.Background()
	p := testPipeline(t, "hello", "Say hello.")
	run := pipelines.RunInfo{ID: "hello-1"}

	for i := range 3 {
		if err := jobs.StartRun(ctx, q, store, p, run, asynq.Queue("tm")); err != nil {
			t.Fatalf("call %d: %v", i+1, err)
		}
	}
	tasks, err := insp.ListPendingTasks("tm")
	if err != nil {
		t.Fatal(err)
	}
	if len(tasks) != 1 || tasks[0].ID != "hello-1:start" || tasks[0].Type != jobs.KindRunStart {
		t.Fatalf("pending tasks %+v, want the one run:start task hello-1:start", tasks)
	}
	st, err := store.Run(ctx, "hello-1")
	if err != nil || st.Status != runstore.StatusPending || st.Pipeline != "hello" {
		t.Fatalf("run state %+v, %v", st, err)
	}
	spec, err := store.Spec(ctx, "hello-1")
	if err != nil || spec.Pipeline.Steps[0].Prompt != "Say hello." {
		t.Fatalf("the run does not carry its pipeline: %+v, %v", spec, err)
	}

	other := testPipeline(t, "other", "Say hello.")
	if err := jobs.StartRun(ctx, q, store, other, run); err == nil || !strings.Contains(err.Error(), `already belongs to pipeline "hello"`) {
		t.Errorf("same run id, another pipeline: %v", err)
	}
	changed := testPipeline(t, "hello", "Say goodbye.")
	if err := jobs.StartRun(ctx, q, store, changed, run); err == nil || !strings.Contains(err.Error(), "another version of the file") {
		t.Errorf("same run id, edited file: %v", err)
	}
}

func TestDeterministicTaskIDWinsOverOptions(t *testing.T) {
	srv := redistest.Start(t)
	opt := asynq.RedisClientOpt{Network: "unix", Addr: srv.Socket}
	q := asynq.NewClient(opt)
	defer q.Close()
	task, err := jobs.NewFinalize(jobs.Finalize{RunID: "r1"}, asynq.TaskID("other"), asynq.MaxRetry(3))
	if err != nil {
		t.Fatal(err)
	}
	info, err := q.Enqueue(task)
	if err != nil {
		t.Fatal(err)
	}
	if info.ID != "r1:finalize" || info.MaxRetry != 3 {
		t.Errorf("task id %q, max retry %d; want r1:finalize and 3", info.ID, info.MaxRetry)
	}
	if _, err := q.Enqueue(task); err == nil {
		t.Error("enqueueing the same payload twice succeeded; want a task id conflict")
	}
}
