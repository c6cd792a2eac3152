package metrics_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/threadmill/threadmill/internal/redistest"
	"github.com/threadmill/threadmill/metrics"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// go-redis pools started by asynq's Inspector close asynchronously.
		goleak.IgnoreTopFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).reaper"),
	)
}

func TestEndpoint(t *testing.T) {
	cases := map[string]string{
		"/api/health":                                     "/api/health",
		"/api/v1/app/me":                                  "/api/v1/app/me",
		"/api/v1/app/chat":                                "/api/v1/app/chat",
		"/api/v1/app/chat/validate":                       "/api/v1/app/chat/validate",
		"/api/v1/app/project/proj_7a5c/thread":            "/api/v1/app/project/{projectId}/thread",
		"/api/v1/app/project/proj_7a5c/thread/":           "/api/v1/app/project/{projectId}/thread",
		"/api/v1/app/thread/thr_91c0":                     "/api/v1/app/thread/{threadId}",
		"/api/v1/app/thread/thr_91c0/interaction":         "/api/v1/app/thread/{threadId}/interaction",
		"/api/v1/app/interaction/inter_1":                 "/api/v1/app/interaction/{interactionId}",
		"/api/v1/app/interaction/inter_1/cancel":          "/api/v1/app/interaction/{interactionId}/cancel",
		"/api/v1/app/interaction/inter_1/stream":          "/api/v1/app/interaction/{interactionId}/stream",
		"/api/v1/app/project/p/artifact":                  "/api/v1/app/project/{projectId}/artifact",
		"/api/v1/app/project/p/artifact/bulk":             "/api/v1/app/project/{projectId}/artifact/bulk",
		"/api/v1/app/project/p/artifact/artifact_2b4d":    "/api/v1/app/project/{projectId}/artifact/{artifactId}",
		"/api/v1/app/project/p/artifact/a/parsed-content": "/api/v1/app/project/{projectId}/artifact/{artifactId}/parsed-content",
		"/zylon/api/v1/app/interaction/inter_1":           "/api/v1/app/interaction/{interactionId}",
		"/api/proxy/api/v1/app/me":                        "/api/v1/app/me",
		"/api/v1/app/thread//interaction":                 metrics.EndpointOther,
		"/api/v1/app/unknown/thing":                       metrics.EndpointOther,
		"/api/v1/app/interaction/inter_1/stream/extra":    metrics.EndpointOther,
		"/metrics": metrics.EndpointOther,
		"":         metrics.EndpointOther,
		"/api/v1/app/project/p/thread/interaction":                       "/api/v1/app/project/{projectId}/thread/interaction",
		"/api/v1/app/project/tm_live_secret/artifact/some-id/sync":       "/api/v1/app/project/{projectId}/artifact/{artifactId}/sync",
		"/api/v1/app/project/{projectId}/artifact/{artifactId}/download": "/api/v1/app/project/{projectId}/artifact/{artifactId}/download",
	}
	for in, want := range cases {
		if got := metrics.Endpoint(in); got != want {
			t.Errorf("Endpoint(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzEndpoint checks that a label is always a known pattern or "other": no
// raw path, so no id, ever becomes a label value.
func FuzzEndpoint(f *testing.F) {
	f.Add("/api/v1/app/thread/thr_1/interaction")
	f.Add("/x/api/api/v1/app/me/")
	f.Add("/api/")
	known := map[string]bool{metrics.EndpointOther: true}
	for _, r := range metrics.Routes() {
		known[r] = true
	}
	f.Fuzz(func(t *testing.T, path string) {
		if got := metrics.Endpoint(path); !known[got] {
			t.Fatalf("Endpoint(%q) = %q, not a route pattern", path, got)
		}
	})
}

func ExampleEndpoint() {
	fmt.Println(metrics.Endpoint("/api/v1/app/thread/thr_91c0/interaction"))
	fmt.Println(metrics.Endpoint("/api/v1/app/interaction/inter_42/stream"))
	fmt.Println(metrics.Endpoint("/somewhere/else"))
	// Output:
	// /api/v1/app/thread/{threadId}/interaction
	// /api/v1/app/interaction/{interactionId}/stream
	// other
}

func TestRecordingMethods(t *testing.T) {
	m := metrics.New(metrics.Options{Version: "v1.2.3", Role: "worker", NoRuntimeCollectors: true})
	done := m.ItemStarted("weekly")
	m.ItemFinished("weekly", "summarize", metrics.StateSucceeded, 1500*time.Millisecond)
	m.ItemFinished("weekly", "summarize", metrics.StateSucceeded, time.Second)
	m.ItemFinished("weekly", "summarize", metrics.StateFailed, time.Second)
	m.ItemRetried("weekly", "summarize", "rate_limited")
	m.TokensUsed("weekly", "summarize", 1200, 300)
	m.TokensUsed("weekly", "summarize", 800, 0)
	m.RateLimitWaited("weekly", "requests", 250*time.Millisecond)
	m.RunFinished("weekly", "succeeded")
	m.SchedulerFired("weekly", "created")
	m.SchedulerFired("weekly", "skipped")
	m.SchedulerSkipped("weekly", "overlap")
	m.SchedulerSynced(time.Unix(1_700_000_000, 0), 3, 1)
	m.RetryAfterCapped(24*time.Hour, 2*time.Minute)
	m.RetryAfterCapped(time.Hour, 2*time.Minute)
	m.FleetPacing(90*time.Second, 12.5)

	want := `
# HELP threadmill_api_retry_after_capped_total Workspace API answers whose Retry-After asked for a longer wait than the worker's cap (--max-retry-after); the cap was waited instead.
# TYPE threadmill_api_retry_after_capped_total counter
threadmill_api_retry_after_capped_total 2
# HELP threadmill_fleet_pause_seconds Time left of the fleet-wide pause the Workspace API asked for (429, or 503 with Retry-After; capped), as this process last read it from Redis.
# TYPE threadmill_fleet_pause_seconds gauge
threadmill_fleet_pause_seconds 90
# HELP threadmill_adaptive_request_rate Requests per second the fleet's adaptive limiter allows to the Workspace API after its 429s; 0 while the limiter is off.
# TYPE threadmill_adaptive_request_rate gauge
threadmill_adaptive_request_rate 12.5
# HELP threadmill_items_in_flight Work items being processed by this process right now.
# TYPE threadmill_items_in_flight gauge
threadmill_items_in_flight{pipeline="weekly"} 1
# HELP threadmill_items_total Work items finished, by pipeline, step and final state (succeeded, failed, skipped).
# TYPE threadmill_items_total counter
threadmill_items_total{pipeline="weekly",state="failed",step="summarize"} 1
threadmill_items_total{pipeline="weekly",state="succeeded",step="summarize"} 2
# HELP threadmill_item_retries_total Attempts of work items that failed and were scheduled again, by reason (rate_limited, server_error, network, timeout, other).
# TYPE threadmill_item_retries_total counter
threadmill_item_retries_total{pipeline="weekly",reason="rate_limited",step="summarize"} 1
# HELP threadmill_tokens_total Tokens billed by the Workspace API, by pipeline, step and direction (in, out).
# TYPE threadmill_tokens_total counter
threadmill_tokens_total{direction="in",pipeline="weekly",step="summarize"} 2000
threadmill_tokens_total{direction="out",pipeline="weekly",step="summarize"} 300
# HELP threadmill_runs_total Runs finalized by this process, by pipeline and status.
# TYPE threadmill_runs_total counter
threadmill_runs_total{pipeline="weekly",status="succeeded"} 1
# HELP threadmill_scheduler_fires_total Scheduled fire times handled, by pipeline and outcome (created: this scheduler created the run, or started it after it waited; duplicate: another delivery or scheduler already had; queued: the run waits for an earlier run of the pipeline to end; skipped: no run, see threadmill_scheduler_fires_skipped_total).
# TYPE threadmill_scheduler_fires_total counter
threadmill_scheduler_fires_total{outcome="created",pipeline="weekly"} 1
threadmill_scheduler_fires_total{outcome="skipped",pipeline="weekly"} 1
# HELP threadmill_scheduler_fires_skipped_total Scheduled fire times for which no run was started, by pipeline and reason (overlap: an earlier run of the pipeline was still active and schedule.overlap is skip).
# TYPE threadmill_scheduler_fires_skipped_total counter
threadmill_scheduler_fires_skipped_total{pipeline="weekly",reason="overlap"} 1
# HELP threadmill_scheduler_entries Pipelines currently scheduled.
# TYPE threadmill_scheduler_entries gauge
threadmill_scheduler_entries 3
# HELP threadmill_scheduler_invalid_files Pipeline files that failed to load at the last sync (their last good version stays scheduled).
# TYPE threadmill_scheduler_invalid_files gauge
threadmill_scheduler_invalid_files 1
# HELP threadmill_scheduler_last_sync_timestamp_seconds Unix time of the scheduler's last successful read of the pipelines directory.
# TYPE threadmill_scheduler_last_sync_timestamp_seconds gauge
threadmill_scheduler_last_sync_timestamp_seconds 1.7e+09
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want),
		"threadmill_items_in_flight", "threadmill_items_total", "threadmill_item_retries_total",
		"threadmill_tokens_total", "threadmill_runs_total", "threadmill_scheduler_fires_total",
		"threadmill_scheduler_fires_skipped_total", "threadmill_scheduler_entries", "threadmill_scheduler_invalid_files",
		"threadmill_scheduler_last_sync_timestamp_seconds", "threadmill_api_retry_after_capped_total",
		"threadmill_fleet_pause_seconds", "threadmill_adaptive_request_rate"); err != nil {
		t.Error(err)
	}
	done()
	if n, err := testutil.GatherAndCount(m.Registry(), "threadmill_item_duration_seconds", "threadmill_rate_limit_wait_seconds", "threadmill_build_info"); err != nil || n != 3 {
		t.Errorf("histograms and build info: %d series, %v; want 3", n, err)
	}
	if problems, err := testutil.GatherAndLint(m.Registry()); err != nil || len(problems) > 0 {
		t.Errorf("metric lint: %v %v", problems, err)
	}

	var nilM *metrics.Metrics // records nothing, panics never
	nilM.ItemStarted("p")()
	nilM.ItemFinished("p", "s", metrics.StateFailed, time.Second)
	nilM.ItemRetried("p", "s", "other")
	nilM.TokensUsed("p", "s", 1, 1)
	nilM.RateLimitWaited("p", "tokens", time.Second)
	nilM.RunFinished("p", "failed")
	nilM.SchedulerFired("p", "duplicate")
	nilM.SchedulerSkipped("p", "overlap")
	nilM.SchedulerSynced(time.Now(), 1, 0)
	nilM.RetryAfterCapped(time.Hour, time.Minute)
	nilM.FleetPacing(time.Second, 1)
	if rt := nilM.InstrumentTransport(nil); rt != http.DefaultTransport {
		t.Errorf("nil Metrics should return the transport unchanged, got %T", rt)
	}
}

func TestInstrumentTransport(t *testing.T) {
	const token = "tm_live_should_never_be_a_label"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			t.Errorf("Authorization header not passed through: %q", r.Header.Get("Authorization"))
		}
		switch {
		case strings.HasSuffix(r.URL.Path, "/validate"):
			w.WriteHeader(http.StatusNoContent)
		case strings.HasSuffix(r.URL.Path, "/interaction"):
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
		default:
			http.Error(w, "boom", http.StatusInternalServerError)
		}
	}))
	defer srv.Close()

	m := metrics.New(metrics.Options{NoRuntimeCollectors: true})
	client := &http.Client{Transport: m.InstrumentTransport(srv.Client().Transport)}
	do := func(method, url string) {
		t.Helper()
		req, err := http.NewRequestWithContext(context.Background(), method, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
	do("POST", srv.URL+"/api/v1/app/chat/validate")
	do("POST", srv.URL+"/api/v1/app/chat/validate")
	do("POST", srv.URL+"/api/v1/app/thread/thr_1/interaction")
	do("POST", srv.URL+"/api/v1/app/thread/thr_2/interaction")
	do("GET", srv.URL+"/api/v1/app/interaction/inter_9")
	// A refused connection is counted with code "error".
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	do("GET", deadURL+"/api/v1/app/me")

	want := `
# HELP threadmill_api_requests_total Workspace API requests, by endpoint (route pattern), method and status code ("error" when no response came back).
# TYPE threadmill_api_requests_total counter
threadmill_api_requests_total{code="204",endpoint="/api/v1/app/chat/validate",method="POST"} 2
threadmill_api_requests_total{code="429",endpoint="/api/v1/app/thread/{threadId}/interaction",method="POST"} 2
threadmill_api_requests_total{code="500",endpoint="/api/v1/app/interaction/{interactionId}",method="GET"} 1
threadmill_api_requests_total{code="error",endpoint="/api/v1/app/me",method="GET"} 1
# HELP threadmill_api_rate_limited_total Workspace API responses with status 429 Too Many Requests, by endpoint.
# TYPE threadmill_api_rate_limited_total counter
threadmill_api_rate_limited_total{endpoint="/api/v1/app/thread/{threadId}/interaction"} 2
# HELP threadmill_api_requests_in_flight Workspace API requests waiting for their response headers.
# TYPE threadmill_api_requests_in_flight gauge
threadmill_api_requests_in_flight 0
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want),
		"threadmill_api_requests_total", "threadmill_api_rate_limited_total", "threadmill_api_requests_in_flight"); err != nil {
		t.Error(err)
	}
	if n, err := testutil.GatherAndCount(m.Registry(), "threadmill_api_request_duration_seconds"); err != nil || n != 4 {
		t.Errorf("latency histograms: %d series, %v; want 4 (one per endpoint and method)", n, err)
	}
	out := scrape(t, m)
	for _, leak := range []string{token, "thr_1", "inter_9"} {
		if strings.Contains(out, leak) {
			t.Errorf("/metrics output contains %q", leak)
		}
	}
}

func scrape(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	metrics.NewServeMux(m.Registry(), nil).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", rec.Code, rec.Body)
	}
	return rec.Body.String()
}

func TestQueueCollector(t *testing.T) {
	rs := redistest.Start(t)
	opt := asynq.RedisClientOpt{Network: "unix", Addr: rs.Socket}
	client := asynq.NewClient(opt)
	defer client.Close()
	insp := asynq.NewInspector(opt)
	defer insp.Close()

	for i := range 3 {
		if _, err := client.Enqueue(asynq.NewTask("step:item", []byte(`{}`)), asynq.Queue("threadmill"), asynq.TaskID(fmt.Sprint("p", i))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := client.Enqueue(asynq.NewTask("step:item", []byte(`{}`)), asynq.Queue("threadmill"), asynq.ProcessIn(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := insp.ArchiveTask("threadmill", "p0"); err != nil {
		t.Fatal(err)
	}
	if err := insp.PauseQueue("threadmill"); err != nil {
		t.Fatal(err)
	}

	m := metrics.New(metrics.Options{NoRuntimeCollectors: true})
	m.Registry().MustRegister(metrics.NewQueueCollector(insp, []string{"threadmill", "critical"}, nil))
	want := `
# HELP threadmill_queue_tasks Tasks in an asynq queue, by state.
# TYPE threadmill_queue_tasks gauge
threadmill_queue_tasks{queue="critical",state="active"} 0
threadmill_queue_tasks{queue="critical",state="aggregating"} 0
threadmill_queue_tasks{queue="critical",state="archived"} 0
threadmill_queue_tasks{queue="critical",state="completed"} 0
threadmill_queue_tasks{queue="critical",state="pending"} 0
threadmill_queue_tasks{queue="critical",state="retry"} 0
threadmill_queue_tasks{queue="critical",state="scheduled"} 0
threadmill_queue_tasks{queue="threadmill",state="active"} 0
threadmill_queue_tasks{queue="threadmill",state="aggregating"} 0
threadmill_queue_tasks{queue="threadmill",state="archived"} 1
threadmill_queue_tasks{queue="threadmill",state="completed"} 0
threadmill_queue_tasks{queue="threadmill",state="pending"} 2
threadmill_queue_tasks{queue="threadmill",state="retry"} 0
threadmill_queue_tasks{queue="threadmill",state="scheduled"} 1
# HELP threadmill_queue_paused 1 when the asynq queue is paused.
# TYPE threadmill_queue_paused gauge
threadmill_queue_paused{queue="critical"} 0
threadmill_queue_paused{queue="threadmill"} 1
# HELP threadmill_queue_inspector_up 1 when the last read of the asynq queues from Redis succeeded.
# TYPE threadmill_queue_inspector_up gauge
threadmill_queue_inspector_up 1
`
	names := []string{"threadmill_queue_tasks", "threadmill_queue_paused", "threadmill_queue_inspector_up"}
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
	out := scrape(t, m)
	for _, s := range []string{`threadmill_queue_latency_seconds{queue="threadmill"}`, `threadmill_queue_memory_bytes{queue="threadmill"}`,
		`threadmill_queue_processed_total{queue="threadmill"} 0`, `threadmill_queue_failed_total{queue="threadmill"} 0`} {
		if !strings.Contains(out, s) {
			t.Errorf("/metrics lacks %s", s)
		}
	}

	// Redis gone: the collector says so and the rest of /metrics still works.
	rs.Kill()
	m.ItemFinished("p", "s", metrics.StateSucceeded, 0)
	out = scrape(t, m)
	if !strings.Contains(out, "threadmill_queue_inspector_up 0") || !strings.Contains(out, `threadmill_items_total{pipeline="p",state="succeeded",step="s"} 1`) {
		t.Errorf("with Redis down, /metrics = \n%s", out)
	}
}

func TestServerHealthAndReadiness(t *testing.T) {
	rs := redistest.Start(t)
	rdb := rs.Client(t)
	m := metrics.New(metrics.Options{Role: "worker"})
	health := &metrics.Health{Timeout: time.Second}
	health.AddReadiness("redis", metrics.RedisCheck(rdb))
	srv, err := metrics.Listen("127.0.0.1:0", metrics.NewServeMux(m.Registry(), health), nil)
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + srv.Addr()
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	if code, body := get("/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	if code, body := get("/readyz"); code != 200 || body != "ok redis\nok\n" {
		t.Errorf("/readyz = %d %q", code, body)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, `threadmill_build_info{goversion="go`) || !strings.Contains(body, "go_goroutines") {
		t.Errorf("/metrics = %d\n%s", code, body)
	}
	if code, _ := get("/nope"); code != 404 {
		t.Errorf("/nope = %d, want 404", code)
	}

	// A busy port is reported with its address.
	if _, err := metrics.Listen(srv.Addr(), http.NotFoundHandler(), nil); err == nil || !strings.Contains(err.Error(), srv.Addr()) {
		t.Errorf("Listen on a busy port: %v", err)
	}

	rs.Kill()
	code, body := get("/readyz")
	if code != http.StatusServiceUnavailable || !strings.HasPrefix(body, "fail redis: redis ping: ") {
		t.Errorf("/readyz with Redis down = %d %q", code, body)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("/healthz with Redis down = %d; liveness must not depend on Redis", code)
	}
	http.DefaultClient.CloseIdleConnections()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("server still answers after Shutdown")
	}
}

func TestServeStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- metrics.Serve(ctx, "127.0.0.1:0", http.NotFoundHandler(), nil) }()
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its context was cancelled")
	}
	if err := metrics.Serve(context.Background(), "256.0.0.1:1", http.NotFoundHandler(), nil); err == nil || !strings.Contains(err.Error(), "256.0.0.1:1") {
		t.Errorf("Serve on a bad address: %v", err)
	}
}
