package runstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/threadmill/threadmill/internal/redistest"
	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/results"
	"github.com/threadmill/threadmill/workspace"
)

// backends runs a test against a real redis-server and against miniredis,
// the embedded default's in-process server, so every Lua script works on
// both.
func backends(t *testing.T, fn func(t *testing.T, s *Store)) {
	t.Run("redis", func(t *testing.T) {
		fn(t, New(redistest.Start(t).Client(t), "tm:"))
	})
	t.Run("miniredis", func(t *testing.T) {
		m := miniredis.RunT(t)
		// As the embedded runner does: TTLs advance with the real clock.
		stop := make(chan struct{})
		ticked := make(chan struct{})
		go func() {
			defer close(ticked)
			tk := time.NewTicker(20 * time.Millisecond)
			defer tk.Stop()
			last := time.Now()
			for {
				select {
				case <-stop:
					return
				case now := <-tk.C:
					m.FastForward(now.Sub(last))
					last = now
				}
			}
		}()
		t.Cleanup(func() { close(stop); <-ticked })
		c := redis.NewClient(&redis.Options{Addr: m.Addr()})
		t.Cleanup(func() { _ = c.Close() })
		fn(t, New(c, "tm:"))
	})
}

func testPipeline(steps ...string) *pipelines.Pipeline {
	p := &pipelines.Pipeline{Version: 1, Name: "pipe", Hash: "h1"}
	for _, s := range steps {
		p.Steps = append(p.Steps, pipelines.Step{ID: s, Prompt: "x"})
	}
	return p
}

func item(step string, i int, state string, in, out int64) results.Item {
	return results.Item{
		Step: step, Key: fmt.Sprintf("%s/a%d", step, i), Index: i, State: state,
		Output: fmt.Sprintf("output %d", i),
		Usage:  workspace.Usage{InputTokens: workspace.Count(in), OutputTokens: workspace.Count(out)},
	}
}

func TestRecordIsExactlyOnceAndCountsCompletion(t *testing.T) {
	backends(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		if _, err := s.CreateRun(ctx, testPipeline("map"), pipelines.RunInfo{ID: "r1"}); err != nil {
			t.Fatal(err)
		}
		if err := s.PlanStep(ctx, "r1", "map", 3); err != nil {
			t.Fatal(err)
		}
		// 20 concurrent deliveries of the same item: one record.
		var news atomic.Int64
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() {
				rec, err := s.Record(ctx, "r1", item("map", 1, results.StateSucceeded, 10, 5), 0)
				if err != nil {
					t.Error(err)
				}
				if rec.New {
					news.Add(1)
				}
				if rec.Done != 1 || rec.Total != 3 || rec.Complete() {
					t.Errorf("progress %+v, want 1 of 3", rec)
				}
			})
		}
		wg.Wait()
		if news.Load() != 1 {
			t.Fatalf("%d calls wrote the record, want 1", news.Load())
		}
		rec, _ := s.Record(ctx, "r1", item("map", 2, results.StateFailed, 3, 0), 0)
		if rec.Complete() {
			t.Fatal("complete after 2 of 3")
		}
		rec, _ = s.Record(ctx, "r1", item("map", 0, results.StateSkipped, 0, 0), 0)
		if !rec.New || !rec.Complete() {
			t.Fatalf("last item: %+v, want new and complete", rec)
		}
		st, err := s.Run(ctx, "r1")
		if err != nil {
			t.Fatal(err)
		}
		if st.Total != 3 || st.Done != 3 || st.Succeeded != 1 || st.Failed != 1 || st.Skipped != 1 ||
			st.Usage.InputTokens != 13 || st.Usage.OutputTokens != 5 {
			t.Errorf("run state %+v", st)
		}
		// Records come back in plan order, whatever order they finished in.
		var keys []string
		for it, err := range s.Items(ctx, "r1", "map", 3) {
			if err != nil {
				t.Fatal(err)
			}
			keys = append(keys, it.Key)
		}
		if strings.Join(keys, ",") != "map/a0,map/a1,map/a2" {
			t.Errorf("items in order %v", keys)
		}
		for _, err := range s.Items(ctx, "r1", "map", 4) {
			if err != nil && !strings.Contains(err.Error(), "item #3 has no record") {
				t.Errorf("missing record error: %v", err)
			}
		}
		out, err := s.StepOutput(ctx, "r1", "map", 3)
		if err != nil || len(out.Items) != 1 || out.Items[0].Output != "output 1" {
			t.Errorf("step output %+v, %v: want the one succeeded item", out, err)
		}
	})
}

