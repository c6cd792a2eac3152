package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/runstore"
	"github.com/threadmill/threadmill/webui"
	"github.com/threadmill/threadmill/worker"
)

// defaultUIAddr is where `threadmill ui` listens unless --addr says
// otherwise: this machine only.
const defaultUIAddr = "127.0.0.1:8088"

// uiMountPath is where --ui mounts the web UI on a worker's or scheduler's
// metrics server.
const uiMountPath = "/ui"

// uiOptions are the inputs of `threadmill ui`.
type uiOptions struct {
	Addr       string
	ResultsDir string
	Pipelines  pipelinesDirFlag
	Redis      redisFlags
	Queue      string
	Log        logFlags
	LookupEnv  func(string) (string, bool)
	// ready, when set, is called with the address served (tests).
	ready func(addr string)
}

func newUICmd() *cobra.Command {
	o := &uiOptions{}
	cmd := &cobra.Command{
		Use:   "ui",
		Short: "Serve web pages of the runs, their reports and the schedules",
		Long: `Serve a web UI: the runs (the same as ` + "`threadmill runs`" + `), filterable by pipeline
and status, newest first, with the live progress of runs in flight; each
run's report (Markdown rendered to sanitised HTML), its items with their
state, tokens, latency, attempts and error, each item's output, the usage
per step, the window and the pipeline's content hash, and links to its
report.md, results.jsonl, errors.jsonl and run.json; and the schedules of a
pipelines directory with their next fire times and last run.

Runs come from the results root (--results) and, with a Redis (--redis or
` + envRedisURL + `), from the run state there: runs in flight, with progress that
updates by itself. No file outside the results root is ever served.

The UI listens on 127.0.0.1 unless --addr says otherwise. Actions (cancel a
run, retry its failed, skipped and canceled items) are off unless
` + webui.TokenEnv + ` is set: a person then logs in with its value, and each
action is a POST carrying a CSRF token; actions need --redis.

Workers and schedulers can serve the same pages under /ui/ on their
metrics server: give them --ui.

` + redisURLHelp,
		Example: `  threadmill ui
  threadmill ui --addr 127.0.0.1:8088 --results /srv/threadmill/results --redis redis://localhost:6379 --pipelines ./pipelines.d`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, _, err := net.SplitHostPort(o.Addr); err != nil {
				return withCode(exitUsage, fmt.Errorf("--addr %q: want host:port, e.g. 127.0.0.1:8088: %w", o.Addr, err))
			}
			return runUI(cmd.Context(), o, cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Addr, "addr", defaultUIAddr, "address to listen on (host:port; port 0 picks a free one)")
	f.StringVar(&o.ResultsDir, "results", pipelines.DefaultOutputDir, "results root whose runs to show")
	o.Pipelines.add(f)
	o.Redis.add(f, "Redis URL of the run state (default: "+envRedisURL+"; none: the results root only, no live progress, no actions)")
	f.StringVar(&o.Queue, "queue", worker.DefaultQueue, "asynq queue the workers serve (a retried run is enqueued there)")
	o.Log.add(f, "info")
	return cmd
}

// runUI serves the UI until ctx ends.
func runUI(ctx context.Context, o *uiOptions, stderr io.Writer) error {
	lookup := envLookup(o.LookupEnv)
	redisURL, source := o.Redis.resolve(lookup)
	token, _ := lookup(webui.TokenEnv)
	log, err := o.Log.logger(stderr, token, urlPassword(redisURL))
	if err != nil {
		return withCode(exitUsage, err)
	}
	pipelinesDir, err := uiPipelinesDir(&o.Pipelines, lookup)
	if err != nil {
		return err
	}
	var rdb redis.UniversalClient
	if redisURL != "" {
		rc, err := connectRedis(ctx, redisURL, source, 8)
		if err != nil {
			return err
		}
		defer rc.Close()
		rdb = rc.RDB
	}
	ui, err := newWebUI(o.ResultsDir, pipelinesDir, rdb, o.Queue, "", lookup, log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return fmt.Errorf("--addr: %w", err)
	}
	srv := &http.Server{Handler: ui, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	actions := "off (set " + webui.TokenEnv + " to enable them)"
	if ui.ActionsEnabled() {
		actions = "on"
	}
	fmt.Fprintf(stderr, "threadmill ui: serving http://%s/ (results %s; actions %s)\n", ln.Addr(), o.ResultsDir, actions)
	if ap, err := netip.ParseAddrPort(ln.Addr().String()); err == nil && !ap.Addr().IsLoopback() {
		log.Warn("the web UI is reachable from other machines, and its pages have no login: put it behind an authenticating proxy", "addr", ln.Addr().String())
	}
	if o.ready != nil {
		o.ready(ln.Addr().String())
	}
	select {
	case err := <-done:
		return fmt.Errorf("ui: %w", err)
	case <-ctx.Done():
	}
	ui.Close()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("ui: shutdown: %w", err)
	}
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// uiPipelinesDir is the directory whose schedules the UI lists: the flag's
// or the variable's (which must exist), else ./pipelines.d when it exists,
// else none.
func uiPipelinesDir(p *pipelinesDirFlag, lookup func(string) (string, bool)) (string, error) {
	dir, source := p.resolve(lookup)
	if source == "default" {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return "", nil
		}
		return dir, nil
	}
	if err := checkPipelinesDir(dir, source); err != nil {
		return "", err
	}
	return dir, nil
}

// newWebUI builds the web UI over a results root, a pipelines directory
// ("" for none) and, when rdb is not nil, the run state in Redis; prefix
// is the path it is mounted under. Actions are on when THREADMILL_UI_TOKEN
// is set.
func newWebUI(root, pipelinesDir string, rdb redis.UniversalClient, queue, prefix string, lookup func(string) (string, bool), log *slog.Logger) (*webui.Server, error) {
	opts := webui.Options{
		Root:         root,
		Queue:        queue,
		PipelinesDir: pipelinesDir,
		Load:         func(path string) (*pipelines.Pipeline, error) { return pipelines.Load(path, lookup) },
		Prefix:       prefix,
		Logger:       log,
	}
	if tok, ok := lookup(webui.TokenEnv); ok {
		opts.Token = tok
	}
	if rdb != nil {
		opts.Store = runstore.New(rdb, "")
	}
	return webui.New(opts)
}
