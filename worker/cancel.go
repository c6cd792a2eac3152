package worker

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/threadmill/threadmill/results"
	"github.com/threadmill/threadmill/runstore"
	"github.com/threadmill/threadmill/workspace"
)

// errRunCanceled is the cause of an item context ended by a run's
// cancellation.
var errRunCanceled = errors.New("run canceled")

// cancelCheck is how often a worker looks for cancellations of the runs it
// has items of in flight.
const cancelCheck = 500 * time.Millisecond

// cancelWait bounds how long a canceled item waits for its cancelled
// interaction's final usage.
const cancelWait = 3 * time.Second

// inflight tracks the items a worker is processing, by run, so that a run's
// cancellation can end them.
type inflight struct {
	mu   sync.Mutex
	next int
	runs map[string]map[int]context.CancelCauseFunc
}

// add registers the cancel function of an item of run; the returned func
// removes it.
func (f *inflight) add(run string, cancel context.CancelCauseFunc) (remove func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.runs == nil {
		f.runs = map[string]map[int]context.CancelCauseFunc{}
	}
	if f.runs[run] == nil {
		f.runs[run] = map[int]context.CancelCauseFunc{}
	}
	id := f.next
	f.next++
	f.runs[run][id] = cancel
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		delete(f.runs[run], id)
		if len(f.runs[run]) == 0 {
			delete(f.runs, run)
		}
	}
}

// ids returns the runs with items in flight.
func (f *inflight) ids() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]string, 0, len(f.runs))
	for id := range f.runs {
		out = append(out, id)
	}
	return out
}

// cancel ends every item of run in flight with errRunCanceled.
func (f *inflight) cancel(run string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.runs[run] {
		c(errRunCanceled)
	}
	return len(f.runs[run])
}

// watchCancels ends the items in flight of canceled runs, checking every
// cancelCheck until ctx is done.
func (w *Worker) watchCancels(ctx context.Context) {
	t := time.NewTicker(cancelCheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		runs := w.inflight.ids()
		if len(runs) == 0 {
			continue
		}
		stops, err := w.store.Stops(ctx, runs)
		if err != nil {
			continue // Redis is down: the items notice on their own
		}
		for run, stop := range stops {
			if _, ok := runstore.CancelReason(stop); ok {
				if n := w.inflight.cancel(run); n > 0 {
					w.log.Info("run canceled: ending its items in flight", "run", run, "items", n)
				}
			}
		}
	}
}

// runCanceled reports whether ctx ended because the item's run was
// canceled.
func runCanceled(ctx context.Context) bool {
	return errors.Is(context.Cause(ctx), errRunCanceled)
}

// cancelItem settles an item whose run was canceled while it was in flight:
// each interaction it had created and not finished is cancelled through the
// API (a 409 means it had finished: its answer is kept, and an item whose
// every turn finished is recorded succeeded), its partial usage is counted,
// and the item is recorded canceled.
func (w *Worker) cancelItem(ctx context.Context, ir *itemRun, reason string, reserved int64) error {
	rc := ir.rc
	dctx, cancel := context.WithTimeout(withRun(context.WithoutCancel(ctx), rc), recordTimeout)
	defer cancel()
	for turn, id := range ir.ck.Pending {
		if _, done := ir.ck.Turns[turn]; done || id == "" {
			continue
		}
		if id == creating {
			found, err := w.lookUp(dctx, ir, turn, CorrelationID(rc.id, ir.it.Key, turn))
			if err != nil || found == "" {
				continue
			}
			id = found
		}
		in, cancelled := w.cancelInteraction(dctx, ir, id)
		// Written through the checkpoint, which a retry of the run resumes
		// from: the cancelled interaction stays listed and billed. An
		// answer is kept only when the cancel did not take (409, or it
		// failed and the interaction finished on its own): a server may end
		// a cancelled interaction Completed with stop_reason "stop"
		// (workspace-api.md §12), and its partial answer is no answer.
		if in != nil && !cancelled && in.State == workspace.StateCompleted && in.StopReason() != workspace.StopReasonCancelled {
			t := runstore.Turn{InteractionID: id, Output: in.Output(), Usage: in.Usage(), StopReason: in.StopReason()}
			if err := w.store.CheckpointTurn(dctx, rc.id, ir.it.Step, ir.it.Key, turn, t); err != nil {
				return err
			}
			ir.ck.Turns[turn] = t
			continue
		}
		var used workspace.Usage
		if in != nil {
			used = in.Usage()
		}
		if err := w.store.CheckpointDiscard(dctx, rc.id, ir.it.Step, ir.it.Key, turn, id, used); err != nil {
			return err
		}
		ir.ck.Discarded = append(ir.ck.Discarded, id)
		ir.ck.Wasted = ir.ck.Wasted.Add(used)
	}
	// An answer not yet checked against output_schema is no answer.
	if len(ir.ck.Turns) == len(ir.it.Requests) && ir.step.OutputSchema == nil {
		return w.finish(ctx, ir, results.StateSucceeded, "", reserved)
	}
	return w.finish(ctx, ir, results.StateCanceled, "run canceled: "+reason, reserved)
}

// cancelInteraction cancels an interaction and returns it as it ended (nil
// when it could not be read), and whether the server cancelled it (204)
// rather than finding it finished (409) or failing.
func (w *Worker) cancelInteraction(ctx context.Context, ir *itemRun, id string) (*workspace.Interaction, bool) {
	// Not withRun: a cancel does not wait for the run's pacing; only the
	// project of project-scoped routes is needed.
	ctx = workspace.ContextWithProject(ctx, ir.rc.spec.Pipeline.Workspace.Project)
	err := w.api.CancelInteraction(ctx, id)
	switch {
	case err == nil:
		ir.logger().Info("cancelled the item's interaction", "interaction", id)
	case errors.Is(err, workspace.ErrAlreadyFinished):
		ir.logger().Info("the item's interaction had finished before the cancel; keeping its answer", "interaction", id)
	default:
		ir.logger().Warn("could not cancel the item's interaction", "interaction", id, "error", err)
	}
	wctx, cancel := context.WithTimeout(ctx, cancelWait)
	defer cancel()
	in, werr := w.api.WaitInteraction(wctx, id)
	if werr != nil {
		if got, gerr := w.api.GetInteraction(ctx, id); gerr == nil {
			return got, err == nil
		}
		return nil, err == nil
	}
	return in, err == nil
}
