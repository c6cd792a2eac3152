// Package embedded runs an in-process Redis-compatible server (miniredis) that
// asynq and go-redis use like a real Redis, so `threadmill run` works on a
// machine with no Redis: the same queue, worker and run-state code, held in
// memory.
//
// Clients connect through a unix socket in a private temporary directory
// (a loopback TCP port where unix sockets are unavailable), not through
// in-memory pipes: a pipe has no buffer, and a client that writes a pipeline
// of commands before reading the replies would deadlock with miniredis,
// which writes each reply before reading the next command. Options.Listen
// adds a TCP address for other processes.
//
// Key expiry follows the wall clock: a ticker advances miniredis's TTLs
// (FastForward) by the time that really passed, and miniredis's per-command
// clock (ClockTTL) stays off, which keeps the hot path of every command free
// of clock work.
package embedded

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/alicebob/miniredis/v2/server"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// Options configure Start. The zero value is ready to use.
type Options struct {
	// Listen, when set, also serves on this TCP address (for example
	// "127.0.0.1:0"), so other processes can connect to the embedded server.
	// Default: only the private socket.
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
	srv      *server.Server
	poolSize int

	network, addr string // the private socket
	tcpAddr       string // Options.Listen's address, if any
	sockDir       string

	listeners []net.Listener
	accepting sync.WaitGroup

	stop     context.CancelFunc
	done     chan struct{}
	closeOne sync.Once
}

var _ asynq.RedisConnOpt = (*Server)(nil)

// Start starts an embedded server. It runs until ctx is done or Close is
// called; call Close in any case to wait for it to stop and remove its
// socket.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.Tick < 0 {
		return nil, fmt.Errorf("embedded: Tick %v must not be negative", opts.Tick)
	}
	if opts.PoolSize < 0 {
		return nil, fmt.Errorf("embedded: PoolSize %d must not be negative", opts.PoolSize)
	}
	m := miniredis.NewMiniRedis()
	// Dial starts the server without a listener of its own; connections
	// accepted below are handed to it with ServeConn.
	c, err := m.Dial()
	if err != nil {
		return nil, fmt.Errorf("embedded: start: %w", err)
	}
	_ = c.Close()
	s := &Server{m: m, srv: m.Server(), poolSize: cmp.Or(opts.PoolSize, 64), done: make(chan struct{})}

	if err := s.listenPrivate(); err != nil {
		m.Close()
		return nil, err
	}
	if opts.Listen != "" {
		ln, err := net.Listen("tcp", opts.Listen)
		if err != nil {
			s.shutdown()
			return nil, fmt.Errorf("embedded: listen on %s: %w", opts.Listen, err)
		}
		s.tcpAddr = ln.Addr().String()
		s.serve(ln)
	}
	tctx, stop := context.WithCancel(ctx)
	s.stop = stop
	go s.tick(tctx, cmp.Or(opts.Tick, time.Second))
	return s, nil
}

// listenPrivate listens on a unix socket in a new 0700 directory, or on a
// loopback TCP port when that fails.
func (s *Server) listenPrivate() error {
	dir, err := os.MkdirTemp("", "threadmill-redis-")
	if err == nil {
		sock := filepath.Join(dir, "redis.sock")
		var ln net.Listener
		if ln, err = net.Listen("unix", sock); err == nil {
			s.network, s.addr, s.sockDir = "unix", sock, dir
			s.serve(ln)
			return nil
		}
		_ = os.RemoveAll(dir)
	}
	ln, terr := net.Listen("tcp", "127.0.0.1:0")
	if terr != nil {
		return fmt.Errorf("embedded: listen: unix socket: %v; loopback: %w", err, terr)
	}
	s.network, s.addr = "tcp", ln.Addr().String()
	s.serve(ln)
	return nil
}

// serve hands every connection accepted on ln to miniredis.
func (s *Server) serve(ln net.Listener) {
	s.listeners = append(s.listeners, ln)
	s.accepting.Add(1)
	go func() {
		defer s.accepting.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			s.srv.ServeConn(newOutputBufferedConn(conn))
		}
	}()
}

// tick advances TTLs by the elapsed wall-clock time until ctx is done, then
// shuts the server down.
func (s *Server) tick(ctx context.Context, every time.Duration) {
	defer close(s.done)
	defer s.shutdown()
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

// shutdown stops accepting, closes every connection and removes the socket.
func (s *Server) shutdown() {
	for _, ln := range s.listeners {
		_ = ln.Close()
	}
	s.accepting.Wait() // no ServeConn after the server is closed
	s.m.Close()
	if s.sockDir != "" {
		_ = os.RemoveAll(s.sockDir)
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

// Dial opens a connection to the server; it fits redis.Options.Dialer.
func (s *Server) Dial(ctx context.Context, _, _ string) (net.Conn, error) {
	select {
	case <-s.done:
		return nil, errors.New("embedded: server stopped")
	default:
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, s.network, s.addr)
	if err != nil {
		return nil, fmt.Errorf("embedded: dial: %w", err)
	}
	return c, nil
}

// Addr returns the TCP address of Options.Listen, or "" without it.
func (s *Server) Addr() string { return s.tcpAddr }

// URL returns redis://Addr, or "" without Options.Listen.
func (s *Server) URL() string {
	if s.tcpAddr == "" {
		return ""
	}
	return "redis://" + s.tcpAddr
}

// Options returns go-redis options that connect to the server.
func (s *Server) Options() *redis.Options {
	return &redis.Options{
		Network:  s.network,
		Addr:     s.addr,
		Dialer:   s.Dial,
		PoolSize: s.poolSize,
		// A busy server answers late: one command (a Lua script above all)
		// holds it for its whole run, and every client waits its turn.
		// go-redis's default 3s timeouts would drop replies the server has
		// acted on (a dequeued task then waits for its lease to expire), so
		// the timeouts only catch a server that stopped.
		ReadTimeout:           time.Minute,
		WriteTimeout:          time.Minute,
		PoolTimeout:           time.Minute,
		ContextTimeoutEnabled: true,
	}
}

// Client returns a new go-redis client of the server; close it when done.
func (s *Server) Client() *redis.Client { return redis.NewClient(s.Options()) }

// MakeRedisClient implements asynq.RedisConnOpt: asynq servers, clients and
// inspectors given the Server connect to it.
func (s *Server) MakeRedisClient() any { return s.Client() }
