package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/results"
	"github.com/threadmill/threadmill/runstore"
)

// The retry of a run made by the embedded `run`: its Redis died with its
// process, so the run is rebuilt from its directory under the results root.
// Its items that are not retried are recorded as they were; those that are
// keep their thread and look their interactions up by correlation id (see
// runstore.SeedRetry), so none is paid twice; the steps that read a retried
// step are planned again in full.

// retryRunInfo returns the run info of the earlier run runID of p, from its
// run.json, refusing a pipeline file that changed since (its items would not
// be the same: that is a re-run).
func retryRunInfo(p *pipelines.Pipeline, root, runID string) (pipelines.RunInfo, *results.Run, error) {
	info, r, err := runInfoFromDir(p, root, runID)
	if err != nil {
		return info, nil, err
	}
	if r.PipelineHash != "" && r.PipelineHash != p.Hash {
		return pipelines.RunInfo{}, nil, withCode(exitUsage, fmt.Errorf("the pipeline file changed since run %s: a retry sends the same requests again; to run its window with the file as it is now, use threadmill rerun %s FILE", runID, runID))
	}
	return info, r, nil
}

// runInfoFromDir returns the run info of the earlier run runID of p, and
// its run.json, from its directory under root.
func runInfoFromDir(p *pipelines.Pipeline, root, runID string) (pipelines.RunInfo, *results.Run, error) {
	dir := filepath.Join(root, p.Name, runID)
	r, err := results.ReadRun(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return pipelines.RunInfo{}, nil, fmt.Errorf("run %s of %s not found: no %s (give the results root with --results)", runID, p.Name, filepath.Join(dir, results.RunFile))
	}
	if err != nil {
		return pipelines.RunInfo{}, nil, err
	}
	info := pipelines.RunInfo{ID: runID, Time: r.StartedAt}
	if r.FireTime != nil {
		info.Time = *r.FireTime
	}
	if r.WindowStart != nil && r.WindowEnd != nil {
		info.WindowStart, info.WindowEnd = *r.WindowStart, *r.WindowEnd
	}
	return info, r, nil
}

// seedRetry records, in a new store, the run as its directory left it: the
// items not retried (and not of a step that reads a retried one) as they
// were, and the retried ones as checkpoints that find their interactions
// again. The run's history gets the earlier attempts. It returns how many
// items are retried.
func seedRetry(ctx context.Context, store *runstore.Store, p *pipelines.Pipeline, run pipelines.RunInfo, prev *results.Run, dir string, states []string) (int, error) {
	if _, err := store.CreateRun(ctx, p, run); err != nil {
		return 0, fmt.Errorf("retry run %s: %w", run.ID, err)
	}
	// Which steps change: those with items to retry (run.json counts them
	// per step), then those that need a changed one.
	changed := map[string]bool{}
	for _, su := range prev.Steps {
		for _, st := range states {
			if su.Items[st] > 0 {
				changed[su.Step] = true
			}
		}
	}
	replanned := map[string]bool{}
	for _, st := range p.Steps {
		if slices.ContainsFunc(st.Needs, func(n string) bool { return changed[n] }) {
			changed[st.ID], replanned[st.ID] = true, true
		}
	}
	path := filepath.Join(dir, results.ResultsFile)
	n := 0
	for it, err := range results.ReadItems(path) {
		if err != nil {
			return n, fmt.Errorf("retry run %s: %w", run.ID, err)
		}
		switch {
		case replanned[it.Step]:
			// Planned and sent again with its new inputs.
		case slices.Contains(states, it.State):
			if err := store.SeedRetry(ctx, run.ID, it); err != nil {
				return n, err
			}
			n++
		default:
			if _, err := store.Record(ctx, run.ID, it, 0); err != nil {
				return n, fmt.Errorf("retry run %s: %w", run.ID, err)
			}
		}
	}
	history := append(slices.Clone(prev.Attempts), results.Attempt{
		Attempt: len(prev.Attempts), Status: prev.Status, StartedAt: prev.StartedAt, FinishedAt: prev.FinishedAt,
		Total: prev.Total, Succeeded: prev.Counts[results.StateSucceeded], Failed: prev.Counts[results.StateFailed],
		Skipped: prev.Counts[results.StateSkipped], Canceled: prev.Counts[results.StateCanceled],
		Usage: prev.Usage, ResultDir: dir,
	})
	return n, store.AddHistory(ctx, run.ID, history...)
}

// reserveRetry reserves the run id of a retry for this process: a retry
// rewrites the run's directory, which no other run may write meanwhile.
func reserveRetry(root, pipeline, runID string) (*results.Reservation, error) {
	r, err := results.Reserve(root, pipeline, runID)
	if errors.Is(err, results.ErrRunBusy) {
		var busy *results.BusyError
		errors.As(err, &busy)
		return nil, withCode(exitFailure, fmt.Errorf("run %s is running (%s): retry it once it finished", runID, busy.Owner))
	}
	return r, err
}

// rerunInfo returns the run info of a re-run of o.RerunOf from its
// directory: its fire time and window, under the first free id
// <run>-rerun<N>, which it sets as o.RunID for the run to reserve.
func rerunInfo(p *pipelines.Pipeline, root string, o *runOptions) (pipelines.RunInfo, error) {
	info, _, err := runInfoFromDir(p, root, o.RerunOf)
	if err != nil {
		return info, err
	}
	id, err := rerunID(o.RerunOf, func(id string) (bool, error) {
		for _, path := range []string{filepath.Join(root, p.Name, id), results.JournalPath(root, p.Name, id)} {
			if _, err := os.Lstat(path); err == nil {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return info, err
	}
	info.ID, o.RunID = id, id
	return info, nil
}

// countStates returns how many items of a run ended in one of states.
func countStates(r *results.Run, states []string) int {
	n := 0
	for _, st := range states {
		n += r.Counts[st]
	}
	return n
}
