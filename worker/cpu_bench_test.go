package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"reflect"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/threadmill/threadmill/internal/redistest"
	"github.com/threadmill/threadmill/jobs"
	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/runstore"
	"github.com/threadmill/threadmill/worker"
	"github.com/threadmill/threadmill/workspace"
)

// BenchmarkWorkerCPU compares the worker's CPU per item with that of a bare
// asynq handler making the same API calls (issue 11: at most 1.3 times).
//
// Knobs (environment variables, as for BenchmarkThroughput):
//
//	THREADMILL_BENCH_ITEMS        N, items (default 5000)
//	THREADMILL_BENCH_LATENCY      L, simulator latency per interaction (default 100ms)
//	THREADMILL_BENCH_CONCURRENCY  C, concurrency of both (default 64)
//	THREADMILL_BENCH_ASYNC        1 (default): interactions complete in the
//	                              background and are followed on their stream
//	THREADMILL_BENCH_ROUNDS       rounds of (threadmill, bare), alternating
//	                              (default 1)
//
// Run with:
//
//	go test -run '^$' -bench WorkerCPU -benchtime 1x ./worker/
//
// Add -cpuprofile cpu.out to see where the difference goes: each side's
// goroutines carry the profile label side=threadmill or side=bare
// (go tool pprof -tagfocus side=bare -top cpu.out).
//
// One simulator child process serves both sides; each round gets a fresh
// Redis for each. CPU is this process's (getrusage: user + system; the
// simulator and redis-server are children, not counted), after runtime.GC:
//
//   - threadmill: BenchmarkThroughput's setup; measured from jobs.StartRun
//     to the run's end, so it includes run:start (listing the folder,
//     planning, enqueueing the items), the items, step:advance and
//     run:finalize (the result files).
//   - bare: an asynq.Server of concurrency C on its own Redis, whose
//     handler decodes a small JSON payload (the item's rendered request as
//     pipelines.Plan renders it for the worker, and what the thread and the
//     interaction need) and calls ValidateChat, CreateThread,
//     CreateInteraction and WaitInteraction through a workspace.Client built
//     as the worker's is. Listing the folder, planning and enqueueing the N
//     tasks (one asynq.Client.Enqueue each) come first and are measured
//     apart (bare-setup-cpu-ms/item, logged with the ratio it would give);
//     the measured part starts the server and ends when N handlers have
//     returned successfully. cpu-ratio is thus the stricter comparison:
//     threadmill's listing, planning and enqueueing count against it;
//     cpu-ratio-with-setup counts the bare side's too.
//
// Both sides' API requests are counted by the simulator (its counters are
// reset before each side); the benchmark fails unless both made the same
// requests, route by route.
func BenchmarkWorkerCPU(b *testing.B) {
	n := envInt("THREADMILL_BENCH_ITEMS", 5000)
	c := envInt("THREADMILL_BENCH_CONCURRENCY", 64)
	rounds := envInt("THREADMILL_BENCH_ROUNDS", 1)
	for range b.N {
		addr := startSimulatorProcess(b)
		var tm, bare, setup []cpuSample
		for r := range rounds {
			tm = append(tm, threadmillCPU(b, addr, n, c, fmt.Sprintf("bench-%d", r+1)))
			s, bs := bareCPU(b, addr, n, c, fmt.Sprintf("bare-%d", r+1))
			bare, setup = append(bare, bs), append(setup, s)
			if !reflect.DeepEqual(tm[r].requests, bare[r].requests) {
				b.Fatalf("round %d: the two sides made different API requests:\nthreadmill %v\nbare       %v", r+1, tm[r].requests, bare[r].requests)
			}
			b.Logf("round %d: threadmill %s; bare %s, + setup %v: ratio %.3f (%.3f with the bare setup); %.2f API requests/item each",
				r+1, tm[r].describe(n), bare[r].describe(n), setup[r].cpu.Round(time.Millisecond),
				tm[r].cpu.Seconds()/bare[r].cpu.Seconds(), tm[r].cpu.Seconds()/(bare[r].cpu+setup[r].cpu).Seconds(), float64(tm[r].requests.total())/float64(n))
		}
		tmCPU, bareCPU, setupCPU := sumCPU(tm), sumCPU(bare), sumCPU(setup)
		perItem := func(d time.Duration) float64 { return d.Seconds() * 1000 / float64(n*rounds) }
		b.ReportMetric(perItem(tmCPU), "threadmill-cpu-ms/item")
		b.ReportMetric(perItem(bareCPU), "bare-cpu-ms/item")
		b.ReportMetric(perItem(setupCPU), "bare-setup-cpu-ms/item")
		b.ReportMetric(tmCPU.Seconds()/bareCPU.Seconds(), "cpu-ratio")
		b.ReportMetric(tmCPU.Seconds()/(bareCPU+setupCPU).Seconds(), "cpu-ratio-with-setup")
		b.ReportMetric(float64(sumAllocs(tm))/float64(n*rounds), "threadmill-allocs/item")
		b.ReportMetric(float64(sumAllocs(bare))/float64(n*rounds), "bare-allocs/item")
		b.ReportMetric(meanRate(tm, n), "threadmill-items/s")
		b.ReportMetric(meanRate(bare, n), "bare-items/s")
		b.Logf("route counts per side: %v", tm[0].requests)
	}
}

