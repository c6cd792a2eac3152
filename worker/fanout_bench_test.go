package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/threadmill/threadmill/worker"
	"github.com/threadmill/threadmill/workspace/simulator"
)

// BenchmarkFanOut measures a run's fan-out end to end: the worker lists N
// artifacts from the simulator over HTTP, plans a step over them and
// enqueues N item tasks into a real Redis (N is THREADMILL_BENCH_ITEMS,
// default 100,000; the goal is 5 s for 100,000). The worker has one slot,
// so no item runs before the fan-out is done. It reports the seconds from
// the run's start to its step being enqueued.
//
//	go test -run '^$' -bench FanOut -benchtime 1x ./worker/
func BenchmarkFanOut(b *testing.B) {
	n := envInt("THREADMILL_BENCH_ITEMS", 100_000)
	for i := range b.N {
		e := newEnv(b, simulator.Config{})
		e.folder("Inbox", n)
		e.startWorker(func(c *worker.Config) { c.Concurrency = 1 })
		p := e.pipeline(`
version: 1
name: fanout
workspace: { project: proj_test }
artifacts:
  docs: { folder: "Inbox" }
steps:
  - id: summarize
    for_each: docs
    prompt: "Summarize {{ .Artifact.Name }}."
`)
		b.ResetTimer()
		start := time.Now()
		run := e.start(p, "fanout-"+string(rune('a'+i)))
		for {
			done, err := e.store.Enqueued(context.Background(), run, "summarize")
			if err != nil {
				b.Fatal(err)
			}
			if done {
				break
			}
			time.Sleep(5 * time.Millisecond) // polling a condition, bounded by the benchmark's own timeout
		}
		took := time.Since(start)
		b.StopTimer()
		_, total, err := e.store.StepProgress(context.Background(), run, "summarize")
		if err != nil || total != n {
			b.Fatalf("step planned with %d items (%v), want %d", total, err, n)
		}
		b.ReportMetric(took.Seconds(), "fanout_s")
		b.ReportMetric(float64(n)/took.Seconds(), "items/s")
	}
}
