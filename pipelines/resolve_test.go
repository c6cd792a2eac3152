package pipelines_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/workspace"
	"github.com/threadmill/threadmill/workspace/simulator"
)

// resolveSets parses a pipeline whose steps use every set it defines and
// resolves them against ws.
func resolveSets(t *testing.T, ws *simWorkspace, sets string, run pipelines.RunInfo) (map[string][]pipelines.ArtifactRef, error) {
	t.Helper()
	p := mustParse(t, "version: 1\nname: r\nworkspace: {project: "+ws.sim.ProjectID()+"}\nartifacts:\n"+sets+stepsUsing(t, sets), nil)
	return pipelines.Resolve(context.Background(), ws.client, p, run)
}

// stepsUsing writes one step per set: a for_each step for sets whose
// name starts with "each", a step with artifacts: otherwise.
func stepsUsing(t *testing.T, sets string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("steps:\n")
	for i, line := range strings.Split(sets, "\n") {
		name, _, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || name == "" {
			continue
		}
		if strings.HasPrefix(name, "each") {
			fmt.Fprintf(&b, "  - {id: s%d, for_each: %s, prompt: \"{{ .Artifact.Name }}\"}\n", i, name)
		} else {
			fmt.Fprintf(&b, "  - {id: s%d, artifacts: [%s], prompt: hi}\n", i, name)
		}
	}
	return b.String()
}

func names(refs []pipelines.ArtifactRef) []string {
	out := make([]string, len(refs))
	for i, r := range refs {
		out[i] = r.Folder + "/" + r.Name
	}
	return out
}

func TestResolveSelectors(t *testing.T) {
	ws := newSimWorkspace(t, "")
	policies, _ := ws.sim.ArtifactByPath("Policies")
	refunds, _ := ws.sim.ArtifactByPath("Policies/refunds.md")
	// An artifact still ingesting is never selected.
	ws.sim.AddArtifact(simulator.ArtifactSpec{Name: "TCK-2004-ingesting.md", ParentID: mustByPath(t, ws, "Support/Tickets").ID,
		Content: "x", State: workspace.ArtifactStateProcessing, IngestStatus: workspace.IngestProcessing})

	sets, err := resolveSets(t, ws, `  support: { folder: Support }
  tickets_md: { folder: " /Support/Tickets/ ", name: "TCK-200[12]*" }
  policies_by_id: { folder: `+policies.ID+` }
  ids: { ids: [`+refunds.ID+`, `+policies.ID+`] }
  texts: { name: "*.txt" }
  docs: { type: Document, updated: 2026-06-05 }
  recent: { all: true, updated: 168h }
  window: { folder: Support/Tickets, updated: within_run_window }
  everything: { all: true }
  each_all: { all: true }
`, goldenRun)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"support": {"Support/Archive/TCK-1990-reset-email.md", "Support/Tickets/TCK-2001-login-loop.md",
			"Support/Tickets/TCK-2002-invoice-vat.md", "Support/Tickets/TCK-2003-csv-timeout.md"},
		"tickets_md":     {"Support/Tickets/TCK-2001-login-loop.md", "Support/Tickets/TCK-2002-invoice-vat.md"},
		"policies_by_id": {"Policies/refunds.md", "Policies/security.txt"},
		"ids":            {"Policies/refunds.md", "Policies/security.txt"},
		"texts":          {"Policies/security.txt"},
		"docs": {"Notes/roadmap-draft.md", "Policies/refunds.md", "Policies/security.txt", "Support/Archive/TCK-1990-reset-email.md",
			"Support/Tickets/TCK-2001-login-loop.md", "Support/Tickets/TCK-2002-invoice-vat.md"},
		"recent": {"Notes/roadmap-draft.md", "Policies/refunds.md", "Policies/security.txt", "Support/Archive/TCK-1990-reset-email.md",
			"Support/Tickets/TCK-2001-login-loop.md", "Support/Tickets/TCK-2002-invoice-vat.md"},
		"window": {"Support/Tickets/TCK-2001-login-loop.md", "Support/Tickets/TCK-2002-invoice-vat.md"},
		"each_all": {"Notes/roadmap-draft.md", "Policies/refunds.md", "Policies/security.txt", "Support/Archive/TCK-1990-reset-email.md",
			"Support/Tickets/TCK-2001-login-loop.md", "Support/Tickets/TCK-2002-invoice-vat.md", "Support/Tickets/TCK-2003-csv-timeout.md"},
	}
	for name, w := range want {
		if got := names(sets[name]); !slices.Equal(got, w) {
			t.Errorf("set %s = %v\nwant %v", name, got, w)
		}
	}
	if refs, ok := sets["everything"]; !ok || refs != nil {
		t.Errorf("an unfiltered all set used only as context should map to nil (all_artifacts), got %v, %v", refs, ok)
	}
	if len(sets) != len(want)+1 {
		t.Errorf("resolved %d sets, want %d", len(sets), len(want)+1)
	}
	for _, r := range sets["window"] {
		if r.Type != workspace.ArtifactTypeDocument || !r.UpdatedAt.Equal(goldenNow) || r.ID == "" {
			t.Errorf("ref %+v: want a Document updated at %v", r, goldenNow)
		}
		// The size is the simulator's props.content_length: the bytes of
		// the document.
		if a := mustByPath(t, ws, r.Folder+"/"+r.Name); r.Size == 0 || r.Size != int64(len(a.Content)) {
			t.Errorf("ref %s: size %d, want %d", r.Name, r.Size, len(a.Content))
		}
	}
}

