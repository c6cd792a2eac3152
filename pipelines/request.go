package pipelines

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/threadmill/threadmill/structured"
	"github.com/threadmill/threadmill/workspace"
)

// The request surface: sampling and request settings a pipeline sets in
// defaults or per step (workspace-api.md §6), and structured outputs.

const (
	// ToolChoiceAuto lets the model decide whether to use a tool.
	ToolChoiceAuto = "auto"
	// ToolChoiceNone forbids tools.
	ToolChoiceNone = "none"

	// DefaultMaxRepairs is max_repairs when unset: one repair turn.
	DefaultMaxRepairs = 1
	maxMaxRepairs     = 5
	maxPriority       = 1000
)

// BuiltinTools maps the names of the Workspace's built-in tools to their
// type (workspace-api.md §6; the misspelled file_sematic_search is the
// documented name).
var BuiltinTools = map[string]string{
	"semantic_search":     "semantic_search_v1",
	"file_sematic_search": "file_semantic_search_v1",
	"tabular_analysis":    "tabular_analysis_v1",
	"database_query":      "database_query_v1",
	"web_search":          "web_search_v1",
	"web_extract":         "web_extract_v1",
	"list_project_files":  "list_project_files_v1",
}

// BuiltinToolNames lists the keys of BuiltinTools, sorted.
func BuiltinToolNames() []string { return slices.Sorted(maps.Keys(BuiltinTools)) }

// OutputSchema is a step's output_schema: a JSON Schema written inline in
// YAML or in a .json file next to the pipeline, checked when the pipeline
// loads. It must describe an object.
type OutputSchema struct {
	// File is the path as written when the schema comes from a file.
	File string `json:"file,omitempty"`
	// Schema is the schema's JSON (key order as written).
	Schema json.RawMessage `json:"schema"`
}

// Fields returns the names of the schema's top-level properties in the
// order written: the fields later steps read as .JSON.<field>, and the
// columns of a CSV of the step's answers.
func (o *OutputSchema) Fields() []string {
	if o == nil {
		return nil
	}
	return structured.Fields(o.Schema)
}

// Compile compiles the schema for checking answers.
func (o *OutputSchema) Compile() (*structured.Schema, error) {
	return structured.Compile(o.Schema)
}

// ResponseFormat is the response_format the schema is sent as:
// {"type": "json_schema", "json_schema": <the schema>}.
func (o *OutputSchema) ResponseFormat() *workspace.ResponseFormat {
	return &workspace.ResponseFormat{Type: "json_schema", JSONSchema: o.Schema}
}

// applyRequestDefaults fills a step's unset request settings from defaults.
func (s *Step) applyRequestDefaults(d *Defaults) {
	s.TopP = cmp.Or(s.TopP, d.TopP)
	s.Seed = cmp.Or(s.Seed, d.Seed)
	s.Thinking = cmp.Or(s.Thinking, d.Thinking)
	s.Priority = cmp.Or(s.Priority, d.Priority)
	if s.Tools == nil {
		s.Tools = slices.Clone(d.Tools)
	}
	if len(s.Tools) == 0 {
		s.Tools = nil // tools: [] and no tools are the same request
	}
	s.ToolChoice = cmp.Or(s.ToolChoice, d.ToolChoice)
	s.Citations = cmp.Or(s.Citations, d.Citations)
	if s.OutputSchema != nil && s.MaxRepairs == nil {
		n := DefaultMaxRepairs
		s.MaxRepairs = &n
	}
}

// Repairs returns the number of repair turns the step allows.
func (s *Step) Repairs() int {
	if s.OutputSchema == nil {
		return 0
	}
	if s.MaxRepairs == nil {
		return DefaultMaxRepairs
	}
	return *s.MaxRepairs
}

// CitationsOn reports whether the step asks for citations.
func (s *Step) CitationsOn() bool { return s.Citations != nil && *s.Citations }

// applyRequestSurface sets the step's request settings on a request; the
// last request of an item carries response_format.
func applyRequestSurface(req *workspace.ChatRequest, s *Step, last bool) {
	if s.TopP != nil {
		v := *s.TopP
		req.TopP = &v
	}
	if s.Seed != nil {
		v := *s.Seed
		req.Seed = &v
	}
	if s.Thinking != nil && *s.Thinking {
		req.Thinking = &workspace.Thinking{Enabled: true}
	}
	if s.Priority != nil {
		v := *s.Priority
		req.Priority = &v
	}
	for _, name := range s.Tools {
		req.Tools = append(req.Tools, workspace.Tool{Name: name, Type: BuiltinTools[name]})
	}
	switch s.ToolChoice {
	case "":
	case ToolChoiceAuto, ToolChoiceNone:
		req.ToolChoice = &workspace.ToolChoice{Type: s.ToolChoice}
	default:
		req.ToolChoice = &workspace.ToolChoice{Type: "tool", Name: s.ToolChoice}
	}
	if s.CitationsOn() {
		if req.System == nil {
			req.System = &workspace.System{}
		}
		on := true
		req.System.Citations = &workspace.Citations{Enabled: &on}
	}
	if last && s.OutputSchema != nil {
		req.ResponseFormat = s.OutputSchema.ResponseFormat()
	}
}

