package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/threadmill/threadmill/internal/redistest"
	"github.com/threadmill/threadmill/results"
	"github.com/threadmill/threadmill/workspace/simulator"
)

// memoryGoalMB is issue 11's bound on a process's peak RSS at 100,000 items.
const memoryGoalMB = 150

// BenchmarkPeakMemory measures the peak resident memory (VmHWM) of
// threadmill processes running a one-step pipeline over N
// artifacts against the simulator over HTTP (latency 0, outputs of 1–2 KiB,
// each artifact ~2 KiB):
//
//   - embedded: `threadmill run` on the embedded default (its Redis, worker
//     and result writer in one process);
//   - worker: one `threadmill worker` process on a real Redis, the run
//     enqueued with `threadmill enqueue` (Redis's own memory is not counted).
//
// It reports each figure in MB and as a ratio to the 150 MB goal (≤ 1 is
// met). Defaults N=100000, C=64, both modes; override with
// THREADMILL_BENCH_ITEMS, THREADMILL_BENCH_CONCURRENCY and
// THREADMILL_BENCH_MODE=embedded|worker. The simulator and the benchmark's
// own bookkeeping live in the benchmark process, not in the measured one.
// THREADMILL_BENCH_BIN measures another build of threadmill (e.g. an
// older commit's, for a before/after comparison) instead of this one's.
// THREADMILL_BENCH_WORKER_ARGS adds flags to the worker (e.g.
// "--metrics-addr 127.0.0.1:9399 --pprof" to take heap profiles while it
// runs). It takes minutes at the default size: run it on demand, once.
// The benchmark process holds the simulator, which keeps every interaction
// it answered (about 2.3 KB of heap each, see the simulator's
// BenchmarkFinishedItemMemory) and the corpus (about 2.7 KB a document): at
// a million items it reached 12.3 GB resident, and the worker mode's Redis
// 3.7 GB, so a 24 GB machine measures one mode at a time (before the
// simulator let go of finished interactions' streaming state, 38 KB each,
// such a machine killed it at 524,000). Run it with:
//
//	go test -run '^$' -bench PeakMemory -benchtime 1x -timeout 2h ./cmd/threadmill
func BenchmarkPeakMemory(b *testing.B) {
	n := benchEnvInt(b, "THREADMILL_BENCH_ITEMS", 100000)
	c := benchEnvInt(b, "THREADMILL_BENCH_CONCURRENCY", 64)
	if bin := os.Getenv("THREADMILL_BENCH_BIN"); bin != "" {
		defer func(was string) { threadmillBin = was }(threadmillBin)
		threadmillBin = bin
	}
	modes := []string{"embedded", "worker"}
	if m := os.Getenv("THREADMILL_BENCH_MODE"); m != "" {
		modes = strings.Split(m, ",")
	}

	sim := simulator.New(simulator.Config{ProjectID: simProject, Token: simToken})
	folder := sim.AddArtifact(simulator.ArtifactSpec{Name: "Bench", Type: "Folder"})
	for i := range n {
		sim.AddArtifact(simulator.ArtifactSpec{
			Name: fmt.Sprintf("doc-%07d.md", i), ParentID: folder.ID,
			Content: benchDocument(i),
		})
	}
	e := &runnerSim{sim: sim, srv: httptestServer(b, sim)}
	dir := b.TempDir()
	file := writeRunnerPipeline(b, dir, "memory", fmt.Sprintf(`version: 1
name: memory
limits: { concurrency: %d, max_attempts: 3 }
defaults: { max_tokens: 512 }
artifacts:
  docs: { folder: Bench }
steps:
  - id: summarize
    for_each: docs
    prompt: "Summarize {{ .Artifact.Name }} in ten bullets: the figures, the teams and the releases."
`, c))

	b.ResetTimer()
	for i := range b.N {
		for _, mode := range modes {
			root := filepath.Join(dir, fmt.Sprintf("out-%s-%d", mode, i))
			var rss int64
			var took time.Duration
			switch mode {
			case "embedded":
				rss, took = peakEmbedded(b, e, file, root, c)
			case "worker":
				rss, took = peakWorker(b, e, file, root, c)
			default:
				b.Fatalf("THREADMILL_BENCH_MODE: unknown mode %q (want embedded or worker)", mode)
			}
			checkSucceeded(b, root, "memory", n)
			mb := float64(rss) / (1 << 20)
			b.ReportMetric(mb, mode+"-MB")
			b.ReportMetric(mb/memoryGoalMB, mode+"-ratio")
			b.Logf("%s: N=%d C=%d: peak RSS %.0f MB (goal %d MB: ratio %.2f), %s",
				mode, n, c, mb, memoryGoalMB, mb/memoryGoalMB, took.Round(time.Millisecond))
		}
	}
}

