package runstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/results"
	"github.com/threadmill/threadmill/workspace"
)

// Run statuses. A run is pending until a worker takes its run:start task,
// running while items are processed, finalizing while the result files are
// written, and then ends in one of the terminal statuses.
const (
	StatusPending    = "pending"
	StatusRunning    = "running"
	StatusFinalizing = "finalizing"
	// StatusSucceeded: every item succeeded (results.StatusSucceeded).
	StatusSucceeded = results.StatusSucceeded
	// StatusFailed: the run finished, some items failed or were skipped
	// (results.StatusFailed).
	StatusFailed = results.StatusFailed
	// StatusStopped: a step with on_error: fail lost an item, the remaining
	// items were skipped (results.StatusStopped).
	StatusStopped = results.StatusStopped
	// StatusCanceled: the run was canceled (Cancel); items not finished by
	// then are recorded canceled (results.StatusCanceled).
	StatusCanceled = results.StatusCanceled
	// StatusError: the run could not start or finish (artifact sets not
	// resolved, a step not planned, result files not written); Error says why.
	StatusError = "error"
)

// terminalStatuses are the final statuses of a run.
var terminalStatuses = []string{StatusSucceeded, StatusFailed, StatusStopped, StatusCanceled, StatusError}

// Terminal reports whether status is a final status.
func Terminal(status string) bool { return slices.Contains(terminalStatuses, status) }

// luaTerminal is a Lua expression, true when the variable status holds a
// final status.
func luaTerminal() string {
	conds := make([]string, len(terminalStatuses))
	for i, st := range terminalStatuses {
		conds[i] = "status == '" + st + "'"
	}
	return "(" + strings.Join(conds, " or ") + ")"
}

// RunState is a run's progress as the store knows it.
type RunState struct {
	ID           string            `json:"id"`
	Pipeline     string            `json:"pipeline"`
	PipelineHash string            `json:"pipeline_hash,omitempty"`
	Status       string            `json:"status"`
	Info         pipelines.RunInfo `json:"info"`
	// ResultDir is the committed run directory, once finalized.
	ResultDir string `json:"result_dir,omitempty"`
	// Error says why a run ended in StatusError.
	Error string `json:"error,omitempty"`
	// StopReason says why a run was stopped (StatusStopped).
	StopReason string `json:"stop_reason,omitempty"`
	// WaitingFor is the run of the same pipeline this pending run waits for
	// before it starts (schedule.overlap: queue; see Store.Admit).
	WaitingFor string `json:"waiting_for,omitempty"`
	// Total is the number of items planned so far (the steps not yet
	// planned are not counted); Done = Succeeded + Failed + Skipped +
	// Canceled.
	Total     int             `json:"total"`
	Done      int             `json:"done"`
	Succeeded int             `json:"succeeded"`
	Failed    int             `json:"failed"`
	Skipped   int             `json:"skipped"`
	Canceled  int             `json:"canceled"`
	Retries   int             `json:"retries"`
	Usage     workspace.Usage `json:"usage"`
	// Steps are in pipeline order.
	Steps      []StepState `json:"steps"`
	CreatedAt  time.Time   `json:"created_at"`
	StartedAt  time.Time   `json:"started_at,omitzero"`
	FinishedAt time.Time   `json:"finished_at,omitzero"`
}

// Finished reports whether the run reached a terminal status.
func (r *RunState) Finished() bool { return Terminal(r.Status) }

// Timing returns how long the run has taken (until now while it runs)
// and, while it runs, an estimate of the time left for its planned items
// at the rate so far. Both are zero before the run started.
func (r *RunState) Timing(now time.Time) (elapsed, eta time.Duration) {
	if r.StartedAt.IsZero() {
		return 0, 0
	}
	end := now
	if !r.FinishedAt.IsZero() {
		end = r.FinishedAt
	}
	elapsed = end.Sub(r.StartedAt)
	if r.Finished() || r.Done == 0 || elapsed <= 0 || r.Total <= r.Done {
		return elapsed, 0
	}
	perItem := elapsed / time.Duration(r.Done)
	return elapsed, perItem * time.Duration(r.Total-r.Done)
}

