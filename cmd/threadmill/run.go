package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/spf13/cobra"

	"github.com/threadmill/threadmill/internal/progress"
	"github.com/threadmill/threadmill/jobs"
	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/results"
	"github.com/threadmill/threadmill/runstore"
	"github.com/threadmill/threadmill/worker"
)

// runOptions are the inputs of `threadmill run`.
type runOptions struct {
	File     string
	Simulate bool
	Redis    redisFlags
	// RunID overrides the default <pipeline>-<UTC time>.
	RunID string
	// At picks the run window as `plan` does (the last fire time at or
	// before At); zero means now.
	At time.Time
	// Concurrency is the local worker's task concurrency; 0: the pipeline's
	// limits.concurrency plus room for control tasks.
	Concurrency int
	// Resume continues an interrupted run (RunID, else the pipeline's latest
	// journal) without sending its finished items again.
	Resume bool
	// ResultsDir overrides the pipeline's output.dir.
	ResultsDir string
	// Progress is auto, bar, lines or none.
	Progress string
	// ProgressInterval is the time between plain progress lines.
	ProgressInterval time.Duration
	// ShutdownTimeout bounds the drain of items in flight after an interrupt.
	ShutdownTimeout time.Duration
	Preflight       preflightFlags
	Log             logFlags
	// MaxRetryAfter caps the waits a 429 or 503 asks for (see worker's).
	MaxRetryAfter time.Duration
	// LookupEnv reads ${VAR}, WORKSPACE_* and THREADMILL_REDIS_URL; default
	// os.LookupEnv.
	LookupEnv func(string) (string, bool)
}

func (o *runOptions) validate() error {
	if o.Concurrency < 0 || o.Concurrency > 10000 {
		return fmt.Errorf("--concurrency must be in 1..10000 (or 0 for the pipeline's limit), got %d", o.Concurrency)
	}
	if err := checkProgress(o.Progress, o.ProgressInterval); err != nil {
		return err
	}
	if o.ShutdownTimeout < 0 {
		return fmt.Errorf("--shutdown-timeout must not be negative, got %s", o.ShutdownTimeout)
	}
	if o.RunID != "" {
		if err := checkRunID(o.RunID); err != nil {
			return fmt.Errorf("--run-id: %w", err)
		}
	}
	if err := o.Preflight.validate(); err != nil {
		return err
	}
	return o.Log.validate()
}

