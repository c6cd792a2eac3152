package jobs

import (
	"context"
	"errors"
	"fmt"

	"github.com/hibiken/asynq"

	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/runstore"
)

// StartRun records a run of p in the store (the pipeline travels with it,
// so workers never read the YAML file) and enqueues its run:start task with
// a task id derived from the run id. opts are applied to the run:start task
// (asynq.Queue must name a queue the workers serve).
//
// StartRun is idempotent: calling it again for the same run id and the same
// pipeline is a no-op that returns nil (the run is not started twice, and a
// run whose first call died between recording and enqueueing is started).
// A run id already used by another pipeline, or by another version of the
// same file, is an error.
func StartRun(ctx context.Context, q *asynq.Client, store *runstore.Store, p *pipelines.Pipeline, run pipelines.RunInfo, opts ...asynq.Option) error {
	if q == nil || store == nil {
		return errors.New("jobs: start run: nil asynq client or run store")
	}
	if _, err := store.CreateRun(ctx, p, run); err != nil {
		return fmt.Errorf("jobs: start run %s: %w", run.ID, err)
	}
	t, err := NewRunStart(RunStart{RunID: run.ID}, opts...)
	if err != nil {
		return err
	}
	if _, err := q.EnqueueContext(ctx, t); err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return fmt.Errorf("jobs: start run %s: enqueue %s: %w", run.ID, KindRunStart, err)
	}
	return nil
}
