package worker_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/threadmill/threadmill/internal/redistest"
	"github.com/threadmill/threadmill/jobs"
	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/runstore"
	"github.com/threadmill/threadmill/worker"
	"github.com/threadmill/threadmill/workspace"
	"github.com/threadmill/threadmill/workspace/simulator"
)

// Benchmark knobs (environment variables):
//
//	THREADMILL_BENCH_ITEMS        N, items (default 5000)
//	THREADMILL_BENCH_LATENCY      L, simulator latency per interaction (default 100ms)
//	THREADMILL_BENCH_CONCURRENCY  C, worker concurrency and pipeline concurrency (default 64)
//	THREADMILL_BENCH_RPM          pipeline requests_per_minute (default 0: none)
//	THREADMILL_BENCH_ASYNC        1 (default): interactions complete in the
//	                              background and are followed on their stream;
//	                              0: create answers Completed after L
//
// Run with:
//
//	go test -run '^$' -bench Throughput -benchtime 1x ./worker/
//
// The simulator runs in a child process (this test binary, re-executed), so
// the worker's heap figures are its own.
const simulatorEnv = "THREADMILL_BENCH_SIMULATOR"

func envDuration(name string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(name)); err == nil && d > 0 {
		return d
	}
	return def
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// serveSimulator is the child process: a simulator with a folder of
// THREADMILL_BENCH_ITEMS documents, serving until its stdin closes.
func serveSimulator() {
	sim := simulator.New(simulator.Config{
		ProjectID: "proj_bench", Token: testToken,
		Async:   os.Getenv("THREADMILL_BENCH_ASYNC") != "0",
		Latency: envDuration("THREADMILL_BENCH_LATENCY", 100*time.Millisecond),
	})
	f := sim.AddArtifact(simulator.ArtifactSpec{Name: "Inbox", Type: workspace.ArtifactTypeFolder})
	for i := range envInt("THREADMILL_BENCH_ITEMS", 5000) {
		sim.AddArtifact(simulator.ArtifactSpec{Name: fmt.Sprintf("doc-%06d.md", i), ParentID: f.ID,
			Content: fmt.Sprintf("Ticket %d: the export failed twice; the customer wants a refund of %d euros.", i, i%90+10)})
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	srv := &http.Server{Handler: sim}
	go func() { _ = srv.Serve(ln) }()
	fmt.Printf("ADDR http://%s\n", ln.Addr())
	_, _ = io.Copy(io.Discard, os.Stdin)
	_ = srv.Close()
	sim.Close()
}

func startSimulatorProcess(b *testing.B) string {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), simulatorEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ADDR ") {
		b.Fatalf("simulator process: %q, %v", line, err)
	}
	return strings.TrimSpace(strings.TrimPrefix(line, "ADDR "))
}

// heapSampler records the peak heap in use until stopped: over the whole
// run, and over the items phase (once phase reports true: a tenth of the
// items is done, so planning, which needs memory in proportion to the
// items, is over).
type heapSampler struct {
	stop      chan struct{}
	done      chan struct{}
	peak      uint64
	itemsPeak uint64
}

func sampleHeap(phase func() bool) *heapSampler {
	h := &heapSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(h.done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		var ms runtime.MemStats
		items := false
		for {
			runtime.ReadMemStats(&ms)
			h.peak = max(h.peak, ms.HeapInuse)
			if items = items || phase(); items {
				h.itemsPeak = max(h.itemsPeak, ms.HeapInuse)
			}
			select {
			case <-h.stop:
				return
			case <-t.C:
			}
		}
	}()
	return h
}

func (h *heapSampler) Stop() (peak, itemsPeak uint64) {
	close(h.stop)
	<-h.done
	return h.peak, h.itemsPeak
}

