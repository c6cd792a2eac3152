package results_test

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/threadmill/threadmill/results"
	"github.com/threadmill/threadmill/workspace"
)

func Example() {
	root, _ := os.MkdirTemp("", "results-example")
	defer os.RemoveAll(root)

	w, err := results.Create(root, "bulk-summaries", "bulk-summaries-20260105T090000Z")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer w.Abort() // a no-op once committed

	for i, out := range []string{"First summary.", "Second summary."} {
		_ = w.Add(results.Item{
			Step: "summarize", Key: fmt.Sprintf("summarize/%d", i), Index: i,
			State: results.StateSucceeded, Output: out, Attempts: 1,
			Usage: workspace.Usage{InputTokens: 100, OutputTokens: 20},
		})
	}
	start := time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)
	dir, err := w.Commit(results.Run{StartedAt: start, FinishedAt: start.Add(3 * time.Second)}, "Two summaries.")
	if err != nil {
		fmt.Println(err)
		return
	}
	run, _ := results.ReadRun(dir)
	fmt.Println(filepath.Base(dir), run.Status, run.Total, run.Usage.Total())
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		fmt.Println(e.Name())
	}
	latest, _ := results.LatestDir(root, "bulk-summaries")
	fmt.Println("latest:", filepath.Base(latest))
	// Output:
	// bulk-summaries-20260105T090000Z succeeded 2 240
	// errors.jsonl
	// report.md
	// results.jsonl
	// run.json
	// latest: bulk-summaries-20260105T090000Z
}
