package simulator_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/threadmill/threadmill/structured"
	"github.com/threadmill/threadmill/workspace"
	"github.com/threadmill/threadmill/workspace/simulator"
)

const triageSchema = `{"type":"object","required":["customer","severity","status"],"additionalProperties":false,
"properties":{"customer":{"type":"string"},"product":{"type":"string","description":"the product area affected"},
"severity":{"enum":["P1","P2","P3","P4"]},"status":{"type":"string"},"next_step":{"type":"string","maxLength":80}}}`

func jsonRequest(text string) workspace.ChatRequest {
	req := chat(text)
	req.ResponseFormat = &workspace.ResponseFormat{Type: "json_schema", JSONSchema: json.RawMessage(triageSchema)}
	return req
}

// TestResponseFormatAnswer: a response_format answer is JSON valid for the
// schema, built from the referenced artifact ("Label: value" lines, enum
// values found in it), the same every time.
func TestResponseFormatAnswer(t *testing.T) {
	e := newEnv(t, simulator.Config{})
	th := e.createThread("triage")
	id := e.artifactID("Support/Tickets/TCK-1041-login-loop.md")
	in := e.createInteraction(th.ID, jsonRequest("Triage this ticket."), id)
	sch, err := structured.Compile([]byte(triageSchema))
	if err != nil {
		t.Fatal(err)
	}
	raw, probs := sch.Check(in.Output())
	if len(probs) > 0 {
		t.Fatalf("answer %q is invalid: %v", in.Output(), probs)
	}
	var got map[string]string
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	if got["customer"] != "Brightline Logistics (Enterprise plan)" || got["severity"] != "P1" || got["status"] != "Resolved" {
		t.Errorf("answer %v does not come from the ticket", got)
	}
	if !strings.HasPrefix(in.Output(), `{"customer":`) {
		t.Errorf("answer is not bare JSON: %q", in.Output())
	}
	again := e.createInteraction(e.createThread("again").ID, jsonRequest("Triage this ticket."), id)
	if again.Output() != in.Output() {
		t.Errorf("not deterministic:\n%s\n%s", in.Output(), again.Output())
	}
}

// TestInvalidJSONFault: with Faults.InvalidJSON 1 the first response_format
// answer of a thread lacks a required field; the next one in the same
// thread (the repair) is valid. A chat counts its assistant messages.
func TestInvalidJSONFault(t *testing.T) {
	e := newEnv(t, simulator.Config{Faults: simulator.Faults{InvalidJSON: 1}})
	sch, _ := structured.Compile([]byte(triageSchema))
	th := e.createThread("repair")
	id := e.artifactID("Support/Tickets/TCK-1041-login-loop.md")
	first := e.createInteraction(th.ID, jsonRequest("Triage this ticket."), id)
	if _, probs := sch.Check(first.Output()); len(probs) != 1 || !strings.Contains(probs[0].String(), "missing property 'customer'") {
		t.Fatalf("first answer %q: problems %v, want the missing customer", first.Output(), probs)
	}
	second := e.createInteraction(th.ID, jsonRequest("Fix it: customer is missing."), id)
	if _, probs := sch.Check(second.Output()); len(probs) > 0 {
		t.Fatalf("repair answer %q is invalid: %v", second.Output(), probs)
	}
	if n := e.sim.Counters().Faults["invalid_json"]; n != 1 {
		t.Errorf("invalid_json faults = %d, want 1", n)
	}

	var resp workspace.ChatResponse
	e.must("POST", "/api/v1/app/chat", jsonRequest("Triage: Acme, P2, open."), 200, &resp)
	if _, probs := sch.Check(resp.Text()); len(probs) == 0 {
		t.Errorf("first chat answer %q is valid, want the fault", resp.Text())
	}
	req := jsonRequest("Triage: Acme, P2, open.")
	req.Messages = append(req.Messages, workspace.Message{Role: workspace.RoleAssistant, Content: resp.Content[len(resp.Content)-1:]},
		workspace.UserText("Fix it."))
	e.must("POST", "/api/v1/app/chat", req, 200, &resp)
	if _, probs := sch.Check(resp.Text()); len(probs) > 0 {
		t.Errorf("repair chat answer %q: %v", resp.Text(), probs)
	}
}

// TestCitationsAndThinking: system.citations gives a source block naming
// each referenced artifact and citations on the text; thinking gives a
// thinking block, billed as output but not part of the text.
func TestCitationsAndThinking(t *testing.T) {
	e := newEnv(t, simulator.Config{})
	th := e.createThread("cite")
	a := e.artifactID("Support/Tickets/TCK-1041-login-loop.md")
	b := e.artifactID("Policies/escalation-policy.md")
	req := chat("Summarize the login loop and the escalation rules in three bullets.")
	on := true
	req.System = &workspace.System{Citations: &workspace.Citations{Enabled: &on}}
	req.Thinking = &workspace.Thinking{Enabled: true}
	in := e.createInteraction(th.ID, req, a, b)
	cites, srcs := workspace.References(in.AssistantOutput.Content)
	if len(srcs) != 2 || srcs[0].ArtifactID != a || srcs[0].Title != "TCK-1041-login-loop.md" || srcs[0].Page != 1 || srcs[1].ArtifactID != b {
		t.Errorf("sources = %+v", srcs)
	}
	if len(cites) != 2 || cites[0].ArtifactID != a || cites[0].SourceID != srcs[0].ID || cites[1].ArtifactID != b {
		t.Errorf("citations = %+v", cites)
	}
	var thinking string
	for _, blk := range in.AssistantOutput.Content {
		if blk.Type == "thinking" {
			thinking = blk.Thinking
		}
	}
	if thinking == "" || strings.Contains(in.Output(), thinking) {
		t.Errorf("thinking block %q missing or in the text %q", thinking, in.Output())
	}
	want := workspace.EstimateTokens(in.Output()) + workspace.EstimateTokens(thinking)
	if got := int64(in.Usage().OutputTokens); got != want {
		t.Errorf("output tokens = %d, want %d (text and thinking)", got, want)
	}
	// The stream sends the thinking and source blocks before the text; its
	// text is the answer's alone.
	_, _, body := e.send(e.request("GET", "/api/v1/app/interaction/"+in.ID+"/stream", nil))
	evs, err := newSSEReader(bytes.NewReader(body)).readAll()
	if err != nil {
		t.Fatal(err)
	}
	names := strings.Join(eventNames(evs), " ")
	if !strings.HasPrefix(names, "message_start content_block_start content_block_delta content_block_stop content_block_synthetic content_block_start") ||
		!strings.Contains(string(body), `"thinking_delta"`) || !strings.Contains(string(body), `"type":"source"`) {
		t.Errorf("stream events: %s", names)
	}
	var text strings.Builder
	for _, ev := range evs {
		if d, ok := ev.Data["delta"].(map[string]any); ok && d["type"] == "text_delta" {
			text.WriteString(d["text"].(string))
		}
	}
	if got := text.String(); got != in.Output() {
		t.Errorf("stream text %q, want the answer %q", got, in.Output())
	}
	plain := e.createInteraction(th.ID, chat("Summarize the login loop in three bullets."), a)
	if c, s := workspace.References(plain.AssistantOutput.Content); len(c)+len(s) > 0 || len(plain.AssistantOutput.Content) != 1 {
		t.Errorf("without citations: %+v", plain.AssistantOutput.Content)
	}
}
