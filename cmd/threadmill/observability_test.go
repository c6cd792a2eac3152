package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/threadmill/threadmill/examples"
	"github.com/threadmill/threadmill/internal/redistest"
	"github.com/threadmill/threadmill/worker"
	"github.com/threadmill/threadmill/workspace/simulator"
)

// leakToken is the API token of TestWorkerMetricsAndNoTokenLeak: the
// simulator requires it, and it must appear nowhere else.
const leakToken = "tm_live_7Qz9LeakCanaryToken5b2e"

const opsPipeline = `version: 1
name: ops-metrics
workspace: { project: proj_ops }
limits: { concurrency: 4, requests_per_minute: 60000, tokens_per_minute: 100000000, max_attempts: 8, item_timeout: 1m }
artifacts:
  tickets: { folder: Support/Tickets }
steps:
  - id: summarize
    for_each: tickets
    prompt: "Summarize {{ .Artifact.Name }} in two bullets."
  - id: brief
    needs: [summarize]
    mode: chat
    prompt: |
      Write a brief from these summaries:
      {{ range .Steps.summarize.Items }}- {{ .Output }}
      {{ end }}
`

// obsAddrRe finds the address metrics.Listen logs when it starts serving.
var obsAddrRe = regexp.MustCompile(`"msg":"serving metrics and health","addr":"([^"]+)"`)

