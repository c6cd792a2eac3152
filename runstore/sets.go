package runstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
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

// sortRun is how many artifacts a SetsWriter sorts in memory before it
// writes them to Redis as one sorted run; runChunk is how many refs of a
// run one hash field holds, and so how many of each run the merge holds.
// A set of a million artifacts is 61 runs and a remainder, merged holding
// 512 refs of each run (about 31,000, 8 MB).
const (
	sortRun  = 16384
	runChunk = 512
)

// setsIndexField names the field of the sets hash that lists the sets and
// their sizes (-1 for a set that stands for all artifacts: a nil slice).
const setsIndexField = "sets"

func setsChunkField(name string, n int) string { return "set\x00" + name + "\x00" + strconv.Itoa(n) }

func runChunkField(name string, run, n int) string {
	return "run\x00" + name + "\x00" + strconv.Itoa(run) + "\x00" + strconv.Itoa(n)
}

// SaveSets stores sets held in memory (see SetsWriter) and returns the sets
// kept.
func (s *Store) SaveSets(ctx context.Context, runID string, sets map[string][]pipelines.ArtifactRef) (pipelines.Sets, error) {
	w := s.NewSetsWriter(runID)
	for _, name := range slices.Sorted(maps.Keys(sets)) {
		refs := sets[name]
		if refs == nil {
			if err := w.AllArtifacts(ctx, name); err != nil {
				w.Discard(ctx)
				return nil, err
			}
			continue
		}
		for _, r := range refs {
			if err := w.Add(ctx, name, r); err != nil {
				w.Discard(ctx)
				return nil, err
			}
		}
		if _, err := w.End(ctx, name); err != nil {
			w.Discard(ctx)
			return nil, err
		}
	}
	return w.Save(ctx)
}

// SetsWriter writes a run's resolved artifact sets as they are listed (it
// is the pipelines.SetWriter a worker resolves into), sorting each set
// outside the heap: sortRun artifacts at a time are sorted and written to
// Redis as a run, and End merges the runs into the set's chunks. What it
// holds does not grow with the set. With RecordFiles (the embedded
// default, whose Redis is in the process's memory) the runs and chunks go
// to the run's record file and Redis keeps their places. Everything goes to a temporary key
// that Save renames into place (RENAMENX): whoever saves first wins, so
// every step of a run sees the same sets even when run:start is retried.
// Sets are written one at a time. A SetsWriter is not safe for concurrent
// use.
type SetsWriter struct {
	s     *Store
	runID string
	tmp   string
	index map[string]int

	name string                  // the set being written, "" between sets
	buf  []pipelines.ArtifactRef // its artifacts not yet in a run
	runs []int                   // the sizes of its runs in Redis
}

// NewSetsWriter starts writing run runID's artifact sets.
func (s *Store) NewSetsWriter(runID string) *SetsWriter {
	var nonce [8]byte
	_, _ = rand.Read(nonce[:])
	return &SetsWriter{s: s, runID: runID, tmp: s.setsKey(runID) + ":tmp:" + hex.EncodeToString(nonce[:]), index: map[string]int{}}
}

// Add adds an artifact to set name; a set is written whole (Add, then End)
// before the next begins.
func (w *SetsWriter) Add(ctx context.Context, name string, a pipelines.ArtifactRef) error {
	if err := w.begin(name); err != nil {
		return err
	}
	w.buf = append(w.buf, a)
	if len(w.buf) < sortRun {
		return nil
	}
	slices.SortFunc(w.buf, pipelines.CompareRefs)
	run := len(w.runs)
	for n := 0; n*runChunk < len(w.buf); n++ {
		if err := w.write(ctx, runChunkField(name, run, n), w.buf[n*runChunk:min(len(w.buf), (n+1)*runChunk)]); err != nil {
			return err
		}
	}
	w.runs = append(w.runs, len(w.buf))
	w.buf = w.buf[:0]
	return nil
}

func (w *SetsWriter) begin(name string) error {
	switch {
	case w.name == name:
		return nil
	case w.name != "":
		return fmt.Errorf("runstore: run %s: artifact set %s begun before set %s ended", w.runID, name, w.name)
	case name == "":
		return fmt.Errorf("runstore: run %s: an artifact set has no name", w.runID)
	}
	if _, ok := w.index[name]; ok {
		return fmt.Errorf("runstore: run %s: artifact set %s written twice", w.runID, name)
	}
	w.name = name
	return nil
}

