package worker_test

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/threadmill/threadmill/jobs"
	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/results"
	"github.com/threadmill/threadmill/runstore"
	"github.com/threadmill/threadmill/worker"
	"github.com/threadmill/threadmill/workspace/simulator"
)

// waitTask waits until asynq holds the task in state (the run store may say
// a run finished a moment before asynq marks its last task completed).
func waitTask(t *testing.T, insp *asynq.Inspector, id string, state asynq.TaskState) *asynq.TaskInfo {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		info, err := insp.GetTaskInfo(worker.DefaultQueue, id)
		if err == nil && info.State == state {
			return info
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s not %v within 30s: %+v, %v", id, state, info, err)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, bounded by the deadline
	}
}

// itemResult is the JSON an item task leaves (worker/taskresult.go).
type itemResult struct {
	State          string   `json:"state"`
	Attempts       int      `json:"attempts"`
	InputTokens    int64    `json:"input_tokens"`
	OutputTokens   int64    `json:"output_tokens"`
	LatencyMS      *int64   `json:"latency_ms"`
	ThreadID       string   `json:"thread_id"`
	InteractionIDs []string `json:"interaction_ids"`
	Error          string   `json:"error"`
}

type didResult struct {
	Did    string `json:"did"`
	Status string `json:"status"`
	Dir    string `json:"dir"`
}

