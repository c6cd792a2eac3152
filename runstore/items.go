package runstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/results"
	"github.com/threadmill/threadmill/workspace"
)

// Checkpoint is what an item has already done, so that a retry (or another
// worker after a crash) resumes instead of paying again.
type Checkpoint struct {
	// Attempts counts the times the item was taken, this one included.
	Attempts int
	// StartedAt is when the item was first taken.
	StartedAt time.Time
	// Validated is true once every request passed /app/chat/validate.
	Validated bool
	// ThreadID is the thread the item's interactions go to, once created.
	ThreadID string
	// Reserved is the token estimate reserved against max_total_tokens.
	Reserved int64
	// TPMReserved is the estimate reserved on the tokens-per-minute limiter.
	TPMReserved int64
	// Pending maps a turn to the interaction created for it and not yet
	// finished: a retry waits on it instead of creating another.
	Pending map[int]string
	// Turns are the finished turns by index.
	Turns map[int]Turn
	// Discarded are interactions (or chats) that ended in error and were
	// replaced; their usage is in Wasted.
	Discarded []string
	Wasted    workspace.Usage
}

// Turn is one finished request of an item.
type Turn struct {
	InteractionID string          `json:"interaction_id,omitempty"`
	Output        string          `json:"output"`
	Usage         workspace.Usage `json:"usage"`
	StopReason    string          `json:"stop_reason,omitempty"`
	// UsageEstimated is true when the server gave no usage and Usage is
	// threadmill's estimate (workspace.EstimateTokens).
	UsageEstimated bool `json:"usage_estimated,omitempty"`
	// Citations and Sources are the answer's citations and source blocks
	// (when the step asks for citations).
	Citations []workspace.Citation `json:"citations,omitempty"`
	Sources   []workspace.Source   `json:"sources,omitempty"`
}

// ItemStart is the outcome of BeginItem and BeginItemSlot.
type ItemStart struct {
	// Done is true when the item already has a record: nothing to do.
	Done bool
	// Stop is the run's stop reason, empty unless the run is stopping.
	Stop string
	// Checkpoint is the item's progress so far, with Attempts counting
	// this attempt.
	Checkpoint Checkpoint
	// Lease is the in-flight slot BeginItemSlot took with the item: nil
	// when the item is done, the run is stopping or every slot is held
	// (wait for one with AcquireSlot then).
	Lease *Lease
}

// BeginItem takes an item: it reports whether the item is already recorded,
// and otherwise counts the attempt and returns the item's checkpoint and the
// run's stop reason, in one round trip.
func (s *Store) BeginItem(ctx context.Context, runID, step, key string) (*ItemStart, error) {
	res, err := scriptBeginItem.Run(ctx, s.rdb,
		[]string{s.doneKey(runID, step), s.ckptKey(runID, step, key), s.runKey(runID)},
		key, s.ttlMS(), fmtTime(time.Now())).Slice()
	if err != nil {
		return nil, wrap("begin item "+step+"/"+key, runID, err)
	}
	return decodeItemStart(res), nil
}

// SlotRequest asks BeginItemSlot for a slot of a pipeline's in-flight limit.
type SlotRequest struct {
	// Pipeline names the limit (limits are per pipeline).
	Pipeline string
	// Limit is the number of slots.
	Limit int
	// Holder names the holder; the attempt number is appended
	// ("<Holder>#<attempt>"), so each attempt holds a slot of its own.
	Holder string
	// TTL is the lease, renewed in the background until Release.
	TTL time.Duration
}

// BeginItemSlot is BeginItem that also takes an in-flight slot for the
// attempt in the same round trip (see AcquireSlot), when the item is not
// recorded, the run is not stopping and a slot is free. ItemStart.Lease is
// the slot, nil when none was taken.
func (s *Store) BeginItemSlot(ctx context.Context, runID, step, key string, slot SlotRequest) (*ItemStart, error) {
	zkey := s.inflightKey(slot.Pipeline)
	res, err := scriptBeginItemSlot.Run(ctx, s.rdb,
		[]string{s.doneKey(runID, step), s.ckptKey(runID, step, key), s.runKey(runID), zkey},
		key, s.ttlMS(), fmtTime(time.Now()), slot.Limit, slot.Holder, slot.TTL.Milliseconds()).Slice()
	if err != nil {
		return nil, wrap("begin item "+step+"/"+key, runID, err)
	}
	st := decodeItemStart(res)
	if !st.Done && len(res) > 3 && toInt(res[3]) == 1 {
		st.Lease = s.newLease(zkey, slot.Holder+"#"+strconv.Itoa(st.Checkpoint.Attempts), slot.TTL)
	}
	return st, nil
}

