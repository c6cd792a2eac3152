package worker

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/threadmill/threadmill/notify"
	"github.com/threadmill/threadmill/results"
	"github.com/threadmill/threadmill/reuse"
	"github.com/threadmill/threadmill/runstore"
	"github.com/threadmill/threadmill/workspace"
)

// Defaults of Config.
const (
	DefaultQueue           = "threadmill"
	DefaultConcurrency     = 16
	DefaultShutdownTimeout = 30 * time.Second
	DefaultRetryBase       = time.Second
	DefaultRetryMax        = 5 * time.Minute
	DefaultPollInterval    = 100 * time.Millisecond
	DefaultOrphanCheck     = time.Second
	DefaultOrphanGrace     = 5 * time.Second
	DefaultMaxRetryAfter   = 2 * time.Minute
	DefaultItemRetention   = time.Hour
)

// Config configures a Worker. Zero values take the documented defaults.
type Config struct {
	// Redis is the connection the asynq server and client use. Default: RDB
	// is shared with asynq.
	Redis asynq.RedisConnOpt
	// RDB is the Redis client of the run store and the shared limits.
	// Required.
	RDB redis.UniversalClient
	// API is the Workspace client items are sent with. Required.
	API *workspace.Client
	// Prefix is the run store's key prefix. Default runstore.DefaultPrefix.
	Prefix string
	// Retention is how long run state stays in Redis after its last write.
	// Default runstore.DefaultRetention.
	Retention time.Duration
	// FanOutWindow, when positive, bounds the items of a step that are
	// queued or in flight at once (give or take one per worker slot): a
	// step's items are enqueued a window at a time, the next ones as
	// earlier ones finish (step:fanout tasks), so that a Redis that lives
	// in this process's memory (the embedded default) holds a window of
	// tasks, not the whole step. Default 0: a step's items are enqueued all
	// at once (a shared Redis holds them: see docs/scaling.md).
	FanOutWindow int
	// RecordFiles, when set, keeps item records (requests and outputs) in
	// files on this machine's disk and only their places in Redis, for a
	// Redis that lives in this process's memory (the embedded default); a
	// worker sharing its Redis with other processes must not set it (see
	// runstore.RecordFiles). Default: records are kept in Redis.
	RecordFiles *runstore.RecordFiles
	// ItemRetention is how long asynq keeps an item's task once it has
	// completed, with its result (state, tokens, latency, interaction ids:
	// see taskresult.go), for `asynq task ls --state completed` and
	// asynqmon. A retained item costs Redis its payload (the rendered
	// requests) plus about 1.2 KB: 2.1 KB for the example bulk pipeline's
	// 0.9 KB payloads (BenchmarkRetainedItemBytes), so 100,000 items kept
	// at once take about 210 MB, what they took while queued. Default 1h;
	// negative: not kept.
	ItemRetention time.Duration
	// Concurrency is the number of tasks this worker processes at once.
	// Default 16. The pipeline's limits.concurrency bounds one pipeline's
	// items across all workers.
	Concurrency int
	// Queue is the asynq queue the worker serves and enqueues to. Default
	// "threadmill".
	Queue string
	// ResultsRoot is where result directories are written
	// (<root>/<pipeline>/<run-id>/). Default: the pipeline's output.dir,
	// else pipelines.DefaultOutputDir ("threadmill-results").
	ResultsRoot string
	// ShutdownTimeout is how long in-flight tasks may take to finish once
	// the worker stops; tasks still running then are handed back to the
	// queue and resume from their checkpoints. Default 30s.
	ShutdownTimeout time.Duration
	// RetryBase and RetryMax bound the exponential backoff (with jitter)
	// between attempts of an item that failed transiently: attempt n waits
	// about RetryBase·2ⁿ, at most RetryMax. A 429 or 503 waits its
	// Retry-After (at most MaxRetryAfter) instead, and does not count as an
	// attempt. Defaults 1s and 5m.
	RetryBase, RetryMax time.Duration
	// MaxRetryAfter caps the wait a 429 or 503 asks for with Retry-After
	// (in seconds or as an HTTP date): the fleet-wide pause it sets, the
	// delay before the item's next try and the client's waits between
	// polls. A server that asks for a day would otherwise stop every worker
	// of every pipeline on this Redis for a day. Default 2m.
	MaxRetryAfter time.Duration
	// AdaptiveRate tunes the request rate the fleet adapts from the 429s
	// it sees (runstore.AdaptiveParams; zero values take its defaults).
	AdaptiveRate runstore.AdaptiveParams
	// PollInterval is how often waiting retries are moved back to the queue
	// and idle queues are checked (asynq's DelayedTaskCheckInterval and
	// TaskCheckInterval), and the first delay between polls of an
	// interaction whose stream failed. Default 100ms.
	PollInterval time.Duration
	// OrphanCheck is how often the fleet looks for tasks a dead worker left
	// active (one worker at a time looks, see orphans.go). asynq hands such
	// a task back only 30s after its lease expired, and its recoverer looks
	// once a minute: about 60–65s after a SIGKILL. A task whose asynq lease
	// has expired (its worker sent no heartbeat for 30s: asynq's fixed
	// lease) and that no live asynq server reports running is enqueued
	// again, as a rescue copy, after OrphanGrace: about 35s after a SIGKILL.
	// Default 1s; negative: never (asynq's recoverer alone).
	OrphanCheck time.Duration
	// OrphanGrace is how long a task must have been seen with an expired
	// lease, and claimed by no live asynq server, before it is rescued. It
	// allows for clock skew between workers and lets a live worker that
	// lost its lease (Redis unreachable for 30s) cancel the task first:
	// asynq's heartbeater does so within 5s. asynq's own recoverer waits
	// 30s here. Default 5s.
	OrphanGrace time.Duration
	// Logger receives the worker's logs; every line about an item carries
	// pipeline, run, step and item. Default: discard.
	Logger *slog.Logger
	// OnItemDone, when set, is called once per item when its record is
	// first written (not for duplicates), from the handler's goroutine. The
	// embedded runner appends it to its journal.
	OnItemDone func(results.Item)
	// Observer is told about items, retries, tokens, rate-limit waits and
	// finished runs, for metrics (a *metrics.Metrics). Default: none.
	Observer Observer
	// Reuse keeps the outputs that steps with reuse: unchanged take
	// instead of sending an unchanged item again. Default: Redis (RDB,
	// under Prefix), kept ReuseRetention; the embedded runner passes a
	// reuse.Dir under its results root.
	Reuse reuse.Store
	// ReuseRetention is how long the default Reuse store keeps an output
	// after the last run that saved it. Default reuse.DefaultRetention
	// (30 days).
	ReuseRetention time.Duration
	// LookupEnv reads the environment variables notify[].secret_env names.
	// Default os.LookupEnv.
	LookupEnv func(string) (string, bool)
	// Notifier calls a pipeline's notify webhooks when its run finishes.
	// Default: notify.New with Logger and LookupEnv (4 tries, backoff from
	// 1s).
	Notifier *notify.Sender
}

