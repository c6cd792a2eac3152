package runstore

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
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
		results := make([]map[string][]pipelines.ArtifactRef, 6)
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
		first, err := s.Sets(ctx, "r1")
		if err != nil {
			t.Fatal(err)
		}
		if !sameSets(first, want) && !sameSets(first, other) {
			t.Fatalf("saved sets are neither value")
		}
		for i, got := range results {
			if !sameSets(got, first) {
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
		if err != nil || !sameSets(got, old) {
			t.Errorf("sets %v, %v", got, err)
		}
	})
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
