package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/threadmill/threadmill/internal/redistest"
	"github.com/threadmill/threadmill/runstore"
	"github.com/threadmill/threadmill/workspace/simulator"
)

// `rerun` as a user types it: a scheduled run of a weekly pipeline, then a
// re-run of the same window with the file as it is now, under an id that
// names the original.
func TestRerunCoversTheSameWindowWithTheCurrentFile(t *testing.T) {
	unsetRunnerEnv(t)
	e := startRunnerSim(t, simulator.Config{Async: true, Latency: 5 * time.Millisecond})
	e.setenv(t)
	rs := redistest.Start(t)
	t.Setenv(envRedisURL, rs.URL())
	dir := t.TempDir()
	weekly := strings.Replace(corpusPipeline("weekly", 8), "limits:", "schedule: { cron: \"0 9 * * MON\", timezone: UTC }\nlimits:", 1)
	file := writeRunnerPipeline(t, dir, "weekly", weekly)
	root := filepath.Join(dir, "out")

	werr := startWorkerCmd(t, root)

	code, stdout, stderr := runnerCLI(t.Context(), "enqueue", "--wait", "--progress", "none", "--run-id", "weekly-w48", "--at", "2026-11-30T10:00:00Z", file)
	if code != exitOK {
		t.Fatalf("enqueue: exit %d\n%s\n%s\nworker:\n%s", code, stdout, stderr, werr.String())
	}
	// The file changes (a fixed prompt); the week is produced again.
	writeRunnerPipeline(t, dir, "weekly", strings.Replace(weekly, "in one sentence", "in one short sentence", 1))
	code, stdout, stderr = runnerCLI(t.Context(), "rerun", "--progress", "none", "weekly-w48", file)
	if code != exitOK || !strings.HasPrefix(stdout, "weekly-w48-rerun1\n") || !strings.Contains(stderr, "re-runs weekly-w48") {
		t.Fatalf("rerun: exit %d\n%s\n%s\nworker:\n%s", code, stdout, stderr, werr.String())
	}
	store := runstore.New(rs.Client(t), "")
	orig, err := store.Spec(t.Context(), "weekly-w48")
	if err != nil {
		t.Fatal(err)
	}
	again, err := store.Spec(t.Context(), "weekly-w48-rerun1")
	if err != nil {
		t.Fatal(err)
	}
	if !again.Info.Time.Equal(orig.Info.Time) || !again.Info.WindowStart.Equal(orig.Info.WindowStart) || !again.Info.WindowEnd.Equal(orig.Info.WindowEnd) || orig.Info.WindowStart.IsZero() {
		t.Errorf("re-run window %+v, original %+v", again.Info, orig.Info)
	}
	if orig.Pipeline.Hash == again.Pipeline.Hash {
		t.Error("the re-run did not take the current file")
	}
	if got := e.sim.Counters().InteractionsCreated; got != 2*(corpusDocs+1) {
		t.Errorf("%d interactions, want two full runs", got)
	}
	// A re-run of the re-run counts on from the original.
	code, stdout, _ = runnerCLI(t.Context(), "rerun", "--no-wait", "weekly-w48-rerun1", file)
	if code != exitOK || strings.TrimSpace(stdout) != "weekly-w48-rerun2" {
		t.Errorf("second rerun: exit %d, %q", code, stdout)
	}
	// Another pipeline's file is refused.
	other := writeRunnerPipeline(t, dir, "other", corpusPipeline("other", 2))
	if code, _, stderr := runnerCLI(t.Context(), "rerun", "weekly-w48", other); code != exitUsage || !strings.Contains(stderr, `is of pipeline "weekly"`) {
		t.Errorf("rerun with another pipeline: exit %d\n%s", code, stderr)
	}
	// A run Redis no longer knows is found in the results root.
	fresh := redistest.Start(t)
	code, stdout, stderr = runnerCLI(t.Context(), "rerun", "--no-wait", "--redis", fresh.URL(), "--results", root, "weekly-w48", file)
	if code != exitOK || strings.TrimSpace(stdout) != "weekly-w48-rerun1" {
		t.Errorf("rerun from the results root: exit %d\n%s\n%s", code, stdout, stderr)
	}
	spec, err := runstore.New(fresh.Client(t), "").Spec(t.Context(), "weekly-w48-rerun1")
	if err != nil || !spec.Info.WindowStart.Equal(orig.Info.WindowStart) {
		t.Errorf("rerun from the results root: %+v, %v", spec, err)
	}
}