func newRunCmd() *cobra.Command {
	o := &runOptions{}
	var at string
	cmd := &cobra.Command{
		Use:   "run FILE",
		Short: "Run a pipeline to its end and write its result files",
		Long: `Run a pipeline once, to its end, and print where its result files are:
results/<pipeline>/<run-id>/ with run.json, results.jsonl, errors.jsonl and
report.md (the results root is --results, else the pipeline's output.dir).

Without --redis (or THREADMILL_REDIS_URL) the run needs no Redis: an
in-process Redis-compatible server and an in-process worker run it, on the
same code path as the distributed workers. With a Redis, the run is started
on it and a local worker joins the workers already serving it.

A scheduled pipeline's run covers the window of its latest completed fire
time (the one the scheduler fired most recently), never a window that ends in
the future; --at picks the window of the last fire time at or before another
time. ` + "`plan`" + ` shows the same run. Its id is <pipeline>-<UTC time> (with a
-2, -3, ... suffix when that id is taken) unless --run-id gives one.

Interrupted (Ctrl-C, SIGTERM), the worker stops taking items, lets those in
flight finish, and keeps a journal of the finished items beside the run
directory; ` + "`run --resume`" + ` continues the run without sending them again.

Exit status: 0 when every item succeeded, 3 when the run finished with
failed or skipped items, 1 when it could not start (the Workspace is
unreachable or refuses the token, Redis does not answer, ...) or was
interrupted, 2 for bad flags.

` + preflightHelp + "\n\n" + workspaceEnvHelp + "\n\n" + redisURLHelp,
		Example: `  threadmill run --simulate examples/weekly-support-brief.yaml
  threadmill run --resume --simulate examples/weekly-support-brief.yaml
  threadmill run --redis redis://localhost:6379 --concurrency 32 examples/bulk-summarize.yaml`,
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
			return runRun(cmd.Context(), o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.Simulate, "simulate", false, "send the requests to an in-process simulator serving the example corpus")
	o.Redis.add(f, "Redis URL of the queue and run state (default: "+envRedisURL+", else an in-process Redis)")
	f.StringVar(&o.RunID, "run-id", "", "run id (default <pipeline>-<UTC time>; with --resume, the run to resume)")
	f.StringVar(&at, "at", "", "run the window of the last fire time at or before this time: RFC 3339 or a date (UTC); default now")
	f.IntVar(&o.Concurrency, "concurrency", 0, "tasks the local worker runs at once (default: the pipeline's limits.concurrency + 2)")
	f.BoolVar(&o.Resume, "resume", false, "continue an interrupted run (--run-id, else the latest) without re-sending its finished items")
	f.StringVar(&o.ResultsDir, "results", "", "results root (default: the pipeline's output.dir, else results)")
	f.StringVar(&o.Progress, "progress", "auto", "progress display: auto (a bar on a terminal, lines otherwise), bar, lines or none")
	f.DurationVar(&o.ProgressInterval, "progress-interval", 5*time.Second, "time between progress lines when not on a terminal")
	f.DurationVar(&o.ShutdownTimeout, "shutdown-timeout", 30*time.Second, "on interrupt, how long items in flight may take to finish")
	o.Preflight.add(f)
	addMaxRetryAfter(f, &o.MaxRetryAfter)
	o.Log.add(f, "warn")
	return cmd
}

// checkProgress validates the --progress and --progress-interval flags of
// run, enqueue and status.
func checkProgress(mode string, interval time.Duration) error {
	if _, err := progressMode(mode); err != nil {
		return err
	}
	if interval <= 0 {
		return fmt.Errorf("--progress-interval must be positive, got %s", interval)
	}
	return nil
}

// newReporter returns the progress display of a run labelled label, as the
// --progress and --progress-interval flags (checked by checkProgress) ask.
func newReporter(w io.Writer, mode string, interval time.Duration, label string) progress.Reporter {
	m, _ := progressMode(mode)
	return progress.New(w, progress.Options{Mode: m, Interval: interval, Label: label})
}

// progressMode reads the --progress flag.
func progressMode(s string) (progress.Mode, error) {
	switch s {
	case "auto", "":
		return progress.Auto, nil
	case "bar":
		return progress.Bar, nil
	case "lines":
		return progress.Lines, nil
	case "none":
		return progress.Quiet, nil
	}
	return 0, fmt.Errorf("--progress must be auto, bar, lines or none, got %q", s)
}

// runIDTime is the layout of the time in a run id: <pipeline>-<UTC time>.
const runIDTime = "20060102T150405Z"

// freshRunID returns base (an adHocRunID), with a -2, -3, ... suffix while
// taken says the id is in use.
func freshRunID(base string, taken func(id string) (bool, error)) (string, error) {
	id := base
	for i := 2; ; i++ {
		used, err := taken(id)
		if err != nil || !used {
			return id, err
		}
		id = fmt.Sprintf("%s-%d", base, i)
	}
}

// checkRunID rejects run ids that cannot name a result directory.
func checkRunID(id string) error {
	switch {
	case strings.TrimSpace(id) != id || id == "":
		return fmt.Errorf("run id %q is empty or has surrounding spaces", id)
	case strings.HasPrefix(id, "."):
		return fmt.Errorf("run id %q must not start with a dot", id)
	case strings.ContainsAny(id, "/\\\x00"):
		return fmt.Errorf("run id %q must not contain a slash or backslash", id)
	case len(id) > 200:
		return fmt.Errorf("run id is longer than 200 bytes")
	case id == results.LatestLink:
		return fmt.Errorf("run id %q is reserved", id)
	}
	return nil
}

// resumeMeta is written beside the journal of an embedded run: what a resume
// needs to plan the same items again.
type resumeMeta struct {
	Pipeline     string            `json:"pipeline"`
	File         string            `json:"file"`
	PipelineHash string            `json:"pipeline_hash"`
	Run          pipelines.RunInfo `json:"run"`
	Simulate     bool              `json:"simulate"`
}

func metaPath(journal string) string { return strings.TrimSuffix(journal, ".jsonl") + ".meta.json" }

// runRun runs a pipeline to its end.
func runRun(ctx context.Context, o *runOptions, stdout, stderr io.Writer) error {
	lookup := envLookup(o.LookupEnv)
	p, err := pipelines.Load(o.File, lookup)
	if err != nil {
		return loadFailure(err, stderr)
	}
	root := cmp.Or(o.ResultsDir, p.Output.Dir, pipelines.DefaultOutputDir)
	redisURL, redisSource := o.Redis.resolve(lookup)

	token, _ := lookup(envToken)
	log, err := o.Log.logger(stderr, strings.TrimSpace(token), urlPassword(redisURL))
	if err != nil {
		return withCode(exitUsage, err)
	}

	// The run: a new one, or the interrupted one to resume.
	var run pipelines.RunInfo
	if o.Resume {
		run, err = resumeRun(o, p, root)
	} else {
		run, err = newRun(o, p, root)
	}
	if err != nil {
		return err
	}

	// Everything below lives until the run is over, not until ctx: after an
	// interrupt the worker drains its items in flight and needs the API and
	// Redis meanwhile.
	bg := context.WithoutCancel(ctx)
	conn, err := connectWorkspace(bg, lookup, o.Simulate, p.Workspace.Project, log)
	if err != nil {
		return err
	}
	defer conn.Close()
	p.Workspace.Project = conn.ProjectID
	if err := conn.dateCorpus(run); err != nil {
		return err
	}
	// Check the Workspace before anything reaches Redis: a run that cannot
	// start leaves no run record and no task behind.
	if err := preflight(ctx, conn.Client, conn.BaseURL, conn.ProjectID, o.Preflight.Timeout, log); err != nil {
		return withCode(exitFailure, err)
	}

	concurrency := o.Concurrency
	if concurrency == 0 {
		concurrency = cmp.Or(p.Limits.Concurrency+2, worker.DefaultConcurrency)
	}
	var rc *redisConn
	if redisURL != "" {
		rc, err = connectRedis(ctx, redisURL, redisSource, poolFor(concurrency))
	} else {
		rc, err = startEmbeddedRedis(ctx, poolFor(concurrency))
	}
	if err != nil {
		return err
	}
	defer rc.Close()

	maxWait, err := maxRetryAfter(o.MaxRetryAfter, lookup)
	if err != nil {
		return withCode(exitUsage, err)
	}
	w, err := worker.New(worker.Config{
		MaxRetryAfter:   maxWait,
		RDB:             rc.RDB,
		API:             conn.Client,
		Concurrency:     concurrency,
		ResultsRoot:     root,
		ShutdownTimeout: o.ShutdownTimeout,
		PollInterval:    pollInterval(rc),
		Logger:          log,
	})
	if err != nil {
		return err
	}
	store := w.Store()

	// Embedded runs keep a journal of finished items for --resume: the
	// in-process Redis dies with the process.
	var journal *results.Journal
	jpath := results.JournalPath(root, p.Name, run.ID)
	if rc.Embedded != nil {
		if !o.Resume {
			if err := writeMeta(metaPath(jpath), resumeMeta{Pipeline: p.Name, File: o.File, PipelineHash: p.Hash, Run: run, Simulate: o.Simulate}); err != nil {
				return err
			}
		}
		if journal, err = results.OpenJournal(jpath); err != nil {
			return err
		}
		defer journal.Close()
		var journalErr sync.Once
		w.OnItemDone(func(it results.Item) {
			if err := journal.Append(it); err != nil {
				journalErr.Do(func() {
					log.Error("cannot journal finished items; an interrupted run will re-send them on resume", "journal", jpath, "error", err)
				})
			}
		})
	}

	seeded := 0
	if o.Resume {
		if seeded, err = seedFromJournal(ctx, store, p, run, jpath); err != nil {
			return err
		}
	}
	q := asynqClient(rc.RDB)
	defer q.Close()
	if err := jobs.StartRun(ctx, q, store, p, run, asynq.Queue(w.Queue())); err != nil {
		return fmt.Errorf("start run %s: %w", run.ID, err)
	}
	if o.Resume {
		fmt.Fprintf(stderr, "resuming run %s: %d finished items from %s are not sent again\n", run.ID, seeded, jpath)
	} else {
		fmt.Fprintf(stderr, "run %s of %s started (redis: %s)\n", run.ID, p.Name, rc.Display)
	}

	wctx, stopWorker := context.WithCancel(ctx)
	defer stopWorker()
	workerDone := make(chan error, 1)
	go func() { workerDone <- w.Run(wctx) }()

	rep := newReporter(stderr, o.Progress, o.ProgressInterval, run.ID)
	st, followErr := follow(ctx, store, run.ID, rep, workerDone)

	stopWorker()
	werr := <-workerDone
	if journal != nil {
		if err := journal.Close(); err != nil {
			log.Error("closing the journal", "journal", jpath, "error", err)
		}
	}
	if followErr != nil {
		if ctx.Err() == nil {
			return errors.Join(followErr, werr)
		}
		return interrupted(bg, store, run.ID, o, rc, jpath, stderr)
	}
	if journal != nil && st.Status != runstore.StatusError {
		// The run directory holds every item now; the journal is spent.
		_ = os.Remove(jpath)
		_ = os.Remove(metaPath(jpath))
	}
	return finished(stdout, st)
}

// pollInterval is the worker's queue poll: short on the embedded Redis, whose
// polls cost no network, and the worker's default on a real one.
func pollInterval(rc *redisConn) time.Duration {
	if rc.Embedded != nil {
		return 50 * time.Millisecond
	}
	return 0
}

// newRun picks the run window as plan does, and the run id: --run-id, else
// <pipeline>-<UTC time> (with a suffix if that id already has results here).
func newRun(o *runOptions, p *pipelines.Pipeline, root string) (pipelines.RunInfo, error) {
	run, err := planRun(p, o.At, time.Time{}, "")
	if err != nil {
		return run, err
	}
	jpath := func(id string) string { return results.JournalPath(root, p.Name, id) }
	exists := func(id string) bool {
		_, e1 := os.Lstat(filepath.Join(root, p.Name, id))
		_, e2 := os.Lstat(jpath(id))
		return e1 == nil || e2 == nil
	}
	if o.RunID != "" {
		run.ID = o.RunID
		if _, err := os.Stat(jpath(run.ID)); err == nil {
			return run, withCode(exitUsage, fmt.Errorf("run %s was interrupted earlier (journal %s): add --resume to continue it, or remove the journal to start over", run.ID, jpath(run.ID)))
		}
		return run, nil
	}
	run.ID, err = freshRunID(run.ID, func(id string) (bool, error) { return exists(id), nil })
	return run, err
}

// resumeRun finds the run to resume (--run-id, else the pipeline's newest
// journal) and returns its original run info, refusing a pipeline file that
// changed since: its items would not be the same.
func resumeRun(o *runOptions, p *pipelines.Pipeline, root string) (pipelines.RunInfo, error) {
	id := o.RunID
	if id == "" {
		var err error
		if id, err = latestJournal(root, p.Name); err != nil {
			return pipelines.RunInfo{}, err
		}
	}
	jpath := results.JournalPath(root, p.Name, id)
	meta, err := readMeta(metaPath(jpath))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return pipelines.RunInfo{}, fmt.Errorf("nothing to resume for run %s: no journal %s (a run that finished, or was never started here)", id, metaPath(jpath))
		}
		return pipelines.RunInfo{}, err
	}
	if meta.Pipeline != p.Name {
		return pipelines.RunInfo{}, fmt.Errorf("run %s is a run of pipeline %q, not %q", id, meta.Pipeline, p.Name)
	}
	if meta.PipelineHash != p.Hash {
		return pipelines.RunInfo{}, fmt.Errorf("%s changed since run %s was interrupted (hash %.12s, now %.12s): its items would differ; restore the file or start a new run", o.File, id, meta.PipelineHash, p.Hash)
	}
	if meta.Simulate != o.Simulate {
		return pipelines.RunInfo{}, fmt.Errorf("run %s was started %s --simulate: resume it the same way", id, map[bool]string{true: "with", false: "without"}[meta.Simulate])
	}
	return meta.Run, nil
}

