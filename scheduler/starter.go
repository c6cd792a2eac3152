package scheduler

import (
	"context"
	"errors"
	"fmt"

	"github.com/hibiken/asynq"

	"github.com/threadmill/threadmill/jobs"
	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/runstore"
)

// JobsStarter starts runs on the workers' queue through jobs.StartRun. The
// run store's Admit is the one claim of a run id and the one overlap
// decision: an atomic script that records the run only when the id is new
// and no active run of the pipeline holds it back, so however many
// schedulers start the same fire time, one run exists, one decision is made
// and one run:start task is enqueued (its task id is derived from the run
// id).
type JobsStarter struct {
	Client *asynq.Client
	Store  *runstore.Store
	// Opts are applied to the run:start task (asynq.Queue must name a queue
	// the workers serve).
	Opts []asynq.Option
}

var _ Starter = (*JobsStarter)(nil)

// Start admits the run under overlap (runstore.Store.Admit) and, when it
// may start, makes sure its run:start task was enqueued. A run that waits
// for an earlier one, or was skipped, is not enqueued.
//
// When the id exists for an earlier version of the pipeline file (the file
// was edited after the fire time was started), the run stands as recorded:
// it is enqueued with the pipeline it was created with, not failed.
func (j *JobsStarter) Start(ctx context.Context, p *pipelines.Pipeline, run pipelines.RunInfo, overlap string) (runstore.Admission, error) {
	if j.Client == nil || j.Store == nil {
		return runstore.Admission{}, errors.New("scheduler: JobsStarter needs an asynq client and a run store")
	}
	a, err := j.Store.Admit(ctx, p, run, overlap)
	if err != nil || !a.Start() {
		return a, err
	}
	if a.Hash != "" && p.Hash != "" && a.Hash != p.Hash {
		spec, err := j.Store.Spec(ctx, run.ID)
		if err != nil {
			return a, fmt.Errorf("scheduler: run %s was recorded for another version of the file: %w", run.ID, err)
		}
		p = spec.Pipeline
	}
	if err := jobs.StartRun(ctx, j.Client, j.Store, p, run, j.Opts...); err != nil {
		return a, err
	}
	return a, nil
}
