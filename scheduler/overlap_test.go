package scheduler

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/threadmill/threadmill/jobs"
	"github.com/threadmill/threadmill/runstore"
)

// weeklyFires are three Monday 09:00 UTC fire times, a week apart.
var weeklyFires = []string{"2026-03-02T09:00:00Z", "2026-03-09T09:00:00Z", "2026-03-16T09:00:00Z"}

func weeklyID(fire string) string { return "weekly@" + fire }

// observed is an Observer that keeps what it is told.
type observed struct {
	mu      sync.Mutex
	fired   map[string]int // outcome -> count
	skipped map[string]int // reason -> count
}

func newObserved() *observed {
	return &observed{fired: map[string]int{}, skipped: map[string]int{}}
}

func (o *observed) SchedulerFired(_, outcome string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.fired[outcome]++
}

func (o *observed) SchedulerSkipped(_, reason string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.skipped[reason]++
}

func (o *observed) SchedulerSynced(time.Time, int, int) {}

func (o *observed) counts() (fired, skipped map[string]int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return maps(o.fired), maps(o.skipped)
}

func maps(m map[string]int) map[string]int {
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// logBuffer collects log lines (and passes them to t.Log).
type logBuffer struct {
	t  *testing.T
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.b.Write(p)
	l.mu.Unlock()
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// lines returns the lines that contain every one of subs.
func (l *logBuffer) lines(subs ...string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range strings.Split(l.b.String(), "\n") {
		ok := line != ""
		for _, s := range subs {
			ok = ok && strings.Contains(line, s)
		}
		if ok {
			out = append(out, line)
		}
	}
	return out
}

// overlapEnv is an env with a weekly pipeline of the given overlap (""
// leaves the default) and schedulers that log to one buffer and report to
// one observer.
type overlapEnv struct {
	*env
	logs *logBuffer
	obs  *observed
}

func newOverlapEnv(t *testing.T, overlap string) *overlapEnv {
	e := &overlapEnv{env: newEnv(t), logs: &logBuffer{t: t}, obs: newObserved()}
	y := pipelineYAML("weekly", "0 9 * * MON", "UTC", "none", 0)
	if overlap != "" {
		y = withOverlap(y, overlap)
	}
	e.write("weekly.yaml", y)
	return e
}

// scheduler returns a synced scheduler, as a new process would be.
func (e *overlapEnv) synced() *Scheduler {
	e.t.Helper()
	s := e.scheduler(func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
		c.Observer = e.obs
	})
	if _, err := s.Sync(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	return s
}

// fire does what a cron firing at fire does, then handles the fire task in
// each of the schedulers at once (two processes whose crons fired together).
func (e *overlapEnv) fire(fire string, ss ...*Scheduler) {
	e.t.Helper()
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make([]error, len(ss))
	for i, s := range ss {
		s.recordFire(ctx, "weekly", mustTime(e.t, fire).Add(300*time.Millisecond))
		wg.Go(func() { errs[i] = s.handleFire(ctx, mustFire(e.t, "weekly")) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			e.t.Fatal(err)
		}
	}
}

func (e *overlapEnv) markRunning(id string) {
	e.t.Helper()
	if err := e.store.MarkRunning(context.Background(), id); err != nil {
		e.t.Fatal(err)
	}
}

func (e *overlapEnv) finish(id string) {
	e.t.Helper()
	if err := e.store.Finish(context.Background(), id, runstore.StatusSucceeded, ""); err != nil {
		e.t.Fatal(err)
	}
}

// runIDs returns the ids of the weekly pipeline's runs, sorted.
func (e *overlapEnv) runIDs() []string {
	var ids []string
	for id := range e.runsOf("weekly") {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// startTasks returns the run ids of the run:start tasks enqueued, sorted.
func (e *overlapEnv) startTasks() []string {
	e.t.Helper()
	in := asynq.NewInspectorFromRedisClient(e.rdb)
	tasks, err := in.ListPendingTasks("default")
	if err != nil && !strings.Contains(err.Error(), "does not exist") {
		e.t.Fatal(err)
	}
	var ids []string
	for _, ti := range tasks {
		rs, err := jobs.DecodeRunStart(asynq.NewTask(ti.Type, ti.Payload))
		if err != nil {
			e.t.Fatal(err)
		}
		ids = append(ids, rs.RunID)
	}
	slices.Sort(ids)
	return ids
}

func (e *overlapEnv) pendingFires() []string {
	e.t.Helper()
	fs, err := (&state{rdb: e.rdb, prefix: DefaultPrefix}).pending(context.Background(), "weekly")
	if err != nil {
		e.t.Fatal(err)
	}
	return rfc(fs)
}

func wantStrings(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) && (len(got) != 0 || len(want) != 0) {
		t.Errorf("%s: got %v, want %v", what, got, want)
	}
}

// skip (the default): a fire time while the previous run is still running
// starts nothing, says so in one line naming the running run, and counts
// it; once the run ended, the next fire time starts.
func TestOverlapSkip(t *testing.T) {
	e := newOverlapEnv(t, "")
	s := e.synced()
	run1, run2, run3 := weeklyID(weeklyFires[0]), weeklyID(weeklyFires[1]), weeklyID(weeklyFires[2])

	e.fire(weeklyFires[0], s)
	e.markRunning(run1)
	e.fire(weeklyFires[1], s)
	wantStrings(t, "runs while run 1 runs", e.runIDs(), run1)
	wantStrings(t, "pending fire times", e.pendingFires())
	lines := e.logs.lines("level=WARN", "fire time skipped", "active_run="+run1, "run="+run2)
	if len(lines) != 1 {
		t.Errorf("%d skip lines naming %s, want 1:\n%s", len(lines), run1, strings.Join(e.logs.lines("skipped"), "\n"))
	}
	if fired, skipped := e.obs.counts(); fired["skipped"] != 1 || skipped["overlap"] != 1 || fired["created"] != 1 {
		t.Errorf("metrics: fired %v, skipped %v", fired, skipped)
	}

	e.finish(run1)
	e.fire(weeklyFires[2], s)
	wantStrings(t, "runs after run 1 ended", e.runIDs(), run1, run3)
	wantStrings(t, "run:start tasks", e.startTasks(), run1, run3)
}

// allow: every fire time starts its run, whatever is running.
func TestOverlapAllow(t *testing.T) {
	e := newOverlapEnv(t, "allow")
	s := e.synced()
	run1, run2 := weeklyID(weeklyFires[0]), weeklyID(weeklyFires[1])
	e.fire(weeklyFires[0], s)
	e.markRunning(run1)
	e.fire(weeklyFires[1], s)
	wantStrings(t, "runs", e.runIDs(), run1, run2)
	wantStrings(t, "run:start tasks", e.startTasks(), run1, run2)
	if len(e.logs.lines("skipped")) > 0 || len(e.logs.lines("queued")) > 0 {
		t.Errorf("allow logged a skip or a queue:\n%s", strings.Join(e.logs.lines(), "\n"))
	}
}

// queue: the next fire time's run is recorded but starts only once the
// previous run finished, in fire-time order, also when the scheduler that
// queued it is gone (another process, or the same one restarted, picks it
// up at its next sync).
func TestOverlapQueue(t *testing.T) {
	e := newOverlapEnv(t, "queue")
	s := e.synced()
	run1, run2, run3 := weeklyID(weeklyFires[0]), weeklyID(weeklyFires[1]), weeklyID(weeklyFires[2])
	ctx := context.Background()

	e.fire(weeklyFires[0], s)
	e.markRunning(run1)
	e.fire(weeklyFires[1], s)
	e.fire(weeklyFires[2], s)
	wantStrings(t, "runs recorded", e.runIDs(), run1, run2, run3)
	wantStrings(t, "run:start tasks while run 1 runs", e.startTasks(), run1)
	wantStrings(t, "pending fire times", e.pendingFires(), weeklyFires[1], weeklyFires[2])
	r2 := e.runsOf("weekly")[run2]
	if r2.Status != runstore.StatusPending || r2.WaitingFor != run1 {
		t.Errorf("run 2: %s waiting for %q, want pending waiting for %s", r2.Status, r2.WaitingFor, run1)
	}
	if n := len(e.logs.lines("level=INFO", "run queued", "run="+run2, "waiting_for="+run1)); n != 1 {
		t.Errorf("%d queue lines for run 2, want 1", n)
	}
	// Syncing while run 1 runs changes nothing.
	if _, err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	wantStrings(t, "run:start tasks after a sync", e.startTasks(), run1)

	// Run 1 ends; the scheduler that queued run 2 is gone: a new one starts
	// run 2 at its first sync, and run 3 waits for run 2.
	e.finish(run1)
	s2 := e.synced()
	wantStrings(t, "run:start tasks after run 1", e.startTasks(), run1, run2)
	wantStrings(t, "pending fire times after run 1", e.pendingFires(), weeklyFires[2])
	if w := e.runsOf("weekly")[run3].WaitingFor; w != run2 {
		t.Errorf("run 3 waits for %q, want %s", w, run2)
	}
	e.markRunning(run2)
	e.finish(run2)
	if _, err := s2.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	wantStrings(t, "run:start tasks after run 2", e.startTasks(), run1, run2, run3)
	wantStrings(t, "pending fire times at the end", e.pendingFires())
	if fired, _ := e.obs.counts(); fired["created"] != 3 || fired["queued"] != 2 {
		t.Errorf("fires counted %v, want 3 created and 2 queued", fired)
	}
}

// Two schedulers whose crons fire the same instant while the previous run
// is active make one decision: under skip, one skip line and one count and
// no run; under queue, one waiting run, and once the previous run ended,
// one start.
func TestOverlapTwoSchedulersOneDecision(t *testing.T) {
	t.Run("skip", func(t *testing.T) {
		e := newOverlapEnv(t, "skip")
		a, b := e.synced(), e.synced()
		run1, run2 := weeklyID(weeklyFires[0]), weeklyID(weeklyFires[1])
		e.fire(weeklyFires[0], a, b)
		e.markRunning(run1)
		e.fire(weeklyFires[1], a, b)
		wantStrings(t, "runs", e.runIDs(), run1)
		if n := len(e.logs.lines("fire time skipped", "run="+run2)); n != 1 {
			t.Errorf("%d skip lines, want 1", n)
		}
		if fired, skipped := e.obs.counts(); fired["created"] != 1 || fired["skipped"] != 1 || skipped["overlap"] != 1 {
			t.Errorf("metrics: fired %v, skipped %v", fired, skipped)
		}
		// The skip sticks: the previous run ends, a scheduler syncs: the
		// skipped fire time is not started after all.
		e.finish(run1)
		if _, err := a.Sync(context.Background()); err != nil {
			t.Fatal(err)
		}
		wantStrings(t, "runs after run 1", e.runIDs(), run1)
	})
	t.Run("queue", func(t *testing.T) {
		e := newOverlapEnv(t, "queue")
		a, b := e.synced(), e.synced()
		run1, run2 := weeklyID(weeklyFires[0]), weeklyID(weeklyFires[1])
		e.fire(weeklyFires[0], a, b)
		e.markRunning(run1)
		e.fire(weeklyFires[1], a, b)
		if n := len(e.logs.lines("run queued", "run="+run2)); n != 1 {
			t.Errorf("%d queue lines, want 1", n)
		}
		e.finish(run1)
		// Both handle the next fire task (or sync) at once.
		var wg sync.WaitGroup
		for _, s := range []*Scheduler{a, b} {
			wg.Go(func() {
				if err := s.handleFire(context.Background(), mustFire(t, "weekly")); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		wantStrings(t, "run:start tasks", e.startTasks(), run1, run2)
		if n := len(e.logs.lines("run started", "run="+run2)); n != 1 {
			t.Errorf("%d start lines for run 2, want 1", n)
		}
		if fired, _ := e.obs.counts(); fired["created"] != 2 || fired["queued"] != 1 {
			t.Errorf("fires counted %v, want 2 created and 1 queued", fired)
		}
	})
}

// Catch-up (catchup: all) never starts missed fire times on top of each
// other: under skip, the first starts and the next ones queue behind it.
func TestOverlapCatchUpQueuesMissed(t *testing.T) {
	e := newEnv(t)
	e.write("h.yaml", pipelineYAML("h", "0 * * * *", "UTC", "all", 0))
	clk := &clock{now: mustTime(t, "2026-05-01T10:30:00Z")}
	s := e.scheduler(func(c *Config) { c.Now = clk.Now })
	if _, err := s.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	clk.Set(mustTime(t, "2026-05-01T13:30:00Z"))
	if _, err := s.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	runs := e.runsOf("h")
	h11, h12, h13 := "h@2026-05-01T11:00:00Z", "h@2026-05-01T12:00:00Z", "h@2026-05-01T13:00:00Z"
	if len(runs) != 3 {
		t.Fatalf("%d runs, want 3: %v", len(runs), runs)
	}
	if w := runs[h11].WaitingFor; w != "" {
		t.Errorf("the first missed run waits for %q", w)
	}
	if runs[h12].WaitingFor != h11 || runs[h13].WaitingFor != h11 {
		t.Errorf("later missed runs wait for %q and %q, want %s", runs[h12].WaitingFor, runs[h13].WaitingFor, h11)
	}
	fs, err := s.st.pending(context.Background(), "h")
	if err != nil {
		t.Fatal(err)
	}
	if got := rfc(fs); !slices.Equal(got, []string{"2026-05-01T12:00:00Z", "2026-05-01T13:00:00Z"}) {
		t.Errorf("pending fire times %v, want the two waiting ones", got)
	}
}
