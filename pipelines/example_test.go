package pipelines_test

import (
	"fmt"
	"time"

	"github.com/threadmill/threadmill/pipelines"
)

func ExampleParse() {
	src := `version: 1
name: weekly
artifacts:
  tickets: { folder: Support/Tickets }
steps:
  - id: summarize
    for_each: tikets
    promt: "Summarize {{ .Artifact.Name }}"
`
	_, err := pipelines.Parse("weekly.yaml", []byte(src), nil)
	fmt.Println(err)
	// Output:
	// weekly.yaml:7:15: steps[0].for_each: there is no artifact set "tikets"; did you mean "tickets"?
	// weekly.yaml:8:5: unknown key "promt" in steps[0]; did you mean "prompt"?
}

func ExamplePlan() {
	src := `version: 1
name: weekly
defaults: { max_tokens: 100 }
artifacts:
  tickets: { folder: Support/Tickets }
steps:
  - id: summarize
    for_each: tickets
    prompt: "Summarize {{ .Artifact.Name }}."
  - id: brief
    needs: [summarize]
    prompt: "Brief for {{ .Run.Date }}:{{ range .Steps.summarize.Items }} {{ .Output }}{{ end }}"
`
	p, err := pipelines.Parse("weekly.yaml", []byte(src), nil)
	if err != nil {
		panic(err)
	}
	run := pipelines.RunInfo{ID: "weekly@2026-06-15", Time: time.Date(2026, 6, 15, 9, 0, 0, 0, time.UTC)}
	// What Resolve returns for the set, here written by hand: the second
	// artifact has no size, so it is counted at UnsizedArtifactTokens.
	sets := map[string][]pipelines.ArtifactRef{"tickets": {
		{ID: "artifact_1", Name: "TCK-1.md", Folder: "Support/Tickets", Size: 1200},
		{ID: "artifact_2", Name: "TCK-2.md", Folder: "Support/Tickets"},
	}}
	items, _ := pipelines.Plan(p, "summarize", run, sets, nil)
	for _, it := range items {
		fmt.Printf("%s %q ~%d tokens (%d for the document; unsized %v)\n", it.Key, it.Requests[0].Messages[0].Content[0].Text,
			it.EstimatedTokens, it.ContextTokens, it.Unsized)
	}
	prior := map[string]pipelines.StepOutput{"summarize": {Items: []pipelines.ItemOutput{
		{Artifact: items[0].Artifact, Output: "Login loop."},
		{Artifact: items[1].Artifact, Output: "VAT missing."},
	}}}
	brief, _ := pipelines.Plan(p, "brief", run, sets, prior)
	fmt.Printf("%s %q\n", brief[0].Key, brief[0].Requests[0].Messages[0].Content[0].Text)
	// Output:
	// summarize/artifact_1 "Summarize TCK-1.md." ~405 tokens (300 for the document; unsized [])
	// summarize/artifact_2 "Summarize TCK-2.md." ~2105 tokens (2000 for the document; unsized [artifact_2])
	// brief "Brief for 2026-06-15: Login loop. VAT missing."
}

func ExampleOutputSchema_Fields() {
	src := `version: 1
name: triage
steps:
  - id: triage
    prompt: "Triage: the login loop of Brightline, P1."
    output_schema:
      type: object
      required: [customer, severity]
      properties:
        customer: { type: string }
        severity: { enum: [P1, P2, P3] }
        next_step: { type: string }
`
	p, err := pipelines.Parse("triage.yaml", []byte(src), nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	s, _ := p.StepByID("triage")
	fmt.Println(s.OutputSchema.Fields(), s.Repairs())
	fmt.Println(string(s.OutputSchema.ResponseFormat().JSONSchema))
	// Output:
	// [customer severity next_step] 1
	// {"type":"object","required":["customer","severity"],"properties":{"customer":{"type":"string"},"severity":{"enum":["P1","P2","P3"]},"next_step":{"type":"string"}}}
}
