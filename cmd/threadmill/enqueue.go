package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/spf13/cobra"

	"github.com/threadmill/threadmill/jobs"
	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/runstore"
	"github.com/threadmill/threadmill/worker"
)

// enqueueOptions are the inputs of `threadmill enqueue`.
type enqueueOptions struct {
	File  string
	Redis redisFlags
	RunID string
	At    time.Time
	Queue string
	// Priority is "high" (the priority queue, as scheduled runs) or
	// "normal".
	Priority string
	// Wait follows the run until it finishes and exits as `run` does.
	Wait bool
	// NoReuse sends every item, also unchanged ones (reuse: unchanged).
	NoReuse          bool
	Progress         string
	ProgressInterval time.Duration
	Preflight        preflightFlags
	// LookupEnv reads ${VAR}, WORKSPACE_* and THREADMILL_REDIS_URL;
	// default os.LookupEnv.
	LookupEnv func(string) (string, bool)
}

func (o *enqueueOptions) validate() error {
	if o.RunID != "" {
		if err := checkRunID(o.RunID); err != nil {
			return fmt.Errorf("--run-id: %w", err)
		}
	}
	if strings.TrimSpace(o.Queue) == "" {
		return errors.New("--queue must not be empty")
	}
	if _, err := startQueue(o.Queue, o.Priority); err != nil {
		return err
	}
	if err := checkProgress(o.Progress, o.ProgressInterval); err != nil {
		return err
	}
	return o.Preflight.validate()
}