func (c Config) withDefaults() Config {
	c.Prefix = cmp.Or(c.Prefix, runstore.DefaultPrefix)
	c.Retention = cmp.Or(c.Retention, runstore.DefaultRetention)
	c.ItemRetention = cmp.Or(c.ItemRetention, DefaultItemRetention)
	c.Concurrency = cmp.Or(c.Concurrency, DefaultConcurrency)
	c.Queue = cmp.Or(c.Queue, DefaultQueue)
	c.ShutdownTimeout = cmp.Or(c.ShutdownTimeout, DefaultShutdownTimeout)
	c.RetryBase = cmp.Or(c.RetryBase, DefaultRetryBase)
	c.RetryMax = cmp.Or(c.RetryMax, DefaultRetryMax)
	c.PollInterval = cmp.Or(c.PollInterval, DefaultPollInterval)
	c.OrphanCheck = cmp.Or(c.OrphanCheck, DefaultOrphanCheck)
	c.OrphanGrace = cmp.Or(c.OrphanGrace, DefaultOrphanGrace)
	c.MaxRetryAfter = cmp.Or(c.MaxRetryAfter, DefaultMaxRetryAfter)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Observer == nil {
		c.Observer = nopObserver{}
	}
	if c.Reuse == nil && c.RDB != nil {
		c.Reuse = reuse.NewRedis(c.RDB, c.Prefix, c.ReuseRetention)
	}
	if c.LookupEnv == nil {
		c.LookupEnv = os.LookupEnv
	}
	if c.Notifier == nil {
		c.Notifier = &notify.Sender{Logger: c.Logger, LookupEnv: c.LookupEnv}
	}
	return c
}

func (c Config) validate() error {
	var errs []error
	if c.RDB == nil {
		errs = append(errs, errors.New("worker: Config.RDB is required (the run store's Redis client)"))
	}
	if c.API == nil {
		errs = append(errs, errors.New("worker: Config.API is required (the Workspace client)"))
	}
	if c.Concurrency < 1 || c.Concurrency > 10000 {
		errs = append(errs, fmt.Errorf("worker: Config.Concurrency is %d, want 1..10000", c.Concurrency))
	}
	if c.RetryBase <= 0 || c.RetryMax < c.RetryBase {
		errs = append(errs, fmt.Errorf("worker: Config.RetryBase (%s) must be positive and at most Config.RetryMax (%s)", c.RetryBase, c.RetryMax))
	}
	if c.ShutdownTimeout < 0 {
		errs = append(errs, fmt.Errorf("worker: Config.ShutdownTimeout is %s, want >= 0", c.ShutdownTimeout))
	}
	if c.MaxRetryAfter < time.Second {
		errs = append(errs, fmt.Errorf("worker: Config.MaxRetryAfter is %s, want >= 1s", c.MaxRetryAfter))
	}
	if b := c.AdaptiveRate.Beta; b < 0 || b >= 1 {
		errs = append(errs, fmt.Errorf("worker: Config.AdaptiveRate.Beta is %g, want 0 (default) or in (0, 1)", b))
	}
	if c.PollInterval < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("worker: Config.PollInterval is %s, want >= 10ms", c.PollInterval))
	}
	if c.OrphanCheck >= 0 && c.OrphanCheck < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("worker: Config.OrphanCheck is %s, want >= 100ms (or negative: never)", c.OrphanCheck))
	}
	if c.ReuseRetention < 0 {
		errs = append(errs, fmt.Errorf("worker: Config.ReuseRetention is %s, want >= 0", c.ReuseRetention))
	}
	if c.OrphanGrace < 0 {
		errs = append(errs, fmt.Errorf("worker: Config.OrphanGrace is %s, want >= 0", c.OrphanGrace))
	}
	return errors.Join(errs...)
}
