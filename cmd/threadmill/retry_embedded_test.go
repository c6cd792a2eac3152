package main

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/threadmill/threadmill/internal/hostile"
	"github.com/threadmill/threadmill/results"
)

// Retry and re-run of runs made by the embedded `run` (no Redis): rebuilt
// from their directory under the results root, as a user types them.
func TestRetryAndRerunOfAnEmbeddedRun(t *testing.T) {
	unsetRunnerEnv(t)
	sim, front := startHostileRunnerSim(t)
	dir := t.TempDir()
	root := filepath.Join(dir, "out")
	file := writeRunnerPipeline(t, dir, "emb", corpusPipeline("emb", 8))
	// Three summaries are refused by validate, once.
	refused := front.Add(&hostile.Rule{Method: http.MethodPost, Path: hostile.Validate, Skip: 2, Times: 3,
		Do: hostile.Respond(http.StatusBadRequest, `{"message":"too long"}`)})

	code, stdout, stderr := runnerCLI(t.Context(), "run", "--progress", "none", "--results", root, "--run-id", "emb-1", file)
	if code != exitItemsFailed || refused.Hits() != 3 {
		t.Fatalf("run: exit %d (want 3), %d refusals\n%s\n%s", code, refused.Hits(), stdout, stderr)
	}
	first := sim.Counters().InteractionsCreated
	if first != corpusDocs-3+1 {
		t.Fatalf("first run created %d interactions, want %d", first, corpusDocs-3+1)
	}

	code, stdout, stderr = runnerCLI(t.Context(), "retry", "--progress", "none", "--results", root, "--file", file, "emb-1")
	if code != exitOK || !strings.Contains(stderr, "retrying run emb-1: 3 items sent again") {
		t.Fatalf("retry: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if got := sim.Counters().InteractionsCreated - first; got != 4 {
		t.Errorf("the retry created %d interactions, want the 3 summaries and the digest", got)
	}
	r, err := results.ReadRun(filepath.Join(root, "emb", "emb-1"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != results.StatusSucceeded || r.Counts[results.StateSucceeded] != corpusDocs+1 || len(r.Attempts) != 1 || r.Attempts[0].Failed != 3 {
		t.Errorf("run.json after the retry: %s, counts %v, attempts %+v", r.Status, r.Counts, r.Attempts)
	}
	// Nothing left to retry: every item succeeded, nothing is sent.
	before := sim.Counters().InteractionsCreated
	if code, stdout, stderr := runnerCLI(t.Context(), "retry", "--progress", "none", "--results", root, "--file", file, "emb-1"); code != exitOK || sim.Counters().InteractionsCreated != before || !strings.Contains(stdout, "nothing to retry") {
		t.Errorf("second retry: exit %d, %d interactions\n%s\n%s", code, sim.Counters().InteractionsCreated-before, stdout, stderr)
	}

	// The file changes: a retry refuses it, a re-run takes it.
	writeRunnerPipeline(t, dir, "emb", strings.Replace(corpusPipeline("emb", 8), "in one sentence", "in one short sentence", 1))
	if code, _, stderr := runnerCLI(t.Context(), "retry", "--results", root, "--file", file, "emb-1"); code != exitUsage || !strings.Contains(stderr, "threadmill rerun emb-1 FILE") {
		t.Errorf("retry with a changed file: exit %d\n%s", code, stderr)
	}
	before = sim.Counters().InteractionsCreated
	code, stdout, stderr = runnerCLI(t.Context(), "rerun", "--progress", "none", "--results", root, "emb-1", file)
	if code != exitOK || !strings.Contains(stderr, "run emb-1-rerun1 re-runs emb-1") {
		t.Fatalf("rerun: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if got := sim.Counters().InteractionsCreated - before; got != corpusDocs+1 {
		t.Errorf("the re-run created %d interactions, want a full run", got)
	}
	re, err := results.ReadRun(filepath.Join(root, "emb", "emb-1-rerun1"))
	if err != nil || re.Status != results.StatusSucceeded || re.FireTime == nil || r.FireTime == nil || !re.FireTime.Equal(*r.FireTime) {
		t.Errorf("re-run's run.json: %+v, %v (original fire time %v)", re, err, r.FireTime)
	}
}