// benchDocument is artifact i's content: ~2 KiB of sentences the simulator
// can choose from, so that answers of ten bullets are 1–2 KiB.
func benchDocument(i int) string {
	var sb strings.Builder
	for j := range 14 {
		fmt.Fprintf(&sb, "In quarter %d the platform team of document %d shipped release %d.%d and the figures rose by %d percent across the regions. ",
			j%4+1, i, i%9, j, (i+j)%17)
	}
	return sb.String()
}

// peakEmbedded runs `threadmill run` on the embedded default and returns its
// peak RSS in bytes and its wall time.
func peakEmbedded(b *testing.B, e *runnerSim, file, root string, c int) (int64, time.Duration) {
	env := e.vars()
	env[envRedisURL] = ""
	start := time.Now()
	p := startThreadmill(b, env, "run", "--results", root, "--concurrency", fmt.Sprint(c), "--progress", "none", "--log-level", "warn", file)
	peak := watchRSS(b, p)
	if code := p.wait(b, 2*time.Hour); code != exitOK {
		b.Fatalf("run exited %d\n%s\n%s", code, p.stdout, p.stderr)
	}
	if s := p.stderr.String(); strings.Contains(s, "level=WARN") || strings.Contains(s, "level=ERROR") {
		b.Logf("run's warnings:\n%.4000s", s)
	}
	return peak(), time.Since(start)
}

// peakWorker runs one `threadmill worker` on a real Redis, enqueues the
// pipeline, waits for the run's directory, stops the worker and returns its
// peak RSS in bytes and the time from enqueue to the run directory.
func peakWorker(b *testing.B, e *runnerSim, file, root string, c int) (int64, time.Duration) {
	rs := redistest.Start(b)
	env := e.vars()
	env[envRedisURL] = rs.URL()
	args := append([]string{"worker", "--results", root, "--concurrency", fmt.Sprint(c), "--log-level", "error"},
		strings.Fields(os.Getenv("THREADMILL_BENCH_WORKER_ARGS"))...)
	w := startThreadmill(b, env, args...)
	peak := watchRSS(b, w)
	start := time.Now()
	enq := startThreadmill(b, env, "enqueue", "--wait", file)
	if code := enq.wait(b, 2*time.Hour); code != exitOK {
		b.Fatalf("enqueue exited %d\n%s\n%s\nworker:\n%s", code, enq.stdout, enq.stderr, w.stderr)
	}
	took := time.Since(start)
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		b.Fatal(err)
	}
	if code := w.wait(b, time.Minute); code != exitOK {
		b.Fatalf("worker exited %d\n%s", code, w.stderr)
	}
	return peak(), took
}

// watchRSS follows the peak resident memory of process p (VmHWM in
// /proc/PID/status) until it exits, and returns a function that returns
// that peak in bytes. getrusage's ru_maxrss cannot be used: Linux carries
// the parent's high-water mark into a child started with vfork and exec,
// as Go starts processes, so every child of this benchmark (whose
// simulator holds the whole corpus) would seem as big as the benchmark.
// VmHWM is the exec'd program's own; it only grows, so the last reading
// before exit (every 20 ms) is the peak but for the last few milliseconds.
func watchRSS(b *testing.B, p *proc) func() int64 {
	var peak atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		path := fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			if kb := vmHWM(path); kb > 0 {
				peak.Store(kb * 1024)
			}
			select {
			case <-p.done:
				return
			case <-t.C:
			}
		}
	}()
	return func() int64 {
		<-done
		if peak.Load() == 0 {
			b.Fatal("could not read VmHWM from /proc (Linux only)")
		}
		return peak.Load()
	}
}

// vmHWM reads VmHWM (kB) from a /proc/PID/status file; 0 when it cannot.
func vmHWM(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb
		}
	}
	return 0
}

// checkSucceeded reads the newest run of pipeline under root and fails
// unless its n items all succeeded.
func checkSucceeded(b *testing.B, root, pipeline string, n int) *results.Run {
	latest, err := results.LatestDir(root, pipeline)
	if err != nil {
		b.Fatal(err)
	}
	run, err := results.ReadRun(latest)
	if err != nil {
		b.Fatal(err)
	}
	if got := run.Counts[results.StateSucceeded]; got != n {
		b.Fatalf("%d of %d items succeeded (%v)", got, n, run.Counts)
	}
	return run
}
