package runstore

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/threadmill/threadmill/pipelines"
)

// admit calls Admit and fails the test on an error.
func admit(t *testing.T, s *Store, id, overlap string) Admission {
	t.Helper()
	a, err := s.Admit(context.Background(), testPipeline("map"), pipelines.RunInfo{ID: id}, overlap)
	if err != nil {
		t.Fatalf("Admit %s (%s): %v", id, overlap, err)
	}
	return a
}

func wantAdmission(t *testing.T, what string, got, want Admission) {
	t.Helper()
	got.Hash = "" // not what these tests are about
	if got != want {
		t.Errorf("%s: got %+v, want %+v", what, got, want)
	}
}

func wantActive(t *testing.T, s *Store, want ...string) {
	t.Helper()
	got, err := s.ActiveRuns(context.Background(), "pipe")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) && (len(got) != 0 || len(want) != 0) {
		t.Errorf("active runs: got %v, want %v", got, want)
	}
}

func TestAdmitSkip(t *testing.T) {
	backends(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		if _, err := s.CreateRun(ctx, testPipeline("map"), pipelines.RunInfo{ID: "r1"}); err != nil {
			t.Fatal(err)
		}
		if err := s.MarkRunning(ctx, "r1"); err != nil {
			t.Fatal(err)
		}
		wantActive(t, s, "r1")
		wantAdmission(t, "r2 while r1 runs", admit(t, s, "r2", pipelines.OverlapSkip),
			Admission{Outcome: AdmitSkipped, First: true, Blocker: "r1"})
		if _, _, err := s.Status(ctx, "r2"); !errors.Is(err, ErrNotFound) {
			t.Errorf("a skipped run was recorded: Status = %v", err)
		}
		wantAdmission(t, "r2 again", admit(t, s, "r2", pipelines.OverlapSkip),
			Admission{Outcome: AdmitSkipped, Blocker: "r1"})
		if err := s.Finish(ctx, "r1", StatusSucceeded, "/tmp/r1"); err != nil {
			t.Fatal(err)
		}
		wantActive(t, s)
		// The decision sticks: a second scheduler handling r2's fire time
		// after r1 ended does not start it.
		wantAdmission(t, "r2 after r1 ended", admit(t, s, "r2", pipelines.OverlapSkip),
			Admission{Outcome: AdmitSkipped, Blocker: "r1"})
		wantAdmission(t, "r3 after r1 ended", admit(t, s, "r3", pipelines.OverlapSkip),
			Admission{Outcome: AdmitCreated, First: true})
		wantAdmission(t, "r3 again", admit(t, s, "r3", pipelines.OverlapSkip),
			Admission{Outcome: AdmitExists})
		// allow ignores both the skip decision and the active run.
		wantAdmission(t, "r2 allowed", admit(t, s, "r2", pipelines.OverlapAllow),
			Admission{Outcome: AdmitCreated, First: true})
		wantActive(t, s, "r3", "r2")
	})
}

func TestAdmitQueue(t *testing.T) {
	backends(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		wantAdmission(t, "r1", admit(t, s, "r1", pipelines.OverlapQueue),
			Admission{Outcome: AdmitCreated, First: true})
		wantAdmission(t, "r2", admit(t, s, "r2", pipelines.OverlapQueue),
			Admission{Outcome: AdmitWaiting, First: true, Blocker: "r1"})
		wantAdmission(t, "r3", admit(t, s, "r3", pipelines.OverlapQueue),
			Admission{Outcome: AdmitWaiting, First: true, Blocker: "r1"})
		wantAdmission(t, "r2 again", admit(t, s, "r2", pipelines.OverlapQueue),
			Admission{Outcome: AdmitWaiting, Blocker: "r1"})
		r2, err := s.Run(ctx, "r2")
		if err != nil {
			t.Fatal(err)
		}
		if r2.Status != StatusPending || r2.WaitingFor != "r1" {
			t.Errorf("r2: status %q waiting for %q, want pending waiting for r1", r2.Status, r2.WaitingFor)
		}
		if err := s.Finish(ctx, "r1", StatusFailed, ""); err != nil {
			t.Fatal(err)
		}
		// r3 was recorded after r2: it waits for r2 now, in order.
		wantAdmission(t, "r3 after r1", admit(t, s, "r3", pipelines.OverlapQueue),
			Admission{Outcome: AdmitWaiting, Blocker: "r2"})
		wantAdmission(t, "r2 after r1", admit(t, s, "r2", pipelines.OverlapQueue),
			Admission{Outcome: AdmitReleased, First: true})
		wantAdmission(t, "r2 released twice", admit(t, s, "r2", pipelines.OverlapQueue),
			Admission{Outcome: AdmitExists})
		if r2, _ = s.Run(ctx, "r2"); r2.WaitingFor != "" {
			t.Errorf("released r2 still waits for %q", r2.WaitingFor)
		}
		if err := s.MarkRunning(ctx, "r2"); err != nil {
			t.Fatal(err)
		}
		wantAdmission(t, "r3 while r2 runs", admit(t, s, "r3", pipelines.OverlapQueue),
			Admission{Outcome: AdmitWaiting, Blocker: "r2"})
		if err := s.Fail(ctx, "r2", errors.New("boom")); err != nil {
			t.Fatal(err)
		}
		wantAdmission(t, "r3 after r2 failed", admit(t, s, "r3", pipelines.OverlapQueue),
			Admission{Outcome: AdmitReleased, First: true})
		wantActive(t, s, "r3")
	})
}

