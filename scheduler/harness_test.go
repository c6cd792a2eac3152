package scheduler

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/threadmill/threadmill/internal/redistest"
	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/runstore"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// go-redis pools close their connections asynchronously.
		goleak.IgnoreTopFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).reaper"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
}

// env is one test's Redis, run store, asynq client and pipelines directory.
type env struct {
	t       *testing.T
	srv     *redistest.Server
	rdb     *redis.Client
	store   *runstore.Store
	client  *asynq.Client
	dir     string
	starter *countingStarter
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	client := asynq.NewClient(redisOpt(srv))
	t.Cleanup(func() { _ = client.Close() })
	store := runstore.New(rdb, "")
	e := &env{
		t: t, srv: srv, rdb: rdb, store: store, client: client, dir: t.TempDir(),
	}
	e.starter = &countingStarter{next: &JobsStarter{Client: client, Store: store}, created: map[string]int{}}
	return e
}

// redisOpt is the asynq connection option of a redistest server.
func redisOpt(s *redistest.Server) asynq.RedisClientOpt {
	return asynq.RedisClientOpt{Network: "unix", Addr: s.Socket}
}

// countingStarter counts, per run id, how many calls created the run.
type countingStarter struct {
	next    Starter
	mu      sync.Mutex
	calls   int
	created map[string]int
}

func (c *countingStarter) Start(ctx context.Context, p *pipelines.Pipeline, run pipelines.RunInfo, overlap string) (runstore.Admission, error) {
	a, err := c.next.Start(ctx, p, run, overlap)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	if a.Outcome == runstore.AdmitCreated {
		c.created[run.ID]++
	}
	return a, err
}

func (c *countingStarter) snapshot() (calls int, created map[string]int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := make(map[string]int, len(c.created))
	for k, v := range c.created {
		m[k] = v
	}
	return c.calls, m
}

// pipelineYAML is a valid pipeline file with the given schedule.
func pipelineYAML(name, cron, tz, catchup string, limit int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "version: 1\nname: %s\n", name)
	fmt.Fprintf(&b, "schedule: { cron: %q, timezone: %s, catchup: %s", cron, tz, catchup)
	if limit > 0 {
		fmt.Fprintf(&b, ", catchup_limit: %d", limit)
	}
	b.WriteString(" }\n")
	b.WriteString(`workspace: { project: proj_7a5c3e1b9d2f4a6c }
artifacts:
  tickets: { folder: Support/Tickets, updated: within_run_window, allow_empty: true }
steps:
  - id: summarize
    for_each: tickets
    prompt: "Summarize {{ .Artifact.Name }} in three bullets."
`)
	return b.String()
}

// withOverlap sets schedule.overlap in a pipelineYAML file.
func withOverlap(yaml, overlap string) string {
	return strings.Replace(yaml, " }\n", ", overlap: "+overlap+" }\n", 1)
}

// write writes a file into the pipelines directory atomically (temp file,
// rename), as editors and config management do.
func (e *env) write(name, content string) {
	e.t.Helper()
	tmp := filepath.Join(e.dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(e.dir, name)); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) remove(name string) {
	e.t.Helper()
	if err := os.Remove(filepath.Join(e.dir, name)); err != nil {
		e.t.Fatal(err)
	}
}

func load(path string) (*pipelines.Pipeline, error) {
	return pipelines.Load(path, func(string) (string, bool) { return "", false })
}

// clock is a settable test clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.now = t }

// scheduler builds a Scheduler over the env; mod adjusts its config.
func (e *env) scheduler(mod func(*Config)) *Scheduler {
	e.t.Helper()
	cfg := Config{
		Dir:               e.dir,
		Load:              load,
		RDB:               e.rdb,
		Starter:           e.starter,
		SyncInterval:      time.Hour,
		HeartbeatInterval: 100 * time.Millisecond,
		Debounce:          50 * time.Millisecond,
		Logger:            testLogger(e.t),
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

// start runs s until the test ends and returns a function that stops it and
// waits for Run to return.
func (e *env) start(s *Scheduler) (stop func()) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					e.t.Errorf("Run: %v", err)
				}
			case <-time.After(30 * time.Second):
				e.t.Error("Run did not return 30s after cancel")
			}
		})
	}
	e.t.Cleanup(stop)
	return stop
}

// runsOf returns the run store's runs of pipeline, by id.
func (e *env) runsOf(pipeline string) map[string]runstore.RunState {
	e.t.Helper()
	runs, err := e.store.Runs(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]runstore.RunState{}
	for _, r := range runs {
		if r.Pipeline == pipeline {
			out[r.ID] = r
		}
	}
	return out
}

// eventually polls cond every 20ms until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition, bounded by the deadline
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
