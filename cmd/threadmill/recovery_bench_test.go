package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/threadmill/threadmill/internal/redistest"
	"github.com/threadmill/threadmill/results"
	"github.com/threadmill/threadmill/runstore"
	"github.com/threadmill/threadmill/workspace/simulator"
)

// BenchmarkWorkerKillRecovery measures how long the fleet takes to hand a
// dead worker's tasks to the others. It starts W `threadmill worker`
// processes (concurrency C each) on a real Redis against the simulator over
// HTTP (asynchronous interactions, latency L), runs a one-step pipeline over
// N artifacts once undisturbed, then again while SIGKILLing a worker K times
// (at 10%, 25%, 40%, ... of the items done; a fresh worker replaces each
// one at once), and reports:
//
//   - undisturbed-s and killed-s: enqueue to finished run, and their ratio;
//   - recovery-s: the longest time from a kill to the end of an item that
//     was in flight on the killed worker (an item whose first attempt began
//     before the kill and that needed another attempt), i.e. how long a
//     kill costs at most.
//
// Every item must be recorded once and sent once (the simulator's
// correlation counters); anything else fails the benchmark.
//
// Defaults N=2000, W=4, C=16, L=100ms, K=5; override with
// THREADMILL_BENCH_ITEMS, _WORKERS, _CONCURRENCY, _LATENCY and _KILLS.
// THREADMILL_BENCH_WORKER_ARGS adds flags to every worker, e.g.
// "--orphan-check=-1s" to measure asynq's own recovery alone. It
// waits for real leases to expire, so it takes a minute or two: run it on
// demand, once:
//
//	go test -run '^$' -bench WorkerKillRecovery -benchtime 1x ./cmd/threadmill
func BenchmarkWorkerKillRecovery(b *testing.B) {
	n := benchEnvInt(b, "THREADMILL_BENCH_ITEMS", 2000)
	nw := benchEnvInt(b, "THREADMILL_BENCH_WORKERS", 4)
	c := benchEnvInt(b, "THREADMILL_BENCH_CONCURRENCY", 16)
	kills := benchEnvInt(b, "THREADMILL_BENCH_KILLS", 5)
	lat := 100 * time.Millisecond
	if v := os.Getenv("THREADMILL_BENCH_LATENCY"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("THREADMILL_BENCH_LATENCY: %v", err)
		}
		lat = d
	}
	extra := strings.Fields(os.Getenv("THREADMILL_BENCH_WORKER_ARGS"))

	sim := simulator.New(simulator.Config{ProjectID: simProject, Token: simToken, Latency: lat, Async: true})
	folder := sim.AddArtifact(simulator.ArtifactSpec{Name: "Bench", Type: "Folder"})
	for i := range n {
		sim.AddArtifact(simulator.ArtifactSpec{
			Name: fmt.Sprintf("doc-%05d.md", i), ParentID: folder.ID,
			Content: fmt.Sprintf("Document %d. The quarterly figures rose by %d percent.", i, i%17),
		})
	}
	e := &runnerSim{sim: sim, srv: httptestServer(b, sim)}
	rs := redistest.Start(b)
	env := e.vars()
	env[envRedisURL] = rs.URL()
	for k, v := range env {
		b.Setenv(k, v)
	}
	dir := b.TempDir()
	file := writeRunnerPipeline(b, dir, "recovery", fmt.Sprintf(`version: 1
name: recovery
limits: { concurrency: %d, requests_per_minute: 1000000, tokens_per_minute: 100000000, max_attempts: 5 }
defaults: { max_tokens: 64 }
artifacts:
  docs: { folder: Bench }
steps:
  - id: summarize
    for_each: docs
    prompt: "Summarize {{ .Artifact.Name }} in one sentence."
`, nw*c))
	root := filepath.Join(dir, "out")
	rdb := rs.Client(b)
	store := runstore.New(rdb, "")
	insp := asynq.NewInspectorFromRedisClient(rdb)

	workerArgs := append([]string{"worker", "--concurrency", strconv.Itoa(c), "--results", root, "--log-level", benchLogLevel()}, extra...)
	startWorker := func() *proc { return startThreadmill(b, env, workerArgs...) }
	fleet := make([]*proc, nw)
	for i := range fleet {
		fleet[i] = startWorker()
	}
	pollUntil(b, "the workers' asynq servers", time.Minute, func() bool {
		srvs, err := insp.Servers()
		return err == nil && len(srvs) >= nw
	})

	// run enqueues a run and waits for its end, killing a worker (and
	// starting another) each time the done count passes the next mark.
	// It returns the duration and the kill times.
	run := func(id string, marks []int) (time.Duration, []time.Time, *runstore.RunState) {
		start := time.Now()
		if code, out, errs := runnerCLI(b.Context(), "enqueue", "--run-id", id, file); code != exitOK {
			b.Fatalf("enqueue: exit %d\n%s\n%s", code, out, errs)
		}
		var killed []time.Time
		for _, m := range marks {
			pollUntil(b, fmt.Sprintf("%d items of %s done", m, id), 10*time.Minute, func() bool {
				st, err := store.Run(b.Context(), id)
				return err == nil && st.Done >= m
			})
			victim := len(killed) % len(fleet)
			fleet[victim].kill(b)
			killed = append(killed, time.Now())
			fleet[victim] = startWorker()
		}
		st, err := store.Wait(b.Context(), id)
		if err != nil {
			b.Fatal(err)
		}
		if st.Status != runstore.StatusSucceeded {
			b.Fatalf("run %s: %s", id, st.Status)
		}
		return time.Since(start), killed, st
	}

	b.ResetTimer()
	for i := range b.N {
		undisturbed, _, _ := run(fmt.Sprint("calm-", i), nil)
		var marks []int
		for k := range kills {
			marks = append(marks, n*(10+15*k)/100)
		}
		id := fmt.Sprint("killed-", i)
		disturbed, killTimes, st := run(id, marks)

		items := checkEachItemOnce(b, filepath.Join(st.ResultDir, results.ResultsFile), n)
		perKill := make([][]time.Duration, len(killTimes))
		for _, it := range items {
			if it.Attempts < 2 {
				continue
			}
			k, _ := slices.BinarySearchFunc(killTimes, it.StartedAt, func(kt, s time.Time) int { return kt.Compare(s) })
			if k == len(killTimes) {
				b.Errorf("item %s took %d attempts but began after the last kill", it.Key, it.Attempts)
				continue
			}
			perKill[k] = append(perKill[k], it.FinishedAt.Sub(killTimes[k]))
		}
		var worst time.Duration
		for k, ds := range perKill {
			slices.Sort(ds)
			if len(ds) == 0 {
				b.Logf("kill %d: no item in flight needed another attempt", k+1)
				continue
			}
			worst = max(worst, ds[len(ds)-1])
			b.Logf("kill %d: %d items in flight; back and finished after %s (first) to %s (last)",
				k+1, len(ds), ds[0].Round(10*time.Millisecond), ds[len(ds)-1].Round(10*time.Millisecond))
		}
		for corr, cnt := range sim.Counters().Correlations {
			if cnt != 1 && strings.Contains(corr, ":"+id+":") {
				b.Errorf("%s: sent %d times", corr, cnt)
			}
		}
		b.ReportMetric(undisturbed.Seconds(), "undisturbed-s")
		b.ReportMetric(disturbed.Seconds(), "killed-s")
		b.ReportMetric(disturbed.Seconds()/undisturbed.Seconds(), "ratio")
		b.ReportMetric(worst.Seconds(), "recovery-s")
		b.Logf("N=%d W=%d C=%d L=%s kills=%d args=%q: undisturbed %s, with kills %s (ratio %.1f); longest recovery %s",
			n, nw, c, lat, len(killTimes), extra, undisturbed.Round(10*time.Millisecond), disturbed.Round(10*time.Millisecond),
			disturbed.Seconds()/undisturbed.Seconds(), worst.Round(10*time.Millisecond))
	}
}
