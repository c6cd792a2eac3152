package runstore_test

import (
	"context"
	"fmt"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/results"
	"github.com/threadmill/threadmill/runstore"
)

// Recording an item is exactly-once: a duplicate delivery changes nothing,
// and the step's completion is counted from the set of finished items.
func ExampleStore_Record() {
	m, err := miniredis.Run()
	if err != nil {
		panic(err)
	}
	defer m.Close()
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	defer rdb.Close()
	ctx := context.Background()

	s := runstore.New(rdb, "")
	p := &pipelines.Pipeline{Version: 1, Name: "weekly", Steps: []pipelines.Step{{ID: "summarize", Prompt: "..."}}}
	if _, err := s.CreateRun(ctx, p, pipelines.RunInfo{ID: "weekly-1"}); err != nil {
		panic(err)
	}
	if err := s.PlanStep(ctx, "weekly-1", "summarize", 2); err != nil {
		panic(err)
	}
	for i, key := range []string{"summarize/a", "summarize/a", "summarize/b"} {
		it := results.Item{Step: "summarize", Key: key, Index: i / 2, State: results.StateSucceeded}
		rec, err := s.Record(ctx, "weekly-1", it, 0)
		if err != nil {
			panic(err)
		}
		fmt.Printf("%s: new=%v done=%d/%d complete=%v\n", key, rec.New, rec.Done, rec.Total, rec.Complete())
	}
	// Output:
	// summarize/a: new=true done=1/2 complete=false
	// summarize/a: new=false done=1/2 complete=false
	// summarize/b: new=true done=2/2 complete=true
}