// THREADMILL_BENCH_COUNT_COMMANDS=1 also counts the Redis commands the
// worker sends per item (through MONITOR, which slows Redis: take the
// throughput from a run without it).
func BenchmarkThroughput(b *testing.B) {
	n := envInt("THREADMILL_BENCH_ITEMS", 5000)
	c := envInt("THREADMILL_BENCH_CONCURRENCY", 64)
	lat := envDuration("THREADMILL_BENCH_LATENCY", 100*time.Millisecond)
	rpm := envInt("THREADMILL_BENCH_RPM", 0)
	for range b.N {
		addr := startSimulatorProcess(b)
		timing := &routeTiming{base: benchTransport(c), sum: map[string]time.Duration{}, n: map[string]int{}}
		bw := startBenchWorker(b, addr, c, timing)
		ctx := bw.ctx
		p := benchPipeline(b, c, rpm)
		store := runstore.New(bw.rdb, "")
		runtime.GC()
		heap := sampleHeap(func() bool {
			done, _, _ := store.StepProgress(ctx, "bench-1", "summarize")
			return done >= n/10
		})
		var mon *redistest.Monitor
		if os.Getenv("THREADMILL_BENCH_COUNT_COMMANDS") != "" {
			mon = bw.srv.Monitor(b)
		}
		cpu0 := processCPU()
		start := time.Now()
		if err := jobs.StartRun(ctx, bw.q, store, p, pipelines.RunInfo{ID: "bench-1", Time: start}, asynq.Queue(worker.DefaultQueue)); err != nil {
			b.Fatal(err)
		}
		st, err := store.Wait(ctx, "bench-1")
		if err != nil {
			b.Fatal(err)
		}
		elapsed := time.Since(start)
		cpu := processCPU() - cpu0
		b.Logf("worker process CPU %v over %v (%.0f%% of one core)", cpu.Round(time.Millisecond), elapsed.Round(time.Millisecond), 100*cpu.Seconds()/elapsed.Seconds())
		peak, itemsPeak := heap.Stop()
		if mon != nil {
			reportCommands(b, mon, n)
		}
		bw.stop()
		if st.Succeeded != n {
			b.Fatalf("%d of %d items succeeded (status %s, %s)", st.Succeeded, n, st.Status, st.Error)
		}
		requests := simRequests(b, addr)
		ideal := float64(c) / lat.Seconds()
		if rpm > 0 {
			ideal = min(ideal, float64(rpm)/60/(float64(requests)/float64(n)))
		}
		rate := float64(n) / elapsed.Seconds()
		// The items phase, from the first item's start to the last one's
		// end, leaves out resolving, planning and finalizing.
		var first, last time.Time
		for _, it := range readItems(b, resultsFile(st.ResultDir)) {
			if first.IsZero() || it.StartedAt.Before(first) {
				first = it.StartedAt
			}
			last = maxTime(last, it.FinishedAt)
		}
		itemsRate := float64(n) / last.Sub(first).Seconds()
		b.ReportMetric(itemsRate/ideal, "items-phase-ratio")
		b.Logf("items phase: %v, %.1f items/s, ratio %.3f; before it (start, resolve, plan) %v, after it (advance, finalize) %v",
			last.Sub(first).Round(time.Millisecond), itemsRate, itemsRate/ideal,
			first.Sub(start).Round(time.Millisecond), start.Add(elapsed).Sub(last).Round(time.Millisecond))
		b.ReportMetric(rate, "items/s")
		b.ReportMetric(rate/ideal, "ratio")
		b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MB")
		b.ReportMetric(float64(itemsPeak)/(1<<20), "items-phase-heap-MB")
		b.Logf("API time per request by route (as the worker saw it): %s", timing)
		b.Logf("N=%d C=%d L=%v rpm=%d: %d items in %v = %.1f items/s; ideal %.1f items/s; ratio %.3f; %.1f API requests/item; peak heap %.1f MB (%.1f MB after the first tenth of the items)",
			n, c, lat, rpm, n, elapsed.Round(time.Millisecond), rate, ideal, rate/ideal, float64(requests)/float64(n), float64(peak)/(1<<20), float64(itemsPeak)/(1<<20))
	}
}

// benchTransport is the benchmarks' HTTP transport to the simulator: keeps
// an idle connection for every request a worker of concurrency c may have
// in flight.
func benchTransport(c int) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 2 * c
	return t
}

