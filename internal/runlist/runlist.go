// Package runlist lists runs as people look at them: the committed run
// directories and interrupted journals under a results root, merged with the
// runs a run store in Redis knows (runs in flight, runs finalized on other
// machines), newest first. `threadmill runs` prints it and the web UI
// (package webui) shows it.
package runlist

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/threadmill/threadmill/results"
	"github.com/threadmill/threadmill/runstore"
)

// StatusInterrupted is the status of a run that left only its journal: an
// embedded run interrupted (or still running) before its files were written.
const StatusInterrupted = "interrupted"

// Row is one run, whichever source it came from.
type Row struct {
	ID       string `json:"id"`
	Pipeline string `json:"pipeline"`
	// Status is the run's status; StatusInterrupted for a journal without
	// a run directory.
	Status      string     `json:"status"`
	WindowStart *time.Time `json:"window_start,omitempty"`
	WindowEnd   *time.Time `json:"window_end,omitempty"`
	// Total is the number of items planned; Done those finished.
	Total     int       `json:"total"`
	Done      int       `json:"done"`
	Succeeded int       `json:"succeeded"`
	Failed    int       `json:"failed"`
	Skipped   int       `json:"skipped"`
	Canceled  int       `json:"canceled"`
	Tokens    int64     `json:"tokens"`
	StartedAt time.Time `json:"started_at,omitzero"`
	// DurationMS is the run's duration, or the time it has run so far.
	DurationMS int64 `json:"duration_ms,omitempty"`
	// Dir is the committed run directory, Journal the journal of an
	// interrupted run.
	Dir     string `json:"dir,omitempty"`
	Journal string `json:"journal,omitempty"`
	// Sources says where the run was found: "redis", "results" or both.
	Sources []string `json:"sources"`
}

// Live reports whether the row is a run in flight in Redis (pending,
// running or finalizing), whose figures still change.
func (r *Row) Live() bool {
	return slices.Contains(r.Sources, "redis") && !runstore.Terminal(r.Status)
}

// Duration is DurationMS as a duration.
func (r *Row) Duration() time.Duration { return time.Duration(r.DurationMS) * time.Millisecond }

// Key identifies a run across sources: pipeline/run id.
func (r *Row) Key() string { return r.Pipeline + "/" + r.ID }

// List returns the runs under root and, when store is not nil, those the
// store knows, newest first; with pipeline set, only that pipeline's. A run
// in both keeps Redis's live figures and the directory on disk. filesErr
// reports run directories that could not be read (the others are listed);
// storeErr a store that could not be read (the results root's runs are
// still listed). now is the clock for the duration of running runs.
func List(ctx context.Context, root, pipeline string, store *runstore.Store, now time.Time) (rows []*Row, filesErr, storeErr error) {
	byKey := map[string]*Row{}
	entries, filesErr := results.ListRuns(root, pipeline)
	for i := range entries {
		r := FromEntry(&entries[i])
		byKey[r.Key()] = r
	}
	if store != nil {
		states, err := store.Runs(ctx)
		if err != nil {
			storeErr = fmt.Errorf("runs in Redis not listed: %w", err)
		}
		for i := range states {
			st := &states[i]
			if pipeline != "" && st.Pipeline != pipeline {
				continue
			}
			r := FromState(st, now)
			if old, ok := byKey[r.Key()]; ok {
				r.Dir, r.Journal = cmp.Or(r.Dir, old.Dir), old.Journal
				r.Sources = append(r.Sources, old.Sources...)
			}
			byKey[r.Key()] = r
		}
	}
	rows = make([]*Row, 0, len(byKey))
	for _, r := range byKey {
		rows = append(rows, r)
	}
	slices.SortFunc(rows, func(a, b *Row) int {
		return cmp.Or(b.StartedAt.Compare(a.StartedAt), strings.Compare(b.ID, a.ID))
	})
	return rows, filesErr, storeErr
}

// FromEntry is the row of a run found under a results root.
func FromEntry(e *results.Entry) *Row {
	r := &Row{ID: e.RunID, Pipeline: e.Pipeline, Sources: []string{"results"}}
	if e.Interrupted() {
		r.Status, r.Journal, r.Done = StatusInterrupted, e.Journal, e.JournalItems
		r.StartedAt = e.Modified
		return r
	}
	run := e.Run
	r.Status, r.Dir = run.Status, e.Dir
	r.WindowStart, r.WindowEnd = run.WindowStart, run.WindowEnd
	r.Total = run.Total
	r.Succeeded = run.Counts[results.StateSucceeded]
	r.Failed = run.Counts[results.StateFailed]
	r.Skipped = run.Counts[results.StateSkipped]
	r.Canceled = run.Counts[results.StateCanceled]
	r.Done = r.Succeeded + r.Failed + r.Skipped + r.Canceled
	r.Tokens = run.Usage.Total()
	r.StartedAt = run.StartedAt
	r.DurationMS = run.Duration().Milliseconds()
	return r
}

// FromState is the row of a run in a run store; now is the clock for the
// duration of a run still running.
func FromState(st *runstore.RunState, now time.Time) *Row {
	r := &Row{ID: st.ID, Pipeline: st.Pipeline, Status: st.Status, Dir: st.ResultDir,
		Total: st.Total, Done: st.Done, Succeeded: st.Succeeded, Failed: st.Failed, Skipped: st.Skipped, Canceled: st.Canceled,
		Tokens: st.Usage.Total(), StartedAt: st.StartedAt, Sources: []string{"redis"}}
	if r.StartedAt.IsZero() {
		r.StartedAt = st.CreatedAt
	}
	if !st.Info.WindowStart.IsZero() {
		ws, we := st.Info.WindowStart, st.Info.WindowEnd
		r.WindowStart, r.WindowEnd = &ws, &we
	}
	el, _ := st.Timing(now)
	r.DurationMS = el.Milliseconds()
	return r
}
