package workspace_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/threadmill/threadmill/workspace"
)

// TestReferences reads citations from text blocks and sources from source
// blocks, tolerating the shapes the documentation leaves open.
func TestReferences(t *testing.T) {
	blocks := []workspace.ContentBlock{
		{Type: "thinking", Thinking: "hmm"},
		{Type: "source", Sources: json.RawMessage(`[
			{"type":"context.chunk","id":"c1","score":0.8,"document":{"object":"artifact","artifact":"art_1"},"metadata":{"title":"a.md","page":3}},
			{"object":"context.chunk","id":"c2","document":{"artifact":{"id":"art_2","name":"b.md"}},"metadata":{"page":"7"}},
			{"type":"context.website","url":"https://example.com","title":"Example"},
			"not an object"]`)},
		{Type: "text", Text: "Answer.", Citations: []workspace.Citation{{ID: "x", Index: 1, ArtifactID: "art_1", SourceID: "c1"}}},
	}
	cites, srcs := workspace.References(blocks)
	if len(cites) != 1 || cites[0].SourceID != "c1" {
		t.Errorf("citations = %+v", cites)
	}
	want := []workspace.Source{
		{Type: "context.chunk", ID: "c1", ArtifactID: "art_1", Title: "a.md", Page: 3, Score: 0.8},
		{Type: "context.chunk", ID: "c2", ArtifactID: "art_2", Page: 7},
		{Type: "context.website", URL: "https://example.com", Title: "Example"},
	}
	if !reflect.DeepEqual(srcs, want) {
		t.Errorf("sources =\n%+v\nwant\n%+v", srcs, want)
	}
	if c, s := workspace.References([]workspace.ContentBlock{{Type: "source", Sources: json.RawMessage(`{}`)}}); c != nil || s != nil {
		t.Errorf("a malformed source block gave %v %v", c, s)
	}
}