// benchPipeline is the benchmarks' pipeline: one thread-mode step over the
// simulator's folder, one item per document, at concurrency c (and rpm
// requests per minute, 0 for no limit).
func benchPipeline(b *testing.B, c, rpm int) *pipelines.Pipeline {
	p, err := pipelines.Parse("bench.yaml", []byte(fmt.Sprintf(`
version: 1
name: bench
workspace: { project: proj_bench }
defaults: { max_tokens: 64 }
limits: { concurrency: %d%s }
artifacts:
  docs: { folder: "Inbox" }
steps:
  - id: summarize
    for_each: docs
    prompt: "Summarize {{ .Artifact.Name }} in one sentence."
`, c, rpmLimit(rpm))), func(string) (string, bool) { return "", false })
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// benchAPI returns a Workspace client of the simulator at addr sending
// through rt.
func benchAPI(b *testing.B, addr string, rt http.RoundTripper) *workspace.Client {
	api, err := workspace.New(addr, workspace.WithToken(testToken), workspace.WithOrg("default"),
		workspace.WithHTTPClient(&http.Client{Transport: rt}))
	if err != nil {
		b.Fatal(err)
	}
	return api
}

// benchWorker is a threadmill worker running in this process on its own
// Redis, as the benchmarks set it up.
type benchWorker struct {
	srv *redistest.Server
	rdb *redis.Client
	q   *asynq.Client // enqueues to srv
	ctx context.Context
	// stop stops the worker, waits for Run to return and closes the
	// clients.
	stop func()
}

// startBenchWorker starts a threadmill worker of concurrency c on a fresh
// Redis; it sends its API requests to the simulator at addr through rt.
// configure, if given, changes the worker's configuration first.
func startBenchWorker(b *testing.B, addr string, c int, rt http.RoundTripper, configure ...func(*worker.Config)) *benchWorker {
	srv := redistest.Start(b)
	opts := srv.Options()
	opts.PoolSize = 2 * c
	rdb := redis.NewClient(opts)
	cfg := worker.Config{
		Redis:       asynq.RedisClientOpt{Network: "unix", Addr: srv.Socket, PoolSize: 2 * c},
		RDB:         rdb,
		API:         benchAPI(b, addr, rt),
		Concurrency: c,
		ResultsRoot: b.TempDir(),
	}
	for _, f := range configure {
		f(&cfg)
	}
	w, err := worker.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := w.Run(ctx); err != nil {
			b.Error(err)
		}
	})
	q := asynq.NewClient(asynq.RedisClientOpt{Network: "unix", Addr: srv.Socket})
	return &benchWorker{srv: srv, rdb: rdb, q: q, ctx: ctx, stop: func() {
		_ = q.Close()
		cancel()
		wg.Wait()
		_ = rdb.Close()
	}}
}

// processCPU returns the CPU time (user and system) this process used so
// far; its children (the simulator, redis-server) are not counted.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCommands reports the Redis commands clients sent per item (a Lua
// script's own calls are not counted: each script is one round trip), and
// logs them by name, most frequent first.
func reportCommands(b *testing.B, mon *redistest.Monitor, n int) {
	counts, err := mon.Stop()
	if err != nil {
		b.Fatal(err)
	}
	total := 0
	names := make([]string, 0, len(counts))
	for name, c := range counts {
		total += c
		names = append(names, name)
	}
	slices.SortFunc(names, func(a, b string) int { return counts[b] - counts[a] })
	var parts []string
	for _, name := range names {
		parts = append(parts, fmt.Sprintf("%s %.2f", name, float64(counts[name])/float64(n)))
	}
	b.ReportMetric(float64(total)/float64(n), "redis-cmds/item")
	b.Logf("Redis commands sent per item: %.1f (%s)", float64(total)/float64(n), strings.Join(parts, ", "))
}

// simCounters reads the simulator's counters.
func simCounters(b *testing.B, addr string) simulator.Counters {
	resp, err := http.Get(addr + "/_sim/counters")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var c simulator.Counters
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
		b.Fatal(err)
	}
	return c
}

func simRequests(b *testing.B, addr string) int {
	c := simCounters(b, addr)
	total := 0
	for _, n := range c.PerSecond {
		total += n
	}
	return total
}

func rpmLimit(rpm int) string {
	if rpm == 0 {
		return ""
	}
	return fmt.Sprintf(", requests_per_minute: %d", rpm)
}

// routeTiming sums the time of API requests by method and route shape.
type routeTiming struct {
	base http.RoundTripper
	mu   sync.Mutex
	sum  map[string]time.Duration
	n    map[string]int
}

func (r *routeTiming) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := r.base.RoundTrip(req)
	parts := strings.Split(req.URL.Path, "/")
	for i, p := range parts {
		if strings.Contains(p, "_") {
			parts[i] = "{id}"
		}
	}
	key := req.Method + " " + strings.Join(parts, "/")
	if err != nil {
		key += " (error)"
	} else if resp.StatusCode >= 300 {
		key += " (" + strconv.Itoa(resp.StatusCode) + ")"
	}
	r.mu.Lock()
	r.sum[key] += time.Since(start)
	r.n[key]++
	r.mu.Unlock()
	return resp, err
}

func (r *routeTiming) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var parts []string
	for k, d := range r.sum {
		parts = append(parts, fmt.Sprintf("%s %v×%d", k, (d/time.Duration(r.n[k])).Round(100*time.Microsecond), r.n[k]))
	}
	slices.Sort(parts)
	return strings.Join(parts, "; ")
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
