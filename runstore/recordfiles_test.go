package runstore

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/results"
)

// With record files, Redis holds a record's place, not the record, and
// everything that reads records gets them back whole.
func TestRecordFilesKeepRecordsOutOfRedis(t *testing.T) {
	backends(t, func(t *testing.T, plain *Store) {
		ctx := context.Background()
		rf := NewRecordFiles(t.TempDir())
		s := New(plain.rdb, plain.prefix, WithRecordFiles(rf))
		if _, err := s.CreateRun(ctx, testPipeline("map"), pipelines.RunInfo{ID: "r1"}); err != nil {
			t.Fatal(err)
		}
		if err := s.PlanStep(ctx, "r1", "map", 3); err != nil {
			t.Fatal(err)
		}
		want := []results.Item{
			item("map", 0, results.StateSucceeded, 10, 5),
			item("map", 1, results.StateFailed, 3, 0),
			item("map", 2, results.StateSucceeded, 7, 2),
		}
		want[2].Output = strings.Repeat("a long answer ", 200)
		var wg sync.WaitGroup
		for _, it := range want {
			for range 5 { // duplicate deliveries: one record each
				wg.Go(func() {
					if _, err := s.Record(ctx, "r1", it, 0); err != nil {
						t.Error(err)
					}
				})
			}
		}
		wg.Wait()
		raw, err := s.rdb.HGetAll(ctx, s.resKey("r1", "map")).Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(raw) != 3 {
			t.Fatalf("%d records in Redis, want 3", len(raw))
		}
		for field, v := range raw {
			if !strings.HasPrefix(v, recordRefPrefix) || len(v) > 24 {
				t.Errorf("Redis keeps %q for record %s, want its place in the file", v, field)
			}
		}
		var got []results.Item
		for it, err := range s.Items(ctx, "r1", "map", 3) {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, it)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("records read back:\n%+v\nwant:\n%+v", got, want)
		}
		one, err := s.Item(ctx, "r1", "map", 2)
		if err != nil || one == nil || one.Output != want[2].Output {
			t.Errorf("Item(2) = %+v, %v", one, err)
		}
		// Another process's store (no record files) says where they are.
		if _, err := plain.Item(ctx, "r1", "map", 0); err == nil || !strings.Contains(err.Error(), "record file of the process") {
			t.Errorf("reading a file-kept record without the file: %v", err)
		}
		path := rf.Path("r1")
		if _, err := os.Stat(path); err != nil {
			t.Fatal(err)
		}
		if err := rf.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Errorf("record file still there after Close: %v", err)
		}
		if _, err := s.Item(ctx, "r1", "map", 0); err == nil {
			t.Error("a record read after Close")
		}
	})
}

// With record files, a run's artifact sets (their sorted runs and chunks)
// go to the file too: Redis keeps the index and places, and the sets read
// back as written.
func TestRecordFilesKeepArtifactSetsOutOfRedis(t *testing.T) {
	backends(t, func(t *testing.T, plain *Store) {
		ctx := context.Background()
		rf := NewRecordFiles(t.TempDir())
		t.Cleanup(func() { _ = rf.Close() })
		s := New(plain.rdb, plain.prefix, WithRecordFiles(rf))
		refs := make([]pipelines.ArtifactRef, sortRun+setsChunk+3)
		for i := range refs {
			refs[i] = pipelines.ArtifactRef{ID: fmt.Sprintf("artifact_%06d", len(refs)-i), Name: fmt.Sprintf("doc-%06d.md", len(refs)-i), Type: "Document"}
		}
		w := s.NewSetsWriter("r1")
		for _, a := range refs {
			if err := w.Add(ctx, "docs", a); err != nil {
				t.Fatal(err)
			}
		}
		if len(w.runs) != 1 {
			t.Fatalf("%d sorted runs, want 1", len(w.runs))
		}
		if _, err := w.End(ctx, "docs"); err != nil {
			t.Fatal(err)
		}
		sets, err := w.Save(ctx)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := s.rdb.HGetAll(ctx, s.setsKey("r1")).Result()
		if err != nil {
			t.Fatal(err)
		}
		if want := 1 + (len(refs)+setsChunk-1)/setsChunk; len(raw) != want {
			t.Errorf("%d fields in the sets hash, want %d (the index and the chunks)", len(raw), want)
		}
		for field, v := range raw {
			if field != setsIndexField && (!strings.HasPrefix(v, recordRefPrefix) || len(v) > 24) {
				t.Errorf("Redis keeps %.40q for %q, want its place in the file", v, field)
			}
		}
		got := readSets(t, sets)["docs"]
		if want := pipelines.SortRefs(slices.Clone(refs)); !reflect.DeepEqual(got, want) {
			t.Errorf("set read back differs: %d artifacts, first %+v", len(got), got[:1])
		}
		// Another process's store (no record files) says where they are.
		other, err := plain.Sets(ctx, "r1")
		if err != nil {
			t.Fatal(err)
		}
		for _, err := range other["docs"].From(ctx, 0) {
			if err == nil || !strings.Contains(err.Error(), "record file of the process") {
				t.Errorf("reading file-kept sets without the file: %v", err)
			}
		}
	})
}