func mustByPath(t *testing.T, ws *simWorkspace, p string) workspace.Artifact {
	t.Helper()
	a, ok := ws.sim.ArtifactByPath(p)
	if !ok {
		t.Fatalf("no artifact %s", p)
	}
	return a
}

func TestResolveErrors(t *testing.T) {
	ws := newSimWorkspace(t, "")
	ingesting := ws.sim.AddArtifact(simulator.ArtifactSpec{Name: "draft.md", Content: "x",
		State: workspace.ArtifactStatePublished, IngestStatus: workspace.IngestProcessing})
	cases := []struct {
		name, sets string
		run        pipelines.RunInfo
		want       []string
	}{
		{"folder not found", "  a: { folder: Support/Tickts }\n", goldenRun,
			[]string{`artifact set "a": folder "Support/Tickts" not found in project proj_golden; did you mean "Support/Tickets"?`}},
		{"unknown and unready ids", "  a: { ids: [artifact_nope, " + ingesting.ID + "] }\n", goldenRun,
			[]string{"artifact artifact_nope not found in project proj_golden", `artifact ` + ingesting.ID + ` ("draft.md") is not ready: state Published, ingest status Processing`}},
		{"empty set", "  a: { folder: Notes, name: \"*.pdf\" }\n", goldenRun,
			[]string{`artifact set "a" is empty in project proj_golden (folder "Notes", name "*.pdf"); add allow_empty: true if that is expected`}},
		{"no window", "  a: { all: true, updated: within_run_window }\n", pipelines.RunInfo{ID: "manual", Time: goldenNow},
			[]string{`updated: within_run_window needs a run window, and run "manual" has none`}},
		{"every set is reported", "  a: { folder: Nope }\n  b: { folder: Nada }\n", goldenRun,
			[]string{`folder "Nope" not found`, `folder "Nada" not found`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := resolveSets(t, ws, c.sets, c.run)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}

	sets, err := resolveSets(t, ws, "  a: { folder: Notes, name: \"*.pdf\", allow_empty: true }\n", goldenRun)
	if err != nil {
		t.Fatal(err)
	}
	if refs, ok := sets["a"]; !ok || refs == nil || len(refs) != 0 {
		t.Errorf("allow_empty set = %#v, want an empty non-nil slice", refs)
	}

	p := mustParse(t, "version: 1\nname: r\nartifacts: {a: {all: true}}\nsteps: [{id: s, for_each: a, prompt: x}]\n", nil)
	if _, err := pipelines.Resolve(context.Background(), ws.client, p, goldenRun); err == nil || !strings.Contains(err.Error(), "WORKSPACE_PROJECT") {
		t.Errorf("no project: %v", err)
	}
	p.Workspace.Project = goldenProject
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := pipelines.Resolve(ctx, ws.client, p, goldenRun); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v", err)
	}
}

// TestResolvePages: a folder of 250 artifacts comes back whole, in order,
// through three pages of 100.
func TestResolvePages(t *testing.T) {
	ws := newSimWorkspace(t, "")
	bulk := ws.sim.AddArtifact(simulator.ArtifactSpec{Name: "Bulk", Type: workspace.ArtifactTypeFolder})
	for i := range 250 {
		ws.sim.AddArtifact(simulator.ArtifactSpec{Name: fmt.Sprintf("doc-%03d.md", i), ParentID: bulk.ID, Content: "x", UpdatedAt: goldenNow.Add(-time.Hour)})
	}
	ws.sim.ResetCounters()
	sets, err := resolveSets(t, ws, "  each_bulk: { folder: Bulk }\n", goldenRun)
	if err != nil {
		t.Fatal(err)
	}
	got := sets["each_bulk"]
	if len(got) != 250 || got[0].Name != "doc-000.md" || got[249].Name != "doc-249.md" || got[0].Folder != "Bulk" {
		t.Fatalf("got %d artifacts (%v ... )", len(got), names(got[:min(3, len(got))]))
	}
	listed := 0
	for route, byStatus := range ws.sim.Counters().Requests {
		if strings.Contains(route, "/artifact") {
			for _, n := range byStatus {
				listed += n
			}
		}
	}
	// One page of folders, then three pages of the folder's contents.
	if listed != 4 {
		t.Errorf("%d artifact list requests, want 4", listed)
	}
}
