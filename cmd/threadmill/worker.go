package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

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
	Log             logFlags
	Metrics         metricsFlags
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
for their interactions twice.

Result directories are written on the machine of the worker that finalizes
the run, under --results (default: the pipeline's output.dir).

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
	o.Log.add(f, "info")
	o.Metrics.add(f)
	return cmd
}

// runWorker serves until ctx ends, then drains.
func runWorker(ctx context.Context, o *workerOptions, stderr io.Writer) error {
	lookup := envLookup(o.LookupEnv)
	env, err := readWorkspaceEnv(lookup)
	if err != nil {
		return err
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
	if err := obs.serve(o.Metrics.Addr, rc.RDB, []string{o.Queue}, log); err != nil {
		return err
	}
	defer obs.Close()
	w, err := worker.New(worker.Config{
		RDB:             rc.RDB,
		API:             api,
		Concurrency:     o.Concurrency,
		Queue:           o.Queue,
		ResultsRoot:     o.ResultsDir,
		ShutdownTimeout: o.ShutdownTimeout,
		Logger:          log,
		Observer:        obs.Metrics,
	})
	if err != nil {
		return err
	}
	log.Info("serving", "redis", rc.Display, "queue", o.Queue, "concurrency", o.Concurrency, "workspace", env.BaseURL, "org", env.Org)
	return w.Run(ctx)
}
