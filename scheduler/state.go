package scheduler

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultPrefix is the Redis key prefix of the scheduler's state, shared
// with the run store.
const DefaultPrefix = "threadmill:"

// historyCap is how many scheduled runs per pipeline the history keeps.
const historyCap = 500

// state is the scheduler's Redis state, per pipeline:
//
//	<prefix>sched:cursor:<pipeline>   string  unix ms up to which fire times were handled (catch-up starts after it)
//	<prefix>sched:pending:<pipeline>  zset    fire times an asynq cron fired and no run was started for yet (score unix ms)
//	<prefix>sched:runs:<pipeline>     zset    run ids the scheduler started, by fire time (score unix ms), capped
//	<prefix>sched:lock:<pipeline>     string  short lease: one scheduler at a time does the pipeline's catch-up
//
// None of these expire: the cursor must survive any downtime for catch-up to
// work. A pipeline's keys are deleted when its file is removed.
type state struct {
	rdb    redis.UniversalClient
	prefix string
}

func (s *state) key(kind, pipeline string) string {
	return s.prefix + "sched:" + kind + ":" + pipeline
}

// setMaxScript sets KEYS[1] to ARGV[1] when the key is missing or holds a
// smaller number, so cursors only move forward whoever writes them.
var setMaxScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur and tonumber(cur) >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
return 1
`)

// releaseScript deletes a lock only when it still holds the caller's token.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// recordScript adds a run to a pipeline's history and trims it to ARGV[3]
// entries, dropping the oldest fire times.
var recordScript = redis.NewScript(`
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
local n = redis.call('ZCARD', KEYS[1])
if n > tonumber(ARGV[3]) then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, n - tonumber(ARGV[3]) - 1) end
return n
`)

// cursor returns the time up to which the pipeline's fire times were handled;
// ok is false when no scheduler has scheduled the pipeline yet.
func (s *state) cursor(ctx context.Context, pipeline string) (t time.Time, ok bool, err error) {
	v, err := s.rdb.Get(ctx, s.key("cursor", pipeline)).Result()
	if errors.Is(err, redis.Nil) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("scheduler: read cursor of %q: %w", pipeline, err)
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("scheduler: cursor of %q is %q, not unix milliseconds: %w", pipeline, v, err)
	}
	return time.UnixMilli(ms), true, nil
}

// advance moves the pipeline's cursor forward to t (never backwards).
func (s *state) advance(ctx context.Context, pipeline string, t time.Time) error {
	if err := setMaxScript.Run(ctx, s.rdb, []string{s.key("cursor", pipeline)}, t.UnixMilli()).Err(); err != nil {
		return fmt.Errorf("scheduler: advance cursor of %q: %w", pipeline, err)
	}
	return nil
}

// addPending records a fire time an asynq cron fired for the pipeline.
func (s *state) addPending(ctx context.Context, pipeline string, f time.Time) error {
	ms := f.UnixMilli()
	err := s.rdb.ZAdd(ctx, s.key("pending", pipeline), redis.Z{Score: float64(ms), Member: strconv.FormatInt(ms, 10)}).Err()
	if err != nil {
		return fmt.Errorf("scheduler: record fire time %s of %q: %w", f.Format(time.RFC3339), pipeline, err)
	}
	return nil
}

// pending returns the pipeline's fired fire times not yet started, oldest first.
func (s *state) pending(ctx context.Context, pipeline string) ([]time.Time, error) {
	vs, err := s.rdb.ZRange(ctx, s.key("pending", pipeline), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("scheduler: read fire times of %q: %w", pipeline, err)
	}
	out := make([]time.Time, 0, len(vs))
	for _, v := range vs {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("scheduler: fire time %q of %q is not unix milliseconds: %w", v, pipeline, err)
		}
		out = append(out, time.UnixMilli(ms))
	}
	return out, nil
}

// donePending removes a fire time once its run exists.
func (s *state) donePending(ctx context.Context, pipeline string, f time.Time) error {
	if err := s.rdb.ZRem(ctx, s.key("pending", pipeline), strconv.FormatInt(f.UnixMilli(), 10)).Err(); err != nil {
		return fmt.Errorf("scheduler: clear fire time %s of %q: %w", f.Format(time.RFC3339), pipeline, err)
	}
	return nil
}

// record adds a started run to the pipeline's history.
func (s *state) record(ctx context.Context, pipeline, runID string, f time.Time) error {
	if err := recordScript.Run(ctx, s.rdb, []string{s.key("runs", pipeline)}, f.UnixMilli(), runID, historyCap).Err(); err != nil {
		return fmt.Errorf("scheduler: record run %s: %w", runID, err)
	}
	return nil
}

// History returns up to n run ids the scheduler (or a backfill) started for
// the pipeline, newest fire time first.
func (s *state) history(ctx context.Context, pipeline string, n int) ([]string, error) {
	ids, err := s.rdb.ZRevRange(ctx, s.key("runs", pipeline), 0, int64(n)-1).Result()
	if err != nil {
		return nil, fmt.Errorf("scheduler: read run history of %q: %w", pipeline, err)
	}
	return ids, nil
}

// lock takes the pipeline's catch-up lease for ttl. It returns a release
// function, or ok=false when another scheduler holds the lease.
func (s *state) lock(ctx context.Context, pipeline string, ttl time.Duration) (release func(), ok bool, err error) {
	var b [12]byte
	_, _ = rand.Read(b[:])
	token := hex.EncodeToString(b[:])
	key := s.key("lock", pipeline)
	ok, err = s.rdb.SetNX(ctx, key, token, ttl).Result()
	if err != nil {
		return nil, false, fmt.Errorf("scheduler: lock %q for catch-up: %w", pipeline, err)
	}
	if !ok {
		return nil, false, nil
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = releaseScript.Run(ctx, s.rdb, []string{key}, token).Err()
	}, true, nil
}

// forget deletes the pipeline's cursor and pending fire times (its file was
// removed); the run history stays for `schedule ls` and audits.
func (s *state) forget(ctx context.Context, pipeline string) error {
	if err := s.rdb.Del(ctx, s.key("cursor", pipeline), s.key("pending", pipeline)).Err(); err != nil {
		return fmt.Errorf("scheduler: forget %q: %w", pipeline, err)
	}
	return nil
}