func TestCheckpointsSurviveAttempts(t *testing.T) {
	backends(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		st, err := s.BeginItem(ctx, "r1", "map", "k")
		if err != nil || st.Done || st.Checkpoint.Attempts != 1 || st.Checkpoint.StartedAt.IsZero() {
			t.Fatalf("first begin: %+v, %v", st, err)
		}
		u := workspace.Usage{InputTokens: 7, OutputTokens: 2}
		for _, err := range []error{
			s.CheckpointValidated(ctx, "r1", "map", "k"),
			s.CheckpointThread(ctx, "r1", "map", "k", "thread_1", ""),
			s.CheckpointPending(ctx, "r1", "map", "k", 0, "inter_a"),
			s.CheckpointTurn(ctx, "r1", "map", "k", 0, Turn{InteractionID: "inter_a", Output: "one", Usage: u}),
			s.CheckpointPending(ctx, "r1", "map", "k", 1, "inter_b"),
			s.CheckpointDiscard(ctx, "r1", "map", "k", 1, "inter_b", u),
			s.CheckpointPending(ctx, "r1", "map", "k", 1, "inter_c"),
			s.Stop(ctx, "r1", "first reason"),
			s.Stop(ctx, "r1", "second reason"),
		} {
			if err != nil {
				t.Fatal(err)
			}
		}
		st, err = s.BeginItem(ctx, "r1", "map", "k")
		if err != nil {
			t.Fatal(err)
		}
		c := st.Checkpoint
		if c.Attempts != 2 || !c.Validated || c.ThreadID != "thread_1" || c.Turns[0].Output != "one" ||
			c.Pending[0] != "" || c.Pending[1] != "inter_c" || c.Wasted != u || len(c.Discarded) != 1 {
			t.Errorf("checkpoint %+v", c)
		}
		if st.Stop != "first reason" {
			t.Errorf("stop %q, want the first reason", st.Stop)
		}
		if _, err := s.Record(ctx, "r1", results.Item{Step: "map", Key: "k", State: results.StateSucceeded}, 0); err != nil {
			t.Fatal(err)
		}
		st, err = s.BeginItem(ctx, "r1", "map", "k")
		if err != nil || !st.Done {
			t.Errorf("begin after record: %+v, %v; want done", st, err)
		}
	})
}

func TestSeedBeforeCreateRun(t *testing.T) {
	backends(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		done := []results.Item{
			item("map", 0, results.StateSucceeded, 10, 10),
			item("map", 1, results.StateFailed, 1, 0),
			item("map", 2, results.StateSkipped, 0, 0),
		}
		if err := s.Seed(ctx, "r1", done); err != nil {
			t.Fatal(err)
		}
		created, err := s.CreateRun(ctx, testPipeline("map"), pipelines.RunInfo{ID: "r1"})
		if err != nil || !created {
			t.Fatalf("create after seed: %v, %v", created, err)
		}
		for i, want := range []bool{true, true, false} {
			st, err := s.BeginItem(ctx, "r1", "map", done[i].Key)
			if err != nil || st.Done != want {
				t.Errorf("item %d: done %v, want %v (%v)", i, st.Done, want, err)
			}
		}
		// Seeded usage counts towards the budget.
		ok, used, err := s.ReserveBudget(ctx, "r1", "map", "other", 5, 30)
		if err != nil || !ok || used != 26 {
			t.Errorf("reserve after seed: %v, used %d, %v; want granted with 21 seeded + 5", ok, used, err)
		}
	})
}

