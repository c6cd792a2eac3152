package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/threadmill/threadmill/examples"
	"github.com/threadmill/threadmill/workspace"
	"github.com/threadmill/threadmill/workspace/simulator"
)

// simulateOptions are the flags of `threadmill simulate`.
type simulateOptions struct {
	Addr string
	// CompatSpec is --compat, KEY=VALUE,... (simulator.ParseCompat);
	// Compat is what it parsed to.
	CompatSpec string
	Compat     simulator.Compat
	Artifacts  string // directory; empty: the embedded corpus
	// Spread dates the documents' updated_at evenly over the time before
	// the simulator started; 0 stamps them all with its start.
	Spread    time.Duration
	Project   string
	Org       string
	TokenEnv  string // name of the environment variable holding the token
	tokenSet  bool   // --token-env given explicitly
	Async     bool
	Latency   time.Duration
	PerToken  time.Duration
	Jitter    time.Duration
	Ping      time.Duration
	RateLimit float64
	RateBurst int
	Fault5xx  float64
	Faults    simulator.Faults
	Verbose   bool

	lookupEnv func(string) (string, bool)
}

// validate checks the options; messages name the flag.
func (o *simulateOptions) validate() error {
	rates := []struct {
		flag string
		v    float64
	}{
		{"--fault-5xx", o.Fault5xx}, {"--fault-500", o.Faults.Error500}, {"--fault-502", o.Faults.Error502},
		{"--fault-503", o.Faults.Error503}, {"--fault-429", o.Faults.TooMany429}, {"--fault-cut", o.Faults.CutStream},
		{"--fault-slow", o.Faults.Slow}, {"--fault-interaction-error", o.Faults.InteractionError},
		{"--fault-lost-create", o.Faults.LostCreate}, {"--fault-replica-lag", o.Faults.ReplicaLag},
	}
	for _, r := range rates {
		if !(r.v >= 0 && r.v <= 1) { // NaN fails too
			return fmt.Errorf("%s must be a rate in [0, 1], got %g", r.flag, r.v)
		}
	}
	if o.Faults.InvalidJSON < 0 {
		return fmt.Errorf("--fault-invalid-json must be 0 or more, got %d", o.Faults.InvalidJSON)
	}
	if sum := o.Fault5xx + o.Faults.Error500 + o.Faults.Error502 + o.Faults.Error503 + o.Faults.TooMany429; sum > 1 {
		return fmt.Errorf("--fault-5xx, --fault-500, --fault-502, --fault-503 and --fault-429 add up to %g; their sum must not exceed 1", sum)
	}
	durs := []struct {
		flag string
		v    time.Duration
	}{
		{"--latency", o.Latency}, {"--per-token", o.PerToken}, {"--jitter", o.Jitter}, {"--ping", o.Ping},
		{"--retry-after", o.Faults.RetryAfter}, {"--slow-delay", o.Faults.SlowDelay}, {"--lag-duration", o.Faults.LagDuration},
	}
	for _, d := range durs {
		if d.v < 0 {
			return fmt.Errorf("%s must not be negative, got %s", d.flag, d.v)
		}
	}
	if !(o.RateLimit >= 0) || math.IsInf(o.RateLimit, 1) {
		return fmt.Errorf("--rate-limit must be >= 0 requests per second, got %g", o.RateLimit)
	}
	if o.RateBurst < 0 {
		return fmt.Errorf("--rate-burst must be >= 0, got %d", o.RateBurst)
	}
	if o.Artifacts != "" {
		st, err := os.Stat(o.Artifacts)
		if err != nil {
			return fmt.Errorf("--artifacts: %w", err)
		}
		if !st.IsDir() {
			return fmt.Errorf("--artifacts: %s is not a directory", o.Artifacts)
		}
	}
	if err := checkListenAddr(o.Addr); err != nil {
		return fmt.Errorf("--addr %q: %w", o.Addr, err)
	}
	if strings.TrimSpace(o.Project) == "" {
		return errors.New("--project must not be empty")
	}
	c, err := simulator.ParseCompat(o.CompatSpec)
	if err != nil {
		return fmt.Errorf("--compat: %w", err)
	}
	if o.Async && c.Create == simulator.CreateBlocking {
		return errors.New("--async contradicts --compat create=blocking")
	}
	o.Compat = c
	o.Async = o.Async || c.Create == simulator.CreateAsync
	if strings.TrimSpace(o.Org) == "" {
		return errors.New("--org must not be empty")
	}
	return nil
}