// A waiting run that was canceled is released at once, so a worker can
// finalize it as canceled instead of it waiting for nothing.
func TestAdmitReleasesCanceledWaitingRun(t *testing.T) {
	backends(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		admit(t, s, "r1", pipelines.OverlapQueue)
		admit(t, s, "r2", pipelines.OverlapQueue)
		if _, err := s.Cancel(ctx, "r2", "not this week"); err != nil {
			t.Fatal(err)
		}
		wantAdmission(t, "canceled r2", admit(t, s, "r2", pipelines.OverlapQueue),
			Admission{Outcome: AdmitReleased, First: true})
	})
}

// CreateRun (enqueue, run, backfill) ignores overlap but joins the active
// runs, and releases a waiting run.
func TestCreateRunJoinsActiveRuns(t *testing.T) {
	backends(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		p := testPipeline("map")
		if _, err := s.CreateRun(ctx, p, pipelines.RunInfo{ID: "r1"}); err != nil {
			t.Fatal(err)
		}
		admit(t, s, "r2", pipelines.OverlapQueue)
		created, err := s.CreateRun(ctx, p, pipelines.RunInfo{ID: "r2"})
		if err != nil || created {
			t.Fatalf("CreateRun of the waiting r2 = %v, %v; want false, nil", created, err)
		}
		if r2, _ := s.Run(ctx, "r2"); r2.WaitingFor != "" {
			t.Errorf("CreateRun left r2 waiting for %q", r2.WaitingFor)
		}
		wantActive(t, s, "r1", "r2")
		other := testPipeline("map")
		other.Name = "other"
		if _, err := s.Admit(ctx, other, pipelines.RunInfo{ID: "r1"}, pipelines.OverlapSkip); err == nil {
			t.Error("Admit of a run id of another pipeline: no error")
		}
	})
}

// A run that ended without leaving the active runs (a crash between its end
// and the removal) or whose keys expired does not hold the pipeline back.
func TestAdmitDropsStaleActiveRuns(t *testing.T) {
	backends(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		admit(t, s, "gone", pipelines.OverlapAllow)
		admit(t, s, "ended", pipelines.OverlapAllow)
		if err := s.rdb.Del(ctx, s.runKey("gone")).Err(); err != nil {
			t.Fatal(err)
		}
		if err := s.rdb.HSet(ctx, s.runKey("ended"), "status", StatusCanceled).Err(); err != nil {
			t.Fatal(err)
		}
		wantActive(t, s, "gone", "ended")
		wantAdmission(t, "next", admit(t, s, "next", pipelines.OverlapSkip),
			Admission{Outcome: AdmitCreated, First: true})
		wantActive(t, s, "next")
	})
}

// Schedulers handling the same fire time at once make one decision.
func TestAdmitConcurrentOneDecision(t *testing.T) {
	for _, overlap := range []string{pipelines.OverlapSkip, pipelines.OverlapQueue} {
		t.Run(overlap, func(t *testing.T) {
			backends(t, func(t *testing.T, s *Store) {
				admit(t, s, "r1", pipelines.OverlapAllow)
				const n = 16
				var wg sync.WaitGroup
				got := make([]Admission, n)
				errs := make([]error, n)
				for i := range n {
					wg.Go(func() {
						got[i], errs[i] = s.Admit(context.Background(), testPipeline("map"), pipelines.RunInfo{ID: "r2"}, overlap)
					})
				}
				wg.Wait()
				first := 0
				want := map[string]string{pipelines.OverlapSkip: AdmitSkipped, pipelines.OverlapQueue: AdmitWaiting}[overlap]
				for i := range n {
					if errs[i] != nil {
						t.Fatal(errs[i])
					}
					if got[i].Outcome != want || got[i].Blocker != "r1" {
						t.Errorf("call %d: %+v, want %s behind r1", i, got[i], want)
					}
					if got[i].First {
						first++
					}
				}
				if first != 1 {
					t.Errorf("%d calls made the decision, want 1", first)
				}
			})
		})
	}
}

// Canceling a run stuck forever (no worker will ever finalize it) frees its
// pipeline at once.
func TestAdmitIgnoresCanceledRun(t *testing.T) {
	backends(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		admit(t, s, "stuck", pipelines.OverlapAllow)
		if err := s.MarkRunning(ctx, "stuck"); err != nil {
			t.Fatal(err)
		}
		if err := s.Stop(ctx, "stuck", "max_total_tokens reached"); err != nil {
			t.Fatal(err)
		}
		wantAdmission(t, "while stuck stops", admit(t, s, "r2", pipelines.OverlapQueue),
			Admission{Outcome: AdmitWaiting, First: true, Blocker: "stuck"})
		if _, err := s.Cancel(ctx, "stuck", "stuck since Monday"); err != nil {
			t.Fatal(err)
		}
		wantAdmission(t, "after stuck was canceled", admit(t, s, "r2", pipelines.OverlapQueue),
			Admission{Outcome: AdmitReleased, First: true})
	})
}