// decodeItemStart reads the reply of scriptBeginItem or scriptBeginItemSlot.
func decodeItemStart(res []any) *ItemStart {
	if toInt(res[0]) == 1 {
		return &ItemStart{Done: true}
	}
	st := &ItemStart{Stop: toString(res[1])}
	flat, _ := res[2].([]any)
	h := make(map[string]string, len(flat)/2)
	for i := 0; i+1 < len(flat); i += 2 {
		h[toString(flat[i])] = toString(flat[i+1])
	}
	st.Checkpoint = decodeCheckpoint(h)
	return st
}

func decodeCheckpoint(h map[string]string) Checkpoint {
	c := Checkpoint{
		Attempts:    atoi(h["attempts"]),
		StartedAt:   parseTime(h["started_at"]),
		Validated:   h["validated"] == "1",
		ThreadID:    h["thread"],
		Reserved:    atoi64(h["reserved"]),
		TPMReserved: atoi64(h["tpm"]),
		Pending:     map[int]string{},
		Turns:       map[int]Turn{},
		Wasted: workspace.Usage{
			InputTokens:  workspace.Count(atoi64(h["wasted_in"])),
			OutputTokens: workspace.Count(atoi64(h["wasted_out"])),
		},
	}
	if d := h["discarded"]; d != "" {
		c.Discarded = strings.Split(d, ",")
	}
	for k, v := range h {
		switch {
		case strings.HasPrefix(k, "pending:"):
			if i, err := strconv.Atoi(k[len("pending:"):]); err == nil && v != "" {
				c.Pending[i] = v
			}
		case strings.HasPrefix(k, "turn:"):
			var t Turn
			if i, err := strconv.Atoi(k[len("turn:"):]); err == nil && json.Unmarshal([]byte(v), &t) == nil {
				c.Turns[i] = t
			}
		}
	}
	return c
}

func (s *Store) hsetCkpt(ctx context.Context, runID, step, key string, values ...any) error {
	k := s.ckptKey(runID, step, key)
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, k, values...)
		p.PExpire(ctx, k, s.retention)
		return nil
	})
	return wrap("checkpoint item "+step+"/"+key, runID, err)
}

// CheckpointValidated records that the item's requests passed validation.
func (s *Store) CheckpointValidated(ctx context.Context, runID, step, key string) error {
	return s.hsetCkpt(ctx, runID, step, key, "validated", "1")
}

// CheckpointThread records the thread the item's interactions go to, that
// its requests were validated (they are by then), and the first turn's
// pending interaction (usually the "being created" marker) when not empty.
func (s *Store) CheckpointThread(ctx context.Context, runID, step, key, threadID, firstPending string) error {
	if firstPending != "" {
		return s.hsetCkpt(ctx, runID, step, key, "thread", threadID, "validated", "1", "pending:0", firstPending)
	}
	return s.hsetCkpt(ctx, runID, step, key, "thread", threadID, "validated", "1")
}

// CheckpointPending records the interaction created for a turn, before
// anyone waits on it.
func (s *Store) CheckpointPending(ctx context.Context, runID, step, key string, turn int, interactionID string) error {
	return s.hsetCkpt(ctx, runID, step, key, "pending:"+strconv.Itoa(turn), interactionID)
}

// CheckpointTurn records a finished turn and clears its pending interaction.
func (s *Store) CheckpointTurn(ctx context.Context, runID, step, key string, turn int, t Turn) error {
	b, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("runstore: checkpoint turn: %w", err)
	}
	return s.hsetCkpt(ctx, runID, step, key, "turn:"+strconv.Itoa(turn), b, "pending:"+strconv.Itoa(turn), "")
}

// CheckpointDiscard records that a turn's interaction (or chat) ended in
// error and will be replaced; its usage counts towards the item's usage.
func (s *Store) CheckpointDiscard(ctx context.Context, runID, step, key string, turn int, id string, wasted workspace.Usage) error {
	k := s.ckptKey(runID, step, key)
	_, err := scriptDiscard.Run(ctx, s.rdb, []string{k},
		"pending:"+strconv.Itoa(turn), id, int64(wasted.InputTokens), int64(wasted.OutputTokens), s.ttlMS()).Result()
	return wrap("checkpoint item "+step+"/"+key, runID, err)
}