// checkListenAddr checks the form of a host:port listen address, so that a
// typo is a usage error rather than a failure to listen.
func checkListenAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want host:port, e.g. 127.0.0.1:8080: %w", err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port %q is not a number in [0, 65535]", port)
	}
	return nil
}

func newSimulateCmd() *cobra.Command {
	o := &simulateOptions{lookupEnv: os.LookupEnv}
	cmd := &cobra.Command{
		Use:   "simulate",
		Short: "Serve an in-memory Workspace API seeded with an artifact corpus",
		Long: `Serve a simulated Zylon Workspace API for demos, tests and benchmarks.

The project holds the artifacts of --artifacts (default: the corpus embedded
from examples/artifacts): each folder becomes a Folder artifact and each .md
or .txt file a Document artifact. Threads, interactions and chats are kept in
memory; answers are extracted deterministically from the referenced
artifacts, and token usage follows threadmill's estimate (4 bytes a token).

Every /api/v1/app/* request needs the x-org header. When the environment
variable named by --token-env (default WORKSPACE_API_TOKEN) is set, requests
also need "Authorization: Bearer <that token>".

Knobs: --async makes interactions complete in the background while their
stream delivers deltas; --latency/--per-token/--jitter shape the timing;
--rate-limit answers 429 with Retry-After beyond N requests per second; the
--fault-* rates inject 5xx, 429, cut streams, slow answers, failed
interactions and lost create responses. --compat serves an older or
different server: profile=oldest|newest sets every switch at once (the
keys after it override), routes=project answers the project-scoped thread
and interaction routes of servers up to spec 2025-11 (the current ones
answer a route-level 404), create=async is --async, validate-400=detail-list|
detail-string|message|error|text changes the body of a 400 from
/app/chat/validate, artifact-size=without drops content_length from the
artifacts' props (no size to estimate tokens with), finished-stream=close|409 changes what the stream of a
finished interaction answers, cancel-end=error|stop the state and stop
reason a cancelled interaction ends in, chat-usage=without drops usage and
stop_reason from /app/chat answers, max-page-size=N answers a larger
page_size with a FastAPI-style 422, pagination=cursor ignores page and pages
only by after/next_cursor. Counters are served at GET /_sim/counters.`,
		Example: `  threadmill simulate
  threadmill simulate --artifacts examples/artifacts --addr 127.0.0.1:8080
  threadmill simulate --async --latency 200ms --per-token 5ms --fault-5xx 0.1 --fault-429 0.05
  threadmill simulate --compat routes=project,finished-stream=409
  threadmill simulate --compat profile=oldest`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.tokenSet = cmd.Flags().Changed("token-env")
			if err := o.validate(); err != nil {
				return withCode(exitUsage, err)
			}
			return runSimulate(cmd.Context(), o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Addr, "addr", "127.0.0.1:8080", "address to listen on (host:port; port 0 picks a free port)")
	f.StringVar(&o.Artifacts, "artifacts", "", "directory of .md/.txt files to serve as artifacts (default: the embedded examples/artifacts corpus)")
	f.StringVar(&o.Project, "project", simulator.DefaultProjectID, "id of the simulated project")
	f.StringVar(&o.Org, "org", simulator.DefaultOrg, "accepted x-org value (org slug; comma-separated for several)")
	f.StringVar(&o.TokenEnv, "token-env", "WORKSPACE_API_TOKEN", "environment variable holding the Bearer token to require (unset: no token required)")
	f.BoolVar(&o.Async, "async", false, "create interactions as Processing and complete them in the background")
	f.DurationVar(&o.Latency, "latency", 0, "time to the first output token")
	f.DurationVar(&o.PerToken, "per-token", 0, "time per output token")
	f.DurationVar(&o.Jitter, "jitter", 0, "uniform random offset in [-jitter, +jitter] added to --latency")
	f.DurationVar(&o.Ping, "ping", time.Second, "interval of ping keep-alives on streams of processing interactions")
	f.Float64Var(&o.RateLimit, "rate-limit", 0, "requests per second accepted on /api/v1/app/* (0: no limit)")
	f.IntVar(&o.RateBurst, "rate-burst", 0, "burst of the rate limit (0: ceil(rate-limit))")
	f.Float64Var(&o.Fault5xx, "fault-5xx", 0, "rate of 5xx answers, spread evenly over 500, 502 and 503")
	f.Float64Var(&o.Faults.Error500, "fault-500", 0, "rate of 500 answers")
	f.Float64Var(&o.Faults.Error502, "fault-502", 0, "rate of 502 answers (HTML body, like a proxy)")
	f.Float64Var(&o.Faults.Error503, "fault-503", 0, "rate of 503 answers (with Retry-After)")
	f.Float64Var(&o.Faults.TooMany429, "fault-429", 0, "rate of 429 answers (with Retry-After)")
	f.DurationVar(&o.Faults.RetryAfter, "retry-after", time.Second, "Retry-After of injected 429 and 503 answers (whole seconds, rounded up)")
	f.Float64Var(&o.Faults.CutStream, "fault-cut", 0, "rate of interaction streams cut midway")
	f.Float64Var(&o.Faults.Slow, "fault-slow", 0, "rate of requests delayed by --slow-delay")
	f.DurationVar(&o.Faults.SlowDelay, "slow-delay", 2*time.Second, "delay of a slow request")
	f.Float64Var(&o.Faults.InteractionError, "fault-interaction-error", 0, "rate of interactions that end in state Error")
	f.Float64Var(&o.Faults.LostCreate, "fault-lost-create", 0, "rate of interactions created but answered 504, as by a proxy that timed out")
	f.Float64Var(&o.Faults.ReplicaLag, "fault-replica-lag", 0, "rate of created interactions that answer 404 for --lag-duration after their 201, as a lagging read replica")
	f.DurationVar(&o.Faults.LagDuration, "lag-duration", simulator.DefaultLagDuration, "how long a lagging interaction answers 404")
	f.IntVar(&o.Faults.InvalidJSON, "fault-invalid-json", 0, "the first N response_format answers of each thread (or chat) are invalid for their schema, to exercise repair turns")
	f.DurationVar(&o.Spread, "spread", 14*24*time.Hour, "date the documents' updated_at evenly over this time before now, as if they arrived over it (0: all now); any weekly window of the last two weeks then holds about half of them")
	f.Uint64Var(&o.Faults.Seed, "seed", 1, "seed of the fault and jitter random source")
	f.BoolVar(&o.Verbose, "verbose", false, "log every request to stderr")
	f.StringVar(&o.CompatSpec, "compat", "", "serve an older or different server, KEY=VALUE,...: profile=oldest|newest (every switch; keys after it override), routes=current|project (project: the project-scoped routes of spec <= 2025-11), create=blocking|async, validate-400=valid|detail-list|detail-string|message|error|text, artifact-size=with|without, finished-stream=replay|close|409, cancel-end=completed|error|stop, chat-usage=with|without, max-page-size=N, pagination=page|cursor (see docs/compatibility.md)")
	return cmd
}

// runSimulate serves the simulator until ctx is done.
func runSimulate(ctx context.Context, o *simulateOptions, stdout, stderr io.Writer) error {
	level := slog.LevelInfo
	if o.Verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	token := ""
	if v, ok := o.lookupEnv(o.TokenEnv); ok && v != "" {
		token = v
	} else if o.tokenSet {
		return withCode(exitUsage, fmt.Errorf("--token-env: environment variable %s is not set or empty", o.TokenEnv))
	}
	faults := o.Faults
	faults.Error500 += o.Fault5xx / 3
	faults.Error502 += o.Fault5xx / 3
	faults.Error503 += o.Fault5xx / 3

	sim := simulator.New(simulator.Config{
		ProjectID:      o.Project,
		Org:            o.Org,
		Token:          token,
		Async:          o.Async,
		Latency:        o.Latency,
		PerOutputToken: o.PerToken,
		Jitter:         o.Jitter,
		PingInterval:   o.Ping,
		Faults:         faults,
		RateLimit:      o.RateLimit,
		RateBurst:      o.RateBurst,
		Logger:         logger,
		Compat:         o.Compat,
	})
	defer sim.Close()

	var fsys fs.FS = examples.Artifacts
	source := "examples/artifacts (embedded)"
	if o.Artifacts != "" {
		fsys, source = os.DirFS(o.Artifacts), o.Artifacts
	}
	if err := sim.AddDir(fsys, "."); err != nil {
		return fmt.Errorf("--artifacts %s: %w", source, err)
	}
	if !hasDocuments(sim) {
		return withCode(exitUsage, fmt.Errorf("--artifacts %s: no .md, .markdown, .txt or .text files found; the project would be empty", source))
	}
	if err := spreadDates(sim, time.Now(), o.Spread); err != nil {
		return err
	}

	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", o.Addr)
	if err != nil {
		return fmt.Errorf("--addr: %w", err)
	}
	base := "http://" + displayAddr(ln.Addr().(*net.TCPAddr))
	srv := &http.Server{
		Handler:           sim,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	printBanner(stdout, o, sim, base, source, token != "")

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("simulator: %w", err)
	case <-ctx.Done():
	}
	logger.Info("simulator: shutting down")
	sim.Close() // ends open streams so that Shutdown does not wait for them
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("simulator: shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("simulator: %w", err)
	}
	c := sim.Counters()
	requests := 0
	for _, byStatus := range c.Requests {
		for _, n := range byStatus {
			requests += n
		}
	}
	logger.Info("simulator: stopped", "requests", requests, "interactions", c.InteractionsCreated,
		"chats", c.ChatsAnswered, "tokens_in", c.TokensIn, "tokens_out", c.TokensOut)
	return nil
}

// hasDocuments reports whether the simulator holds any non-folder artifact.
func hasDocuments(sim *simulator.Server) bool {
	for _, a := range sim.Artifacts() {
		if a.Type != workspace.ArtifactTypeFolder {
			return true
		}
	}
	return false
}

// displayAddr turns a listener address into one a client can dial.
func displayAddr(a *net.TCPAddr) string {
	host := a.IP.String()
	if a.IP == nil || a.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, fmt.Sprint(a.Port))
}

