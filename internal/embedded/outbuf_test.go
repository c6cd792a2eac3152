package embedded_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/threadmill/threadmill/internal/embedded"
)

// TestLargePipeline sends one pipeline of many commands, as asynq's batched
// enqueues and go-redis pipelines do. miniredis answers each command before
// it reads the next while the client writes the whole pipeline before it
// reads: without an output buffer the two block each other once the replies
// fill the socket, and Exec hangs until its deadline.
func TestLargePipeline(t *testing.T) {
	s := start(t, embedded.Options{})
	c := s.Client()
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	const n = 20000
	pipe := c.Pipeline()
	for i := range n {
		pipe.Set(ctx, fmt.Sprintf("k%d", i), "v", 0)
	}
	cmds, err := pipe.Exec(ctx)
	if err != nil {
		t.Fatalf("pipeline of %d commands: %v", n, err)
	}
	if len(cmds) != n {
		t.Fatalf("%d replies, want %d", len(cmds), n)
	}
	if got, err := c.DBSize(ctx).Result(); err != nil || got != n {
		t.Fatalf("DBSIZE = %d, %v; want %d", got, err, n)
	}
}
