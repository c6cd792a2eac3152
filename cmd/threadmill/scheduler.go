package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/threadmill/threadmill/metrics"
	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/runstore"
	"github.com/threadmill/threadmill/scheduler"
	"github.com/threadmill/threadmill/webui"
	"github.com/threadmill/threadmill/worker"
)

// envPipelines names the pipelines directory when --pipelines is not given.
const envPipelines = "THREADMILL_PIPELINES"

// defaultPipelinesDir is the pipelines directory when neither --pipelines
// nor THREADMILL_PIPELINES is set, relative to the working directory. Not
// "pipelines": that is the pipelines package of this repository, whose
// testdata is full of deliberately broken files. A ".d" directory of
// drop-in files, as cron.d and conf.d are; no source directory of this
// module has the name (a test checks).
const defaultPipelinesDir = "pipelines.d"

// pipelinesDirFlag is the --pipelines flag of the scheduling commands.
type pipelinesDirFlag struct{ Dir string }

func (p *pipelinesDirFlag) add(f *pflag.FlagSet) {
	f.StringVar(&p.Dir, "pipelines", "", "directory of pipeline files (default: "+envPipelines+", else ./"+defaultPipelinesDir+")")
}

// resolve returns the directory from the flag, the environment or the
// default, and where it came from ("--pipelines", the variable's name or
// "default"), for error messages.
func (p *pipelinesDirFlag) resolve(lookup func(string) (string, bool)) (dir, source string) {
	if d := strings.TrimSpace(p.Dir); d != "" {
		return d, "--pipelines"
	}
	if v, ok := lookup(envPipelines); ok && strings.TrimSpace(v) != "" {
		return strings.TrimSpace(v), envPipelines
	}
	return defaultPipelinesDir, "default"
}

// describePipelinesDir is the line that tells which directory a command
// reads, and why that one.
func describePipelinesDir(dir, source string) string {
	if source == "default" {
		return fmt.Sprintf("pipelines directory: %s (the default; give --pipelines DIR or set %s)", dir, envPipelines)
	}
	return fmt.Sprintf("pipelines directory: %s (from %s)", dir, source)
}

// checkPipelinesDir reports whether dir, from source, is a readable directory, with an
// error naming the flag or variable it came from.
func checkPipelinesDir(dir, source string) error {
	st, err := os.Stat(dir)
	switch {
	case err != nil && source == "default":
		return fmt.Errorf("pipelines directory ./%s: %w (give --pipelines DIR or set %s)", dir, err, envPipelines)
	case err != nil:
		return fmt.Errorf("pipelines directory %s (from %s): %w", dir, source, err)
	case !st.IsDir():
		return fmt.Errorf("pipelines directory %s (from %s) is not a directory", dir, source)
	}
	return nil
}

// schedulerOptions are the inputs of `threadmill scheduler`.
type schedulerOptions struct {
	Pipelines  pipelinesDirFlag
	Redis      redisFlags
	Queue      string
	HealthAddr string
	// MetricsAddr is --metrics-addr, another name for --health-addr.
	MetricsAddr string
	// Pprof also serves /debug/pprof/ on the health server.
	Pprof bool
	// UI also serves the web UI under /ui/ on the health server.
	UI bool
	// SyncInterval is how often the directory is rescanned and catch-up
	// runs even without file events.
	SyncInterval time.Duration
	NoWatch      bool
	Log          logFlags
	// LookupEnv reads ${VAR} in pipeline files, THREADMILL_PIPELINES and
	// THREADMILL_REDIS_URL; default os.LookupEnv.
	LookupEnv func(string) (string, bool)
	// ready, when set, is called with the health server's address once the
	// scheduler runs (tests).
	ready func(healthAddr string)
}