// StepState is one step's progress.
type StepState struct {
	ID string `json:"id"`
	// Planned is true once the step's items are planned (Total is known).
	Planned   bool            `json:"planned"`
	Total     int             `json:"total"`
	Done      int             `json:"done"`
	Succeeded int             `json:"succeeded"`
	Failed    int             `json:"failed"`
	Skipped   int             `json:"skipped"`
	Canceled  int             `json:"canceled"`
	Usage     workspace.Usage `json:"usage"`
}

// Spec is what a worker needs to run a run: the pipeline and the run info.
type Spec struct {
	Pipeline *pipelines.Pipeline
	Info     pipelines.RunInfo
}

// CreateRun records a new pending run of p. It reports created=false, and no
// error, when the run id already exists for the same pipeline (the same name
// and content hash), so that starting a run twice is a no-op; a run id that
// already belongs to another pipeline, or to another version of the file, is
// an error. It ignores overlap (Admit with pipelines.OverlapAllow): a run
// waiting for an earlier one (Admit, overlap: queue) is released. The run
// joins its pipeline's active runs, which scheduled fire times of the
// pipeline wait for or skip.
func (s *Store) CreateRun(ctx context.Context, p *pipelines.Pipeline, run pipelines.RunInfo) (created bool, err error) {
	a, err := s.Admit(ctx, p, run, pipelines.OverlapAllow)
	if err != nil {
		return false, err
	}
	if a.Outcome == AdmitCreated {
		return true, nil
	}
	if a.Hash != "" && p.Hash != "" && a.Hash != p.Hash {
		return false, fmt.Errorf("runstore: run id %s of pipeline %q already exists for another version of the file (hash %.12s, this file %.12s); use another run id",
			run.ID, p.Name, a.Hash, p.Hash)
	}
	return false, nil
}

// Spec returns the pipeline and run info recorded by CreateRun.
func (s *Store) Spec(ctx context.Context, runID string) (*Spec, error) {
	vals, err := s.rdb.HMGet(ctx, s.runKey(runID), "spec", "info").Result()
	if err != nil {
		return nil, wrap("read run", runID, err)
	}
	spec, _ := vals[0].(string)
	info, _ := vals[1].(string)
	if spec == "" {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, runID)
	}
	out := &Spec{Pipeline: new(pipelines.Pipeline)}
	if err := json.Unmarshal([]byte(spec), out.Pipeline); err != nil {
		return nil, fmt.Errorf("runstore: run %s: decode pipeline: %w", runID, err)
	}
	if err := json.Unmarshal([]byte(info), &out.Info); err != nil {
		return nil, fmt.Errorf("runstore: run %s: decode run info: %w", runID, err)
	}
	return out, nil
}

// Status returns the run's status and stop reason.
func (s *Store) Status(ctx context.Context, runID string) (status, stop string, err error) {
	vals, err := s.rdb.HMGet(ctx, s.runKey(runID), "status", "stop").Result()
	if err != nil {
		return "", "", wrap("read run status", runID, err)
	}
	status, _ = vals[0].(string)
	stop, _ = vals[1].(string)
	if status == "" {
		return "", "", fmt.Errorf("%w: %s", ErrNotFound, runID)
	}
	return status, stop, nil
}