// latestJournal returns the run id of the newest journal of a pipeline (its
// meta file is written first, so even a run interrupted before its first
// item finished is found).
func latestJournal(root, pipeline string) (string, error) {
	dir := filepath.Join(root, pipeline)
	const suffix = ".journal.meta.json"
	matches, err := filepath.Glob(filepath.Join(dir, "*"+suffix))
	if err != nil {
		return "", err
	}
	type cand struct {
		id  string
		mod time.Time
	}
	var cs []cand
	for _, m := range matches {
		fi, err := os.Stat(m)
		if err != nil {
			continue
		}
		cs = append(cs, cand{strings.TrimSuffix(filepath.Base(m), suffix), fi.ModTime()})
	}
	if len(cs) == 0 {
		return "", fmt.Errorf("nothing to resume: no interrupted run of %s in %s", pipeline, dir)
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].mod.After(cs[j].mod) })
	return cs[0].id, nil
}

func writeMeta(path string, m resumeMeta) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(path), err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func readMeta(path string) (resumeMeta, error) {
	var m resumeMeta
	b, err := os.ReadFile(path)
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// seedBatch is how many journal items are seeded per call, keeping memory
// flat in the size of the journal.
const seedBatch = 256

// seedFromJournal records the run and marks the journal's items finished, so
// their tasks are counted, never sent. It returns how many items it seeded.
func seedFromJournal(ctx context.Context, store *runstore.Store, p *pipelines.Pipeline, run pipelines.RunInfo, jpath string) (int, error) {
	if _, err := store.CreateRun(ctx, p, run); err != nil {
		return 0, fmt.Errorf("resume run %s: %w", run.ID, err)
	}
	seen := map[string]bool{}
	batch := make([]results.Item, 0, seedBatch)
	n := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := store.Seed(ctx, run.ID, batch); err != nil {
			return fmt.Errorf("resume run %s: %w", run.ID, err)
		}
		batch = batch[:0]
		return nil
	}
	for it, err := range results.ReadJournal(jpath) {
		if errors.Is(err, fs.ErrNotExist) {
			break // interrupted before any item finished
		}
		if err != nil {
			return n, fmt.Errorf("resume run %s: %w", run.ID, err)
		}
		id := it.Step + "\x00" + it.Key
		if seen[id] || it.State == results.StateSkipped || it.State == results.StateCanceled {
			continue
		}
		seen[id] = true
		batch = append(batch, it)
		n++
		if len(batch) == seedBatch {
			if err := flush(); err != nil {
				return n, err
			}
		}
	}
	return n, flush()
}

