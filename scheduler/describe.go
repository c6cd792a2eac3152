package scheduler

import (
	"context"
	"errors"
	"time"

	"github.com/threadmill/threadmill/runstore"
)

// Description is what `threadmill schedule ls` shows for one pipeline.
type Description struct {
	Pipeline string      `json:"pipeline"`
	File     string      `json:"file"`
	Cron     string      `json:"cron"`
	Timezone string      `json:"timezone"`
	Catchup  Policy      `json:"catchup"`
	Next     []time.Time `json:"next"`
	// LastRun is the id of the pipeline's newest run in the run store
	// (scheduled, backfilled or started by hand), else the newest one the
	// scheduler started; "" when there is none.
	LastRun string `json:"last_run,omitempty"`
	// LastStatus is that run's status, or "expired" once the run store's
	// retention dropped it.
	LastStatus string `json:"last_status,omitempty"`
}

// Describe returns the description of each entry with its next n fire times
// after now, and its last run from store. The run store's key prefix
// locates the scheduler's history. A nil store describes the schedules
// only, without last runs.
func Describe(ctx context.Context, entries []*Entry, store *runstore.Store, now time.Time, n int) ([]Description, error) {
	out := make([]Description, 0, len(entries))
	for _, e := range entries {
		out = append(out, Description{
			Pipeline: e.Name(),
			File:     e.File,
			Cron:     e.Schedule.Expr(),
			Timezone: e.Schedule.Location().String(),
			Catchup:  e.Policy,
			Next:     e.Schedule.NextN(now, n),
		})
	}
	if store == nil {
		return out, nil
	}
	latest := make(map[string]runstore.RunState)
	runs, err := store.Runs(ctx)
	if err != nil {
		return nil, err
	}
	for _, r := range runs { // newest first
		if _, ok := latest[r.Pipeline]; !ok {
			latest[r.Pipeline] = r
		}
	}
	st := &state{rdb: store.Client(), prefix: store.Prefix()}
	for i, e := range entries {
		d := &out[i]
		if r, ok := latest[e.Name()]; ok {
			d.LastRun, d.LastStatus = r.ID, r.Status
		} else {
			ids, err := st.history(ctx, e.Name(), 1)
			if err != nil {
				return nil, err
			}
			if len(ids) == 1 {
				d.LastRun = ids[0]
				status, _, err := store.Status(ctx, ids[0])
				switch {
				case errors.Is(err, runstore.ErrNotFound):
					d.LastStatus = "expired"
				case err != nil:
					return nil, err
				default:
					d.LastStatus = status
				}
			}
		}
	}
	return out, nil
}
