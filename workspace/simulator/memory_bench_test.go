package simulator_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/threadmill/threadmill/workspace"
	"github.com/threadmill/threadmill/workspace/simulator"
)

// BenchmarkFinishedItemMemory measures the heap the simulator keeps per
// finished item of a threadmill run: over real HTTP with workspace.Client,
// each item validates its request, creates a thread, creates an
// interaction over one ~2 KiB artifact (an answer of 1–2 KiB), reads its
// stream to the end and GETs it, as cmd/threadmill's BenchmarkPeakMemory
// drives it. The corpus is seeded before the first reading; the heap is
// read after runtime.GC before and after the items, with the simulator
// and its server still up. THREADMILL_BENCH_ITEMS sets the number of
// items (default 20,000). It reports heap bytes per finished item
// (B/item). THREADMILL_BENCH_HEAPPROFILE=path writes heap profiles at both
// readings, path.before and path (compare them with go tool pprof
// -sample_index=inuse_space -base path.before path).
func BenchmarkFinishedItemMemory(b *testing.B) {
	n := 20000
	if v := os.Getenv("THREADMILL_BENCH_ITEMS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			b.Fatalf("THREADMILL_BENCH_ITEMS=%q: want a positive integer", v)
		}
	}
	const workers = 16
	for range b.N {
		sim := simulator.New(simulator.Config{})
		folder := sim.AddArtifact(simulator.ArtifactSpec{Name: "Bench", Type: workspace.ArtifactTypeFolder})
		ids := make([]string, n)
		for i := range n {
			ids[i] = sim.AddArtifact(simulator.ArtifactSpec{
				Name: fmt.Sprintf("doc-%07d.md", i), ParentID: folder.ID, Content: memoryBenchDocument(i),
			}).ID
		}
		srv := httptest.NewServer(sim)
		hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
		c, err := workspace.New(srv.URL, workspace.WithOrg("default"), workspace.WithHTTPClient(hc))
		if err != nil {
			b.Fatal(err)
		}
		profile := os.Getenv("THREADMILL_BENCH_HEAPPROFILE")
		before := heapInUse()
		writeHeapProfile(b, profile, ".before")

		var next atomic.Int64
		var answered atomic.Int64
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for i := int(next.Add(1)) - 1; i < n && !b.Failed(); i = int(next.Add(1)) - 1 {
					answered.Add(int64(memoryBenchItem(b, c, i, ids[i])))
				}
			})
		}
		wg.Wait()
		if b.Failed() {
			b.FailNow()
		}
		after := heapInUse()
		perItem := float64(after-before) / float64(n)
		b.ReportMetric(perItem, "B/item")
		b.ReportMetric(float64(answered.Load())/float64(n), "answer-B/item")
		b.Logf("N=%d: heap %d -> %d bytes: %.0f B per finished item (answers %.0f B on average)",
			n, before, after, perItem, float64(answered.Load())/float64(n))
		writeHeapProfile(b, profile, "")
		hc.CloseIdleConnections()
		srv.Close()
		sim.Close()
	}
}

// memoryBenchItem runs item i as a threadmill worker does and returns the
// length of its answer.
func memoryBenchItem(b *testing.B, c *workspace.Client, i int, artifactID string) int {
	ctx := context.Background()
	name := fmt.Sprintf("doc-%07d.md", i)
	req := workspace.ChatRequest{
		Messages:  []workspace.Message{workspace.UserText("Summarize " + name + " in ten bullets: the figures, the teams and the releases.")},
		MaxTokens: new(512),
	}
	if err := c.ValidateChat(ctx, req); err != nil {
		b.Errorf("item %d: validate: %v", i, err)
		return 0
	}
	th, err := c.CreateThread(ctx, project, workspace.CreateThreadRequest{
		Name: "memory · summarize · run_0123456789abcdef · " + name, Visibility: workspace.VisibilityPrivate,
	})
	if err != nil {
		b.Errorf("item %d: create thread: %v", i, err)
		return 0
	}
	req.CorrelationID = "threadmill:run_0123456789abcdef:summarize/" + artifactID + ":0"
	in, err := c.CreateInteraction(ctx, th.ID, workspace.CreateInteractionRequest{
		ThreadID: th.ID, PGPT: req, ArtifactIDs: []string{artifactID},
	})
	if err != nil {
		b.Errorf("item %d: create interaction: %v", i, err)
		return 0
	}
	res, err := c.StreamInteraction(ctx, in.ID, nil)
	if err != nil {
		b.Errorf("item %d: stream: %v", i, err)
		return 0
	}
	got, err := c.GetInteraction(ctx, in.ID)
	if err != nil {
		b.Errorf("item %d: get: %v", i, err)
		return 0
	}
	if out := got.Output(); out != res.Text() || out == "" {
		b.Errorf("item %d: GET gave %q, the stream %q", i, out, res.Text())
	}
	return len(got.Output())
}

// memoryBenchDocument is artifact i's ~2 KiB content, as in cmd/threadmill's
// BenchmarkPeakMemory: sentences enough for an answer of ten bullets.
func memoryBenchDocument(i int) string {
	var sb strings.Builder
	for j := range 14 {
		fmt.Fprintf(&sb, "In quarter %d the platform team of document %d shipped release %d.%d and the figures rose by %d percent across the regions. ",
			j%4+1, i, i%9, j, (i+j)%17)
	}
	return sb.String()
}

// writeHeapProfile writes a heap profile to path+suffix, when path is set.
func writeHeapProfile(b *testing.B, path, suffix string) {
	if path == "" {
		return
	}
	f, err := os.Create(path + suffix)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := pprof.WriteHeapProfile(f); err != nil {
		b.Fatal(err)
	}
}

// heapInUse returns the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