func decodeResult[T any](t *testing.T, info *asynq.TaskInfo) T {
	t.Helper()
	var v T
	dec := json.NewDecoder(strings.NewReader(string(info.Result)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("task %s: result %q: %v", info.ID, info.Result, err)
	}
	return v
}

func TestCompletedTasksCarryResults(t *testing.T) {
	e := newEnv(t, simulator.Config{Async: true, Latency: 2 * time.Millisecond})
	e.folder("Tickets", 3)
	e.startWorker()
	p := e.pipeline(`
version: 1
name: weekly
workspace: { project: proj_test }
defaults: { max_tokens: 60 }
artifacts:
  tickets: { folder: "Tickets" }
steps:
  - id: summarize
    for_each: tickets
    prompt: "Summarize {{ .Artifact.Name }}."
  - id: brief
    needs: [summarize]
    prompt: "Brief: {{ range .Steps.summarize.Items }}{{ .Output }} {{ end }}"
  - id: bad
    max_tokens: 50000
    prompt: "Write a very long essay."
`)
	// A scheduled run's id: '@', ':' and '+' must not reach the task ids.
	run := e.start(p, "weekly@2026-07-06T09:00:00+02:00")
	st := e.wait(run, time.Minute)
	if st.Status != runstore.StatusFailed {
		t.Fatalf("status %q, want failed (the bad step)", st.Status)
	}
	insp := asynq.NewInspector(e.asynqOpt())
	defer insp.Close()

	fin := waitTask(t, insp, jobs.Finalize{RunID: run}.TaskID(), asynq.TaskStateCompleted)
	if got := decodeResult[didResult](t, fin); got != (didResult{Did: "finalized: failed", Status: "failed", Dir: st.ResultDir}) {
		t.Errorf("finalize result %+v, want finalized: failed in %s", got, st.ResultDir)
	}
	start := waitTask(t, insp, jobs.RunStart{RunID: run}.TaskID(), asynq.TaskStateCompleted)
	if got := decodeResult[didResult](t, start); got.Did != "enqueued 3 items of step summarize" {
		t.Errorf("run:start result %+v", got)
	}
	if start.Retention != jobs.StartRetention {
		t.Errorf("run:start retention %s, want %s", start.Retention, jobs.StartRetention)
	}
	adv := waitTask(t, insp, jobs.Advance{RunID: run, Step: "summarize"}.TaskID(), asynq.TaskStateCompleted)
	if got := decodeResult[didResult](t, adv); got.Did != "enqueued 1 item of step brief" {
		t.Errorf("advance of summarize: result %+v", got)
	}
	adv = waitTask(t, insp, jobs.Advance{RunID: run, Step: "bad"}.TaskID(), asynq.TaskStateCompleted)
	if got := decodeResult[didResult](t, adv); got.Did != "step bad done; enqueued the run's finalize" {
		t.Errorf("advance of bad: result %+v", got)
	}

	items := readItems(t, resultsFile(st.ResultDir))
	if len(items) != 5 {
		t.Fatalf("%d result lines, want 5", len(items))
	}
	for _, it := range items {
		id := jobs.Item{RunID: run, Item: pipelines.Item{Step: it.Step, Key: it.Key}}.TaskID()
		want := asynq.TaskStateCompleted
		if it.State == results.StateFailed {
			want = asynq.TaskStateArchived // a permanent failure: SkipRetry
		}
		info := waitTask(t, insp, id, want)
		got := decodeResult[itemResult](t, info)
		if got.State != it.State || got.Attempts != it.Attempts || got.ThreadID != it.ThreadID ||
			got.InputTokens != int64(it.Usage.InputTokens) || got.OutputTokens != int64(it.Usage.OutputTokens) ||
			got.LatencyMS == nil || *got.LatencyMS != it.LatencyMS || !slices.Equal(got.InteractionIDs, it.InteractionIDs) {
			t.Errorf("item %s: result %s, record %+v", it.Key, info.Result, it)
		}
		switch it.State {
		case results.StateSucceeded:
			if got.OutputTokens == 0 || len(got.InteractionIDs) != 1 || got.Error != "" {
				t.Errorf("succeeded item %s: result %s", it.Key, info.Result)
			}
			if info.Retention != worker.DefaultItemRetention {
				t.Errorf("item %s retention %s, want %s", it.Key, info.Retention, worker.DefaultItemRetention)
			}
		case results.StateFailed:
			if !strings.Contains(got.Error, "400") || !strings.Contains(got.Error, "max_tokens") {
				t.Errorf("failed item %s: result error %q lacks the server's message", it.Key, got.Error)
			}
		}
	}

	// Everything asynq shows of the run has a tool-friendly id.
	completed, err := insp.ListCompletedTasks(worker.DefaultQueue, asynq.PageSize(100))
	if err != nil {
		t.Fatal(err)
	}
	// 4 items (the failed one is archived), run:start, 3 advances, finalize.
	if len(completed) != 9 {
		var ids []string
		for _, c := range completed {
			ids = append(ids, c.ID)
		}
		t.Errorf("%d completed tasks, want 9: %v", len(completed), ids)
	}
	for _, c := range completed {
		if !jobs.TaskIDRe.MatchString(c.ID) || strings.Contains(c.ID, "/") {
			t.Errorf("task id %q", c.ID)
		}
		if len(c.Result) == 0 {
			t.Errorf("completed task %s (%s) has no result", c.ID, c.Type)
		}
	}
}

func TestItemRetentionNegativeKeepsNoCompletedItem(t *testing.T) {
	e := newEnv(t, simulator.Config{Async: true})
	e.folder("Inbox", 2)
	e.startWorker(func(c *worker.Config) { c.ItemRetention = -1 })
	p := e.pipeline(`
version: 1
name: noretain
workspace: { project: proj_test }
artifacts:
  docs: { folder: "Inbox" }
steps:
  - id: summarize
    for_each: docs
    max_tokens: 30
    prompt: "Summarize {{ .Artifact.Name }}."
`)
	run := e.start(p, "noretain-1")
	st := e.wait(run, time.Minute)
	insp := asynq.NewInspector(e.asynqOpt())
	defer insp.Close()
	waitTask(t, insp, jobs.Finalize{RunID: run}.TaskID(), asynq.TaskStateCompleted)
	for _, it := range readItems(t, resultsFile(st.ResultDir)) {
		id := jobs.Item{RunID: run, Item: pipelines.Item{Step: it.Step, Key: it.Key}}.TaskID()
		if info, err := insp.GetTaskInfo(worker.DefaultQueue, id); !errors.Is(err, asynq.ErrTaskNotFound) {
			t.Errorf("item task %s: %+v, %v; want it deleted once done", id, info, err)
		}
	}
}
