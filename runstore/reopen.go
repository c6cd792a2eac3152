package runstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/threadmill/threadmill/results"
	"github.com/threadmill/threadmill/workspace"
)

// Attempt is one finished attempt of a run, kept in its history when the
// run is reopened (and written to run.json by the next finalize).
type Attempt = results.Attempt

// Reopened is what Reopen did to a run.
type Reopened struct {
	// Attempt is the run's new attempt: 1 after the first retry.
	Attempt int
	// Items counts the reopened items per step: their records are gone and
	// their checkpoints kept, so the retry resumes what they had started.
	Items map[string]int
	// Replanned lists the later steps that read a reopened step's outputs:
	// every item of theirs is planned and sent again.
	Replanned []string
}

// Total returns the number of reopened items.
func (r *Reopened) Total() int {
	n := 0
	for _, v := range r.Items {
		n += v
	}
	return n
}

// ErrNotReopenable is matched by the error of Reopen for a run that is not
// finished, or that ended in StatusError.
var ErrNotReopenable = errors.New("run cannot be retried")

// scriptClaimReopen: KEYS: run, history list, the pipeline's active runs.
// ARGV: expected finished_at, history entry, ttl (ms), run id. Moves a finished run
// back to running, counts the attempt, appends the entry to the history and
// makes the run active again (schedule.overlap sees it), unless the run
// changed since it was read (another retry). Returns the new attempt, or 0.
var scriptClaimReopen = redis.NewScript(`
local status = redis.call('HGET', KEYS[1], 'status')
if not status or status == 'error' or not ` + luaTerminal() + ` then return 0 end
if (redis.call('HGET', KEYS[1], 'finished_at') or '') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'status', 'running')
redis.call('HDEL', KEYS[1], 'stop', 'error', 'finished_at', 'result_dir')
local attempt = redis.call('HINCRBY', KEYS[1], 'attempt', 1)
redis.call('RPUSH', KEYS[2], ARGV[2])
local t = redis.call('TIME')
local score = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local last = redis.call('ZRANGE', KEYS[3], -1, -1, 'WITHSCORES')
if last[2] and tonumber(last[2]) >= score then score = tonumber(last[2]) + 1 end
redis.call('ZADD', KEYS[3], score, ARGV[4])
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[3]) end
return attempt
`)

// scriptUnrecord removes item records. KEYS: done set, records, step,
// checkpoints (one per item, "" when the checkpoint is kept). ARGV: ttl,
// then per item: key, index, state, minus its input and output tokens. An item
// without a record is left alone, so a repeated call changes nothing.
var scriptUnrecord = redis.NewScript(`
local n = 0
for i = 2, #ARGV, 5 do
  if redis.call('SREM', KEYS[1], ARGV[i]) == 1 then
    redis.call('HDEL', KEYS[2], ARGV[i+1])
    redis.call('HINCRBY', KEYS[3], ARGV[i+2], -1)
    redis.call('HINCRBY', KEYS[3], 'done', -1)
    redis.call('HINCRBY', KEYS[3], 'input_tokens', ARGV[i+3])
    redis.call('HINCRBY', KEYS[3], 'output_tokens', ARGV[i+4])
    n = n + 1
  end
  local ck = KEYS[4 + (i - 2) / 5]
  if ck ~= '' then redis.call('DEL', ck) end
end
redis.call('HDEL', KEYS[3], 'enqueued')
return n
`)

