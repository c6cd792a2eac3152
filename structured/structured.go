// Package structured is threadmill's structured-output toolkit: it compiles
// the JSON Schema a step demands of its answers (output_schema), finds the
// JSON value in an answer's text (models wrap it in prose or code fences),
// and validates it, with messages a model can act on in a repair turn.
package structured

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// schemaURL is the name a compiled output schema is registered under; it
// appears in no message.
const schemaURL = "threadmill:output_schema.json"

// Schema is a compiled output schema.
type Schema struct {
	raw    json.RawMessage
	schema *jsonschema.Schema
}

// SchemaError is a schema that does not compile: Path is the JSON pointer
// of the offending value inside the schema ("" for the whole schema), as
// a list of keys ("properties", "severity", "type").
type SchemaError struct {
	Path []string
	Msg  string
}

// Error formats the problem with its JSON pointer.
func (e *SchemaError) Error() string {
	if len(e.Path) == 0 {
		return e.Msg
	}
	return "at /" + strings.Join(e.Path, "/") + ": " + e.Msg
}

// noLoader refuses every $ref outside the schema: an output schema is
// self-contained, and compiling it must not read files or the network.
type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("$ref %q points outside the schema; an output schema must be self-contained (use $defs)", url)
}

// Compile checks raw as a JSON Schema (draft 2020-12 unless its $schema
// says otherwise) and compiles it. The error is a *SchemaError when the
// schema is JSON but not a valid schema.
func Compile(raw []byte) (*Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, &SchemaError{Msg: fmt.Sprintf("not JSON: %v", err)}
	}
	c := jsonschema.NewCompiler()
	c.UseLoader(noLoader{})
	if err := c.AddResource(schemaURL, doc); err != nil {
		return nil, &SchemaError{Msg: err.Error()}
	}
	sch, err := c.Compile(schemaURL)
	if err != nil {
		return nil, schemaError(err)
	}
	return &Schema{raw: bytes.Clone(raw), schema: sch}, nil
}

// schemaError turns a compile error into a located SchemaError.
func schemaError(err error) *SchemaError {
	if sve, ok := errors.AsType[*jsonschema.SchemaValidationError](err); ok {
		if ve, ok := errors.AsType[*jsonschema.ValidationError](sve.Err); ok {
			if leaves := Problems(ve); len(leaves) > 0 {
				return &SchemaError{Path: leaves[0].Path, Msg: leaves[0].Msg}
			}
		}
	}
	msg := err.Error()
	msg = strings.ReplaceAll(msg, schemaURL, "the schema")
	return &SchemaError{Msg: msg}
}

// Raw returns the schema's JSON as given to Compile.
func (s *Schema) Raw() json.RawMessage { return s.raw }

// Problem is one reason a value does not match a schema: Path is the JSON
// pointer of the value, as keys.
type Problem struct {
	Path []string
	Msg  string
}

// String formats the problem as "at /a/b: msg" ("at the top level" for the
// whole value).
func (p Problem) String() string {
	if len(p.Path) == 0 {
		return "at the top level: " + p.Msg
	}
	return "at /" + strings.Join(p.Path, "/") + ": " + p.Msg
}

// Problems lists the leaf errors of a validation error, sorted by path.
func Problems(ve *jsonschema.ValidationError) []Problem {
	var out []Problem
	var walk func(u jsonschema.OutputUnit)
	walk = func(u jsonschema.OutputUnit) {
		if len(u.Errors) == 0 && u.Error != nil {
			out = append(out, Problem{Path: splitPointer(u.InstanceLocation), Msg: u.Error.String()})
		}
		for _, c := range u.Errors {
			walk(c)
		}
	}
	walk(*ve.DetailedOutput())
	slices.SortStableFunc(out, func(a, b Problem) int { return slices.Compare(a.Path, b.Path) })
	return slices.CompactFunc(out, func(a, b Problem) bool { return a.String() == b.String() })
}

// splitPointer splits a JSON pointer into unescaped keys.
func splitPointer(p string) []string {
	p = strings.TrimPrefix(p, "/")
	if p == "" {
		return nil
	}
	parts := strings.Split(p, "/")
	for i, s := range parts {
		parts[i] = strings.NewReplacer("~1", "/", "~0", "~").Replace(s)
	}
	return parts
}

// Validate checks a decoded JSON value (as Decode returns it) and returns
// its problems, none when it matches.
func (s *Schema) Validate(v any) []Problem {
	err := s.schema.Validate(v)
	if err == nil {
		return nil
	}
	if ve, ok := errors.AsType[*jsonschema.ValidationError](err); ok {
		if p := Problems(ve); len(p) > 0 {
			return p
		}
	}
	return []Problem{{Msg: err.Error()}}
}

// Decode decodes one JSON value as the validator reads it (numbers kept
// exact as json.Number).
func Decode(data []byte) (any, error) {
	return jsonschema.UnmarshalJSON(bytes.NewReader(data))
}

// Check finds the JSON value in an answer's text (see Extract) and
// validates it. It returns the value's compact JSON when the answer is
// valid, and the problems otherwise (one problem when there is no JSON).
func (s *Schema) Check(text string) (json.RawMessage, []Problem) {
	raw, err := Extract(text)
	if err != nil {
		return nil, []Problem{{Msg: err.Error()}}
	}
	v, err := Decode(raw)
	if err != nil {
		return nil, []Problem{{Msg: "the JSON does not decode: " + err.Error()}}
	}
	if p := s.Validate(v); len(p) > 0 {
		return nil, p
	}
	return raw, nil
}

// Fields returns the names of a schema's top-level properties in the order
// the schema lists them: the columns of a CSV of the answers. It returns
// nil when raw is not an object schema with properties.
func Fields(raw []byte) []string {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil
	}
	var out []string
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil
		}
		key, _ := t.(string)
		if key != "properties" {
			var skip json.RawMessage
			if dec.Decode(&skip) != nil {
				return nil
			}
			continue
		}
		if t, err := dec.Token(); err != nil || t != json.Delim('{') {
			return nil
		}
		for dec.More() {
			t, err := dec.Token()
			if err != nil {
				return nil
			}
			name, _ := t.(string)
			out = append(out, name)
			var skip json.RawMessage
			if dec.Decode(&skip) != nil {
				return nil
			}
		}
		return out
	}
	return out
}

// Fields returns the schema's top-level property names in order (see the
// function Fields).
func (s *Schema) Fields() []string { return Fields(s.raw) }