// cpuSample is one side's measurement.
type cpuSample struct {
	cpu, elapsed time.Duration
	requests     routeCounts // API requests, as the simulator counted them
	runtime      runtimeStats
}

// runtimeStats are the Go runtime's figures over a sample: the garbage
// collector's CPU (its estimate: mark assists, workers and pauses) and the
// bytes allocated.
type runtimeStats struct {
	gcCPU        time.Duration
	allocBytes   uint64
	allocObjects uint64
}

var runtimeMetrics = []metrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}, {Name: "/gc/heap/allocs:bytes"}, {Name: "/gc/heap/allocs:objects"}}

// readRuntime returns the runtime's figures so far.
func readRuntime() runtimeStats {
	ms := slices.Clone(runtimeMetrics)
	metrics.Read(ms)
	return runtimeStats{gcCPU: time.Duration(ms[0].Value.Float64() * float64(time.Second)),
		allocBytes: ms[1].Value.Uint64(), allocObjects: ms[2].Value.Uint64()}
}

func (r runtimeStats) since(r0 runtimeStats) runtimeStats {
	return runtimeStats{gcCPU: r.gcCPU - r0.gcCPU, allocBytes: r.allocBytes - r0.allocBytes, allocObjects: r.allocObjects - r0.allocObjects}
}

// describe says what a sample of n items cost.
func (s cpuSample) describe(n int) string {
	return fmt.Sprintf("%v CPU (GC %v), %.1f KB in %.0f allocations/item, %.0f items/s", s.cpu.Round(time.Millisecond),
		s.runtime.gcCPU.Round(time.Millisecond), float64(s.runtime.allocBytes)/1024/float64(n), float64(s.runtime.allocObjects)/float64(n), s.rate(n))
}

func (s cpuSample) rate(n int) float64 { return float64(n) / s.elapsed.Seconds() }

func sumCPU(ss []cpuSample) time.Duration {
	var d time.Duration
	for _, s := range ss {
		d += s.cpu
	}
	return d
}

func sumAllocs(ss []cpuSample) uint64 {
	var a uint64
	for _, s := range ss {
		a += s.runtime.allocObjects
	}
	return a
}

func meanRate(ss []cpuSample, n int) float64 {
	var e time.Duration
	for _, s := range ss {
		e += s.elapsed
	}
	return float64(n*len(ss)) / e.Seconds()
}

// threadmillCPU runs the benchmark pipeline as run id on a fresh threadmill
// worker and returns the CPU it took from jobs.StartRun to the run's end.
func threadmillCPU(b *testing.B, addr string, n, c int, id string) cpuSample {
	defer labelSide("threadmill")()
	bw := startBenchWorker(b, addr, c, benchTransport(c))
	defer bw.stop()
	p := benchPipeline(b, c, 0)
	store := runstore.New(bw.rdb, "")
	resetSimCounters(b, addr)
	runtime.GC()
	cpu0, rt0 := processCPU(), readRuntime()
	start := time.Now()
	if err := jobs.StartRun(bw.ctx, bw.q, store, p, pipelines.RunInfo{ID: id, Time: start}, asynq.Queue(worker.DefaultQueue)); err != nil {
		b.Fatal(err)
	}
	st, err := store.Wait(bw.ctx, id)
	if err != nil {
		b.Fatal(err)
	}
	s := cpuSample{cpu: processCPU() - cpu0, elapsed: time.Since(start), runtime: readRuntime().since(rt0)}
	if st.Status != runstore.StatusSucceeded || st.Succeeded != n || st.Total != n {
		b.Fatalf("threadmill run %s: status %s, %d of %d items succeeded (total %d): %s", id, st.Status, st.Succeeded, n, st.Total, st.Error)
	}
	s.requests = simRouteCounts(b, addr)
	return s
}