// Exists reports whether the store knows the run.
func (s *Store) Exists(ctx context.Context, runID string) (bool, error) {
	_, _, err := s.Status(ctx, runID)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// MarkRunning moves a pending run to running and sets its start time.
// A run in any other status is left alone.
func (s *Store) MarkRunning(ctx context.Context, runID string) error {
	_, err := scriptTransition.Run(ctx, s.rdb, []string{s.runKey(runID)},
		StatusPending, StatusRunning, "started_at", fmtTime(time.Now()), s.ttlMS()).Result()
	return wrap("mark running", runID, err)
}

// MarkFinalizing moves a running run to finalizing.
func (s *Store) MarkFinalizing(ctx context.Context, runID string) error {
	_, err := scriptTransition.Run(ctx, s.rdb, []string{s.runKey(runID)},
		StatusRunning, StatusFinalizing, "", "", s.ttlMS()).Result()
	return wrap("mark finalizing", runID, err)
}

// Finish sets a terminal status, the result directory and the end time,
// and removes the run from its pipeline's active runs.
func (s *Store) Finish(ctx context.Context, runID, status, resultDir string) error {
	if !Terminal(status) {
		return fmt.Errorf("runstore: finish run %s: %q is not a terminal status", runID, status)
	}
	key := s.runKey(runID)
	pipe, err := s.pipelineOf(ctx, runID)
	if err != nil {
		return wrap("finish run", runID, err)
	}
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, key, "status", status, "result_dir", resultDir, "finished_at", fmtTime(time.Now()))
		p.PExpire(ctx, key, s.retention)
		if pipe != "" {
			p.ZRem(ctx, s.activeKey(pipe), runID)
		}
		p.Publish(ctx, s.endedChannel(runID), status)
		return nil
	})
	return wrap("finish run", runID, err)
}

// Fail ends a run in StatusError with the reason and removes it from its
// pipeline's active runs.
func (s *Store) Fail(ctx context.Context, runID string, reason error) error {
	key := s.runKey(runID)
	pipe, err := s.pipelineOf(ctx, runID)
	if err != nil {
		return wrap("fail run", runID, err)
	}
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, key, "status", StatusError, "error", reason.Error(), "finished_at", fmtTime(time.Now()))
		p.PExpire(ctx, key, s.retention)
		if pipe != "" {
			p.ZRem(ctx, s.activeKey(pipe), runID)
		}
		p.Publish(ctx, s.endedChannel(runID), StatusError)
		return nil
	})
	return wrap("fail run", runID, err)
}

// Stop asks the run to stop: items not yet sent are recorded as skipped and
// the run is finalized after the current step. The first reason wins.
func (s *Store) Stop(ctx context.Context, runID, reason string) error {
	err := s.rdb.HSetNX(ctx, s.runKey(runID), "stop", reason).Err()
	return wrap("stop run", runID, err)
}

// AddRetries adds n to the run's retry count.
func (s *Store) AddRetries(ctx context.Context, runID string, n int) error {
	return wrap("count retry", runID, s.rdb.HIncrBy(ctx, s.runKey(runID), "retries", int64(n)).Err())
}

// PlanStep records a step's number of items. It must be called before any
// of the step's items is enqueued, so that the first completion check sees
// the total; calling it again with the same total is harmless.
func (s *Store) PlanStep(ctx context.Context, runID, step string, total int) error {
	key := s.stepKey(runID, step)
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, key, "total", total)
		p.PExpire(ctx, key, s.retention)
		p.HSet(ctx, s.runKey(runID), "step", step)
		return nil
	})
	return wrap("plan step "+step, runID, err)
}

// MarkEnqueued records that every item of a step was enqueued.
func (s *Store) MarkEnqueued(ctx context.Context, runID, step string) error {
	return wrap("mark step "+step+" enqueued", runID, s.rdb.HSet(ctx, s.stepKey(runID, step), "enqueued", 1).Err())
}

// Enqueued reports whether MarkEnqueued was called for the step.
func (s *Store) Enqueued(ctx context.Context, runID, step string) (bool, error) {
	v, err := s.rdb.HGet(ctx, s.stepKey(runID, step), "enqueued").Result()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, wrap("read step "+step, runID, err)
	}
	return v == "1", nil
}

// StepProgress returns the number of finished items of a step and its
// planned total (-1 when not planned).
func (s *Store) StepProgress(ctx context.Context, runID, step string) (done, total int, err error) {
	vals, err := s.rdb.HMGet(ctx, s.stepKey(runID, step), "done", "total").Result()
	if err != nil {
		return 0, 0, wrap("read step "+step, runID, err)
	}
	total = -1
	if v, ok := vals[1].(string); ok {
		total = atoi(v)
	}
	if v, ok := vals[0].(string); ok {
		done = atoi(v)
	}
	return done, total, nil
}

