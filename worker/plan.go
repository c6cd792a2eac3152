package worker

import (
	"context"
	"fmt"
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
		resolved, err := pipelines.Resolve(withRun(ctx, rc), w.api, rc.spec.Pipeline, rc.spec.Info)
		if err != nil {
			return w.runError(ctx, rc, fmt.Errorf("resolve artifact sets: %w", err))
		}
		if sets, err = w.store.SaveSets(ctx, rc.id, resolved); err != nil {
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
func (w *Worker) startStep(ctx context.Context, rc *runCtx, idx int, sets map[string][]pipelines.ArtifactRef, attempt int) error {
	p := rc.spec.Pipeline
	step := p.Steps[idx]
	log := rc.log.With("step", step.ID)
	advance := func() error {
		noteDid(ctx, "step %s has nothing left to run; enqueued its advance", step.ID)
		t, err := jobs.NewAdvance(jobs.Advance{RunID: rc.id, Step: step.ID, Attempt: attempt}, controlOpts()...)
		return w.enqueue(ctx, t, err)
	}
	if enqueued, err := w.store.Enqueued(ctx, rc.id, step.ID); err != nil || enqueued {
		if err != nil {
			return err
		}
		done, total, err := w.store.StepProgress(ctx, rc.id, step.ID)
		if err != nil || total < 0 || done < total {
			return err
		}
		return advance()
	}
	prior := make(map[string]pipelines.StepOutput, len(step.Needs))
	for _, need := range step.Needs {
		_, total, err := w.store.StepProgress(ctx, rc.id, need)
		if err != nil {
			return err
		}
		out, err := w.store.StepOutput(ctx, rc.id, need, max(total, 0))
		if err != nil {
			return err
		}
		prior[need] = out
	}
	began := time.Now()
	items, err := pipelines.Plan(p, step.ID, rc.spec.Info, sets, prior)
	if err != nil {
		return w.runError(ctx, rc, permanent(fmt.Errorf("plan step %s: %w", step.ID, err)))
	}
	if err := w.store.PlanStep(ctx, rc.id, step.ID, len(items)); err != nil {
		return err
	}
	planned := time.Since(began)
	if attempt > 0 {
		// A retry: only the items the earlier attempts did not finish.
		recorded, err := w.store.Recorded(ctx, rc.id, step.ID)
		if err != nil {
			return err
		}
		items = slices.DeleteFunc(items, func(it pipelines.Item) bool { return recorded[it.Key] })
	}
	items, reused, err := w.reuseItems(ctx, rc, items)
	if err != nil {
		return err
	}
	if err := w.enqueueItems(ctx, rc, items, attempt); err != nil {
		return err
	}
	if reused > 0 {
		noteDid(ctx, "enqueued %s of step %s; %d reused an earlier run's output", plural(len(items), "item"), step.ID, reused)
	} else {
		noteDid(ctx, "enqueued %s of step %s", plural(len(items), "item"), step.ID)
	}
	if err := w.store.MarkEnqueued(ctx, rc.id, step.ID); err != nil {
		return err
	}
	log.Info("step started", "items", len(items), "reused", reused, "plan_time", planned, "enqueue_time", time.Since(began)-planned)
	if len(items) == 0 {
		return advance()
	}
	return nil
}

// enqueueItems enqueues a step's items concurrently, each with its
// deterministic task id, the pipeline's attempts and item timeout.
func (w *Worker) enqueueItems(ctx context.Context, rc *runCtx, items []pipelines.Item, attempt int) error {
	lim := rc.spec.Pipeline.Limits
	opts := append(w.itemRetention(), asynq.MaxRetry(max(lim.MaxAttempts, 1)-1))
	if d := lim.ItemTimeout.D(); d > 0 {
		opts = append(opts, asynq.Timeout(d))
	} else {
		opts = append(opts, asynq.Timeout(pipelines.DefaultItemTimeout))
	}
	pl := pool.New().WithErrors().WithContext(ctx).WithCancelOnError().WithMaxGoroutines(enqueueWorkers)
	for _, it := range items {
		pl.Go(func(ctx context.Context) error {
			t, err := jobs.NewItem(jobs.Item{RunID: rc.id, Item: it, Attempt: attempt}, opts...)
			return w.enqueue(ctx, t, err)
		})
	}
	if err := pl.Wait(); err != nil {
		return fmt.Errorf("worker: run %s: enqueue items: %w", rc.id, err)
	}
	return nil
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
