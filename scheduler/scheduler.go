// Package scheduler turns the pipelines of a directory into cron entries on
// Asynq and starts exactly one run per fire time, however many scheduler
// processes share a Redis.
//
// How a fire time becomes a run:
//
//  1. Every scheduled pipeline is an entry of an asynq.Scheduler, with its
//     zone as a CRON_TZ= prefix, so Inspector.SchedulerEntries, `asynq cron
//     ls` and asynqmon list it with its next fire time. Its task is a
//     pipeline:fire task on DefaultQueue.
//  2. When a process's cron fires, the scheduler's PreEnqueueFunc computes the
//     fire time from that process's own clock, the clock the cron used
//     (Schedule.Floor of the instant it fired), and adds it to the pipeline's
//     pending set in Redis before asynq enqueues the fire task. A set: two
//     schedulers firing record one fire time. robfig/cron drops the fire
//     times that pass while its goroutine is starved; the few (maxSkipped)
//     between two firings of one process are recorded too.
//  3. Scheduler processes serve DefaultQueue. The fire task's handler starts a
//     run for every pending fire time with the id RunID(pipeline, fire) and
//     the window [previous fire time, fire time), through the Starter, which
//     is idempotent per run id (jobs.StartRun claims the id in Redis
//     atomically). A failure is retried by asynq; a pending fire time is
//     removed only once its run exists, so a crash between the cron firing
//     and the run starting loses nothing.
//  4. Catch-up: each pipeline has a cursor in Redis, the time up to which its
//     fire times were handled. On start and on every sync, under a short
//     per-pipeline lease (so two schedulers do not both catch up), pending
//     fire times are started first (a cron fired them: they are owed whatever
//     the policy), then the fire times in (cursor, now] per the pipeline's
//     catchup policy, and the cursor moves to now. A pipeline seen for the
//     first time starts its history at that moment: nothing before it counts
//     as missed. A removed file's cursor and pending fire times are deleted,
//     so re-adding it later does not catch up the time it was away.
//
// The directory is rescanned when fsnotify reports a change and every
// SyncInterval regardless (fsnotify misses changes on some file systems).
//
// Why asynq.Scheduler and not asynq.PeriodicTaskManager: the manager calls
// its config provider only on its own ticker and offers no hook to run
// catch-up after a sync, to report the files that failed to load, or to
// react to a file event at once. The Scheduler here does the manager's diff
// itself (by pipeline name and content hash) with the same provider, Dir,
// which also satisfies asynq.PeriodicTaskConfigProvider for anyone who
// prefers the manager.
package scheduler

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/threadmill/threadmill/internal/logging"
	"github.com/threadmill/threadmill/internal/redishealth"
	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/runstore"
)

// Starter starts runs. Start must be idempotent per run.ID: a second call
// for a run that exists starts nothing new, however many processes call it
// at once. overlap is the pipeline's schedule.overlap (pipelines.OverlapSkip,
// OverlapQueue or OverlapAllow): the Starter decides atomically whether the
// run starts, waits for an earlier run of the pipeline or is skipped, and
// reports it as a runstore.Admission. A waiting run is started by a later
// call for the same run once the runs before it ended.
type Starter interface {
	Start(ctx context.Context, p *pipelines.Pipeline, run pipelines.RunInfo, overlap string) (runstore.Admission, error)
}

// StarterFunc adapts a function to Starter.
type StarterFunc func(ctx context.Context, p *pipelines.Pipeline, run pipelines.RunInfo, overlap string) (runstore.Admission, error)

// Start calls f.
func (f StarterFunc) Start(ctx context.Context, p *pipelines.Pipeline, run pipelines.RunInfo, overlap string) (runstore.Admission, error) {
	return f(ctx, p, run, overlap)
}

// Observer receives the scheduler's events, for metrics. *metrics.Metrics
// implements it.
type Observer interface {
	// SchedulerFired is called for every fire time handled: outcome is
	// "created" when this call created the run (or started it after it
	// waited), "duplicate" when another call had decided, "queued" when its
	// run waits for an earlier run, "skipped" when no run was started.
	SchedulerFired(pipeline, outcome string)
	// SchedulerSkipped is called for a fire time for which no run was
	// started, with the reason ("overlap").
	SchedulerSkipped(pipeline, reason string)
	// SchedulerSynced is called after every successful sync at t, with the
	// number of scheduled pipelines and of files that failed to load.
	SchedulerSynced(t time.Time, entries, invalid int)
}

