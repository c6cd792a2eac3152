package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/threadmill/threadmill/jobs"
	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/runstore"
)

// Two schedulers on one Redis and one directory, each firing every second
// with its own asynq cron: exactly one run per fire time, contiguous, with
// windows that tile time; asynq's Inspector lists both schedulers' entries.
func TestTwoSchedulersOneRunPerFireTime(t *testing.T) {
	e := newEnv(t)
	// No worker runs these runs: overlap allow keeps each fire time's run
	// from waiting for the previous one (see overlap_test.go for overlap).
	e.write("tick.yaml", withOverlap(pipelineYAML("tick", "@every 1s", "Europe/Madrid", "none", 0), "allow"))
	a, b := e.scheduler(nil), e.scheduler(nil)
	stopA, stopB := e.start(a), e.start(b)

	insp := asynq.NewInspector(redisOpt(e.srv))
	defer insp.Close()
	eventually(t, 10*time.Second, "both schedulers' entries in Inspector.SchedulerEntries", func() bool {
		ents, err := insp.SchedulerEntries()
		if err != nil || len(ents) != 2 {
			return false
		}
		for _, en := range ents {
			if en.Spec != "@every 1s" || en.Task.Type() != KindFire || en.Next.IsZero() {
				t.Fatalf("entry = %+v", en)
			}
		}
		return true
	})
	eventually(t, 20*time.Second, "6 runs", func() bool { return len(e.runsOf("tick")) >= 6 })
	stopA()
	stopB()

	runs := e.runsOf("tick")
	var fires []time.Time
	for id, r := range runs {
		p, f, err := ParseRunID(id)
		if err != nil || p != "tick" {
			t.Fatalf("run id %q: %v", id, err)
		}
		if f.Nanosecond() != 0 || !r.Info.WindowEnd.Equal(f) || r.Info.WindowEnd.Sub(r.Info.WindowStart) != time.Second {
			t.Errorf("run %s: window [%s, %s)", id, r.Info.WindowStart, r.Info.WindowEnd)
		}
		fires = append(fires, f)
	}
	slices.SortFunc(fires, func(x, y time.Time) int { return x.Compare(y) })
	for i := 1; i < len(fires); i++ {
		if d := fires[i].Sub(fires[i-1]); d != time.Second {
			t.Errorf("fire times %s and %s are %v apart: a fire time was missed or doubled", fires[i-1], fires[i], d)
		}
	}
	_, created := e.starter.snapshot()
	for id, n := range created {
		if n != 1 {
			t.Errorf("run %s created %d times", id, n)
		}
	}
	if len(created) != len(runs) {
		t.Errorf("%d runs created through the starter, %d in the store", len(created), len(runs))
	}
	// One run:start task per run, and none for a run twice.
	q, err := insp.GetQueueInfo("default")
	if err != nil {
		t.Fatal(err)
	}
	if q.Size != len(runs) {
		t.Errorf("default queue holds %d tasks for %d runs", q.Size, len(runs))
	}
	// The fire tasks were handled and kept (with their runs as the result)
	// for asynqmon.
	hist, err := insp.ListCompletedTasks(DefaultQueue, asynq.PageSize(1000))
	if err != nil {
		t.Fatal(err)
	}
	withRuns := 0
	for _, h := range hist {
		var res struct{ Runs []string }
		if json.Unmarshal(h.Result, &res) == nil && len(res.Runs) > 0 {
			withRuns++
			if _, ok := runs[res.Runs[0]]; !ok {
				t.Errorf("fire task %s started %v, not a run in the store", h.ID, res.Runs)
			}
		}
	}
	if withRuns == 0 {
		t.Errorf("no completed fire task names the runs it started (%d completed)", len(hist))
	}
}

