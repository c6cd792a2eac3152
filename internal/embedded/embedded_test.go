package embedded_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/threadmill/threadmill/internal/embedded"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func start(t *testing.T, opts embedded.Options) *embedded.Server {
	t.Helper()
	s, err := embedded.Start(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// An asynq client and server on the embedded Redis process every task once,
// including a task that fails once and is retried.
func TestAsynqProcessesTasks(t *testing.T) {
	s := start(t, embedded.Options{})
	const n = 300
	var mu sync.Mutex
	seen := map[uint32]int{}
	failedOnce := false
	done := make(chan struct{})

	srv := asynq.NewServer(s, asynq.Config{
		Concurrency:     16,
		Logger:          quietLogger{},
		LogLevel:        asynq.ErrorLevel,
		RetryDelayFunc:  func(int, error, *asynq.Task) time.Duration { return 10 * time.Millisecond },
		ShutdownTimeout: 5 * time.Second,
	})
	mux := asynq.NewServeMux()
	mux.HandleFunc("t", func(_ context.Context, task *asynq.Task) error {
		id := binary.BigEndian.Uint32(task.Payload())
		mu.Lock()
		defer mu.Unlock()
		if id == 7 && !failedOnce {
			failedOnce = true
			return fmt.Errorf("transient failure of task 7")
		}
		seen[id]++
		if len(seen) == n {
			select {
			case <-done:
			default:
				close(done)
			}
		}
		return nil
	})
	client := asynq.NewClient(s)
	defer client.Close()
	for i := range n {
		p := binary.BigEndian.AppendUint32(nil, uint32(i))
		if _, err := client.EnqueueContext(t.Context(), asynq.NewTask("t", p), asynq.TaskID(fmt.Sprint("task-", i)), asynq.MaxRetry(3)); err != nil {
			t.Fatal(err)
		}
	}
	// A duplicate TaskID is refused while the first is queued, as on a real Redis.
	if _, err := client.Enqueue(asynq.NewTask("t", []byte{0, 0, 0, 0}), asynq.TaskID("task-0")); err == nil {
		t.Fatal("duplicate task id accepted")
	}
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("only %d of %d tasks processed", len(seen), n)
	}
	mu.Lock()
	defer mu.Unlock()
	for id, c := range seen {
		if c != 1 {
			t.Errorf("task %d processed %d times", id, c)
		}
	}
	if !failedOnce {
		t.Error("the failing task never failed")
	}
}

