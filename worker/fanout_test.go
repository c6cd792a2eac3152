package worker_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/threadmill/threadmill/runstore"
	"github.com/threadmill/threadmill/worker"
	"github.com/threadmill/threadmill/workspace/simulator"
)

// With a fan-out window, a step's items are enqueued a window at a time:
// the queue never holds more of them than the window (plus, for a moment,
// the items just recorded whose tasks asynq has not yet marked done: at
// most one per worker slot), and every item runs once.
func TestFanOutWindowBoundsTheQueue(t *testing.T) {
	const items, window, concurrency = 60, 8, 3
	e := newEnv(t, simulator.Config{Latency: 20 * time.Millisecond})
	e.folder("Inbox", items)
	e.startWorker(func(c *worker.Config) {
		c.Concurrency = concurrency
		c.FanOutWindow = window
	})
	insp := asynq.NewInspectorFromRedisClient(e.rdb())
	defer insp.Close()
	ctx, stop := context.WithCancel(context.Background())
	var most atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for ctx.Err() == nil {
			n := 0
			for _, list := range []func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error){insp.ListPendingTasks, insp.ListActiveTasks, insp.ListScheduledTasks, insp.ListRetryTasks} {
				tasks, err := list(worker.DefaultQueue, asynq.PageSize(1000))
				if err != nil {
					continue
				}
				for _, ti := range tasks {
					if ti.Type == "step:item" {
						n++
					}
				}
			}
			if int64(n) > most.Load() {
				most.Store(int64(n))
			}
			time.Sleep(2 * time.Millisecond)
		}
	})
	p := e.pipeline(`
version: 1
name: windowed
workspace: { project: proj_test }
artifacts:
  docs: { folder: "Inbox" }
steps:
  - id: summarize
    for_each: docs
    max_tokens: 40
    prompt: "Summarize {{ .Artifact.Name }}."
  - id: brief
    needs: [summarize]
    max_tokens: 80
    prompt: "Brief: {{ outputs .Steps.summarize }}"
`)
	st := e.wait(e.start(p, "windowed-1"), time.Minute)
	stop()
	wg.Wait()
	if st.Status != runstore.StatusSucceeded || st.Succeeded != items+1 {
		t.Fatalf("status %s, %d succeeded; want succeeded, %d", st.Status, st.Succeeded, items+1)
	}
	assertOneInteractionEach(t, e, items+1)
	if m := most.Load(); m > window+concurrency || m == 0 {
		t.Errorf("at most %d item tasks seen in the queue at once, want 1..%d", m, window+concurrency)
	}
	got := readItems(t, resultsFile(st.ResultDir))
	for i, it := range got[:items] {
		if it.Index != i || it.Step != "summarize" {
			t.Fatalf("result %d is %s#%d, want summarize#%d in plan order", i, it.Step, it.Index, i)
		}
	}
}

// The windowed fan-out keeps the paid path exact: with creates whose answers
// are lost, interactions that 404 after their 201, and 429s, every item is
// paid for one interaction, whatever window its task came in.
func TestWindowedFanOutUnderFaultsPaysOnce(t *testing.T) {
	const items = 60
	e := newEnv(t, simulator.Config{Async: true, Latency: 20 * time.Millisecond,
		Faults: simulator.Faults{LostCreate: 0.15, ReplicaLag: 0.15, LagDuration: 300 * time.Millisecond,
			TooMany429: 0.05, RetryAfter: time.Second, Seed: 11}})
	e.folder("Inbox", items)
	e.startWorker(func(c *worker.Config) {
		c.Concurrency = 6
		c.FanOutWindow = 10
	})
	st := e.wait(e.start(e.pipeline(faultsPipeline), "windowed-faults-1"), 3*time.Minute)
	f := e.sim.Counters().Faults
	if f["lost_create"] == 0 || f["replica_lag"] == 0 || f["429"] == 0 {
		t.Fatalf("faults injected %v: each kind is needed", f)
	}
	assertPaidOnce(t, e, st, items)
}
