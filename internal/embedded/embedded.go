// Package embedded runs an in-process Redis-compatible server (miniredis) that
// asynq and go-redis use like a real Redis, so `threadmill run` works on a
// machine with no Redis: the same queue, worker and run-state code, held in
// memory.
//
// Clients connect through in-memory pipes (Dial), so no port is opened unless
// Options.Listen asks for one. Key expiry follows the wall clock: a ticker
// advances miniredis's TTLs (FastForward) by the time that really passed, and
// miniredis's per-command clock (ClockTTL) stays off, which keeps the hot path
// of every command free of clock work.
package embedded

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// Options configure Start. The zero value is ready to use.
type Options struct {
	// Listen, when set, also serves on this TCP address (for example
	// "127.0.0.1:0"), so other processes can connect to the embedded server.
	// Default: no listener, in-memory pipes only.
	Listen string
	// Tick is how often key TTLs are advanced. Default 1s.
	Tick time.Duration
	// PoolSize is the connection pool size of the clients made by Options,
	// Client and MakeRedisClient. Default 64.
	PoolSize int
}

// Server is a running embedded Redis. It implements asynq.RedisConnOpt.
type Server struct {
	m        *miniredis.Miniredis
	poolSize int
	addr     string

	stop     context.CancelFunc
	done     chan struct{}
	closeOne sync.Once
}

var _ asynq.RedisConnOpt = (*Server)(nil)

// Start starts an embedded server. It runs until ctx is done or Close is
// called; call Close in any case to wait for it to stop.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.Tick < 0 {
		return nil, fmt.Errorf("embedded: Tick %v must not be negative", opts.Tick)
	}
	if opts.PoolSize < 0 {
		return nil, fmt.Errorf("embedded: PoolSize %d must not be negative", opts.PoolSize)
	}
	m := miniredis.NewMiniRedis()
	s := &Server{m: m, poolSize: cmp.Or(opts.PoolSize, 64), done: make(chan struct{})}
	if opts.Listen != "" {
		if err := m.StartAddr(opts.Listen); err != nil {
			return nil, fmt.Errorf("embedded: listen on %s: %w", opts.Listen, err)
		}
		s.addr = m.Addr()
	} else {
		// Dial starts a listener-less server on first use; do it now so that a
		// failure shows here rather than in the first client.
		c, err := m.Dial()
		if err != nil {
			return nil, fmt.Errorf("embedded: start: %w", err)
		}
		_ = c.Close()
	}
	tctx, stop := context.WithCancel(ctx)
	s.stop = stop
	go s.tick(tctx, cmp.Or(opts.Tick, time.Second))
	return s, nil
}

// tick advances TTLs by the elapsed wall-clock time until ctx is done, then
// shuts the server down.
func (s *Server) tick(ctx context.Context, every time.Duration) {
	defer close(s.done)
	defer s.m.Close()
	t := time.NewTicker(every)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s.m.FastForward(now.Sub(last))
			last = now
		}
	}
}

// Close stops the server and waits until it has stopped. Connections still
// open get errors. Close is safe to call more than once.
func (s *Server) Close() error {
	s.closeOne.Do(func() { s.stop() })
	<-s.done
	return nil
}

// Done is closed once the server has stopped.
func (s *Server) Done() <-chan struct{} { return s.done }

// Dial opens an in-memory connection to the server; it fits
// redis.Options.Dialer.
func (s *Server) Dial(ctx context.Context, _, _ string) (net.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	select {
	case <-s.done:
		return nil, errors.New("embedded: server stopped")
	default:
	}
	c, err := s.m.Dial()
	if err != nil {
		return nil, fmt.Errorf("embedded: dial: %w", err)
	}
	return c, nil
}

// Addr returns the TCP address the server listens on, or "" without
// Options.Listen.
func (s *Server) Addr() string { return s.addr }

// URL returns redis://Addr, or "" without Options.Listen.
func (s *Server) URL() string {
	if s.addr == "" {
		return ""
	}
	return "redis://" + s.addr
}

// Options returns go-redis options that connect through Dial.
func (s *Server) Options() *redis.Options {
	return &redis.Options{
		Addr:                  "embedded", // informational: Dialer ignores it
		Dialer:                s.Dial,
		PoolSize:              s.poolSize,
		ContextTimeoutEnabled: true,
	}
}

// Client returns a new go-redis client of the server; close it when done.
func (s *Server) Client() *redis.Client { return redis.NewClient(s.Options()) }

// MakeRedisClient implements asynq.RedisConnOpt: asynq servers, clients and
// inspectors given the Server connect through Dial.
func (s *Server) MakeRedisClient() any { return s.Client() }
