package workspace_test

import (
	"encoding/json"
	"testing"

	"github.com/threadmill/threadmill/workspace"
)

// Size reads props.content_length (a number or a numeric string), an
// InlineText's props.content, or the included content, and says when the
// DTO gives none.
func TestArtifactSize(t *testing.T) {
	for _, tc := range []struct {
		name  string
		a     workspace.Artifact
		size  int64
		known bool
	}{
		{"content_length", workspace.Artifact{Type: "Document", Props: json.RawMessage(`{"file_name":"a.pdf","content_length":52311}`)}, 52311, true},
		{"content_length as a string", workspace.Artifact{Type: "Document", Props: json.RawMessage(`{"content_length":"812"}`)}, 812, true},
		{"inline text", workspace.Artifact{Type: "InlineText", Props: json.RawMessage(`{"content":"Refunds within 14 days."}`)}, 23, true},
		{"included content", workspace.Artifact{Type: "Document", Props: json.RawMessage(`{"file_name":"a.md"}`), Content: "# A\n"}, 4, true},
		{"no size", workspace.Artifact{Type: "Document", Props: json.RawMessage(`{"file_name":"a.pdf","content_type":"application/pdf"}`)}, 0, false},
		{"bad props", workspace.Artifact{Type: "Document", Props: json.RawMessage(`{"content_length":"lots"}`)}, 0, false},
		{"no props", workspace.Artifact{Type: "Link"}, 0, false},
	} {
		if n, ok := tc.a.Size(); n != tc.size || ok != tc.known {
			t.Errorf("%s: Size() = %d, %v; want %d, %v", tc.name, n, ok, tc.size, tc.known)
		}
	}
}
