package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/threadmill/threadmill/workspace/simulator"
)

// BenchmarkRunEmbedded runs `threadmill run` on the embedded default (the
// in-process Redis and worker) over N artifacts against the simulator with
// latency L, at concurrency C, and reports items/s and its ratio to the
// ideal min(C/L, the simulator's rate limit: none here). Defaults N=5000,
// L=100ms, C=64; override with THREADMILL_BENCH_ITEMS, _LATENCY and
// _CONCURRENCY; THREADMILL_BENCH_REDIS=URL measures the same on a real Redis.
// Run it on demand, once:
//
//	go test -run '^$' -bench RunEmbedded -benchtime 1x ./cmd/threadmill
func BenchmarkRunEmbedded(b *testing.B) {
	n := benchEnvInt(b, "THREADMILL_BENCH_ITEMS", 5000)
	c := benchEnvInt(b, "THREADMILL_BENCH_CONCURRENCY", 64)
	lat := 100 * time.Millisecond
	if v := os.Getenv("THREADMILL_BENCH_LATENCY"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("THREADMILL_BENCH_LATENCY: %v", err)
		}
		lat = d
	}

	sim := simulator.New(simulator.Config{ProjectID: simProject, Token: simToken, Latency: lat})
	folder := sim.AddArtifact(simulator.ArtifactSpec{Name: "Bench", Type: "Folder"})
	for i := range n {
		sim.AddArtifact(simulator.ArtifactSpec{
			Name: fmt.Sprintf("doc-%05d.md", i), ParentID: folder.ID,
			Content: fmt.Sprintf("Document %d. The quarterly figures rose by %d percent. The team shipped release %d.", i, i%17, i%9),
		})
	}
	e := &runnerSim{sim: sim, srv: httptestServer(b, sim)}
	for k, v := range e.vars() {
		b.Setenv(k, v)
	}
	// THREADMILL_BENCH_REDIS runs the same benchmark on a real Redis.
	if u := os.Getenv("THREADMILL_BENCH_REDIS"); u != "" {
		b.Setenv(envRedisURL, u)
	} else {
		b.Setenv(envRedisURL, "")
		os.Unsetenv(envRedisURL)
	}
	dir := b.TempDir()
	file := writeRunnerPipeline(b, dir, "bench", fmt.Sprintf(`version: 1
name: bench
limits: { concurrency: %d, requests_per_minute: 1000000, tokens_per_minute: 100000000, max_attempts: 3 }
defaults: { max_tokens: 64 }
artifacts:
  docs: { folder: Bench }
steps:
  - id: summarize
    for_each: docs
    prompt: "Summarize {{ .Artifact.Name }} in one sentence."
`, c))

	b.ResetTimer()
	for i := range b.N {
		root := filepath.Join(dir, fmt.Sprint("out", i))
		var out, errb bytes.Buffer
		start := time.Now()
		code := execute(b.Context(), []string{"run", "--results", root, "--concurrency", strconv.Itoa(c), "--progress", benchProgress(), "--progress-interval", "2s", "--log-level", benchLogLevel(), file}, &out, benchStderr(&errb))
		elapsed := time.Since(start)
		if code != exitOK {
			b.Fatalf("exit %d\n%s\n%s", code, out.String(), errb.String())
		}
		run := checkSucceeded(b, root, "bench", n)
		ideal := float64(c) / lat.Seconds()
		rate := float64(n) / elapsed.Seconds()
		inRun := float64(n) / run.Duration().Seconds()
		b.ReportMetric(rate, "items/s")
		b.ReportMetric(rate/ideal, "ratio")
		b.ReportMetric(inRun/ideal, "ratio-in-run")
		sc := sim.Counters()
		var secs []int64
		for s := range sc.PerSecond {
			secs = append(secs, s)
		}
		slices.Sort(secs)
		var perSec []int
		for _, s := range secs {
			perSec = append(perSec, sc.PerSecond[s])
		}
		b.Logf("simulator: max %d requests in flight, requests per second %v", sc.MaxInFlight, perSec)
		b.Logf("N=%d C=%d L=%s: %.0f items/s over %s (whole command), %.0f items/s from run start to finish; ideal %.0f; ratio %.3f (%.3f in-run)",
			n, c, lat, rate, elapsed.Round(time.Millisecond), inRun, ideal, rate/ideal, inRun/ideal)
	}
}

func benchEnvInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		b.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// THREADMILL_BENCH_VERBOSE=1 shows the run's progress lines and warnings on
// the benchmark's stderr.
func benchVerbose() bool { return os.Getenv("THREADMILL_BENCH_VERBOSE") != "" }

func benchProgress() string {
	if benchVerbose() {
		return "lines"
	}
	return "none"
}

func benchLogLevel() string {
	if v := os.Getenv("THREADMILL_BENCH_LOG_LEVEL"); v != "" {
		return v
	}
	if benchVerbose() {
		return "info"
	}
	return "error"
}

func benchStderr(buf *bytes.Buffer) io.Writer {
	if benchVerbose() {
		return io.MultiWriter(buf, os.Stderr)
	}
	return buf
}
