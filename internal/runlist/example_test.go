package runlist_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/threadmill/threadmill/internal/runlist"
	"github.com/threadmill/threadmill/results"
)

// The runs of a results root, newest first, without Redis.
func ExampleList() {
	root, _ := os.MkdirTemp("", "runlist-example")
	defer os.RemoveAll(root)
	t0 := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	for i, id := range []string{"weekly-1", "weekly-2"} {
		w, _ := results.Create(root, "weekly", id)
		_ = w.Add(results.Item{Step: "s", Key: "a", State: results.StateSucceeded, Attempts: 1})
		_ = w.Add(results.Item{Step: "s", Key: "b", State: results.StateFailed, Attempts: 2, Error: "refused"})
		start := t0.Add(time.Duration(i) * 24 * time.Hour)
		_, _ = w.Commit(results.Run{Pipeline: "weekly", RunID: id, StartedAt: start, FinishedAt: start.Add(90 * time.Second)}, "report")
	}
	rows, filesErr, storeErr := runlist.List(context.Background(), root, "", nil, t0)
	for _, r := range rows {
		fmt.Println(r.ID, r.Status, r.Done, r.Total, r.Failed, r.Duration(), r.Sources)
	}
	fmt.Println(filesErr, storeErr)
	// Output:
	// weekly-2 failed 2 2 1 1m30s [results]
	// weekly-1 failed 2 2 1 1m30s [results]
	// <nil> <nil>
}
