package worker_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/threadmill/threadmill/internal/hostile"
	"github.com/threadmill/threadmill/internal/redistest"
	"github.com/threadmill/threadmill/jobs"
	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/results"
	"github.com/threadmill/threadmill/runstore"
	"github.com/threadmill/threadmill/worker"
	"github.com/threadmill/threadmill/workspace"
	"github.com/threadmill/threadmill/workspace/simulator"
)

const (
	testProject = "proj_test"
	testToken   = "tm-test-token-3f9a1c"
)

// env is one test's world: a private redis-server, the simulator over real
// HTTP, and the pieces to start runs and workers on them.
type env struct {
	t       testing.TB
	redis   *redistest.Server
	sim     *simulator.Server
	front   *hostile.Front // between the workers and the simulator; no rules by default
	http    *httptest.Server
	api     *workspace.Client
	store   *runstore.Store
	results string
	log     *requestLog
	sent    *sendLog
}

// sendLog records, on the client side, when each API request was sent and
// when its answer came back: what the workers did, free of the server's
// scheduling delays.
type sendLog struct {
	base http.RoundTripper
	mu   sync.Mutex
	reqs []loggedRequest
}

func (s *sendLog) RoundTrip(r *http.Request) (*http.Response, error) {
	sent := time.Now()
	resp, err := s.base.RoundTrip(r)
	lr := loggedRequest{Method: r.Method, Path: r.URL.Path, Arrived: sent, Answered: time.Now()}
	if err == nil {
		lr.Status, lr.RetryAfter = resp.StatusCode, resp.Header.Get("Retry-After")
	}
	s.mu.Lock()
	s.reqs = append(s.reqs, lr)
	s.mu.Unlock()
	return resp, err
}

func (s *sendLog) snapshot() []loggedRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]loggedRequest(nil), s.reqs...)
}

// requestLog records every API request the simulator answered: when it
// arrived, when it was answered, and how.
type requestLog struct {
	mu   sync.Mutex
	reqs []loggedRequest
}

type loggedRequest struct {
	Method, Path string
	Arrived      time.Time
	Answered     time.Time
	Status       int
	RetryAfter   string
}

func (l *requestLog) snapshot() []loggedRequest {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]loggedRequest(nil), l.reqs...)
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Hijack lets a hostile rule reset the connection.
func (r *statusRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := r.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("the response writer cannot be hijacked")
	}
	return hj.Hijack()
}

func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func newEnv(t testing.TB, cfg simulator.Config) *env {
	t.Helper()
	return newEnvRedis(t, cfg, redistest.Options{})
}

// newEnvRedis is newEnv with a Redis started with ro.
func newEnvRedis(t testing.TB, cfg simulator.Config, ro redistest.Options) *env {
	t.Helper()
	e := &env{t: t, redis: redistest.StartWith(t, ro), results: t.TempDir(), log: &requestLog{}}
	cfg.ProjectID = testProject
	cfg.Token = testToken
	e.sim = simulator.New(cfg)
	t.Cleanup(e.sim.Close)
	e.front = hostile.New(e.sim)
	t.Cleanup(e.front.Close)
	e.http = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		e.front.ServeHTTP(rec, r)
		e.log.mu.Lock()
		e.log.reqs = append(e.log.reqs, loggedRequest{
			Method: r.Method, Path: r.URL.Path, Arrived: arrived, Answered: time.Now(),
			Status: rec.status, RetryAfter: rec.Header().Get("Retry-After"),
		})
		e.log.mu.Unlock()
	}))
	t.Cleanup(e.http.Close)
	e.sent = &sendLog{base: http.DefaultTransport}
	e.client()
	e.store = runstore.New(e.rdb(), "")
	return e
}