// Config configures a Scheduler. Fields without a stated default are
// required.
type Config struct {
	// Dir is the pipelines directory.
	Dir string
	// Load loads one pipeline file (pipelines.Load with the environment).
	Load Loader
	// RDB is the Redis client of asynq's scheduler, the fire-task server and
	// the scheduler's own state (keys are prefixed, so it may be the run
	// store's Redis). The caller owns it and closes it after Run returns.
	RDB redis.UniversalClient
	// Starter starts a run (jobs.StartRun in production).
	Starter Starter
	// Prefix is the key prefix of the scheduler's state; default DefaultPrefix.
	Prefix string
	// Queue is the asynq queue of fire tasks; default DefaultQueue.
	Queue string
	// SyncInterval is how often the directory is rescanned and catch-up runs
	// without a file event; default 1m.
	SyncInterval time.Duration
	// HeartbeatInterval is how often asynq writes the entries that
	// Inspector.SchedulerEntries reads (they expire after two intervals);
	// default 5s.
	HeartbeatInterval time.Duration
	// FireRetention keeps handled fire tasks, with the run ids they started
	// as their result, visible in asynqmon for this long; default 24h; a
	// negative value keeps none.
	FireRetention time.Duration
	// Debounce is how long file events settle before a rescan; default 200ms.
	Debounce time.Duration
	// NoWatch turns off fsnotify; the directory is then rescanned only every
	// SyncInterval. Default false.
	NoWatch bool
	// Now is the clock of catch-up and health; default time.Now. Fire times
	// recorded when a cron fires always use the real clock, which is the one
	// the cron uses.
	Now func() time.Time
	// Logger receives the scheduler's logs and asynq's; default discard.
	Logger *slog.Logger
	// Observer, when set, is told about fires and syncs.
	Observer Observer
}

func (c Config) withDefaults() Config {
	c.Prefix = cmp.Or(c.Prefix, DefaultPrefix)
	c.Queue = cmp.Or(c.Queue, DefaultQueue)
	c.SyncInterval = cmp.Or(c.SyncInterval, time.Minute)
	c.HeartbeatInterval = cmp.Or(c.HeartbeatInterval, 5*time.Second)
	c.FireRetention = cmp.Or(c.FireRetention, 24*time.Hour)
	c.Debounce = cmp.Or(c.Debounce, 200*time.Millisecond)
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = logging.Discard()
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.Dir == "":
		return errors.New("scheduler: Config.Dir (the pipelines directory) is required")
	case c.Load == nil:
		return errors.New("scheduler: Config.Load is required")
	case c.RDB == nil:
		return errors.New("scheduler: Config.RDB is required")
	case c.Starter == nil:
		return errors.New("scheduler: Config.Starter is required")
	case c.SyncInterval < time.Second:
		return fmt.Errorf("scheduler: Config.SyncInterval is %v, want at least 1s", c.SyncInterval)
	case c.HeartbeatInterval < 10*time.Millisecond:
		return fmt.Errorf("scheduler: Config.HeartbeatInterval is %v, want at least 10ms", c.HeartbeatInterval)
	}
	return nil
}

// Scheduler schedules the pipelines of a directory. Create it with New and
// run it with Run.
type Scheduler struct {
	cfg   Config
	log   *slog.Logger
	dir   *Dir
	st    *state
	sched *asynq.Scheduler
	srv   *asynq.Server
	// health watches Redis: one line when it is lost, one when it is
	// back, and asynq's repeated connection errors demoted meanwhile.
	health *redishealth.Watcher

	syncMu   sync.Mutex        // one Sync at a time
	reported map[string]string // file -> problem last logged (under syncMu)

	mu       sync.RWMutex
	entries  map[string]*registered // by pipeline name
	problems []Problem
	lastSync time.Time
	syncErr  error
}

type registered struct {
	entry *Entry
	id    string // asynq entry id
	key   string
	// lastFire is the fire time this process's cron last recorded for the
	// entry (under Scheduler.mu); zero until it first fires.
	lastFire time.Time
}

// maxSkipped is how many fire times a stalled cron may have skipped between
// two of its firings and still have them recorded as fired. robfig/cron
// drops the fire times that passed while its goroutine could not run (a
// process starved of CPU, a long GC pause): an @every 1s entry late by 2.5s
// fires once, for the latest. A longer gap (a suspended machine) is
// downtime, which catch-up handles per the pipeline's policy.
const maxSkipped = 3

