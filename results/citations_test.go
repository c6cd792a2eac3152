package results_test

import (
	"testing"

	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/results"
	"github.com/threadmill/threadmill/workspace"
)

// TestFootnotes: citations become numbered footnotes, one per cited
// artifact and page, named after the run's artifact, else the source's
// title, else the id; a source block without citations cites its sources.
func TestFootnotes(t *testing.T) {
	f := results.NewFootnotes()
	f.Learn(results.Item{Artifact: &pipelines.ArtifactRef{ID: "art_1", Name: "TCK-1041-login-loop.md"}})
	brief := results.Item{
		Sources: []workspace.Source{
			{ID: "s1", ArtifactID: "art_1", Title: "login loop", Page: 2},
			{ID: "s2", ArtifactID: "art_2", Title: "escalation-policy.md"},
			{ID: "s3", ArtifactID: "art_3"},
		},
		Citations: []workspace.Citation{
			{ArtifactID: "art_1", SourceID: "s1"}, {ArtifactID: "art_2", SourceID: "s2"},
			{ArtifactID: "art_1", SourceID: "s1"}, {ArtifactID: "art_3", SourceID: "s3"},
		},
	}
	f.Learn(brief)
	if got, want := f.Cite(brief), "Sources: [^1] [^2] [^3]"; got != want {
		t.Errorf("Cite = %q, want %q", got, want)
	}
	web := results.Item{Sources: []workspace.Source{{Type: "context.website", URL: "https://status.example.com"}, {ArtifactID: "art_2"}}}
	if got, want := f.Cite(web), "Sources: [^4] [^2]"; got != want {
		t.Errorf("Cite of sources without citations = %q, want %q", got, want)
	}
	if got := f.Cite(results.Item{}); got != "" {
		t.Errorf("Cite of nothing = %q", got)
	}
	want := "[^1]: TCK-1041-login-loop.md, page 2 (artifact `art_1`)\n" +
		"[^2]: escalation-policy.md (artifact `art_2`)\n" +
		"[^3]: art_3\n" +
		"[^4]: https://status.example.com\n"
	if got := f.Notes(); got != want {
		t.Errorf("Notes =\n%s\nwant\n%s", got, want)
	}
}
