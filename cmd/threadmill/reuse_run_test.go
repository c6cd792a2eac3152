package main

import (
	"context"
	"encoding/csv"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/threadmill/threadmill/results"
	"github.com/threadmill/threadmill/workspace/simulator"
)

// TestRunEmbeddedReusesUnchangedBulkItems: two embedded runs of the bulk
// example (each with its own in-process Redis) share outputs under the
// results root: the second sends nothing, a changed ticket is sent alone,
// and --no-reuse sends everything. plan shows what will be reused.
func TestRunEmbeddedReusesUnchangedBulkItems(t *testing.T) {
	unsetRunnerEnv(t)
	rs := startRunnerSim(t, simulator.Config{})
	rs.setenv(t)
	root := t.TempDir()
	file := "../../examples/bulk-summarize.yaml"
	ctx := context.Background()
	run := func(extra ...string) (*results.Run, simulator.Counters, string) {
		t.Helper()
		rs.sim.ResetCounters()
		args := append([]string{"run", "--progress", "none", "--results", root}, extra...)
		code, out, errb := runnerCLI(ctx, append(args, file)...)
		if code != exitOK {
			t.Fatalf("run: exit %d\n%s\n%s", code, out, errb)
		}
		latest, err := results.LatestDir(root, "bulk-summarize")
		if err != nil {
			t.Fatal(err)
		}
		r, err := results.ReadRun(latest)
		if err != nil {
			t.Fatal(err)
		}
		return r, rs.sim.Counters(), out
	}

	first, c, _ := run()
	if c.InteractionsCreated != 15 || first.Reused != 0 {
		t.Fatalf("first run: %d interactions, %d reused; want 15 and 0", c.InteractionsCreated, first.Reused)
	}
	// output.files and output.csv: one file per summary, a row per item.
	firstDir := filepath.Join(root, "bulk-summarize", first.RunID)
	files, _ := filepath.Glob(filepath.Join(firstDir, "summaries", "TCK-*.md"))
	rows, err := csv.NewReader(mustOpen(t, filepath.Join(firstDir, "summaries.csv"))).ReadAll()
	if err != nil || len(files) != 15 || first.Files != 15 || len(rows) != 16 || rows[0][1] != "key" || rows[1][4] != "succeeded" {
		t.Errorf("files %d (run.json %d), csv rows %d (%v)", len(files), first.Files, len(rows), err)
	}
	if b, err := os.ReadFile(filepath.Join(firstDir, "summaries", "TCK-1041-login-loop.md")); err != nil || len(b) == 0 {
		t.Errorf("summaries/TCK-1041-login-loop.md: %v", err)
	}

	code, out, errb := runnerCLI(ctx, "plan", "--results", root, file)
	if code != exitOK || !strings.Contains(out, "reuse: 15 items unchanged since an earlier run, 0 to send") ||
		!strings.Contains(out, "reused from "+first.RunID) {
		t.Errorf("plan after the first run: exit %d\n%s\n%s", code, out, errb)
	}

	second, c, out := run()
	if c.InteractionsCreated != 0 || c.Validations != 0 || second.Reused != 15 || second.Usage.Total() != 0 || second.TokensSaved != first.Usage.Total() {
		t.Errorf("second run: %d interactions, %d validations, %d reused, %d tokens, %d saved; want 0, 0, 15, 0, %d",
			c.InteractionsCreated, c.Validations, second.Reused, second.Usage.Total(), second.TokensSaved, first.Usage.Total())
	}
	if !strings.Contains(out, "reused: 15 items took an earlier run's output") {
		t.Errorf("the summary does not say what was reused:\n%s", out)
	}
	for _, it := range readResultItems(t, filepath.Join(root, "bulk-summarize", second.RunID, results.ResultsFile)) {
		if it.ReusedFrom != first.RunID || it.Usage.Total() != 0 || it.Output == "" {
			t.Errorf("item %s: reused_from %q, %d tokens, output %q", it.Key, it.ReusedFrom, it.Usage.Total(), it.Output)
		}
	}

	ticket, ok := rs.sim.ArtifactByPath("Support/Tickets/TCK-1046-dashboard-slow.md")
	if !ok {
		t.Fatal("no ticket TCK-1046 in the corpus")
	}
	if _, err := rs.sim.UpdateArtifactContent(ticket.ID, ticket.Content+"\nUpdate: the customer confirmed the fix on Friday."); err != nil {
		t.Fatal(err)
	}
	third, c, _ := run()
	if c.InteractionsCreated != 1 || third.Reused != 14 {
		t.Errorf("one changed ticket: %d interactions, %d reused; want 1 and 14", c.InteractionsCreated, third.Reused)
	}

	fourth, c, _ := run("--no-reuse")
	if c.InteractionsCreated != 15 || fourth.Reused != 0 {
		t.Errorf("--no-reuse: %d interactions, %d reused; want 15 and 0", c.InteractionsCreated, fourth.Reused)
	}
}

// mustOpen opens a file for the test's life.
func mustOpen(t *testing.T, path string) io.Reader {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return f
}