// client (re)builds the env's Workspace client, with extra options; workers
// started afterwards use it.
func (e *env) client(opts ...workspace.Option) {
	e.t.Helper()
	base := []workspace.Option{workspace.WithToken(testToken), workspace.WithOrg("default"),
		workspace.WithHTTPClient(&http.Client{Transport: e.sent}),
		workspace.WithPollInterval(20*time.Millisecond, 200*time.Millisecond)}
	api, err := workspace.New(e.http.URL, append(base, opts...)...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.api = api
}

// rdb returns a new Redis client (its own connection pool).
func (e *env) rdb() *redis.Client {
	o := e.redis.Options()
	o.PoolSize = 128
	c := redis.NewClient(o)
	e.t.Cleanup(func() { _ = c.Close() })
	return c
}

func (e *env) asynqOpt() asynq.RedisClientOpt {
	return asynq.RedisClientOpt{Network: "unix", Addr: e.redis.Socket, PoolSize: 128}
}

// folder adds a folder with n documents to the simulator and returns its name.
func (e *env) folder(name string, n int) string {
	f := e.sim.AddArtifact(simulator.ArtifactSpec{Name: name, Type: workspace.ArtifactTypeFolder})
	for i := range n {
		e.sim.AddArtifact(simulator.ArtifactSpec{
			Name:     fmt.Sprintf("doc-%04d.md", i),
			ParentID: f.ID,
			Content: fmt.Sprintf("Document %d reports that the billing export failed on day %d. "+
				"The customer asked for a refund of %d euros. Support escalated the case to tier two.", i, i%28+1, 10+i),
		})
	}
	return name
}

// tlog sends logs to t.Log.
type tlog struct{ t testing.TB }

func (l tlog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("THREADMILL_TEST_LOGS") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(tlog{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// workerOpts tweaks a worker's config.
type workerOpts func(*worker.Config)

// startWorker runs a worker until the test ends (or stop is called) and
// returns it with a stop function that waits for Run to return.
func (e *env) startWorker(opts ...workerOpts) (*worker.Worker, func()) {
	e.t.Helper()
	cfg := worker.Config{
		Redis:           e.asynqOpt(),
		RDB:             e.rdb(),
		API:             e.api,
		Concurrency:     16,
		ResultsRoot:     e.results,
		PollInterval:    50 * time.Millisecond,
		RetryBase:       20 * time.Millisecond,
		RetryMax:        200 * time.Millisecond,
		ShutdownTimeout: 10 * time.Second,
		Logger:          testLogger(e.t),
	}
	for _, o := range opts {
		o(&cfg)
	}
	w, err := worker.New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				e.t.Errorf("worker.Run: %v", err)
			}
		})
	}
	e.t.Cleanup(stop)
	return w, stop
}

// pipeline parses a pipeline from YAML.
func (e *env) pipeline(yaml string) *pipelines.Pipeline {
	e.t.Helper()
	p, err := pipelines.Parse("test.yaml", []byte(yaml), func(string) (string, bool) { return "", false })
	if err != nil {
		e.t.Fatalf("parse pipeline: %v", err)
	}
	return p
}

// start starts a run of p and returns its id.
func (e *env) start(p *pipelines.Pipeline, runID string) string {
	e.t.Helper()
	q := asynq.NewClient(e.asynqOpt())
	defer q.Close()
	info := pipelines.RunInfo{ID: runID, Time: time.Date(2026, 7, 6, 9, 0, 0, 0, time.UTC)}
	if err := jobs.StartRun(context.Background(), q, e.store, p, info, asynq.Queue(worker.DefaultQueue)); err != nil {
		e.t.Fatalf("StartRun: %v", err)
	}
	return runID
}

// wait waits for the run to finish (at most d).
func (e *env) wait(runID string, d time.Duration) *runstore.RunState {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	st, err := e.store.Wait(ctx, runID)
	if err != nil {
		cur, _ := e.store.Run(context.Background(), runID)
		e.t.Fatalf("wait for run %s: %v (state: %+v)", runID, err, cur)
	}
	return st
}

// readItems reads a results.jsonl or errors.jsonl file.
func readItems(t testing.TB, path string) []results.Item {
	t.Helper()
	var out []results.Item
	for it, err := range results.ReadItems(path) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, it)
	}
	return out
}

func readRun(t testing.TB, dir string) *results.Run {
	t.Helper()
	r, err := results.ReadRun(dir)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func resultsFile(dir string) string { return filepath.Join(dir, results.ResultsFile) }

// startNoReuse starts a run of p that sends every item (--no-reuse).
func (e *env) startNoReuse(p *pipelines.Pipeline, runID string) string {
	e.t.Helper()
	q := asynq.NewClient(e.asynqOpt())
	defer q.Close()
	info := pipelines.RunInfo{ID: runID, Time: time.Date(2026, 7, 6, 9, 0, 0, 0, time.UTC), NoReuse: true}
	if err := jobs.StartRun(context.Background(), q, e.store, p, info, asynq.Queue(worker.DefaultQueue)); err != nil {
		e.t.Fatalf("StartRun: %v", err)
	}
	return runID
}
