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
	"github.com/threadmill/threadmill/reuse"
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
	// RetryOf retries the items in RetryStates of a finished embedded run
	// (`threadmill retry` without Redis), rebuilt from its directory.
	RetryOf     string
	RetryStates []string
	// RerunOf starts a new run over the window of an earlier one
	// (`threadmill rerun` without Redis).
	RerunOf string
	// ResultsDir overrides the pipeline's output.dir.
	ResultsDir string
	// NoReuse sends every item, also those a step's reuse: unchanged
	// would take from an earlier run.
	NoReuse bool
	// ReuseRetention is how long kept outputs stay reusable.
	ReuseRetention time.Duration
	// Progress is auto, bar, lines or none.
	Progress string
	// ProgressInterval is the time between plain progress lines.
	ProgressInterval time.Duration
	// ShutdownTimeout bounds the drain of items in flight after an interrupt.
	ShutdownTimeout time.Duration
	Preflight       preflightFlags
	Log             logFlags
	// Metrics serves the run's metrics (and with Pprof its profiles) while
	// it runs.
	Metrics metricsFlags
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
	if n := btoi(o.Resume) + btoi(o.RetryOf != "") + btoi(o.RerunOf != ""); n > 1 || n == 1 && o.RunID != "" && !o.Resume {
		return errors.New("--resume, --retry-of and --rerun-of go alone (and only --resume with --run-id)")
	}
	if o.ReuseRetention < time.Minute {
		return fmt.Errorf("--reuse-retention must be at least 1m, got %s", o.ReuseRetention)
	}
	if err := o.Preflight.validate(); err != nil {
		return err
	}
	if err := o.Metrics.validate(); err != nil {
		return err
	}
	return o.Log.validate()
}

func newRunCmd() *cobra.Command { return newRunCmdWith(&runOptions{}) }

