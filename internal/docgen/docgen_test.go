package docgen_test

import (
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

// TestPipelineReferenceCoversEveryKey walks the schema's property names and
// checks each appears as a documented key.
func TestPipelineReferenceCoversEveryKey(t *testing.T) {
	got, err := docgen.PipelineReference(pipelines.Schema(), "pipelines/schema.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"version", "name", "schedule", "cron", "timezone", "catchup", "workspace", "project",
		"defaults", "limits", "requests_per_minute", "max_total_tokens", "item_timeout", "artifacts", "folder",
		"updated", "steps", "for_each", "needs", "mode", "thread", "per", "prompt", "turns", "on_error", "output", "report"} {
		if !strings.Contains(got, "| `"+key+"` |") {
			t.Errorf("reference has no row for %q", key)
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
