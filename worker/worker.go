// Package worker runs threadmill pipelines: an asynq server whose handlers
// start runs, send items (validate, then interact), fan steps in and write
// the result files.
//
// Delivery is at least once, effects are exactly once: an item's record is
// written once (runstore.Record), the interaction it created is checkpointed
// before anyone waits on it so that a retry resumes it, a step's completion
// is counted with a set of finished item keys, and the next step and the
// finalize task are enqueued with deterministic task ids by handlers that are
// idempotent themselves.
//
// Limits are shared by every worker through Redis: requests and tokens per
// minute per pipeline, items in flight per pipeline, the run's token budget,
// and a fleet-wide pause set when the API answers 429.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/threadmill/threadmill/internal/redishealth"
	"github.com/threadmill/threadmill/jobs"
	"github.com/threadmill/threadmill/results"
	"github.com/threadmill/threadmill/runstore"
	"github.com/threadmill/threadmill/workspace"
)

// Worker processes threadmill tasks. Create it with New, start it with Run.
type Worker struct {
	cfg    Config
	api    *workspace.Client // cfg.API under the pacing transport
	store  *runstore.Store
	client *asynq.Client
	mux    *asynq.ServeMux
	log    *slog.Logger

	hookMu sync.RWMutex
	onItem func(results.Item)

	runsMu sync.Mutex
	runs   map[string]*runCtx

	pausedUntil atomic.Int64 // the fleet-wide pause as last read, in Unix ns
	inflight    inflight     // items being processed, for cancellation

	health *redishealth.Watcher // see redishealth.go
	pace   pacer

	handlers sync.WaitGroup // handler goroutines, which may outlive asynq's shutdown by a moment
	runOnce  sync.Once
}

// New checks cfg and returns a worker; nothing runs until Run.
func New(cfg Config) (*Worker, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	w := &Worker{
		cfg:    cfg,
		store:  runstore.New(cfg.RDB, cfg.Prefix, runstore.WithRetention(cfg.Retention), runstore.WithRecordFiles(cfg.RecordFiles)),
		log:    cfg.Logger,
		onItem: cfg.OnItemDone,
		runs:   map[string]*runCtx{},
	}
	w.api = w.pacedClient(cfg.API)
	w.initRedisHealth()
	w.pace.adaptive = w.store.Adaptive(cfg.API.BaseURL(), cfg.AdaptiveRate)
	w.mux = asynq.NewServeMux()
	w.mux.Use(w.track, w.taskResults, w.exclusive)
	w.mux.HandleFunc(jobs.KindRunStart, w.handleRunStart)
	w.mux.HandleFunc(jobs.KindItem, w.handleItem)
	w.mux.HandleFunc(jobs.KindAdvance, w.handleAdvance)
	w.mux.HandleFunc(jobs.KindFanOut, w.handleFanOut)
	w.mux.HandleFunc(jobs.KindFinalize, w.handleFinalize)
	return w, nil
}

// Store returns the worker's run store.
func (w *Worker) Store() *runstore.Store { return w.store }

// Queue returns the asynq queue the worker serves.
func (w *Worker) Queue() string { return w.cfg.Queue }

// OnItemDone sets the hook called once per item when its record is first
// written (replacing Config.OnItemDone). Set it before Run.
func (w *Worker) OnItemDone(fn func(results.Item)) {
	w.hookMu.Lock()
	w.onItem = fn
	w.hookMu.Unlock()
}

func (w *Worker) itemDone(it results.Item) {
	w.hookMu.RLock()
	fn := w.onItem
	w.hookMu.RUnlock()
	if fn != nil {
		fn(it)
	}
}

// Run serves tasks until ctx is done, then stops fetching new tasks, lets
// the tasks in flight finish within Config.ShutdownTimeout (those still
// running are handed back to the queue, to resume from their checkpoints),
// and returns. It returns an error when Redis cannot be reached at start.
// A Worker runs once.
func (w *Worker) Run(ctx context.Context) error {
	err := errors.New("worker: Run called twice")
	w.runOnce.Do(func() { err = w.run(ctx) })
	return err
}

