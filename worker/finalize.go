package worker

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/threadmill/threadmill/jobs"
	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/results"
	"github.com/threadmill/threadmill/runstore"
)

// handleFinalize writes the run directory from the item records in Redis,
// streamed in plan order so memory stays flat, deletes the threads of steps
// with thread.delete_after, and closes the run. It is idempotent: a finished
// run is left alone, and a rerun after a crash replaces the directory.
func (w *Worker) handleFinalize(ctx context.Context, t *asynq.Task) error {
	_, rc, err := taskRun(ctx, w, t, jobs.DecodeFinalize)
	if err != nil {
		return err
	}
	st, err := w.store.Run(ctx, rc.id)
	if err != nil {
		return err
	}
	if st.Finished() {
		noteFinalized(ctx, st.Status, st.ResultDir)
		return nil
	}
	if err := w.store.MarkFinalizing(ctx, rc.id); err != nil {
		return err
	}
	w.deleteThreads(ctx, rc)

	pl := rc.spec.Pipeline
	root := cmp.Or(w.cfg.ResultsRoot, pl.Output.Dir, pipelines.DefaultOutputDir)
	wr, err := results.Create(root, pl.Name, rc.id)
	if err != nil {
		return w.runError(ctx, rc, permanent(fmt.Errorf("write results: %w", err)))
	}
	if pl.Output.CSV != "" {
		if err := wr.EnableCSV(pl.Output.CSV, csvColumns(pl)); err != nil {
			_ = wr.Abort()
			return w.runError(ctx, rc, permanent(fmt.Errorf("write results: %w", err)))
		}
	}
	if err := w.writeItems(ctx, rc, st, wr); err != nil {
		_ = wr.Abort()
		return w.runError(ctx, rc, err)
	}
	status := results.StatusSucceeded
	_, canceled := runstore.CancelReason(st.StopReason)
	switch {
	case canceled:
		status = results.StatusCanceled
	case st.StopReason != "":
		status = results.StatusStopped
	case st.Failed+st.Skipped > 0:
		status = results.StatusFailed
	}
	info := rc.spec.Info
	run := results.Run{
		Pipeline:     pl.Name,
		PipelineHash: pl.Hash,
		RunID:        rc.id,
		Status:       status,
		StartedAt:    cmp.Or(st.StartedAt, st.CreatedAt),
		FinishedAt:   time.Now(),
		ReportStep:   pl.ReportStep(),
		Retries:      st.Retries,
	}
	if !info.Time.IsZero() {
		run.FireTime = &info.Time
	}
	if !info.WindowStart.IsZero() {
		run.WindowStart = &info.WindowStart
	}
	if !info.WindowEnd.IsZero() {
		run.WindowEnd = &info.WindowEnd
	}
	for _, s := range st.Steps {
		run.Steps = append(run.Steps, results.StepUsage{Step: s.ID})
	}
	if run.Attempts, err = w.store.History(ctx, rc.id); err != nil {
		_ = wr.Abort()
		return err
	}
	dir, err := wr.Commit(run, "")
	if err != nil {
		return w.runError(ctx, rc, permanent(fmt.Errorf("write results: %w", err)))
	}
	if pub := w.publish(ctx, rc, dir, status); pub != nil {
		if err := results.UpdateRun(dir, func(r *results.Run) { r.Published = pub }); err != nil {
			rc.log.Warn("could not record the published artifact in run.json", "error", err)
		}
	}
	if err := w.store.Finish(ctx, rc.id, status, dir); err != nil {
		return err
	}
	w.notifyRun(ctx, rc, dir)
	noteFinalized(ctx, status, dir)
	w.cfg.Observer.RunFinished(pl.Name, status)
	rc.log.Info("run finished", "status", status, "dir", dir,
		"succeeded", st.Succeeded, "failed", st.Failed, "skipped", st.Skipped,
		"input_tokens", int64(st.Usage.InputTokens), "output_tokens", int64(st.Usage.OutputTokens))
	return nil
}