// bareItem is the bare handler's task payload: what the worker sends for
// an item, rendered beforehand.
type bareItem struct {
	RunID            string                `json:"run_id"`
	Key              string                `json:"key"`
	Project          string                `json:"project"`
	ThreadName       string                `json:"thread_name"`
	ThreadVisibility string                `json:"thread_visibility"`
	ArtifactIDs      []string              `json:"artifact_ids"`
	AllArtifacts     bool                  `json:"all_artifacts,omitempty"`
	Agent            string                `json:"agent,omitempty"`
	Request          workspace.ChatRequest `json:"request"`
}

const bareKind = "bare:item"

// bareHandler validates, creates a thread, creates the interaction and
// waits for it: the worker's API calls for a one-turn thread-mode item,
// and nothing else. ok counts the items that succeeded; done is called
// with the count after each.
func bareHandler(api *workspace.Client, ok *atomic.Int64, done func(int64)) asynq.HandlerFunc {
	return func(ctx context.Context, t *asynq.Task) error {
		var it bareItem
		if err := json.Unmarshal(t.Payload(), &it); err != nil {
			return fmt.Errorf("bare: decode: %v: %w", err, asynq.SkipRetry)
		}
		ctx = workspace.ContextWithProject(ctx, it.Project)
		if err := api.ValidateChat(ctx, it.Request); err != nil {
			return fmt.Errorf("bare: validate: %w", err)
		}
		th, err := api.CreateThread(ctx, it.Project, workspace.CreateThreadRequest{Name: it.ThreadName, Visibility: it.ThreadVisibility})
		if err != nil {
			return fmt.Errorf("bare: create thread: %w", err)
		}
		req := it.Request
		req.CorrelationID = worker.CorrelationID(it.RunID, it.Key, 0)
		in, err := api.CreateInteraction(ctx, th.ID, workspace.CreateInteractionRequest{
			ThreadID: th.ID, PGPT: req, ArtifactIDs: it.ArtifactIDs, AllArtifacts: it.AllArtifacts, Agent: it.Agent})
		if err != nil {
			return fmt.Errorf("bare: create interaction: %w", err)
		}
		if !in.Terminal() {
			id := in.ID
			if in, err = api.WaitInteraction(ctx, id); err != nil {
				return fmt.Errorf("bare: wait for interaction %s: %w", id, err)
			}
		}
		if in.State != workspace.StateCompleted {
			return fmt.Errorf("bare: interaction %s ended %s: %w", in.ID, in.State, asynq.SkipRetry)
		}
		done(ok.Add(1))
		return nil
	}
}

