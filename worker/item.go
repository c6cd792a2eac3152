package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/hibiken/asynq"

	"github.com/threadmill/threadmill/jobs"
	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/results"
	"github.com/threadmill/threadmill/runstore"
	"github.com/threadmill/threadmill/workspace"
)

// slotHold is how long an item waits for a free in-flight slot of its
// pipeline before it gives its worker slot back; slotRetry is when it asks
// again (asynq counts whole seconds).
const (
	slotHold  = 250 * time.Millisecond
	slotRetry = time.Second
)

// slotTTL is the lease of an in-flight slot; it is renewed while the item
// runs, so only a dead worker's slot expires.
const slotTTL = 30 * time.Second

// recordTimeout bounds the store writes that follow an item's work, which use
// a context detached from the item's (so a timed-out item is still recorded).
const recordTimeout = 30 * time.Second

// itemRun is one attempt of one item.
type itemRun struct {
	rc   *runCtx
	it   pipelines.Item
	step *pipelines.Step
	ck   runstore.Checkpoint
	// lease is the item's in-flight slot, nil without a concurrency limit.
	lease *runstore.Lease
	log   *slog.Logger // see logger
	// firstMarked: the first turn was marked "being created" together
	// with the new thread's checkpoint.
	firstMarked bool
	// attempt is the run's attempt the item's task belongs to.
	attempt int
	// json is the answer's value, valid for the step's output_schema, once
	// structure checked it.
	json json.RawMessage
}

// logger returns the item's logger (the run's, with the step and item key),
// built on first use: most items log nothing at the levels enabled.
func (ir *itemRun) logger() *slog.Logger {
	if ir.log == nil {
		ir.log = ir.rc.log.With("step", ir.it.Step, "item", ir.it.Key)
	}
	return ir.log
}

// debug logs at debug level with the item's logger; the logger and the
// record are built only when debug is enabled (every item passes here).
func (ir *itemRun) debug(ctx context.Context, msg string, attrs ...slog.Attr) {
	if ir.rc.log.Enabled(ctx, slog.LevelDebug) {
		ir.logger().LogAttrs(ctx, slog.LevelDebug, msg, attrs...)
	}
}

