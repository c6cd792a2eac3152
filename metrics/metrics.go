// Package metrics exposes threadmill's Prometheus metrics and its health
// endpoints.
//
// One *Metrics holds every collector of a process in its own registry (never
// the global one). Workers record items, retries, tokens and rate-limit waits
// through its methods; API requests are counted by wrapping the Workspace
// client's transport with InstrumentTransport; queue sizes are read from
// asynq's Inspector at scrape time by a QueueCollector. NewServeMux serves
// /metrics, /healthz and /readyz.
//
// Every recording method is safe for concurrent use and does nothing on a nil
// *Metrics, so code that was given no metrics needs no checks.
package metrics

import (
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Namespace prefixes every metric name.
const Namespace = "threadmill"

// Item states, as recorded by ItemFinished.
const (
	StateSucceeded = "succeeded"
	StateFailed    = "failed"
	StateSkipped   = "skipped"
)

// Options configure New.
type Options struct {
	// Version is reported in threadmill_build_info; default "(devel)".
	Version string
	// Role is the process's role ("worker", "scheduler", "run"), reported
	// in threadmill_build_info; default "".
	Role string
	// NoRuntimeCollectors leaves out the Go runtime and process collectors
	// (for tests that compare the whole output); default false.
	NoRuntimeCollectors bool
}

// Metrics is the set of threadmill collectors in one registry.
type Metrics struct {
	reg *prometheus.Registry

	items         *prometheus.CounterVec
	itemDuration  *prometheus.HistogramVec
	itemsInFlight *prometheus.GaugeVec
	retries       *prometheus.CounterVec
	tokens        *prometheus.CounterVec
	rateWait      *prometheus.HistogramVec
	runs          *prometheus.CounterVec

	apiRequests    *prometheus.CounterVec
	apiDuration    *prometheus.HistogramVec
	apiRateLimited *prometheus.CounterVec
	apiInFlight    prometheus.Gauge

	fleetPause       prometheus.Gauge
	adaptiveRate     prometheus.Gauge
	retryAfterCapped prometheus.Counter

	schedFires    *prometheus.CounterVec
	schedSkipped  *prometheus.CounterVec
	schedEntries  prometheus.Gauge
	schedLastSync prometheus.Gauge
	schedInvalid  prometheus.Gauge
}

// New returns a Metrics with all collectors registered in a fresh registry.
func New(opts Options) *Metrics {
	if opts.Version == "" {
		opts.Version = "(devel)"
	}
	reg := prometheus.NewRegistry()
	m := &Metrics{reg: reg}
	f := func(c prometheus.Collector) { reg.MustRegister(c) }

	m.items = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "items_total",
		Help: "Work items finished, by pipeline, step and final state (succeeded, failed, skipped).",
	}, []string{"pipeline", "step", "state"})
	m.itemDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Name: "item_duration_seconds",
		Help:    "Time from the first attempt of a work item to its final state.",
		Buckets: prometheus.ExponentialBuckets(0.05, 2, 14), // 50ms .. ~7min
	}, []string{"pipeline", "step"})
	m.itemsInFlight = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "items_in_flight",
		Help: "Work items being processed by this process right now.",
	}, []string{"pipeline"})
	m.retries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "item_retries_total",
		Help: "Attempts of work items that failed and were scheduled again, by reason (rate_limited, server_error, network, timeout, other).",
	}, []string{"pipeline", "step", "reason"})
	m.tokens = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "tokens_total",
		Help: "Tokens billed by the Workspace API, by pipeline, step and direction (in, out).",
	}, []string{"pipeline", "step", "direction"})
	m.rateWait = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Name: "rate_limit_wait_seconds",
		Help:    "Time spent waiting because of a limit, by limiter: requests (requests per minute, and the fleet-wide pause after a 429), tokens (tokens per minute), concurrency (items in flight).",
		Buckets: prometheus.ExponentialBuckets(0.01, 3, 10), // 10ms .. ~3min
	}, []string{"pipeline", "limiter"})
	m.runs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "runs_total",
		Help: "Runs finalized by this process, by pipeline and status.",
	}, []string{"pipeline", "status"})

	m.apiRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "api_requests_total",
		Help: "Workspace API requests, by endpoint (route pattern), method and status code (\"error\" when no response came back).",
	}, []string{"endpoint", "method", "code"})
	m.apiDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Name: "api_request_duration_seconds",
		Help:    "Time until the Workspace API's response headers arrived, by endpoint and method.",
		Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 12), // 5ms .. ~20min
	}, []string{"endpoint", "method"})
	m.apiRateLimited = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "api_rate_limited_total",
		Help: "Workspace API responses with status 429 Too Many Requests, by endpoint.",
	}, []string{"endpoint"})
	m.apiInFlight = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "api_requests_in_flight",
		Help: "Workspace API requests waiting for their response headers.",
	})

	m.fleetPause = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "fleet_pause_seconds",
		Help: "Time left of the fleet-wide pause the Workspace API asked for (429, or 503 with Retry-After; capped), as this process last read it from Redis.",
	})
	m.adaptiveRate = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "adaptive_request_rate",
		Help: "Requests per second the fleet's adaptive limiter allows to the Workspace API after its 429s; 0 while the limiter is off.",
	})
	m.retryAfterCapped = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace, Name: "api_retry_after_capped_total",
		Help: "Workspace API answers whose Retry-After asked for a longer wait than the worker's cap (--max-retry-after); the cap was waited instead.",
	})

	m.schedFires = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "scheduler_fires_total",
		Help: "Scheduled fire times handled, by pipeline and outcome (created: this scheduler created the run, or started it after it waited; duplicate: another delivery or scheduler already had; queued: the run waits for an earlier run of the pipeline to end; skipped: no run, see threadmill_scheduler_fires_skipped_total).",
	}, []string{"pipeline", "outcome"})
	m.schedSkipped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "scheduler_fires_skipped_total",
		Help: "Scheduled fire times for which no run was started, by pipeline and reason (overlap: an earlier run of the pipeline was still active and schedule.overlap is skip).",
	}, []string{"pipeline", "reason"})
	m.schedEntries = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "scheduler_entries",
		Help: "Pipelines currently scheduled.",
	})
	m.schedLastSync = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "scheduler_last_sync_timestamp_seconds",
		Help: "Unix time of the scheduler's last successful read of the pipelines directory.",
	})
	m.schedInvalid = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "scheduler_invalid_files",
		Help: "Pipeline files that failed to load at the last sync (their last good version stays scheduled).",
	})

	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "build_info",
		Help: "Always 1; labels carry the threadmill version, the Go version and the process role.",
	}, []string{"version", "goversion", "role"})
	build.WithLabelValues(opts.Version, runtime.Version(), opts.Role).Set(1)

	for _, c := range []prometheus.Collector{
		m.items, m.itemDuration, m.itemsInFlight, m.retries, m.tokens, m.rateWait, m.runs,
		m.apiRequests, m.apiDuration, m.apiRateLimited, m.apiInFlight,
		m.fleetPause, m.adaptiveRate, m.retryAfterCapped,
		m.schedFires, m.schedSkipped, m.schedEntries, m.schedLastSync, m.schedInvalid, build,
	} {
		f(c)
	}
	if !opts.NoRuntimeCollectors {
		f(collectors.NewGoCollector())
		f(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	return m
}

// Registry returns the registry holding every collector, to register more
// (such as a QueueCollector) or to gather.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// ItemStarted marks one item of pipeline as in flight in this process; call
// the returned function when its attempt ends.
func (m *Metrics) ItemStarted(pipeline string) (done func()) {
	if m == nil {
		return func() {}
	}
	g := m.itemsInFlight.WithLabelValues(pipeline)
	g.Inc()
	return g.Dec
}

// ItemFinished records that an item reached its final state (StateSucceeded,
// StateFailed or StateSkipped) after d since its first attempt.
func (m *Metrics) ItemFinished(pipeline, step, state string, d time.Duration) {
	if m == nil {
		return
	}
	m.items.WithLabelValues(pipeline, step, state).Inc()
	if d > 0 {
		m.itemDuration.WithLabelValues(pipeline, step).Observe(d.Seconds())
	}
}

// ItemRetried records that an attempt failed and the item will be tried
// again, for reason (e.g. "rate_limited", "server_error", "network",
// "timeout", "other").
func (m *Metrics) ItemRetried(pipeline, step, reason string) {
	if m == nil {
		return
	}
	m.retries.WithLabelValues(pipeline, step, reason).Inc()
}

// TokensUsed adds the usage the API billed for one item.
func (m *Metrics) TokensUsed(pipeline, step string, in, out int64) {
	if m == nil {
		return
	}
	if in > 0 {
		m.tokens.WithLabelValues(pipeline, step, "in").Add(float64(in))
	}
	if out > 0 {
		m.tokens.WithLabelValues(pipeline, step, "out").Add(float64(out))
	}
}

// RateLimitWaited records d spent waiting on limiter ("requests",
// "tokens" or "concurrency") before a request or an item of pipeline.
func (m *Metrics) RateLimitWaited(pipeline, limiter string, d time.Duration) {
	if m == nil {
		return
	}
	m.rateWait.WithLabelValues(pipeline, limiter).Observe(d.Seconds())
}

// RunFinished records a finalized run and its status.
func (m *Metrics) RunFinished(pipeline, status string) {
	if m == nil {
		return
	}
	m.runs.WithLabelValues(pipeline, status).Inc()
}

// RetryAfterCapped records an answer whose Retry-After (asked) was longer
// than the cap, which was waited instead.
func (m *Metrics) RetryAfterCapped(asked, capped time.Duration) {
	if m == nil {
		return
	}
	m.retryAfterCapped.Inc()
}

// FleetPacing records the fleet-wide pause left and the adaptive request
// rate (requests per second, 0 while the adaptive limiter is off), as a
// worker last read them.
func (m *Metrics) FleetPacing(pause time.Duration, rate float64) {
	if m == nil {
		return
	}
	m.fleetPause.Set(pause.Seconds())
	m.adaptiveRate.Set(rate)
}

// SchedulerFired records a fire time handled by the scheduler, with outcome
// "created" (this call created or released the run), "duplicate" (another
// call had), "queued" (the run waits for an earlier run) or "skipped".
func (m *Metrics) SchedulerFired(pipeline, outcome string) {
	if m == nil {
		return
	}
	m.schedFires.WithLabelValues(pipeline, outcome).Inc()
}

// SchedulerSkipped records a fire time for which the scheduler started no
// run, with the reason ("overlap").
func (m *Metrics) SchedulerSkipped(pipeline, reason string) {
	if m == nil {
		return
	}
	m.schedSkipped.WithLabelValues(pipeline, reason).Inc()
}

// SchedulerSynced records a read of the pipelines directory at t: entries
// scheduled and files that failed to load.
func (m *Metrics) SchedulerSynced(t time.Time, entries, invalid int) {
	if m == nil {
		return
	}
	m.schedLastSync.Set(float64(t.UnixNano()) / 1e9)
	m.schedEntries.Set(float64(entries))
	m.schedInvalid.Set(float64(invalid))
}
