package pipelines

import (
	"cmp"
	"context"
	"fmt"
	"iter"
	"slices"
)

// RefSet is a resolved artifact set: its artifacts in plan order (folder
// path, name, then id; see CompareRefs), read from any index. Refs holds
// one in memory; the run store reads one from Redis a chunk at a time, so
// that a step over a million artifacts never holds them all.
type RefSet interface {
	// Len is the number of artifacts in the set.
	Len() int
	// From yields the set's artifacts from index i on, in order. It stops
	// at the first error, which it yields as a *SetReadError.
	From(ctx context.Context, i int) iter.Seq2[ArtifactRef, error]
}

// Sets are a run's resolved artifact sets by name. A bare `all: true` set
// that no for_each walks maps to nil (see Resolve).
type Sets map[string]RefSet

// SetsOf returns sets held in memory as Sets; a nil slice maps to nil.
func SetsOf(m map[string][]ArtifactRef) Sets {
	if m == nil {
		return nil
	}
	out := make(Sets, len(m))
	for name, refs := range m {
		if refs == nil {
			out[name] = nil
			continue
		}
		out[name] = Refs(refs)
	}
	return out
}

// Refs is a RefSet held in memory, already in plan order.
type Refs []ArtifactRef

// Len is the number of artifacts.
func (r Refs) Len() int { return len(r) }

// From yields the artifacts from index i on; it never fails.
func (r Refs) From(_ context.Context, i int) iter.Seq2[ArtifactRef, error] {
	return func(yield func(ArtifactRef, error) bool) {
		for _, a := range r[min(max(i, 0), len(r)):] {
			if !yield(a, nil) {
				return
			}
		}
	}
}

// SetReadError is an error reading a stored artifact set: the store, not
// the pipeline, failed, so the work that read it can be tried again.
type SetReadError struct {
	// Set is the set's name.
	Set string
	// Err is what failed.
	Err error
}

func (e *SetReadError) Error() string { return fmt.Sprintf("read artifact set %s: %v", e.Set, e.Err) }

// Unwrap returns the underlying error.
func (e *SetReadError) Unwrap() error { return e.Err }

// SetWriter receives the artifacts Resolve finds, one set at a time: Add
// each of the set's artifacts, in any order, then End the set. The writer
// puts each set in plan order (CompareRefs) and drops an artifact whose id
// is that of the artifact before it, as SortRefs and a compaction by id do.
type SetWriter interface {
	// Add adds an artifact to set name.
	Add(ctx context.Context, name string, a ArtifactRef) error
	// End ends set name (a set without artifacts is empty) and returns how
	// many artifacts it kept.
	End(ctx context.Context, name string) (int, error)
	// AllArtifacts records set name as standing for all artifacts, not
	// listed (it maps to nil in Sets).
	AllArtifacts(ctx context.Context, name string) error
}

// CompareRefs orders artifacts by folder path, name, then id: the plan
// order of a set.
func CompareRefs(a, b ArtifactRef) int {
	return cmp.Or(cmp.Compare(a.Folder, b.Folder), cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID))
}

// SortRefs puts refs in plan order (CompareRefs) and drops each artifact
// whose id is that of the one before it.
func SortRefs(refs []ArtifactRef) []ArtifactRef {
	slices.SortFunc(refs, CompareRefs)
	return slices.CompactFunc(refs, func(a, b ArtifactRef) bool { return a.ID == b.ID })
}

// MemorySets is a SetWriter that keeps the sets in memory: for a plan
// shown to a person, or a test. Its zero value is ready to use.
type MemorySets struct {
	sets map[string][]ArtifactRef
}

// Add adds an artifact to set name.
func (m *MemorySets) Add(_ context.Context, name string, a ArtifactRef) error {
	if m.sets == nil {
		m.sets = map[string][]ArtifactRef{}
	}
	m.sets[name] = append(m.sets[name], a)
	return nil
}

// End sorts set name and returns its size.
func (m *MemorySets) End(_ context.Context, name string) (int, error) {
	if m.sets == nil {
		m.sets = map[string][]ArtifactRef{}
	}
	m.sets[name] = SortRefs(m.sets[name])
	if m.sets[name] == nil {
		m.sets[name] = []ArtifactRef{}
	}
	return len(m.sets[name]), nil
}

// AllArtifacts records set name as standing for all artifacts (nil).
func (m *MemorySets) AllArtifacts(_ context.Context, name string) error {
	if m.sets == nil {
		m.sets = map[string][]ArtifactRef{}
	}
	m.sets[name] = nil
	return nil
}

// Sets returns the sets written, by name (an empty map when none were).
func (m *MemorySets) Sets() map[string][]ArtifactRef {
	if m.sets == nil {
		return map[string][]ArtifactRef{}
	}
	return m.sets
}
