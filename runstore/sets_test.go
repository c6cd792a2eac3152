package runstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/threadmill/threadmill/pipelines"
)

// Sets come back as saved (a nil set stays nil: it stands for all
// artifacts), however many chunks they take; concurrent saves keep one.
func TestSetsRoundTripInChunks(t *testing.T) {
	backends(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		big := make([]pipelines.ArtifactRef, 2*setsChunk+7)
		for i := range big {
			big[i] = pipelines.ArtifactRef{ID: fmt.Sprintf("artifact_%06d", i), Name: fmt.Sprintf("doc-%06d.md", i),
				Type: "Document", Folder: "Inbox", UpdatedAt: time.Date(2026, 6, 1, 0, 0, i%60, 0, time.UTC)}
		}
		want := map[string][]pipelines.ArtifactRef{"docs": big, "none": {}, "all": nil, "one": big[:1]}
		if got, err := s.Sets(ctx, "r1"); err != nil || got != nil {
			t.Fatalf("sets before any save: %v, %v", got, err)
		}
		other := map[string][]pipelines.ArtifactRef{"docs": big[:3]}
		var wg sync.WaitGroup
		results := make([]pipelines.Sets, 6)
		for i := range results {
			wg.Go(func() {
				save := want
				if i%2 == 1 {
					save = other
				}
				got, err := s.SaveSets(ctx, "r1", save)
				if err != nil {
					t.Error(err)
				}
				results[i] = got
			})
		}
		wg.Wait()
		stored, err := s.Sets(ctx, "r1")
		if err != nil {
			t.Fatal(err)
		}
		first := readSets(t, stored)
		if !sameSets(first, want) && !sameSets(first, other) {
			t.Fatalf("saved sets are neither value")
		}
		for i, got := range results {
			if !sameSets(readSets(t, got), first) {
				t.Errorf("save %d returned sets other than those kept", i)
			}
		}
		if first["all"] != nil && sameSets(first, want) {
			t.Error("a nil set came back not nil")
		}
		keys, err := s.rdb.Keys(ctx, s.setsKey("r1")+":tmp:*").Result()
		if err != nil || len(keys) != 0 {
			t.Errorf("temporary keys left: %v, %v", keys, err)
		}
	})
}

// A run whose sets an older version saved as one JSON value is read too.
func TestSetsSavedAsOneValueAreRead(t *testing.T) {
	backends(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		old := map[string][]pipelines.ArtifactRef{"docs": {{ID: "artifact_1", Name: "a.md"}}, "all": nil}
		b, _ := json.Marshal(old)
		if err := s.rdb.Set(ctx, s.setsKey("r0"), b, time.Hour).Err(); err != nil {
			t.Fatal(err)
		}
		got, err := s.Sets(ctx, "r0")
		if err != nil || !sameSets(readSets(t, got), old) {
			t.Errorf("sets %v, %v", got, err)
		}
	})
}

// readSets reads stored sets whole; a nil set stays nil.
func readSets(t *testing.T, sets pipelines.Sets) map[string][]pipelines.ArtifactRef {
	t.Helper()
	if sets == nil {
		return nil
	}
	out := map[string][]pipelines.ArtifactRef{}
	for name, set := range sets {
		if set == nil {
			out[name] = nil
			continue
		}
		refs := []pipelines.ArtifactRef{}
		for a, err := range set.From(context.Background(), 0) {
			if err != nil {
				t.Fatalf("read set %s: %v", name, err)
			}
			refs = append(refs, a)
		}
		if len(refs) != set.Len() {
			t.Fatalf("set %s: read %d artifacts, Len says %d", name, len(refs), set.Len())
		}
		out[name] = refs
	}
	return out
}

func sameSets(a, b map[string][]pipelines.ArtifactRef) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb) && reflect.DeepEqual(keysOf(a), keysOf(b))
}

func keysOf(m map[string][]pipelines.ArtifactRef) map[string]bool {
	out := map[string]bool{}
	for k, v := range m {
		out[k] = v == nil
	}
	return out
}