func newEnqueueCmd() *cobra.Command {
	o := &enqueueOptions{}
	var at string
	cmd := &cobra.Command{
		Use:   "enqueue FILE",
		Short: "Start a run of a pipeline on a shared Redis, for the workers",
		Long: `Record a run of a pipeline on a shared Redis and enqueue its start task;
the workers (` + "`threadmill worker`" + `) do the rest. The run carries the
pipeline, so workers never read the file. Prints the run id on stdout.

A scheduled pipeline's run covers the window of its latest completed fire
time, as ` + "`plan`" + ` shows it (--at picks the last fire time at or before
another time); its id is <pipeline>-<UTC time> unless --run-id gives one.
Enqueueing a run id that exists already, for the same pipeline file, changes
nothing. Enqueue ignores schedule.overlap (the run starts at once), but the
scheduler's next fire time of the pipeline waits for or skips it.

The workers hold the Workspace URL and token. When WORKSPACE_BASE_URL is
set here too (with WORKSPACE_API_TOKEN and WORKSPACE_ORG as the workers have
them), enqueue checks the Workspace first, so that a bad configuration fails
here rather than on the workers; without it, only WORKSPACE_PROJECT is read
(when the pipeline names no project) and the Workspace is not checked.

` + preflightHelp + "\n\n" + redisURLHelp,
		Example: `  threadmill enqueue --redis redis://localhost:6379 examples/bulk-summarize.yaml
  threadmill enqueue --wait examples/weekly-support-brief.yaml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.File = args[0]
			var err error
			if o.At, err = atFlag(at); err != nil {
				return err
			}
			if err := o.validate(); err != nil {
				return withCode(exitUsage, err)
			}
			return runEnqueue(cmd.Context(), o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	o.Redis.add(f, "Redis URL of the queue and run state (default: "+envRedisURL+")")
	f.StringVar(&o.RunID, "run-id", "", "run id (default <pipeline>-<UTC time>)")
	f.StringVar(&at, "at", "", "run the window of the last fire time at or before this time: RFC 3339 or a date (UTC); default now")
	f.StringVar(&o.Queue, "queue", worker.DefaultQueue, "asynq queue the workers serve")
	f.StringVar(&o.Priority, "priority", "normal", "high: start the run in the workers' priority queue, ahead of normal runs (scheduled runs start there); normal")
	f.BoolVar(&o.NoReuse, "no-reuse", false, "send every item, also those a step's reuse: unchanged would take from an earlier run")
	f.BoolVar(&o.Wait, "wait", false, "follow the run until it finishes; exit 0, 3 (failed items) or 1 as run does")
	f.StringVar(&o.Progress, "progress", "auto", "with --wait: auto, bar, lines or none")
	f.DurationVar(&o.ProgressInterval, "progress-interval", 5*time.Second, "with --wait: time between progress lines when not on a terminal")
	o.Preflight.add(f)
	return cmd
}

func runEnqueue(ctx context.Context, o *enqueueOptions, stdout, stderr io.Writer) error {
	lookup := envLookup(o.LookupEnv)
	p, err := pipelines.Load(o.File, lookup)
	if err != nil {
		return loadFailure(err, stderr)
	}
	if p.Workspace.Project == "" {
		return fmt.Errorf("%s names no project: set workspace.project in it, or %s", o.File, envProject)
	}
	redisURL, source, err := o.Redis.required(lookup)
	if err != nil {
		return err
	}
	run, err := planRun(p, o.At, time.Time{}, "")
	if err != nil {
		return err
	}
	run.NoReuse = o.NoReuse
	if err := enqueuePreflight(ctx, lookup, p.Workspace.Project, o.Preflight.Timeout); err != nil {
		return withCode(exitFailure, err)
	}
	rc, err := connectRedis(ctx, redisURL, source, 4)
	if err != nil {
		return err
	}
	defer rc.Close()
	store := runstore.New(rc.RDB, "")

	existed := false
	if o.RunID != "" {
		run.ID = o.RunID
		_, _, err := store.Status(ctx, run.ID)
		existed = err == nil
	} else {
		run.ID, err = freshRunID(run.ID, func(id string) (bool, error) { return store.Exists(ctx, id) })
		if err != nil {
			return err
		}
	}
	q := asynqClient(rc.RDB)
	defer q.Close()
	queue, _ := startQueue(o.Queue, o.Priority)
	if err := jobs.StartRun(ctx, q, store, p, run, asynq.Queue(queue)); err != nil {
		return fmt.Errorf("enqueue run %s: %w", run.ID, err)
	}
	if existed {
		fmt.Fprintf(stderr, "run %s of %s exists already on %s: nothing enqueued\n", run.ID, p.Name, rc.Display)
	} else {
		fmt.Fprintf(stderr, "run %s of %s enqueued on %s (queue %s); follow it with: threadmill status %s\n", run.ID, p.Name, rc.Display, queue, run.ID)
	}
	fmt.Fprintln(stdout, run.ID)
	if !o.Wait {
		return nil
	}
	return waitRun(ctx, store, run.ID, o.Progress, o.ProgressInterval, stdout, stderr)
}

// startQueue returns the queue a run's start task goes to: queue, or its
// priority queue for priority "high" ("" is "normal").
func startQueue(queue, priority string) (string, error) {
	switch priority {
	case "normal", "":
		return queue, nil
	case "high":
		return worker.PriorityQueue(queue), nil
	}
	return "", fmt.Errorf("--priority must be high or normal, got %q", priority)
}

// waitRun follows a run on a shared Redis to its end, with a progress
// display, and exits as `run` does; interrupted, it says the run goes on.
func waitRun(ctx context.Context, store *runstore.Store, runID, progress string, interval time.Duration, stdout, stderr io.Writer) error {
	rep := newReporter(stderr, progress, interval, runID)
	st, err := follow(ctx, store, runID, rep, nil)
	if err != nil {
		if ctx.Err() != nil {
			return withCode(exitFailure, fmt.Errorf("stopped waiting for run %s; it goes on (threadmill status %s)", runID, runID))
		}
		return err
	}
	return finished(stdout, st)
}

// enqueuePreflight checks the Workspace and the project when this machine
// knows the Workspace (WORKSPACE_BASE_URL is set); the workers may be the
// only ones holding its URL and token, so without it there is nothing to
// check.
func enqueuePreflight(ctx context.Context, lookup func(string) (string, bool), projectID string, budget time.Duration) error {
	if v, _ := lookup(envBaseURL); strings.TrimSpace(v) == "" || budget <= 0 {
		return nil
	}
	env, err := readWorkspaceEnv(lookup)
	if err != nil {
		return err
	}
	env.Project = cmp.Or(projectID, env.Project)
	c, err := env.client(nil)
	if err != nil {
		return err
	}
	defer c.CloseIdleConnections()
	return preflight(ctx, c, env.BaseURL, projectID, budget, nil)
}

// finished prints a finished run's summary and returns the error its status
// exits with.
func finished(stdout io.Writer, st *runstore.RunState) error {
	if st.Status == runstore.StatusError {
		return withCode(exitFailure, fmt.Errorf("run %s failed: %s", st.ID, st.Error))
	}
	printSummary(stdout, st)
	if st.Status == runstore.StatusCanceled {
		return withCode(exitCanceled, fmt.Errorf("run %s canceled: %d succeeded, %d canceled, %d failed of %d items", st.ID, st.Succeeded, st.Canceled, st.Failed, st.Total))
	}
	if st.Status != runstore.StatusSucceeded {
		return withCode(exitItemsFailed, fmt.Errorf("run %s %s: %d failed, %d skipped of %d items", st.ID, st.Status, st.Failed, st.Skipped, st.Total))
	}
	return nil
}
