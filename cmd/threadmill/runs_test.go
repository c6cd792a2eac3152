package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/threadmill/threadmill/internal/redistest"
	"github.com/threadmill/threadmill/internal/runlist"
	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/results"
	"github.com/threadmill/threadmill/runstore"
)

// commitRun writes a finished run directory with one item per state.
func commitRun(t *testing.T, root, pipeline, runID string, started time.Time, states ...string) {
	t.Helper()
	w, err := results.Create(root, pipeline, runID)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	for i, st := range states {
		it := results.Item{Step: "s", Key: "k" + string(rune('a'+i)), Index: i, State: st, Attempts: 1,
			StartedAt: started, FinishedAt: started.Add(time.Second)}
		if st == results.StateSucceeded {
			it.Output = "ok"
			it.Usage.InputTokens, it.Usage.OutputTokens = 10, 5
		} else {
			it.Error = "boom"
		}
		if err := w.Add(it); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Commit(results.Run{Pipeline: pipeline, RunID: runID, StartedAt: started, FinishedAt: started.Add(90 * time.Second)}, "report"); err != nil {
		t.Fatal(err)
	}
}

func TestRunsListsResultsJournalsAndRedisNewestFirst(t *testing.T) {
	root := t.TempDir()
	t0 := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	commitRun(t, root, "alpha", "alpha-1", t0, results.StateSucceeded, results.StateSucceeded)
	commitRun(t, root, "beta", "beta-1", t0.Add(2*time.Hour), results.StateSucceeded, results.StateFailed, results.StateSkipped)
	// An embedded run interrupted after two items: only its journal is left.
	j, err := results.OpenJournal(results.JournalPath(root, "alpha", "alpha-2"))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"a", "b"} {
		if err := j.Append(results.Item{Step: "s", Key: k, State: results.StateSucceeded, Attempts: 1}); err != nil {
			t.Fatal(err)
		}
	}
	j.Close()
	if err := os.Chtimes(j.Path(), t0.Add(time.Hour), t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	// A run in flight on a shared Redis, and a finished one Redis still
	// knows that was written to this root.
	rs := redistest.Start(t)
	store := runstore.New(rs.Client(t), "")
	p, err := pipelines.Parse("alpha.yaml", []byte(`
version: 1
name: alpha
workspace: { project: proj_x }
steps:
  - id: s
    prompt: "Hello."
`), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.CreateRun(t.Context(), p, pipelines.RunInfo{ID: "alpha-3", Time: t0.Add(3 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := store.MarkRunning(t.Context(), "alpha-3"); err != nil {
		t.Fatal(err)
	}

	code, out, errb := runCmdline(t, "runs", "--results", root, "--redis", rs.URL())
	if code != exitOK {
		t.Fatalf("runs: exit %d\n%s%s", code, out, errb)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "RUN ") {
		t.Fatalf("want a header and 4 runs:\n%s", out)
	}
	for i, want := range []string{
		"alpha-3 alpha running - 0/0",
		"beta-1 beta failed - 3/3 1 1 1 15",
		"alpha-2 alpha interrupted - 2 journaled",
		"alpha-1 alpha succeeded - 2/2 2 0 0 30 2026-11-02 09:00:00Z 1m30s",
	} {
		if got := strings.Join(strings.Fields(lines[i+1]), " "); !strings.HasPrefix(got, want) {
			t.Errorf("row %d: %q, want it to start with %q", i+1, got, want)
		}
	}

	code, out, errb = runCmdline(t, "runs", "alpha", "--results", root, "--json")
	if code != exitOK {
		t.Fatalf("runs alpha --json: exit %d\n%s%s", code, out, errb)
	}
	var rows []runlist.Row
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(rows) != 2 || rows[0].ID != "alpha-2" || rows[0].Journal == "" || rows[1].ID != "alpha-1" || rows[1].Dir == "" || rows[1].Tokens != 30 {
		t.Errorf("runs alpha --json without Redis: %+v", rows)
	}
}

func TestRunsWithAnUnreachableRedisStillListsTheResultsRoot(t *testing.T) {
	root := t.TempDir()
	commitRun(t, root, "alpha", "alpha-1", time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC), results.StateSucceeded)
	code, out, errb := runCmdline(t, "runs", "--results", root, "--redis", "unix://"+t.TempDir()+"/none.sock")
	if code != exitFailure || !strings.Contains(out, "alpha-1") || !strings.Contains(errb, "runs in Redis not listed") {
		t.Errorf("exit %d, want 1 with the results root listed and the Redis named\n%s%s", code, out, errb)
	}
	if code, out, _ := runCmdline(t, "runs", "../x"); code != exitUsage {
		t.Errorf("runs ../x: exit %d, want 2\n%s", code, out)
	}
	if code, out, _ := runCmdline(t, "runs", "--results", t.TempDir()+"/missing"); code != exitOK || strings.TrimSpace(out) != "no runs" {
		t.Errorf("missing root: exit %d, %q", code, out)
	}
}
