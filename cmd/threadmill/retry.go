package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/threadmill/threadmill/internal/runctl"
	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/results"
	"github.com/threadmill/threadmill/runstore"
	"github.com/threadmill/threadmill/worker"
)

// retryOptions are the inputs of `threadmill retry`.
type retryOptions struct {
	RunID string
	// File, Simulate and ResultsDir retry a run of the embedded `run`
	// (no Redis): its directory under the results root is the run.
	File                      string
	Simulate                  bool
	ResultsDir                string
	Failed, Skipped, Canceled bool
	Redis                     redisFlags
	Queue                     string
	NoWait                    bool
	Progress                  string
	ProgressInterval          time.Duration
	LookupEnv                 func(string) (string, bool)
}

// states returns the item states to retry: the flags given, else all three.
func (o *retryOptions) states() []string {
	var out []string
	if o.Failed {
		out = append(out, results.StateFailed)
	}
	if o.Skipped {
		out = append(out, results.StateSkipped)
	}
	if o.Canceled {
		out = append(out, results.StateCanceled)
	}
	if len(out) == 0 {
		out = []string{results.StateFailed, results.StateSkipped, results.StateCanceled}
	}
	return out
}

func newRetryCmd() *cobra.Command {
	o := &retryOptions{}
	cmd := &cobra.Command{
		Use:   "retry RUN",
		Short: "Process again the failed, skipped or canceled items of a finished run",
		Long: `Retry a finished run on a shared Redis: only its items that failed, were
skipped or were canceled (--failed, --skipped, --canceled pick some; default
all three) are processed again, under the same run id, by the workers.
Succeeded items are kept as they are. An item that had created an
interaction resumes it instead of paying for a new one. A later step that
reads a retried step's outputs (a reduce, such as a weekly brief) is planned
and sent again, so that it sees them. The run's result files are then
written again, atomically; run.json keeps the earlier attempts in
"attempts".

On a shared Redis (--redis or ` + envRedisURL + `) the run must still be there (its
retention, 7 days by default) and the workers retry it; without --no-wait,
retry follows the run to its end and exits as ` + "`enqueue --wait`" + ` does.

A run made by the embedded ` + "`run`" + ` (no Redis) is retried from its directory
under the results root (--results, else the pipeline's output.dir), in this
process as ` + "`run`" + ` does: give its pipeline file with --file (it must not have
changed since: that is a re-run), and --simulate if it ran on the simulator.
Its items that are retried look up, by correlation id, any interaction the
earlier attempt created, so none is paid twice.

` + redisURLHelp,
		Example: `  threadmill retry bulk-summarize-20261202T090000Z
  threadmill retry --failed --no-wait weekly-support-brief-20261130T080000Z
  threadmill retry --file examples/weekly-support-brief.yaml --simulate weekly-support-brief-20261202T101500Z`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.RunID = args[0]
			if err := checkProgress(o.Progress, o.ProgressInterval); err != nil {
				return withCode(exitUsage, err)
			}
			return runRetry(cmd.Context(), o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.Failed, "failed", false, "retry the failed items")
	f.BoolVar(&o.Skipped, "skipped", false, "retry the skipped items")
	f.BoolVar(&o.Canceled, "canceled", false, "retry the canceled items")
	o.Redis.add(f, "Redis URL of the queue and run state (default: "+envRedisURL+")")
	f.StringVar(&o.Queue, "queue", worker.DefaultQueue, "asynq queue to enqueue to")
	f.BoolVar(&o.NoWait, "no-wait", false, "return once the retry is enqueued")
	f.StringVar(&o.File, "file", "", "the pipeline file of a run of the embedded run (no Redis)")
	f.BoolVar(&o.Simulate, "simulate", false, "with --file: retry on the in-process simulator, as the run was")
	f.StringVar(&o.ResultsDir, "results", "", "with --file: the results root holding the run (default: the pipeline's output.dir, else ./"+pipelines.DefaultOutputDir+")")
	f.StringVar(&o.Progress, "progress", "auto", "auto, bar, lines or none")
	f.DurationVar(&o.ProgressInterval, "progress-interval", 5*time.Second, "time between progress lines when not on a terminal")
	return cmd
}

func runRetry(ctx context.Context, o *retryOptions, stdout, stderr io.Writer) error {
	redisURL, source := o.Redis.resolve(envLookup(o.LookupEnv))
	if redisURL == "" {
		if o.File == "" {
			return withCode(exitUsage, fmt.Errorf("no Redis (--redis or %s) to find run %s in: for a run of the embedded run, give its pipeline file with --file", envRedisURL, o.RunID))
		}
		args := []string{o.File, "--retry-of", o.RunID, "--retry-states", strings.Join(o.states(), ","),
			"--progress", o.Progress, "--progress-interval", o.ProgressInterval.String()}
		if o.Simulate {
			args = append(args, "--simulate")
		}
		if o.ResultsDir != "" {
			args = append(args, "--results", o.ResultsDir)
		}
		return runEmbedded(ctx, args, stdout, stderr)
	}
	if o.File != "" || o.Simulate {
		return withCode(exitUsage, errors.New("--file and --simulate are for a run of the embedded run; on a shared Redis the workers retry the run with the file it was started with"))
	}
	rc, err := connectRedis(ctx, redisURL, source, 4)
	if err != nil {
		return err
	}
	defer rc.Close()
	states := o.states()
	re, err := runctl.Retry(ctx, rc.RDB, o.Queue, o.RunID, states)
	switch {
	case errors.Is(err, runstore.ErrNotFound):
		return fmt.Errorf("run %s not found on %s (never enqueued there, or expired)", o.RunID, rc.Display)
	case err != nil:
		return err
	case re.Attempt == 0:
		fmt.Fprintf(stdout, "run %s has no %s items: nothing to retry\n", o.RunID, strings.Join(states, ", "))
		return nil
	}
	what := fmt.Sprintf("%d items", re.Total())
	if len(re.Replanned) > 0 {
		what += ", and the steps that read them (" + strings.Join(re.Replanned, ", ") + ") in full"
	}
	fmt.Fprintf(stderr, "run %s: retrying %s as attempt %d on %s; follow it with: threadmill status %s\n", o.RunID, what, re.Attempt, rc.Display, o.RunID)
	if o.NoWait {
		return nil
	}
	return waitRun(ctx, runstore.New(rc.RDB, ""), o.RunID, o.Progress, o.ProgressInterval, stdout, stderr)
}

// runEmbedded runs `threadmill run` with args in this process, as the
// embedded side of retry and rerun.
func runEmbedded(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := newRunCmd()
	cmd.SetArgs(args)
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	cmd.SilenceErrors, cmd.SilenceUsage = true, true
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return withCode(exitUsage, err) })
	return cmd.ExecuteContext(ctx)
}