// releaseSlot gives the item's in-flight slot back, unless its record
// already did.
func (w *Worker) releaseSlot(ctx context.Context, ir *itemRun) {
	if ir.lease.Released() {
		return
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	if err := ir.lease.Release(rctx); err != nil {
		ir.logger().Warn("could not release the in-flight slot (it expires by itself)", "error", err)
	}
}

// handleItem processes a step:item task: skip it when already recorded;
// record it as skipped when the run is stopping or the token budget is
// spent; otherwise take an in-flight slot, validate, interact and record the
// result. Transient failures return the error for asynq to retry (the
// checkpoint makes the retry resume); permanent ones, and the last attempt,
// are recorded as failed and archived. An attempt the API only paced (429,
// 503 with Retry-After) is not counted: asynq tries it again after the
// capped wait; on the last attempt, which asynq would archive whatever
// IsFailure says, the handler waits and tries again itself.
func (w *Worker) handleItem(ctx context.Context, t *asynq.Task) error {
	for {
		err := w.attemptItem(mayHandBack(ctx), t)
		wait, paced := pacedWait(err)
		if !paced || !lastAttempt(ctx) || shuttingDown(ctx) {
			return err
		}
		if err := sleep(ctx, min(wait, w.cfg.MaxRetryAfter)); err != nil {
			return err
		}
	}
}

// attemptItem is one try of handleItem.
func (w *Worker) attemptItem(ctx context.Context, t *asynq.Task) error {
	p, rc, err := taskRun(ctx, w, t, jobs.DecodeItem)
	if err != nil {
		return err
	}
	step, ok := rc.spec.Pipeline.StepByID(p.Item.Step)
	if !ok {
		return fmt.Errorf("worker: run %s: pipeline has no step %q: %w", rc.id, p.Item.Step, asynq.SkipRetry)
	}
	defer w.cfg.Observer.ItemStarted(rc.spec.Pipeline.Name)()
	ir := &itemRun{rc: rc, it: p.Item, step: step, attempt: p.Attempt}
	// The run's cancellation ends the attempt with errRunCanceled (see
	// watchCancels); registered before the item is begun, so that a
	// cancellation either shows in its stop reason or reaches it here.
	ctx, cancelAttempt := context.WithCancelCause(ctx)
	defer cancelAttempt(nil)
	defer w.inflight.add(rc.id, cancelAttempt)()

	// The in-flight slot is taken with the item, in the same round trip,
	// when one is free; otherwise the item waits for one below.
	limits := rc.spec.Pipeline.Limits
	var start *runstore.ItemStart
	taskID, _ := asynq.GetTaskID(ctx)
	if limits.Concurrency > 0 {
		start, err = w.store.BeginItemSlot(ctx, rc.id, ir.it.Step, ir.it.Key, runstore.SlotRequest{
			Pipeline: rc.spec.Pipeline.Name, Limit: limits.Concurrency, Holder: taskID, TTL: slotTTL})
	} else {
		start, err = w.store.BeginItem(ctx, rc.id, ir.it.Step, ir.it.Key)
	}
	if err != nil {
		return err
	}
	if start.Lease != nil {
		ir.lease = start.Lease
		w.cfg.Observer.RateLimitWaited(rc.spec.Pipeline.Name, LimiterConcurrency, 0)
		defer w.releaseSlot(ctx, ir)
	}
	if start.Done {
		ir.debug(ctx, "item already recorded; counting it")
		done, total, err := w.store.StepProgress(ctx, rc.id, ir.it.Step)
		if err != nil {
			return err
		}
		return w.afterRecord(ctx, ir, runstore.Recorded{Done: done, Total: total}, nil)
	}
	ir.ck = start.Checkpoint
	if reason, ok := runstore.CancelReason(start.Stop); ok {
		return w.finish(ctx, ir, results.StateCanceled, "run canceled: "+reason, ir.ck.Reserved)
	}
	if start.Stop != "" {
		return w.finish(ctx, ir, results.StateSkipped, "run stopped: "+start.Stop, ir.ck.Reserved)
	}

	var reserved int64
	if limits.MaxTotalTokens > 0 {
		est := ir.it.EstimatedTokens
		ok, used, err := w.store.ReserveBudget(ctx, rc.id, ir.it.Step, ir.it.Key, est, limits.MaxTotalTokens)
		if err != nil {
			return err
		}
		if !ok {
			msg := fmt.Sprintf("token budget spent: max_total_tokens is %d, %d used or reserved, this item needs about %d", limits.MaxTotalTokens, used, est)
			return w.finish(ctx, ir, results.StateSkipped, msg, 0)
		}
		reserved = est
		if ir.ck.Reserved > 0 {
			reserved = ir.ck.Reserved
		}
	}

	if limits.Concurrency > 0 && ir.lease == nil {
		// Wait a moment for a slot, then give the worker slot back: an item
		// waiting for its pipeline's slot must not keep other pipelines'
		// items (a scheduled run behind a bulk one) from this worker.
		slotStart := time.Now()
		lease, err := w.store.AcquireSlotWithin(ctx, rc.spec.Pipeline.Name, limits.Concurrency, taskID+"#"+strconv.Itoa(ir.ck.Attempts), slotTTL, slotHold)
		w.cfg.Observer.RateLimitWaited(rc.spec.Pipeline.Name, LimiterConcurrency, time.Since(slotStart))
		if err != nil {
			return err
		}
		if lease == nil {
			// Not an attempt: the item goes back to the queue for slotRetry.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
			defer cancel()
			if err := w.store.UncountAttempt(rctx, rc.id, ir.it.Step, ir.it.Key); err != nil {
				ir.logger().Warn("could not uncount the attempt that found no slot", "error", err)
			}
			return &PacedError{Wait: slotRetry, SlotBusy: true}
		}
		ir.lease = lease
		defer w.releaseSlot(ctx, ir)
	}
	if limits.TokensPerMinute > 0 && ir.ck.TPMReserved == 0 {
		waited, err := w.store.AcquireTokens(ctx, rc.spec.Pipeline.Name, limits.TokensPerMinute, ir.it.EstimatedTokens)
		w.cfg.Observer.RateLimitWaited(rc.spec.Pipeline.Name, LimiterTokens, waited)
		if err != nil {
			return err
		}
		if err := w.store.CheckpointTPM(ctx, rc.id, ir.it.Step, ir.it.Key, ir.it.EstimatedTokens); err != nil {
			return err
		}
		ir.ck.TPMReserved = ir.it.EstimatedTokens
	}

	perr := w.process(ctx, ir)
	if perr == nil {
		return w.finish(ctx, ir, results.StateSucceeded, "", reserved)
	}
	if runCanceled(ctx) {
		_, stop, err := w.store.Status(context.WithoutCancel(ctx), rc.id)
		if err != nil {
			return err
		}
		reason, _ := runstore.CancelReason(stop)
		return w.cancelItem(ctx, ir, reason, reserved)
	}
	if shuttingDown(ctx) {
		ir.logger().Info("item interrupted by shutdown; it resumes from its checkpoint", "error", perr)
		return perr
	}
	_, paced := pacedWait(perr)
	if isPermanent(perr) || lastAttempt(ctx) && !paced {
		ir.logger().Warn("item failed", "attempts", ir.ck.Attempts, "error", perr)
		if err := w.finish(ctx, ir, results.StateFailed, perr.Error(), reserved); err != nil {
			return err
		}
		return fmt.Errorf("%w: %w", perr, asynq.SkipRetry)
	}
	reason := retryReason(perr)
	if paced {
		reason = RetryRateLimited
	}
	w.cfg.Observer.ItemRetried(rc.spec.Pipeline.Name, ir.it.Step, reason)
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	if paced {
		// The API asked us to wait: not an attempt, not a retry.
		ir.debug(ctx, "item waits for the API; its slot goes back meanwhile", slog.Any("error", perr))
		if err := w.store.UncountAttempt(rctx, rc.id, ir.it.Step, ir.it.Key); err != nil {
			ir.logger().Warn("could not uncount the paced attempt", "error", err)
		}
		return perr
	}
	ir.logger().Info("item attempt failed; retrying", "attempt", ir.ck.Attempts, "error", perr)
	if err := w.store.AddRetries(rctx, rc.id, 1); err != nil {
		ir.logger().Warn("could not count the retry", "error", err)
	}
	return perr
}

// finish records the item's final state exactly once, settles its token
// reservations, calls the item hook and checks the step for completion.
func (w *Worker) finish(ctx context.Context, ir *itemRun, state, errMsg string, reserved int64) error {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	item := buildItem(ir.it, &ir.ck, state, errMsg, time.Now())
	if state == results.StateSucceeded {
		item.JSON = ir.json
	}
	limits := ir.rc.spec.Pipeline.Limits
	if limits.TokensPerMinute > 0 && ir.ck.TPMReserved > 0 {
		if err := w.store.SettleTokens(rctx, ir.rc.spec.Pipeline.Name, limits.TokensPerMinute, item.Usage.Total()-ir.ck.TPMReserved); err != nil {
			ir.logger().Warn("could not settle the tokens-per-minute reservation", "error", err)
		}
	}
	// The item's in-flight slot is given back with the record.
	rec, err := w.store.RecordAndRelease(rctx, ir.rc.id, item, reserved, ir.lease)
	if err != nil {
		return err
	}
	if state == results.StateFailed && ir.step.OnError == pipelines.OnErrorFail {
		reason := fmt.Sprintf("item %s of step %s failed and the step says on_error: fail", ir.it.Key, ir.it.Step)
		if err := w.store.Stop(rctx, ir.rc.id, reason); err != nil {
			return err
		}
	}
	ir.debug(rctx, "item recorded", slog.String("state", state), slog.Int("attempts", item.Attempts),
		slog.Int64("input_tokens", int64(item.Usage.InputTokens)), slog.Int64("output_tokens", int64(item.Usage.OutputTokens)))
	return w.afterRecord(rctx, ir, rec, &item)
}

// afterRecord calls the item hook for a new record and enqueues the step's
// advance once every item of the step is finished. The advance task id is
// deterministic and its handler idempotent, so finishers that race here (or
// a duplicate delivery) cannot advance a step twice.
func (w *Worker) afterRecord(ctx context.Context, ir *itemRun, rec runstore.Recorded, item *results.Item) error {
	noteItem(ctx, item)
	if rec.New && item != nil {
		w.itemDone(*item)
		pl := ir.rc.spec.Pipeline.Name
		var d time.Duration
		if !ir.ck.StartedAt.IsZero() {
			d = time.Since(ir.ck.StartedAt)
		}
		w.cfg.Observer.ItemFinished(pl, item.Step, item.State, d)
		w.cfg.Observer.TokensUsed(pl, item.Step, int64(item.Usage.InputTokens), int64(item.Usage.OutputTokens))
	}
	if !rec.Complete() {
		return nil
	}
	ir.debug(ctx, "step complete", slog.Int("items", rec.Total))
	t, err := jobs.NewAdvance(jobs.Advance{RunID: ir.rc.id, Step: ir.it.Step, Attempt: ir.attempt}, controlOpts()...)
	return w.enqueue(ctx, t, err)
}

// buildItem turns an item and its checkpoint into its result line.
func buildItem(it pipelines.Item, ck *runstore.Checkpoint, state, errMsg string, now time.Time) results.Item {
	r := results.Item{
		Step:         it.Step,
		Key:          it.Key,
		Index:        it.Index,
		Artifact:     it.Artifact,
		ArtifactIDs:  it.ArtifactIDs,
		AllArtifacts: it.AllArtifacts,
		Requests:     it.Requests,
		ReuseKey:     it.ReuseKey,
		State:        state,
		// The estimate the budget reserved, for run.json's comparison.
		EstimatedTokens: it.EstimatedTokens,
		Unsized:         len(it.Unsized) > 0,
		Attempts:        max(ck.Attempts, 1),
		ThreadID:        ck.ThreadID,
		Error:           errMsg,
		StartedAt:       ck.StartedAt,
		FinishedAt:      now,
	}
	if r.ArtifactIDs == nil {
		r.ArtifactIDs = []string{}
	}
	if r.StartedAt.IsZero() {
		r.StartedAt = now
	}
	r.LatencyMS = now.Sub(r.StartedAt).Milliseconds()
	usage := ck.Wasted
	// The step's turns, then the repair turns (numbered after them) as
	// long as they follow one another.
	for i := 0; i < len(it.Requests) || hasTurn(ck.Turns, i); i++ {
		turn, ok := ck.Turns[i]
		if !ok {
			continue
		}
		if i >= len(it.Requests) {
			r.Repairs++
		}
		r.Citations = append(r.Citations, turn.Citations...)
		r.Sources = append(r.Sources, turn.Sources...)
		r.Outputs = append(r.Outputs, turn.Output)
		r.Output = turn.Output
		r.StopReason = turn.StopReason
		usage = usage.Add(turn.Usage)
		r.UsageEstimated = r.UsageEstimated || turn.UsageEstimated
		if turn.InteractionID != "" {
			r.InteractionIDs = append(r.InteractionIDs, turn.InteractionID)
		}
	}
	r.InteractionIDs = append(r.InteractionIDs, ck.Discarded...)
	r.Usage = usage
	r.Truncated = r.StopReason == workspace.StopReasonMaxTokens
	if state != results.StateSucceeded {
		// A failed or skipped item has no final output, even when some of its
		// turns finished; those are in Outputs.
		r.Output = ""
	}
	return r
}

// hasTurn reports whether turn i is finished.
func hasTurn(turns map[int]runstore.Turn, i int) bool { _, ok := turns[i]; return ok }

// errorsIsNotFound reports a 404 (the interaction or thread is gone).
func errorsIsNotFound(err error) bool { return errors.Is(err, workspace.ErrNotFound) }
