package pipelines_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"

	"github.com/threadmill/threadmill/pipelines"
)

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(pipelines.Schema()))
	if err != nil {
		t.Fatalf("schema is not JSON: %v", err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource(pipelines.SchemaURL, doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile(pipelines.SchemaURL)
	if err != nil {
		t.Fatalf("schema does not compile: %v", err)
	}
	return sch
}

// yamlInstance reads a YAML file as the JSON value the schema checks.
func yamlInstance(t *testing.T, path string) any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	j, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
	if err != nil {
		t.Fatal(err)
	}
	return inst
}

// TestExamplesAndValidFilesMatchSchema: every example and every valid
// fixture passes the JSON Schema, and every example loads and checks.
func TestExamplesAndValidFilesMatchSchema(t *testing.T) {
	sch := compileSchema(t)
	examples, _ := filepath.Glob("../examples/*.yaml")
	valid, _ := filepath.Glob("testdata/valid/*.yaml")
	if len(examples) < 2 {
		t.Fatalf("want at least 2 examples, found %v", examples)
	}
	for _, f := range append(examples, valid...) {
		if err := sch.Validate(yamlInstance(t, f)); err != nil {
			t.Errorf("%s does not match the schema: %v", f, err)
		}
	}
	for _, f := range examples {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		first, _, _ := strings.Cut(string(data), "\n")
		if first != "# yaml-language-server: $schema=../pipelines/schema.json" {
			t.Errorf("%s: first line %q does not point at the committed schema", f, first)
		}
		if _, err := os.Stat(filepath.Join(filepath.Dir(f), strings.TrimPrefix(first, "# yaml-language-server: $schema="))); err != nil {
			t.Errorf("%s: the schema it points at: %v", f, err)
		}
		if _, err := pipelines.Load(f, func(string) (string, bool) { return "", false }); err != nil {
			t.Errorf("example %s does not load:\n%v", f, err)
		}
	}
}

// TestSchemaRejectsShapeMistakes: the schema catches the mistakes of shape
// that the loader reports too.
func TestSchemaRejectsShapeMistakes(t *testing.T) {
	sch := compileSchema(t)
	for _, name := range []string{
		"unknown-key-typo", "unknown-top-level-key", "missing-version", "wrong-version",
		"missing-name", "bad-agent-mode-visibility", "limits-out-of-range", "wrong-scalar-types",
		"set-two-bases", "no-steps", "expected-list-and-mapping", "temperature-and-max-tokens",
		"request-surface-bad", "schema-not-object",
	} {
		if err := sch.Validate(yamlInstance(t, "testdata/invalid/"+name+".yaml")); err == nil {
			t.Errorf("testdata/invalid/%s.yaml passes the schema", name)
		}
	}
}

// TestSchemaMatchesGoTypes walks the Go types and the schema side by side:
// every YAML key of every struct is a property of the matching schema object
// (which forbids other properties), every property is a YAML key, and the
// scalar types agree.
func TestSchemaMatchesGoTypes(t *testing.T) {
	var root map[string]any
	if err := json.Unmarshal(pipelines.Schema(), &root); err != nil {
		t.Fatal(err)
	}
	w := &schemaWalker{t: t, root: root}
	w.walk(reflect.TypeFor[pipelines.Pipeline](), root, "")
	if w.structs < 9 {
		t.Errorf("walked %d struct types, want every type of the format", w.structs)
	}
}

type schemaWalker struct {
	t       *testing.T
	root    map[string]any
	structs int
}

// resolve follows a local $ref, keeping sibling keywords.
func (w *schemaWalker) resolve(s map[string]any) map[string]any {
	ref, ok := s["$ref"].(string)
	if !ok {
		return s
	}
	name, ok := strings.CutPrefix(ref, "#/$defs/")
	if !ok {
		w.t.Fatalf("unexpected $ref %q", ref)
	}
	def, ok := w.root["$defs"].(map[string]any)[name].(map[string]any)
	if !ok {
		w.t.Fatalf("$ref %q names no definition", ref)
	}
	out := map[string]any{}
	for k, v := range w.resolve(def) {
		out[k] = v
	}
	for k, v := range s {
		if k != "$ref" {
			out[k] = v
		}
	}
	return out
}

func (w *schemaWalker) walk(t reflect.Type, s map[string]any, path string) {
	s = w.resolve(s)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == reflect.TypeFor[pipelines.OutputSchema]() {
		if _, ok := s["oneOf"].([]any); !ok {
			w.t.Errorf("%s: an output schema is a path or a mapping (oneOf), the schema says %v", path, s)
		}
		return
	}
	if t == reflect.TypeFor[pipelines.Duration]() {
		if s["type"] != "string" {
			w.t.Errorf("%s: a duration is a string in YAML, the schema says %v", path, s["type"])
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		w.structs++
		if s["type"] != "object" || s["additionalProperties"] != false {
			w.t.Errorf("%s: want type object with additionalProperties false", path)
		}
		props, _ := s["properties"].(map[string]any)
		var keys []string
		for i := range t.NumField() {
			f := t.Field(i)
			key, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if key == "-" || !f.IsExported() {
				continue
			}
			keys = append(keys, key)
			ps, ok := props[key].(map[string]any)
			if !ok {
				w.t.Errorf("%s: YAML key %q (%s.%s) is missing from the schema", path, key, t.Name(), f.Name)
				continue
			}
			if _, ok := w.resolve(ps)["description"]; !ok && path != "" {
				w.t.Errorf("%s.%s: the schema has no description", path, key)
			}
			w.walk(f.Type, ps, strings.TrimPrefix(path+"."+key, "."))
		}
		for k := range props {
			if !slices.Contains(keys, k) {
				w.t.Errorf("%s: schema property %q is no YAML key of %s", path, k, t.Name())
			}
		}
	case reflect.Map:
		if s["type"] != "object" {
			w.t.Errorf("%s: want type object", path)
		}
		ap, ok := s["additionalProperties"].(map[string]any)
		if !ok {
			w.t.Errorf("%s: a map needs an additionalProperties schema", path)
			return
		}
		w.walk(t.Elem(), ap, path+".*")
	case reflect.Slice:
		if s["type"] != "array" {
			w.t.Errorf("%s: want type array", path)
		}
		items, ok := s["items"].(map[string]any)
		if !ok {
			w.t.Errorf("%s: a list needs an items schema", path)
			return
		}
		w.walk(t.Elem(), items, path+"[]")
	case reflect.String:
		if s["type"] != "string" && s["enum"] == nil {
			w.t.Errorf("%s: want type string or an enum, got %v", path, s["type"])
		}
		if enum, ok := s["enum"].([]any); ok {
			for _, e := range enum {
				if _, ok := e.(string); !ok {
					w.t.Errorf("%s: enum value %v is not a string", path, e)
				}
			}
		}
	case reflect.Int, reflect.Int64:
		if s["type"] != "integer" && s["const"] == nil {
			w.t.Errorf("%s: want type integer, got %v", path, s["type"])
		}
	case reflect.Float64:
		if s["type"] != "number" {
			w.t.Errorf("%s: want type number, got %v", path, s["type"])
		}
	case reflect.Bool:
		if s["type"] != "boolean" {
			w.t.Errorf("%s: want type boolean, got %v", path, s["type"])
		}
	default:
		w.t.Errorf("%s: no schema rule for %s", path, t)
	}
}

// TestSchemaEnumsMatchChecks: the enums of the schema are the values the
// checks accept.
func TestSchemaEnumsMatchChecks(t *testing.T) {
	var root struct {
		Defs struct {
			Agent struct{ Enum []string } `json:"agent"`
			Tools struct {
				Items struct{ Enum []string } `json:"items"`
			} `json:"tools"`
			ArtifactSet struct {
				Properties struct {
					Type struct{ Enum []string } `json:"type"`
				} `json:"properties"`
			} `json:"artifactSet"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal(pipelines.Schema(), &root); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(root.Defs.Tools.Items.Enum, pipelines.BuiltinToolNames()) {
		t.Errorf("schema tools %v, checks accept %v", root.Defs.Tools.Items.Enum, pipelines.BuiltinToolNames())
	}
	if !slices.Equal(root.Defs.Agent.Enum, pipelines.Agents) {
		t.Errorf("schema agents %v, checks accept %v", root.Defs.Agent.Enum, pipelines.Agents)
	}
	if !slices.Equal(root.Defs.ArtifactSet.Properties.Type.Enum, pipelines.ArtifactTypes) {
		t.Errorf("schema artifact types %v, checks accept %v", root.Defs.ArtifactSet.Properties.Type.Enum, pipelines.ArtifactTypes)
	}
}