// New checks cfg and builds a Scheduler; nothing runs until Run.
func New(cfg Config) (*Scheduler, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("scheduler: pipelines directory %s: %w", cfg.Dir, err)
	}
	health := redishealth.New(redishealth.Config{RDB: cfg.RDB, Logger: cfg.Logger})
	s := &Scheduler{
		cfg:     cfg,
		log:     slog.New(health.Handler(cfg.Logger.Handler())),
		dir:     NewDir(dir, cfg.Load),
		st:      &state{rdb: cfg.RDB, prefix: cfg.Prefix},
		entries: make(map[string]*registered),
		health:  health,
	}
	alog := asynqLogger{s.log.With("component", "asynq")}
	s.sched = asynq.NewSchedulerFromRedisClient(cfg.RDB, &asynq.SchedulerOpts{
		HeartbeatInterval: cfg.HeartbeatInterval,
		Logger:            alog,
		LogLevel:          asynq.WarnLevel,
		PreEnqueueFunc:    s.onFire,
		PostEnqueueFunc: func(info *asynq.TaskInfo, err error) {
			if err != nil {
				s.log.Error("enqueue fire task", logging.KeyError, err)
			}
		},
	})
	s.srv = asynq.NewServerFromRedisClient(cfg.RDB, asynq.Config{
		Concurrency:     2,
		Queues:          map[string]int{cfg.Queue: 1},
		Logger:          alog,
		LogLevel:        asynq.WarnLevel,
		ShutdownTimeout: 10 * time.Second,
		RetryDelayFunc: func(n int, _ error, _ *asynq.Task) time.Duration {
			return min(time.Duration(1<<min(n, 6))*time.Second, time.Minute)
		},
	})
	return s, nil
}

// Run syncs once (an unreadable directory or an unreachable Redis is an
// error), then starts asynq's scheduler and the fire-task server and keeps
// the entries in sync with the directory until ctx is done. It returns nil
// after a clean shutdown.
func (s *Scheduler) Run(ctx context.Context) error {
	if _, err := s.Sync(ctx); err != nil {
		return err
	}
	mux := asynq.NewServeMux()
	mux.HandleFunc(KindFire, s.handleFire)
	if err := s.srv.Start(mux); err != nil {
		return fmt.Errorf("scheduler: start fire-task server on queue %s: %w", s.cfg.Queue, err)
	}
	if err := s.sched.Start(); err != nil {
		s.srv.Shutdown()
		return fmt.Errorf("scheduler: start asynq scheduler: %w", err)
	}
	hctx, stopHealth := context.WithCancel(context.WithoutCancel(ctx))
	healthDone := make(chan struct{})
	go func() { defer close(healthDone); s.health.Run(hctx) }()
	defer func() {
		// Stop firing first, then let the fire tasks in hand finish.
		s.sched.Shutdown()
		s.srv.Shutdown()
		stopHealth()
		<-healthDone
	}()

	var events <-chan fsnotify.Event
	var watchErrs <-chan error
	if !s.cfg.NoWatch {
		w, err := fsnotify.NewWatcher()
		if err == nil {
			err = w.Add(s.dir.Path())
		}
		if err != nil {
			s.log.Warn("watch pipelines directory; rescanning every sync interval only", "dir", s.dir.Path(), logging.KeyError, err)
		} else {
			defer w.Close()
			events, watchErrs = w.Events, w.Errors
		}
	}
	s.log.Info("scheduler started", "dir", s.dir.Path(), "entries", len(s.Entries()), "queue", s.cfg.Queue)

	tick := time.NewTicker(s.cfg.SyncInterval)
	defer tick.Stop()
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	for {
		select {
		case <-ctx.Done():
			s.log.Info("scheduler stopping")
			return nil
		case <-tick.C:
			s.syncLogged(ctx)
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if ext := filepath.Ext(ev.Name); ext == ".yaml" || ext == ".yml" || ev.Name == s.dir.Path() {
				debounce.Reset(s.cfg.Debounce)
			}
		case err, ok := <-watchErrs:
			if !ok {
				watchErrs = nil
				continue
			}
			s.log.Warn("watch pipelines directory", logging.KeyError, err)
		case <-debounce.C:
			s.syncLogged(ctx)
		}
	}
}

