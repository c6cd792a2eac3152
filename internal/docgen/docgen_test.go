package docgen_test

import (
	"encoding/json"
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/threadmill/threadmill/internal/docgen"
	"github.com/threadmill/threadmill/pipelines"
)

var update = flag.Bool("update", false, "rewrite the generated docs")

const referencePath = "../../docs/pipeline-reference.md"

// TestPipelineReferenceUpToDate fails when docs/pipeline-reference.md is
// not what the pipeline JSON Schema renders to.
func TestPipelineReferenceUpToDate(t *testing.T) {
	got, err := docgen.PipelineReference(pipelines.Schema(), "pipelines/schema.json")
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(referencePath, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(referencePath)
	if err != nil {
		t.Fatal(err)
	}
	if string(want) != got {
		t.Errorf("docs/pipeline-reference.md is out of date with pipelines/schema.json; run: go test ./internal/docgen -update")
	}
}

// TestPipelineReferenceCoversEveryKey walks the schema (every "properties"
// object, in $defs too) and checks each key it declares has a row in the
// reference, and that the main sections exist.
func TestPipelineReferenceCoversEveryKey(t *testing.T) {
	got, err := docgen.PipelineReference(pipelines.Schema(), "pipelines/schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var schema any
	if err := json.Unmarshal(pipelines.Schema(), &schema); err != nil {
		t.Fatal(err)
	}
	keys := map[string]bool{}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if props, ok := v["properties"].(map[string]any); ok {
				for k := range props {
					keys[k] = true
				}
			}
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(schema)
	// The keys every pipeline author meets must be among them: a walk that
	// found nothing would pass the loop below vacuously.
	for _, k := range []string{"version", "name", "schedule", "cron", "timezone", "catchup", "steps", "for_each", "prompt", "updated"} {
		if !keys[k] {
			t.Errorf("the schema walk found no key %q", k)
		}
	}
	for k := range keys {
		if !strings.Contains(got, "| `"+k+"` |") {
			t.Errorf("reference has no row for %q, which the schema declares", k)
		}
	}
	for _, sec := range []string{"## `schedule`", "## `limits`", "## `artifacts.<name>`", "## `steps[]`", "## `steps[].thread`", "## `output`"} {
		if !strings.Contains(got, sec+"\n") {
			t.Errorf("reference has no section %q", sec)
		}
	}
}

func TestPipelineReferenceErrors(t *testing.T) {
	for _, bad := range []string{`{`, `{"properties":{"a":{"$ref":"#/$defs/missing"}}}`, `{"properties":{"a":{"$ref":"http://x/y"}}}`} {
		if _, err := docgen.PipelineReference([]byte(bad), "bad.json"); err == nil {
			t.Errorf("PipelineReference(%s) succeeded", bad)
		}
	}
}

const templatesPath = "../../docs/templates.md"

// TestTemplateReferenceUpToDate fails when docs/templates.md is not what
// pipelines/templatedoc.go renders to (every example rendered anew).
func TestTemplateReferenceUpToDate(t *testing.T) {
	got, err := docgen.TemplateReference()
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(templatesPath, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(templatesPath)
	if err != nil {
		t.Fatal(err)
	}
	if string(want) != got {
		t.Errorf("docs/templates.md is out of date with pipelines/templatedoc.go; run: go test ./internal/docgen -update")
	}
}
