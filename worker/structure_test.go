package worker_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/threadmill/threadmill/results"
	"github.com/threadmill/threadmill/runstore"
	"github.com/threadmill/threadmill/worker"
	"github.com/threadmill/threadmill/workspace"
	"github.com/threadmill/threadmill/workspace/simulator"
)

const structuredPipeline = `
version: 1
name: structured
workspace: { project: proj_test }
defaults: { max_tokens: 200 }
artifacts:
  docs: { folder: "Inbox" }
steps:
  - id: extract
    for_each: docs
    max_repairs: 2
    prompt: "Extract the refund of {{ .Artifact.Name }}."
    output_schema:
      type: object
      required: [summary, refund]
      properties:
        summary: { type: string, description: "what failed" }
        refund: { type: integer, minimum: 0 }
  - id: table
    needs: [extract]
    artifacts: [docs]
    citations: true
    prompt: |
      Write a refund table.
      {{ range .Steps.extract.Items }}- {{ .Artifact.Name }}: {{ .JSON.refund }} euros ({{ .JSON.summary }})
      {{ end }}
`

// TestOutputSchemaRepair: with the simulator answering the first
// response_format answer of each thread without a required field, each
// item of a step with output_schema takes exactly one repair turn in its
// thread: two interactions, both billed, the second one's value recorded
// as json and read by the next step's template.
func TestOutputSchemaRepair(t *testing.T) {
	e := newEnv(t, simulator.Config{Async: true, Faults: simulator.Faults{InvalidJSON: 1}})
	e.folder("Inbox", 3)
	e.startWorker()
	st := e.wait(e.start(e.pipeline(structuredPipeline), "structured-1"), time.Minute)
	if st.Status != runstore.StatusSucceeded {
		t.Fatalf("status %q (error %q)", st.Status, st.Error)
	}
	c := e.sim.Counters()
	// 3 items x (turn + repair) + the table.
	if c.InteractionsCreated != 7 || c.Faults["invalid_json"] != 3 || c.Validations != 4 {
		t.Errorf("interactions %d, invalid_json faults %d, validations %d; want 7, 3, 4", c.InteractionsCreated, c.Faults["invalid_json"], c.Validations)
	}
	items := readItems(t, resultsFile(st.ResultDir))
	var billed int64
	for _, it := range items {
		billed += it.Usage.Total()
		if it.Step != "extract" {
			continue
		}
		if it.Repairs != 1 || len(it.Outputs) != 2 || len(it.InteractionIDs) != 2 {
			t.Errorf("%s: repairs %d, outputs %d, interactions %v; want 1, 2, 2", it.Key, it.Repairs, len(it.Outputs), it.InteractionIDs)
		}
		for turn := range 2 {
			if n := c.Correlations[worker.CorrelationID("structured-1", it.Key, turn)]; n != 1 {
				t.Errorf("%s turn %d was sent %d times", it.Key, turn, n)
			}
		}
		var v struct {
			Summary string
			Refund  *int
		}
		if err := json.Unmarshal(it.JSON, &v); err != nil || v.Summary == "" || v.Refund == nil || it.Output != it.Outputs[1] {
			t.Errorf("%s: json %s (%v), output %q", it.Key, it.JSON, err, it.Output)
		}
	}
	if billed != c.TokensIn+c.TokensOut {
		t.Errorf("results bill %d tokens, the simulator %d", billed, c.TokensIn+c.TokensOut)
	}
	table := items[len(items)-1]
	if !strings.Contains(table.Requests[0].Messages[0].Content[0].Text, "doc-0000.md: 0 euros (Document 0 reports") {
		t.Errorf("the table's prompt does not read .JSON: %q", table.Requests[0].Messages[0].Content[0].Text)
	}
	// Citations end to end: kept on the item, footnotes in the report.
	if len(table.Citations) != 3 || len(table.Sources) != 3 || table.Sources[0].Title != "doc-0000.md" {
		t.Errorf("table citations %+v, sources %+v", table.Citations, table.Sources)
	}
	report, err := os.ReadFile(filepath.Join(st.ResultDir, results.ReportFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Sources: [^1] [^2] [^3]", "[^1]: doc-0000.md, page 1 (artifact `", "[^3]: doc-0002.md, page 1"} {
		if !strings.Contains(string(report), want) {
			t.Errorf("report.md lacks %q:\n%s", want, report)
		}
	}
}

// TestOutputSchemaRepairsRunOut: answers that stay invalid fail the item
// after exactly 1 + max_repairs interactions, with the problems, and every
// interaction is billed to it.
func TestOutputSchemaRepairsRunOut(t *testing.T) {
	e := newEnv(t, simulator.Config{Faults: simulator.Faults{InvalidJSON: 10}})
	e.folder("Inbox", 2)
	e.startWorker()
	st := e.wait(e.start(e.pipeline(structuredPipeline), "structured-2"), time.Minute)
	c := e.sim.Counters()
	if c.InteractionsCreated != 2*3+1 {
		t.Errorf("interactions %d, want 7 (2 items x 3, and the table)", c.InteractionsCreated)
	}
	failed := readItems(t, filepath.Join(st.ResultDir, results.ErrorsFile))
	if len(failed) != 2 {
		t.Fatalf("%d failed items, want 2", len(failed))
	}
	for _, it := range failed {
		if it.Repairs != 2 || len(it.Outputs) != 3 || it.JSON != nil || it.Attempts != 1 ||
			!strings.Contains(it.Error, "does not match output_schema after 2 repair turn(s): at the top level: missing property 'summary'") {
			t.Errorf("%s: repairs %d, outputs %d, json %s, attempts %d, error %q", it.Key, it.Repairs, len(it.Outputs), it.JSON, it.Attempts, it.Error)
		}
	}
}

// TestOutputSchemaRepairChat: in chat mode a repair is a second chat that
// carries the first answer and the problems.
func TestOutputSchemaRepairChat(t *testing.T) {
	e := newEnv(t, simulator.Config{Faults: simulator.Faults{InvalidJSON: 1}})
	e.startWorker()
	p := e.pipeline(`
version: 1
name: chat-structured
workspace: { project: proj_test }
steps:
  - id: classify
    mode: chat
    prompt: "Classify: the invoice PDF lacks the VAT number; the customer is Acme."
    output_schema: { type: object, required: [customer], properties: { customer: { type: string } } }
`)
	st := e.wait(e.start(p, "chat-1"), time.Minute)
	if st.Status != runstore.StatusSucceeded {
		t.Fatalf("status %q (error %q)", st.Status, st.Error)
	}
	chats := e.sim.Chats()
	if len(chats) != 2 {
		t.Fatalf("%d chats, want 2", len(chats))
	}
	msgs := chats[1].Request.Messages
	if len(msgs) != 3 || msgs[1].Role != "assistant" || !strings.Contains(msgs[2].Content[0].Text, "missing property 'customer'") {
		t.Errorf("repair chat messages: %+v", msgs)
	}
	items := readItems(t, resultsFile(st.ResultDir))
	if items[0].Repairs != 1 || len(items[0].JSON) == 0 {
		t.Errorf("item: repairs %d, json %s", items[0].Repairs, items[0].JSON)
	}
}

// TestThinkingCountedNotInOutput: with thinking on, the thinking block is
// billed in the item's usage and kept out of its output, which the worker
// follows on the interaction's stream (the thinking block streams first).
func TestThinkingCountedNotInOutput(t *testing.T) {
	e := newEnv(t, simulator.Config{Async: true, Latency: 5 * time.Millisecond})
	e.folder("Inbox", 1)
	e.startWorker()
	p := e.pipeline(`
version: 1
name: thinking
workspace: { project: proj_test }
defaults: { thinking: true }
artifacts:
  docs: { folder: "Inbox" }
steps:
  - id: summarize
    for_each: docs
    prompt: "Summarize {{ .Artifact.Name }} in one sentence."
`)
	st := e.wait(e.start(p, "thinking-1"), time.Minute)
	if st.Status != runstore.StatusSucceeded {
		t.Fatalf("status %q (error %q)", st.Status, st.Error)
	}
	it := readItems(t, resultsFile(st.ResultDir))[0]
	in := e.sim.Interactions()[0]
	var thinking string
	for _, b := range in.AssistantOutput.Content {
		if b.Type == "thinking" {
			thinking = b.Thinking
		}
	}
	if thinking == "" || strings.Contains(it.Output, thinking) || it.Output != in.Output() {
		t.Errorf("thinking %q, output %q", thinking, it.Output)
	}
	if it.Requests[0].Thinking == nil || !it.Requests[0].Thinking.Enabled {
		t.Errorf("the request did not ask for thinking: %+v", it.Requests[0])
	}
	if got, want := int64(it.Usage.OutputTokens), workspace.EstimateTokens(it.Output)+workspace.EstimateTokens(thinking); got != want {
		t.Errorf("output tokens %d, want %d (answer and thinking)", got, want)
	}
}

// TestOutputSchemaRepairLostCreates: every create, repairs included, is
// answered 504 after the interaction was made (a proxy that timed out);
// the worker finds each by its correlation id, so no turn is sent twice.
func TestOutputSchemaRepairLostCreates(t *testing.T) {
	e := newEnv(t, simulator.Config{Faults: simulator.Faults{InvalidJSON: 1, LostCreate: 1}})
	e.folder("Inbox", 2)
	e.startWorker()
	st := e.wait(e.start(e.pipeline(structuredPipeline), "structured-3"), time.Minute)
	if st.Status != runstore.StatusSucceeded {
		t.Fatalf("status %q (error %q)", st.Status, st.Error)
	}
	c := e.sim.Counters()
	if c.InteractionsCreated != 2*2+1 || c.Faults["lost_create"] != 5 {
		t.Errorf("interactions %d, lost creates %d; want 5 and 5", c.InteractionsCreated, c.Faults["lost_create"])
	}
	for id, n := range c.Correlations {
		if n != 1 {
			t.Errorf("%s was sent %d times", id, n)
		}
	}
	for _, it := range readItems(t, resultsFile(st.ResultDir)) {
		if it.Step == "extract" && (it.Repairs != 1 || len(it.JSON) == 0) {
			t.Errorf("%s: repairs %d, json %s", it.Key, it.Repairs, it.JSON)
		}
	}
}