func (o *schedulerOptions) validate() error {
	if strings.TrimSpace(o.Queue) == "" {
		return errors.New("--queue must not be empty")
	}
	if o.SyncInterval < time.Second {
		return fmt.Errorf("--sync-interval must be at least 1s, got %s", o.SyncInterval)
	}
	if o.HealthAddr != "" && o.MetricsAddr != "" && o.HealthAddr != o.MetricsAddr {
		return fmt.Errorf("--health-addr %s and --metrics-addr %s name the same server: give one of them", o.HealthAddr, o.MetricsAddr)
	}
	if o.HealthAddr == "" {
		o.HealthAddr = o.MetricsAddr
	}
	if o.Pprof && o.HealthAddr == "" {
		return errors.New("--pprof needs --health-addr (or --metrics-addr): the profiles are served there")
	}
	if o.UI && o.HealthAddr == "" {
		return errors.New("--ui needs --health-addr (or --metrics-addr): the web UI is served there")
	}
	if o.HealthAddr != "" {
		if _, port, err := net.SplitHostPort(o.HealthAddr); err != nil {
			return fmt.Errorf("%s %q: want host:port, e.g. :9090: %w", o.addrFlag(), o.HealthAddr, err)
		} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			return fmt.Errorf("%s %q: port %q is not a number in 0..65535", o.addrFlag(), o.HealthAddr, port)
		}
	}
	return o.Log.validate()
}

// addrFlag names the flag that gave the health server's address.
func (o *schedulerOptions) addrFlag() string {
	if o.MetricsAddr != "" && o.HealthAddr == o.MetricsAddr {
		return "--metrics-addr"
	}
	return "--health-addr"
}