// obsBuffer is a log sink shared by the worker's goroutines.
type obsBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *obsBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *obsBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestWorkerMetricsAndNoTokenLeak runs a pipeline through `threadmill
// worker --metrics-addr` against the simulator (which requires a known
// token and answers some requests 429), then checks that /metrics shows
// every series the docs promise, with values that match what the simulator
// saw, and that the token appears in no log line, no Redis key or value
// (task payloads included, scanned while the run was in flight) and no
// result file.
func TestWorkerMetricsAndNoTokenLeak(t *testing.T) {
	rs := redistest.Start(t)
	sim := simulator.New(simulator.Config{
		ProjectID: "proj_ops",
		Token:     leakToken,
		Async:     true,
		Latency:   20 * time.Millisecond,
		Faults:    simulator.Faults{TooMany429: 0.05, RetryAfter: time.Second, Seed: 7},
	})
	t.Cleanup(sim.Close)
	if err := sim.AddDir(examples.Artifacts, "."); err != nil {
		t.Fatal(err)
	}
	api := httptest.NewServer(sim)
	t.Cleanup(api.Close)

	dir := t.TempDir()
	pipelinePath := filepath.Join(dir, "ops.yaml")
	if err := os.WriteFile(pipelinePath, []byte(opsPipeline), 0o644); err != nil {
		t.Fatal(err)
	}
	resultsDir := filepath.Join(dir, "results")
	env := map[string]string{
		"WORKSPACE_BASE_URL":   api.URL,
		"WORKSPACE_ORG":        "default",
		"WORKSPACE_API_TOKEN":  leakToken,
		"THREADMILL_REDIS_URL": rs.URL(),
	}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// Scan Redis while the run is in flight: task payloads live there only
	// until their task succeeds.
	rdb := rs.Client(t)
	var scanMu sync.Mutex
	var taskKeysSeen int
	var redisLeaks []string
	scanDone := make(chan struct{})
	scanCtx, stopScan := context.WithCancel(ctx)
	go func() {
		defer close(scanDone)
		for scanCtx.Err() == nil {
			leaks, tasks := obsScanRedis(scanCtx, rdb, leakToken)
			scanMu.Lock()
			redisLeaks = append(redisLeaks, leaks...)
			taskKeysSeen += tasks
			scanMu.Unlock()
			select {
			case <-scanCtx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()

	logs := &obsBuffer{}
	workerDone := make(chan error, 1)
	go func() {
		workerDone <- runWorker(ctx, &workerOptions{
			Concurrency: 8, Queue: worker.DefaultQueue, ResultsDir: resultsDir,
			ShutdownTimeout: 10 * time.Second,
			Log:             logFlags{Level: "debug", Format: "json"},
			Metrics:         metricsFlags{Addr: "127.0.0.1:0"}, // a free port, read back from the log
			LookupEnv:       lookup,
		}, logs)
	}()
	var base string
	obsWaitFor(t, 20*time.Second, "the worker to log its metrics address", func() bool {
		if m := obsAddrRe.FindStringSubmatch(logs.String()); m != nil {
			base = "http://" + m[1]
		}
		return base != ""
	})
	obsWaitFor(t, 20*time.Second, "the worker to be ready", func() bool {
		code, _ := obsGet(base + "/readyz")
		return code == http.StatusOK
	})

	var out, errOut bytes.Buffer
	err := runEnqueue(ctx, &enqueueOptions{
		File: pipelinePath, Queue: worker.DefaultQueue, Wait: true, Progress: "none",
		ProgressInterval: time.Minute, LookupEnv: lookup,
	}, &out, &errOut)
	if err != nil {
		t.Fatalf("enqueue --wait: %v\nstdout: %s\nstderr: %s\nworker log:\n%s", err, out.String(), errOut.String(), logs.String())
	}
	stopScan()
	<-scanDone

	// /metrics during the run's aftermath: the worker is still serving.
	_, body := obsGet(base + "/metrics")
	series := obsParseSeries(body)
	c := sim.Counters()
	// One summarize item per ticket of the corpus (counting validations
	// would count an item validated again after a 429 twice).
	ticketFiles, err := fs.Glob(examples.Artifacts, "Support/Tickets/*")
	if err != nil {
		t.Fatal(err)
	}
	tickets := len(ticketFiles)

	expect := func(name string, want float64) {
		t.Helper()
		if got, ok := series[name]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", name, got, ok, want)
		}
	}
	atLeast := func(name string, min float64) {
		t.Helper()
		if got, ok := series[name]; !ok || got < min {
			t.Errorf("%s = %v (present %v), want >= %v", name, got, ok, min)
		}
	}
	if tickets < 5 {
		t.Fatalf("only %d tickets validated; counters %+v", tickets, c.Requests)
	}
	expect(`threadmill_items_total{pipeline="ops-metrics",state="succeeded",step="summarize"}`, float64(tickets))
	expect(`threadmill_items_total{pipeline="ops-metrics",state="succeeded",step="brief"}`, 1)
	expect(`threadmill_runs_total{pipeline="ops-metrics",status="succeeded"}`, 1)
	in := series[`threadmill_tokens_total{direction="in",pipeline="ops-metrics",step="summarize"}`] +
		series[`threadmill_tokens_total{direction="in",pipeline="ops-metrics",step="brief"}`]
	outTok := series[`threadmill_tokens_total{direction="out",pipeline="ops-metrics",step="summarize"}`] +
		series[`threadmill_tokens_total{direction="out",pipeline="ops-metrics",step="brief"}`]
	if in == 0 || int64(in) != c.TokensIn || int64(outTok) != c.TokensOut {
		t.Errorf("tokens in/out = %v/%v, the simulator billed %d/%d", in, outTok, c.TokensIn, c.TokensOut)
	}
	for route, byCode := range c.Requests {
		method, path, _ := strings.Cut(route, " ")
		for code, n := range byCode {
			name := fmt.Sprintf(`threadmill_api_requests_total{code="%d",endpoint="%s",method="%s"}`, code, path, method)
			expect(name, float64(n))
		}
	}
	if c.Faults["429"] == 0 {
		t.Fatalf("the simulator injected no 429 (faults %v): the test does not exercise retries", c.Faults)
	}
	var rateLimited, retried float64
	for name, v := range series {
		if strings.HasPrefix(name, "threadmill_api_rate_limited_total{") {
			rateLimited += v
		}
		if strings.HasPrefix(name, `threadmill_item_retries_total{`) && strings.Contains(name, `reason="rate_limited"`) {
			retried += v
		}
	}
	if int(rateLimited) != c.Faults["429"] {
		t.Errorf("threadmill_api_rate_limited_total sums to %v, the simulator answered %d 429s", rateLimited, c.Faults["429"])
	}
	// A 429 on a create or a validate sends the item back to the queue (a
	// retry); one on a GET is waited out inside the attempt. Which requests
	// the seeded faults land on depends on the order they come in.
	posted429 := 0
	for route, byCode := range c.Requests {
		if strings.HasPrefix(route, "POST ") {
			posted429 += byCode[http.StatusTooManyRequests]
		}
	}
	if posted429 > 0 && retried == 0 {
		t.Errorf("no threadmill_item_retries_total{reason=\"rate_limited\"} although %d creates or validations got 429s", posted429)
	}
	atLeast(`threadmill_api_request_duration_seconds_count{endpoint="/api/v1/app/thread/{threadId}/interaction",method="POST"}`, float64(tickets))
	atLeast(`threadmill_rate_limit_wait_seconds_count{limiter="requests",pipeline="ops-metrics"}`, float64(tickets))
	atLeast(`threadmill_rate_limit_wait_seconds_count{limiter="concurrency",pipeline="ops-metrics"}`, float64(tickets))
	atLeast(`threadmill_item_duration_seconds_count{pipeline="ops-metrics",step="summarize"}`, float64(tickets))
	expect(`threadmill_queue_tasks{queue="threadmill",state="pending"}`, 0)
	expect(`threadmill_queue_inspector_up`, 1)
	expect(`threadmill_items_in_flight{pipeline="ops-metrics"}`, 0)
	atLeast(`threadmill_queue_processed_total{queue="threadmill"}`, float64(tickets+4))

	cancel()
	select {
	case err := <-workerDone:
		if err != nil {
			t.Errorf("worker: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("worker did not stop")
	}

	// The token: used (every request was accepted), and nowhere else.
	if c.Requests["GET /api/v1/app/me"][http.StatusUnauthorized]+c.Requests["POST /api/v1/app/chat/validate"][http.StatusUnauthorized] > 0 {
		t.Fatal("the simulator refused the token: the test does not send it")
	}
	logText := logs.String()
	if strings.Contains(logText, leakToken) {
		t.Errorf("the worker's log contains the token")
	}
	// Every line about an item names its pipeline, run, step and item.
	itemLines := 0
	for _, line := range strings.Split(strings.TrimSpace(logText), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("log line is not JSON (--log-format json): %q", line)
			continue
		}
		if _, ok := rec["item"]; !ok {
			continue
		}
		itemLines++
		for _, k := range []string{"pipeline", "run", "step"} {
			if v, _ := rec[k].(string); v == "" {
				t.Errorf("log line about an item has no %s: %s", k, line)
			}
		}
	}
	if itemLines == 0 {
		t.Errorf("no log line about an item (debug level):\n%s", obsFirstLines(logText, 20))
	}
	if out.Len() > 0 && strings.Contains(out.String()+errOut.String(), leakToken) {
		t.Error("enqueue's output contains the token")
	}
	scanMu.Lock()
	if len(redisLeaks) > 0 {
		t.Errorf("Redis holds the token in: %v", redisLeaks)
	}
	if taskKeysSeen == 0 {
		t.Error("the scan saw no asynq task while the run was in flight: task payloads were not checked")
	}
	scanMu.Unlock()
	leaks, _ := obsScanRedis(context.Background(), rdb, leakToken)
	if len(leaks) > 0 {
		t.Errorf("Redis holds the token after the run in: %v", leaks)
	}
	files := 0
	err = filepath.WalkDir(resultsDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Type()&fs.ModeSymlink != 0 {
			return err
		}
		files++
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(leakToken)) {
			t.Errorf("result file %s contains the token", path)
		}
		return nil
	})
	if err != nil || files < 4 {
		t.Errorf("result files: %d found, %v", files, err)
	}
}

// scanRedisFor reads every key and value of rdb and returns the keys whose
// name or value contains needle, and how many asynq task hashes it read.
func obsScanRedis(ctx context.Context, rdb *redis.Client, needle string) (leaks []string, tasks int) {
	iter := rdb.Scan(ctx, 0, "*", 200).Iterator()
	for iter.Next(ctx) {
		key := iter.Val()
		if strings.Contains(key, ":t:") && strings.HasPrefix(key, "asynq:") {
			tasks++
		}
		var vals []string
		switch typ, _ := rdb.Type(ctx, key).Result(); typ {
		case "string":
			v, _ := rdb.Get(ctx, key).Result()
			vals = append(vals, v)
		case "hash":
			m, _ := rdb.HGetAll(ctx, key).Result()
			for k, v := range m {
				vals = append(vals, k, v)
			}
		case "list":
			vals, _ = rdb.LRange(ctx, key, 0, -1).Result()
		case "set":
			vals, _ = rdb.SMembers(ctx, key).Result()
		case "zset":
			vals, _ = rdb.ZRange(ctx, key, 0, -1).Result()
		case "stream":
			msgs, _ := rdb.XRange(ctx, key, "-", "+").Result()
			for _, m := range msgs {
				for k, v := range m.Values {
					vals = append(vals, k, fmt.Sprint(v))
				}
			}
		}
		if strings.Contains(key, needle) {
			leaks = append(leaks, key+" (name)")
		}
		for _, v := range vals {
			if strings.Contains(v, needle) {
				leaks = append(leaks, key)
				break
			}
		}
	}
	return leaks, tasks
}

func obsGet(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// parseSeries reads the Prometheus text format into "name{labels}" → value.
func obsParseSeries(body string) map[string]float64 {
	out := map[string]float64{}
	for _, line := range strings.Split(body, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out
}

func obsWaitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition, bounded by the deadline
	}
}

func obsFirstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}
