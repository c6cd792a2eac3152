package worker

import (
	"context"
	"iter"
	"time"

	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/results"
	"github.com/threadmill/threadmill/reuse"
	"github.com/threadmill/threadmill/runstore"
)

// reuseSaveBatch is how many outputs finalize saves for reuse at once.
const reuseSaveBatch = 256

// reuseItems records the items of a step whose output an earlier run left
// in the reuse store (a step with reuse: unchanged, unless the run says
// NoReuse) as succeeded, with that output, no usage and the run it came
// from, and returns the other items: those to send. Recording is
// idempotent, so a step whose enqueueing is planned again records nothing
// twice. A store that cannot be read costs tokens, not correctness: every
// item is sent and a warning logged.
func (w *Worker) reuseItems(ctx context.Context, rc *runCtx, items []pipelines.Item) ([]pipelines.Item, int, error) {
	if rc.spec.Info.NoReuse {
		return items, 0, nil
	}
	var keys []string
	for _, it := range items {
		if it.ReuseKey != "" {
			keys = append(keys, it.ReuseKey)
		}
	}
	if len(keys) == 0 {
		return items, 0, nil
	}
	pl := rc.spec.Pipeline.Name
	found, err := w.cfg.Reuse.Lookup(ctx, pl, keys)
	if err != nil {
		rc.log.Warn("could not look up reusable outputs; sending every item", "error", err)
		return items, 0, nil
	}
	send := make([]pipelines.Item, 0, len(items)-len(found))
	reused := 0
	for _, it := range items {
		e, ok := found[it.ReuseKey]
		if it.ReuseKey == "" || !ok {
			send = append(send, it)
			continue
		}
		rec := reusedItem(it, e, time.Now())
		r, err := w.store.Record(ctx, rc.id, rec, 0)
		if err != nil {
			return nil, 0, err
		}
		reused++
		if r.New {
			w.itemDone(rec)
			w.cfg.Observer.ItemFinished(pl, rec.Step, rec.State, 0)
		}
	}
	return send, reused, nil
}

// reuseLookupBatch is how many items of a step are looked up in the reuse
// store at once while they are enqueued.
const reuseLookupBatch = 256

// reuseFilter counts what reusing took, and keeps its first error.
type reuseFilter struct {
	n   int
	err error
}

// reusing passes a step's items through the reuse store on their way to
// the queue (a step with reuse: unchanged, unless the run says NoReuse):
// in batches, the items whose output a finished run kept are recorded
// (reuseItems) and left out; the others, those skip names (already
// recorded) and the first at or past end are yielded as they come. A
// store or record error ends the items and is kept in rf.err, for the
// caller to return before it marks anything enqueued.
func (w *Worker) reusing(ctx context.Context, rc *runCtx, sp *pipelines.StepPlan, items iter.Seq2[pipelines.Item, error], end int, skip func(string) bool, rf *reuseFilter) iter.Seq2[pipelines.Item, error] {
	if rc.spec.Info.NoReuse || sp.Step().Reuse != pipelines.ReuseUnchanged {
		return items
	}
	return func(yield func(pipelines.Item, error) bool) {
		batch := make([]pipelines.Item, 0, reuseLookupBatch)
		flush := func() bool {
			send, n, err := w.reuseItems(ctx, rc, batch)
			batch = batch[:0]
			if err != nil {
				rf.err = err
				return false
			}
			rf.n += n
			for _, it := range send {
				if !yield(it, nil) {
					return false
				}
			}
			return true
		}
		for it, err := range items {
			switch {
			case err != nil || it.Index >= end:
				if flush() {
					yield(it, err)
				}
				return
			case skip(it.Key) || it.ReuseKey == "":
				if !yield(it, nil) {
					return
				}
			default:
				batch = append(batch, it)
				if len(batch) == reuseLookupBatch && !flush() {
					return
				}
			}
		}
		flush()
	}
}

// reusedItem is the result line of an item that takes e's output: a
// succeeded item with no checkpoint (no thread, no interaction, no usage),
// e's texts, and the run that paid for them.
func reusedItem(it pipelines.Item, e reuse.Entry, now time.Time) results.Item {
	r := buildItem(it, &runstore.Checkpoint{}, results.StateSucceeded, "", now)
	r.Output, r.Outputs, r.StopReason, r.Truncated = e.Output, e.Outputs, e.StopReason, e.Truncated
	r.ReusedFrom, r.ReusedUsage = e.RunID, e.Usage
	return r
}

// reuseSaver collects the succeeded items of a run that carry a reuse key
// and saves them in batches; an item that was itself reused is saved again
// with its source, which restarts its retention.
type reuseSaver struct {
	w     *Worker
	rc    *runCtx
	batch []reuse.Entry
	saved int
}

func (s *reuseSaver) add(ctx context.Context, it results.Item) {
	if it.ReuseKey == "" || it.State != results.StateSucceeded {
		return
	}
	e := reuse.Entry{
		Key: it.ReuseKey, RunID: s.rc.id, Step: it.Step, ItemKey: it.Key,
		Output: it.Output, Outputs: it.Outputs, StopReason: it.StopReason, Truncated: it.Truncated,
		Usage: it.Usage, FinishedAt: it.FinishedAt,
	}
	if it.ReusedFrom != "" {
		e.RunID, e.Usage = it.ReusedFrom, it.ReusedUsage
	}
	s.batch = append(s.batch, e)
	if len(s.batch) >= reuseSaveBatch {
		s.flush(ctx)
	}
}

// flush saves the batch; a failure is logged (later runs send those items
// again), never an error of the run.
func (s *reuseSaver) flush(ctx context.Context) {
	if len(s.batch) == 0 {
		return
	}
	if err := s.w.cfg.Reuse.Save(ctx, s.rc.spec.Pipeline.Name, s.batch); err != nil {
		s.rc.log.Warn("could not keep outputs for reuse; later runs will send these items again", "items", len(s.batch), "error", err)
	} else {
		s.saved += len(s.batch)
	}
	s.batch = s.batch[:0]
}