// A set larger than one sorted run is sorted outside the heap: written in
// runs, merged in plan order with repeated ids dropped, exactly as
// pipelines.SortRefs sorts it in memory; the runs are gone once it ends,
// and the set reads the same from any index.
func TestSetsWriterSortsInRunsAndMerges(t *testing.T) {
	backends(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		rng := rand.New(rand.NewPCG(7, 11))
		var listed []pipelines.ArtifactRef
		for i := range 2*sortRun + 777 {
			a := pipelines.ArtifactRef{ID: fmt.Sprintf("artifact_%06d", (i*7919)%100003), Name: fmt.Sprintf("doc-%d.md", rng.IntN(500)),
				Type: "Document", Size: int64(i)}
			if i%3 > 0 {
				a.Folder = fmt.Sprintf("F%d", rng.IntN(4)) // some at the top level, with no folder
			}
			if i%5 == 0 {
				a.UpdatedAt = time.Date(2026, 6, 1, 0, 0, i%60, 0, time.UTC)
			}
			listed = append(listed, a)
			if i%97 == 0 { // the same artifact listed twice
				listed = append(listed, a)
			}
		}
		w := s.NewSetsWriter("r2")
		for _, a := range listed {
			if err := w.Add(ctx, "docs", a); err != nil {
				t.Fatal(err)
			}
		}
		if len(w.runs) != 2 {
			t.Fatalf("%d sorted runs written, want 2", len(w.runs))
		}
		n, err := w.End(ctx, "docs")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.End(ctx, "empty"); err != nil {
			t.Fatal(err)
		}
		if err := w.AllArtifacts(ctx, "all"); err != nil {
			t.Fatal(err)
		}
		runFields := 0
		for f := range s.rdb.HGetAll(ctx, w.tmp).Val() {
			if strings.HasPrefix(f, "run\x00") {
				runFields++
			}
		}
		if runFields != 0 {
			t.Errorf("%d fields of sorted runs left after End", runFields)
		}
		sets, err := w.Save(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := pipelines.SortRefs(slices.Clone(listed))
		if n != len(want) {
			t.Errorf("End kept %d artifacts, want %d", n, len(want))
		}
		got := readSets(t, sets)
		if !sameSets(got, map[string][]pipelines.ArtifactRef{"docs": want, "empty": {}, "all": nil}) {
			t.Fatalf("stored set differs from the set sorted in memory (%d against %d artifacts)", len(got["docs"]), len(want))
		}
		for _, from := range []int{0, 1, setsChunk - 1, setsChunk, 2*setsChunk + 5, len(want) - 1, len(want), len(want) + 3} {
			var tail []pipelines.ArtifactRef
			for a, err := range sets["docs"].From(ctx, from) {
				if err != nil {
					t.Fatal(err)
				}
				tail = append(tail, a)
			}
			if wantTail := want[min(from, len(want)):]; len(tail) != len(wantTail) || (len(tail) > 0 && tail[0] != wantTail[0]) {
				t.Errorf("From(%d): %d artifacts, want %d", from, len(tail), len(wantTail))
			}
		}
	})
}

// A writer refuses sets written out of turn, and a save with a set not
// ended; neither leaves anything behind.
func TestSetsWriterRefusesSetsOutOfTurn(t *testing.T) {
	backends(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		w := s.NewSetsWriter("r3")
		a := pipelines.ArtifactRef{ID: "artifact_1", Name: "a.md"}
		if err := w.Add(ctx, "one", a); err != nil {
			t.Fatal(err)
		}
		if err := w.Add(ctx, "two", a); err == nil || !strings.Contains(err.Error(), "set two begun before set one ended") {
			t.Errorf("interleaved sets: %v", err)
		}
		if _, err := w.End(ctx, "one"); err != nil {
			t.Fatal(err)
		}
		if err := w.Add(ctx, "one", a); err == nil || !strings.Contains(err.Error(), "written twice") {
			t.Errorf("a set written twice: %v", err)
		}
		w.name = "" // forget the refused set
		if err := w.Add(ctx, "two", a); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Save(ctx); err == nil || !strings.Contains(err.Error(), "set two was not ended") {
			t.Errorf("save with a set open: %v", err)
		}
		if n := s.rdb.Exists(ctx, w.tmp, s.setsKey("r3")).Val(); n != 0 {
			t.Errorf("%d keys left by a refused save", n)
		}
	})
}

// A stored set that cannot be read says so as a SetReadError naming the
// set, which a worker tries again rather than failing the run.
func TestStoredSetReadErrorNamesTheSet(t *testing.T) {
	backends(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		sets, err := s.SaveSets(ctx, "r4", map[string][]pipelines.ArtifactRef{"docs": {{ID: "artifact_1", Name: "a.md"}}})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.rdb.HDel(ctx, s.setsKey("r4"), setsChunkField("docs", 0)).Err(); err != nil {
			t.Fatal(err)
		}
		for _, err := range sets["docs"].From(ctx, 0) {
			var re *pipelines.SetReadError
			if !errors.As(err, &re) || re.Set != "docs" || !strings.Contains(err.Error(), "read artifact set docs") {
				t.Errorf("error %v, want a SetReadError for docs", err)
			}
		}
	})
}
