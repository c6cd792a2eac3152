package pipelines

import (
	"encoding/json"
	"time"

	"github.com/threadmill/threadmill/workspace"
)

// TemplateDoc documents one field of the template data or one template
// function: the source of docs/templates.md. Example is a template and
// Output what it renders to with ExampleTemplateData; a test renders every
// example and compares, and checks every field and function has an entry,
// so the page cannot drift from the code.
type TemplateDoc struct {
	// Name is the field path (".Run.Date") or the function name ("join").
	Name string
	// Usage is how a function is called ("truncate N S"); "" for fields.
	Usage string
	// Summary says what it is, in a sentence.
	Summary string
	// Example is a one-line template that uses it.
	Example string
	// Output is what Example renders to with the example data.
	Output string
}

// TemplateFields documents the template data, in the order of the page.
func TemplateFields() []TemplateDoc {
	return []TemplateDoc{
		{Name: ".Run.ID", Summary: "The run's id: <pipeline>@<fire time> for a scheduled run, <pipeline>-<UTC time> for a manual one, or --run-id.",
			Example: `{{ .Run.ID }}`, Output: "weekly-support-brief@2026-03-30T09:00:00+02:00"},
		{Name: ".Run.Time", Summary: "The run's (fire) time, in the schedule's zone (UTC without one); a time: format it with date.",
			Example: `{{ date "Mon 2 Jan 15:04 MST" .Run.Time }}`, Output: "Mon 30 Mar 09:00 CEST"},
		{Name: ".Run.Date", Summary: "The run's date, YYYY-MM-DD in the schedule's zone.",
			Example: `Brief {{ .Run.Date }}`, Output: "Brief 2026-03-30"},
		{Name: ".Run.Week", Summary: "The run's ISO week, YYYY-Www.",
			Example: `Week {{ .Run.Week }}`, Output: "Week 2026-W14"},
		{Name: ".Run.WindowStart", Summary: "The start of the run's window (the previous fire time), in the schedule's zone; the zero time for a manual run without a window.",
			Example: `since {{ date "2006-01-02 15:04" .Run.WindowStart }}`, Output: "since 2026-03-23 09:00"},
		{Name: ".Run.WindowEnd", Summary: "The end of the window (the fire time itself, excluded); `updated: within_run_window` keeps the artifacts updated in [WindowStart, WindowEnd).",
			Example: `until {{ date "Jan 2" .Run.WindowEnd }}`, Output: "until Mar 30"},
		{Name: ".Pipeline.Name", Summary: "The pipeline's name.",
			Example: `{{ .Pipeline.Name }}`, Output: "weekly-support-brief"},
		{Name: ".Pipeline.Description", Summary: "The pipeline's description, \"\" when it has none.",
			Example: `{{ .Pipeline.Description }}`, Output: "This week's support tickets, summarized for the team."},
		{Name: ".Vars.<key>", Summary: "A value of the file's vars (a string). A key that vars does not define is an error when the file is checked; `index .Vars \"key\"` is checked the same way.",
			Example: `Team: {{ .Vars.team }}`, Output: "Team: Support"},
		{Name: ".Artifact.ID", Summary: "The item's artifact id. .Artifact exists only in a step with for_each (and not in the name of a thread shared by the step's items).",
			Example: `{{ .Artifact.ID }}`, Output: "artifact_2b4d6f8a1c3e5a7b"},
		{Name: ".Artifact.Name", Summary: "The artifact's name.",
			Example: `Summarize {{ .Artifact.Name }}.`, Output: "Summarize TCK-1041-login-loop.md."},
		{Name: ".Artifact.Type", Summary: "The artifact type (Document, InlineText, ...).",
			Example: `{{ .Artifact.Type }}`, Output: "Document"},
		{Name: ".Artifact.Folder", Summary: "The slash-separated folder path above the artifact; \"\" at the project's top level.",
			Example: `{{ .Artifact.Folder }}`, Output: "Support/Tickets"},
		{Name: ".Artifact.UpdatedAt", Summary: "When the artifact last changed; a time.",
			Example: `{{ date "2006-01-02" .Artifact.UpdatedAt }}`, Output: "2026-03-26"},
		{Name: ".Steps.<id>.Items", Summary: "The finished items of a step this step needs, in plan order (a list). Only the steps in needs are there.",
			Example: `{{ range .Steps.summarize.Items }}[{{ .Artifact.Name }}] {{ end }}`, Output: "[TCK-1041-login-loop.md] [TCK-1042-refund-delay.md] "},
		{Name: ".Steps.<id>.Items[].Artifact", Summary: "An item's artifact, with the fields of .Artifact; nil for a step that runs once.",
			Example: `{{ (index .Steps.summarize.Items 1).Artifact.Folder }}`, Output: "Support/Tickets"},
		{Name: ".Steps.<id>.Items[].Output", Summary: "The text of an item's last answer.",
			Example: `{{ (index .Steps.summarize.Items 0).Output }}`, Output: "Login loop after SSO change; fixed by clearing cookies."},
		{Name: ".Steps.<id>.Items[].Usage.InputTokens", Summary: "The input tokens an item used, all turns together.",
			Example: `{{ (index .Steps.summarize.Items 0).Usage.InputTokens }}`, Output: "812"},
		{Name: ".Steps.<id>.Items[].Usage.OutputTokens", Summary: "The output tokens an item used.",
			Example: `{{ (index .Steps.summarize.Items 0).Usage.OutputTokens }}`, Output: "41"},
		{Name: ".Steps.<id>.Items[].Usage.Total", Summary: "Input plus output tokens.",
			Example: `{{ (index .Steps.summarize.Items 0).Usage.Total }}`, Output: "853"},
		{Name: ".Steps.<id>.Items[].JSON", Summary: "The value of an item's answer, valid for the step's output_schema: its top-level fields are .JSON.<field> (a field the answer left out is empty). Only for a step with output_schema.",
			Example: `{{ range .Steps.summarize.Items }}{{ .JSON.customer }}: {{ .JSON.severity }}; {{ end }}`, Output: "Brightline Logistics: P1; Northwind Foods: P3; "},
		{Name: ".Steps.<id>.JSON", Summary: "The JSON value of a needed step that runs once and has output_schema.",
			Example: `P1 tickets: {{ .Steps.triage.JSON.p1 }}`, Output: "P1 tickets: 0"},
		{Name: ".Steps.<id>.Output", Summary: "The output of a needed step that runs once (no for_each). For a for_each step it is an error: range over .Items, or use outputs.",
			Example: `Triage: {{ .Steps.triage.Output }}`, Output: "Triage: two P2 tickets, no P1."},
	}
}