// Reopen prepares a finished run for a retry of its items in the given
// states (results.StateFailed, StateSkipped, StateCanceled): it moves the
// run back to running as its next attempt, keeping the finished attempt in
// the run's history, and removes those items' records, keeping their
// checkpoints, so that the retry sends only them and resumes any
// interaction they had created instead of paying for it again. A later step
// that needs a reopened step (its template reads the outputs) is planned
// again in full. The caller then enqueues the attempt's start task
// (jobs.RunStart with Attempt).
//
// A run that is not finished, or that ended in StatusError (nothing was
// planned item by item), matches ErrNotReopenable. A run with nothing to
// retry is left as it is and reported with zero items.
func (s *Store) Reopen(ctx context.Context, runID string, states []string) (*Reopened, error) {
	st, err := s.Run(ctx, runID)
	if err != nil {
		return nil, err
	}
	switch {
	case st.Status == StatusError:
		return nil, fmt.Errorf("%w: run %s ended in error (%s); start it again as a new run", ErrNotReopenable, runID, st.Error)
	case !st.Finished():
		return nil, fmt.Errorf("%w: run %s is %s; only a finished run can be retried", ErrNotReopenable, runID, st.Status)
	}
	spec, err := s.Spec(ctx, runID)
	if err != nil {
		return nil, err
	}
	// Find what to reopen before changing anything.
	type rec struct {
		key, state string
		index      int
		usage      workspace.Usage
	}
	byStep := map[string][]rec{}
	var replanned []string
	changed := map[string]bool{}
	for i, step := range spec.Pipeline.Steps {
		ss := st.Steps[i]
		if !ss.Planned {
			continue
		}
		replan := slices.ContainsFunc(step.Needs, func(n string) bool { return changed[n] })
		for it, err := range s.Items(ctx, runID, step.ID, ss.Total) {
			if err != nil {
				return nil, err
			}
			if replan || slices.Contains(states, it.State) {
				byStep[step.ID] = append(byStep[step.ID], rec{key: it.Key, state: it.State, index: it.Index, usage: it.Usage})
			}
		}
		if replan {
			replanned = append(replanned, step.ID)
		}
		if replan || len(byStep[step.ID]) > 0 {
			changed[step.ID] = true
		}
	}
	out := &Reopened{Items: map[string]int{}, Replanned: replanned}
	if len(changed) == 0 {
		return out, nil
	}

	entry, err := json.Marshal(Attempt{
		Attempt: s.attempt(ctx, runID), Status: st.Status, StartedAt: st.StartedAt, FinishedAt: st.FinishedAt,
		Total: st.Total, Succeeded: st.Succeeded, Failed: st.Failed, Skipped: st.Skipped, Canceled: st.Canceled,
		Usage: st.Usage, ResultDir: st.ResultDir, StopReason: st.StopReason,
	})
	if err != nil {
		return nil, fmt.Errorf("runstore: reopen run %s: %w", runID, err)
	}
	finished := ""
	if !st.FinishedAt.IsZero() {
		finished = fmtTime(st.FinishedAt)
	}
	attempt, err := scriptClaimReopen.Run(ctx, s.rdb, []string{s.runKey(runID), s.historyKey(runID), s.activeKey(st.Pipeline)},
		finished, entry, s.ttlMS(), runID).Int()
	if err != nil {
		return nil, wrap("reopen run", runID, err)
	}
	if attempt == 0 {
		return nil, fmt.Errorf("%w: run %s changed while it was being reopened (another retry?)", ErrNotReopenable, runID)
	}
	out.Attempt = attempt
	for _, step := range spec.Pipeline.Steps {
		if !changed[step.ID] {
			continue
		}
		recs := byStep[step.ID]
		replan := slices.Contains(replanned, step.ID)
		for start := 0; ; start += itemBatch {
			batch := recs[start:min(start+itemBatch, len(recs))]
			keys := []string{s.doneKey(runID, step.ID), s.resKey(runID, step.ID), s.stepKey(runID, step.ID)}
			args := []any{s.ttlMS()}
			for _, r := range batch {
				ck := ""
				if replan {
					// New requests: an old checkpoint must not be resumed.
					ck = s.ckptKey(runID, step.ID, r.key)
				}
				keys = append(keys, ck)
				args = append(args, r.key, strconv.Itoa(r.index), r.state, -int64(r.usage.InputTokens), -int64(r.usage.OutputTokens))
			}
			n, err := scriptUnrecord.Run(ctx, s.rdb, keys, args...).Int()
			if err != nil {
				return nil, wrap("reopen step "+step.ID, runID, err)
			}
			out.Items[step.ID] += n
			if start+itemBatch >= len(recs) {
				break
			}
		}
		if replan {
			if err := s.rdb.HDel(ctx, s.stepKey(runID, step.ID), "total").Err(); err != nil {
				return nil, wrap("reopen step "+step.ID, runID, err)
			}
		}
	}
	return out, nil
}

// attempt returns the run's current attempt (0 before any retry).
func (s *Store) attempt(ctx context.Context, runID string) int {
	n, _ := s.rdb.HGet(ctx, s.runKey(runID), "attempt").Int()
	return n
}

// History returns the run's earlier attempts, oldest first.
func (s *Store) History(ctx context.Context, runID string) ([]Attempt, error) {
	raw, err := s.rdb.LRange(ctx, s.historyKey(runID), 0, -1).Result()
	if err != nil {
		return nil, wrap("read run history", runID, err)
	}
	out := make([]Attempt, 0, len(raw))
	for _, r := range raw {
		var a Attempt
		if err := json.Unmarshal([]byte(r), &a); err != nil {
			return nil, fmt.Errorf("runstore: run %s: decode history: %w", runID, err)
		}
		out = append(out, a)
	}
	return out, nil
}

// Recorded returns the keys of a step's items that have a record.
func (s *Store) Recorded(ctx context.Context, runID, step string) (map[string]bool, error) {
	keys, err := s.rdb.SMembers(ctx, s.doneKey(runID, step)).Result()
	if err != nil {
		return nil, wrap("read recorded items of "+step, runID, err)
	}
	out := make(map[string]bool, len(keys))
	for _, k := range keys {
		out[k] = true
	}
	return out, nil
}

// historyKey is the list of a run's earlier attempts.
func (s *Store) historyKey(id string) string { return s.runKey(id) + ":history" }

// Creating is the pending mark of a turn whose interaction may have been
// created without its id being known (an attempt died, or the answer was
// lost): the worker looks it up by correlation id before creating another.
const Creating = "?"

// SeedRetry prepares, in a new store, the retry of an item recorded by an
// earlier attempt of the run whose store is gone (the embedded runner's):
// the item keeps its thread, and each of its turns is marked Creating, so
// that the retry finds any interaction the earlier attempt created, by its
// correlation id, before it creates one. An item without a thread created
// nothing to find, and gets no checkpoint.
func (s *Store) SeedRetry(ctx context.Context, runID string, it results.Item) error {
	if it.ThreadID == "" {
		return nil
	}
	values := []any{"thread", it.ThreadID}
	for i := range it.Requests {
		values = append(values, "pending:"+strconv.Itoa(i), Creating)
	}
	return s.hsetCkpt(ctx, runID, it.Step, it.Key, values...)
}

// AddHistory records earlier attempts of a run whose store is gone (the
// embedded runner's), oldest first, and sets the run's attempt count to
// theirs, for run.json's history.
func (s *Store) AddHistory(ctx context.Context, runID string, attempts ...Attempt) error {
	if len(attempts) == 0 {
		return nil
	}
	vals := make([]any, len(attempts))
	for i, a := range attempts {
		b, err := json.Marshal(a)
		if err != nil {
			return fmt.Errorf("runstore: run %s: encode history: %w", runID, err)
		}
		vals[i] = b
	}
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.RPush(ctx, s.historyKey(runID), vals...)
		p.PExpire(ctx, s.historyKey(runID), s.retention)
		p.HSet(ctx, s.runKey(runID), "attempt", len(attempts))
		return nil
	})
	return wrap("record run history", runID, err)
}