// A run created from an earlier version of the file (edited since) stands:
// starting its fire time again is a no-op, not an error.
func TestJobsStarterAfterEdit(t *testing.T) {
	e := newEnv(t)
	e.write("w.yaml", pipelineYAML("weekly", "0 9 * * MON", "Europe/Madrid", "latest", 0))
	v1, err := load(e.dir + "/w.yaml")
	if err != nil {
		t.Fatal(err)
	}
	e.write("w.yaml", strings.Replace(pipelineYAML("weekly", "0 9 * * MON", "Europe/Madrid", "latest", 0), "three bullets", "two bullets", 1))
	v2, err := load(e.dir + "/w.yaml")
	if err != nil || v1.Hash == v2.Hash {
		t.Fatalf("v2: %v (hash %s vs %s)", err, v1.Hash, v2.Hash)
	}
	ent, _ := EntryOf(v1)
	run := RunInfo("weekly", ent.Schedule, mustTime(t, "2026-03-30T09:00:00+02:00"))
	st := &JobsStarter{Client: e.client, Store: e.store}
	if a, err := st.Start(context.Background(), v1, run, pipelines.OverlapSkip); err != nil || a.Outcome != runstore.AdmitCreated {
		t.Fatalf("first start: %+v, %v", a, err)
	}
	if a, err := st.Start(context.Background(), v2, run, pipelines.OverlapSkip); err != nil || a.Outcome != runstore.AdmitExists {
		t.Fatalf("start after the edit: %+v, err=%v; want an existing run", a, err)
	}
	spec, err := e.store.Spec(context.Background(), run.ID)
	if err != nil || spec.Pipeline.Hash != v1.Hash {
		t.Errorf("run's pipeline hash = %v (%v), want the version it was created with", spec, err)
	}
	// Another pipeline's run id is refused.
	other := *v2
	other.Name = "other"
	if _, err := st.Start(context.Background(), &other, run, pipelines.OverlapSkip); err == nil || !strings.Contains(err.Error(), "already belongs to pipeline") {
		t.Errorf("start of another pipeline's run id: %v", err)
	}
}

// A cron that fires late stands for the fire time before the instant it
// fired; the few fire times a stalled cron skipped between two of its
// firings are recorded too, a long gap (downtime) is left to catch-up.
func TestRecordFireFillsSkipped(t *testing.T) {
	e := newEnv(t)
	e.write("tick.yaml", withOverlap(pipelineYAML("tick", "@every 1s", "UTC", "none", 0), "allow"))
	s := e.scheduler(nil)
	if _, err := s.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	pending := func() []string {
		t.Helper()
		fs, err := s.st.pending(ctx, "tick")
		if err != nil {
			t.Fatal(err)
		}
		return rfc(fs)
	}
	at := func(s string) time.Time { return mustTime(t, s) }
	s.recordFire(ctx, "tick", at("2026-05-01T10:00:00.300Z"))
	if got := pending(); !slices.Equal(got, []string{"2026-05-01T10:00:00Z"}) {
		t.Fatalf("first fire: pending %v", got)
	}
	// 2.4s late: 10:00:01 and 10:00:02 were skipped by the stalled cron.
	s.recordFire(ctx, "tick", at("2026-05-01T10:00:03.400Z"))
	want := []string{"2026-05-01T10:00:00Z", "2026-05-01T10:00:01Z", "2026-05-01T10:00:02Z", "2026-05-01T10:00:03Z"}
	if got := pending(); !slices.Equal(got, want) {
		t.Fatalf("late fire: pending %v, want %v", got, want)
	}
	// A second process firing for the same second changes nothing.
	s.recordFire(ctx, "tick", at("2026-05-01T10:00:03.900Z"))
	if got := pending(); !slices.Equal(got, want) {
		t.Fatalf("repeat: pending %v, want %v", got, want)
	}
	// A minute of silence (a suspended machine) is downtime: only the
	// fire time at hand is recorded.
	s.recordFire(ctx, "tick", at("2026-05-01T10:01:03.100Z"))
	if got := pending(); len(got) != len(want)+1 || got[len(got)-1] != "2026-05-01T10:01:03Z" {
		t.Fatalf("after a gap: pending %v", got)
	}
	// A pipeline this process does not schedule records nothing.
	s.recordFire(ctx, "other", at("2026-05-01T10:02:00Z"))
	if n, err := e.rdb.Exists(ctx, DefaultPrefix+"sched:pending:other").Result(); err != nil || n != 0 {
		t.Errorf("fire of an unknown pipeline recorded (%d, %v)", n, err)
	}
	if err := s.handleFire(ctx, mustFire(t, "tick")); err != nil {
		t.Fatal(err)
	}
	if got := pending(); len(got) != 0 {
		t.Errorf("pending after the fire task: %v", got)
	}
	if n := len(e.runsOf("tick")); n != 5 {
		t.Errorf("%d runs, want 5", n)
	}
}

func mustFire(t *testing.T, pipeline string) *asynq.Task {
	t.Helper()
	task, err := NewFire(Fire{Pipeline: pipeline, Cron: "@every 1s", Timezone: "UTC"})
	if err != nil {
		t.Fatal(err)
	}
	return task
}