// TemplateFunctions documents the template functions, sorted by name.
func TemplateFunctions() []TemplateDoc {
	return []TemplateDoc{
		{Name: "date", Usage: "date LAYOUT T", Summary: "T (a time) formatted with a Go layout, the reference time being Mon Jan 2 15:04:05 MST 2006.",
			Example: `{{ date "Monday, January 2" .Run.Time }}`, Output: "Monday, March 30"},
		{Name: "default", Usage: "default D V", Summary: "V, or D when V is empty (\"\", 0, nil, an empty list).",
			Example: `{{ .Pipeline.Name | default "untitled" }} / {{ default "top level" "" }}`, Output: "weekly-support-brief / top level"},
		{Name: "indent", Usage: "indent N S", Summary: "S with every line indented by N spaces (at most 80).",
			Example: `{{ indent 2 "a\nb" }}`, Output: "  a\n  b"},
		{Name: "join", Usage: "join SEP LIST", Summary: "The elements of a list joined with SEP.",
			Example: `{{ join ", " (outputs .Steps.summarize) }}`, Output: "Login loop after SSO change; fixed by clearing cookies., Refund took 12 days; customer asks for a status."},
		{Name: "json", Usage: "json V", Summary: "V as compact JSON.",
			Example: `{{ json .Vars }}`, Output: `{"team":"Support"}`},
		{Name: "lower", Usage: "lower S", Summary: "S in lower case.",
			Example: `{{ lower .Artifact.Type }}`, Output: "document"},
		{Name: "outputs", Usage: "outputs STEP", Summary: "The Output of each item of a step (.Steps.<id>), as a list: for join, range or len.",
			Example: `{{ len (outputs .Steps.summarize) }} summaries`, Output: "2 summaries"},
		{Name: "quote", Usage: "quote S", Summary: "S as a double-quoted Go string, with escapes.",
			Example: `{{ quote .Artifact.Name }}`, Output: `"TCK-1041-login-loop.md"`},
		{Name: "trim", Usage: "trim S", Summary: "S without leading and trailing white space.",
			Example: `[{{ trim "  padded  " }}]`, Output: "[padded]"},
		{Name: "truncate", Usage: "truncate N S", Summary: "At most N characters of S, the last one \"…\" when it was cut.",
			Example: `{{ truncate 12 .Artifact.Name }}`, Output: "TCK-1041-lo…"},
		{Name: "upper", Usage: "upper S", Summary: "S in upper case.",
			Example: `{{ upper .Vars.team }}`, Output: "SUPPORT"},
	}
}

