package redistest

import (
	"context"
	"testing"
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
