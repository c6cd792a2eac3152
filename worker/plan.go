package worker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"time"

	"github.com/hibiken/asynq"
	"github.com/sourcegraph/conc/pool"

	"github.com/threadmill/threadmill/jobs"
	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/runstore"
	"github.com/threadmill/threadmill/workspace"
)

// enqueueWorkers is how many goroutines enqueue a step's items. Each waits
// for its own enqueue, and the batching client (see batchingClient) packs
// the calls waiting at once into one pipeline, so this bounds the pipelines'
// size: enough to fill batchers pipelines of maxBatch commands.
const enqueueWorkers = batchers * maxBatch / 2

// handleRunStart resolves the run's artifact sets (once; later steps and
// retries reuse them), then plans and enqueues the first step.
func (w *Worker) handleRunStart(ctx context.Context, t *asynq.Task) error {
	p, rc, err := taskRun(ctx, w, t, jobs.DecodeRunStart)
	if err != nil {
		return err
	}
	status, stop, err := w.store.Status(ctx, rc.id)
	if err != nil {
		return err
	}
	if runstore.Terminal(status) {
		rc.log.Info("run already finished; nothing to start", "status", status)
		noteDid(ctx, "nothing: the run is already %s", status)
		return nil
	}
	if _, canceled := runstore.CancelReason(stop); canceled {
		rc.log.Info("run canceled before it started; finalizing")
		if err := w.store.MarkRunning(ctx, rc.id); err != nil {
			return err
		}
		ft, err := jobs.NewFinalize(jobs.Finalize{RunID: rc.id, Attempt: p.Attempt}, controlOpts()...)
		noteDid(ctx, "the run was canceled before it started; enqueued its finalize")
		return w.enqueue(ctx, ft, err)
	}
	if err := w.store.MarkRunning(ctx, rc.id); err != nil {
		return err
	}
	rc.log.Info("run started")
	sets, err := w.store.Sets(ctx, rc.id)
	if err != nil {
		return err
	}
	if sets == nil {
		// The sets go to Redis as they are listed, sorted there: a worker
		// never holds a set of a million artifacts.
		sw := w.store.NewSetsWriter(rc.id)
		if err := pipelines.ResolveTo(withRun(ctx, rc), w.api, rc.spec.Pipeline, rc.spec.Info, sw); err != nil {
			sw.Discard(ctx)
			return w.runError(ctx, rc, fmt.Errorf("resolve artifact sets: %w", err))
		}
		if sets, err = sw.Save(ctx); err != nil {
			return err
		}
	}
	return w.startStep(ctx, rc, 0, sets, p.Attempt)
}

// runError ends the run in StatusError when err is permanent or this was
// the task's last attempt; otherwise it returns err for asynq to retry.
func (w *Worker) runError(ctx context.Context, rc *runCtx, err error) error {
	if shuttingDown(ctx) {
		return err
	}
	if !isPermanent(err) && workspace.IsRetryable(err) && !lastAttempt(ctx) {
		rc.log.Warn("run step failed; retrying", "error", err)
		return err
	}
	rc.log.Error("run failed", "error", err)
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	if ferr := w.store.Fail(rctx, rc.id, err); ferr != nil {
		return ferr
	}
	w.notifyError(rctx, rc, err)
	return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
}

