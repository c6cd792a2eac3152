package results

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/workspace"
)

// structuredItems is a small triage run: one item whose answer was
// repaired once, one that failed after two repairs, and a table that
// cites both tickets.
func structuredItems() []Item {
	login := &pipelines.ArtifactRef{ID: "art_1041", Name: "TCK-1041-login-loop.md", Type: "Document", Folder: "Support/Tickets"}
	vat := &pipelines.ArtifactRef{ID: "art_1042", Name: "TCK-1042-invoice-pdf-missing-vat.md", Type: "Document", Folder: "Support/Tickets"}
	src := func(id, art, title string) workspace.Source {
		return workspace.Source{Type: "context.chunk", ID: id, ArtifactID: art, Title: title, Page: 1, Score: 0.5}
	}
	return []Item{
		{Step: "triage", Key: "triage/art_1041", Index: 0, Artifact: login, ArtifactIDs: []string{"art_1041"},
			State: StateSucceeded, Output: `{"customer":"Brightline Logistics","severity":"P1"}`,
			Outputs:   []string{`Here it is: {"severity":"P1"}`, `{"customer":"Brightline Logistics","severity":"P1"}`},
			JSON:      json.RawMessage(`{"customer":"Brightline Logistics","severity":"P1"}`),
			Repairs:   1,
			Citations: []workspace.Citation{{ID: "cite_1", Index: 1, ArtifactID: "art_1041", SourceID: "src_1"}},
			Sources:   []workspace.Source{src("src_1", "art_1041", "TCK-1041-login-loop.md")},
			Usage:     workspace.Usage{InputTokens: 900, OutputTokens: 40}, StopReason: "end_turn", Attempts: 1,
			ThreadID: "thread_1", InteractionIDs: []string{"inter_1", "inter_2"}, StartedAt: t0, FinishedAt: t0,
			Requests: []workspace.ChatRequest{{Messages: []workspace.Message{workspace.UserText("Triage TCK-1041-login-loop.md.")}}}},
		{Step: "triage", Key: "triage/art_1042", Index: 1, Artifact: vat, ArtifactIDs: []string{"art_1042"},
			State: StateFailed, Outputs: []string{"{}", "{}", "{}"}, Repairs: 2,
			Error: "the answer does not match output_schema after 2 repair turn(s): at the top level: missing property 'customer'",
			Usage: workspace.Usage{InputTokens: 1300, OutputTokens: 6}, StopReason: "end_turn", Attempts: 1,
			ThreadID: "thread_2", InteractionIDs: []string{"inter_3", "inter_4", "inter_5"}, StartedAt: t0, FinishedAt: t0,
			Requests: []workspace.ChatRequest{{Messages: []workspace.Message{workspace.UserText("Triage TCK-1042-invoice-pdf-missing-vat.md.")}}}},
		{Step: "table", Key: "table", Index: 0, ArtifactIDs: []string{"art_1041", "art_1042"},
			State: StateSucceeded, Output: "| ticket | customer | severity |\n| --- | --- | --- |\n| TCK-1041 | Brightline Logistics | P1 |",
			Citations: []workspace.Citation{{ID: "cite_1", Index: 1, ArtifactID: "art_1041", SourceID: "src_1"}, {ID: "cite_2", Index: 2, ArtifactID: "art_1042", SourceID: "src_2"}},
			Sources:   []workspace.Source{src("src_1", "art_1041", "TCK-1041-login-loop.md"), src("src_2", "art_1042", "TCK-1042-invoice-pdf-missing-vat.md")},
			Usage:     workspace.Usage{InputTokens: 700, OutputTokens: 30}, StopReason: "end_turn", Attempts: 1,
			ThreadID: "thread_3", InteractionIDs: []string{"inter_6"}, StartedAt: t0, FinishedAt: t0,
			Requests: []workspace.ChatRequest{{Messages: []workspace.Message{workspace.UserText("Write a triage table.")}}}},
	}
}

// TestStructuredGolden: the result lines of a run with output_schema and
// citations (json, repairs, citations, sources), and a report whose text
// carries the report step's footnotes, built as the finalizer builds it.
func TestStructuredGolden(t *testing.T) {
	root := t.TempDir()
	w, err := Create(root, "ticket-triage", "ticket-triage-20260105T090000Z")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	notes := NewFootnotes()
	var report string
	for _, it := range structuredItems() {
		if err := w.Add(it); err != nil {
			t.Fatal(err)
		}
		notes.Learn(it)
		if it.Step == "table" {
			report = it.Output + "\n\n" + notes.Cite(it) + "\n"
		}
	}
	report += "\n" + notes.Notes()
	dir, err := w.Commit(Run{RunID: "ticket-triage-20260105T090000Z", StartedAt: t0, FinishedAt: t0, ReportStep: "table",
		Steps: []StepUsage{{Step: "triage"}, {Step: "table"}}}, report)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{ResultsFile, ReportFile} {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		checkGoldenFile(t, got, filepath.Join("testdata", "structured", name))
	}
}

// checkGoldenFile compares got with a golden file, or rewrites it with
// -update.
func checkGoldenFile(t *testing.T, got []byte, golden string) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from what the code writes now:\n--- got\n%s\n--- want\n%s", golden, got, want)
	}
}
