package worker

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/threadmill/threadmill/results"
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
	// Retry-After instead. Defaults 1s and 5m.
	RetryBase, RetryMax time.Duration
	// PollInterval is how often waiting retries are moved back to the queue
	// and idle queues are checked (asynq's DelayedTaskCheckInterval and
	// TaskCheckInterval), and the first delay between polls of an
	// interaction whose stream failed. Default 100ms.
	PollInterval time.Duration
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
}

func (c Config) withDefaults() Config {
	c.Prefix = cmp.Or(c.Prefix, runstore.DefaultPrefix)
	c.Retention = cmp.Or(c.Retention, runstore.DefaultRetention)
	c.Concurrency = cmp.Or(c.Concurrency, DefaultConcurrency)
	c.Queue = cmp.Or(c.Queue, DefaultQueue)
	c.ShutdownTimeout = cmp.Or(c.ShutdownTimeout, DefaultShutdownTimeout)
	c.RetryBase = cmp.Or(c.RetryBase, DefaultRetryBase)
	c.RetryMax = cmp.Or(c.RetryMax, DefaultRetryMax)
	c.PollInterval = cmp.Or(c.PollInterval, DefaultPollInterval)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Observer == nil {
		c.Observer = nopObserver{}
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
	if c.PollInterval < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("worker: Config.PollInterval is %s, want >= 10ms", c.PollInterval))
	}
	return errors.Join(errs...)
}