// CheckpointTPM records the estimate reserved on the tokens-per-minute
// limiter, so a retry does not reserve it again.
func (s *Store) CheckpointTPM(ctx context.Context, runID, step, key string, n int64) error {
	return s.hsetCkpt(ctx, runID, step, key, "tpm", n)
}

// ReserveBudget reserves est tokens of the run's max_total_tokens budget for
// an item, once: a retry of a reserved item is granted without reserving
// again. Once an item is refused the budget is exhausted for good, and every
// later item is refused too. used is the budget spent or reserved so far.
func (s *Store) ReserveBudget(ctx context.Context, runID, step, key string, est, budget int64) (ok bool, used int64, err error) {
	res, err := scriptReserveBudget.Run(ctx, s.rdb,
		[]string{s.budgetKey(runID), s.ckptKey(runID, step, key)},
		est, budget, s.ttlMS()).Slice()
	if err != nil {
		return false, 0, wrap("reserve token budget", runID, err)
	}
	return toInt(res[0]) == 1, toInt(res[1]), nil
}

// Recorded is the outcome of Record.
type Recorded struct {
	// New is true when this call wrote the record; false when the item
	// already had one (a duplicate delivery), which is left unchanged.
	New bool
	// Done and Total are the step's finished items and planned total
	// (-1 when the step has no total yet).
	Done, Total int
}

// Complete reports whether every item of the step is finished.
func (r Recorded) Complete() bool { return r.Total >= 0 && r.Done >= r.Total }

// Record writes an item's final record, exactly once: the first call for an
// item key adds it to the step's done set, stores the record at its plan
// index, adds its state and usage to the step's and the run's counters,
// settles the token budget (usage minus reserved) and drops the checkpoint
// of a succeeded item (another keeps its own, so that a retry of the run
// resumes what it had started: see Reopen). Later calls for the same key
// change nothing. Either way it returns the step's progress, so the caller
// can tell whether the step is complete.
func (s *Store) Record(ctx context.Context, runID string, it results.Item, reserved int64) (Recorded, error) {
	return s.RecordAndRelease(ctx, runID, it, reserved, nil)
}

// RecordAndRelease is Record that also gives back the item's in-flight slot
// (when l is not nil) in the same round trip. A slot that could not be given
// back is left to l.Release (or to its expiry); the error is the record's.
func (s *Store) RecordAndRelease(ctx context.Context, runID string, it results.Item, reserved int64, l *Lease) (Recorded, error) {
	b, err := json.Marshal(it)
	if err != nil {
		return Recorded{}, fmt.Errorf("runstore: encode item %s/%s: %w", it.Step, it.Key, err)
	}
	// With RecordFiles, a duplicate's copy stays in the file, unreferenced.
	if b, err = s.stash(runID, b); err != nil {
		return Recorded{}, fmt.Errorf("runstore: record item %s/%s: %w", it.Step, it.Key, err)
	}
	keys := []string{
		s.doneKey(runID, it.Step), s.resKey(runID, it.Step), s.stepKey(runID, it.Step),
		s.runKey(runID), s.budgetKey(runID), s.ckptKey(runID, it.Step, it.Key),
	}
	args := []any{it.Key, it.Index, b, it.State,
		int64(it.Usage.InputTokens), int64(it.Usage.OutputTokens), it.Usage.Total() - reserved, s.ttlMS()}
	var res []any
	if l != nil && l.stopRenewal() {
		pipe := s.rdb.Pipeline()
		rec := scriptRecord.EvalSha(ctx, pipe, keys, args...)
		rel := pipe.ZRem(ctx, l.key, l.id)
		_, _ = pipe.Exec(ctx) // each command carries its own error
		if rel.Err() == nil {
			l.released.Store(true)
		}
		res, err = rec.Slice()
		if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			res, err = scriptRecord.Run(ctx, s.rdb, keys, args...).Slice()
		}
	} else {
		res, err = scriptRecord.Run(ctx, s.rdb, keys, args...).Slice()
	}
	if err != nil {
		return Recorded{}, wrap("record item "+it.Step+"/"+it.Key, runID, err)
	}
	return Recorded{New: toInt(res[0]) == 1, Done: int(toInt(res[1])), Total: int(toInt(res[2]))}, nil
}