// csvColumns are the columns of the pipeline's items CSV: the default ones,
// then one per top-level field of each step's output_schema, in step and
// schema order.
func csvColumns(pl *pipelines.Pipeline) []results.CSVColumn {
	cols := results.DefaultCSVColumns()
	var fields []string
	for _, s := range pl.Steps {
		for _, f := range s.OutputSchema.Fields() {
			if !slices.Contains(fields, f) {
				fields = append(fields, f)
			}
		}
	}
	return append(cols, results.JSONFieldColumns(fields, cols)...)
}

// writeItems streams every planned step's records into wr, and the report
// step's text into wr's report: the report step's output (one item), or
// each item's output under a heading naming its artifact (several items),
// each followed by the marks of the sources it cites, and the footnotes
// naming those sources at the end.
func (w *Worker) writeItems(ctx context.Context, rc *runCtx, st *runstore.RunState, wr *results.Writer) error {
	reportStep := rc.spec.Pipeline.ReportStep()
	// Footnotes learn every item's artifact name: only for a pipeline that
	// asks for citations.
	var notes *results.Footnotes
	if slices.ContainsFunc(rc.spec.Pipeline.Steps, func(s pipelines.Step) bool { return s.CitationsOn() }) {
		notes = results.NewFootnotes()
	}
	wrote := false
	appendReport := func(text string) error {
		if text = strings.TrimSpace(text); text == "" {
			return nil
		}
		if wrote {
			text = "\n\n" + text
		}
		wrote = true
		return wr.AppendReport(text)
	}
	saver := &reuseSaver{w: w, rc: rc}
	defer saver.flush(ctx)
	filesStep := ""
	if rc.spec.Pipeline.Output.Files != nil {
		filesStep = rc.spec.Pipeline.FilesStep()
	}
	for _, s := range st.Steps {
		if !s.Planned {
			continue
		}
		for it, err := range w.store.Items(ctx, rc.id, s.ID, s.Total) {
			if err != nil {
				return err
			}
			if err := wr.Add(it); err != nil {
				return permanent(err)
			}
			if notes != nil {
				notes.Learn(it)
			}
			saver.add(ctx, it)
			if s.ID == filesStep && it.State == results.StateSucceeded {
				w.writeItemFile(rc, wr, it)
			}
			if s.ID != reportStep || it.State != results.StateSucceeded {
				continue
			}
			text := strings.TrimSpace(it.Output)
			if notes != nil {
				if marks := notes.Cite(it); marks != "" {
					text += "\n\n" + marks
				}
			}
			if s.Total != 1 {
				title := it.Key
				if it.Artifact != nil && it.Artifact.Name != "" {
					title = it.Artifact.Name
				}
				text = fmt.Sprintf("## %s\n\n%s", title, text)
			}
			if err := appendReport(text); err != nil {
				return permanent(err)
			}
		}
	}
	if notes != nil {
		if err := appendReport(notes.Notes()); err != nil {
			return permanent(err)
		}
	}
	return nil
}

// deleteThreads deletes the threads remembered for deletion (steps with
// thread.delete_after). Failures are logged: the results do not depend on it.
func (w *Worker) deleteThreads(ctx context.Context, rc *runCtx) {
	n := 0
	for id, err := range w.store.Threads(ctx, rc.id) {
		if err != nil {
			rc.log.Warn("could not list the threads to delete", "error", err)
			return
		}
		err := w.api.DeleteThread(withRun(ctx, rc), id)
		if err != nil && !errorsIsNotFound(err) {
			rc.log.Warn("could not delete thread", "thread", id, "error", err)
			continue
		}
		if err := w.store.RemoveThread(ctx, rc.id, id); err != nil {
			rc.log.Warn("could not forget deleted thread", "thread", id, "error", err)
		}
		n++
	}
	if n > 0 {
		rc.log.Info("deleted threads", "threads", n)
	}
}