// startStep plans step idx of the run's attempt and enqueues its items that
// have no record yet. It is idempotent: a step already enqueued is left
// alone (and advanced past when an earlier attempt finished it, as after a
// retry), and one whose enqueueing was interrupted is planned again (plans
// are deterministic) and enqueued with the same task ids, so no item runs
// twice.
func (w *Worker) startStep(ctx context.Context, rc *runCtx, idx int, sets pipelines.Sets, attempt int) error {
	p := rc.spec.Pipeline
	step := p.Steps[idx]
	log := rc.log.With("step", step.ID)
	if enqueued, err := w.store.Enqueued(ctx, rc.id, step.ID); err != nil || enqueued {
		if err != nil {
			return err
		}
		done, total, err := w.store.StepProgress(ctx, rc.id, step.ID)
		if err != nil || total < 0 || done < total {
			return err
		}
		return w.advanceStep(ctx, rc, step.ID, attempt)
	}
	began := time.Now()
	sp, err := w.stepPlan(ctx, rc, step, sets)
	if err == nil {
		err = checkPlan(ctx, sp)
	}
	if isSetRead(err) {
		return err
	}
	if err != nil {
		return w.runError(ctx, rc, permanent(fmt.Errorf("plan step %s: %w", step.ID, err)))
	}
	if err := w.store.PlanStep(ctx, rc.id, step.ID, sp.Len()); err != nil {
		return err
	}
	log.Info("step planned", "items", sp.Len(), "plan_time", time.Since(began))
	f := jobs.FanOut{RunID: rc.id, Step: step.ID, Attempt: attempt}
	end, wait, err := w.fanOutEnd(ctx, rc, f)
	if err != nil || wait {
		return err
	}
	return w.fanOut(ctx, rc, sp, f, end)
}

// stepPlan plans a step of the run from its resolved sets and the outputs
// of the steps it needs.
func (w *Worker) stepPlan(ctx context.Context, rc *runCtx, step pipelines.Step, sets pipelines.Sets) (*pipelines.StepPlan, error) {
	prior := make(map[string]pipelines.StepOutput, len(step.Needs))
	for _, need := range step.Needs {
		_, total, err := w.store.StepProgress(ctx, rc.id, need)
		if err != nil {
			return nil, err
		}
		out, err := w.store.StepOutput(ctx, rc.id, need, max(total, 0))
		if err != nil {
			return nil, err
		}
		prior[need] = out
	}
	return pipelines.NewStepPlan(ctx, rc.spec.Pipeline, step.ID, rc.spec.Info, sets, prior)
}

// fanOutWait is how long a chunk of a windowed fan-out waits before it
// looks again for room in the window.
const fanOutWait = 250 * time.Millisecond

// fanOut enqueues the items of a planned step from plan index f.From up to
// end (fanOutEnd's), followed by a step:fanout task for the rest when end
// is not the step's last item. Once the last item is enqueued the step is
// marked enqueued, and advanced at once when every item already has a
// record (a retry of finished items).
func (w *Worker) fanOut(ctx context.Context, rc *runCtx, sp *pipelines.StepPlan, f jobs.FanOut, end int) error {
	total := sp.Len()
	var recorded map[string]bool
	if f.Attempt > 0 {
		// A retry: only the items the earlier attempts did not finish.
		var err error
		if recorded, err = w.store.Recorded(ctx, rc.id, f.Step); err != nil {
			return err
		}
	}
	began := time.Now()
	skip := func(key string) bool { return recorded[key] }
	reused := &reuseFilter{}
	items := w.reusing(ctx, rc, sp, sp.ItemsFrom(ctx, f.From), end, skip, reused)
	n, err := w.enqueueItems(ctx, rc, items, func(it pipelines.Item) bool { return it.Index >= end }, skip, f.Attempt)
	if err == nil {
		err = reused.err
	}
	if err != nil {
		return err
	}
	if f.From == 0 && end == total {
		noteDid(ctx, "enqueued %s of step %s", plural(n, "item"), f.Step)
	} else {
		noteDid(ctx, "enqueued %s of step %s, items %d to %d", plural(n, "item"), f.Step, f.From, end-1)
	}
	if reused.n > 0 {
		noteDid(ctx, "%d items of step %s reused an earlier run's output", reused.n, f.Step)
	}
	rc.log.Info("step items enqueued", "step", f.Step, "items", n, "reused", reused.n, "from", f.From, "to", end, "of", total, "enqueue_time", time.Since(began))
	if end < total {
		next := jobs.FanOut{RunID: f.RunID, Step: f.Step, From: end, Attempt: f.Attempt}
		t, err := jobs.NewFanOut(next, append(controlOpts(), asynq.Retention(time.Hour))...)
		return w.enqueue(ctx, t, err)
	}
	if err := w.store.MarkEnqueued(ctx, rc.id, f.Step); err != nil {
		return err
	}
	done, _, err := w.store.StepProgress(ctx, rc.id, f.Step)
	if err != nil || done < total {
		return err
	}
	return w.advanceStep(ctx, rc, f.Step, f.Attempt)
}

