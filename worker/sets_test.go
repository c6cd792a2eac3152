package worker_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/threadmill/threadmill/runstore"
	"github.com/threadmill/threadmill/worker"
	"github.com/threadmill/threadmill/workspace/simulator"
)

// A run's artifact sets live in Redis and are read a chunk at a time as a
// step is planned and enqueued. When a read fails (Redis restarting, a
// timeout) the task is tried again: the run is not failed as if its
// pipeline could not be planned, and no item is sent twice.
func TestUnreadableSetIsTriedAgainNotFailed(t *testing.T) {
	const items = 40
	e := newEnv(t, simulator.Config{})
	e.folder("Inbox", items)
	var reads, failed atomic.Int64
	e.startWorker(func(c *worker.Config) {
		c.FanOutWindow = 10 // the step is planned again for each window
		c.RDB.AddHook(failSetReads{reads: &reads, failed: &failed, fail: func(n int64) bool { return n%2 == 1 && n < 12 }})
	})
	p := e.pipeline(faultsPipeline) // no faults here: the pipeline is a plain folder summary
	run := e.start(p, "unreadable-set-1")
	st := e.wait(run, 2*time.Minute)
	if st.Status != runstore.StatusSucceeded {
		t.Fatalf("status %q (error %q), want %q", st.Status, st.Error, runstore.StatusSucceeded)
	}
	if failed.Load() < 3 {
		t.Fatalf("only %d set reads failed: the test did not exercise the retry", failed.Load())
	}
	c := e.sim.Counters()
	if c.InteractionsCreated != items {
		t.Errorf("%d interactions created for %d items", c.InteractionsCreated, items)
	}
	got := readItems(t, resultsFile(st.ResultDir))
	seen := map[string]bool{}
	for _, it := range got {
		if seen[it.Key] {
			t.Errorf("item %s recorded twice", it.Key)
		}
		seen[it.Key] = true
	}
	if len(seen) != items {
		t.Errorf("%d items recorded, want %d", len(seen), items)
	}
}

// failSetReads fails the reads of artifact set chunks that fail says to
// (by their count, from 1).
type failSetReads struct {
	reads, failed *atomic.Int64
	fail          func(n int64) bool
}

func (failSetReads) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h failSetReads) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		args := cmd.Args()
		if cmd.Name() == "hget" && len(args) == 3 && strings.HasPrefix(fmt.Sprint(args[2]), "set\x00") {
			if h.fail(h.reads.Add(1)) {
				h.failed.Add(1)
				err := errors.New("injected: connection reset reading an artifact set")
				cmd.SetErr(err)
				return err
			}
		}
		return next(ctx, cmd)
	}
}
func (failSetReads) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
