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