// advanceStep enqueues the advance of a step that has nothing left to run.
func (w *Worker) advanceStep(ctx context.Context, rc *runCtx, step string, attempt int) error {
	noteDid(ctx, "step %s has nothing left to run; enqueued its advance", step)
	t, err := jobs.NewAdvance(jobs.Advance{RunID: rc.id, Step: step, Attempt: attempt}, controlOpts()...)
	return w.enqueue(ctx, t, err)
}

// fanOutEnd returns where the chunk of f ends: the step's last item, or with
// Config.FanOutWindow as far as the window has room for. When it has too
// little room (under a quarter of the window), it enqueues f again, to run
// after fanOutWait, and says to wait. It reads the step's progress once.
func (w *Worker) fanOutEnd(ctx context.Context, rc *runCtx, f jobs.FanOut) (end int, wait bool, err error) {
	done, total, err := w.store.StepProgress(ctx, rc.id, f.Step)
	if err != nil {
		return 0, false, err
	}
	if total < 0 {
		return 0, false, fmt.Errorf("worker: run %s: step %s has no planned total to fan out", rc.id, f.Step)
	}
	win := w.cfg.FanOutWindow
	if win <= 0 || f.From >= total {
		return total, false, nil
	}
	// Items before From are enqueued or recorded (done counts both those
	// that finished and, on a retry, those recorded before).
	room := win - (f.From - done)
	if room >= min(win/4, total-f.From) {
		return min(total, f.From+room), false, nil
	}
	next := f
	next.Wait++
	t, err := jobs.NewFanOut(next, append(controlOpts(), asynq.ProcessIn(fanOutWait), asynq.Retention(time.Hour))...)
	noteDid(ctx, "the window of step %s is full (%d of %d items done, %d enqueued); waiting", f.Step, done, total, f.From)
	return 0, true, w.enqueue(ctx, t, err)
}

// handleFanOut enqueues the next chunk of a step's items (see fanOut). The
// step is planned again (plans are deterministic) from the sets resolved at
// the run's start.
func (w *Worker) handleFanOut(ctx context.Context, t *asynq.Task) error {
	f, rc, err := taskRun(ctx, w, t, jobs.DecodeFanOut)
	if err != nil {
		return err
	}
	status, _, err := w.store.Status(ctx, rc.id)
	if err != nil {
		return err
	}
	if runstore.Terminal(status) {
		// A stopping run goes on: its items are recorded as skipped.
		noteDid(ctx, "nothing: the run is already %s", status)
		return nil
	}
	step, ok := rc.spec.Pipeline.StepByID(f.Step)
	if !ok {
		return fmt.Errorf("worker: run %s: pipeline has no step %q: %w", rc.id, f.Step, asynq.SkipRetry)
	}
	// Waiting for room costs a read, not a plan: the sets and the plan are
	// loaded only when there is room.
	end, wait, err := w.fanOutEnd(ctx, rc, f)
	if err != nil || wait {
		return err
	}
	sets, err := w.store.Sets(ctx, rc.id)
	if err != nil {
		return err
	}
	sp, err := w.stepPlan(ctx, rc, *step, sets)
	if isSetRead(err) {
		return err
	}
	if err != nil {
		return w.runError(ctx, rc, permanent(fmt.Errorf("plan step %s: %w", f.Step, err)))
	}
	return w.fanOut(ctx, rc, sp, f, end)
}

// isSetRead reports whether err is the run store failing to read an
// artifact set: not the pipeline's fault, so the task is tried again.
func isSetRead(err error) bool {
	_, ok := errors.AsType[*pipelines.SetReadError](err)
	return ok
}

