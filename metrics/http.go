package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
)

// CheckFunc reports whether one dependency is usable; a nil error means yes.
type CheckFunc func(ctx context.Context) error

// Health holds the checks behind /healthz and /readyz. Liveness checks
// answer "is this process working at all" (a failing one means: restart
// it); readiness checks answer "can it do its job now" (Redis reachable).
// /readyz runs both kinds. The zero value has no checks and is ready.
type Health struct {
	// Timeout bounds each check; default 2s.
	Timeout time.Duration

	mu    sync.Mutex
	live  []namedCheck
	ready []namedCheck
}

type namedCheck struct {
	name string
	fn   CheckFunc
}

// AddLiveness adds a check run by /healthz and /readyz.
func (h *Health) AddLiveness(name string, fn CheckFunc) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.live = append(h.live, namedCheck{name, fn})
}

// AddReadiness adds a check run by /readyz only.
func (h *Health) AddReadiness(name string, fn CheckFunc) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ready = append(h.ready, namedCheck{name, fn})
}

// RedisCheck returns a check that pings rdb.
func RedisCheck(rdb redis.UniversalClient) CheckFunc {
	return func(ctx context.Context) error {
		if err := rdb.Ping(ctx).Err(); err != nil {
			return fmt.Errorf("redis ping: %w", err)
		}
		return nil
	}
}

// run runs checks one after the other and writes one line per check:
// "ok NAME" or "fail NAME: error". It returns whether all passed.
func (h *Health) run(ctx context.Context, w *strings.Builder, readiness bool) bool {
	h.mu.Lock()
	checks := append([]namedCheck(nil), h.live...)
	if readiness {
		checks = append(checks, h.ready...)
	}
	h.mu.Unlock()
	timeout := h.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	ok := true
	for _, c := range checks {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		err := c.fn(cctx)
		cancel()
		if err != nil {
			ok = false
			fmt.Fprintf(w, "fail %s: %v\n", c.name, err)
			continue
		}
		fmt.Fprintf(w, "ok %s\n", c.name)
	}
	return ok
}

func (h *Health) handler(readiness bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b strings.Builder
		ok := h.run(r.Context(), &b, readiness)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if ok {
			b.WriteString("ok\n")
		} else {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_, _ = w.Write([]byte(b.String()))
	})
}

// NewServeMux returns a mux serving GET /metrics from g, and /healthz and
// /readyz from h (nil h: always healthy and ready). Both health endpoints
// answer 200 with one "ok NAME" line per check and a final "ok", or 503
// with a "fail NAME: error" line for each failing check.
func NewServeMux(g prometheus.Gatherer, h *Health) *http.ServeMux {
	if h == nil {
		h = &Health{}
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{
		// A failing collector (Redis down) must not hide the other series.
		ErrorHandling: promhttp.ContinueOnError,
	}))
	mux.Handle("GET /healthz", h.handler(false))
	mux.Handle("GET /readyz", h.handler(true))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = fmt.Fprint(w, "threadmill: /metrics /healthz /readyz\n")
	})
	return mux
}

// Server is a running HTTP server for metrics and health.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	done chan error
	log  *slog.Logger
}

// Listen binds addr (host:port; port 0 picks a free one) at once, so a busy
// port is reported before anything else starts, and serves h in the
// background until Shutdown.
func Listen(addr string, h http.Handler, logger *slog.Logger) (*Server, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	s := &Server{
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		},
		ln:   ln,
		done: make(chan error, 1),
		log:  logger,
	}
	go func() {
		err := s.srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.done <- err
	}()
	logger.Info("serving metrics and health", "addr", s.Addr(), "paths", "/metrics /healthz /readyz")
	return s, nil
}

// Addr returns the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Shutdown stops accepting connections, waits for open requests until ctx
// is done, and returns once the serving goroutine has ended.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close()
	}
	if serr := <-s.done; serr != nil && err == nil {
		err = serr
	}
	return err
}

// Serve runs a Listen server until ctx is done, then shuts it down within
// five seconds. It is the blocking form, for a goroutine of a command.
func Serve(ctx context.Context, addr string, h http.Handler, logger *slog.Logger) error {
	s, err := Listen(addr, h, logger)
	if err != nil {
		return err
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	return s.Shutdown(sctx)
}
