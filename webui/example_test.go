package webui_test

import (
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"strings"
	"time"

	"github.com/threadmill/threadmill/results"
	"github.com/threadmill/threadmill/webui"
)

// A web UI over a results root: the runs page links each run to its page,
// and a run's page renders its report.
func ExampleNew() {
	root, _ := os.MkdirTemp("", "webui-example")
	defer os.RemoveAll(root)
	w, _ := results.Create(root, "weekly", "weekly-1")
	_ = w.Add(results.Item{Step: "brief", Key: "brief", State: results.StateSucceeded, Attempts: 1, Output: "All quiet."})
	start := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	_, _ = w.Commit(results.Run{Pipeline: "weekly", RunID: "weekly-1", StartedAt: start, FinishedAt: start.Add(time.Minute)}, "**All quiet** this week.")

	ui, err := webui.New(webui.Options{Root: root})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ui.Close()
	for _, path := range []string{"/", "/runs/weekly/weekly-1", "/runs/weekly/..%2f..%2fetc/files/run.json"} {
		rec := httptest.NewRecorder()
		ui.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		body, _ := io.ReadAll(rec.Body)
		fmt.Println(path, rec.Code,
			strings.Contains(string(body), `href="/runs/weekly/weekly-1"`),
			strings.Contains(string(body), "<strong>All quiet</strong> this week."))
	}
	// Output:
	// / 200 true false
	// /runs/weekly/weekly-1 200 false true
	// /runs/weekly/..%2f..%2fetc/files/run.json 400 false false
}
