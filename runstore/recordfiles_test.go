package runstore

import (
	"context"
	"os"
	"reflect"
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
