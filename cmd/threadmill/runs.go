package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/results"
	"github.com/threadmill/threadmill/runstore"
)

// runsOptions are the inputs of `threadmill runs`.
type runsOptions struct {
	Pipeline   string
	ResultsDir string
	Redis      redisFlags
	JSON       bool
	// Now is the clock for the durations of running runs; default time.Now.
	Now       func() time.Time
	LookupEnv func(string) (string, bool)
}

func newRunsCmd() *cobra.Command {
	o := &runsOptions{}
	cmd := &cobra.Command{
		Use:   "runs [PIPELINE]",
		Short: "List past and current runs, newest first",
		Long: `List runs, newest first: id, pipeline, status, window, items by state,
tokens, start and duration. Runs come from the results root always (so runs
made by the embedded ` + "`run`" + ` appear, and runs interrupted before their
files were written show as "interrupted" with the items their journal holds),
and from Redis when one is given (--redis or ` + envRedisURL + `), where runs in
flight and runs finalized on other machines live until their retention ends.

PIPELINE lists one pipeline's runs. --json prints the same as a JSON array.
A pipeline whose output.dir is not the default writes elsewhere: give that
directory with --results.

` + redisURLHelp,
		Example: `  threadmill runs
  threadmill runs weekly-support-brief --results /srv/threadmill/results
  threadmill runs --redis redis://localhost:6379 --json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				o.Pipeline = args[0]
			}
			return runRuns(cmd.Context(), o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.ResultsDir, "results", pipelines.DefaultOutputDir, "results root to read")
	o.Redis.add(f, "Redis URL whose runs to list too (default: "+envRedisURL+"; none: the results root only)")
	f.BoolVar(&o.JSON, "json", false, "print JSON")
	return cmd
}

// runRow is one run as `runs` shows it, whichever source it came from.
type runRow struct {
	ID       string `json:"id"`
	Pipeline string `json:"pipeline"`
	// Status is the run's status; "interrupted" for a journal without a
	// run directory.
	Status      string     `json:"status"`
	WindowStart *time.Time `json:"window_start,omitempty"`
	WindowEnd   *time.Time `json:"window_end,omitempty"`
	// Total is the number of items planned; Done those finished.
	Total     int       `json:"total"`
	Done      int       `json:"done"`
	Succeeded int       `json:"succeeded"`
	Failed    int       `json:"failed"`
	Skipped   int       `json:"skipped"`
	Canceled  int       `json:"canceled"`
	Tokens    int64     `json:"tokens"`
	StartedAt time.Time `json:"started_at,omitzero"`
	// DurationMS is the run's duration, or the time it has run so far.
	DurationMS int64 `json:"duration_ms,omitempty"`
	// Dir is the committed run directory, Journal the journal of an
	// interrupted run.
	Dir     string `json:"dir,omitempty"`
	Journal string `json:"journal,omitempty"`
	// Sources says where the run was found: "redis", "results" or both.
	Sources []string `json:"sources"`
}

// statusInterrupted is the status `runs` gives a run that left only its
// journal.
const statusInterrupted = "interrupted"

func runRuns(ctx context.Context, o *runsOptions, stdout, stderr io.Writer) error {
	now := o.Now
	if now == nil {
		now = time.Now
	}
	if o.Pipeline != "" {
		if strings.ContainsAny(o.Pipeline, "/\\\x00") || strings.HasPrefix(o.Pipeline, ".") {
			return withCode(exitUsage, fmt.Errorf("PIPELINE %q is not a pipeline name", o.Pipeline))
		}
	}
	rows := map[string]*runRow{}
	entries, ferr := results.ListRuns(o.ResultsDir, o.Pipeline)
	for i := range entries {
		r := rowFromEntry(&entries[i])
		rows[r.Pipeline+"/"+r.ID] = r
	}
	var rerr error
	if rawURL, source := o.Redis.resolve(envLookup(o.LookupEnv)); rawURL != "" {
		rerr = addRedisRuns(ctx, rawURL, source, o.Pipeline, rows, now())
	}
	list := make([]*runRow, 0, len(rows))
	for _, r := range rows {
		list = append(list, r)
	}
	slices.SortFunc(list, func(a, b *runRow) int {
		return cmp.Or(b.StartedAt.Compare(a.StartedAt), strings.Compare(b.ID, a.ID))
	})
	if o.JSON {
		if err := writeJSON(stdout, list); err != nil {
			return err
		}
	} else {
		printRunRows(stdout, list)
	}
	if ferr != nil {
		fmt.Fprintf(stderr, "threadmill: some run directories could not be read: %v\n", ferr)
	}
	return rerr
}

// addRedisRuns merges the runs Redis knows into rows: Redis has the live
// state of runs in flight; a run also on disk keeps its directory.
func addRedisRuns(ctx context.Context, rawURL, source, pipeline string, rows map[string]*runRow, now time.Time) error {
	rc, err := connectRedis(ctx, rawURL, source, 2)
	if err != nil {
		return fmt.Errorf("runs in Redis not listed: %w", err)
	}
	defer rc.Close()
	states, err := runstore.New(rc.RDB, "").Runs(ctx)
	if err != nil {
		return fmt.Errorf("runs in Redis not listed: %w", err)
	}
	for i := range states {
		st := &states[i]
		if pipeline != "" && st.Pipeline != pipeline {
			continue
		}
		r := rowFromState(st, now)
		if old, ok := rows[r.Pipeline+"/"+r.ID]; ok {
			r.Dir, r.Journal = cmp.Or(r.Dir, old.Dir), old.Journal
			r.Sources = append(r.Sources, old.Sources...)
		}
		rows[r.Pipeline+"/"+r.ID] = r
	}
	return nil
}

func rowFromEntry(e *results.Entry) *runRow {
	r := &runRow{ID: e.RunID, Pipeline: e.Pipeline, Sources: []string{"results"}}
	if e.Interrupted() {
		r.Status, r.Journal, r.Done = statusInterrupted, e.Journal, e.JournalItems
		r.StartedAt = e.Modified
		return r
	}
	run := e.Run
	r.Status, r.Dir = run.Status, e.Dir
	r.WindowStart, r.WindowEnd = run.WindowStart, run.WindowEnd
	r.Total = run.Total
	r.Succeeded = run.Counts[results.StateSucceeded]
	r.Failed = run.Counts[results.StateFailed]
	r.Skipped = run.Counts[results.StateSkipped]
	r.Canceled = run.Counts[results.StateCanceled]
	r.Done = r.Succeeded + r.Failed + r.Skipped + r.Canceled
	r.Tokens = run.Usage.Total()
	r.StartedAt = run.StartedAt
	r.DurationMS = run.Duration().Milliseconds()
	return r
}

func rowFromState(st *runstore.RunState, now time.Time) *runRow {
	r := &runRow{ID: st.ID, Pipeline: st.Pipeline, Status: st.Status, Dir: st.ResultDir,
		Total: st.Total, Done: st.Done, Succeeded: st.Succeeded, Failed: st.Failed, Skipped: st.Skipped, Canceled: st.Canceled,
		Tokens: st.Usage.Total(), StartedAt: st.StartedAt, Sources: []string{"redis"}}
	if r.StartedAt.IsZero() {
		r.StartedAt = st.CreatedAt
	}
	if !st.Info.WindowStart.IsZero() {
		ws, we := st.Info.WindowStart, st.Info.WindowEnd
		r.WindowStart, r.WindowEnd = &ws, &we
	}
	el, _ := timing(st, now)
	r.DurationMS = el.Milliseconds()
	return r
}

func printRunRows(w io.Writer, rows []*runRow) {
	if len(rows) == 0 {
		fmt.Fprintln(w, "no runs")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RUN\tPIPELINE\tSTATUS\tWINDOW\tITEMS\tSUCCEEDED\tFAILED\tSKIPPED\tTOKENS\tSTARTED\tDURATION")
	for _, r := range rows {
		window := "-"
		if r.WindowStart != nil && r.WindowEnd != nil {
			window = r.WindowStart.UTC().Format("2006-01-02") + ".." + r.WindowEnd.UTC().Format("2006-01-02")
		}
		items := fmt.Sprintf("%d/%d", r.Done, r.Total)
		if r.Status == statusInterrupted {
			items = fmt.Sprintf("%d journaled", r.Done)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\n", r.ID, r.Pipeline, r.Status, window,
			items, r.Succeeded, r.Failed, r.Skipped, r.Tokens, stamp(r.StartedAt), dur(time.Duration(r.DurationMS)*time.Millisecond))
	}
	_ = tw.Flush()
}
