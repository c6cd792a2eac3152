package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/reuse"
	"github.com/threadmill/threadmill/worker"
	"github.com/threadmill/threadmill/workspace"
)

// workerOptions are the inputs of `threadmill worker`.
type workerOptions struct {
	Redis redisFlags
	// Concurrency is the number of tasks processed at once; default 16.
	Concurrency int
	// ResultsDir overrides each pipeline's output.dir for the runs this
	// worker finalizes.
	ResultsDir      string
	Queue           string
	ShutdownTimeout time.Duration
	// OrphanCheck and OrphanGrace are worker.Config's: how often the fleet
	// looks for a dead worker's tasks, and how long one must have been
	// orphaned before it is enqueued again.
	OrphanCheck, OrphanGrace time.Duration
	Preflight                preflightFlags
	Log                      logFlags
	Metrics                  metricsFlags
	// MaxRetryAfter caps the waits a 429 or 503 asks for; 0:
	// THREADMILL_MAX_RETRY_AFTER, else worker.DefaultMaxRetryAfter.
	MaxRetryAfter time.Duration
	// ItemRetention is how long asynq keeps completed item tasks, with
	// their results; 0: not kept. Default worker.DefaultItemRetention.
	ItemRetention time.Duration
	// ReuseRetention is how long outputs kept for reuse: unchanged stay
	// reusable. Default reuse.DefaultRetention.
	ReuseRetention time.Duration
	// LookupEnv reads WORKSPACE_* and THREADMILL_REDIS_URL; default os.LookupEnv.
	LookupEnv func(string) (string, bool)
}

func (o *workerOptions) validate() error {
	if o.Concurrency < 1 || o.Concurrency > 10000 {
		return fmt.Errorf("--concurrency must be in 1..10000, got %d", o.Concurrency)
	}
	if strings.TrimSpace(o.Queue) == "" {
		return fmt.Errorf("--queue must not be empty")
	}
	if o.ShutdownTimeout < 0 {
		return fmt.Errorf("--shutdown-timeout must not be negative, got %s", o.ShutdownTimeout)
	}
	if o.OrphanCheck >= 0 && o.OrphanCheck < 100*time.Millisecond {
		return fmt.Errorf("--orphan-check must be at least 100ms, or negative to leave dead workers' tasks to asynq alone; got %s", o.OrphanCheck)
	}
	if o.ItemRetention < 0 {
		return fmt.Errorf("--item-retention must not be negative (0 keeps no completed item task), got %s", o.ItemRetention)
	}
	if o.ReuseRetention < time.Minute {
		return fmt.Errorf("--reuse-retention must be at least 1m, got %s", o.ReuseRetention)
	}
	if o.OrphanGrace <= 0 {
		return fmt.Errorf("--orphan-grace must be positive, got %s", o.OrphanGrace)
	}
	if err := o.Preflight.validate(); err != nil {
		return err
	}
	if err := o.Metrics.validate(); err != nil {
		return err
	}
	return o.Log.validate()
}

func newWorkerCmd() *cobra.Command {
	o := &workerOptions{}
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Process the runs enqueued on a shared Redis until stopped",
		Long: `Serve threadmill's queue on a shared Redis: start runs, send their items
(validate, then interact), fan steps in and write result files. Start as
many workers, on as many machines, as the API and the pipelines' limits
allow: limits are shared through Redis.

SIGTERM or SIGINT stops fetching new tasks and lets the items in flight
finish within --shutdown-timeout; items still running then go back to the
queue and resume from their checkpoints on another worker, without paying
for their interactions twice. The tasks of a worker that died (SIGKILL, a
lost machine) run again on the others about 35s later: asynq's 30s lease,
then --orphan-grace (see docs/troubleshooting.md).

Result directories are written on the machine of the worker that finalizes
the run, under --results (default: the pipeline's output.dir).

At start the worker checks the Workspace (GET /api/v1/app/me): a refused
token or org (401/403) ends it at once with exit status 1. A Workspace that
does not answer within --preflight-timeout is logged as a warning and the
worker serves anyway (it may start before the API; its items retry until
the API answers).

` + workspaceEnvHelp + "\n\n" + redisURLHelp,
		Example: `  THREADMILL_REDIS_URL=redis://localhost:6379 threadmill worker --concurrency 32`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return withCode(exitUsage, err)
			}
			return runWorker(cmd.Context(), o, cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	o.Redis.add(f, "Redis URL of the queue and run state (default: "+envRedisURL+")")
	f.IntVar(&o.Concurrency, "concurrency", worker.DefaultConcurrency, "tasks processed at once")
	f.StringVar(&o.ResultsDir, "results", "", "results root (default: each pipeline's output.dir, else ./threadmill-results)")
	f.StringVar(&o.Queue, "queue", worker.DefaultQueue, "asynq queue to serve")
	f.DurationVar(&o.ShutdownTimeout, "shutdown-timeout", worker.DefaultShutdownTimeout, "on SIGTERM/SIGINT, how long items in flight may take to finish")
	f.DurationVar(&o.OrphanCheck, "orphan-check", worker.DefaultOrphanCheck, "how often the fleet looks for the tasks of dead workers (negative: never; asynq's recoverer alone, about a minute)")
	f.DurationVar(&o.OrphanGrace, "orphan-grace", worker.DefaultOrphanGrace, "how long a task must have had an expired asynq lease, with no live worker, before it runs again")
	f.DurationVar(&o.ItemRetention, "item-retention", worker.DefaultItemRetention, "how long completed item tasks stay in Redis with their results, for asynq task ls and asynqmon (0: not kept)")
	f.DurationVar(&o.ReuseRetention, "reuse-retention", reuse.DefaultRetention, "how long the outputs steps with reuse: unchanged take stay in Redis after the last run that used them")
	o.Preflight.add(f)
	addMaxRetryAfter(f, &o.MaxRetryAfter)
	o.Log.add(f, "info")
	o.Metrics.add(f)
	return cmd
}