// checkRequestSurface checks the request settings at base (defaults or
// steps[i]).
func (c *checker) checkRequestSurface(base string, topP *float64, seed *int64, priority *int, tools []string) {
	if topP != nil && (*topP <= 0 || *topP > 1) {
		c.add(base+".top_p", "%g is out of range: it must be greater than 0 and at most 1", *topP)
	}
	if seed != nil && *seed < 0 {
		c.add(base+".seed", "%d is out of range: it must be 0 or more", *seed)
	}
	if priority != nil {
		c.intRange(base+".priority", int64(*priority), 0, maxPriority)
	}
	names := BuiltinToolNames()
	seen := map[string]bool{}
	for j, t := range tools {
		pth := fmt.Sprintf("%s.tools[%d]", base, j)
		switch {
		case seen[t]:
			c.add(pth, "tool %q is listed twice", t)
		case BuiltinTools[t] == "":
			c.oneOf(pth, t, names...)
			if t == "" {
				c.add(pth, "a tool name must not be empty (one of %s)", strings.Join(names, ", "))
			}
		}
		seen[t] = true
	}
}

// checkToolChoice checks a tool_choice against the tools it may name.
func (c *checker) checkToolChoice(path, choice string, tools []string) {
	switch {
	case choice == "":
		if c.has(path) {
			c.add(path, "must not be empty (auto, none, or one of the tools)")
		}
	case choice == ToolChoiceAuto, choice == ToolChoiceNone, slices.Contains(tools, choice):
	default:
		allowed := []string{ToolChoiceAuto, ToolChoiceNone}
		for _, t := range tools {
			if BuiltinTools[t] != "" && !slices.Contains(allowed, t) {
				allowed = append(allowed, t)
			}
		}
		msg := fmt.Sprintf("%q is not one of %s (a tool must be listed in tools to be chosen)", choice, strings.Join(allowed, ", "))
		if sg := suggest(choice, allowed); sg != "" {
			msg += fmt.Sprintf("; did you mean %q?", sg)
		}
		c.add(path, "%s", msg)
	}
}

// checkStepRequest checks a step's request settings and structured output.
func (c *checker) checkStepRequest(base string, s Step) {
	c.checkRequestSurface(base, s.TopP, s.Seed, s.Priority, s.Tools)
	tools := s.Tools
	if tools == nil {
		tools = c.p.Defaults.Tools
	}
	switch {
	case s.ToolChoice != "" || c.has(base+".tool_choice"):
		c.checkToolChoice(base+".tool_choice", s.ToolChoice, tools)
	case s.Tools != nil && c.p.Defaults.ToolChoice != "":
		if d := c.p.Defaults.ToolChoice; d != ToolChoiceAuto && d != ToolChoiceNone && !slices.Contains(tools, d) {
			c.add(base+".tools", "defaults.tool_choice %q is not one of this step's tools; set tool_choice in the step", d)
		}
	}
	if s.MaxRepairs != nil {
		if s.OutputSchema == nil && !c.isBad(base+".output_schema") {
			c.add(base+".max_repairs", "max_repairs needs output_schema: only answers checked against a schema are repaired")
		}
		c.intRange(base+".max_repairs", int64(*s.MaxRepairs), 0, maxMaxRepairs)
	}
}

// schemaFields maps the ids of the steps with output_schema to the
// schema's top-level fields.
func (c *checker) schemaFields() map[string][]string {
	m := map[string][]string{}
	for _, s := range c.p.Steps {
		if s.OutputSchema != nil {
			m[s.ID] = s.OutputSchema.Fields()
		}
	}
	return m
}

// jsonShape is the shape of .JSON of an item of step id.
func jsonShape(id string, schemas map[string][]string) *shape {
	fields, ok := schemas[id]
	if !ok {
		return &shape{kind: shapeAbsent, name: ".JSON",
			absent: fmt.Sprintf(".JSON is only set for a step with output_schema; step %s has none", id)}
	}
	s := fieldsShape(".JSON", fields...)
	s.unknown = func(f string) string {
		msg := fmt.Sprintf(".JSON.%s is not a field of the output_schema of step %s (fields: %s)", f, id, strings.Join(fields, ", "))
		if sg := suggest(f, fields); sg != "" {
			msg += fmt.Sprintf("; did you mean .JSON.%s?", sg)
		}
		return msg
	}
	return s
}

// templateJSON decodes an item's JSON for templates: objects become maps
// (numbers exact), with every top-level field of the step's schema present
// (nil when the answer left it out), so an optional field renders empty
// instead of failing the template.
func templateJSON(raw json.RawMessage, p *Pipeline, stepID string) any {
	var v any
	if len(raw) > 0 {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		if dec.Decode(&v) != nil {
			v = nil
		}
	}
	if v == nil {
		// No value (a plan preview): every field is empty.
		v = map[string]any{}
	}
	if m, ok := v.(map[string]any); ok {
		if s, ok := p.StepByID(stepID); ok {
			for _, f := range s.OutputSchema.Fields() {
				if _, ok := m[f]; !ok {
					m[f] = nil
				}
			}
		}
	}
	return v
}

// PlaceholderJSON is the stand-in value of an item of a step with
// output_schema in a plan preview, whose answers do not exist yet: each
// top-level field is "[<field> of <item key>]". It is nil for a step
// without a schema.
func PlaceholderJSON(s *Step, key string) json.RawMessage {
	if s.OutputSchema == nil {
		return nil
	}
	var b bytes.Buffer
	b.WriteByte('{')
	for i, f := range s.OutputSchema.Fields() {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(f)
		v, _ := json.Marshal("[" + f + " of " + key + "]")
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes()
}
