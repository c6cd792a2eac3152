package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/spf13/cobra"

	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/runstore"
	"github.com/threadmill/threadmill/scheduler"
	"github.com/threadmill/threadmill/worker"
)

// backfillOptions are the inputs of `threadmill backfill`.
type backfillOptions struct {
	// Pipeline is a pipeline file, or the name of a pipeline in --pipelines.
	Pipeline  string
	From, To  string
	Pipelines pipelinesDirFlag
	Redis     redisFlags
	Queue     string
	Max       int
	DryRun    bool
	// Now bounds the range (no future fire times); default time.Now.
	Now func() time.Time
	// LookupEnv reads ${VAR} in pipeline files, THREADMILL_PIPELINES and
	// THREADMILL_REDIS_URL; default os.LookupEnv.
	LookupEnv func(string) (string, bool)
}

func (o *backfillOptions) validate() error {
	switch {
	case o.From == "":
		return errors.New("--from is required")
	case o.To == "":
		return errors.New("--to is required")
	case strings.TrimSpace(o.Queue) == "":
		return errors.New("--queue must not be empty")
	case o.Max < 1:
		return fmt.Errorf("--max must be at least 1, got %d", o.Max)
	}
	return nil
}

func newBackfillCmd() *cobra.Command {
	o := &backfillOptions{}
	cmd := &cobra.Command{
		Use:   "backfill PIPELINE --from T --to T",
		Short: "Start one run per fire time of a pipeline's schedule in a time range",
		Long: `Start the runs a pipeline's schedule would have started between --from and
--to (both included): one per fire time, with the same run ids and windows
the scheduler gives them. Running it again, or over fire times the
scheduler already ran, starts nothing twice: existing runs are reported as
such. The workers (` + "`threadmill worker`" + `) do the runs. Backfill ignores
schedule.overlap: every run starts at once, also a fire time the scheduler
skipped because an earlier run was still active.

PIPELINE is a pipeline file, or the name of a pipeline in --pipelines.
--from and --to are RFC 3339 times (2026-03-02T09:00:00+01:00), dates
(2026-03-02, midnight in the pipeline's zone) or "now". Fire times after now
cannot be backfilled. --dry-run lists the fire times without starting
anything (and needs no Redis).

` + redisURLHelp,
		Example: `  threadmill backfill weekly-support-brief --from 2026-03-01 --to 2026-03-31 --pipelines ./pipelines.d
  threadmill backfill examples/weekly-support-brief.yaml --from 2026-01-01 --to now --dry-run`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Pipeline = args[0]
			if err := o.validate(); err != nil {
				return withCode(exitUsage, err)
			}
			return runBackfill(cmd.Context(), o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.From, "from", "", "first time of the range: RFC 3339, a date (YYYY-MM-DD) or now")
	f.StringVar(&o.To, "to", "", "last time of the range: RFC 3339, a date (YYYY-MM-DD) or now")
	o.Pipelines.add(f)
	o.Redis.add(f, "Redis URL of the queue and run state (default: "+envRedisURL+")")
	f.StringVar(&o.Queue, "queue", worker.DefaultQueue, "asynq queue the workers serve")
	f.IntVar(&o.Max, "max", scheduler.DefaultBackfillMax, "refuse a range with more fire times than this")
	f.BoolVar(&o.DryRun, "dry-run", false, "list the fire times and run ids without starting anything")
	return cmd
}

// parseRangeTime reads an RFC 3339 time, a date (midnight in loc) or "now".
func parseRangeTime(s string, loc *time.Location, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "now" {
		return now, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation(time.DateOnly, s, loc); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q is not an RFC 3339 time, a date (YYYY-MM-DD) or now", s)
}

// loadScheduled finds the pipeline named by arg: a file, or a name in dir
// (which came from source: a flag, a variable or the default).
func loadScheduled(arg, dir, source string, lookup func(string) (string, bool), stderr io.Writer) (*scheduler.Entry, error) {
	load := func(path string) (*pipelines.Pipeline, error) { return pipelines.Load(path, lookup) }
	if ext := filepath.Ext(arg); ext == ".yaml" || ext == ".yml" || strings.ContainsRune(arg, os.PathSeparator) {
		p, err := load(arg)
		if err != nil {
			return nil, loadFailure(err, stderr)
		}
		if p.Schedule == nil {
			return nil, fmt.Errorf("%s has no schedule: nothing to backfill", arg)
		}
		return scheduler.EntryOf(p)
	}
	if err := checkPipelinesDir(dir, source); err != nil {
		return nil, err
	}
	snap, err := scheduler.NewDir(dir, load).Scan()
	if err != nil {
		return nil, err
	}
	for _, e := range snap.Entries {
		if e.Name() == arg {
			return e, nil
		}
	}
	for _, path := range snap.Unscheduled {
		if p, err := load(path); err == nil && p.Name == arg {
			return nil, fmt.Errorf("pipeline %q (%s) has no schedule: nothing to backfill", arg, path)
		}
	}
	for _, p := range snap.Problems {
		fmt.Fprintln(stderr, p.Error())
	}
	names := make([]string, 0, len(snap.Entries))
	for _, e := range snap.Entries {
		names = append(names, e.Name())
	}
	known := "none"
	if len(names) > 0 {
		known = strings.Join(names, ", ")
	}
	return nil, fmt.Errorf("no scheduled pipeline %q in %s (scheduled: %s)", arg, dir, known)
}

func runBackfill(ctx context.Context, o *backfillOptions, stdout, stderr io.Writer) error {
	lookup := envLookup(o.LookupEnv)
	nowFn := time.Now
	if o.Now != nil {
		nowFn = o.Now
	}
	now := nowFn()
	dir, source := o.Pipelines.resolve(lookup)
	e, err := loadScheduled(o.Pipeline, dir, source, lookup, stderr)
	if err != nil {
		return err
	}
	loc := e.Schedule.Location()
	from, err := parseRangeTime(o.From, loc, now)
	if err != nil {
		return withCode(exitUsage, fmt.Errorf("--from: %w", err))
	}
	to, err := parseRangeTime(o.To, loc, now)
	if err != nil {
		return withCode(exitUsage, fmt.Errorf("--to: %w", err))
	}
	fires, err := scheduler.BackfillTimes(e.Schedule, from, to, now, o.Max)
	if err != nil {
		return withCode(exitUsage, fmt.Errorf("backfill %s: %w", e.Name(), err))
	}
	if len(fires) == 0 {
		fmt.Fprintf(stdout, "%s (%s, %s) does not fire between %s and %s\n", e.Name(), e.Schedule.Expr(), loc,
			from.In(loc).Format(time.RFC3339), to.In(loc).Format(time.RFC3339))
		return nil
	}
	if o.DryRun {
		for _, f := range fires {
			run := scheduler.RunInfo(e.Name(), e.Schedule, f)
			fmt.Fprintf(stdout, "would start  %s  window [%s, %s)\n", run.ID, run.WindowStart.Format(time.RFC3339), run.WindowEnd.Format(time.RFC3339))
		}
		fmt.Fprintf(stdout, "%s (dry run: nothing started)\n", plural(len(fires), "fire time"))
		return nil
	}
	if e.Pipeline.Workspace.Project == "" {
		return fmt.Errorf("%s names no project: set workspace.project in it, or %s", e.File, envProject)
	}
	redisURL, source, err := o.Redis.required(lookup)
	if err != nil {
		return err
	}
	rc, err := connectRedis(ctx, redisURL, source, 4)
	if err != nil {
		return err
	}
	defer rc.Close()
	store := runstore.New(rc.RDB, "")
	q := asynqClient(rc.RDB)
	defer q.Close()
	created, existed := 0, 0
	err = scheduler.Backfill(ctx, e, from, to, scheduler.BackfillOptions{
		Starter: &scheduler.JobsStarter{Client: q, Store: store, Opts: []asynq.Option{asynq.Queue(o.Queue)}},
		RDB:     rc.RDB,
		Prefix:  store.Prefix(),
		Max:     o.Max,
		Now:     func() time.Time { return now },
	}, func(r scheduler.BackfillRun) {
		verb := "exists "
		if r.Created {
			verb = "started"
			created++
		} else {
			existed++
		}
		fmt.Fprintf(stdout, "%s  %s  window [%s, %s)\n", verb, r.Run.ID, r.Run.WindowStart.Format(time.RFC3339), r.Run.WindowEnd.Format(time.RFC3339))
	})
	fmt.Fprintf(stdout, "%s: %d started, %d existed already (queue %s on %s)\n", plural(created+existed, "run"), created, existed, o.Queue, rc.Display)
	if existed > 0 {
		fmt.Fprintf(stdout, "a run that exists is left as it is: to produce one again for its window with the file as it is now, use threadmill rerun RUN %s; to send only its items that did not succeed, threadmill retry RUN\n", e.File)
	}
	return err
}
