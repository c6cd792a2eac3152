package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	"github.com/hibiken/asynq"

	"github.com/threadmill/threadmill/results"
)

// Task results.
//
// Every threadmill task leaves a short JSON result on its asynq task
// (asynq's ResultWriter), which `asynq task ls --state completed`, `asynq
// task inspect` and asynqmon's task page show for as long as asynq keeps
// the completed task (its retention: Config.ItemRetention for items, a day
// for the other kinds):
//
//	step:item      {"state":"succeeded","attempts":1,"input_tokens":812,"output_tokens":95,"latency_ms":2310,"thread_id":"...","interaction_ids":["..."]}
//	run:start      {"did":"enqueued 120 items of step summarize"}
//	step:advance   {"did":"step summarize done; enqueued 1 item of step brief"}
//	run:finalize   {"did":"finalized: succeeded","status":"succeeded","dir":"results/weekly/RUN"}
//
// A handler notes its result in its context (noteResult, noteDid,
// noteItem); the middleware taskResults writes the last note once the
// handler returns, whatever it returned, so a failed item's final attempt
// carries its error too.

// maxResultError bounds the error text in an item's result.
const maxResultError = 300

// itemResult is the result of a step:item task.
type itemResult struct {
	State          string   `json:"state"`
	Attempts       int      `json:"attempts,omitempty"`
	InputTokens    int64    `json:"input_tokens"`
	OutputTokens   int64    `json:"output_tokens"`
	LatencyMS      int64    `json:"latency_ms"`
	ThreadID       string   `json:"thread_id,omitempty"`
	InteractionIDs []string `json:"interaction_ids,omitempty"`
	Error          string   `json:"error,omitempty"`
}

// didResult is the result of a run:start, step:advance or run:finalize
// task: what it did, and for finalize the run's status and directory.
type didResult struct {
	Did    string `json:"did"`
	Status string `json:"status,omitempty"`
	Dir    string `json:"dir,omitempty"`
}

type noteKey struct{}

// taskNote holds a handler's result until the handler returns.
type taskNote struct {
	mu sync.Mutex
	v  any
}

// taskResults is the middleware that writes the result a handler noted.
func (w *Worker) taskResults(h asynq.Handler) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		n := &taskNote{}
		err := h.ProcessTask(context.WithValue(ctx, noteKey{}, n), t)
		n.mu.Lock()
		v := n.v
		n.mu.Unlock()
		rw := t.ResultWriter()
		if v == nil || rw == nil {
			return err
		}
		b, merr := json.Marshal(v)
		if merr == nil {
			_, merr = rw.Write(b)
		}
		if merr != nil {
			// The result only informs; the task's work is done (or not) anyway.
			w.log.Debug("could not write the task's result", "task", rw.TaskID(), "error", merr)
		}
		return err
	})
}

// noteResult sets the result of the task ctx belongs to (the last note
// wins); a no-op outside a task.
func noteResult(ctx context.Context, v any) {
	if n, ok := ctx.Value(noteKey{}).(*taskNote); ok {
		n.mu.Lock()
		n.v = v
		n.mu.Unlock()
	}
}

// noteDid notes what a control task did, as a sentence.
func noteDid(ctx context.Context, format string, args ...any) {
	noteResult(ctx, didResult{Did: fmt.Sprintf(format, args...)})
}

// noteFinalized notes a finalize task's outcome.
func noteFinalized(ctx context.Context, status, dir string) {
	noteResult(ctx, didResult{Did: "finalized: " + status, Status: status, Dir: dir})
}

// noteItem notes an item's result from its record; item nil means it was
// recorded by an earlier delivery and only counted now.
func noteItem(ctx context.Context, item *results.Item) {
	if item == nil {
		noteResult(ctx, itemResult{State: "recorded earlier; counted"})
		return
	}
	r := itemResult{
		State:          item.State,
		Attempts:       item.Attempts,
		InputTokens:    int64(item.Usage.InputTokens),
		OutputTokens:   int64(item.Usage.OutputTokens),
		LatencyMS:      item.LatencyMS,
		ThreadID:       item.ThreadID,
		InteractionIDs: item.InteractionIDs,
		Error:          item.Error,
	}
	if len(r.Error) > maxResultError {
		r.Error = strings.ToValidUTF8(r.Error[:maxResultError], "") + "…"
	}
	noteResult(ctx, r)
}

// itemRetention is the retention option of item tasks (none when
// Config.ItemRetention is negative).
func (w *Worker) itemRetention() []asynq.Option {
	if w.cfg.ItemRetention < 0 {
		return nil
	}
	return []asynq.Option{asynq.Retention(w.cfg.ItemRetention)}
}

// plural is "1 item" or "n items".
func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
