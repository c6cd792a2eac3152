package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/spf13/cobra"

	"github.com/threadmill/threadmill/jobs"
	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/results"
	"github.com/threadmill/threadmill/runstore"
	"github.com/threadmill/threadmill/worker"
)

// rerunOptions are the inputs of `threadmill rerun`.
type rerunOptions struct {
	RunID            string
	File             string
	Redis            redisFlags
	ResultsDir       string
	Simulate         bool
	Queue            string
	Priority         string
	NoWait           bool
	Progress         string
	ProgressInterval time.Duration
	LookupEnv        func(string) (string, bool)
}

func newRerunCmd() *cobra.Command {
	o := &rerunOptions{}
	cmd := &cobra.Command{
		Use:   "rerun RUN FILE",
		Short: "Start a new run of the same window as RUN, with the current pipeline file",
		Long: `Start a new run over exactly the fire time and window of an earlier run, with
the pipeline file as it is now: the failed weekly report, produced again for
its own week once the file is fixed. The new run's id is RUN's with
-rerun<N> appended (-rerun1, -rerun2, ...), so it shows which fire time it
redoes; every item is sent again (use ` + "`threadmill retry`" + ` to send only the
items that did not succeed, with the file the run was started with).

RUN is looked up in Redis (--redis or ` + envRedisURL + `), else in the results
root (--results, else the pipeline's output.dir): its run.json gives the
window. With a Redis the new run is started there for the workers; follow
it as ` + "`enqueue --wait`" + ` does, or pass --no-wait. Without one it runs here,
as ` + "`run`" + ` does (--simulate for the in-process simulator).

` + redisURLHelp,
		Example: `  threadmill rerun weekly-support-brief@2026-11-30T08:00:00Z pipelines.d/weekly-support-brief.yaml
  threadmill rerun --no-wait bulk-summarize-20261202T090000Z examples/bulk-summarize.yaml`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.RunID, o.File = args[0], args[1]
			if _, err := startQueue(o.Queue, o.Priority); err != nil {
				return withCode(exitUsage, err)
			}
			if err := checkProgress(o.Progress, o.ProgressInterval); err != nil {
				return withCode(exitUsage, err)
			}
			return runRerun(cmd.Context(), o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	o.Redis.add(f, "Redis URL of the queue and run state (default: "+envRedisURL+")")
	f.StringVar(&o.ResultsDir, "results", "", "results root to find RUN's run.json in when Redis does not know it (default: the pipeline's output.dir, else ./"+pipelines.DefaultOutputDir+")")
	f.BoolVar(&o.Simulate, "simulate", false, "without Redis: run on the in-process simulator")
	f.StringVar(&o.Queue, "queue", worker.DefaultQueue, "asynq queue the workers serve")
	f.StringVar(&o.Priority, "priority", "high", "high (the workers' priority queue, as scheduled runs) or normal")
	f.BoolVar(&o.NoWait, "no-wait", false, "return once the run is enqueued")
	f.StringVar(&o.Progress, "progress", "auto", "auto, bar, lines or none")
	f.DurationVar(&o.ProgressInterval, "progress-interval", 5*time.Second, "time between progress lines when not on a terminal")
	return cmd
}

func runRerun(ctx context.Context, o *rerunOptions, stdout, stderr io.Writer) error {
	lookup := envLookup(o.LookupEnv)
	p, err := pipelines.Load(o.File, lookup)
	if err != nil {
		return loadFailure(err, stderr)
	}
	redisURL, source := o.Redis.resolve(lookup)
	if redisURL == "" {
		args := []string{o.File, "--rerun-of", o.RunID, "--progress", o.Progress, "--progress-interval", o.ProgressInterval.String()}
		if o.Simulate {
			args = append(args, "--simulate")
		}
		if o.ResultsDir != "" {
			args = append(args, "--results", o.ResultsDir)
		}
		return runEmbedded(ctx, args, stdout, stderr)
	}
	if o.Simulate {
		return withCode(exitUsage, errors.New("--simulate is for a re-run without Redis; the workers send a shared Redis's runs"))
	}
	rc, err := connectRedis(ctx, redisURL, source, 4)
	if err != nil {
		return err
	}
	defer rc.Close()
	store := runstore.New(rc.RDB, "")

	orig, name, err := originalRun(ctx, store, o.RunID, o.ResultsDir, p)
	if err != nil {
		return err
	}
	if name != p.Name {
		return withCode(exitUsage, fmt.Errorf("run %s is of pipeline %q, but %s is pipeline %q", o.RunID, name, o.File, p.Name))
	}
	run := orig
	run.ID, err = rerunID(o.RunID, func(id string) (bool, error) { return store.Exists(ctx, id) })
	if err != nil {
		return err
	}
	queue, _ := startQueue(o.Queue, o.Priority)
	q := asynqClient(rc.RDB)
	defer q.Close()
	if err := jobs.StartRun(ctx, q, store, p, run, asynq.Queue(queue)); err != nil {
		return fmt.Errorf("enqueue run %s: %w", run.ID, err)
	}
	window := "no window"
	if !run.WindowStart.IsZero() {
		window = "window [" + run.WindowStart.UTC().Format(time.RFC3339) + ", " + run.WindowEnd.UTC().Format(time.RFC3339) + ")"
	}
	fmt.Fprintf(stderr, "run %s re-runs %s (fire time %s, %s) with %s, on %s (queue %s)\n",
		run.ID, o.RunID, run.Time.UTC().Format(time.RFC3339), window, o.File, rc.Display, queue)
	fmt.Fprintln(stdout, run.ID)
	if o.NoWait {
		return nil
	}
	return waitRun(ctx, store, run.ID, o.Progress, o.ProgressInterval, stdout, stderr)
}

// originalRun returns the run info and pipeline name of an earlier run:
// from Redis while it keeps the run, else from its run.json under the
// results root.
func originalRun(ctx context.Context, store *runstore.Store, runID, root string, p *pipelines.Pipeline) (pipelines.RunInfo, string, error) {
	spec, err := store.Spec(ctx, runID)
	if err == nil {
		return spec.Info, spec.Pipeline.Name, nil
	}
	if !errors.Is(err, runstore.ErrNotFound) {
		return pipelines.RunInfo{}, "", err
	}
	if root == "" {
		root = p.Output.Dir
	}
	if root == "" {
		root = pipelines.DefaultOutputDir
	}
	dir := filepath.Join(root, p.Name, runID)
	r, rerr := results.ReadRun(dir)
	if rerr != nil {
		if errors.Is(rerr, os.ErrNotExist) {
			return pipelines.RunInfo{}, "", fmt.Errorf("run %s not found: not in Redis, and no %s", runID, filepath.Join(dir, results.RunFile))
		}
		return pipelines.RunInfo{}, "", rerr
	}
	info := pipelines.RunInfo{ID: runID, Time: r.StartedAt}
	if r.FireTime != nil {
		info.Time = *r.FireTime
	}
	if r.WindowStart != nil && r.WindowEnd != nil {
		info.WindowStart, info.WindowEnd = *r.WindowStart, *r.WindowEnd
	}
	return info, r.Pipeline, nil
}

// rerunID returns the first free id of the form <run>-rerun<N>; a re-run of
// a re-run counts on from its original.
func rerunID(runID string, taken func(string) (bool, error)) (string, error) {
	base := runID
	if i := strings.LastIndex(runID, "-rerun"); i > 0 {
		if _, err := strconv.Atoi(runID[i+len("-rerun"):]); err == nil {
			base = runID[:i]
		}
	}
	for n := 1; n <= 1000; n++ {
		id := base + "-rerun" + strconv.Itoa(n)
		ok, err := taken(id)
		if err != nil {
			return "", err
		}
		if !ok {
			return id, checkRunID(id)
		}
	}
	return "", fmt.Errorf("run %s has been re-run 1000 times; give up", base)
}