// newRunCmdWith is the run command filling o: tests set o.LookupEnv to run
// in parallel, each with its own environment.
func newRunCmdWith(o *runOptions) *cobra.Command {
	var at string
	cmd := &cobra.Command{
		Use:   "run FILE",
		Short: "Run a pipeline to its end and write its result files",
		Long: `Run a pipeline once, to its end, and print where its result files are:
threadmill-results/<pipeline>/<run-id>/ with run.json, results.jsonl, errors.jsonl and
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
	// The embedded side of `threadmill retry` and `threadmill rerun`.
	f.StringVar(&o.RetryOf, "retry-of", "", "retry the items of this finished run (threadmill retry)")
	f.StringSliceVar(&o.RetryStates, "retry-states", []string{results.StateFailed, results.StateSkipped, results.StateCanceled}, "item states to retry")
	f.StringVar(&o.RerunOf, "rerun-of", "", "run the window of this earlier run again (threadmill rerun)")
	for _, name := range []string{"retry-of", "retry-states", "rerun-of"} {
		_ = f.MarkHidden(name)
	}
	f.BoolVar(&o.NoReuse, "no-reuse", false, "send every item, also those a step's reuse: unchanged would take from an earlier run")
	f.DurationVar(&o.ReuseRetention, "reuse-retention", reuse.DefaultRetention, "how long the outputs steps with reuse: unchanged take stay reusable after the last run that used them (under the results root, or in Redis)")
	f.StringVar(&o.ResultsDir, "results", "", "results root (default: the pipeline's output.dir, else ./"+pipelines.DefaultOutputDir+")")
	f.StringVar(&o.Progress, "progress", "auto", "progress display: auto (a bar on a terminal, lines otherwise), bar, lines or none")
	f.DurationVar(&o.ProgressInterval, "progress-interval", 5*time.Second, "time between progress lines when not on a terminal")
	f.DurationVar(&o.ShutdownTimeout, "shutdown-timeout", 30*time.Second, "on interrupt, how long items in flight may take to finish")
	o.Preflight.add(f)
	addMaxRetryAfter(f, &o.MaxRetryAfter)
	o.Metrics.addServer(f)
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

	// The run: a new one (its window now; its id once Redis is up), or the
	// interrupted one to resume.
	embedded := redisURL == ""
	if !embedded && (o.RetryOf != "" || o.RerunOf != "") {
		return withCode(exitUsage, errors.New("a run on a shared Redis is retried with threadmill retry RUN, and re-run with threadmill rerun RUN FILE"))
	}
	var (
		run  pipelines.RunInfo
		resv *results.Reservation
	)
	defer func() {
		if resv != nil {
			_ = resv.Release()
		}
	}()
	var prev *results.Run
	switch {
	case o.Resume:
		run, resv, err = resumeRun(o, p, root, embedded, stderr)
	case o.RetryOf != "":
		if run, prev, err = retryRunInfo(p, root, o.RetryOf); err != nil {
			return err
		}
		if n := countStates(prev, o.RetryStates); n == 0 {
			fmt.Fprintf(stdout, "run %s has no %s items: nothing to retry\n", run.ID, strings.Join(o.RetryStates, ", "))
			return nil
		}
		resv, err = reserveRetry(root, p.Name, run.ID)
	case o.RerunOf != "":
		run, err = rerunInfo(p, root, o)
	default:
		run, err = planRun(p, o.At, time.Time{}, o.RunID)
	}
	if err != nil {
		return err
	}
	if o.NoReuse {
		run.NoReuse = true
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
	itemRetention := time.Duration(0) // the default, on a shared Redis
	var records *runstore.RecordFiles
	fanOutWindow := 0
	if rc.Embedded != nil {
		// The in-process Redis holds a window of a step's tasks, not all.
		fanOutWindow = max(embeddedFanOutWindow, 64*concurrency)
		itemRetention = -1 // nobody inspects a one-shot process's completed tasks
		// The in-process Redis keeps run state; records go to disk, so
		// that memory does not grow with the run's outputs.
		records = runstore.NewRecordFiles(filepath.Join(root, p.Name))
		defer records.Close()
	}
	// An embedded run's Redis dies with it: outputs for reuse are kept
	// under the results root, where the next embedded run finds them.
	var reuseStore reuse.Store
	if rc.Embedded != nil {
		reuseStore = reuse.NewDir(root, o.ReuseRetention)
	}
	obs := newObservability("run")
	w, err := worker.New(worker.Config{
		Reuse:           reuseStore,
		ReuseRetention:  o.ReuseRetention,
		RecordFiles:     records,
		FanOutWindow:    fanOutWindow,
		ItemRetention:   itemRetention,
		MaxRetryAfter:   maxWait,
		RDB:             rc.RDB,
		API:             conn.Client,
		Concurrency:     concurrency,
		ResultsRoot:     root,
		ShutdownTimeout: o.ShutdownTimeout,
		PollInterval:    pollInterval(rc),
		Logger:          log,
		Observer:        obs.Metrics,
	})
	if err != nil {
		return err
	}
	if err := obs.serve(o.Metrics, rc.RDB, []string{worker.PriorityQueue(w.Queue()), w.Queue()}, log); err != nil {
		return withCode(exitUsage, err)
	}
	defer obs.Close()
	if a := obs.Addr(); a != "" {
		fmt.Fprintf(stderr, "serving metrics on http://%s/metrics while the run lasts%s\n", a, map[bool]string{true: " (profiles under /debug/pprof/)"}[o.Metrics.Pprof])
	}
	store := w.Store()
	if !o.Resume && o.RetryOf == "" {
		if resv, err = claimRunID(ctx, o, p, root, &run, embedded, store); err != nil {
			return err
		}
	}

	// Embedded runs keep a journal of finished items for --resume: the
	// in-process Redis dies with the process. It is created with the first
	// finished item (its metadata just before), so a run that never got
	// that far leaves none behind.
	var journal *results.Journal
	jpath := results.JournalPath(root, p.Name, run.ID)
	// A retry keeps no journal: interrupted, it is simply retried again
	// (its directory still holds the attempt before).
	if rc.Embedded != nil && o.RetryOf == "" {
		var prepare func() error
		if !o.Resume {
			meta := resumeMeta{Pipeline: p.Name, File: o.File, PipelineHash: p.Hash, Run: run, Simulate: o.Simulate}
			prepare = func() error { return writeMeta(metaPath(jpath), meta) }
		}
		journal = results.NewJournal(jpath, prepare)
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
	switch {
	case o.Resume:
		if seeded, err = seedFromJournal(ctx, store, p, run, jpath); err != nil {
			return err
		}
	case o.RetryOf != "":
		if seeded, err = seedRetry(ctx, store, p, run, prev, filepath.Join(root, p.Name, run.ID), o.RetryStates); err != nil {
			return err
		}
	}
	q := asynqClient(rc.RDB)
	defer q.Close()
	if err := jobs.StartRun(ctx, q, store, p, run, asynq.Queue(w.Queue())); err != nil {
		return fmt.Errorf("start run %s: %w", run.ID, err)
	}
	switch {
	case o.Resume:
		fmt.Fprintf(stderr, "resuming run %s: %d finished items from %s are not sent again\n", run.ID, seeded, jpath)
	case o.RetryOf != "":
		fmt.Fprintf(stderr, "retrying run %s: %d items sent again (and the steps that read them); the others are kept\n", run.ID, seeded)
	case o.RerunOf != "":
		fmt.Fprintf(stderr, "run %s re-runs %s (fire time %s) with %s\n", run.ID, o.RerunOf, run.Time.UTC().Format(time.RFC3339), o.File)
	default:
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

// claimRunID names a new run: --run-id, else run.ID (an adHocRunID) or the
// first free one of its -2, -3, ... An id is taken while another live run
// holds it (results.Reserve), when it has a run directory or a journal under
// root, and, on a shared Redis, when Redis knows it. Two runs started in the
// same second therefore get different ids, even embedded ones that each
// have their own in-process Redis.
//
// An embedded run keeps the reservation for its life: only its own worker
// writes its directory, and results.Writer refuses any other. A run on a
// shared Redis gives it back at once: any worker may finalize it, and Redis
// is where its id is unique.
func claimRunID(ctx context.Context, o *runOptions, p *pipelines.Pipeline, root string, run *pipelines.RunInfo, embedded bool, store *runstore.Store) (*results.Reservation, error) {
	jpath := func(id string) string { return results.JournalPath(root, p.Name, id) }
	onDisk := func(id string) bool {
		for _, path := range []string{filepath.Join(root, p.Name, id), jpath(id), metaPath(jpath(id))} {
			if _, err := os.Lstat(path); err == nil {
				return true
			}
		}
		return false
	}
	reserve := func(id string) (*results.Reservation, error) {
		r, err := results.Reserve(root, p.Name, id)
		if err == nil && !embedded {
			_ = r.Release()
			r = nil
		}
		return r, err
	}
	if o.RunID != "" {
		run.ID = o.RunID
		if _, err := os.Stat(jpath(run.ID)); err == nil {
			return nil, withCode(exitUsage, fmt.Errorf("run %s was interrupted earlier (journal %s): add --resume to continue it, or remove the journal to start over", run.ID, jpath(run.ID)))
		}
		r, err := reserve(run.ID)
		if errors.Is(err, results.ErrRunBusy) {
			var busy *results.BusyError
			errors.As(err, &busy)
			return nil, withCode(exitFailure, fmt.Errorf("run %s is already running (%s): wait for it, or pick another --run-id", run.ID, busy.Owner))
		}
		return r, err
	}
	var held *results.Reservation
	id, err := freshRunID(run.ID, func(id string) (bool, error) {
		r, err := reserve(id)
		if errors.Is(err, results.ErrRunBusy) {
			return true, nil
		}
		if err != nil {
			return false, err
		}
		taken := onDisk(id)
		if !taken && !embedded {
			if taken, err = store.Exists(ctx, id); err != nil {
				if r != nil {
					_ = r.Release()
				}
				return false, err
			}
		}
		if taken {
			if r != nil {
				_ = r.Release()
			}
			return true, nil
		}
		held = r
		return false, nil
	})
	if err != nil {
		return nil, fmt.Errorf("pick a run id: %w", err)
	}
	run.ID = id
	return held, nil
}

// resumeRun finds the run to resume (--run-id, else the pipeline's newest
// resumable journal) and returns its original run info and, for an
// embedded run, its reservation. Stale journals (of another version of the
// file, without items, older than the run retention, finished, or in use)
// are not resumed: with --run-id that is an error saying why; otherwise
// each is reported on stderr, with why, and skipped.
func resumeRun(o *runOptions, p *pipelines.Pipeline, root string, embedded bool, stderr io.Writer) (pipelines.RunInfo, *results.Reservation, error) {
	now := time.Now()
	take := func(id string) (pipelines.RunInfo, *results.Reservation, string) {
		meta, why := inspectJournal(o, p, root, id, now)
		if why != "" {
			return meta.Run, nil, why
		}
		if !embedded {
			return meta.Run, nil, ""
		}
		r, err := results.Reserve(root, p.Name, id)
		var busy *results.BusyError
		if errors.As(err, &busy) {
			return meta.Run, nil, "it is being resumed already (" + busy.Owner.String() + ")"
		}
		if err != nil {
			return meta.Run, nil, err.Error()
		}
		return meta.Run, r, ""
	}
	if o.RunID != "" {
		run, r, why := take(o.RunID)
		if strings.HasPrefix(why, "no journal ") {
			return run, nil, fmt.Errorf("nothing to resume for run %s: %s", o.RunID, why)
		}
		if why != "" {
			return run, nil, fmt.Errorf("cannot resume run %s: %s", o.RunID, why)
		}
		return run, r, nil
	}
	ids, err := journalIDs(root, p.Name)
	if err != nil {
		return pipelines.RunInfo{}, nil, err
	}
	stale := 0
	for _, id := range ids {
		run, r, why := take(id)
		if why == "" {
			return run, r, nil
		}
		stale++
		fmt.Fprintf(stderr, "ignoring the journal of run %s (%s): %s\n", id, results.JournalPath(root, p.Name, id), why)
	}
	dir := filepath.Join(root, p.Name)
	if stale > 0 {
		return pipelines.RunInfo{}, nil, fmt.Errorf("nothing to resume: no resumable run of %s in %s (%s ignored, see above; remove them when they are of no use)", p.Name, dir, plural(stale, "stale journal"))
	}
	return pipelines.RunInfo{}, nil, fmt.Errorf("nothing to resume: no interrupted run of %s in %s", p.Name, dir)
}

// inspectJournal reads the journal of run id and says why it cannot be
// resumed with this pipeline file and these flags at now, "" when it can.
func inspectJournal(o *runOptions, p *pipelines.Pipeline, root, id string, now time.Time) (resumeMeta, string) {
	jpath := results.JournalPath(root, p.Name, id)
	meta, err := readMeta(metaPath(jpath))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if _, jerr := os.Stat(jpath); jerr != nil {
			return meta, fmt.Sprintf("no journal %s (a run that finished, or was never started here)", jpath)
		}
		return meta, fmt.Sprintf("its metadata %s is missing, so its window and file are unknown", metaPath(jpath))
	case err != nil:
		return meta, fmt.Sprintf("its metadata cannot be read: %v", err)
	case meta.Pipeline != p.Name:
		return meta, fmt.Sprintf("it is a run of pipeline %q, not %q", meta.Pipeline, p.Name)
	case meta.PipelineHash != p.Hash:
		return meta, fmt.Sprintf("%s changed since run %s was interrupted (hash %.12s, now %.12s): its items would differ; restore the file or start a new run", o.File, id, meta.PipelineHash, p.Hash)
	case meta.Simulate != o.Simulate:
		return meta, fmt.Sprintf("run %s was started %s --simulate: resume it the same way", id, map[bool]string{true: "with", false: "without"}[meta.Simulate])
	}
	if _, err := results.ReadRun(filepath.Join(root, p.Name, id)); err == nil {
		return meta, fmt.Sprintf("the run finished: its directory %s exists", filepath.Join(root, p.Name, id))
	}
	items, last := 0, time.Time{}
	for _, path := range []string{jpath, metaPath(jpath)} {
		if fi, err := os.Stat(path); err == nil && fi.ModTime().After(last) {
			last = fi.ModTime()
		}
	}
	for _, err := range results.ReadJournal(jpath) {
		if err == nil {
			items++
		}
	}
	if items == 0 {
		return meta, "it holds no finished item (the run stopped before any item finished): start a new run instead"
	}
	if age := now.Sub(last); age > runstore.DefaultRetention {
		return meta, fmt.Sprintf("it was last written %s, %s ago, more than the run retention (%s): start a new run instead",
			last.Format(time.DateTime), age.Round(time.Hour), runstore.DefaultRetention)
	}
	return meta, ""
}

// journalIDs returns the run ids of a pipeline's journals and journal
// metadata files, the most recently written first.
func journalIDs(root, pipeline string) ([]string, error) {
	dir := filepath.Join(root, pipeline)
	des, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look for journals: %w", err)
	}
	mods := map[string]time.Time{}
	for _, de := range des {
		id, ok := strings.CutSuffix(de.Name(), ".journal.meta.json")
		if !ok {
			id, ok = strings.CutSuffix(de.Name(), ".journal.jsonl")
		}
		if !ok || de.IsDir() || strings.HasPrefix(id, ".") {
			continue
		}
		if fi, err := de.Info(); err == nil && fi.ModTime().After(mods[id]) {
			mods[id] = fi.ModTime()
		} else if _, seen := mods[id]; !seen {
			mods[id] = time.Time{}
		}
	}
	ids := make([]string, 0, len(mods))
	for id := range mods {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool {
		if !mods[ids[i]].Equal(mods[ids[j]]) {
			return mods[ids[i]].After(mods[ids[j]])
		}
		return ids[i] > ids[j]
	})
	return ids, nil
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
	_, jerr := os.Stat(jpath)
	switch {
	case rc.Embedded != nil && jerr != nil:
		fmt.Fprintf(stderr, "interrupted before any item finished: nothing to resume; start it again with: threadmill run%s %s\n",
			map[bool]string{true: " --simulate"}[o.Simulate], o.File)
	case rc.Embedded != nil:
		sim := ""
		if o.Simulate {
			sim = " --simulate"
		}
		fmt.Fprintf(stderr, "interrupted: %d of %d items finished and journaled in %s\nresume with: threadmill run --resume%s --run-id %s %s\n",
			done, total, jpath, sim, runID, o.File)
	default:
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
	if r, err := results.ReadRun(st.ResultDir); err == nil {
		printDelivery(w, r)
	}
	fmt.Fprintf(w, "results: %s\n", st.ResultDir)
	fmt.Fprintf(w, "  %-14s %s\n", results.ReportFile, "the report and a usage table")
	fmt.Fprintf(w, "  %-14s %s\n", results.ResultsFile, plural(st.Total, "item")+", one JSON line each")
	fmt.Fprintf(w, "  %-14s %s\n", results.ErrorsFile, plural(st.Failed, "failed item"))
	fmt.Fprintf(w, "  %-14s %s\n", results.RunFile, "counts, usage per step, window, timing")
}

// urlPassword returns the password of a URL, "" when none, for the log
// redactor (decoded when the URL parses, as written otherwise).
// btoi is 1 for true.
func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

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
