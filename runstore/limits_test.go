package runstore

import (
	"context"
	"math"
	"testing"
	"time"
)

func TestPauseForStartsOnceAndKeepsWhatWasAsked(t *testing.T) {
	backends(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		req := PauseRequest{Wait: 2 * time.Second, Asked: 24 * time.Hour, Status: 429}
		if started, err := s.PauseFor(ctx, req); err != nil || !started {
			t.Fatalf("first pause: started %v, %v", started, err)
		}
		// More answers of the same overload extend it by a little: not a
		// new pause, nothing to log.
		for range 3 {
			if started, err := s.PauseFor(ctx, req); err != nil || started {
				t.Fatalf("repeated pause: started %v, %v", started, err)
			}
		}
		p, err := s.PauseInfo(ctx)
		if err != nil || p == nil {
			t.Fatalf("PauseInfo: %+v, %v", p, err)
		}
		if p.Status != 429 || p.Asked != 24*time.Hour || p.Granted != 2*time.Second || !p.Capped() {
			t.Errorf("pause %+v", p)
		}
		if p.Left <= 0 || p.Left > 2*time.Second || time.Until(p.Until) > 2100*time.Millisecond {
			t.Errorf("pause left %v, until %v", p.Left, time.Until(p.Until))
		}
	})
}

func TestNoPauseInfoWithoutPause(t *testing.T) {
	backends(t, func(t *testing.T, s *Store) {
		if p, err := s.PauseInfo(context.Background()); err != nil || p != nil {
			t.Fatalf("PauseInfo: %+v, %v", p, err)
		}
	})
}

func TestAdaptiveCutEngagesFromTheMeasuredRateAndSpacesRequests(t *testing.T) {
	backends(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a := s.Adaptive("http://api.example", AdaptiveParams{})
		// Off: a gate grants at once and says so.
		if g, err := a.Gate(ctx, "pipe", 0); err != nil || !g.Granted || g.Wait != 0 || g.Engaged {
			t.Fatalf("gate while off: %+v, %v", g, err)
		}
		if _, err := a.Tick(ctx, 10); err != nil { // the fleet sent 10 requests this second
			t.Fatal(err)
		}
		c, err := a.Cut(ctx, 0)
		if err != nil || !c.Cut || !c.Engaged {
			t.Fatalf("first cut: %+v, %v", c, err)
		}
		// 70% of the 10 sent this second, scaled to a whole second when
		// the second has just begun (by at most 10).
		if c.Rate < 6.9 || c.Rate > 70.1 {
			t.Errorf("rate after the first cut %.1f, want 7..70", c.Rate)
		}
		// A second 429 of the same overload does not cut again.
		if c2, err := a.Cut(ctx, 0); err != nil || c2.Cut || c2.Engaged {
			t.Fatalf("second cut within the window: %+v, %v", c2, err)
		}
		st, err := a.Tick(ctx, 0)
		if err != nil || st.Engaged <= 0 || math.Abs(st.Rate-c.Rate) > c.Rate*0.1 {
			t.Fatalf("tick: %+v (rate after cut %.1f), %v", st, c.Rate, err)
		}
		// Reserved slots are spaced 1/rate apart, up to the horizon; a
		// request behind a longer queue is told to ask again.
		step := time.Duration(float64(time.Second) / st.Rate)
		var waits []time.Duration
		for {
			g, err := a.Gate(ctx, "pipe", 0)
			if err != nil || !g.Engaged {
				t.Fatalf("gate: %+v, %v", g, err)
			}
			if !g.Granted {
				if g.Wait <= 0 || g.Wait > step {
					t.Errorf("refused with wait %v, want (0, %v]", g.Wait, step)
				}
				break
			}
			if g.Wait > DefaultAdaptHorizon {
				t.Fatalf("granted %v ahead, horizon %v", g.Wait, DefaultAdaptHorizon)
			}
			waits = append(waits, g.Wait)
		}
		if len(waits) < 3 {
			t.Fatalf("only %d grants at %.1f/s", len(waits), st.Rate)
		}
		for i := 1; i < len(waits); i++ {
			// Each call takes a little time, which the next wait no longer
			// includes.
			if d := waits[i] - waits[i-1]; d < step-20*time.Millisecond || d > step {
				t.Errorf("slot %d is %v after the one before, want about %v at %.1f/s", i, d, step, st.Rate)
			}
		}
		// A pause holds every request back.
		if err := s.Pause(ctx, time.Second); err != nil {
			t.Fatal(err)
		}
		if g, err := a.Gate(ctx, "pipe", 0); err != nil || g.Granted || g.Wait < 500*time.Millisecond {
			t.Errorf("gate during a pause: %+v, %v", g, err)
		}
	})
}

func TestUncountAttempt(t *testing.T) {
	backends(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		if err := s.UncountAttempt(ctx, "run", "step", "key"); err != nil {
			t.Fatal(err)
		}
		if n, _ := s.rdb.Exists(ctx, s.ckptKey("run", "step", "key")).Result(); n != 0 {
			t.Fatal("uncounting created a checkpoint")
		}
		s.rdb.HSet(ctx, s.ckptKey("run", "step", "key"), "attempts", 2)
		if err := s.UncountAttempt(ctx, "run", "step", "key"); err != nil {
			t.Fatal(err)
		}
		if n, _ := s.rdb.HGet(ctx, s.ckptKey("run", "step", "key"), "attempts").Int(); n != 1 {
			t.Fatalf("attempts %d, want 1", n)
		}
	})
}