func newSchedulerCmd() *cobra.Command {
	o := &schedulerOptions{}
	cmd := &cobra.Command{
		Use:   "scheduler",
		Short: "Start the pipelines of a directory on their cron schedules",
		Long: `Schedule every pipeline of a directory that has a schedule: at each fire
time, record a run on the shared Redis for the workers (` + "`threadmill worker`" + `).

Run ids come from the fire time: <pipeline>@<fire time, RFC 3339 in the
pipeline's zone>, e.g. weekly-support-brief@2026-03-30T09:00:00+02:00. Run
as many schedulers as you like on one Redis and one directory: each fire
time makes exactly one run. A run covers the window [previous fire time,
this fire time), which templates see as .Run.WindowStart/.Run.WindowEnd and
"updated: within_run_window" filters on.

The directory is --pipelines, else ` + envPipelines + `, else ./` + defaultPipelinesDir + `
(relative to the working directory); the "scheduling" log line names it and
where it came from. Changes to it are picked up at once (and every --sync-interval):
a new file is scheduled, a changed one rescheduled, a removed one
unscheduled. A file that does not load is reported as file:line:col and
skipped; its last good version stays scheduled.

Fire times missed while no scheduler ran are caught up on start and on
every sync, per each pipeline's schedule.catchup: none, latest (default) or
all (at most schedule.catchup_limit, default 10).

A fire time while an earlier run of the pipeline is still pending, running
or finalizing follows schedule.overlap: skip (default: no run, one WARN
line naming the active run, counted in
threadmill_scheduler_fires_skipped_total), queue (the run is recorded and
starts once the earlier runs ended, checked at every fire and sync) or
allow. Caught-up fire times never overlap each other.

The entries are asynq scheduler entries: ` + "`asynq cron ls`" + ` and asynqmon
list them with their next fire times. With --health-addr, GET /healthz and
/readyz answer 200 while Redis answers and the last sync is recent (503
otherwise, with the reason), and /metrics serves Prometheus metrics.

` + redisURLHelp,
		Example: `  threadmill scheduler --pipelines ./pipelines.d --redis redis://localhost:6379 --health-addr :9090`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return withCode(exitUsage, err)
			}
			return runScheduler(cmd.Context(), o, cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	o.Pipelines.add(f)
	o.Redis.add(f, "Redis URL of the queue and run state (default: "+envRedisURL+")")
	f.StringVar(&o.Queue, "queue", worker.DefaultQueue, "asynq queue the workers serve (runs are enqueued there)")
	f.StringVar(&o.HealthAddr, "health-addr", "", "serve /healthz, /readyz and /metrics on this address (host:port), e.g. :9090")
	f.StringVar(&o.MetricsAddr, "metrics-addr", "", "the same server as --health-addr (the name the worker uses)")
	f.BoolVar(&o.Pprof, "pprof", false, "also serve Go's profiles under /debug/pprof/ on the health server")
	f.BoolVar(&o.UI, "ui", false, "also serve the web UI (threadmill ui: runs in Redis and ./"+pipelines.DefaultOutputDir+", these schedules) under /ui/ on the health server")
	f.DurationVar(&o.SyncInterval, "sync-interval", time.Minute, "rescan the directory and catch up this often, even without file events")
	f.BoolVar(&o.NoWatch, "no-watch", false, "do not watch the directory for changes; rescan every --sync-interval only")
	o.Log.add(f, "info")
	return cmd
}

// runScheduler schedules until ctx ends.
func runScheduler(ctx context.Context, o *schedulerOptions, stderr io.Writer) error {
	lookup := envLookup(o.LookupEnv)
	dir, dirSource := o.Pipelines.resolve(lookup)
	if err := checkPipelinesDir(dir, dirSource); err != nil {
		return err
	}
	redisURL, source, err := o.Redis.required(lookup)
	if err != nil {
		return err
	}
	log, err := o.Log.logger(stderr, urlPassword(redisURL))
	if err != nil {
		return withCode(exitUsage, err)
	}
	rc, err := connectRedis(ctx, redisURL, source, 16)
	if err != nil {
		return err
	}
	defer rc.Close()
	store := runstore.New(rc.RDB, "")
	q := asynqClient(rc.RDB)
	defer q.Close()
	m := metrics.New(metrics.Options{Version: buildVersion(), Role: "scheduler"})
	m.Registry().MustRegister(metrics.NewQueueCollector(asynq.NewInspectorFromRedisClient(rc.RDB), []string{scheduler.DefaultQueue, o.Queue}, log))

	s, err := scheduler.New(scheduler.Config{
		Dir:  dir,
		Load: func(path string) (*pipelines.Pipeline, error) { return pipelines.Load(path, lookup) },
		RDB:  rc.RDB,
		// Scheduled runs go to the priority queue: they start on time even
		// behind a bulk run.
		Starter:      &scheduler.JobsStarter{Client: q, Store: store, Opts: []asynq.Option{asynq.Queue(worker.PriorityQueue(o.Queue))}},
		Prefix:       store.Prefix(),
		SyncInterval: o.SyncInterval,
		NoWatch:      o.NoWatch,
		Logger:       log,
		Observer:     m,
	})
	if err != nil {
		return err
	}
	if o.HealthAddr != "" {
		mux := http.NewServeMux()
		mux.Handle("GET /healthz", s.HealthHandler())
		mux.Handle("GET /readyz", s.HealthHandler())
		mux.Handle("GET /metrics", promhttp.HandlerFor(m.Registry(), promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
		if o.Pprof {
			metrics.AddPprof(mux)
		}
		var ui *webui.Server
		if o.UI {
			if ui, err = newWebUI(pipelines.DefaultOutputDir, dir, rc.RDB, o.Queue, uiMountPath, lookup, log); err != nil {
				return err
			}
			mux.Handle(uiMountPath+"/", ui)
		}
		hs, err := metrics.Listen(o.HealthAddr, mux, log)
		if err != nil {
			return fmt.Errorf("%s: %w", o.addrFlag(), err)
		}
		defer func() {
			if ui != nil {
				ui.Close() // ends the live streams, which Shutdown would wait for
			}
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			_ = hs.Shutdown(sctx)
		}()
		if o.ready != nil {
			o.ready(hs.Addr())
		}
	} else if o.ready != nil {
		o.ready("")
	}
	log.Info("scheduling", "dir", dir, "dir_source", dirSource, "redis", rc.Display, "queue", o.Queue)
	return s.Run(ctx)
}