// ExampleTemplateData is the data the examples of TemplateFields and
// TemplateFunctions render with: the weekly support brief's run of Monday
// 30 March 2026, 09:00 Europe/Madrid, in a for_each step that needs a
// for_each step "summarize" (two items) and a step "triage" that ran once.
// exampleTemplateScope is the scope they are checked in.
func ExampleTemplateData() map[string]any {
	p, run, artifact, prior, needs := exampleTemplateInputs()
	return templateData(p, run, artifact, prior, needs)
}

func exampleTemplateInputs() (*Pipeline, RunInfo, *ArtifactRef, map[string]StepOutput, []string) {
	loc, err := time.LoadLocation("Europe/Madrid")
	if err != nil {
		loc = time.FixedZone("CEST", 2*3600)
	}
	p := &Pipeline{
		Name:        "weekly-support-brief",
		Description: "This week's support tickets, summarized for the team.",
		Schedule:    &Schedule{Cron: "0 9 * * MON", Timezone: "Europe/Madrid"},
		Vars:        map[string]string{"team": "Support"},
		Steps: []Step{
			{ID: "summarize", OutputSchema: &OutputSchema{Schema: json.RawMessage(`{"type":"object","properties":{"customer":{"type":"string"},"severity":{"enum":["P1","P2","P3"]}}}`)}},
			{ID: "triage", OutputSchema: &OutputSchema{Schema: json.RawMessage(`{"type":"object","properties":{"p1":{"type":"integer"},"p2":{"type":"integer"}}}`)}},
		},
	}
	fire := time.Date(2026, 3, 30, 9, 0, 0, 0, loc)
	run := RunInfo{ID: "weekly-support-brief@2026-03-30T09:00:00+02:00", Time: fire,
		WindowStart: time.Date(2026, 3, 23, 9, 0, 0, 0, loc), WindowEnd: fire}
	login := &ArtifactRef{ID: "artifact_2b4d6f8a1c3e5a7b", Name: "TCK-1041-login-loop.md", Type: "Document",
		Folder: "Support/Tickets", UpdatedAt: time.Date(2026, 3, 26, 14, 5, 0, 0, time.UTC)}
	refund := &ArtifactRef{ID: "artifact_4c6e8a0b2d4f6a8c", Name: "TCK-1042-refund-delay.md", Type: "Document",
		Folder: "Support/Tickets", UpdatedAt: time.Date(2026, 3, 27, 10, 30, 0, 0, time.UTC)}
	prior := map[string]StepOutput{
		"summarize": {Items: []ItemOutput{
			{Artifact: login, Output: "Login loop after SSO change; fixed by clearing cookies.", Usage: workspace.Usage{InputTokens: 812, OutputTokens: 41},
				JSON: json.RawMessage(`{"customer":"Brightline Logistics","severity":"P1"}`)},
			{Artifact: refund, Output: "Refund took 12 days; customer asks for a status.", Usage: workspace.Usage{InputTokens: 790, OutputTokens: 37},
				JSON: json.RawMessage(`{"customer":"Northwind Foods","severity":"P3"}`)},
		}},
		"triage": {Items: []ItemOutput{{Output: "two P2 tickets, no P1.", Usage: workspace.Usage{InputTokens: 300, OutputTokens: 9},
			JSON: json.RawMessage(`{"p1":0,"p2":2}`)}}},
	}
	return p, run, login, prior, []string{"summarize", "triage"}
}

// RenderTemplateExample renders text with ExampleTemplateData, after
// checking it as a prompt of a for_each step that needs summarize (a
// for_each step) and triage: an example must pass the checker users' files
// pass. The error is the checker's first problem or the execution error.
func RenderTemplateExample(text string) (string, error) {
	p, _, _, _, needs := exampleTemplateInputs()
	sc := tplScope{forEach: true, needs: needs, allSteps: append([]string{"brief"}, needs...), stepID: "brief",
		vars: p.Vars, forEachSets: map[string]string{"summarize": "tickets"},
		schemas: map[string][]string{"summarize": p.Steps[0].OutputSchema.Fields(), "triage": p.Steps[1].OutputSchema.Fields()}}
	if probs := checkTemplate("example", text, sc); len(probs) > 0 {
		return "", &templateExampleError{text: text, msg: probs[0].msg}
	}
	return render("example", text, ExampleTemplateData())
}

type templateExampleError struct{ text, msg string }

func (e *templateExampleError) Error() string { return e.text + ": " + e.msg }