func (w *Worker) run(ctx context.Context) error {
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err := w.cfg.RDB.Ping(pctx).Err()
	cancel()
	if err != nil {
		return fmt.Errorf("worker: redis unreachable: %w", err)
	}
	enqRedis := w.cfg.RDB
	if w.cfg.Redis != nil {
		c, ok := w.cfg.Redis.MakeRedisClient().(redis.UniversalClient)
		if !ok {
			return fmt.Errorf("worker: unsupported Config.Redis type %T", w.cfg.Redis)
		}
		defer c.Close()
		enqRedis = c
	}
	client, closeClient := newEnqueuer(enqRedis)
	defer closeClient()
	w.client = client
	pauseCtx, stopPause := context.WithCancel(context.WithoutCancel(ctx))
	var pauseWG sync.WaitGroup
	pauseWG.Go(func() { w.watchPause(pauseCtx) })
	pauseWG.Go(func() { w.watchCancels(pauseCtx) })
	pauseWG.Go(func() { w.watchRedis(pauseCtx) })
	defer func() { stopPause(); pauseWG.Wait() }()

	// An asynq server takes tasks off the queue one Redis round trip at a
	// time, in one loop; at high concurrency that loop, not the API, is the
	// bottleneck. The worker runs one server per fetchSlots slots.
	n := fetchers(w.cfg.Concurrency)
	srvs := make([]*asynq.Server, n)
	for i := range srvs {
		acfg := asynq.Config{
			Concurrency:              w.cfg.Concurrency/n + btoi(i < w.cfg.Concurrency%n),
			Queues:                   map[string]int{w.cfg.Queue: 1, PriorityQueue(w.cfg.Queue): 2},
			StrictPriority:           true,
			RetryDelayFunc:           w.retryDelay,
			IsFailure:                isFailure,
			ShutdownTimeout:          w.cfg.ShutdownTimeout,
			TaskCheckInterval:        w.cfg.PollInterval,
			DelayedTaskCheckInterval: w.cfg.PollInterval,
			Logger:                   asynqLogger{w.log},
			LogLevel:                 asynq.WarnLevel,
		}
		if w.cfg.Redis != nil {
			srvs[i] = asynq.NewServer(w.cfg.Redis, acfg)
		} else {
			srvs[i] = asynq.NewServerFromRedisClient(w.cfg.RDB, acfg)
		}
		if err := srvs[i].Start(w.mux); err != nil {
			for _, s := range srvs[:i] {
				s.Shutdown()
			}
			return fmt.Errorf("worker: start asynq server: %w", err)
		}
	}
	if w.cfg.OrphanCheck > 0 {
		oc := newOrphanChecker(w, asynq.NewInspectorFromRedisClient(enqRedis))
		var orphanWG sync.WaitGroup
		orphanWG.Go(func() { oc.run(ctx) })
		defer orphanWG.Wait()
	}
	w.log.Info("worker started", "queue", w.cfg.Queue, "concurrency", w.cfg.Concurrency, "fetchers", n)
	<-ctx.Done()
	w.log.Info("worker stopping: no new tasks; waiting for tasks in flight", "timeout", w.cfg.ShutdownTimeout)
	for _, s := range srvs {
		s.Stop()
	}
	var wg sync.WaitGroup
	for _, s := range srvs {
		wg.Go(s.Shutdown)
	}
	wg.Wait()
	w.handlers.Wait()
	w.log.Info("worker stopped")
	return nil
}

// fetchSlots is the concurrency served by one asynq server (one fetch loop).
const fetchSlots = 32

// fetchers returns how many asynq servers serve a concurrency of c.
func fetchers(c int) int { return min(max(1, (c+fetchSlots-1)/fetchSlots), 16) }

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// newEnqueuer returns the asynq client the worker enqueues with, batching
// its script calls (see batchingClient), and the function that closes it.
func newEnqueuer(rdb redis.UniversalClient) (*asynq.Client, func()) {
	b := newBatchingClient(rdb)
	c := asynq.NewClientFromRedisClient(b)
	return c, func() {
		_ = c.Close()
		_ = b.Close()
	}
}

// track counts handler goroutines so Run returns only after the last one.
func (w *Worker) track(h asynq.Handler) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		w.handlers.Add(1)
		defer w.handlers.Done()
		return h.ProcessTask(ctx, t)
	})
}

// enqueue adds a task of the run being handled to its queue (see
// PriorityQueue); a task id that is already taken means the task exists:
// not an error.
func (w *Worker) enqueue(ctx context.Context, t *asynq.Task, err error, opts ...asynq.Option) error {
	if err != nil {
		return err
	}
	// A run's tasks stay in the queue its start task was put in: its
	// priority.
	queue, ok := asynq.GetQueueName(ctx)
	if !ok || !slices.Contains(w.queues(), queue) {
		queue = w.cfg.Queue
	}
	return w.enqueueTo(ctx, queue, t, opts...)
}

