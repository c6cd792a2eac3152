// Package runstore keeps the state of runs in flight in Redis: the run
// record (with the pipeline it runs), per-step item counts and done sets, item
// records, interaction checkpoints, usage counters, the token budget, the
// fleet-wide pause and the limiter keys shared by every worker.
//
// Redis is the source of truth for a run in flight; the result files are
// written from it when the run finishes, so several worker machines can share
// one run. Every key carries the store's prefix and expires after the
// retention period. All keys of one run share the hash tag {<run id>}, so the
// Lua scripts that touch several of them also work on Redis Cluster.
//
// Effects are exactly-once although tasks are delivered at least once: an
// item record is written only by the first finisher (SADD on the step's done
// set decides, in the same script), and step completion compares with the
// step's planned total a counter that the same script increments only for a
// new member of that set, so a retry or a duplicate delivery cannot bump it
// twice.
package runstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultPrefix is the key prefix when New is given an empty one.
const DefaultPrefix = "threadmill:"

// DefaultRetention is how long run keys live after their last write.
const DefaultRetention = 7 * 24 * time.Hour

// ErrNotFound is returned for a run id the store does not know.
var ErrNotFound = errors.New("runstore: run not found")

// Store is the run state in one Redis. It is safe for concurrent use.
type Store struct {
	rdb       redis.UniversalClient
	prefix    string
	retention time.Duration
	records   *RecordFiles // nil: item records are kept in Redis
}

// Option configures a Store.
type Option func(*Store)

// WithRetention sets how long run keys live after their last write
// (default DefaultRetention). Values below one minute are raised to a minute.
func WithRetention(d time.Duration) Option {
	return func(s *Store) { s.retention = max(d, time.Minute) }
}

// New returns a store on rdb whose keys start with prefix (DefaultPrefix when
// empty).
func New(rdb redis.UniversalClient, prefix string, opts ...Option) *Store {
	s := &Store{rdb: rdb, prefix: cmp.Or(prefix, DefaultPrefix), retention: DefaultRetention}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Client returns the Redis client of the store.
func (s *Store) Client() redis.UniversalClient { return s.rdb }

// Prefix returns the key prefix of the store.
func (s *Store) Prefix() string { return s.prefix }

// Retention returns the time-to-live of run keys.
func (s *Store) Retention() time.Duration { return s.retention }

func (s *Store) ttlMS() string { return strconv.FormatInt(s.retention.Milliseconds(), 10) }

// Key layout. {id} is a Redis Cluster hash tag: every key of a run lives in
// one slot.
func (s *Store) runsKey() string             { return s.prefix + "runs" }
func (s *Store) runKey(id string) string     { return s.prefix + "run:{" + id + "}" }
func (s *Store) setsKey(id string) string    { return s.runKey(id) + ":sets" }
func (s *Store) budgetKey(id string) string  { return s.runKey(id) + ":budget" }
func (s *Store) threadsKey(id string) string { return s.runKey(id) + ":threads" }
func (s *Store) stepKey(id, step string) string {
	return s.runKey(id) + ":step:" + step
}
func (s *Store) doneKey(id, step string) string { return s.runKey(id) + ":done:" + step }
func (s *Store) resKey(id, step string) string  { return s.runKey(id) + ":res:" + step }
func (s *Store) ckptKey(id, step, key string) string {
	return s.runKey(id) + ":ck:" + step + ":" + key
}
func (s *Store) runThreadKey(id, step string) string { return s.runKey(id) + ":thread:" + step }
func (s *Store) runThreadLockKey(id, step string) string {
	return s.runKey(id) + ":threadlock:" + step
}

// endedChannel is the pub/sub channel a run's terminal status is published
// on, for Wait.
func (s *Store) endedChannel(id string) string  { return s.runKey(id) + ":ended" }
func (s *Store) pauseKey() string               { return s.prefix + "pause" }
func (s *Store) reqLimitKey(pipe string) string { return s.prefix + "limit:{" + pipe + "}:requests" }
func (s *Store) tokLimitKey(pipe string) string { return s.prefix + "limit:{" + pipe + "}:tokens" }
func (s *Store) inflightKey(pipe string) string { return s.prefix + "limit:{" + pipe + "}:inflight" }

// adaptKey is the adaptive rate of the API server at baseURL (see
// Adaptive); its ":sent" sibling counts the fleet's requests per second.
func (s *Store) adaptKey(baseURL string) string { return s.prefix + "adapt:{" + baseURL + "}" }

// wrap names the operation and the run in a Redis error.
func wrap(op, runID string, err error) error {
	if err == nil {
		return nil
	}
	if runID == "" {
		return fmt.Errorf("runstore: %s: %w", op, err)
	}
	return fmt.Errorf("runstore: %s (run %s): %w", op, runID, err)
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

func atoi64(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

func parseTime(s string) time.Time {
	if s == "" {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}
	}
	return t
}

func fmtTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// sleep waits for d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}