// checkPlan renders every item of a step once, dropping it, so that an item
// that cannot be rendered fails the step before any of its items is
// enqueued; the items are rendered again as they are enqueued, so memory
// does not grow with the step. Plans are deterministic: the second
// rendering is the first.
func checkPlan(ctx context.Context, sp *pipelines.StepPlan) error {
	for _, err := range sp.Items(ctx) {
		if err != nil {
			return err
		}
	}
	return nil
}

// enqueueItems enqueues a step's items (up to the first that stop says to
// stop at, but those skip says to leave out) as they are rendered,
// concurrently, each with its deterministic task id, the pipeline's
// attempts and item timeout, and returns how many it enqueued.
func (w *Worker) enqueueItems(ctx context.Context, rc *runCtx, items iter.Seq2[pipelines.Item, error], stop func(pipelines.Item) bool, skip func(key string) bool, attempt int) (int, error) {
	lim := rc.spec.Pipeline.Limits
	opts := append(w.itemRetention(), asynq.MaxRetry(max(lim.MaxAttempts, 1)-1))
	if d := lim.ItemTimeout.D(); d > 0 {
		opts = append(opts, asynq.Timeout(d))
	} else {
		opts = append(opts, asynq.Timeout(pipelines.DefaultItemTimeout))
	}
	// The first failure stops the loop: the items after it are neither
	// rendered nor enqueued (the step's task is retried).
	ectx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	pl := pool.New().WithErrors().WithFirstError().WithContext(ectx).WithMaxGoroutines(enqueueWorkers)
	n := 0
	var planErr error
	for it, err := range items {
		if err != nil {
			planErr = fmt.Errorf("plan step: %w", err)
			if !isSetRead(err) {
				planErr = permanent(planErr)
			}
			break
		}
		if ectx.Err() != nil || stop(it) {
			break
		}
		if skip(it.Key) {
			continue
		}
		n++
		pl.Go(func(ctx context.Context) error {
			t, err := jobs.NewItem(jobs.Item{RunID: rc.id, Item: it, Attempt: attempt}, opts...)
			if err = w.enqueue(ctx, t, err); err != nil {
				cancel(err)
			}
			return err
		})
	}
	err := pl.Wait()
	if err == nil {
		err = cmp.Or(planErr, context.Cause(ectx))
	}
	if err != nil {
		return n, fmt.Errorf("worker: run %s: enqueue items: %w", rc.id, err)
	}
	return n, nil
}

// handleAdvance runs when every item of a step is finished: it plans and
// enqueues the next step or, after the last step (or when the run is
// stopping), enqueues the finalize task.
func (w *Worker) handleAdvance(ctx context.Context, t *asynq.Task) error {
	p, rc, err := taskRun(ctx, w, t, jobs.DecodeAdvance)
	if err != nil {
		return err
	}
	status, stop, err := w.store.Status(ctx, rc.id)
	if err != nil {
		return err
	}
	if runstore.Terminal(status) {
		noteDid(ctx, "nothing: the run is already %s", status)
		return nil
	}
	done, total, err := w.store.StepProgress(ctx, rc.id, p.Step)
	if err != nil {
		return err
	}
	if total < 0 || done < total {
		return fmt.Errorf("worker: run %s: step %s is not complete (%d of %d items): %w", rc.id, p.Step, done, total, asynq.SkipRetry)
	}
	steps := rc.spec.Pipeline.Steps
	idx := slices.IndexFunc(steps, func(s pipelines.Step) bool { return s.ID == p.Step })
	if idx < 0 {
		return fmt.Errorf("worker: run %s: pipeline has no step %q: %w", rc.id, p.Step, asynq.SkipRetry)
	}
	if stop != "" || idx == len(steps)-1 {
		noteDid(ctx, "step %s done; enqueued the run's finalize", p.Step)
		ft, err := jobs.NewFinalize(jobs.Finalize{RunID: rc.id, Attempt: p.Attempt}, controlOpts()...)
		return w.enqueue(ctx, ft, err)
	}
	sets, err := w.store.Sets(ctx, rc.id)
	if err != nil {
		return err
	}
	return w.startStep(ctx, rc, idx+1, sets, p.Attempt)
}
