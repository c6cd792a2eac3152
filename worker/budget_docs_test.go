package worker_test

import (
	"strings"
	"testing"
	"time"

	"github.com/threadmill/threadmill/results"
	"github.com/threadmill/threadmill/runstore"
	"github.com/threadmill/threadmill/workspace"
	"github.com/threadmill/threadmill/workspace/simulator"
)

// The budget counts the documents: an item whose document alone is past
// max_total_tokens is skipped before anything is sent, a small one runs,
// and run.json compares the estimate with the usage. The small document
// goes first (a refused item ends the budget for every later one).
func TestBudgetCountsTheDocuments(t *testing.T) {
	e := newEnv(t, simulator.Config{})
	f := e.sim.AddArtifact(simulator.ArtifactSpec{Name: "Inbox", Type: workspace.ArtifactTypeFolder})
	e.sim.AddArtifact(simulator.ArtifactSpec{Name: "big.md", ParentID: f.ID, Content: strings.Repeat("The export failed again. ", 640)}) // 16,000 bytes
	e.sim.AddArtifact(simulator.ArtifactSpec{Name: "small.md", ParentID: f.ID, Content: strings.Repeat("Refund granted. ", 25)})         // 400 bytes
	e.startWorker()
	p := e.pipeline(`
version: 1
name: docbudget
workspace: { project: proj_test }
defaults: { max_tokens: 100 }
limits: { concurrency: 2, max_total_tokens: 3000 }
artifacts:
  small: { folder: "Inbox", name: small.md }
  big: { folder: "Inbox", name: big.md }
steps:
  - id: summarize
    for_each: small
    prompt: "Summarize {{ .Artifact.Name }}."
  - id: then
    needs: [summarize]
    for_each: big
    prompt: "Summarize {{ .Artifact.Name }}."
`)
	st := e.wait(e.start(p, "docbudget-1"), time.Minute)
	if st.Status != runstore.StatusFailed {
		t.Fatalf("status %q, want %q (one item skipped)", st.Status, runstore.StatusFailed)
	}
	items := readItems(t, resultsFile(st.ResultDir))
	byName := map[string]results.Item{}
	for _, it := range items {
		byName[it.Artifact.Name] = it
	}
	big, small := byName["big.md"], byName["small.md"]
	// big.md: 4,000 tokens of document, plus the prompt and max_tokens.
	if big.State != results.StateSkipped || big.EstimatedTokens < 4100 || !strings.Contains(big.Error, "token budget") || big.ThreadID != "" {
		t.Errorf("big.md: %s, estimate %d, error %q, thread %q; want skipped before sending", big.State, big.EstimatedTokens, big.Error, big.ThreadID)
	}
	if small.State != results.StateSucceeded || small.EstimatedTokens < 200 || small.EstimatedTokens > 300 || small.Unsized {
		t.Errorf("small.md: %s, estimate %d, unsized %v", small.State, small.EstimatedTokens, small.Unsized)
	}
	if c := e.sim.Counters(); c.InteractionsCreated != 1 || c.Validations != 1 {
		t.Errorf("%d interactions, %d validations; want the small document's only", c.InteractionsCreated, c.Validations)
	}
	run, err := results.ReadRun(st.ResultDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(run.Steps) != 2 || run.Steps[1].Estimate != nil {
		t.Fatalf("run.json steps %+v: want the skipped item's step without an estimate", run.Steps)
	}
	est := run.Steps[0].Estimate
	if est == nil || est.Items != 1 || est.EstimatedTokens != small.EstimatedTokens || est.UsedTokens != small.Usage.Total() ||
		est.Ratio <= 0 || est.Ratio > 1 {
		t.Errorf("run.json estimate %+v; want the small item's %d against its usage %d", est, small.EstimatedTokens, small.Usage.Total())
	}
}
