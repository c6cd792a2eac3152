package scheduler

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/threadmill/threadmill/internal/redistest"
	"github.com/threadmill/threadmill/internal/syncbuf"
)

// A Redis restart under the scheduler: one lost line, one restored line,
// and asynq's heartbeat errors in between demoted to debug.
func TestSchedulerRedisOutageLogsOnce(t *testing.T) {
	// Registered first, run last: after the clients are closed, before the
	// goroutine-leak check.
	t.Cleanup(func() { redistest.WaitDialersGone(t, 5*time.Second) })
	e := newEnv(t)
	e.write("hourly.yaml", pipelineYAML("hourly", "0 * * * *", "UTC", "none", 0))
	var out syncbuf.Buffer
	log := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelInfo}))
	e.start(e.scheduler(func(c *Config) { c.Logger = log }))
	eventually(t, 10*time.Second, "the scheduler to start", func() bool { return strings.Contains(out.String(), "scheduler started") })

	before := len(out.String())
	e.srv.Kill()
	eventually(t, 10*time.Second, "the lost line", func() bool { return strings.Contains(out.String(), "redis connection lost") })
	// The outage's length, long enough for asynq's 100ms heartbeats to fail
	// many times: not a wait for a condition.
	time.Sleep(2 * time.Second)
	e.srv.Restart(t)
	eventually(t, 10*time.Second, "the restored line", func() bool { return strings.Contains(out.String(), "redis connection restored") })

	got := out.String()[before:]
	t.Logf("from the kill on:\n%s", got)
	if n := strings.Count(got, `level=WARN msg="redis connection lost" redis=`+e.srv.Socket); n != 1 {
		t.Errorf("%d lost lines naming the socket, want 1:\n%s", n, got)
	}
	if n := strings.Count(got, `level=INFO msg="redis connection restored"`); n != 1 {
		t.Errorf("%d restored lines, want 1:\n%s", n, got)
	}
	if n := strings.Count(got, "level=WARN") + strings.Count(got, "level=ERROR"); n > 5 {
		t.Errorf("%d WARN/ERROR lines during a 2s outage, want at most 5:\n%s", n, got)
	}
}