func TestBudgetReservesOnceAndStaysExhausted(t *testing.T) {
	backends(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		grant := func(key string, est int64) bool {
			t.Helper()
			if _, err := s.BeginItem(ctx, "r1", "s", key); err != nil {
				t.Fatal(err)
			}
			ok, _, err := s.ReserveBudget(ctx, "r1", "s", key, est, 100)
			if err != nil {
				t.Fatal(err)
			}
			return ok
		}
		if !grant("a", 60) || !grant("a", 60) {
			t.Fatal("item a refused")
		}
		if grant("b", 50) {
			t.Fatal("item b granted beyond the budget (60 + 50 > 100)")
		}
		if grant("c", 10) {
			t.Fatal("item c granted after the budget was exhausted")
		}
		if !grant("a", 60) {
			t.Fatal("a retry of reserved item a was refused")
		}
		// Settling a's real usage (20 of 60) gives 40 back to the counter.
		if _, err := s.Record(ctx, "r1", results.Item{Step: "s", Key: "a", State: results.StateSucceeded,
			Usage: workspace.Usage{InputTokens: 15, OutputTokens: 5}}, 60); err != nil {
			t.Fatal(err)
		}
		used, err := s.rdb.HGet(ctx, s.budgetKey("r1"), "used").Int64()
		if err != nil || used != 20 {
			t.Errorf("budget used %d (%v), want 20", used, err)
		}
	})
}

