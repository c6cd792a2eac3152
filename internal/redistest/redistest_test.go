package redistest

import (
	"context"
	"testing"
	"time"
)

func TestStartIsolated(t *testing.T) {
	a, b := Start(t), Start(t)
	ctx := context.Background()
	if err := a.Client(t).Set(ctx, "k", "a", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := b.Client(t).Exists(ctx, "k").Result(); err != nil || n != 0 {
		t.Fatalf("second server sees key of the first: n=%d err=%v", n, err)
	}
}

func TestRestartKeepsDataWithAppendOnly(t *testing.T) {
	s := StartWith(t, Options{AppendOnly: true})
	c := s.Client(t)
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	s.Kill()
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("ping answered after Kill")
	}
	s.Restart(t)
	if v, err := c.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("after Restart: %q, %v; want the key written before Kill", v, err)
	}
}

func TestMonitorCountsClientCommandsNotScriptCalls(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	m := s.Monitor(t)
	ctx := context.Background()
	c.Set(ctx, "a", "1", 0)
	c.Get(ctx, "a")
	c.Eval(ctx, `redis.call('SET', KEYS[1], 2); redis.call('GET', KEYS[1]); return 1`, []string{"a"})
	// MONITOR reports each command after running it; wait for the last.
	c.Ping(ctx)
	deadline := time.Now().Add(10 * time.Second)
	for m.count("ping") == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	counts, err := m.Stop()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"set": 1, "get": 1, "eval": 1, "ping": 1}
	for k, v := range want {
		if counts[k] != v {
			t.Errorf("%s: %d, want %d (all: %v)", k, counts[k], v, counts)
		}
	}
}