func printBanner(w io.Writer, o *simulateOptions, sim *simulator.Server, base, source string, auth bool) {
	docs, folders := 0, 0
	for _, a := range sim.Artifacts() {
		if a.Type == workspace.ArtifactTypeFolder {
			folders++
		} else {
			docs++
		}
	}
	org := strings.TrimSpace(strings.Split(o.Org, ",")[0])
	authLine := fmt.Sprintf("none (set %s to require a Bearer token)", o.TokenEnv)
	authHeader := ""
	if auth {
		authLine = fmt.Sprintf("Bearer token from $%s", o.TokenEnv)
		authHeader = fmt.Sprintf(` -H "Authorization: Bearer $%s"`, o.TokenEnv)
	}
	mode := "sync"
	if o.Async {
		mode = "async"
	}
	fmt.Fprintf(w, "threadmill simulator listening on %s\n", base)
	fmt.Fprintf(w, "  base URL:  %s\n", base)
	fmt.Fprintf(w, "  project:   %s\n", sim.ProjectID())
	fmt.Fprintf(w, "  org:       %s\n", org)
	fmt.Fprintf(w, "  auth:      %s\n", authLine)
	fmt.Fprintf(w, "  artifacts: %d documents in %d folders from %s\n", docs, folders, source)
	fmt.Fprintf(w, "  mode:      %s, latency %s + %s/token\n", mode, o.Latency, o.PerToken)
	if c := o.Compat.String(); c != "" {
		fmt.Fprintf(w, "  compat:    %s\n", c)
	}
	fmt.Fprintf(w, "  counters:  %s/_sim/counters\n", base)
	fmt.Fprintf(w, "try:\n  curl -s -H 'x-org: %s'%s '%s/api/v1/app/project/%s/artifact?include_descendants=true&type=Document&page_size=5'\n",
		org, authHeader, base, sim.ProjectID())
}

// spreadDates dates the simulator's documents' updated_at evenly over the
// span before now, in the order they were added: a corpus that arrived
// over time, of which `updated: within_run_window` selects a part.
func spreadDates(sim *simulator.Server, now time.Time, span time.Duration) error {
	if span <= 0 {
		return nil
	}
	var docs []workspace.Artifact
	for _, a := range sim.Artifacts() {
		if a.Type != workspace.ArtifactTypeFolder {
			docs = append(docs, a)
		}
	}
	for i, a := range docs {
		at := now.Add(-span + span*time.Duration(i+1)/time.Duration(len(docs)+1))
		if err := sim.SetUpdatedAt(a.ID, at); err != nil {
			return fmt.Errorf("simulator: date artifact %s: %w", a.ID, err)
		}
	}
	return nil
}
