package workspace

import (
	"encoding/json"
	"testing"
)

func TestCountTolerantDecoding(t *testing.T) {
	ok := map[string]Count{`12`: 12, `12.0`: 12, `1.2e1`: 12, `"12"`: 12, `" 7 "`: 7, `12.9`: 12, `0`: 0, `-3`: -3}
	for in, want := range ok {
		var c Count
		if err := json.Unmarshal([]byte(in), &c); err != nil || c != want {
			t.Errorf("%s: got %d %v, want %d", in, c, err, want)
		}
	}
	c := Count(5)
	if err := json.Unmarshal([]byte(`null`), &c); err != nil || c != 5 {
		t.Errorf("null changed the value to %d (%v)", c, err)
	}
	for _, bad := range []string{`"x"`, `true`, `1e400`, `{}`, `"NaN"`} {
		var c Count
		if err := json.Unmarshal([]byte(bad), &c); err == nil {
			t.Errorf("%s decoded to %d, want an error", bad, c)
		}
	}
}

func TestInteractionDecoding(t *testing.T) {
	// Unknown fields are ignored, states and stop reasons stay open strings,
	// only text blocks make the output.
	raw := `{"id":"inter_1","project_id":"p","state":"Archived","created_at":"2026-07-01T09:00:00Z","_meta":{"x":1},
		"created_by":{"id":"u","org_id":"o","name":"n","email":"e","roles":["Admin"],"profile_picture":"p.png"},
		"assistant_output":{"id":"msg","created":1751360400,"model":"default","stop_reason":"pause_turn",
			"content":[{"type":"thinking","thinking":"..."},{"type":"text","text":"A"},{"type":"source","sources":[]},{"type":"text","text":"B"}],
			"usage":{"input_tokens":10.0,"output_tokens":"5"}}}`
	var in Interaction
	if err := json.Unmarshal([]byte(raw), &in); err != nil {
		t.Fatal(err)
	}
	if in.State != "Archived" || !in.Terminal() || in.StopReason() != "pause_turn" || in.Output() != "AB" || in.Usage().Total() != 15 {
		t.Errorf("state %q stop %q output %q usage %+v", in.State, in.StopReason(), in.Output(), in.Usage())
	}
	var processing Interaction
	if err := json.Unmarshal([]byte(`{"id":"i","project_id":"p","state":"Processing","created_at":"x"}`), &processing); err != nil {
		t.Fatal(err)
	}
	if processing.Terminal() || processing.Output() != "" || processing.Usage() != (Usage{}) || processing.StopReason() != "" {
		t.Errorf("processing interaction: %+v", processing)
	}
}

func TestArtifactUsable(t *testing.T) {
	cases := []struct {
		a    Artifact
		want bool
	}{
		{Artifact{Type: "Document", State: "Published", IngestStatus: "Done"}, true},
		{Artifact{Type: "InlineText", State: "Published", IngestStatus: "NotApplicable"}, true},
		{Artifact{Type: "Document", State: "Ready", IngestStatus: "Done"}, true},
		{Artifact{Type: "Document", State: "Processing", IngestStatus: "Parsing"}, false},
		{Artifact{Type: "Document", State: "Published", IngestStatus: "Storing"}, false},
		{Artifact{Type: "Document", State: "Error", IngestStatus: "Error"}, false},
		{Artifact{Type: "Folder", State: "Published", IngestStatus: "NotApplicable"}, false},
	}
	for _, c := range cases {
		if got := c.a.Usable(); got != c.want {
			t.Errorf("%+v: Usable() = %v, want %v", c.a, got, c.want)
		}
	}
}