// envMaxRetryAfter is the environment default of --max-retry-after.
const envMaxRetryAfter = "THREADMILL_MAX_RETRY_AFTER"

// addMaxRetryAfter adds --max-retry-after, the cap on Retry-After waits.
func addMaxRetryAfter(f *pflag.FlagSet, d *time.Duration) {
	f.DurationVar(d, "max-retry-after", 0, "longest wait a 429 or 503 Retry-After may impose on every worker (default: "+envMaxRetryAfter+", else "+worker.DefaultMaxRetryAfter.String()+")")
}

// maxRetryAfter returns the --max-retry-after to use: the flag, else the
// environment, else 0 (worker.DefaultMaxRetryAfter).
func maxRetryAfter(flag time.Duration, lookup func(string) (string, bool)) (time.Duration, error) {
	if flag != 0 {
		if flag < time.Second {
			return 0, fmt.Errorf("--max-retry-after must be at least 1s, got %s", flag)
		}
		return flag, nil
	}
	v, ok := lookup(envMaxRetryAfter)
	if !ok || strings.TrimSpace(v) == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(strings.TrimSpace(v))
	if err != nil || d < time.Second {
		return 0, fmt.Errorf("%s=%q: want a duration of at least 1s, such as 2m", envMaxRetryAfter, v)
	}
	return d, nil
}

// runWorker serves until ctx ends, then drains.
func runWorker(ctx context.Context, o *workerOptions, stderr io.Writer) error {
	lookup := envLookup(o.LookupEnv)
	env, err := readWorkspaceEnv(lookup)
	if err != nil {
		return err
	}
	maxWait, err := maxRetryAfter(o.MaxRetryAfter, lookup)
	if err != nil {
		return withCode(exitUsage, err)
	}
	redisURL, source, err := o.Redis.required(lookup)
	if err != nil {
		return err
	}
	log, err := o.Log.logger(stderr, env.Token, urlPassword(redisURL))
	if err != nil {
		return withCode(exitUsage, err)
	}
	obs := newObservability("worker")
	api, err := env.client(log, workspace.WithHTTPClient(obs.httpClient()))
	if err != nil {
		return err
	}
	rc, err := connectRedis(ctx, redisURL, source, poolFor(o.Concurrency))
	if err != nil {
		return err
	}
	defer rc.Close()
	if o.Metrics.UI {
		pdir, err := uiPipelinesDir(&pipelinesDirFlag{}, lookup)
		if err != nil {
			return err
		}
		if obs.UI, err = newWebUI(cmp.Or(o.ResultsDir, pipelines.DefaultOutputDir), pdir, rc.RDB, o.Queue, uiMountPath, lookup, log); err != nil {
			return err
		}
	}
	if err := obs.serve(o.Metrics, rc.RDB, []string{worker.PriorityQueue(o.Queue), o.Queue}, log); err != nil {
		return err
	}
	defer obs.Close()
	if err := workerPreflight(ctx, api, env.BaseURL, o.Preflight.Timeout, log); err != nil {
		return err
	}
	w, err := worker.New(worker.Config{
		RDB:             rc.RDB,
		API:             api,
		Concurrency:     o.Concurrency,
		Queue:           o.Queue,
		ResultsRoot:     o.ResultsDir,
		ShutdownTimeout: o.ShutdownTimeout,
		OrphanCheck:     o.OrphanCheck,
		OrphanGrace:     o.OrphanGrace,
		MaxRetryAfter:   maxWait,
		ItemRetention:   cmp.Or(o.ItemRetention, -1), // 0 on the command line: not kept
		ReuseRetention:  o.ReuseRetention,
		Logger:          log,
		Observer:        obs.Metrics,
	})
	if err != nil {
		return err
	}
	log.Info("serving", "redis", rc.Display, "queue", o.Queue, "concurrency", o.Concurrency, "workspace", env.BaseURL, "org", env.Org)
	return w.Run(ctx)
}

// workerPreflight checks the token and org at start. A refusal (or any other
// definite wrong answer) is returned: the worker could not do anything
// useful. A Workspace that does not answer within budget is only logged:
// workers may start before the API (docker compose starts them together),
// and their items retry until it answers.
func workerPreflight(ctx context.Context, api *workspace.Client, baseURL string, budget time.Duration, log *slog.Logger) error {
	err := preflight(ctx, api, baseURL, "", budget, log)
	if pe, ok := errors.AsType[*preflightError](err); ok && pe.Kind == preflightUnreachable {
		log.Warn("Workspace unreachable at start; serving anyway, items retry until it answers",
			"workspace", baseURL, "after", roundElapsed(pe.After), "error", describeCause(pe.Cause))
		return nil
	}
	if err != nil {
		return withCode(exitFailure, err)
	}
	return nil
}