// followPoll is how often follow reads the run's progress.
const followPoll = 250 * time.Millisecond

// follow shows the run's progress until it finishes, ctx ends or the worker
// stops on its own (an error: it should run until told to stop).
func follow(ctx context.Context, store *runstore.Store, runID string, rep progress.Reporter, workerDone <-chan error) (*runstore.RunState, error) {
	tick := time.NewTicker(followPoll)
	defer tick.Stop()
	var last progress.Snapshot
	for {
		st, err := store.Run(ctx, runID)
		switch {
		case err == nil:
			last = snapshot(st)
			if st.Finished() {
				rep.Finish(last)
				return st, nil
			}
			rep.Update(last)
		case ctx.Err() != nil:
		case errors.Is(err, runstore.ErrNotFound):
		default:
			return nil, err
		}
		select {
		case <-ctx.Done():
			rep.Finish(last)
			return nil, ctx.Err()
		case err := <-workerDone:
			if err == nil {
				err = errors.New("the worker stopped before the run finished")
			}
			return nil, err
		case <-tick.C:
		}
	}
}

func snapshot(st *runstore.RunState) progress.Snapshot {
	s := progress.Snapshot{Total: st.Total, Done: st.Done, Failed: st.Failed, Skipped: st.Skipped, Tokens: st.Usage.Total()}
	for _, step := range st.Steps {
		if step.Planned && step.Done < step.Total {
			s.Step = step.ID
			break
		}
	}
	switch {
	case st.Status == runstore.StatusFinalizing:
		s.Phase = "finalizing"
	case st.Status == runstore.StatusPending:
		s.Phase = "waiting for a worker"
	case s.Step == "" && !st.Finished():
		s.Phase = "planning"
	}
	return s
}

