package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/threadmill/threadmill/internal/runlist"
	"github.com/threadmill/threadmill/pipelines"
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
	var store *runstore.Store
	var rerr error
	if rawURL, source := o.Redis.resolve(envLookup(o.LookupEnv)); rawURL != "" {
		rc, err := connectRedis(ctx, rawURL, source, 2)
		if err != nil {
			rerr = fmt.Errorf("runs in Redis not listed: %w", err)
		} else {
			defer rc.Close()
			store = runstore.New(rc.RDB, "")
		}
	}
	list, ferr, serr := runlist.List(ctx, o.ResultsDir, o.Pipeline, store, now())
	rerr = cmp.Or(rerr, serr)
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

func printRunRows(w io.Writer, rows []*runlist.Row) {
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
		if r.Status == runlist.StatusInterrupted {
			items = fmt.Sprintf("%d journaled", r.Done)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\n", r.ID, r.Pipeline, r.Status, window,
			items, r.Succeeded, r.Failed, r.Skipped, r.Tokens, stamp(r.StartedAt), dur(r.Duration()))
	}
	_ = tw.Flush()
}
