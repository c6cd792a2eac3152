// Package redishealth watches a Redis connection for a long-running process
// (a worker, the scheduler): it logs one line when the connection is lost
// and one when it is back, and, while it is down, demotes the flood of
// repeated connection errors that asynq and the process's own Redis calls
// would log to debug level.
package redishealth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Defaults of Config.
const (
	// DefaultInterval is the time between two pings.
	DefaultInterval = 500 * time.Millisecond
	// DefaultPingTimeout bounds one ping.
	DefaultPingTimeout = time.Second
	// DefaultReminder is the time between two "still lost" lines of a long
	// outage.
	DefaultReminder = time.Minute
)

// Config configures a Watcher.
type Config struct {
	// RDB is the client to watch. Required.
	RDB redis.UniversalClient
	// Logger receives the lost, still-lost and restored lines. It must not
	// be a logger wrapped by the watcher's own Handler. Default: discard.
	Logger *slog.Logger
	// Interval is the time between two pings. Default DefaultInterval.
	Interval time.Duration
	// PingTimeout bounds one ping. Default DefaultPingTimeout.
	PingTimeout time.Duration
	// Reminder is the time between two "redis connection still lost"
	// lines while an outage lasts; negative disables them. Default
	// DefaultReminder.
	Reminder time.Duration
}

// Watcher pings a Redis client and tracks whether it answers. Create it with
// New, run it with Run; Handler wraps a log handler so that it quiets down
// while Redis is known to be down.
type Watcher struct {
	cfg  Config
	addr string

	pingMu sync.Mutex
	pinger redis.UniversalClient // see newPinger
	own    bool                  // pinger is the watcher's own client

	down       atomic.Bool
	stopped    atomic.Bool  // Run returned
	suppressed atomic.Int64 // lines demoted during the current outage

	mu        sync.Mutex // guards the fields below and serialises transitions
	changedAt time.Time  // the last transition
	downSince time.Time
	lastWarn  time.Time
	cause     string

	probeMu  sync.Mutex // one probe at a time; the others share its result
	probeGen atomic.Int64
}