// interrupted reports an interrupted run and how to continue it.
func interrupted(ctx context.Context, store *runstore.Store, runID string, o *runOptions, rc *redisConn, jpath string, stderr io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	done, total := 0, 0
	if st, err := store.Run(ctx, runID); err == nil {
		done, total = st.Done, st.Total
	}
	if rc.Embedded != nil {
		sim := ""
		if o.Simulate {
			sim = " --simulate"
		}
		fmt.Fprintf(stderr, "interrupted: %d of %d items finished and journaled in %s\nresume with: threadmill run --resume%s --run-id %s %s\n",
			done, total, jpath, sim, runID, o.File)
	} else {
		fmt.Fprintf(stderr, "interrupted: %d of %d items finished; the run stays on Redis for other workers (threadmill status %s),\nor continue it here with: threadmill run --run-id %s %s\n",
			done, total, runID, runID, o.File)
	}
	return withCode(exitFailure, fmt.Errorf("run %s interrupted", runID))
}

// printSummary prints the outcome of a finished run and where its files are.
func printSummary(w io.Writer, st *runstore.RunState) {
	took := ""
	if !st.StartedAt.IsZero() && !st.FinishedAt.IsZero() {
		took = ", " + st.FinishedAt.Sub(st.StartedAt).Round(10*time.Millisecond).String()
	}
	canceled := ""
	if st.Canceled > 0 {
		canceled = fmt.Sprintf(", %d canceled", st.Canceled)
	}
	fmt.Fprintf(w, "run %s %s: %d items (%d succeeded, %d failed, %d skipped%s), %d tokens (%d in, %d out), %d retries%s\n",
		st.ID, st.Status, st.Total, st.Succeeded, st.Failed, st.Skipped, canceled,
		st.Usage.Total(), int64(st.Usage.InputTokens), int64(st.Usage.OutputTokens), st.Retries, took)
	if st.StopReason != "" {
		fmt.Fprintf(w, "stopped: %s\n", st.StopReason)
	}
	if st.ResultDir == "" {
		return
	}
	fmt.Fprintf(w, "results: %s\n", st.ResultDir)
	fmt.Fprintf(w, "  %-14s %s\n", results.ReportFile, "the report and a usage table")
	fmt.Fprintf(w, "  %-14s %s\n", results.ResultsFile, plural(st.Total, "item")+", one JSON line each")
	fmt.Fprintf(w, "  %-14s %s\n", results.ErrorsFile, plural(st.Failed, "failed item"))
	fmt.Fprintf(w, "  %-14s %s\n", results.RunFile, "counts, usage per step, window, timing")
}

// urlPassword returns the password of a URL, "" when none, for the log
// redactor (decoded when the URL parses, as written otherwise).
func urlPassword(raw string) string {
	if raw == "" {
		return ""
	}
	if u, err := url.Parse(raw); err == nil && u.User != nil {
		pw, _ := u.User.Password()
		return pw
	}
	return rawPassword(raw)
}
