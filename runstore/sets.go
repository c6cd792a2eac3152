package runstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/threadmill/threadmill/pipelines"
)

// setsChunk is how many artifact refs one field of the sets hash holds: a
// set of 100,000 artifacts is written and read 2,048 refs at a time, never
// as one 25 MB JSON value (which json.Marshal and the Redis client each
// hold, and which a worker would hold at every step's start).
const setsChunk = 2048

// setsIndexField names the field of the sets hash that lists the sets and
// their sizes (-1 for a set that stands for all artifacts: a nil slice).
const setsIndexField = "sets"

func setsChunkField(name string, n int) string { return "set\x00" + name + "\x00" + strconv.Itoa(n) }

// SaveSets stores the run's resolved artifact sets once; a second call keeps
// the first value, which it returns, so every step of a run sees the same
// sets even when run:start is retried. The sets are written in chunks to a
// temporary key renamed into place (RENAMENX): whoever renames first wins.
func (s *Store) SaveSets(ctx context.Context, runID string, sets map[string][]pipelines.ArtifactRef) (map[string][]pipelines.ArtifactRef, error) {
	key := s.setsKey(runID)
	var nonce [8]byte
	_, _ = rand.Read(nonce[:])
	tmp := key + ":tmp:" + hex.EncodeToString(nonce[:])
	index := make(map[string]int, len(sets))
	for name, refs := range sets {
		index[name] = len(refs)
		if refs == nil {
			index[name] = -1
		}
	}
	write := func(field string, v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("runstore: run %s: encode artifact sets: %w", runID, err)
		}
		_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.HSet(ctx, tmp, field, b)
			p.PExpire(ctx, tmp, s.retention)
			return nil
		})
		return wrap("save artifact sets", runID, err)
	}
	err := write(setsIndexField, index)
	for _, name := range slices.Sorted(maps.Keys(sets)) {
		refs := sets[name]
		for n := 0; err == nil && n*setsChunk < len(refs); n++ {
			err = write(setsChunkField(name, n), refs[n*setsChunk:min(len(refs), (n+1)*setsChunk)])
		}
	}
	if err != nil {
		_ = s.rdb.Del(context.WithoutCancel(ctx), tmp).Err()
		return nil, err
	}
	ok, err := s.rdb.RenameNX(ctx, tmp, key).Result()
	if err != nil {
		return nil, wrap("save artifact sets", runID, err)
	}
	if ok {
		return sets, nil
	}
	_ = s.rdb.Del(ctx, tmp).Err()
	return s.Sets(ctx, runID)
}

// Sets returns the artifact sets saved by SaveSets, nil when none are.
func (s *Store) Sets(ctx context.Context, runID string) (map[string][]pipelines.ArtifactRef, error) {
	key := s.setsKey(runID)
	b, err := s.rdb.HGet(ctx, key, setsIndexField).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil && redis.HasErrorPrefix(err, "WRONGTYPE") {
		return s.setsOneValue(ctx, runID)
	}
	if err != nil {
		return nil, wrap("read artifact sets", runID, err)
	}
	var index map[string]int
	if err := json.Unmarshal(b, &index); err != nil {
		return nil, fmt.Errorf("runstore: run %s: decode artifact sets: %w", runID, err)
	}
	sets := make(map[string][]pipelines.ArtifactRef, len(index))
	for name, size := range index {
		if size < 0 {
			sets[name] = nil
			continue
		}
		refs := make([]pipelines.ArtifactRef, 0, size)
		for n := 0; n*setsChunk < size; n++ {
			b, err := s.rdb.HGet(ctx, key, setsChunkField(name, n)).Bytes()
			if err != nil {
				return nil, wrap(fmt.Sprintf("read artifact set %s (part %d)", name, n), runID, err)
			}
			var chunk []pipelines.ArtifactRef
			if err := json.Unmarshal(b, &chunk); err != nil {
				return nil, fmt.Errorf("runstore: run %s: decode artifact set %s (part %d): %w", runID, name, n, err)
			}
			refs = append(refs, chunk...)
		}
		if len(refs) != size {
			return nil, fmt.Errorf("runstore: run %s: artifact set %s has %d artifacts, its index says %d", runID, name, len(refs), size)
		}
		sets[name] = refs
	}
	return sets, nil
}

// setsOneValue reads sets saved as one JSON value, as versions before the
// chunked hash did, so that a run started by an older worker goes on.
func (s *Store) setsOneValue(ctx context.Context, runID string) (map[string][]pipelines.ArtifactRef, error) {
	b, err := s.rdb.Get(ctx, s.setsKey(runID)).Bytes()
	if err != nil {
		return nil, wrap("read artifact sets", runID, err)
	}
	var sets map[string][]pipelines.ArtifactRef
	if err := json.Unmarshal(b, &sets); err != nil {
		return nil, fmt.Errorf("runstore: run %s: decode artifact sets: %w", runID, err)
	}
	return sets, nil
}
