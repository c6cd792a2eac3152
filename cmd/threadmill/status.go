package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hibiken/asynq"
	"github.com/spf13/cobra"

	"github.com/threadmill/threadmill/internal/numfmt"
	"github.com/threadmill/threadmill/runstore"
	"github.com/threadmill/threadmill/worker"
)

// statusOptions are the inputs of `threadmill status`.
type statusOptions struct {
	Redis redisFlags
	RunID string
	JSON  bool
	// Watch follows RunID until it finishes.
	Watch            bool
	Progress         string
	ProgressInterval time.Duration
	Queue            string
	// Now is the clock for elapsed times and ETAs; default time.Now.
	Now       func() time.Time
	LookupEnv func(string) (string, bool)
}

func (o *statusOptions) validate() error {
	if o.Watch && o.RunID == "" {
		return errors.New("--watch needs a RUN")
	}
	if o.Watch && o.JSON {
		return errors.New("--watch and --json do not go together")
	}
	if err := checkProgress(o.Progress, o.ProgressInterval); err != nil {
		return err
	}
	return nil
}

func newStatusCmd() *cobra.Command {
	o := &statusOptions{}
	cmd := &cobra.Command{
		Use:   "status [RUN]",
		Short: "Show the runs on a shared Redis and their progress",
		Long: `Without RUN, list the runs Redis knows (newest first, until their retention
ends) with their progress, and the queue's task counts. With RUN, show that
run: status, window, items by state and step, tokens, retries, elapsed time
and an ETA, the result directory or the error.

--json prints the same as JSON; --watch follows RUN until it finishes and
exits as ` + "`run`" + ` does (0, 3 for failed items, 1 for an error).

` + redisURLHelp,
		Example: `  threadmill status
  threadmill status weekly-support-brief-20260105T090000Z
  threadmill status --watch weekly-support-brief-20260105T090000Z`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				o.RunID = args[0]
			}
			if err := o.validate(); err != nil {
				return withCode(exitUsage, err)
			}
			return runStatus(cmd.Context(), o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	o.Redis.add(f, "Redis URL of the queue and run state (default: "+envRedisURL+")")
	f.BoolVar(&o.JSON, "json", false, "print JSON")
	f.BoolVar(&o.Watch, "watch", false, "follow RUN until it finishes")
	f.StringVar(&o.Progress, "progress", "auto", "with --watch: auto, bar, lines or none")
	f.DurationVar(&o.ProgressInterval, "progress-interval", 5*time.Second, "with --watch: time between progress lines when not on a terminal")
	f.StringVar(&o.Queue, "queue", worker.DefaultQueue, "asynq queue whose task counts to show")
	return cmd
}

// runStatus prints one run or all of them.
func runStatus(ctx context.Context, o *statusOptions, stdout, stderr io.Writer) error {
	lookup := envLookup(o.LookupEnv)
	now := o.Now
	if now == nil {
		now = time.Now
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

	if o.RunID == "" {
		runs, err := store.Runs(ctx)
		if err != nil {
			return err
		}
		queue := queueCounts(rc, o.Queue)
		priority := queueCounts(rc, worker.PriorityQueue(o.Queue))
		pause := apiPause(ctx, store, stderr)
		if o.JSON {
			return writeJSON(stdout, struct {
				Runs          []runView            `json:"runs"`
				Queue         *queueView           `json:"queue,omitempty"`
				PriorityQueue *queueView           `json:"priority_queue,omitempty"`
				Pause         *runstore.PauseState `json:"api_pause,omitempty"`
			}{views(runs, now()), queue, priority, pause})
		}
		printRuns(stdout, runs, now())
		if pause != nil {
			fmt.Fprintf(stdout, "\n%s\n", pauseLine(pause))
		}
		if queue != nil || priority != nil {
			fmt.Fprintln(stdout)
		}
		for _, q := range []*queueView{priority, queue} {
			if q != nil {
				fmt.Fprintf(stdout, "queue %s: %d pending, %d active, %d scheduled, %d retry, %d archived; %d completed today\n",
					q.Name, q.Pending, q.Active, q.Scheduled, q.Retry, q.Archived, q.ProcessedToday)
			}
		}
		return nil
	}

	st, err := store.Run(ctx, o.RunID)
	if errors.Is(err, runstore.ErrNotFound) {
		return fmt.Errorf("run %s not found on %s (never enqueued there, or expired)", o.RunID, rc.Display)
	}
	if err != nil {
		return err
	}
	if o.Watch {
		rep := newReporter(stderr, o.Progress, o.ProgressInterval, o.RunID)
		if st, err = follow(ctx, store, o.RunID, rep, nil); err != nil {
			return err
		}
		return finished(stdout, st)
	}
	v := view(*st, now())
	if !st.Finished() {
		v.Pause = apiPause(ctx, store, stderr)
	}
	if o.JSON {
		return writeJSON(stdout, v)
	}
	printRun(stdout, st, now())
	if v.Pause != nil {
		fmt.Fprintf(stdout, "\n%s\n", pauseLine(v.Pause))
	}
	return nil
}

// apiPause returns the fleet-wide pause the API asked for, or nil when
// there is none or it cannot be read (a warning goes to stderr).
func apiPause(ctx context.Context, store *runstore.Store, stderr io.Writer) *runstore.PauseState {
	p, err := store.PauseInfo(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "warning: %v\n", err)
		return nil
	}
	return p
}

// pauseLine describes the fleet-wide pause: "paused by the API until
// 15:04:05 (429, Retry-After 86400s capped to 2m0s)".
func pauseLine(p *runstore.PauseState) string {
	s := "paused by the API until " + p.Until.Format(time.TimeOnly)
	var why []string
	if p.Status != 0 {
		why = append(why, strconv.Itoa(p.Status))
	}
	switch {
	case p.Capped():
		why = append(why, fmt.Sprintf("Retry-After %s capped to %s", secs(p.Asked), p.Granted))
	case p.Asked > 0:
		why = append(why, "Retry-After "+secs(p.Asked))
	}
	if len(why) > 0 {
		s += " (" + strings.Join(why, ", ") + ")"
	}
	return s + "; every worker waits"
}

// secs prints a Retry-After as the server sends it, in seconds.
func secs(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "s"
}

// runView is a run's state with the figures status derives from it.
type runView struct {
	runstore.RunState
	ElapsedMS int64 `json:"elapsed_ms,omitempty"`
	// ETAMS estimates the time left for the planned items, from the rate
	// so far; absent when there is no rate yet or the run is over.
	ETAMS int64 `json:"eta_ms,omitempty"`
	// Pause is the fleet-wide pause the API asked for, while the run runs.
	Pause *runstore.PauseState `json:"api_pause,omitempty"`
}

func view(st runstore.RunState, now time.Time) runView {
	v := runView{RunState: st}
	el, eta := st.Timing(now)
	v.ElapsedMS, v.ETAMS = el.Milliseconds(), eta.Milliseconds()
	return v
}

func views(runs []runstore.RunState, now time.Time) []runView {
	out := make([]runView, len(runs))
	for i, r := range runs {
		out[i] = view(r, now)
	}
	return out
}

func printRuns(w io.Writer, runs []runstore.RunState, now time.Time) {
	if len(runs) == 0 {
		fmt.Fprintln(w, "no runs")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RUN\tPIPELINE\tSTATUS\tITEMS\tFAILED\tSKIPPED\tTOKENS\tSTARTED\tELAPSED\tETA")
	for i := range runs {
		r := &runs[i]
		el, eta := r.Timing(now)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%d\t%d\t%d\t%s\t%s\t%s\n", r.ID, r.Pipeline, r.Status,
			r.Done, r.Total, r.Failed, r.Skipped, r.Usage.Total(), stamp(r.StartedAt), dur(el), dur(eta))
	}
	_ = tw.Flush()
}

func printRun(w io.Writer, st *runstore.RunState, now time.Time) {
	el, eta := st.Timing(now)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, f string, a ...any) { fmt.Fprintf(tw, "%s\t%s\n", k, fmt.Sprintf(f, a...)) }
	row("run", "%s", st.ID)
	row("pipeline", "%s", st.Pipeline)
	row("status", "%s", st.Status)
	if st.WaitingFor != "" {
		row("waiting for", "%s to end (schedule.overlap: queue)", st.WaitingFor)
	}
	if st.StopReason != "" {
		row("stopped", "%s", st.StopReason)
	}
	if st.Error != "" {
		row("error", "%s", st.Error)
	}
	if !st.Info.WindowStart.IsZero() {
		row("window", "%s to %s", st.Info.WindowStart.Format(time.RFC3339), st.Info.WindowEnd.Format(time.RFC3339))
	}
	row("created", "%s", stamp(st.CreatedAt))
	if !st.StartedAt.IsZero() {
		row("started", "%s (%s ago)", stamp(st.StartedAt), dur(now.Sub(st.StartedAt)))
	}
	if !st.FinishedAt.IsZero() {
		row("finished", "%s, took %s", stamp(st.FinishedAt), dur(el))
	} else if el > 0 {
		eline := dur(eta)
		if eta > 0 && hasUnplanned(st) {
			eline += " for the planned items; later steps not planned yet"
		}
		row("elapsed", "%s, ETA %s", dur(el), eline)
	}
	canceled := ""
	if st.Canceled > 0 {
		canceled = fmt.Sprintf(", %d canceled", st.Canceled)
	}
	row("items", "%d/%d done: %d succeeded, %d failed, %d skipped%s; %d retries", st.Done, st.Total, st.Succeeded, st.Failed, st.Skipped, canceled, st.Retries)
	row("tokens", "%d (%d in, %d out)", st.Usage.Total(), int64(st.Usage.InputTokens), int64(st.Usage.OutputTokens))
	if st.ResultDir != "" {
		row("results", "%s", st.ResultDir)
	}
	_ = tw.Flush()

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tITEMS\tSUCCEEDED\tFAILED\tSKIPPED\tTOKENS")
	for _, s := range st.Steps {
		items := "not planned"
		if s.Planned {
			items = fmt.Sprintf("%d/%d", s.Done, s.Total)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\n", s.ID, items, s.Succeeded, s.Failed, s.Skipped, s.Usage.Total())
	}
	_ = tw.Flush()
}

func hasUnplanned(st *runstore.RunState) bool {
	for _, s := range st.Steps {
		if !s.Planned {
			return true
		}
	}
	return false
}

// queueView is the asynq queue's task counts.
type queueView struct {
	Name           string `json:"name"`
	Pending        int    `json:"pending"`
	Active         int    `json:"active"`
	Scheduled      int    `json:"scheduled"`
	Retry          int    `json:"retry"`
	Archived       int    `json:"archived"`
	ProcessedToday int    `json:"processed_today"`
}

// queueCounts reads the queue's counts; nil when the queue does not exist yet.
func queueCounts(rc *redisConn, queue string) *queueView {
	insp := asynq.NewInspectorFromRedisClient(rc.RDB)
	info, err := insp.GetQueueInfo(queue)
	if err != nil {
		return nil
	}
	return &queueView{Name: queue, Pending: info.Pending, Active: info.Active, Scheduled: info.Scheduled,
		Retry: info.Retry, Archived: info.Archived, ProcessedToday: info.Processed}
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func stamp(t time.Time) string { return numfmt.Stamp(t) }

func dur(d time.Duration) string { return numfmt.Duration(d) }
