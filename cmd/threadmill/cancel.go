package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/threadmill/threadmill/internal/runctl"
	"github.com/threadmill/threadmill/runstore"
	"github.com/threadmill/threadmill/worker"
)

// cancelOptions are the inputs of `threadmill cancel`.
type cancelOptions struct {
	RunID     string
	Redis     redisFlags
	Reason    string
	Queue     string
	NoWait    bool
	Timeout   time.Duration
	LookupEnv func(string) (string, bool)
}

func newCancelCmd() *cobra.Command {
	o := &cancelOptions{}
	cmd := &cobra.Command{
		Use:   "cancel RUN",
		Short: "Stop a run across the fleet and finalize it as canceled",
		Long: `Cancel a run on a shared Redis. Every worker stops the run's items within a
second or so: items not yet sent are recorded canceled, interactions in
flight are cancelled through the Workspace API (an interaction that had
already finished keeps its answer: the server answers 409), no further step
is planned, and the run is finalized as canceled, with result files for what
finished. Items waiting to be retried are taken at once rather than at their
retry time.

Without --no-wait, cancel waits (at most --timeout) for the run to be
finalized and prints its summary. Canceling a finished run changes nothing.
Runs of the embedded ` + "`run`" + ` live in its own process: stop those with Ctrl-C.

` + redisURLHelp,
		Example: `  threadmill cancel bulk-summarize-20261202T090000Z
  threadmill cancel --reason "wrong folder" --no-wait weekly-support-brief-20261130T080000Z`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.RunID = args[0]
			if o.Timeout <= 0 {
				return withCode(exitUsage, fmt.Errorf("--timeout must be positive, got %s", o.Timeout))
			}
			return runCancel(cmd.Context(), o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	o.Redis.add(f, "Redis URL of the queue and run state (default: "+envRedisURL+")")
	f.StringVar(&o.Reason, "reason", "canceled by request", "why, recorded with the run and each canceled item")
	f.StringVar(&o.Queue, "queue", worker.DefaultQueue, "asynq queue the run's tasks are in (and its priority queue)")
	f.BoolVar(&o.NoWait, "no-wait", false, "return once the cancellation is recorded")
	f.DurationVar(&o.Timeout, "timeout", 2*time.Minute, "how long to wait for the run to be finalized")
	return cmd
}

func runCancel(ctx context.Context, o *cancelOptions, stdout, stderr io.Writer) error {
	redisURL, source, err := o.Redis.required(envLookup(o.LookupEnv))
	if err != nil {
		return withCode(exitUsage, err)
	}
	rc, err := connectRedis(ctx, redisURL, source, 4)
	if err != nil {
		return err
	}
	defer rc.Close()
	c, err := runctl.Cancel(ctx, rc.RDB, o.Queue, o.RunID, o.Reason)
	if errors.Is(err, runstore.ErrNotFound) {
		return fmt.Errorf("run %s not found on %s (never enqueued there, or expired)", o.RunID, rc.Display)
	}
	if err != nil {
		return err
	}
	if runstore.Terminal(c.Before) {
		fmt.Fprintf(stdout, "run %s had already finished (%s); nothing to cancel\n", o.RunID, c.Before)
		return nil
	}
	fmt.Fprintf(stderr, "threadmill: run %s (%s) canceled: %s\n", o.RunID, c.Before, o.Reason)
	if c.MoveErr != nil {
		fmt.Fprintf(stderr, "threadmill: could not take the run's waiting tasks at once (they are canceled at their retry time): %v\n", c.MoveErr)
	} else if c.Moved > 0 {
		fmt.Fprintf(stderr, "threadmill: %d waiting tasks of the run taken now\n", c.Moved)
	}
	if o.NoWait {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	st, err := runstore.New(rc.RDB, "").Wait(wctx, o.RunID)
	if err != nil {
		return fmt.Errorf("run %s not finalized within %s (are workers running on %s?): %w", o.RunID, o.Timeout, rc.Display, err)
	}
	printSummary(stdout, st)
	return nil
}
