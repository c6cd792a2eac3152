package worker

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/threadmill/threadmill/internal/redistest"
	"github.com/threadmill/threadmill/workspace"
)

// Through a real asynq server: a retry or a rescue copy runs only when it
// claims its attempt first; the other copy of the same attempt completes
// without running. Each task fails its first attempt, then succeeds.
func TestExclusiveRunsEachAttemptOnce(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	api, err := workspace.New("http://127.0.0.1:1", workspace.WithToken("unused"))
	if err != nil {
		t.Fatal(err)
	}
	w, err := New(Config{RDB: rdb, API: api})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// "taken" lost its second attempt to a rescue copy, and "rescued"'s
	// rescue copy lost to asynq's retry of it.
	for _, c := range []struct{ id, by string }{{"taken", "rescue"}, {"rescued", "retry"}} {
		if ok, err := w.claimAttempt(ctx, c.id, 1, c.by); !ok || err != nil {
			t.Fatalf("claim %s: %v %v", c.id, ok, err)
		}
	}

	var mu sync.Mutex
	runs := map[string]int{}
	h := w.exclusive(asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		id, _ := asynq.GetTaskID(ctx)
		mu.Lock()
		defer mu.Unlock()
		runs[id]++
		if runs[id] == 1 && t.Headers()[rescueHeader] == "" {
			return errors.New("transient")
		}
		return nil
	}))
	const q = "exclusive"
	srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{
		Concurrency: 4, Queues: map[string]int{q: 1}, LogLevel: asynq.FatalLevel,
		RetryDelayFunc:    func(int, error, *asynq.Task) time.Duration { return 0 },
		TaskCheckInterval: 20 * time.Millisecond, DelayedTaskCheckInterval: 20 * time.Millisecond,
	})
	if err := srv.Start(h); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	client := asynq.NewClientFromRedisClient(rdb)
	tasks := map[string]*asynq.Task{
		"taken": asynq.NewTask("k", []byte("{}")),
		"free":  asynq.NewTask("k", []byte("{}")),
		// Rescue copies: of a task whose attempt is free, and of one whose
		// attempt asynq's retry took.
		"taken:rescue1":   asynq.NewTaskWithHeaders("k", []byte("{}"), map[string]string{rescueHeader: "1 free-orphan"}),
		"rescued:rescue1": asynq.NewTaskWithHeaders("k", []byte("{}"), map[string]string{rescueHeader: "1 rescued"}),
	}
	for id, task := range tasks {
		if _, err := client.Enqueue(task, asynq.Queue(q), asynq.TaskID(id), asynq.MaxRetry(3), asynq.Retention(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	insp := asynq.NewInspectorFromRedisClient(rdb)
	deadline := time.Now().Add(time.Minute)
	for id := range tasks {
		for {
			info, err := insp.GetTaskInfo(q, id)
			if err == nil && info.State == asynq.TaskStateCompleted {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("task %s did not complete: %+v %v", id, info, err)
			}
			time.Sleep(10 * time.Millisecond) // polling a condition, bounded by the deadline
		}
	}
	mu.Lock()
	defer mu.Unlock()
	want := map[string]int{"taken": 1, "free": 2, "taken:rescue1": 1, "rescued:rescue1": 0}
	for id, n := range want {
		if runs[id] != n {
			t.Errorf("task %s ran %d times, want %d", id, runs[id], n)
		}
	}
	if by, _ := rdb.Get(ctx, w.attemptKey("free", 1)).Result(); by != "retry" {
		t.Errorf("the retry of free claimed its attempt as %q", by)
	}
	if by, _ := rdb.Get(ctx, w.attemptKey("free-orphan", 1)).Result(); by != "rescue" {
		t.Errorf("the rescue copy claimed its attempt as %q", by)
	}
}

// A retry that the API only paced (not a failure: asynq delivers it again
// with the same retry count) gives its claim back, so that its next
// delivery runs instead of being skipped as a duplicate.
func TestExclusivePacedRetryRunsAgain(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	api, err := workspace.New("http://127.0.0.1:1", workspace.WithToken("unused"))
	if err != nil {
		t.Fatal(err)
	}
	w, err := New(Config{RDB: rdb, API: api})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var deliveries []int
	h := w.exclusive(asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		n, _ := asynq.GetRetryCount(ctx)
		mu.Lock()
		defer mu.Unlock()
		deliveries = append(deliveries, n)
		switch len(deliveries) {
		case 1:
			return errors.New("transient") // a failure: retry count 1 next
		case 2:
			return &PacedError{Wait: time.Millisecond} // paced: retry count stays 1
		}
		return nil
	}))
	const q = "paced"
	srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{
		Concurrency: 1, Queues: map[string]int{q: 1}, LogLevel: asynq.FatalLevel,
		RetryDelayFunc:    func(int, error, *asynq.Task) time.Duration { return 0 },
		IsFailure:         isFailure,
		TaskCheckInterval: 20 * time.Millisecond, DelayedTaskCheckInterval: 20 * time.Millisecond,
	})
	if err := srv.Start(h); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	client := asynq.NewClientFromRedisClient(rdb)
	if _, err := client.Enqueue(asynq.NewTask("k", []byte("{}")), asynq.Queue(q), asynq.TaskID("t1"), asynq.MaxRetry(5), asynq.Retention(time.Hour)); err != nil {
		t.Fatal(err)
	}
	insp := asynq.NewInspectorFromRedisClient(rdb)
	deadline := time.Now().Add(30 * time.Second)
	for {
		info, err := insp.GetTaskInfo(q, "t1")
		if err == nil && info.State == asynq.TaskStateCompleted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("task did not complete: %+v %v", info, err)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, bounded by the deadline
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []int{0, 1, 1}; !slices.Equal(deliveries, want) {
		t.Errorf("deliveries by retry count %v, want %v: the paced retry's next delivery must run", deliveries, want)
	}
}