// Run returns a run's state.
func (s *Store) Run(ctx context.Context, runID string) (*RunState, error) {
	h, err := s.rdb.HGetAll(ctx, s.runKey(runID)).Result()
	if err != nil {
		return nil, wrap("read run", runID, err)
	}
	if h["status"] == "" {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, runID)
	}
	r := &RunState{
		ID:           runID,
		Pipeline:     h["pipeline"],
		PipelineHash: h["hash"],
		Status:       h["status"],
		ResultDir:    h["result_dir"],
		Error:        h["error"],
		StopReason:   h["stop"],
		WaitingFor:   h["waiting_for"],
		Retries:      atoi(h["retries"]),
		CreatedAt:    parseTime(h["created_at"]),
		StartedAt:    parseTime(h["started_at"]),
		FinishedAt:   parseTime(h["finished_at"]),
	}
	_ = json.Unmarshal([]byte(h["info"]), &r.Info)
	var ids []string
	_ = json.Unmarshal([]byte(h["steps"]), &ids)
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	if len(ids) > 0 {
		_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, id := range ids {
				cmds[i] = p.HGetAll(ctx, s.stepKey(runID, id))
			}
			return nil
		})
		if err != nil {
			return nil, wrap("read steps", runID, err)
		}
	}
	for i, id := range ids {
		sh := cmds[i].Val()
		st := StepState{
			ID:        id,
			Done:      atoi(sh["done"]),
			Succeeded: atoi(sh[results.StateSucceeded]),
			Failed:    atoi(sh[results.StateFailed]),
			Skipped:   atoi(sh[results.StateSkipped]),
			Canceled:  atoi(sh[results.StateCanceled]),
			Usage: workspace.Usage{
				InputTokens:  workspace.Count(atoi64(sh["input_tokens"])),
				OutputTokens: workspace.Count(atoi64(sh["output_tokens"])),
			},
		}
		if t, ok := sh["total"]; ok {
			st.Planned, st.Total = true, atoi(t)
		}
		r.Steps = append(r.Steps, st)
		r.Total += st.Total
		r.Done += st.Done
		r.Succeeded += st.Succeeded
		r.Failed += st.Failed
		r.Skipped += st.Skipped
		r.Canceled += st.Canceled
		r.Usage = r.Usage.Add(st.Usage)
	}
	return r, nil
}

// Runs returns the runs the store knows, newest first.
func (s *Store) Runs(ctx context.Context) ([]RunState, error) {
	ids, err := s.rdb.ZRevRange(ctx, s.runsKey(), 0, -1).Result()
	if err != nil {
		return nil, wrap("list runs", "", err)
	}
	out := make([]RunState, 0, len(ids))
	for _, id := range ids {
		r, err := s.Run(ctx, id)
		if errors.Is(err, ErrNotFound) {
			continue // expired
		}
		if err != nil {
			return nil, err
		}
		out = append(out, *r)
	}
	return out, nil
}

// Wait waits until the run reaches a terminal status and returns its final
// state; it returns early with ctx's error. Finish and Fail publish the end,
// so Wait returns at once; it also polls, in case the subscription fails or
// misses the message.
func (s *Store) Wait(ctx context.Context, runID string) (*RunState, error) {
	const poll = 100 * time.Millisecond
	var ended <-chan *redis.Message
	// Subscribed before the first look at the status, so an end published
	// after it is not missed.
	ps := s.rdb.Subscribe(ctx, s.endedChannel(runID))
	defer ps.Close()
	if _, err := ps.Receive(ctx); err == nil {
		ended = ps.Channel()
	}
	t := time.NewTimer(poll)
	defer t.Stop()
	for {
		status, _, err := s.Status(ctx, runID)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return nil, err
		}
		if Terminal(status) {
			return s.Run(ctx, runID)
		}
		t.Reset(poll)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("runstore: wait for run %s: %w", runID, context.Cause(ctx))
		case <-t.C:
		case _, ok := <-ended:
			if !ok {
				ended = nil
			}
		}
	}
}

func toInt(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case string:
		n, _ := strconv.ParseInt(x, 10, 64)
		return n
	}
	return 0
}

func toString(v any) string {
	s, _ := v.(string)
	return s
}
