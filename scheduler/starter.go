package scheduler

import (
	"context"
	"errors"

	"github.com/hibiken/asynq"

	"github.com/threadmill/threadmill/jobs"
	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/runstore"
)

// JobsStarter starts runs on the workers' queue through jobs.StartRun. The
// run store's CreateRun is the one claim of a run id: an atomic script that
// records the run only when the id is new, so however many schedulers start
// the same fire time, one run exists and one run:start task is enqueued
// (its task id is derived from the run id).
type JobsStarter struct {
	Client *asynq.Client
	Store  *runstore.Store
	// Opts are applied to the run:start task (asynq.Queue must name a queue
	// the workers serve).
	Opts []asynq.Option
}

var _ Starter = (*JobsStarter)(nil)

// Start creates the run if its id is new and makes sure its run:start task
// was enqueued. created reports whether this call created the run.
//
// When the id exists for an earlier version of the pipeline file (the file
// was edited after the fire time was started), the run stands as recorded:
// it is re-enqueued with the pipeline it was created with, not failed.
func (j *JobsStarter) Start(ctx context.Context, p *pipelines.Pipeline, run pipelines.RunInfo) (bool, error) {
	if j.Client == nil || j.Store == nil {
		return false, errors.New("scheduler: JobsStarter needs an asynq client and a run store")
	}
	created, err := j.Store.CreateRun(ctx, p, run)
	if err != nil {
		spec, err2 := j.Store.Spec(ctx, run.ID)
		if err2 != nil || spec.Pipeline.Name != p.Name {
			return false, err
		}
		p = spec.Pipeline
	}
	if err := jobs.StartRun(ctx, j.Client, j.Store, p, run, j.Opts...); err != nil {
		return created, err
	}
	return created, nil
}
