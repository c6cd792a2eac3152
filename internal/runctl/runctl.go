// Package runctl acts on the lifecycle of a run on a shared Redis: cancel it
// across the fleet, or retry the items of a finished run that did not
// succeed. `threadmill cancel`, `threadmill retry` and the web UI's actions
// share it.
package runctl

import (
	"context"
	"errors"
	"fmt"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/threadmill/threadmill/jobs"
	"github.com/threadmill/threadmill/runstore"
	"github.com/threadmill/threadmill/worker"
)

// Canceled is what Cancel did.
type Canceled struct {
	// Before is the run's status when it was canceled; a terminal status
	// means the run had already finished and nothing changed.
	Before string
	// Moved counts the run's waiting (retry, scheduled) tasks moved to
	// pending, so that workers settle them now instead of at their retry
	// time; MoveErr says why they could not all be moved (they are then
	// canceled at their retry time).
	Moved   int
	MoveErr error
}

// Cancel asks every worker on rdb to stop runID (runstore.Store.Cancel)
// with reason, then takes the run's waiting tasks in queue and its priority
// queue at once. A run the store does not know is runstore.ErrNotFound.
func Cancel(ctx context.Context, rdb redis.UniversalClient, queue, runID, reason string) (Canceled, error) {
	before, err := runstore.New(rdb, "").Cancel(ctx, runID, reason)
	if err != nil {
		return Canceled{}, err
	}
	out := Canceled{Before: before}
	if runstore.Terminal(before) {
		return out, nil
	}
	out.Moved, out.MoveErr = runWaitingTasks(ctx, asynq.NewInspectorFromRedisClient(rdb), []string{worker.PriorityQueue(queue), queue}, runID)
	return out, nil
}

// runWaitingTasks moves the run's scheduled and retrying tasks in queues to
// pending, so that workers settle them now instead of at their retry time.
// It returns how many it moved.
func runWaitingTasks(ctx context.Context, insp *asynq.Inspector, queues []string, runID string) (int, error) {
	moved := 0
	for _, queue := range queues {
		n, err := runWaitingTasksOf(ctx, insp, queue, runID)
		moved += n
		if err != nil {
			return moved, err
		}
	}
	return moved, nil
}

// runWaitingTasksOf is runWaitingTasks for one queue.
func runWaitingTasksOf(ctx context.Context, insp *asynq.Inspector, queue, runID string) (int, error) {
	moved := 0
	for _, list := range []func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error){insp.ListRetryTasks, insp.ListScheduledTasks} {
		var ids []string
		for page := 1; ; page++ {
			if err := ctx.Err(); err != nil {
				return moved, err
			}
			tasks, err := list(queue, asynq.PageSize(1000), asynq.Page(page))
			if err != nil {
				if errors.Is(err, asynq.ErrQueueNotFound) {
					return moved, nil
				}
				return moved, err
			}
			for _, ti := range tasks {
				if run, err := jobs.RunOf(asynq.NewTask(ti.Type, ti.Payload)); err == nil && run == runID {
					ids = append(ids, ti.ID)
				}
			}
			if len(tasks) < 1000 {
				break
			}
		}
		for _, id := range ids {
			if err := insp.RunTask(queue, id); err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
				return moved, err
			}
			moved++
		}
	}
	return moved, nil
}

// Retry reopens the items of the finished run runID whose state is one of
// states (runstore.Store.Reopen) and enqueues the run's start task on queue
// as its next attempt. A Reopened with Attempt 0 means there was nothing to
// retry and nothing was enqueued. A run the store does not know is
// runstore.ErrNotFound; one that cannot be retried (still running, ended in
// error) wraps runstore.ErrNotReopenable.
func Retry(ctx context.Context, rdb redis.UniversalClient, queue, runID string, states []string) (*runstore.Reopened, error) {
	re, err := runstore.New(rdb, "").Reopen(ctx, runID, states)
	if err != nil || re.Attempt == 0 {
		return re, err
	}
	q := asynq.NewClientFromRedisClient(rdb)
	defer q.Close()
	t, err := jobs.NewRunStart(jobs.RunStart{RunID: runID, Attempt: re.Attempt}, asynq.Queue(queue))
	if err == nil {
		_, err = q.EnqueueContext(ctx, t)
	}
	if err != nil {
		return re, fmt.Errorf("run %s reopened as attempt %d, but its start task could not be enqueued (cancel it, then retry): %w", runID, re.Attempt, err)
	}
	return re, nil
}