// Seed records items finished in an earlier, interrupted attempt of the run
// (the embedded runner's journal), so that they are never sent again: their
// tasks find them recorded and only count them. Call it before the run
// starts. Succeeded and failed items are seeded; skipped items were never
// sent (nor finished, when canceled) and are left out, so the resumed run
// decides about them again. Their usage counts towards the run's token
// budget.
func (s *Store) Seed(ctx context.Context, runID string, done []results.Item) error {
	for _, it := range done {
		if it.State == results.StateSkipped || it.State == results.StateCanceled {
			continue
		}
		if _, err := s.Record(ctx, runID, it, 0); err != nil {
			return err
		}
	}
	return nil
}

// Item returns an item's record by plan index, or nil when it has none.
func (s *Store) Item(ctx context.Context, runID, step string, index int) (*results.Item, error) {
	b, err := s.rdb.HGet(ctx, s.resKey(runID, step), strconv.Itoa(index)).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, wrap("read item", runID, err)
	}
	it, err := s.decodeRecord(runID, step, index, b)
	if err != nil {
		return nil, err
	}
	return &it, nil
}

// decodeRecord decodes the record of item #index of a step as Redis keeps
// it: the JSON, or its place in a record file (see RecordFiles).
func (s *Store) decodeRecord(runID, step string, index int, v string) (results.Item, error) {
	b, err := s.unstash(runID, fmt.Sprintf("item %s#%d", step, index), []byte(v))
	if err != nil {
		return results.Item{}, err
	}
	var it results.Item
	if err := json.Unmarshal(b, &it); err != nil {
		return results.Item{}, fmt.Errorf("runstore: run %s: decode item %s#%d: %w", runID, step, index, err)
	}
	return it, nil
}

// itemBatch is how many records Items reads per round trip.
const itemBatch = 256

// Items yields the records of a step's first total items in plan order,
// reading them in batches so memory stays flat in the number of items. A
// missing record yields an error naming the index.
func (s *Store) Items(ctx context.Context, runID, step string, total int) iter.Seq2[results.Item, error] {
	return func(yield func(results.Item, error) bool) {
		fields := make([]string, 0, itemBatch)
		for start := 0; start < total; start += itemBatch {
			fields = fields[:0]
			for i := start; i < min(start+itemBatch, total); i++ {
				fields = append(fields, strconv.Itoa(i))
			}
			vals, err := s.rdb.HMGet(ctx, s.resKey(runID, step), fields...).Result()
			if err != nil {
				yield(results.Item{}, wrap("read items of step "+step, runID, err))
				return
			}
			for j, v := range vals {
				str, ok := v.(string)
				if !ok {
					if !yield(results.Item{}, fmt.Errorf("runstore: run %s: step %s: item #%d has no record", runID, step, start+j)) {
						return
					}
					continue
				}
				it, err := s.decodeRecord(runID, step, start+j, str)
				if err != nil {
					if !yield(results.Item{}, err) {
						return
					}
					continue
				}
				if !yield(it, nil) {
					return
				}
			}
		}
	}
}

// StepOutput returns a finished step's outputs in plan order, as the
// templates of later steps see them (.Steps.<id>). Only succeeded items
// contribute; Output is set when the step has exactly one item.
func (s *Store) StepOutput(ctx context.Context, runID, step string, total int) (pipelines.StepOutput, error) {
	out := pipelines.StepOutput{Items: []pipelines.ItemOutput{}}
	for it, err := range s.Items(ctx, runID, step, total) {
		if err != nil {
			return out, err
		}
		if it.State != results.StateSucceeded {
			continue
		}
		out.Items = append(out.Items, pipelines.ItemOutput{Artifact: it.Artifact, Output: it.Output, Usage: it.Usage, JSON: it.JSON})
	}
	if total == 1 && len(out.Items) == 1 {
		out.Output = out.Items[0].Output
	}
	return out, nil
}

