package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/threadmill/threadmill/internal/numfmt"
	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/reuse"
	"github.com/threadmill/threadmill/scheduler"
)

// planOptions are the inputs of `threadmill plan`.
type planOptions struct {
	File     string
	Simulate bool
	JSON     bool
	// At picks the run: the last scheduled fire time at or before At for a
	// scheduled pipeline, else a manual run at At. Zero means now.
	At    time.Time
	RunID string
	// Redis, when set (or THREADMILL_REDIS_URL), is where the outputs
	// reuse: unchanged takes are looked up; else under the results root
	// (ResultsDir, else output.dir), as embedded runs keep them.
	Redis      redisFlags
	ResultsDir string
	// NoReuse plans every item to be sent.
	NoReuse bool
	// LookupEnv reads ${VAR} and WORKSPACE_*; default os.LookupEnv.
	LookupEnv func(string) (string, bool)
}

func newPlanCmd() *cobra.Command {
	var (
		opts planOptions
		at   string
	)
	cmd := &cobra.Command{
		Use:   "plan FILE",
		Short: "Resolve a pipeline's artifact sets and list the work items of each step with token estimates",
		Long: `Load and check a pipeline, resolve its artifact sets against the Workspace
(or an in-process simulator with --simulate), and list the work items of
every step with their token estimates, as a table or as JSON. Nothing is
sent to the model.

The run planned is the one ` + "`run`" + ` and ` + "`enqueue`" + ` would start now: for a
scheduled pipeline, the latest completed fire time (the last one at or before
--at, default now: the one the scheduler fired most recently) with its window
[previous fire time, fire time), never a window that ends in the future; a
pipeline without a schedule is planned as a manual run at --at, which has no
window. Its id is <pipeline>-<UTC time now>, as ` + "`run`" + ` names it, unless
--run-id gives one.

Steps that read earlier steps' outputs are planned with placeholders for
those outputs ("[output of <item key>]"); their estimates exclude the real
outputs, whose upper bound (items × max_tokens of the needed steps) is shown
beside them and included in the total.

Token estimates: one token per four bytes of text (system and prompts), each
turn re-reading the thread so far, plus max_tokens per turn for the answer,
plus the artifacts sent as context (CONTEXT): one token per four bytes of
each artifact's size as the Workspace reports it (a Document's
props.content_length), on every turn, at most 128,000 a turn. An artifact
without a reported size is counted at 2,000 tokens; such items are marked
with * and the artifacts listed. The budget (limits.max_total_tokens)
reserves the same estimate per item, and run.json compares it to the usage
per step (steps[].estimate).

` + workspaceEnvHelp,
		Example: `  threadmill plan --simulate examples/bulk-summarize.yaml
  threadmill plan --json examples/weekly-support-brief.yaml`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.File = args[0]
			var err error
			if opts.At, err = atFlag(at); err != nil {
				return err
			}
			return runPlan(cmd.Context(), opts, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.BoolVar(&opts.Simulate, "simulate", false, "resolve against an in-process simulator serving the example corpus")
	f.BoolVar(&opts.JSON, "json", false, "print the plan as JSON")
	f.StringVar(&at, "at", "", "plan the run as of this time (a scheduled pipeline: its last fire time at or before it): RFC 3339 (2026-06-15T09:00:00+02:00) or a date (2026-06-15, UTC); default now")
	opts.Redis.add(f, "Redis URL whose kept outputs steps with reuse: unchanged take (default: "+envRedisURL+", else the results root)")
	f.StringVar(&opts.ResultsDir, "results", "", "results root whose kept outputs steps with reuse: unchanged take (default: the pipeline's output.dir)")
	f.BoolVar(&opts.NoReuse, "no-reuse", false, "plan every item to be sent, as run --no-reuse does")
	f.StringVar(&opts.RunID, "run-id", "", "the run id templates see as .Run.ID (default <pipeline>-<UTC time now>, as run names it)")
	return cmd
}

// atFlag reads the --at flag of plan, run and enqueue: the zero time when it
// is empty, else parseAt's time; a bad value is a usage error.
func atFlag(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := parseAt(s)
	if err != nil {
		return t, withCode(exitUsage, fmt.Errorf("--at: %w", err))
	}
	return t, nil
}

// parseAt reads an RFC 3339 time or a date.
func parseAt(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q is not an RFC 3339 time or a date (YYYY-MM-DD)", s)
}

// planRun returns the run that `plan`, `run` and `enqueue` start at time now
// (the zero time: time.Now()).
//
// A scheduled pipeline covers the window of its latest completed fire time:
// the last fire time at or before at (default now), the one the scheduler
// fired most recently, whose window [previous fire time, fire time) has
// ended. A run never covers a window that ends in the future. A pipeline
// without a schedule is a manual run at at, with no window.
//
// Either way the run id is adHocRunID(pipeline, now) unless runID gives one:
// an ad-hoc run is not the scheduler's run of that fire time
// (<pipeline>@<fire time>), which may exist too.
func planRun(p *pipelines.Pipeline, at, now time.Time, runID string) (pipelines.RunInfo, error) {
	if now.IsZero() {
		now = time.Now()
	}
	if at.IsZero() {
		at = now
	}
	var run pipelines.RunInfo
	if p.Schedule != nil {
		s, err := scheduler.ScheduleOf(p)
		if err != nil {
			return run, err
		}
		fire := s.Floor(at)
		if fire.IsZero() {
			return run, fmt.Errorf("schedule %q of %s never fired before %s: pick a later --at", p.Schedule.Cron, p.Name, at.Format(time.RFC3339))
		}
		run = scheduler.RunInfo(p.Name, s, fire)
	} else {
		run = pipelines.RunInfo{Time: at.UTC().Truncate(time.Second)}
	}
	run.ID = cmp.Or(runID, adHocRunID(p.Name, now))
	return run, nil
}

// adHocRunID is the id of a run started by hand (run, enqueue) at now:
// <pipeline>-<UTC time>, for example brief-20261202T101500Z. freshRunID adds
// a -2, -3, ... suffix when it is taken.
func adHocRunID(pipeline string, now time.Time) string {
	return pipeline + "-" + now.UTC().Format(runIDTime)
}

// stepPlan is one step of a printed plan.
type stepPlan struct {
	ID    string           `json:"id"`
	Items []pipelines.Item `json:"items"`
	// EstimatedTokens sums the items' estimates.
	EstimatedTokens int64 `json:"estimated_tokens"`
	// PriorOutputBound is the most tokens the outputs of the needed steps can
	// add to the step's prompts (items × max_tokens), not in EstimatedTokens.
	PriorOutputBound int64 `json:"prior_output_bound,omitempty"`
	// ReusedFrom maps the keys of the items that take an earlier run's
	// output (reuse: unchanged) to that run; Reused counts them, ToSend
	// counts the others, and TokensSaved sums the reused items' estimates.
	ReusedFrom  map[string]string `json:"reused_from,omitempty"`
	Reused      int               `json:"reused,omitempty"`
	ToSend      int               `json:"to_send"`
	TokensSaved int64             `json:"tokens_saved,omitempty"`
	// ReuseUnknown is true for a reuse: unchanged step that reads the
	// outputs of steps with items to send: whether it is reused is known
	// only once they are answered.
	ReuseUnknown bool `json:"reuse_unknown,omitempty"`
}

// planReport is what `plan --json` prints.
type planReport struct {
	Pipeline string                 `json:"pipeline"`
	File     string                 `json:"file"`
	Project  string                 `json:"project"`
	Run      pipelines.RunInfo      `json:"run"`
	Sets     map[string]planSetInfo `json:"sets"`
	Steps    []stepPlan             `json:"steps"`
	// TotalItems and TotalEstimatedTokens cover every step; the total
	// includes the prior output bounds.
	TotalItems           int   `json:"total_items"`
	TotalEstimatedTokens int64 `json:"total_estimated_tokens"`
	// TotalReused counts the items that take an earlier run's output;
	// TotalTokensSaved sums their estimates (not in the total above).
	TotalReused      int   `json:"total_reused,omitempty"`
	TotalTokensSaved int64 `json:"total_tokens_saved,omitempty"`
	// NoReuse is plan --no-reuse: every item is planned to be sent.
	NoReuse bool `json:"no_reuse,omitempty"`
}

// planSetInfo is a resolved set: its artifacts, or all_artifacts.
type planSetInfo struct {
	AllArtifacts bool                    `json:"all_artifacts,omitempty"`
	Artifacts    []pipelines.ArtifactRef `json:"artifacts,omitempty"`
}

// runPlan loads, resolves and plans a pipeline and prints the plan.
func runPlan(ctx context.Context, opts planOptions, stdout, stderr io.Writer) error {
	lookup := envLookup(opts.LookupEnv)
	p, err := pipelines.Load(opts.File, lookup)
	if err != nil {
		return loadFailure(err, stderr)
	}
	run, err := planRun(p, opts.At, time.Time{}, opts.RunID)
	if err != nil {
		return err
	}
	conn, err := connectWorkspace(ctx, lookup, opts.Simulate, p.Workspace.Project, nil)
	if err != nil {
		return err
	}
	defer conn.Close()
	p.Workspace.Project = conn.ProjectID
	if err := conn.dateCorpus(run); err != nil {
		return err
	}

	sets, err := pipelines.Resolve(ctx, conn.Client, p, run)
	if err != nil {
		return err
	}
	kept, closeReuse, err := planReuse(ctx, opts, p, lookup)
	if err != nil {
		return err
	}
	defer closeReuse()
	rep, err := buildPlan(ctx, p, run, sets, kept)
	if err != nil {
		return err
	}
	rep.NoReuse = opts.NoReuse
	if opts.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return printPlan(stdout, p, rep)
}

// loadFailure prints a load error's problems, one per line, and returns
// the error the command exits with.
func loadFailure(err error, stderr io.Writer) error {
	var list pipelines.ErrorList
	if !errors.As(err, &list) {
		return err
	}
	for _, e := range list {
		fmt.Fprintln(stderr, e.Error())
	}
	file := ""
	if len(list) > 0 {
		file = list[0].File
	}
	return withCode(exitFailure, fmt.Errorf("%s is invalid (%s)", file, plural(len(list), "problem")))
}

// reuseLookup finds kept outputs by reuse key; nil: reuse is off.
type reuseLookup func(ctx context.Context, keys []string) (map[string]reuse.Entry, error)

// planReuse returns how plan looks up kept outputs: in Redis when one is
// configured, else under the results root; nil with --no-reuse or when no
// step has reuse: unchanged.
func planReuse(ctx context.Context, opts planOptions, p *pipelines.Pipeline, lookup func(string) (string, bool)) (reuseLookup, func(), error) {
	uses := slices.ContainsFunc(p.Steps, func(s pipelines.Step) bool { return s.Reuse == pipelines.ReuseUnchanged })
	if opts.NoReuse || !uses {
		return nil, func() {}, nil
	}
	var store reuse.Store
	closeFn := func() {}
	if url, source := opts.Redis.resolve(lookup); url != "" {
		rc, err := connectRedis(ctx, url, source, 2)
		if err != nil {
			return nil, nil, err
		}
		store, closeFn = reuse.NewRedis(rc.RDB, "", 0), func() { _ = rc.Close() }
	} else {
		store = reuse.NewDir(cmp.Or(opts.ResultsDir, p.Output.Dir, pipelines.DefaultOutputDir), 0)
	}
	return func(ctx context.Context, keys []string) (map[string]reuse.Entry, error) {
		return store.Lookup(ctx, p.Name, keys)
	}, closeFn, nil
}

// buildPlan plans every step in file order. Steps that need earlier ones
// get placeholder outputs, or the kept outputs when every item of the
// needed step is reused (then their own reuse is known too).
func buildPlan(ctx context.Context, p *pipelines.Pipeline, run pipelines.RunInfo, sets map[string][]pipelines.ArtifactRef, lookup reuseLookup) (*planReport, error) {
	rep := &planReport{Pipeline: p.Name, File: p.File, Project: p.Workspace.Project, Run: run, Sets: map[string]planSetInfo{}}
	for name, refs := range sets {
		if refs == nil && p.Artifacts[name].UsesAllArtifacts() {
			rep.Sets[name] = planSetInfo{AllArtifacts: true}
			continue
		}
		rep.Sets[name] = planSetInfo{Artifacts: refs}
	}
	prior := map[string]pipelines.StepOutput{}
	known := map[string]bool{} // steps whose outputs are all known (reused)
	counts := map[string]int{}
	for _, s := range p.Steps {
		items, err := pipelines.Plan(p, s.ID, run, sets, prior)
		if err != nil {
			return nil, err
		}
		sp := stepPlan{ID: s.ID, Items: items, ToSend: len(items)}
		for _, it := range items {
			sp.EstimatedTokens += it.EstimatedTokens
		}
		var bound int64
		for _, n := range s.Needs {
			ns, _ := p.StepByID(n)
			bound += int64(counts[n]) * int64(ns.MaxTokens)
		}
		inputsKnown := !slices.ContainsFunc(s.Needs, func(n string) bool { return !known[n] })
		found := map[string]reuse.Entry{}
		if lookup != nil && s.Reuse == pipelines.ReuseUnchanged {
			if !inputsKnown {
				sp.ReuseUnknown = true
			} else if found, err = lookupItems(ctx, lookup, items); err != nil {
				return nil, err
			}
		}
		if len(s.Needs) > 0 && inputsKnown {
			bound = 0 // the prompts hold the real outputs
		}
		sp.PriorOutputBound = bound * int64(len(items))
		var so pipelines.StepOutput
		for _, it := range items {
			out := "[output of " + it.Key + "]"
			if e, ok := found[it.ReuseKey]; ok && it.ReuseKey != "" {
				if sp.ReusedFrom == nil {
					sp.ReusedFrom = map[string]string{}
				}
				sp.ReusedFrom[it.Key] = e.RunID
				sp.Reused++
				sp.TokensSaved += it.EstimatedTokens
				out = e.Output
			}
			so.Items = append(so.Items, pipelines.ItemOutput{Artifact: it.Artifact, Output: out,
				JSON: pipelines.PlaceholderJSON(&s, it.Key)})
		}
		sp.ToSend = len(items) - sp.Reused
		known[s.ID] = len(items) > 0 && sp.Reused == len(items)
		if len(items) == 1 {
			so.Output = so.Items[0].Output
		}
		prior[s.ID] = so
		rep.Steps = append(rep.Steps, sp)
		rep.TotalItems += len(items)
		rep.TotalReused += sp.Reused
		rep.TotalTokensSaved += sp.TokensSaved
		rep.TotalEstimatedTokens += sp.EstimatedTokens - sp.TokensSaved + sp.PriorOutputBound
		counts[s.ID] = len(items)
	}
	return rep, nil
}

// lookupItems looks up the kept outputs of the items that have a reuse key.
func lookupItems(ctx context.Context, lookup reuseLookup, items []pipelines.Item) (map[string]reuse.Entry, error) {
	var keys []string
	for _, it := range items {
		if it.ReuseKey != "" {
			keys = append(keys, it.ReuseKey)
		}
	}
	if len(keys) == 0 {
		return map[string]reuse.Entry{}, nil
	}
	found, err := lookup(ctx, keys)
	if err != nil {
		return nil, fmt.Errorf("look up kept outputs: %w", err)
	}
	return found, nil
}

// printPlan prints the plan as tables.
func printPlan(w io.Writer, p *pipelines.Pipeline, rep *planReport) error {
	bw := &errWriter{w: w}
	loc := p.Location()
	bw.printf("pipeline %s (%s)\n", rep.Pipeline, rep.File)
	bw.printf("project  %s\n", rep.Project)
	bw.printf("run      %s at %s\n", rep.Run.ID, rep.Run.Time.In(loc).Format(time.RFC3339))
	if !rep.Run.WindowStart.IsZero() {
		bw.printf("window   %s to %s\n", rep.Run.WindowStart.In(loc).Format(time.RFC3339), rep.Run.WindowEnd.In(loc).Format(time.RFC3339))
	}
	if len(rep.Sets) > 0 {
		bw.printf("\nartifact sets\n")
		names := make([]string, 0, len(rep.Sets))
		for n := range rep.Sets {
			names = append(names, n)
		}
		slices.Sort(names)
		tw := tabwriter.NewWriter(bw, 2, 4, 2, ' ', 0)
		for _, n := range names {
			si := rep.Sets[n]
			if si.AllArtifacts {
				fmt.Fprintf(tw, "  %s\tevery artifact of the project (all_artifacts: true)\n", n)
				continue
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", n, plural(len(si.Artifacts), "artifact"), p.Artifacts[n].Describe())
		}
		tw.Flush()
	}
	var unsized []string
	for _, sp := range rep.Steps {
		s, _ := p.StepByID(sp.ID)
		bw.printf("\nstep %s: %s, %s, ~%s tokens", sp.ID, stepShape(s), plural(len(sp.Items), "item"), numfmt.Thousands(sp.EstimatedTokens))
		if sp.PriorOutputBound > 0 {
			bw.printf(" + up to %s from the outputs of %s", numfmt.Thousands(sp.PriorOutputBound), strings.Join(s.Needs, ", "))
		}
		bw.printf("\n")
		switch {
		case s.Reuse == pipelines.ReuseUnchanged && rep.NoReuse:
			bw.printf("  reuse: off (--no-reuse); %d to send\n", sp.ToSend)
		case sp.ReuseUnknown:
			bw.printf("  reuse: decided when the step starts (it reads outputs still to be sent)\n")
		case sp.ReusedFrom != nil:
			bw.printf("  reuse: %s unchanged since an earlier run, %d to send; ~%s tokens saved\n",
				plural(sp.Reused, "item"), sp.ToSend, numfmt.Thousands(sp.TokensSaved))
		case s.Reuse == pipelines.ReuseUnchanged:
			bw.printf("  reuse: no kept output matches; %d to send\n", sp.ToSend)
		}
		tw := tabwriter.NewWriter(bw, 2, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "  %3s\tKEY\tARTIFACT\t%5s\t%8s\t%8s\n", "#", "TURNS", "CONTEXT", "TOKENS")
		for _, it := range sp.Items {
			art := "-"
			switch {
			case it.Artifact != nil && it.Artifact.Folder != "":
				art = it.Artifact.Folder + "/" + it.Artifact.Name
			case it.Artifact != nil:
				art = it.Artifact.Name
			case it.AllArtifacts:
				art = "(all artifacts)"
			case len(it.ArtifactIDs) > 0:
				art = fmt.Sprintf("(%s)", plural(len(it.ArtifactIDs), "artifact"))
			}
			ctx := numfmt.Thousands(it.ContextTokens)
			if len(it.Unsized) > 0 {
				ctx += "*"
				for _, id := range it.Unsized {
					if !slices.Contains(unsized, id) {
						unsized = append(unsized, id)
					}
				}
			}
			tokens := numfmt.Thousands(it.EstimatedTokens)
			if from, ok := sp.ReusedFrom[it.Key]; ok {
				tokens = "reused from " + from
			}
			fmt.Fprintf(tw, "  %3d\t%s\t%s\t%5d\t%8s\t%8s\n", it.Index+1, it.Key, art, len(it.Requests), ctx, tokens)
		}
		tw.Flush()
	}
	if len(unsized) > 0 {
		bw.printf("\n* estimated without a size: the Workspace reports none for %s (%s), each counted at %s tokens a turn\n",
			plural(len(unsized), "artifact"), strings.Join(unsized, ", "), numfmt.Thousands(pipelines.UnsizedArtifactTokens))
	}
	bw.printf("\ntotal: %s, ~%s tokens (estimate; limit max_total_tokens %s)\n", plural(rep.TotalItems, "item"),
		numfmt.Thousands(rep.TotalEstimatedTokens), limitText(p.Limits.MaxTotalTokens))
	if rep.TotalReused > 0 {
		bw.printf("reuse: %s take an earlier run's output, %d to send; ~%s tokens saved\n", plural(rep.TotalReused, "item"),
			rep.TotalItems-rep.TotalReused, numfmt.Thousands(rep.TotalTokensSaved))
	}
	return bw.err
}

func limitText(n int64) string {
	if n <= 0 {
		return "unset"
	}
	return numfmt.Thousands(n)
}

// stepShape describes how a step runs.
func stepShape(s *pipelines.Step) string {
	var parts []string
	if s.ForEach != "" {
		parts = append(parts, "for_each "+s.ForEach)
	} else {
		parts = append(parts, "once")
	}
	if len(s.Needs) > 0 {
		parts = append(parts, "needs "+strings.Join(s.Needs, ", "))
	}
	if len(s.Artifacts) > 0 {
		parts = append(parts, "with "+strings.Join(s.Artifacts, ", "))
	}
	parts = append(parts, s.Mode)
	return strings.Join(parts, ", ")
}

// errWriter keeps the first write error.
type errWriter struct {
	w   io.Writer
	err error
}

// Write writes b unless an earlier write failed.
func (e *errWriter) Write(b []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(b)
	e.err = err
	return n, err
}

// printf formats to the writer; check e.err once at the end.
func (e *errWriter) printf(format string, args ...any) { fmt.Fprintf(e, format, args...) }
