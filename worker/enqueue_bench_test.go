package worker

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/threadmill/threadmill/internal/redistest"
	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/runstore"
	"github.com/threadmill/threadmill/workspace"
)

// BenchmarkPlanAndEnqueue plans a for_each step over N artifacts and
// enqueues its N item tasks into a real Redis, as run:start does (artifact
// listing excluded). N is THREADMILL_BENCH_ITEMS, default 100000; the target
// is 5 s for 100,000 items. Run with:
//
//	go test -run '^$' -bench PlanAndEnqueue -benchtime 1x ./worker/
func BenchmarkPlanAndEnqueue(b *testing.B) {
	n := envInt("THREADMILL_BENCH_ITEMS", 100_000)
	p, err := pipelines.Parse("bench.yaml", []byte(`
version: 1
name: bench
workspace: { project: proj_bench }
artifacts:
  docs: { folder: "Inbox" }
steps:
  - id: summarize
    for_each: docs
    prompt: "Summarize {{ .Artifact.Name }} in three bullets."
`), func(string) (string, bool) { return "", false })
	if err != nil {
		b.Fatal(err)
	}
	refs := make([]pipelines.ArtifactRef, n)
	for i := range refs {
		refs[i] = pipelines.ArtifactRef{ID: fmt.Sprintf("artifact_%08d", i), Name: fmt.Sprintf("doc-%06d.md", i), Type: "Document", Folder: "Inbox"}
	}
	sets := map[string][]pipelines.ArtifactRef{"docs": refs}
	for range b.N {
		srv := redistest.Start(b)
		rdb := srv.Client(b)
		api, _ := workspace.New("http://127.0.0.1:1")
		w, err := New(Config{RDB: rdb, API: api})
		if err != nil {
			b.Fatal(err)
		}
		client, closeClient := newEnqueuer(rdb)
		w.client = client
		rc := &runCtx{id: "bench-1", spec: &runstore.Spec{Pipeline: p}, log: w.log}
		start := time.Now()
		sp, err := pipelines.NewStepPlan(context.Background(), p, "summarize", pipelines.RunInfo{ID: "bench-1"}, pipelines.SetsOf(sets), nil)
		if err == nil {
			err = checkPlan(context.Background(), sp)
		}
		if err != nil {
			b.Fatal(err)
		}
		planned := time.Since(start)
		if _, err := w.enqueueItems(context.Background(), rc, sp.Items(context.Background()), func(pipelines.Item) bool { return false }, func(string) bool { return false }, 0); err != nil {
			b.Fatal(err)
		}
		total := time.Since(start)
		closeClient()
		b.ReportMetric(planned.Seconds(), "plan-s")
		b.ReportMetric((total - planned).Seconds(), "enqueue-s")
		b.ReportMetric(total.Seconds(), "total-s")
		b.Logf("%d items: plan %v, enqueue %v, total %v (target 5s for 100000)", n, planned.Round(time.Millisecond),
			(total - planned).Round(time.Millisecond), total.Round(time.Millisecond))
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
