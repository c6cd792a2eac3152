package redishealth_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/threadmill/threadmill/internal/redishealth"
	"github.com/threadmill/threadmill/internal/redistest"
)

// logBuf collects log lines while the test reads them.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// count returns how many lines hold s.
func (l *logBuf) count(s string) int {
	n := 0
	for line := range strings.SplitSeq(l.String(), "\n") {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}

// waitFor polls cond every 10ms until it holds or timeout passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, bounded by the deadline
	}
}

func TestWatcherLostRestoredAndQuietHandler(t *testing.T) {
	redis.SetLogger(quiet{}) // go-redis's own dial-failure lines would fill the test log
	rs := redistest.Start(t)
	rdb := rs.Client(t)
	var out logBuf
	text := slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelInfo})
	w := redishealth.New(redishealth.Config{RDB: rdb, Logger: slog.New(text), Interval: 50 * time.Millisecond})
	log := slog.New(w.Handler(text))
	asynqLog := log.With("component", "asynq")

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	defer func() { cancel(); <-done }()

	// Up: every line passes.
	asynqLog.Error("Dequeue error: something")
	log.Warn("could not count the retry", "error", "dial unix "+rs.Socket+": connect: connection refused")
	waitFor(t, "the lines logged while up", time.Second, func() bool { return out.count("level=") == 2 })
	if w.Down() {
		t.Fatal("watcher says down while Redis answers")
	}
	if strings.Contains(out.String(), "redis connection") {
		t.Fatalf("a transition was logged while Redis answered:\n%s", out.String())
	}

	rs.Kill()
	// A connection error logged before the next tick makes the watcher
	// probe at once: the line itself is already quiet.
	log.Error("could not record", "error", "dial unix "+rs.Socket+": connect: connection refused")
	if !w.Down() {
		t.Fatal("a connection error while Redis is dead did not make the watcher probe")
	}
	for range 20 {
		asynqLog.Warn("Could not move task id=x from active to retry; Will retry syncing")
		log.Warn("could not release the in-flight slot", "error", "EOF")
	}
	log.Error("the API answered 500", "error", "workspace: POST /api/v1/app/chat: 500 Internal Server Error")
	log.Info("item attempt failed; retrying")
	waitFor(t, "the API error line", time.Second, func() bool { return out.count("the API answered 500") == 1 })

	rs.Restart(t)
	waitFor(t, "the restored line", 5*time.Second, func() bool { return out.count("redis connection restored") == 1 })
	log.Warn("could not count the retry", "error", "EOF") // up again: passes
	waitFor(t, "a line after the restore", time.Second, func() bool { return out.count("could not count the retry") == 2 })

	got := out.String()
	if n := out.count(`level=WARN msg="redis connection lost" redis=` + rs.Socket); n != 1 {
		t.Errorf("%d lost lines naming the socket, want 1:\n%s", n, got)
	}
	if n := out.count("redis connection restored"); n != 1 || !strings.Contains(got, "down_for=") || !strings.Contains(got, "suppressed_lines=41") {
		t.Errorf("restored line: %d, want one with down_for and suppressed_lines=41:\n%s", n, got)
	}
	for _, quietLine := range []string{"Could not move task", "could not release the in-flight slot", "could not record"} {
		if n := out.count(quietLine); n != 0 {
			t.Errorf("%q logged %d times during the outage, want 0 (demoted to debug):\n%s", quietLine, n, got)
		}
	}
	if out.count("item attempt failed; retrying") != 1 {
		t.Errorf("an info line was dropped:\n%s", got)
	}
}

// Demoted lines stay visible at debug level, marked with their level.
func TestHandlerDemotesToDebug(t *testing.T) {
	redis.SetLogger(quiet{})
	rs := redistest.Start(t)
	rdb := rs.Client(t)
	var out logBuf
	text := slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug})
	w := redishealth.New(redishealth.Config{RDB: rdb, Logger: slog.New(text), Interval: time.Hour})
	log := slog.New(w.Handler(text)).With("component", "asynq")
	rs.Kill()
	log.Error("Failed to forward scheduled tasks")
	got := out.String()
	if !strings.Contains(got, `level=DEBUG msg="Failed to forward scheduled tasks" component=asynq demoted_from=ERROR`) {
		t.Errorf("no demoted line:\n%s", got)
	}
	if !strings.Contains(got, `level=WARN msg="redis connection lost"`) {
		t.Errorf("no lost line:\n%s", got)
	}
}

func TestAddr(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "10.0.0.5:6379", Password: "s3cret"})
	defer c.Close()
	if got := redishealth.Addr(c); got != "10.0.0.5:6379" {
		t.Errorf("Addr = %q", got)
	}
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"a:1", "b:2"}})
	defer cc.Close()
	if got := redishealth.Addr(cc); got != "a:1,b:2" {
		t.Errorf("Addr(cluster) = %q", got)
	}
}

type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}