// enqueueTo adds a task to queue; a task id that is already taken means the
// task exists: not an error.
func (w *Worker) enqueueTo(ctx context.Context, queue string, t *asynq.Task, opts ...asynq.Option) error {
	opts = append(opts, asynq.Queue(queue))
	if _, err := w.client.EnqueueContext(ctx, t, opts...); err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return fmt.Errorf("worker: enqueue %s: %w", t.Type(), err)
	}
	return nil
}

// PriorityQueue is the queue whose runs a worker serves before those of
// queue: the scheduler starts runs there (a scheduled run does not wait
// behind a bulk run), as does `enqueue --priority high`. Every task of a run
// goes to the queue of its start task.
func PriorityQueue(queue string) string { return queue + "-high" }

// queues returns the queues the worker serves, the priority queue first.
func (w *Worker) queues() []string { return []string{PriorityQueue(w.cfg.Queue), w.cfg.Queue} }

// controlOpts are the options of step:advance and run:finalize. Their
// completed tasks are kept for a day, so that a late duplicate enqueue
// (another finisher of the same step) meets a task id conflict instead of
// running again; the handlers are idempotent besides.
func controlOpts() []asynq.Option {
	return []asynq.Option{asynq.MaxRetry(10), asynq.Timeout(time.Hour), asynq.Retention(24 * time.Hour)}
}

// runCtx is what handlers know about a run: its spec (immutable) and a
// logger carrying its pipeline and id. Workers cache it per run.
type runCtx struct {
	id   string
	spec *runstore.Spec
	log  *slog.Logger
	// estimatedOnce logs once per run (per cached runCtx) that chat usage
	// is estimated.
	estimatedOnce sync.Once
}

// maxCachedRuns bounds the run cache; it is cleared when full.
const maxCachedRuns = 256

// taskRun decodes a task's payload with decode and loads the run it belongs
// to. A malformed payload is logged and its (permanent) error returned.
func taskRun[P jobs.Payload](ctx context.Context, w *Worker, t *asynq.Task, decode func(*asynq.Task) (P, error)) (P, *runCtx, error) {
	p, err := decode(t)
	if err != nil {
		w.log.Error("dropping malformed task", "type", t.Type(), "error", err)
		return p, nil, err
	}
	rc, err := w.loadRun(ctx, p.Run())
	return p, rc, err
}

// loadRun returns the cached context of a run, reading it from the store the
// first time. A run the store does not know is a permanent error.
func (w *Worker) loadRun(ctx context.Context, runID string) (*runCtx, error) {
	w.runsMu.Lock()
	rc, ok := w.runs[runID]
	w.runsMu.Unlock()
	if ok {
		return rc, nil
	}
	spec, err := w.store.Spec(ctx, runID)
	if errors.Is(err, runstore.ErrNotFound) {
		return nil, fmt.Errorf("worker: %w (expired, or enqueued without jobs.StartRun): %w", err, asynq.SkipRetry)
	}
	if err != nil {
		return nil, err
	}
	rc = &runCtx{id: runID, spec: spec, log: w.log.With("pipeline", spec.Pipeline.Name, "run", runID)}
	w.runsMu.Lock()
	if len(w.runs) >= maxCachedRuns {
		clear(w.runs)
	}
	w.runs[runID] = rc
	w.runsMu.Unlock()
	return rc, nil
}

// asynqLogger sends asynq's own logs to slog.
type asynqLogger struct{ l *slog.Logger }

func (a asynqLogger) Debug(args ...any) { a.l.Debug(fmt.Sprint(args...), "component", "asynq") }
func (a asynqLogger) Info(args ...any)  { a.l.Info(fmt.Sprint(args...), "component", "asynq") }
func (a asynqLogger) Warn(args ...any)  { a.l.Warn(fmt.Sprint(args...), "component", "asynq") }
func (a asynqLogger) Error(args ...any) { a.l.Error(fmt.Sprint(args...), "component", "asynq") }

// Fatal logs at error level; asynq calls it for unrecoverable server errors,
// and the worker never exits the process on its own.
func (a asynqLogger) Fatal(args ...any) { a.l.Error(fmt.Sprint(args...), "component", "asynq") }
