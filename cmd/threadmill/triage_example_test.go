package main

import (
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/results"
)

// TestTicketTriageExample runs examples/ticket-triage.yaml end to end on
// the embedded default with the simulator: every ticket gets its five
// fields (valid for the step's output_schema) with citations of the
// ticket, and the report is the triage table with footnotes naming the
// tickets.
func TestTicketTriageExample(t *testing.T) {
	unsetRunnerEnv(t)
	root := t.TempDir()
	example := filepath.Join("..", "..", "examples", "ticket-triage.yaml")
	code, stdout, stderr := runnerCLI(t.Context(), "run", "--simulate", "--results", root, "--progress", "none", example)
	if code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	dir, err := results.LatestDir(root, "ticket-triage")
	if err != nil {
		t.Fatal(err)
	}
	p, err := pipelines.Load(example, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	step, _ := p.StepByID("triage")
	sch, err := step.OutputSchema.Compile()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(step.OutputSchema.Fields(), ","); got != "customer,product,severity,status,next_step" {
		t.Errorf("fields %s", got)
	}
	items := readResultItems(t, filepath.Join(dir, results.ResultsFile))
	triaged := 0
	for _, it := range items {
		if it.Step != "triage" {
			continue
		}
		triaged++
		v, err := decodeJSON(it.JSON)
		if err != nil || len(sch.Validate(v)) > 0 {
			t.Errorf("%s: json %s is not valid for the schema: %v %v", it.Artifact.Name, it.JSON, err, sch.Validate(v))
		}
		if len(it.Citations) == 0 || it.Citations[0].ArtifactID != it.Artifact.ID || len(it.Sources) == 0 {
			t.Errorf("%s: citations %+v, sources %+v", it.Artifact.Name, it.Citations, it.Sources)
		}
	}
	if triaged != 15 {
		t.Errorf("%d tickets triaged, want 15", triaged)
	}
	// The CSV has a column per schema field, after the default ones.
	f, err := os.Open(filepath.Join(dir, "triage.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1+16 {
		t.Fatalf("triage.csv has %d rows, want a header and 16 items", len(rows))
	}
	header := strings.Join(rows[0], ",")
	if !strings.HasSuffix(header, ",customer,product,severity,status,next_step") || !strings.HasPrefix(header, "step,key,") {
		t.Errorf("triage.csv header %s", header)
	}
	col := slices.Index(rows[0], "severity")
	for _, row := range rows[1:] {
		if row[0] == "triage" && !strings.HasPrefix(row[col], "P") {
			t.Errorf("row %v: severity %q", row[:2], row[col])
		}
		if row[0] == "table" && row[col] != "" {
			t.Errorf("the table step has no schema, yet severity %q", row[col])
		}
	}
	report, err := os.ReadFile(filepath.Join(dir, results.ReportFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"## Report (step `table`)", "; severity P", "; status ", "Sources: [^1]", "[^1]: TCK-1041-login-loop.md, page 1"} {
		if !strings.Contains(string(report), want) {
			t.Errorf("report.md lacks %q:\n%s", want, report)
		}
	}
}

func decodeJSON(raw json.RawMessage) (any, error) {
	var v any
	err := json.Unmarshal(raw, &v)
	return v, err
}