// A fire task for a pipeline this scheduler has not loaded (another
// scheduler synced the new file first) is retried, not dropped.
func TestFireTaskForUnknownPipelineRetries(t *testing.T) {
	e := newEnv(t)
	s := e.scheduler(nil)
	task, _ := NewFire(Fire{Pipeline: "later", Cron: "@daily", Timezone: "UTC"})
	err := s.handleFire(context.Background(), task)
	if err == nil || errors.Is(err, asynq.SkipRetry) || !strings.Contains(err.Error(), `pipeline "later"`) {
		t.Errorf("handleFire = %v, want a retryable error naming the pipeline", err)
	}
}

// Catch-up after downtime, per policy: the scheduler first sees the pipeline
// at 00:30, is down until 05:10, and on restart starts what the policy says.
func TestCatchUpPolicies(t *testing.T) {
	cases := []struct {
		policy string
		limit  int
		want   []string
	}{
		{"none", 0, nil},
		{"latest", 0, []string{"h@2026-05-01T07:00:00+02:00"}},
		{"all", 3, []string{"h@2026-05-01T05:00:00+02:00", "h@2026-05-01T06:00:00+02:00", "h@2026-05-01T07:00:00+02:00"}},
		{"all", 0, []string{"h@2026-05-01T03:00:00+02:00", "h@2026-05-01T04:00:00+02:00", "h@2026-05-01T05:00:00+02:00", "h@2026-05-01T06:00:00+02:00", "h@2026-05-01T07:00:00+02:00"}},
	}
	for _, c := range cases {
		t.Run(c.policy, func(t *testing.T) {
			e := newEnv(t)
			e.write("h.yaml", pipelineYAML("h", "0 * * * *", "Europe/Madrid", c.policy, c.limit))
			clk := &clock{now: mustTime(t, "2026-05-01T00:30:00Z")}
			first := e.scheduler(func(c *Config) { c.Now = clk.Now })
			if _, err := first.Sync(context.Background()); err != nil {
				t.Fatal(err)
			}
			if n := len(e.runsOf("h")); n != 0 {
				t.Fatalf("first sight started %d runs; want none (nothing was missed yet)", n)
			}

			// Downtime, then a new scheduler process.
			clk.Set(mustTime(t, "2026-05-01T05:10:00Z"))
			restarted := e.scheduler(func(c *Config) { c.Now = clk.Now })
			for range 2 { // a second sync changes nothing
				if _, err := restarted.Sync(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			runs := e.runsOf("h")
			var got []string
			for id := range runs {
				got = append(got, id)
			}
			slices.Sort(got)
			if strings.Join(got, " ") != strings.Join(c.want, " ") {
				t.Fatalf("runs after catch-up:\n got  %v\n want %v", got, c.want)
			}
			for id, r := range runs {
				if r.Info.WindowEnd.Sub(r.Info.WindowStart) != time.Hour || r.Info.ID != id {
					t.Errorf("run %s: info %+v", id, r.Info)
				}
			}
		})
	}
}

// Two schedulers catching up at once start each missed fire time once.
func TestConcurrentCatchUp(t *testing.T) {
	e := newEnv(t)
	e.write("h.yaml", pipelineYAML("h", "*/5 * * * *", "UTC", "all", 50))
	clk := &clock{now: mustTime(t, "2026-05-01T00:00:00Z")}
	mk := func() *Scheduler { return e.scheduler(func(c *Config) { c.Now = clk.Now }) }
	if _, err := mk().Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	clk.Set(mustTime(t, "2026-05-01T03:00:00Z")) // 36 fire times missed
	var wg sync.WaitGroup
	for range 4 {
		s := mk()
		wg.Go(func() {
			for range 3 {
				if _, err := s.Sync(context.Background()); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if n := len(e.runsOf("h")); n != 36 {
		t.Errorf("%d runs, want 36", n)
	}
	_, created := e.starter.snapshot()
	for id, n := range created {
		if n != 1 {
			t.Errorf("run %s created %d times", id, n)
		}
	}
}

// A fire time a cron recorded is started on the next sync even with
// catchup: none, when the process died before the fire task was handled.
func TestPendingFireSurvivesCrash(t *testing.T) {
	e := newEnv(t)
	e.write("d.yaml", pipelineYAML("d", "30 2 * * *", "Europe/Madrid", "none", 0))
	clk := &clock{now: mustTime(t, "2026-10-25T00:00:00Z")}
	s := e.scheduler(func(c *Config) { c.Now = clk.Now })
	if _, err := s.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The cron fired at the first 02:30 and recorded it; then the process died.
	fire := mustTime(t, "2026-10-25T02:30:00+02:00")
	if err := s.st.addPending(context.Background(), "d", fire); err != nil {
		t.Fatal(err)
	}
	clk.Set(mustTime(t, "2026-10-25T09:00:00Z"))
	if _, err := e.scheduler(func(c *Config) { c.Now = clk.Now }).Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	runs := e.runsOf("d")
	r, ok := runs["d@2026-10-25T02:30:00+02:00"]
	if len(runs) != 1 || !ok {
		t.Fatalf("runs = %v", runs)
	}
	if want := mustTime(t, "2026-10-24T02:30:00+02:00"); !r.Info.WindowStart.Equal(want) {
		t.Errorf("window start %s, want %s", r.Info.WindowStart, want)
	}
	if p, _ := s.st.pending(context.Background(), "d"); len(p) != 0 {
		t.Errorf("pending after start = %v", p)
	}
}

// Hot reload through fsnotify (the sync interval is an hour): add, change,
// break and remove a file while the scheduler runs.
func TestHotReload(t *testing.T) {
	e := newEnv(t)
	e.write("a.yaml", pipelineYAML("alpha", "0 9 * * MON", "Europe/Madrid", "latest", 0))
	s := e.scheduler(nil)
	e.start(s)
	insp := asynq.NewInspector(redisOpt(e.srv))
	defer insp.Close()
	specs := func() []string {
		ents, err := insp.SchedulerEntries()
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, en := range ents {
			var f Fire
			if err := json.Unmarshal(en.Task.Payload(), &f); err != nil {
				t.Fatal(err)
			}
			out = append(out, f.Pipeline+" "+en.Spec)
		}
		slices.Sort(out)
		return out
	}
	waitSpecs := func(what string, want ...string) {
		t.Helper()
		eventually(t, 10*time.Second, what, func() bool { return slices.Equal(specs(), want) })
	}
	waitSpecs("alpha scheduled", "alpha CRON_TZ=Europe/Madrid 0 9 * * MON")

	e.write("b.yml", pipelineYAML("beta", "@daily", "UTC", "none", 0))
	waitSpecs("beta added", "alpha CRON_TZ=Europe/Madrid 0 9 * * MON", "beta CRON_TZ=UTC @daily")

	e.write("a.yaml", pipelineYAML("alpha", "0 8 * * TUE", "America/New_York", "latest", 0))
	waitSpecs("alpha changed", "alpha CRON_TZ=America/New_York 0 8 * * TUE", "beta CRON_TZ=UTC @daily")

	// A broken file is reported with its position; its last good version
	// stays scheduled.
	e.write("a.yaml", strings.Replace(pipelineYAML("alpha", "0 7 * * *", "UTC", "latest", 0), "prompt:", "promt:", 1))
	eventually(t, 10*time.Second, "the problem in Health", func() bool {
		h := s.Health(context.Background())
		return len(h.Problems) == 1 && strings.Contains(h.Problems[0], "a.yaml:") && strings.Contains(h.Problems[0], "promt")
	})
	snap, err := s.Sync(context.Background())
	if err != nil || len(snap.Problems) != 1 || snap.Problems[0].Kept != "alpha" {
		t.Errorf("Sync = %+v, %v; want one problem keeping alpha", snap.Problems, err)
	}
	h := s.Health(context.Background())
	if !strings.Contains(h.Problems[0], "a.yaml:10:5") {
		t.Errorf("problem = %q, want it located at a.yaml:10:5", h.Problems[0])
	}
	if got := specs(); !slices.Contains(got, "alpha CRON_TZ=America/New_York 0 8 * * TUE") {
		t.Errorf("entries after breaking a.yaml = %v; want the last good alpha kept", got)
	}

	// A file whose new version has no schedule is unscheduled; a removed
	// file is unscheduled and its state forgotten.
	e.remove("b.yml")
	waitSpecs("beta removed", "alpha CRON_TZ=America/New_York 0 8 * * TUE")
	if n, err := e.rdb.Exists(context.Background(), DefaultPrefix+"sched:cursor:beta").Result(); err != nil || n != 0 {
		t.Errorf("beta's cursor still exists (%d, %v)", n, err)
	}
	e.write("a.yaml", pipelineYAML("alpha", "15 6 * * *", "Asia/Tokyo", "all", 2))
	waitSpecs("alpha fixed", "alpha CRON_TZ=Asia/Tokyo 15 6 * * *")
	if h := s.Health(context.Background()); len(h.Problems) != 0 || !h.OK {
		t.Errorf("health after the fix = %+v", h)
	}

	// A new version without a schedule unschedules the pipeline.
	noSchedule := strings.Replace(pipelineYAML("alpha", "@daily", "UTC", "none", 0), `schedule: { cron: "@daily", timezone: UTC, catchup: none }`+"\n", "", 1)
	e.write("a.yaml", noSchedule)
	waitSpecs("alpha without a schedule")
	snap, err = s.Sync(context.Background())
	if err != nil || len(snap.Entries) != 0 || len(snap.Unscheduled) != 1 || len(snap.Problems) != 0 {
		t.Errorf("Sync = %+v, %v; want a.yaml valid and unscheduled", snap, err)
	}
}

// Duplicate pipeline names: the first file wins, the second is a problem.
func TestDuplicateNames(t *testing.T) {
	e := newEnv(t)
	e.write("1.yaml", pipelineYAML("same", "@hourly", "UTC", "none", 0))
	e.write("2.yaml", pipelineYAML("same", "@daily", "UTC", "none", 0))
	d := NewDir(e.dir, load)
	snap, err := d.Scan()
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Entries) != 1 || !strings.HasSuffix(snap.Entries[0].File, "1.yaml") {
		t.Fatalf("entries = %+v", snap.Entries)
	}
	if len(snap.Problems) != 1 || !strings.Contains(snap.Problems[0].Error(), `pipeline "same" is also defined in`) {
		t.Fatalf("problems = %v", snap.Problems)
	}
	cfgs, err := d.GetConfigs()
	if err != nil || len(cfgs) != 1 || cfgs[0].Cronspec != "CRON_TZ=UTC @hourly" {
		t.Fatalf("GetConfigs = %v, %v", cfgs, err)
	}
}

func TestBackfillTwice(t *testing.T) {
	e := newEnv(t)
	e.write("w.yaml", pipelineYAML("weekly", "0 9 * * MON", "Europe/Madrid", "latest", 0))
	p, err := load(e.dir + "/w.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ent, err := EntryOf(p)
	if err != nil {
		t.Fatal(err)
	}
	from, to := mustTime(t, "2026-03-01T00:00:00Z"), mustTime(t, "2026-04-01T00:00:00Z")
	opts := BackfillOptions{Starter: e.starter, RDB: e.rdb, Now: func() time.Time { return mustTime(t, "2026-06-01T00:00:00Z") }}
	var first, second []BackfillRun
	if err := Backfill(context.Background(), ent, from, to, opts, func(r BackfillRun) { first = append(first, r) }); err != nil {
		t.Fatal(err)
	}
	if err := Backfill(context.Background(), ent, from, to, opts, func(r BackfillRun) { second = append(second, r) }); err != nil {
		t.Fatal(err)
	}
	wantIDs := []string{
		"weekly@2026-03-02T09:00:00+01:00", "weekly@2026-03-09T09:00:00+01:00", "weekly@2026-03-16T09:00:00+01:00",
		"weekly@2026-03-23T09:00:00+01:00", "weekly@2026-03-30T09:00:00+02:00",
	}
	for i, r := range first {
		if r.Run.ID != wantIDs[i] || !r.Created || second[i].Run.ID != r.Run.ID || second[i].Created {
			t.Errorf("fire %d: first %+v, second %+v", i, r, second[i])
		}
	}
	if len(first) != len(wantIDs) || len(second) != len(wantIDs) {
		t.Fatalf("backfills started %d and %d runs, want %d each", len(first), len(second), len(wantIDs))
	}
	if n := len(e.runsOf("weekly")); n != len(wantIDs) {
		t.Errorf("store has %d runs, want %d", n, len(wantIDs))
	}
	// The week that crosses the DST change is 167 hours long.
	last := first[len(first)-1].Run
	if h := last.WindowEnd.Sub(last.WindowStart).Hours(); h != 167 {
		t.Errorf("window of %s is %vh, want 167h", last.ID, h)
	}
	// One run:start task per run.
	insp := asynq.NewInspector(redisOpt(e.srv))
	defer insp.Close()
	tasks, err := insp.ListPendingTasks("default", asynq.PageSize(100))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, tk := range tasks {
		if tk.Type != jobs.KindRunStart {
			t.Errorf("task %s of kind %s", tk.ID, tk.Type)
		}
		ids = append(ids, tk.ID)
	}
	slices.Sort(ids)
	if len(ids) != len(wantIDs) || ids[0] != (jobs.RunStart{RunID: wantIDs[0]}).TaskID() {
		t.Errorf("run:start tasks = %v", ids)
	}

	for _, c := range []struct {
		from, to, now, want string
	}{
		{"2026-04-01T00:00:00Z", "2026-03-01T00:00:00Z", "2026-06-01T00:00:00Z", "is after --to"},
		{"2026-03-01T00:00:00Z", "2026-07-01T00:00:00Z", "2026-06-01T00:00:00Z", "is in the future"},
	} {
		err := Backfill(context.Background(), ent, mustTime(t, c.from), mustTime(t, c.to),
			BackfillOptions{Starter: e.starter, Now: func() time.Time { return mustTime(t, c.now) }}, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Backfill(%s, %s) error = %v, want %q", c.from, c.to, err, c.want)
		}
	}
	err = Backfill(context.Background(), ent, from, to, BackfillOptions{Starter: e.starter, Max: 3, Now: opts.Now}, nil)
	if err == nil || !strings.Contains(err.Error(), "more than 3 fire times") {
		t.Errorf("Backfill over the max: %v", err)
	}
}

func TestHealthEndpoint(t *testing.T) {
	e := newEnv(t)
	e.write("a.yaml", pipelineYAML("alpha", "@daily", "UTC", "none", 0))
	s := e.scheduler(nil)
	hs := httptest.NewServer(s.HealthHandler())
	defer hs.Close()
	get := func() (int, Health) {
		resp, err := http.Get(hs.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var h Health
		if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, h
	}
	if code, h := get(); code != http.StatusServiceUnavailable || h.OK || !h.LastSync.IsZero() {
		t.Errorf("before the first sync: %d %+v", code, h)
	}
	if _, err := s.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if code, h := get(); code != http.StatusOK || !h.OK || h.Redis != "ok" || !slices.Equal(h.Entries, []string{"alpha"}) {
		t.Errorf("after a sync: %d %+v", code, h)
	}
	e.srv.Kill()
	if code, h := get(); code != http.StatusServiceUnavailable || h.OK || h.Redis == "ok" {
		t.Errorf("Redis down: %d %+v", code, h)
	}
	// A sync with Redis down fails, naming what it was doing; health says so.
	if _, err := s.Sync(context.Background()); err == nil || !strings.Contains(err.Error(), `scheduler: lock "alpha" for catch-up`) {
		t.Errorf("Sync with Redis down: %v", err)
	}
	if _, h := get(); !strings.Contains(h.SyncError, `lock "alpha"`) {
		t.Errorf("health after a failed sync: %+v", h)
	}
}

func TestConfigErrors(t *testing.T) {
	cases := []struct {
		cfg  Config
		want string
	}{
		{Config{}, "Config.Dir"},
		{Config{Dir: "x"}, "Config.Load"},
		{Config{Dir: "x", Load: load}, "Config.RDB"},
	}
	for _, c := range cases {
		if _, err := New(c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%+v) error = %v, want %q", c.cfg, err, c.want)
		}
	}
}

func TestDecodeFire(t *testing.T) {
	good, err := NewFire(Fire{Pipeline: "p", Cron: "@daily", Timezone: "UTC", Hash: "h"})
	if err != nil {
		t.Fatal(err)
	}
	if f, err := DecodeFire(good); err != nil || f.Pipeline != "p" {
		t.Fatalf("DecodeFire = %+v, %v", f, err)
	}
	for _, bad := range []*asynq.Task{
		asynq.NewTask(KindFire, []byte(`{"pipeline":"p","extra":1}`)),
		asynq.NewTask(KindFire, []byte(`{"pipeline":""}`)),
		asynq.NewTask(KindFire, []byte(`{"pipeline":"p"} {}`)),
		asynq.NewTask("other", []byte(`{"pipeline":"p"}`)),
	} {
		if _, err := DecodeFire(bad); err == nil || !strings.Contains(err.Error(), asynq.SkipRetry.Error()) {
			t.Errorf("DecodeFire(%s) error = %v, want SkipRetry", bad.Payload(), err)
		}
	}
}