// Keys expire with the wall clock even though miniredis's own clock is off.
func TestKeysExpire(t *testing.T) {
	s := start(t, embedded.Options{Tick: 20 * time.Millisecond})
	rdb := s.Client()
	defer rdb.Close()
	ctx := t.Context()
	if err := rdb.Set(ctx, "k", "v", 200*time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Set(ctx, "keep", "v", time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := rdb.Exists(ctx, "k").Result()
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("key with a 200ms TTL still there after 10s")
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, bounded by deadline
	}
	if n, _ := rdb.Exists(ctx, "keep").Result(); n != 1 {
		t.Fatal("key with a 1h TTL expired")
	}
}

// With Listen, another client (another process) connects over TCP.
func TestListen(t *testing.T) {
	s := start(t, embedded.Options{Listen: "127.0.0.1:0"})
	if s.Addr() == "" || s.URL() == "" {
		t.Fatalf("Addr %q URL %q", s.Addr(), s.URL())
	}
	opt, err := redis.ParseURL(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	tcp := redis.NewClient(opt)
	defer tcp.Close()
	pipe := s.Client()
	defer pipe.Close()
	if err := tcp.Set(t.Context(), "x", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := pipe.Get(t.Context(), "x").Result(); err != nil || v != "1" {
		t.Fatalf("pipe client sees %q, %v", v, err)
	}
}

// Cancelling the start context stops the server; clients then get errors.
func TestStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	s, err := embedded.Start(ctx, embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rdb := s.Client()
	defer rdb.Close()
	if err := rdb.Ping(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-s.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("server still running 5s after its context was cancelled")
	}
	_ = s.Close()
	_ = rdb.Close()
	fresh := s.Client()
	defer fresh.Close()
	if err := fresh.Ping(t.Context()).Err(); err == nil {
		t.Fatal("ping succeeded on a stopped server")
	}
}

func TestBadOptions(t *testing.T) {
	if _, err := embedded.Start(t.Context(), embedded.Options{Tick: -1}); err == nil {
		t.Error("negative Tick accepted")
	}
	if _, err := embedded.Start(t.Context(), embedded.Options{Listen: "256.0.0.1:1"}); err == nil {
		t.Error("bad listen address accepted")
	}
}

// BenchmarkAsynqThroughput measures tasks per second through asynq on the
// embedded server (enqueue and process, 64 workers).
func BenchmarkAsynqThroughput(b *testing.B) {
	s, err := embedded.Start(b.Context(), embedded.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var wg sync.WaitGroup
	wg.Add(b.N)
	srv := asynq.NewServer(s, asynq.Config{Concurrency: 64, Logger: quietLogger{}, LogLevel: asynq.ErrorLevel})
	mux := asynq.NewServeMux()
	mux.HandleFunc("t", func(context.Context, *asynq.Task) error { wg.Done(); return nil })
	if err := srv.Start(mux); err != nil {
		b.Fatal(err)
	}
	defer srv.Shutdown()
	client := asynq.NewClient(s)
	defer client.Close()
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		if _, err := client.Enqueue(asynq.NewTask("t", []byte(fmt.Sprint(i)))); err != nil {
			b.Fatal(err)
		}
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "tasks/s")
}

// quietLogger drops asynq's logs; tests assert on outcomes.
type quietLogger struct{}

func (quietLogger) Debug(...any) {}
func (quietLogger) Info(...any)  {}
func (quietLogger) Warn(...any)  {}
func (quietLogger) Error(...any) {}
func (quietLogger) Fatal(...any) {}

// A client that writes a long pipeline before reading the replies must not
// deadlock with the server (it did over unbuffered in-memory pipes).
func TestLongPipeline(t *testing.T) {
	s := start(t, embedded.Options{})
	rdb := s.Client()
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	big := strings.Repeat("x", 1024)
	if err := rdb.Set(ctx, "big", big, 0).Err(); err != nil {
		t.Fatal(err)
	}
	cmds, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for range 5000 {
			p.Get(ctx, "big")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("pipeline of 5,000 GETs of 1 KiB: %v", err)
	}
	for _, c := range cmds {
		if c.(*redis.StringCmd).Val() != big {
			t.Fatal("wrong reply")
		}
	}
}

// Close removes the private socket and its directory.
func TestCloseRemovesSocket(t *testing.T) {
	s, err := embedded.Start(t.Context(), embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	o := s.Options()
	if o.Network != "unix" {
		t.Skipf("no unix socket here (%s %s)", o.Network, o.Addr)
	}
	if _, err := os.Stat(o.Addr); err != nil {
		t.Fatalf("socket: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Dir(o.Addr)); !os.IsNotExist(err) {
		t.Fatalf("socket directory left after Close: %v", err)
	}
}

// The embedded server's smaller Lua stacks (lua.go) still run what asynq's
// and the run store's scripts do, with a wide margin: unpacking 900 values
// into one command, and nested function calls.
func TestLuaStacks(t *testing.T) {
	s := start(t, embedded.Options{})
	rdb := s.Client()
	defer rdb.Close()
	ctx := t.Context()
	n, err := rdb.Eval(ctx, `
local ids = {}
for i = 1, 900 do ids[i] = 'm' .. i end
redis.call('SADD', KEYS[1], unpack(ids))
local function depth(k) if k == 0 then return 0 end return 1 + depth(k - 1) end
return redis.call('SCARD', KEYS[1]) + depth(40)`, []string{"big"}).Int()
	if err != nil || n != 940 {
		t.Fatalf("script: %d, %v; want 940", n, err)
	}
	// The smaller stacks are in force: 1,100 values do not fit.
	err = rdb.Eval(ctx, `
local ids = {}
for i = 1, 1100 do ids[i] = 'm' .. i end
return redis.call('SADD', KEYS[1], unpack(ids))`, []string{"bigger"}).Err()
	if err == nil {
		t.Error("a script unpacking 1,100 values ran: the interpreters still have gopher-lua's default stacks")
	}
}
