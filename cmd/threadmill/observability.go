package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/pflag"

	"github.com/threadmill/threadmill/metrics"
	"github.com/threadmill/threadmill/webui"
	"github.com/threadmill/threadmill/worker"
)

// The worker reports to the metrics.
var _ worker.Observer = (*metrics.Metrics)(nil)

// metricsFlags is the --metrics-addr flag of the long-running commands.
type metricsFlags struct {
	Addr string
	// Pprof also serves /debug/pprof/ on Addr.
	Pprof bool
	// UI also serves the web UI under /ui/ on Addr (observability.UI).
	UI bool
}

func (m *metricsFlags) add(f *pflag.FlagSet) {
	m.addServer(f)
	f.BoolVar(&m.UI, "ui", false, "also serve the web UI (threadmill ui) under /ui/ on --metrics-addr")
}

// addServer adds --metrics-addr and --pprof, without --ui: for `run`.
func (m *metricsFlags) addServer(f *pflag.FlagSet) {
	f.StringVar(&m.Addr, "metrics-addr", "", "serve /metrics, /healthz and /readyz on this address (host:port, e.g. :9090); empty: off")
	f.BoolVar(&m.Pprof, "pprof", false, "also serve Go's profiles under /debug/pprof/ on --metrics-addr (see where time and memory go)")
}

// validate checks that --pprof has an address to be served on.
func (m *metricsFlags) validate() error {
	if m.Pprof && m.Addr == "" {
		return errors.New("--pprof needs --metrics-addr: the profiles are served there")
	}
	if m.UI && m.Addr == "" {
		return errors.New("--ui needs --metrics-addr: the web UI is served there")
	}
	return nil
}

// observability is the metrics of one process and, when an address was
// given, the HTTP server that exposes them with the health endpoints.
type observability struct {
	Metrics *metrics.Metrics
	Health  *metrics.Health
	// UI is the web UI that --ui mounts under /ui/; set it before serve.
	UI  *webui.Server
	srv *metrics.Server
}

// newObservability creates the metrics of a process in role ("worker",
// "run"); nothing is served until serve.
func newObservability(role string) *observability {
	return &observability{
		Metrics: metrics.New(metrics.Options{Version: buildVersion(), Role: role}),
		Health:  &metrics.Health{},
	}
}

// serve adds the Redis readiness check and the asynq queue sizes of queues,
// then listens on addr (nothing when addr is empty). A bad or busy address
// is an error naming the flag.
func (o *observability) serve(flags metricsFlags, rdb redis.UniversalClient, queues []string, log *slog.Logger) error {
	o.Health.AddReadiness("redis", metrics.RedisCheck(rdb))
	o.Metrics.Registry().MustRegister(metrics.NewQueueCollector(asynq.NewInspectorFromRedisClient(rdb), queues, log))
	if flags.Addr == "" {
		return nil
	}
	mux := metrics.NewServeMux(o.Metrics.Registry(), o.Health)
	if flags.Pprof {
		metrics.AddPprof(mux)
	}
	if flags.UI && o.UI != nil {
		mux.Handle(uiMountPath+"/", o.UI)
	}
	srv, err := metrics.Listen(flags.Addr, mux, log)
	if err != nil {
		return fmt.Errorf("--metrics-addr: %w", err)
	}
	o.srv = srv
	return nil
}

// Addr is the address served, "" when none.
func (o *observability) Addr() string {
	if o.srv == nil {
		return ""
	}
	return o.srv.Addr()
}

// Close stops the server, letting open scrapes finish for a few seconds.
func (o *observability) Close() {
	if o.UI != nil {
		o.UI.Close()
	}
	if o.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = o.srv.Shutdown(ctx)
}

// httpClient returns the Workspace client's HTTP client with every request
// counted and timed: the workspace package's default (a pooled transport,
// no redirects) wrapped by the metrics.
func (o *observability) httpClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 256
	tr.MaxIdleConnsPerHost = 64
	return &http.Client{
		Transport: o.Metrics.InstrumentTransport(tr),
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}