// New returns a watcher of cfg.RDB; nothing runs until Run.
func New(cfg Config) *Watcher {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.PingTimeout <= 0 {
		cfg.PingTimeout = DefaultPingTimeout
	}
	if cfg.Reminder == 0 {
		cfg.Reminder = DefaultReminder
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	w := &Watcher{cfg: cfg, addr: Addr(cfg.RDB)}
	w.pinger, w.own = newPinger(cfg.RDB)
	return w
}

// newPinger returns the client the watcher pings with: for a plain client, a
// one-connection copy that neither retries the command nor redials, so that
// a ping fails at once with the real cause (connection refused, ...)
// rather than after the shared pool's retries, with a deadline; for the
// others (Sentinel, Cluster, Ring), rdb itself. own says which.
func newPinger(rdb redis.UniversalClient) (p redis.UniversalClient, own bool) {
	c, ok := rdb.(*redis.Client)
	if !ok || c.Options().Addr == "FailoverClient" {
		return rdb, false
	}
	// Only what reaching the server takes: no pool tuning, no client-side
	// cache, no push-notification state shared with rdb.
	src := c.Options()
	o := &redis.Options{
		Network: src.Network, Addr: src.Addr, Dialer: src.Dialer, ClientName: src.ClientName,
		Protocol: src.Protocol, Username: src.Username, Password: src.Password, DB: src.DB,
		CredentialsProvider: src.CredentialsProvider, CredentialsProviderContext: src.CredentialsProviderContext,
		StreamingCredentialsProvider: src.StreamingCredentialsProvider, TLSConfig: src.TLSConfig,
		DialTimeout: src.DialTimeout, ReadTimeout: src.ReadTimeout, WriteTimeout: src.WriteTimeout,
		DisableIdentity:          true,
		PoolSize:                 1,
		MaxRetries:               -1, // no retry
		DialerRetries:            1,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	}
	return redis.NewClient(o), true
}

// ping pings Redis once. After a failure the watcher's own client is
// replaced by a fresh one: go-redis's pool, once its dials fail, waits a
// second between two dial attempts, and the next ping would report the
// last dial error for up to that long after Redis is back.
func (w *Watcher) ping(ctx context.Context) error {
	w.pingMu.Lock()
	p := w.pinger
	w.pingMu.Unlock()
	err := p.Ping(ctx).Err()
	if err != nil && w.own {
		w.pingMu.Lock()
		if w.pinger == p && !w.stopped.Load() {
			_ = p.Close()
			w.pinger, _ = newPinger(w.cfg.RDB)
		}
		w.pingMu.Unlock()
	}
	return err
}

// Addr names the server of a client for log lines: host:port, the unix
// socket path, or the cluster's seed addresses. It never shows a password.
func Addr(rdb redis.UniversalClient) string {
	switch c := rdb.(type) {
	case *redis.Client:
		return c.Options().Addr // host:port, or the socket path
	case *redis.ClusterClient:
		return strings.Join(c.Options().Addrs, ",")
	case *redis.Ring:
		return "ring"
	}
	return fmt.Sprintf("%T", rdb)
}

// Down reports whether the last ping failed.
func (w *Watcher) Down() bool { return w.down.Load() }

// Run pings every Config.Interval until ctx is done. When it returns, the
// watcher's own connection is closed and the watcher stays quiet: its
// Handler passes every line unchanged. A Watcher runs once.
func (w *Watcher) Run(ctx context.Context) {
	defer func() {
		w.probeMu.Lock()
		w.pingMu.Lock()
		w.stopped.Store(true)
		w.down.Store(false)
		if w.own {
			_ = w.pinger.Close()
		}
		w.pingMu.Unlock()
		w.probeMu.Unlock()
	}()
	t := time.NewTicker(w.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		w.check(ctx)
	}
}

// check pings once and records the outcome.
func (w *Watcher) check(ctx context.Context) {
	started := time.Now()
	pctx, cancel := context.WithTimeout(ctx, w.cfg.PingTimeout)
	err := w.ping(pctx)
	if err == nil && w.own && w.down.Load() {
		// Restored means the process's own pool works again: after failed
		// dials it waits up to a second before dialling anew.
		err = w.cfg.RDB.Ping(pctx).Err()
	}
	cancel()
	if ctx.Err() != nil || errors.Is(err, redis.ErrClosed) {
		return // stopping, or a client replaced under this ping: nothing learnt
	}
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("no answer to PING within %s: %w", w.cfg.PingTimeout, err)
	}
	w.observe(err, started)
}

// observe moves the state on the outcome of a ping sent at started, logging
// the transitions. A ping sent before the last transition is stale (a
// probe and a tick may overlap) and ignored.
func (w *Watcher) observe(err error, started time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if started.Before(w.changedAt) {
		return
	}
	now := time.Now()
	switch {
	case err != nil && !w.down.Load():
		w.changedAt, w.downSince, w.lastWarn, w.cause = now, now, now, err.Error()
		w.suppressed.Store(0)
		w.down.Store(true)
		w.cfg.Logger.Warn("redis connection lost", "redis", w.addr, "error", w.cause)
	case err != nil:
		if w.cfg.Reminder > 0 && now.Sub(w.lastWarn) >= w.cfg.Reminder {
			w.lastWarn = now
			w.cfg.Logger.Warn("redis connection still lost", "redis", w.addr,
				"down_for", now.Sub(w.downSince).Round(time.Second), "error", err.Error(),
				"suppressed_lines", w.suppressed.Load())
		}
	case w.down.Load():
		w.changedAt = now
		w.down.Store(false)
		w.cfg.Logger.Info("redis connection restored", "redis", w.addr,
			"down_for", now.Sub(w.downSince).Round(time.Millisecond),
			"suppressed_lines", w.suppressed.Swap(0))
	}
}