func (s *Scheduler) syncLogged(ctx context.Context) {
	if _, err := s.Sync(ctx); err != nil && ctx.Err() == nil {
		s.log.Error("sync", logging.KeyError, err)
	}
}

// Sync rescans the directory, registers new and changed pipelines with
// asynq's scheduler, unregisters removed ones, and runs catch-up for every
// scheduled pipeline. Problems with single files are logged and returned in
// the snapshot; the error is for the directory or Redis.
func (s *Scheduler) Sync(ctx context.Context) (Snapshot, error) {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	snap, err := s.dir.Scan()
	if err != nil {
		s.setSync(nil, false, err)
		return snap, err
	}
	s.reportProblems(snap.Problems)
	var errs []error
	if err := s.register(ctx, snap); err != nil {
		errs = append(errs, err)
	}
	now := s.cfg.Now()
	for _, e := range snap.Entries {
		if err := s.catchUp(ctx, e, now); err != nil {
			errs = append(errs, err)
		}
	}
	err = errors.Join(errs...)
	s.setSync(snap.Problems, true, err)
	if err == nil && s.cfg.Observer != nil {
		s.cfg.Observer.SchedulerSynced(s.cfg.Now(), len(snap.Entries), len(snap.Problems))
	}
	return snap, err
}

// reportProblems logs each file problem once, when it appears or changes,
// and says when a file loads again; syncs in between stay quiet.
func (s *Scheduler) reportProblems(problems []Problem) {
	now := make(map[string]string, len(problems))
	for _, p := range problems {
		now[p.File] = p.Error()
		if s.reported[p.File] == p.Error() {
			continue
		}
		if p.Kept != "" {
			s.log.Warn("pipeline file does not load; its last good version stays scheduled: "+p.Error(), "file", p.File, logging.KeyPipeline, p.Kept)
		} else {
			s.log.Warn("pipeline file does not load; not scheduled: "+p.Error(), "file", p.File)
		}
	}
	for file := range s.reported {
		if _, still := now[file]; !still {
			s.log.Info("pipeline file problem resolved", "file", file)
		}
	}
	s.reported = now
}

func (s *Scheduler) setSync(problems []Problem, scanned bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.syncErr = err
	if scanned {
		s.problems = problems
	}
	if err == nil {
		s.lastSync = s.cfg.Now()
	}
}

