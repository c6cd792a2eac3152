package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/threadmill/threadmill/results"
	"github.com/threadmill/threadmill/runstore"
	"github.com/threadmill/threadmill/workspace/simulator"
)

// Whatever state and stop reason a server gives a cancelled interaction
// (Completed and "cancelled", Error and "cancelled", or Completed and
// "stop", workspace-api.md §12), a canceled run records the items it cut as
// canceled, never as succeeded with a partial answer, and counts what they
// used.
func TestCancelWhateverTheCancelledInteractionEndsIn(t *testing.T) {
	for _, mode := range []string{simulator.CancelEndCompleted, simulator.CancelEndError, simulator.CancelEndStop} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t, simulator.Config{Async: true, Latency: time.Minute, Compat: simulator.Compat{CancelEnd: mode}})
			e.folder("Inbox", 6)
			e.startWorker()
			run := e.start(e.pipeline(cancelPipeline), "cancel-end")
			waitFor(t, 30*time.Second, "4 interactions in flight", func() bool { return e.sim.Counters().InteractionsCreated == 4 })
			if _, err := e.store.Cancel(context.Background(), run, "stop"); err != nil {
				t.Fatal(err)
			}
			st := e.wait(run, 30*time.Second)
			if st.Status != runstore.StatusCanceled || st.Canceled != 6 || st.Succeeded != 0 {
				t.Fatalf("status %q: %d canceled, %d succeeded; want all 6 canceled", st.Status, st.Canceled, st.Succeeded)
			}
			if c := e.sim.Counters(); c.InteractionsCancelled != 4 {
				t.Errorf("simulator cancelled %d interactions, want 4", c.InteractionsCancelled)
			}
			sent := 0
			for _, it := range readItems(t, resultsFile(st.ResultDir)) {
				if it.State != results.StateCanceled {
					t.Errorf("item %s: %s %q", it.Key, it.State, it.Output)
				}
				if len(it.InteractionIDs) > 0 {
					sent++
				}
			}
			if sent != 4 {
				t.Errorf("%d canceled items list their interaction, want 4", sent)
			}
		})
	}
}