// probe pings at once when a log line suggests Redis went away between two
// ticks, so that the line is judged by what Redis does now. Callers that
// wait while another probe runs share its result.
func (w *Watcher) probe() {
	gen := w.probeGen.Load()
	w.probeMu.Lock()
	defer w.probeMu.Unlock()
	if w.stopped.Load() || w.probeGen.Load() != gen {
		return // a probe finished while this one waited
	}
	w.check(context.Background())
	w.probeGen.Add(1)
}

// Handler wraps h: while Redis is down, a warning or error that comes from
// asynq (an attribute component=asynq) or whose text looks like a Redis
// connection failure is logged at debug level instead, and counted in the
// restored line. A suspicious line seen while Redis is believed up makes
// the watcher ping at once first. Everything else passes unchanged.
func (w *Watcher) Handler(h slog.Handler) slog.Handler {
	return &handler{w: w, next: h}
}

type handler struct {
	w     *Watcher
	next  slog.Handler
	asynq bool   // the logger carries component=asynq
	attrs string // the text of the logger's own attributes
}

func (h *handler) Enabled(ctx context.Context, l slog.Level) bool {
	// A demoted line is still a debug line: ask the next handler for the
	// level the line may end up at.
	return h.next.Enabled(ctx, l) || (l >= slog.LevelWarn && h.next.Enabled(ctx, slog.LevelDebug))
}

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn && h.quiet(r) {
		h.w.suppressed.Add(1)
		if !h.next.Enabled(ctx, slog.LevelDebug) {
			return nil
		}
		r2 := slog.NewRecord(r.Time, slog.LevelDebug, r.Message, r.PC)
		r.Attrs(func(a slog.Attr) bool { r2.AddAttrs(a); return true })
		r2.AddAttrs(slog.String("demoted_from", r.Level.String()))
		return h.next.Handle(ctx, r2)
	}
	if !h.next.Enabled(ctx, r.Level) {
		return nil
	}
	return h.next.Handle(ctx, r)
}

// quiet reports whether r is part of an outage's flood.
func (h *handler) quiet(r slog.Record) bool {
	fromAsynq := h.asynq
	var b strings.Builder
	b.WriteString(r.Message)
	b.WriteString(h.attrs)
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "component" && a.Value.String() == "asynq" {
			fromAsynq = true
		}
		b.WriteByte(' ')
		b.WriteString(a.Value.String())
		return true
	})
	if !fromAsynq && !h.w.connError(b.String()) {
		return false
	}
	if !h.w.Down() {
		h.w.probe()
	}
	return h.w.Down()
}

// connErrorMarks are the texts of the errors a lost Redis connection gives.
var connErrorMarks = []string{
	"connection refused", "connection reset", "broken pipe", "i/o timeout",
	"EOF", "no such file or directory", "use of closed network connection",
	"LOADING", "connection pool timeout", "redis: client is closed",
}

// connError reports whether a log line's text names the Redis server or a
// connection failure.
func (w *Watcher) connError(s string) bool {
	if w.addr != "" && strings.Contains(s, w.addr) {
		return true
	}
	for _, m := range connErrorMarks {
		if strings.Contains(s, m) {
			return true
		}
	}
	return false
}

func (h *handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	h2 := *h
	h2.next = h.next.WithAttrs(attrs)
	var b strings.Builder
	b.WriteString(h.attrs)
	for _, a := range attrs {
		if a.Key == "component" && a.Value.String() == "asynq" {
			h2.asynq = true
		}
		b.WriteByte(' ')
		b.WriteString(a.Value.String())
	}
	h2.attrs = b.String()
	return &h2
}

func (h *handler) WithGroup(name string) slog.Handler {
	h2 := *h
	h2.next = h.next.WithGroup(name)
	return &h2
}
