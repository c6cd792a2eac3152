package worker_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/threadmill/threadmill/jobs"
	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/runstore"
	"github.com/threadmill/threadmill/worker"
	"github.com/threadmill/threadmill/workspace"
	"github.com/threadmill/threadmill/workspace/simulator"
)

// BenchmarkRateLimited runs N items against a simulator that accepts R
// requests per second (and answers 429 with Retry-After beyond), with no
// limit in the pipeline, and reports:
//
//	goodput-ratio  requests the server accepted per second, over R
//	429-share      share of all requests answered 429
//	items/s        items finished per second
//
// Knobs: THREADMILL_BENCH_ITEMS (N, default 600), THREADMILL_BENCH_RPS (R,
// default 40), THREADMILL_BENCH_CONCURRENCY (default 64),
// THREADMILL_BENCH_LATENCY (default 50ms). Run with:
//
//	go test -run '^$' -bench RateLimited -benchtime 1x ./worker/
func BenchmarkRateLimited(b *testing.B) {
	n := envInt("THREADMILL_BENCH_ITEMS", 600)
	rps := envInt("THREADMILL_BENCH_RPS", 40)
	c := envInt("THREADMILL_BENCH_CONCURRENCY", 64)
	lat := envDuration("THREADMILL_BENCH_LATENCY", 50*time.Millisecond)
	for i := range b.N {
		sim := simulator.New(simulator.Config{ProjectID: "proj_bench", Token: testToken, Latency: lat, RateLimit: float64(rps)})
		f := sim.AddArtifact(simulator.ArtifactSpec{Name: "Inbox", Type: workspace.ArtifactTypeFolder})
		for j := range n {
			sim.AddArtifact(simulator.ArtifactSpec{Name: fmt.Sprintf("doc-%06d.md", j), ParentID: f.ID,
				Content: fmt.Sprintf("Ticket %d: the export failed twice.", j)})
		}
		hs := httptest.NewServer(sim)
		bw := startBenchWorker(b, hs.URL, c, http.DefaultTransport, func(cfg *worker.Config) { cfg.Logger = testLogger(b) })
		ctx := bw.ctx
		p, err := pipelines.Parse("bench.yaml", []byte(fmt.Sprintf(`
version: 1
name: ratelimited
workspace: { project: proj_bench }
defaults: { max_tokens: 64 }
limits: { concurrency: %d, max_attempts: 3 }
artifacts:
  docs: { folder: "Inbox" }
steps:
  - id: summarize
    for_each: docs
    prompt: "Summarize {{ .Artifact.Name }} in one sentence."
`, c)), func(string) (string, bool) { return "", false })
		if err != nil {
			b.Fatal(err)
		}
		q, store := bw.q, runstore.New(bw.rdb, "")
		runID := fmt.Sprintf("ratelimited-%d", i)
		start := time.Now()
		if err := jobs.StartRun(ctx, q, store, p, pipelines.RunInfo{ID: runID, Time: start}, asynq.Queue(worker.DefaultQueue)); err != nil {
			b.Fatal(err)
		}
		st, err := store.Wait(ctx, runID)
		if err != nil {
			b.Fatal(err)
		}
		elapsed := time.Since(start)
		bw.stop()
		hs.Close()
		counters := sim.Counters()
		sim.Close()
		total := 0
		for _, k := range counters.PerSecond {
			total += k
		}
		accepted := total - counters.RateLimited
		goodput := float64(accepted) / elapsed.Seconds() / float64(rps)
		share := float64(counters.RateLimited) / float64(total)
		b.ReportMetric(goodput, "goodput-ratio")
		b.ReportMetric(share, "429-share")
		b.ReportMetric(float64(n)/elapsed.Seconds(), "items/s")
		b.Logf("N=%d R=%d/s C=%d L=%v: %d succeeded, %d failed in %v; %d requests (%.1f/item), %d answered 429 (%.2f%%); accepted %.1f/s = %.3f of R",
			n, rps, c, lat, st.Succeeded, st.Failed, elapsed.Round(time.Millisecond), total, float64(total)/float64(n),
			counters.RateLimited, 100*share, float64(accepted)/elapsed.Seconds(), goodput)
		if st.Succeeded != n {
			b.Errorf("%d of %d items succeeded (status %s, %s)", st.Succeeded, n, st.Status, st.Error)
		}
	}
}

var _ http.Handler = (*simulator.Server)(nil)
