package worker_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/threadmill/threadmill/internal/redistest"
	"github.com/threadmill/threadmill/worker"
	"github.com/threadmill/threadmill/workspace/simulator"
)

// lineLog collects a worker's log lines as the test reads them.
type lineLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lineLog) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Split(strings.TrimSpace(l.b.String()), "\n")
}

// index returns the index of the first line holding s, or -1.
func (l *lineLog) index(s string) int {
	for i, line := range l.lines() {
		if strings.Contains(line, s) {
			return i
		}
	}
	return -1
}

type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

// A Redis restart under a worker with items in flight: one "lost" warning
// naming the server, one "restored" line with the time it was down, and
// hardly any other warning or error in between (asynq's and the worker's
// connection errors are demoted to debug).
func TestRedisOutageLogsLostAndRestoredOnce(t *testing.T) {
	// Registered first, run last: after the clients are closed, before the
	// goroutine-leak check.
	t.Cleanup(func() { redistest.WaitDialersGone(t, 5*time.Second) })
	redis.SetLogger(quietRedis{}) // as main does: go-redis's own lines are not the worker's
	e := newEnvRedis(t, simulator.Config{Async: true, Latency: 500 * time.Millisecond}, redistest.Options{AppendOnly: true})
	e.folder("Inbox", 16)
	var out lineLog
	log := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelInfo}))
	// As the threadmill command runs it: asynq shares the run store's client.
	e.startWorker(func(c *worker.Config) { c.Logger, c.Redis = log, nil })
	// Items that poll their interactions through the shared rate limit:
	// every poll during the outage is a failed Redis call.
	e.start(e.pipeline(outagePipeline), "outage-1")
	pollUntil(t, "items in flight", 30*time.Second, func() bool { return e.sim.Counters().InteractionsCreated >= 16 })

	killedAt := len(out.lines())
	e.redis.Kill()
	pollUntil(t, "the lost line", 10*time.Second, func() bool { return out.index("redis connection lost") >= 0 })
	time.Sleep(5 * time.Second) // the outage's length: not a wait for a condition
	e.redis.Restart(t)
	pollUntil(t, "the restored line", 10*time.Second, func() bool { return out.index("redis connection restored") >= 0 })

	lines := out.lines()
	var lost, restored, loud []string
	for _, line := range lines[killedAt:] {
		switch {
		case strings.Contains(line, "redis connection lost"):
			lost = append(lost, line)
		case strings.Contains(line, "redis connection restored"):
			restored = append(restored, line)
		}
		if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
			loud = append(loud, line)
		}
	}
	all := strings.Join(lines, "\n")
	if len(lost) != 1 || !strings.Contains(lost[0], `level=WARN msg="redis connection lost" redis=`+e.redis.Socket+" error=") {
		t.Errorf("lost lines: %q, want one WARN naming %s and the cause\n%s", lost, e.redis.Socket, all)
	}
	if len(restored) != 1 || !strings.Contains(restored[0], `level=INFO msg="redis connection restored" redis=`+e.redis.Socket+" down_for=") {
		t.Errorf("restored lines: %q, want one INFO with down_for\n%s", restored, all)
	}
	if len(loud) > 5 {
		t.Errorf("%d WARN/ERROR lines during a 3s outage, want at most 5:\n%s", len(loud), strings.Join(loud, "\n"))
	}
	if testing.Verbose() {
		t.Logf("lines from the kill on:\n%s", strings.Join(lines[killedAt:], "\n"))
	}
	t.Logf("%d WARN/ERROR lines from the kill to the restore; restored: %s", len(loud), restored)
}

const outagePipeline = `
version: 1
name: outage
workspace: { project: proj_test }
limits: { concurrency: 16, requests_per_minute: 100000, max_attempts: 12 }
artifacts:
  docs: { folder: "Inbox" }
steps:
  - id: summarize
    for_each: docs
    prompt: "Summarize {{ .Artifact.Name }}."
`

// pollUntil polls cond every 20ms until it holds or timeout passes.
func pollUntil(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition, bounded by the deadline
	}
}