// RunThread returns the thread shared by a step's items (thread.per: run),
// creating it exactly once across the fleet: the first caller takes a lock
// and calls create; the others wait for its result. A creator that dies
// without publishing releases the lock when it expires (lockTTL).
func (s *Store) RunThread(ctx context.Context, runID, step string, lockTTL time.Duration, create func(context.Context) (string, error)) (string, error) {
	key, lock := s.runThreadKey(runID, step), s.runThreadLockKey(runID, step)
	backoff := 20 * time.Millisecond
	for {
		id, err := s.rdb.Get(ctx, key).Result()
		if err == nil && id != "" {
			return id, nil
		}
		if err != nil && !errors.Is(err, redis.Nil) {
			return "", wrap("read run thread", runID, err)
		}
		ok, err := s.rdb.SetNX(ctx, lock, "1", lockTTL).Result()
		if err != nil {
			return "", wrap("lock run thread", runID, err)
		}
		if ok {
			id, err := create(ctx)
			if err != nil {
				_ = s.rdb.Del(context.WithoutCancel(ctx), lock).Err()
				return "", err
			}
			if err := s.rdb.Set(ctx, key, id, s.retention).Err(); err != nil {
				return "", wrap("save run thread", runID, err)
			}
			return id, nil
		}
		if err := sleep(ctx, backoff); err != nil {
			return "", err
		}
		backoff = min(backoff*2, 500*time.Millisecond)
	}
}

// AddThread remembers a thread to delete when the run finishes.
func (s *Store) AddThread(ctx context.Context, runID, threadID string) error {
	k := s.threadsKey(runID)
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.SAdd(ctx, k, threadID)
		p.PExpire(ctx, k, s.retention)
		return nil
	})
	return wrap("remember thread", runID, err)
}

// Threads yields the threads remembered by AddThread (SSCAN, so memory stays
// flat); RemoveThread forgets one once deleted.
func (s *Store) Threads(ctx context.Context, runID string) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		it := s.rdb.SScan(ctx, s.threadsKey(runID), 0, "", 256).Iterator()
		for it.Next(ctx) {
			if !yield(it.Val(), nil) {
				return
			}
		}
		if err := it.Err(); err != nil {
			yield("", wrap("list threads", runID, err))
		}
	}
}

// RemoveThread forgets a thread remembered by AddThread.
func (s *Store) RemoveThread(ctx context.Context, runID, threadID string) error {
	return wrap("forget thread", runID, s.rdb.SRem(ctx, s.threadsKey(runID), threadID).Err())
}

// WithoutThread returns the checkpoint of an item whose thread no longer
// exists (deleted after an earlier attempt of the run): its turns and
// pending interactions go with the thread, their ids into Discarded and the
// usage of its finished turns into Wasted (they were billed), so that the
// item starts again in a new thread.
func (c Checkpoint) WithoutThread() Checkpoint {
	out := c
	out.ThreadID = ""
	out.Discarded = slices.Clone(c.Discarded)
	out.Pending, out.Turns = map[int]string{}, map[int]Turn{}
	for i, id := range c.Pending {
		if _, done := c.Turns[i]; !done && id != "" && id != Creating {
			out.Discarded = append(out.Discarded, id)
		}
	}
	for _, t := range c.Turns {
		if t.InteractionID != "" {
			out.Discarded = append(out.Discarded, t.InteractionID)
		}
		out.Wasted = out.Wasted.Add(t.Usage)
	}
	return out
}

// CheckpointThreadGone records ck.WithoutThread() for an item whose thread
// is gone, and returns it.
func (s *Store) CheckpointThreadGone(ctx context.Context, runID, step, key string, ck Checkpoint) (Checkpoint, error) {
	k := s.ckptKey(runID, step, key)
	out := ck.WithoutThread()
	fields := []string{"thread"}
	for i := range ck.Pending {
		fields = append(fields, "pending:"+strconv.Itoa(i))
	}
	for i := range ck.Turns {
		fields = append(fields, "turn:"+strconv.Itoa(i))
	}
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HDel(ctx, k, fields...)
		p.HSet(ctx, k, "discarded", strings.Join(out.Discarded, ","),
			"wasted_in", int64(out.Wasted.InputTokens), "wasted_out", int64(out.Wasted.OutputTokens))
		p.PExpire(ctx, k, s.retention)
		return nil
	})
	return out, wrap("checkpoint item "+step+"/"+key, runID, err)
}

// ForgetRunThread forgets a step's shared thread (thread.per: run) when it
// is threadID and no longer exists, so that RunThread creates another.
func (s *Store) ForgetRunThread(ctx context.Context, runID, step, threadID string) error {
	err := s.rdb.Eval(ctx, `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`,
		[]string{s.runThreadKey(runID, step)}, threadID).Err()
	return wrap("forget the shared thread of "+step, runID, err)
}