// End ends set name: its runs and the artifacts not yet in one are merged
// in plan order (pipelines.CompareRefs), an artifact whose id is that of
// the one before it is dropped, and the set is written in chunks. It
// returns the set's size.
func (w *SetsWriter) End(ctx context.Context, name string) (int, error) {
	if err := w.begin(name); err != nil {
		return 0, err
	}
	slices.SortFunc(w.buf, pipelines.CompareRefs)
	sources := []*runReader{{refs: w.buf}}
	for run, size := range w.runs {
		sources = append(sources, &runReader{w: w, name: name, run: run, left: size})
	}
	var (
		out    = make([]pipelines.ArtifactRef, 0, setsChunk)
		chunks int
		size   int
		last   string
	)
	flush := func() error {
		err := w.write(ctx, setsChunkField(name, chunks), out)
		chunks++
		out = out[:0]
		return err
	}
	for {
		var next *runReader
		for _, r := range sources {
			ok, err := r.fill(ctx)
			if err != nil {
				return 0, err
			}
			if ok && (next == nil || pipelines.CompareRefs(r.refs[0], next.refs[0]) < 0) {
				next = r
			}
		}
		if next == nil {
			break
		}
		a := next.refs[0]
		next.refs = next.refs[1:]
		if size > 0 && a.ID == last {
			continue
		}
		out = append(out, a)
		size++
		last = a.ID
		if len(out) == setsChunk {
			if err := flush(); err != nil {
				return 0, err
			}
		}
	}
	if len(out) > 0 {
		if err := flush(); err != nil {
			return 0, err
		}
	}
	if len(w.runs) > 0 {
		var fields []string
		for run, size := range w.runs {
			for n := 0; n*runChunk < size; n++ {
				fields = append(fields, runChunkField(name, run, n))
			}
		}
		if err := w.s.rdb.HDel(ctx, w.tmp, fields...).Err(); err != nil {
			return 0, wrap("save artifact sets", w.runID, err)
		}
	}
	w.index[name] = size
	w.name, w.buf, w.runs = "", w.buf[:0], nil
	return size, nil
}

// AllArtifacts records set name as standing for all artifacts.
func (w *SetsWriter) AllArtifacts(_ context.Context, name string) error {
	if err := w.begin(name); err != nil {
		return err
	}
	w.index[name] = -1
	w.name = ""
	return nil
}

// Save puts the sets written in place, unless sets were saved for the run
// before (by another worker, or an earlier try): then it throws these away
// and returns those. It fails if a set was begun and not ended.
func (w *SetsWriter) Save(ctx context.Context) (pipelines.Sets, error) {
	if w.name != "" {
		w.Discard(ctx)
		return nil, fmt.Errorf("runstore: run %s: artifact set %s was not ended", w.runID, w.name)
	}
	if err := w.write(ctx, setsIndexField, w.index); err != nil {
		w.Discard(ctx)
		return nil, err
	}
	ok, err := w.s.rdb.RenameNX(ctx, w.tmp, w.s.setsKey(w.runID)).Result()
	if err != nil {
		w.Discard(ctx)
		return nil, wrap("save artifact sets", w.runID, err)
	}
	if !ok {
		w.Discard(ctx)
	}
	return w.s.Sets(ctx, w.runID)
}

// Discard deletes what was written; it is for a resolve that failed.
func (w *SetsWriter) Discard(ctx context.Context) {
	_ = w.s.rdb.Del(context.WithoutCancel(ctx), w.tmp).Err()
}

// write stores v as JSON in field of the temporary key, which expires
// with the run's retention should the writer never save.
func (w *SetsWriter) write(ctx context.Context, field string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("runstore: run %s: encode artifact sets: %w", w.runID, err)
	}
	if field != setsIndexField {
		if b, err = w.s.stash(w.runID, b); err != nil {
			return fmt.Errorf("runstore: run %s: save artifact sets: %w", w.runID, err)
		}
	}
	_, err = w.s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, w.tmp, field, b)
		p.PExpire(ctx, w.tmp, w.s.retention)
		return nil
	})
	return wrap("save artifact sets", w.runID, err)
}

// runReader reads one sorted run for End's merge, runChunk refs at a time;
// with no writer it is the run held in memory.
type runReader struct {
	w    *SetsWriter
	name string
	run  int
	next int // the next chunk to read
	left int // refs of the run not yet read
	refs []pipelines.ArtifactRef
}