// bareCPU lists the folder, plans the step as the worker would and
// enqueues one bare task per item on a fresh Redis (setup), then serves
// them with an asynq.Server of concurrency c until all succeeded (the
// measured sample).
func bareCPU(b *testing.B, addr string, n, c int, id string) (setup, s cpuSample) {
	defer labelSide("bare")()
	srv := redistest.Start(b)
	redisOpt := asynq.RedisClientOpt{Network: "unix", Addr: srv.Socket, PoolSize: 2 * c}
	api := benchAPI(b, addr, benchTransport(c))
	p := benchPipeline(b, c, 0)
	ctx := context.Background()
	resetSimCounters(b, addr)
	runtime.GC()
	cpu0 := processCPU()
	start := time.Now()
	run := pipelines.RunInfo{ID: id, Time: start}
	sets, err := pipelines.Resolve(ctx, api, p, run)
	if err != nil {
		b.Fatal(err)
	}
	items, err := pipelines.Plan(p, "summarize", run, sets, nil)
	if err != nil {
		b.Fatal(err)
	}
	if len(items) != n {
		b.Fatalf("bare: %d items planned, want %d", len(items), n)
	}
	q := asynq.NewClient(redisOpt)
	defer q.Close()
	for _, it := range items {
		if len(it.Requests) != 1 || it.Mode != pipelines.ModeThread || it.ThreadPer != pipelines.PerItem {
			b.Fatalf("bare: item %s: %d requests, mode %s, thread per %q: the bare handler sends one turn in a thread of its own", it.Key, len(it.Requests), it.Mode, it.ThreadPer)
		}
		bi := bareItem{RunID: id, Key: it.Key, Project: p.Workspace.Project, ThreadName: it.ThreadName,
			ThreadVisibility: it.ThreadVisibility, ArtifactIDs: it.ArtifactIDs, AllArtifacts: it.AllArtifacts,
			Agent: it.Agent, Request: it.Requests[0]}
		if bi.ThreadName == "" {
			bi.ThreadName = pipelines.DefaultThreadName(p.Name, it.Step, id, it.Artifact, it.ThreadPer)
		}
		if bi.ThreadVisibility == "" {
			bi.ThreadVisibility = workspace.VisibilityPrivate
		}
		if bi.ArtifactIDs == nil {
			bi.ArtifactIDs = []string{}
		}
		payload, err := json.Marshal(bi)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := q.EnqueueContext(ctx, asynq.NewTask(bareKind, payload), asynq.MaxRetry(3)); err != nil {
			b.Fatal(err)
		}
	}
	setup = cpuSample{cpu: processCPU() - cpu0, elapsed: time.Since(start)}

	runtime.GC()
	var ok atomic.Int64
	all := make(chan struct{})
	mux := asynq.NewServeMux()
	mux.Handle(bareKind, bareHandler(api, &ok, func(done int64) {
		if done == int64(n) {
			close(all)
		}
	}))
	server := asynq.NewServer(redisOpt, asynq.Config{Concurrency: c, LogLevel: asynq.WarnLevel})
	cpu0, rt0 := processCPU(), readRuntime()
	start = time.Now()
	if err := server.Start(mux); err != nil {
		b.Fatal(err)
	}
	select {
	case <-all:
	case <-time.After(10 * time.Minute):
		b.Fatalf("bare: %d of %d items succeeded after 10 minutes", ok.Load(), n)
	}
	s = cpuSample{cpu: processCPU() - cpu0, elapsed: time.Since(start), runtime: readRuntime().since(rt0)}
	server.Shutdown()
	s.requests = simRouteCounts(b, addr)
	return setup, s
}

// labelSide labels the calling goroutine, and the goroutines it starts
// until the returned function is called, with side=name in CPU profiles:
// `go tool pprof -tagfocus side=bare` shows one side (the garbage
// collector's own workers are not labeled).
func labelSide(name string) func() {
	ctx := context.Background()
	pprof.SetGoroutineLabels(pprof.WithLabels(ctx, pprof.Labels("side", name)))
	return func() { pprof.SetGoroutineLabels(ctx) }
}

// routeCounts counts API requests by route and status.
type routeCounts map[string]map[int]int

func (r routeCounts) total() int {
	t := 0
	for _, byStatus := range r {
		for _, n := range byStatus {
			t += n
		}
	}
	return t
}

func (r routeCounts) String() string {
	var parts []string
	for _, route := range slices.Sorted(maps.Keys(r)) {
		for _, status := range slices.Sorted(maps.Keys(r[route])) {
			parts = append(parts, fmt.Sprintf("%s %d ×%d", route, status, r[route][status]))
		}
	}
	return strings.Join(parts, "; ")
}

// simRouteCounts returns the simulator's API request counts (the
// /api/ routes) since its counters were last reset.
func simRouteCounts(b *testing.B, addr string) routeCounts {
	c := simCounters(b, addr)
	r := routeCounts{}
	for route, byStatus := range c.Requests {
		if strings.Contains(route, "/api/") {
			r[route] = byStatus
		}
	}
	return r
}

func resetSimCounters(b *testing.B, addr string) {
	req, err := http.NewRequest(http.MethodDelete, addr+"/_sim/counters", nil)
	if err != nil {
		b.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		b.Fatalf("reset the simulator's counters: %s", resp.Status)
	}
}
