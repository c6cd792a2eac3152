package reuse

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisBatch bounds the keys of one MGET or one pipeline of SETs.
const redisBatch = 500

// Redis keeps outputs in Redis, one string key per output,
// <prefix>reuse:{<pipeline>}:<reuse key>, expiring after the retention. The
// hash tag keeps a pipeline's keys in one Redis Cluster slot, so MGET works.
type Redis struct {
	rdb       redis.UniversalClient
	prefix    string
	retention time.Duration
}

// NewRedis returns a store on rdb whose keys start with prefix (the run
// store's, "threadmill:" when empty); retention 0 means DefaultRetention.
func NewRedis(rdb redis.UniversalClient, prefix string, retention time.Duration) *Redis {
	return &Redis{rdb: rdb, prefix: cmp.Or(prefix, "threadmill:"), retention: cmp.Or(retention, DefaultRetention)}
}

var _ Store = (*Redis)(nil)

func (r *Redis) key(pipeline, k string) string { return r.prefix + "reuse:{" + pipeline + "}:" + k }

// Lookup implements Store with MGET, redisBatch keys at a time.
func (r *Redis) Lookup(ctx context.Context, pipeline string, keys []string) (map[string]Entry, error) {
	out := map[string]Entry{}
	for start := 0; start < len(keys); start += redisBatch {
		batch := keys[start:min(start+redisBatch, len(keys))]
		rkeys := make([]string, len(batch))
		for i, k := range batch {
			rkeys[i] = r.key(pipeline, k)
		}
		vals, err := r.rdb.MGet(ctx, rkeys...).Result()
		if err != nil {
			return nil, fmt.Errorf("reuse: look up outputs of %s: %w", pipeline, err)
		}
		for i, v := range vals {
			s, ok := v.(string)
			if !ok {
				continue
			}
			var e Entry
			if json.Unmarshal([]byte(s), &e) != nil || e.Key != batch[i] {
				continue // unreadable: a miss, the item is sent
			}
			out[e.Key] = e
		}
	}
	return out, nil
}

// Save implements Store with pipelined SETs with an expiry.
func (r *Redis) Save(ctx context.Context, pipeline string, entries []Entry) error {
	for start := 0; start < len(entries); start += redisBatch {
		pipe := r.rdb.Pipeline()
		for _, e := range entries[start:min(start+redisBatch, len(entries))] {
			b, err := json.Marshal(e)
			if err != nil {
				return fmt.Errorf("reuse: encode output %s: %w", e.Key, err)
			}
			pipe.Set(ctx, r.key(pipeline, e.Key), b, r.retention)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("reuse: save outputs of %s: %w", pipeline, err)
		}
	}
	return nil
}