// register brings asynq's entries in line with the snapshot.
func (s *Scheduler) register(ctx context.Context, snap Snapshot) error {
	want := make(map[string]*Entry, len(snap.Entries))
	for _, e := range snap.Entries {
		want[e.Name()] = e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for name, r := range s.entries {
		e, keep := want[name]
		if keep && e.key() == r.key {
			r.entry = e
			continue
		}
		if err := s.sched.Unregister(r.id); err != nil {
			errs = append(errs, fmt.Errorf("scheduler: unregister %q: %w", name, err))
		}
		delete(s.entries, name)
		if !keep {
			s.log.Info("pipeline unscheduled", logging.KeyPipeline, name)
			if err := s.st.forget(ctx, name); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for name, e := range want {
		if _, ok := s.entries[name]; ok {
			continue
		}
		c, err := fireConfig(e, s.cfg.Queue, s.cfg.FireRetention)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		id, err := s.sched.Register(c.Cronspec, c.Task, c.Opts...)
		if err != nil {
			errs = append(errs, fmt.Errorf("scheduler: register %q (%s): %w", name, c.Cronspec, err))
			continue
		}
		s.entries[name] = &registered{entry: e, id: id, key: e.key()}
		s.log.Info("pipeline scheduled", logging.KeyPipeline, name, "cron", e.Schedule.Expr(),
			"timezone", e.Schedule.Location().String(), "catchup", string(e.Policy), "file", e.File,
			"next", e.Schedule.Next(s.cfg.Now()).Format(time.RFC3339))
	}
	return errors.Join(errs...)
}

// catchUpLease bounds how long one scheduler may hold a pipeline's catch-up.
const catchUpLease = 30 * time.Second

// catchUp starts the fire times of e missed in (cursor, now] per its policy
// and moves the cursor to now.
func (s *Scheduler) catchUp(ctx context.Context, e *Entry, now time.Time) error {
	name := e.Name()
	release, ok, err := s.st.lock(ctx, name, catchUpLease)
	if err != nil || !ok {
		return err // !ok: another scheduler is catching this pipeline up
	}
	defer release()
	// Fire times a cron fired are owed whatever the policy: start any that a
	// crash left pending (between recording one and enqueueing its task).
	if err := s.drainPending(ctx, e, "schedule (pending)"); err != nil {
		return err
	}
	cur, seen, err := s.st.cursor(ctx, name)
	if err != nil {
		return err
	}
	if seen {
		missed := Missed(e.Schedule, e.Policy, e.Pipeline.Schedule.CatchupLimit, cur, now)
		if len(missed) > 0 {
			s.log.Info("catching up", logging.KeyPipeline, name, "policy", string(e.Policy),
				"since", cur.In(e.Schedule.Location()).Format(time.RFC3339), "runs", len(missed))
		}
		// The missed fire times never overlap each other: under skip, the
		// first is skipped if a run is active and the next ones queue
		// behind the first one recorded (catchup: all asked for each).
		overlap := e.overlap()
		for _, f := range missed {
			_, a, err := s.start(ctx, e, f, "catch-up", overlap)
			if err != nil {
				return err // the cursor stays: the next sync retries
			}
			if a.Outcome == runstore.AdmitWaiting {
				// Started by a later sync or fire, with the fired ones.
				if err := s.st.addPending(ctx, name, f); err != nil {
					return err
				}
			}
			if a.Outcome != runstore.AdmitSkipped && overlap == pipelines.OverlapSkip {
				overlap = pipelines.OverlapQueue
			}
		}
	}
	return s.st.advance(ctx, name, now)
}

// start asks the Starter for the run of e at fire time f under the overlap
// policy, records the run in the history when it exists, counts and logs
// the decision (once across schedulers: Admission.First).
func (s *Scheduler) start(ctx context.Context, e *Entry, f time.Time, why, overlap string) (pipelines.RunInfo, runstore.Admission, error) {
	run := RunInfo(e.Name(), e.Schedule, f)
	a, err := s.cfg.Starter.Start(ctx, e.Pipeline, run, overlap)
	if err != nil {
		return run, a, fmt.Errorf("scheduler: start run %s: %w", run.ID, err)
	}
	if a.Outcome != runstore.AdmitSkipped {
		if err := s.st.record(ctx, e.Name(), run.ID, f); err != nil {
			return run, a, err
		}
	}
	outcome := "duplicate"
	log := s.log.With(logging.KeyPipeline, e.Name(), logging.KeyRun, run.ID, "why", why)
	switch {
	case a.Outcome == runstore.AdmitCreated || a.Outcome == runstore.AdmitReleased:
		outcome = "created"
		msg := "run started"
		if a.Outcome == runstore.AdmitReleased {
			msg = "run started: the earlier runs of the pipeline ended"
		}
		log.Info(msg, "window_start", run.WindowStart.Format(time.RFC3339), "window_end", run.WindowEnd.Format(time.RFC3339))
	case a.Outcome == runstore.AdmitWaiting && a.First:
		outcome = "queued"
		log.Info("run queued: it starts when run "+a.Blocker+" of the pipeline has ended (schedule.overlap: "+overlap+")",
			"waiting_for", a.Blocker)
	case a.Outcome == runstore.AdmitSkipped && a.First:
		outcome = "skipped"
		log.Warn("fire time skipped: run "+a.Blocker+" of the pipeline is still active (schedule.overlap: skip)",
			"active_run", a.Blocker, "fire", f.In(e.Schedule.Location()).Format(time.RFC3339))
	case a.Outcome == runstore.AdmitWaiting:
		log.Debug("run still waiting", "waiting_for", a.Blocker)
	default:
		log.Debug("run exists", "outcome", a.Outcome)
	}
	if o := s.cfg.Observer; o != nil {
		o.SchedulerFired(e.Name(), outcome)
		if outcome == "skipped" {
			o.SchedulerSkipped(e.Name(), "overlap")
		}
	}
	return run, a, nil
}

// onFire is asynq's PreEnqueueFunc: it runs in the process whose cron
// fired, right before the fire task is enqueued, and records the fire time
// from the same clock the cron used.
func (s *Scheduler) onFire(task *asynq.Task, _ []asynq.Option) {
	at := time.Now()
	f, err := DecodeFire(task)
	if err != nil {
		s.log.Error("fire task", logging.KeyError, err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.recordFire(ctx, f.Pipeline, at)
}

// recordFire adds to the pipeline's pending set the fire time that a cron
// firing at instant at stands for, and the few fire times a stalled cron
// skipped since this process last recorded one (see maxSkipped).
func (s *Scheduler) recordFire(ctx context.Context, pipeline string, at time.Time) {
	s.mu.Lock()
	r := s.entries[pipeline]
	if r == nil {
		s.mu.Unlock()
		return // unregistered while firing
	}
	sched := r.entry.Schedule
	fire := sched.Floor(at)
	fires := []time.Time{fire}
	if last := r.lastFire; !last.IsZero() && last.Before(fire) {
		if skipped := sched.Between(last, fire.Add(-time.Nanosecond), maxSkipped+1); len(skipped) <= maxSkipped {
			fires = append(skipped, fire)
		}
	}
	if r.lastFire.Before(fire) {
		r.lastFire = fire
	}
	s.mu.Unlock()
	for _, f := range fires {
		if err := s.st.addPending(ctx, pipeline, f); err != nil {
			s.log.Error("record fire time", logging.KeyPipeline, pipeline, logging.KeyError, err)
			return
		}
	}
	if len(fires) > 1 {
		s.log.Warn("the cron fired late and skipped fire times; recorded them as fired", logging.KeyPipeline, pipeline,
			"skipped", len(fires)-1, "fire", fire.Format(time.RFC3339))
	}
}

// handleFire starts a run for every pending fire time of the task's pipeline.
func (s *Scheduler) handleFire(ctx context.Context, task *asynq.Task) error {
	f, err := DecodeFire(task)
	if err != nil {
		return err
	}
	e := s.entry(f.Pipeline)
	if e == nil {
		// Another scheduler may have synced a new file first: retry later,
		// here after the next sync or in another process.
		return fmt.Errorf("scheduler: fire task for pipeline %q, which this scheduler has not loaded from %s", f.Pipeline, s.dir.Path())
	}
	res, err := s.startPending(ctx, e, "schedule")
	if err != nil {
		return err
	}
	if w := task.ResultWriter(); w != nil {
		b, _ := json.Marshal(res)
		_, _ = w.Write(b)
	}
	return nil
}

func (s *Scheduler) drainPending(ctx context.Context, e *Entry, why string) error {
	_, err := s.startPending(ctx, e, why)
	return err
}

// fireResult is the result of a fire task, as asynqmon shows it: the runs
// started, waiting for an earlier run, and skipped.
type fireResult struct {
	Runs    []string `json:"runs"`
	Queued  []string `json:"queued,omitempty"`
	Skipped []string `json:"skipped,omitempty"`
}

// startPending starts a run for each pending fire time of e; a fire time
// leaves the pending set once its run started or was skipped. A run waiting
// for an earlier one (overlap: queue) keeps its fire time pending, so that
// every fire task and every sync, in any scheduler process, asks again.
func (s *Scheduler) startPending(ctx context.Context, e *Entry, why string) (fireResult, error) {
	name := e.Name()
	res := fireResult{Runs: []string{}}
	fires, err := s.st.pending(ctx, name)
	if err != nil {
		return res, err
	}
	for _, fire := range fires {
		run, a, err := s.start(ctx, e, fire, why, e.overlap())
		if err != nil {
			return res, err
		}
		switch a.Outcome {
		case runstore.AdmitWaiting:
			res.Queued = append(res.Queued, run.ID)
		case runstore.AdmitSkipped:
			res.Skipped = append(res.Skipped, run.ID)
		default:
			res.Runs = append(res.Runs, run.ID)
		}
		if a.Outcome != runstore.AdmitWaiting {
			if err := s.st.donePending(ctx, name, fire); err != nil {
				return res, err
			}
		}
		if err := s.st.advance(ctx, name, fire); err != nil {
			return res, err
		}
	}
	return res, nil
}

func (s *Scheduler) entry(name string) *Entry {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if r := s.entries[name]; r != nil {
		return r.entry
	}
	return nil
}

// Entries returns the scheduled pipelines, sorted by name.
func (s *Scheduler) Entries() []*Entry {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*Entry, 0, len(s.entries))
	for _, r := range s.entries {
		out = append(out, r.entry)
	}
	sortEntries(out)
	return out
}