func TestRequestLimiterSpacesGrants(t *testing.T) {
	backends(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		const rpm, n = 3000, 30 // one grant every 20ms
		start := time.Now()
		var mu sync.Mutex
		var grants []time.Time
		var wg sync.WaitGroup
		for range 3 {
			wg.Go(func() {
				for range n / 3 {
					if _, err := acquire(ctx, s, "pipe", rpm); err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					grants = append(grants, time.Now())
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if el := time.Since(start); el < time.Duration(n-1)*20*time.Millisecond-5*time.Millisecond {
			t.Errorf("%d grants at %d/min took %v, want at least %v", n, rpm, el, time.Duration(n-1)*20*time.Millisecond)
		}
		// Another pipeline has its own limiter.
		t0 := time.Now()
		if _, err := acquire(ctx, s, "other", rpm); err != nil || time.Since(t0) > 15*time.Millisecond {
			t.Errorf("another pipeline waited %v (%v)", time.Since(t0), err)
		}
	})
}

// Callers waiting for the same pipeline's request limiter reserve their
// slots: one script call per grant, not one per waiting caller each time a
// slot frees (which cost a rate-limited run 16 ms of CPU an item and a tenth
// of its goodput: the slot was lost while the callers woke up).
func TestWaitingCallersReserveTheirSlots(t *testing.T) {
	backends(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		var calls atomic.Int64
		s.rdb.AddHook(countScripts{&calls})
		const rpm, callers, each = 6000, 8, 10 // one grant every 10ms
		var wg sync.WaitGroup
		for range callers {
			wg.Go(func() {
				for range each {
					if _, err := acquire(ctx, s, "pipe", rpm); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		if n := calls.Load(); n != callers*each {
			t.Errorf("%d script calls for %d grants to %d waiting callers, want one a grant", n, callers*each, callers)
		}
	})
}

// acquire waits for a request slot of pipeline as the worker does: a
// grant is a reserved slot to sleep until; a refusal (the fleet's pause)
// says when to ask again. It returns the time it waited.
func acquire(ctx context.Context, s *Store, pipeline string, rpm int) (time.Duration, error) {
	start := time.Now()
	a := s.Adaptive("http://api.example", AdaptiveParams{})
	for {
		g, err := a.Gate(ctx, pipeline, rpm)
		if err != nil {
			return time.Since(start), err
		}
		if err := sleep(ctx, g.Wait); err != nil {
			return time.Since(start), err
		}
		if g.Granted {
			return time.Since(start), nil
		}
	}
}

// countScripts counts the Lua scripts a client sends (EVALSHA, and EVAL
// when a script is not loaded yet).
type countScripts struct{ n *atomic.Int64 }

func (countScripts) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h countScripts) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "evalsha" {
			h.n.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (countScripts) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func TestFleetPauseHoldsRequests(t *testing.T) {
	backends(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		if err := s.Pause(ctx, 300*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if err := s.Pause(ctx, 50*time.Millisecond); err != nil { // a shorter pause does not shorten it
			t.Fatal(err)
		}
		if d, err := s.Paused(ctx); err != nil || d < 200*time.Millisecond {
			t.Fatalf("paused %v, %v", d, err)
		}
		start := time.Now()
		if _, err := acquire(ctx, s, "pipe", 0); err != nil {
			t.Fatal(err)
		}
		if el := time.Since(start); el < 200*time.Millisecond {
			t.Errorf("request granted after %v during a 300ms pause", el)
		}
	})
}

func TestTokenLimiterWaitsAndSettles(t *testing.T) {
	backends(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		const tpm = 60000 // 1000 tokens a second, a minute's worth at once
		if w, err := s.AcquireTokens(ctx, "pipe", tpm, tpm); err != nil || w > 50*time.Millisecond {
			t.Fatalf("first minute's worth waited %v (%v)", w, err)
		}
		w, err := s.AcquireTokens(ctx, "pipe", tpm, 300)
		if err != nil || w < 250*time.Millisecond || w > 400*time.Millisecond {
			t.Fatalf("300 more tokens waited %v (%v), want about 300ms", w, err)
		}
		if err := s.SettleTokens(ctx, "pipe", tpm, -300); err != nil {
			t.Fatal(err)
		}
		if w, err := s.AcquireTokens(ctx, "pipe", tpm, 200); err != nil || w > 50*time.Millisecond {
			t.Errorf("after giving 300 back, 200 tokens waited %v (%v)", w, err)
		}
	})
}

func TestInFlightSlots(t *testing.T) {
	backends(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a, err := s.AcquireSlot(ctx, "pipe", 2, "a", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		b, err := s.AcquireSlot(ctx, "pipe", 2, "b", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan *Lease)
		go func() {
			c, err := s.AcquireSlot(ctx, "pipe", 2, "c", time.Minute)
			if err != nil {
				t.Error(err)
			}
			got <- c
		}()
		select {
		case <-got:
			t.Fatal("a third slot was granted with a limit of 2")
		case <-time.After(100 * time.Millisecond):
		}
		if err := a.Release(ctx); err != nil {
			t.Fatal(err)
		}
		c := <-got
		for _, l := range []*Lease{b, c} {
			if err := l.Release(ctx); err != nil {
				t.Fatal(err)
			}
		}
		// A dead holder's lease expires: put one in place that nobody renews.
		if err := s.rdb.ZAdd(ctx, s.inflightKey("pipe"), redis.Z{Score: float64(time.Now().Add(-time.Second).UnixMilli()), Member: "dead"}).Err(); err != nil {
			t.Fatal(err)
		}
		ctx2, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		l, err := s.AcquireSlot(ctx2, "pipe", 1, "alive", time.Minute)
		if err != nil {
			t.Fatalf("the expired lease of a dead worker kept its slot: %v", err)
		}
		_ = l.Release(ctx)
	})
}

func TestRunThreadIsCreatedOnce(t *testing.T) {
	backends(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		var calls atomic.Int64
		var wg sync.WaitGroup
		ids := make([]string, 10)
		for i := range ids {
			wg.Go(func() {
				id, err := s.RunThread(ctx, "r1", "brief", time.Minute, func(context.Context) (string, error) {
					calls.Add(1)
					time.Sleep(20 * time.Millisecond) // the API call
					return "thread_shared", nil
				})
				if err != nil {
					t.Error(err)
				}
				ids[i] = id
			})
		}
		wg.Wait()
		if calls.Load() != 1 {
			t.Errorf("thread created %d times", calls.Load())
		}
		for _, id := range ids {
			if id != "thread_shared" {
				t.Errorf("got thread %q", id)
			}
		}
		// A failed creation releases the lock for the next caller.
		_, err := s.RunThread(ctx, "r1", "other", time.Minute, func(context.Context) (string, error) { return "", errors.New("boom") })
		if err == nil {
			t.Fatal("creation error lost")
		}
		id, err := s.RunThread(ctx, "r1", "other", time.Minute, func(context.Context) (string, error) { return "thread_2", nil })
		if err != nil || id != "thread_2" {
			t.Errorf("after a failed creation: %q, %v", id, err)
		}
	})
}

func TestRunLifecycleAndWait(t *testing.T) {
	backends(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		if _, err := s.Run(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Errorf("unknown run: %v", err)
		}
		p := testPipeline("map", "reduce")
		if _, err := s.CreateRun(ctx, p, pipelines.RunInfo{ID: "r1"}); err != nil {
			t.Fatal(err)
		}
		if created, err := s.CreateRun(ctx, p, pipelines.RunInfo{ID: "r1"}); err != nil || created {
			t.Errorf("second create: %v, %v; want a no-op", created, err)
		}
		for _, err := range []error{s.MarkRunning(ctx, "r1"), s.MarkRunning(ctx, "r1"), s.MarkFinalizing(ctx, "r1")} {
			if err != nil {
				t.Fatal(err)
			}
		}
		done := make(chan *RunState)
		go func() {
			st, err := s.Wait(ctx, "r1")
			if err != nil {
				t.Error(err)
			}
			done <- st
		}()
		if err := s.Finish(ctx, "r1", StatusSucceeded, "/results/pipe/r1"); err != nil {
			t.Fatal(err)
		}
		st := <-done
		if st.Status != StatusSucceeded || st.ResultDir != "/results/pipe/r1" || st.StartedAt.IsZero() || st.FinishedAt.IsZero() ||
			len(st.Steps) != 2 || st.Steps[1].Planned {
			t.Errorf("final state %+v", st)
		}
		if err := s.Finish(ctx, "r1", StatusRunning, ""); err == nil {
			t.Error("Finish accepted a non-terminal status")
		}
		runs, err := s.Runs(ctx)
		if err != nil || len(runs) != 1 || runs[0].ID != "r1" {
			t.Errorf("runs %+v, %v", runs, err)
		}
	})
}

func TestKeysExpire(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	s := New(c, "tm:", WithRetention(time.Hour))
	ctx := context.Background()
	if _, err := s.CreateRun(ctx, testPipeline("map"), pipelines.RunInfo{ID: "r1"}); err != nil {
		t.Fatal(err)
	}
	if err := s.PlanStep(ctx, "r1", "map", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.BeginItem(ctx, "r1", "map", "k"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Record(ctx, "r1", item("map", 0, results.StateSucceeded, 1, 1), 0); err != nil {
		t.Fatal(err)
	}
	keys, err := c.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, "tm:") {
			t.Errorf("key %s lacks the prefix", k)
		}
		if k == "tm:runs" {
			continue // the index is trimmed by age instead
		}
		if ttl := c.PTTL(ctx, k).Val(); ttl <= 0 || ttl > time.Hour {
			t.Errorf("key %s has TTL %v, want (0, 1h]", k, ttl)
		}
	}
}

func TestBeginItemSlotAndRecordAndRelease(t *testing.T) {
	backends(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		req := func(holder string) SlotRequest {
			return SlotRequest{Pipeline: "pipe", Limit: 1, Holder: holder, TTL: time.Minute}
		}
		holders := func() []string {
			h, err := s.rdb.ZRange(ctx, s.inflightKey("pipe"), 0, -1).Result()
			if err != nil {
				t.Fatal(err)
			}
			return h
		}
		a, err := s.BeginItemSlot(ctx, "r1", "map", "a", req("task-a"))
		if err != nil {
			t.Fatal(err)
		}
		if a.Done || a.Lease == nil || a.Checkpoint.Attempts != 1 {
			t.Fatalf("first item: done %v, lease %v, attempts %d; want a slot on attempt 1", a.Done, a.Lease, a.Checkpoint.Attempts)
		}
		if h := holders(); len(h) != 1 || h[0] != "task-a#1" {
			t.Fatalf("slot holders %q, want [task-a#1]", h)
		}
		b, err := s.BeginItemSlot(ctx, "r1", "map", "b", req("task-b"))
		if err != nil {
			t.Fatal(err)
		}
		if b.Lease != nil || b.Checkpoint.Attempts != 1 {
			t.Fatalf("second item with a limit of 1: lease %v, attempts %d; want no slot, attempt counted", b.Lease, b.Checkpoint.Attempts)
		}

		// A script cache flushed under the pipeline (a restarted Redis) falls
		// back to loading the script; the record is written either way.
		if err := s.rdb.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		rec, err := s.RecordAndRelease(ctx, "r1", results.Item{Step: "map", Key: "a", State: results.StateSucceeded}, 0, a.Lease)
		if err != nil || !rec.New || rec.Done != 1 {
			t.Fatalf("record and release: %+v, %v", rec, err)
		}
		if h := holders(); len(h) != 0 {
			t.Fatalf("slot holders after the record %q, want none", h)
		}
		if err := a.Lease.Release(ctx); err != nil {
			t.Fatalf("releasing a lease given back with the record: %v", err)
		}

		b, err = s.BeginItemSlot(ctx, "r1", "map", "b", req("task-b"))
		if err != nil || b.Lease == nil || b.Checkpoint.Attempts != 2 {
			t.Fatalf("retried item once the slot is free: %+v, %v; want a slot on attempt 2", b, err)
		}
		if h := holders(); len(h) != 1 || h[0] != "task-b#2" {
			t.Fatalf("slot holders %q, want [task-b#2]", h)
		}
		if err := b.Lease.Release(ctx); err != nil {
			t.Fatal(err)
		}

		// A recorded item, and any item of a stopping run, takes no slot.
		done, err := s.BeginItemSlot(ctx, "r1", "map", "a", req("task-a2"))
		if err != nil || !done.Done || done.Lease != nil {
			t.Fatalf("recorded item: %+v, %v; want done without a slot", done, err)
		}
		if err := s.rdb.HSet(ctx, s.runKey("r1"), "stop", "cancelled").Err(); err != nil {
			t.Fatal(err)
		}
		st, err := s.BeginItemSlot(ctx, "r1", "map", "c", req("task-c"))
		if err != nil || st.Stop != "cancelled" || st.Lease != nil {
			t.Fatalf("item of a stopping run: %+v, %v; want the stop reason without a slot", st, err)
		}
		if h := holders(); len(h) != 0 {
			t.Fatalf("slot holders %q, want none", h)
		}
	})
}

// Finish and Fail publish the run's end, so Wait returns without waiting for
// its next poll.
func TestRunEndIsPublished(t *testing.T) {
	backends(t, func(t *testing.T, s *Store) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ps := s.rdb.Subscribe(ctx, s.endedChannel("r1"), s.endedChannel("r2"))
		defer ps.Close()
		if _, err := ps.Receive(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := ps.Receive(ctx); err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{"r1", "r2"} {
			if _, err := s.CreateRun(ctx, testPipeline("map"), pipelines.RunInfo{ID: id}); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Finish(ctx, "r1", StatusSucceeded, "/results/pipe/r1"); err != nil {
			t.Fatal(err)
		}
		if err := s.Fail(ctx, "r2", errors.New("artifact sets: folder gone")); err != nil {
			t.Fatal(err)
		}
		for _, want := range []struct{ channel, status string }{
			{s.endedChannel("r1"), StatusSucceeded}, {s.endedChannel("r2"), StatusError},
		} {
			msg, err := ps.ReceiveMessage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if msg.Channel != want.channel || msg.Payload != want.status {
				t.Errorf("published %s on %s, want %s on %s", msg.Payload, msg.Channel, want.status, want.channel)
			}
		}
		st, err := s.Wait(ctx, "r2")
		if err != nil || st.Status != StatusError || st.Error != "artifact sets: folder gone" {
			t.Errorf("Wait on an ended run: %+v, %v", st, err)
		}
	})
}
