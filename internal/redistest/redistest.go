// Package redistest starts a private redis-server per test, listening on a
// unix socket in the test's temporary directory, so tests never share state.
package redistest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is a running redis-server owned by one test.
type Server struct {
	// Socket is the path of the unix socket the server listens on.
	Socket string
	cmd    *exec.Cmd
	bin    string   // the redis-server binary
	args   []string // its arguments, to restart it the same way
}

// URL returns a go-redis/asynq compatible URL for the server.
func (s *Server) URL() string { return "unix://" + s.Socket }

// Options returns go-redis options for the server.
func (s *Server) Options() *redis.Options {
	return &redis.Options{Network: "unix", Addr: s.Socket}
}

// Client returns a new go-redis client closed when the test ends.
func (s *Server) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(s.Options())
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Kill stops the server at once (SIGKILL), for outage tests.
func (s *Server) Kill() {
	if s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
	}
}

// Restart starts the server again on the same socket, with the same
// options, after Kill (it kills a running server first), and waits until it
// answers. The data survives only with Options.AppendOnly.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Kill()
	cmd := exec.Command(s.bin, s.args...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("redistest: restart %s: %v", s.bin, err)
	}
	s.cmd = cmd
	if err := s.waitReady(10 * time.Second); err != nil {
		t.Fatalf("redistest: restart: %v", err)
	}
}

// Options are the settings of StartWith.
type Options struct {
	// AppendOnly turns on the append-only file with an fsync per write, so
	// that the data survives Kill and Restart, as on a production Redis.
	// Default off: nothing is kept on disk.
	AppendOnly bool
}

// Start launches redis-server for t and stops it when t ends. The binary is
// taken from $REDIS_SERVER or PATH; a missing binary fails the test, since
// tests must run against a real Redis.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartWith(t, Options{})
}

// StartWith is Start with options.
func StartWith(t testing.TB, o Options) *Server {
	t.Helper()
	bin := os.Getenv("REDIS_SERVER")
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("redis-server"); err != nil {
			t.Fatalf("redistest: redis-server not found in PATH (install it, or set REDIS_SERVER): %v", err)
		}
	}
	// Unix socket paths are limited to ~104 bytes: keep the directory short.
	dir, err := os.MkdirTemp("", "rt")
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() { // the server's own log helps explain a failed test
			if b, err := os.ReadFile(filepath.Join(dir, "redis.log")); err == nil && len(b) > 0 {
				t.Logf("redistest: redis-server log:\n%s", b)
			}
		}
		_ = os.RemoveAll(dir)
	})
	sock := filepath.Join(dir, "redis.sock")
	args := []string{
		"--port", "0",
		"--unixsocket", sock,
		"--unixsocketperm", "700",
		"--save", "",
		"--appendonly", map[bool]string{true: "yes", false: "no"}[o.AppendOnly],
		"--appendfsync", "always",
		"--dir", dir,
		"--loglevel", "warning",
		"--logfile", filepath.Join(dir, "redis.log"),
	}
	cmd := exec.Command(bin, args...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("redistest: start %s: %v", bin, err)
	}
	s := &Server{Socket: sock, cmd: cmd, bin: bin, args: args}
	t.Cleanup(func() { s.Kill() })
	if err := s.waitReady(10 * time.Second); err != nil {
		t.Fatalf("redistest: %v", err)
	}
	return s
}

func (s *Server) waitReady(timeout time.Duration) error {
	c := redis.NewClient(s.Options())
	defer c.Close()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server on %s not ready after %v: %w", s.Socket, timeout, err)
		}
		time.Sleep(10 * time.Millisecond) // polling a readiness condition, bounded by deadline
	}
}

// WaitDialersGone waits (at most timeout) until no go-redis pool of the
// process is still retrying a failed dial. After an outage, each pool that
// failed to dial keeps a goroutine that retries once a second until a dial
// succeeds or the pool is closed; a test that kills Redis calls this after
// closing its clients, before goroutine-leak checks.
func WaitDialersGone(t testing.TB, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if !bytes.Contains(buf[:n], []byte("pool.(*ConnPool).tryDial")) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: go-redis pools still retrying dials %s after the test", timeout)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition, bounded by the deadline
	}
}