// fill reads the run's next chunk when the one held is used up, and
// reports whether the run has an artifact left.
func (r *runReader) fill(ctx context.Context) (bool, error) {
	if len(r.refs) > 0 || r.w == nil || r.left == 0 {
		return len(r.refs) > 0, nil
	}
	what := fmt.Sprintf("sorted run %d of artifact set %s (part %d)", r.run, r.name, r.next)
	b, err := r.w.s.rdb.HGet(ctx, r.w.tmp, runChunkField(r.name, r.run, r.next)).Bytes()
	if err != nil {
		return false, wrap("read "+what, r.w.runID, err)
	}
	if b, err = r.w.s.unstash(r.w.runID, what, b); err != nil {
		return false, err
	}
	r.refs = nil // decoding into used elements would keep fields absent from the JSON
	if err := json.Unmarshal(b, &r.refs); err != nil {
		return false, fmt.Errorf("runstore: run %s: decode %s: %w", r.w.runID, what, err)
	}
	if len(r.refs) == 0 {
		return false, fmt.Errorf("runstore: run %s: %s is empty, %d artifacts of the run unread", r.w.runID, what, r.left)
	}
	r.next++
	r.left -= len(r.refs)
	return true, nil
}

// Sets returns the artifact sets saved by SaveSets or a SetsWriter, nil
// when none are. Each set is read from Redis a chunk at a time as it is
// ranged over (see pipelines.RefSet).
func (s *Store) Sets(ctx context.Context, runID string) (pipelines.Sets, error) {
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
	sets := make(pipelines.Sets, len(index))
	for name, size := range index {
		if size < 0 {
			sets[name] = nil
			continue
		}
		sets[name] = &storedSet{s: s, runID: runID, name: name, size: size}
	}
	return sets, nil
}

// storedSet is a set in the sets hash, read a chunk at a time.
type storedSet struct {
	s     *Store
	runID string
	name  string
	size  int
}

// Len is the set's size.
func (set *storedSet) Len() int { return set.size }

// From yields the set's artifacts from index i on, reading one chunk at a
// time; errors are *pipelines.SetReadError.
func (set *storedSet) From(ctx context.Context, i int) iter.Seq2[pipelines.ArtifactRef, error] {
	return func(yield func(pipelines.ArtifactRef, error) bool) {
		fail := func(err error) { yield(pipelines.ArtifactRef{}, &pipelines.SetReadError{Set: set.name, Err: err}) }
		i = min(max(i, 0), set.size)
		for n := i / setsChunk; n*setsChunk < set.size; n++ {
			what := fmt.Sprintf("artifact set %s (part %d)", set.name, n)
			b, err := set.s.rdb.HGet(ctx, set.s.setsKey(set.runID), setsChunkField(set.name, n)).Bytes()
			if err == nil {
				b, err = set.s.unstash(set.runID, what, b)
			} else {
				err = wrap("read "+what, set.runID, err)
			}
			if err != nil {
				fail(err)
				return
			}
			var chunk []pipelines.ArtifactRef
			if err := json.Unmarshal(b, &chunk); err != nil {
				fail(fmt.Errorf("runstore: run %s: decode artifact set %s (part %d): %w", set.runID, set.name, n, err))
				return
			}
			if want := min(setsChunk, set.size-n*setsChunk); len(chunk) != want {
				fail(fmt.Errorf("runstore: run %s: artifact set %s (part %d) has %d artifacts, its index says %d", set.runID, set.name, n, len(chunk), want))
				return
			}
			for _, a := range chunk[max(i-n*setsChunk, 0):] {
				if !yield(a, nil) {
					return
				}
			}
		}
	}
}

// setsOneValue reads sets saved as one JSON value, as versions before the
// chunked hash did, so that a run started by an older worker goes on.
func (s *Store) setsOneValue(ctx context.Context, runID string) (pipelines.Sets, error) {
	b, err := s.rdb.Get(ctx, s.setsKey(runID)).Bytes()
	if err != nil {
		return nil, wrap("read artifact sets", runID, err)
	}
	var sets map[string][]pipelines.ArtifactRef
	if err := json.Unmarshal(b, &sets); err != nil {
		return nil, fmt.Errorf("runstore: run %s: decode artifact sets: %w", runID, err)
	}
	return pipelines.SetsOf(sets), nil
}
