package pipelines_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/threadmill/threadmill/pipelines"
)

const reuseYAML = `version: 1
name: digest
workspace: { project: proj_1 }
artifacts:
  docs: { folder: Inbox }
  policy: { ids: [artifact_policy] }
steps:
  - id: summarize
    for_each: docs
    artifacts: [policy]
    reuse: unchanged
    thread: { name: "{{ .Run.ID }} {{ .Artifact.Name }}" }
    prompt: "Summarize {{ .Artifact.Name }}."
`

func planReuse(t testing.TB, yaml, runID string, sets map[string][]pipelines.ArtifactRef) []pipelines.Item {
	t.Helper()
	p, err := pipelines.Parse("reuse.yaml", []byte(yaml), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	items, err := pipelines.Plan(p, "summarize", pipelines.RunInfo{ID: runID, Time: time.Date(2026, 7, 6, 9, 0, 0, 0, time.UTC)}, sets, nil)
	if err != nil {
		t.Fatal(err)
	}
	return items
}

func reuseSets(docUpdated time.Time, policyState string) map[string][]pipelines.ArtifactRef {
	t0 := time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)
	return map[string][]pipelines.ArtifactRef{
		"docs": {
			{ID: "artifact_a", Name: "a.md", Type: "Document", UpdatedAt: docUpdated, State: "Published/Done"},
			{ID: "artifact_b", Name: "b.md", Type: "Document", UpdatedAt: t0, State: "Published/Done"},
		},
		"policy": {{ID: "artifact_policy", Name: "policy.md", Type: "Document", UpdatedAt: t0, State: policyState}},
	}
}

// TestReuseKeyChangesWithWhatShapesTheOutput: the key ignores the run and
// the thread name, and changes with an artifact's updated_at or state (the
// for_each artifact's or a context artifact's) and with the request.
func TestReuseKeyChangesWithWhatShapesTheOutput(t *testing.T) {
	t0 := time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)
	base := planReuse(t, reuseYAML, "run-1", reuseSets(t0, "Published/Done"))
	if base[0].ReuseKey == "" || base[0].ReuseKey == base[1].ReuseKey {
		t.Fatalf("keys %q and %q: want two different non-empty keys", base[0].ReuseKey, base[1].ReuseKey)
	}
	same := planReuse(t, reuseYAML, "run-2", reuseSets(t0, "Published/Done"))
	if same[0].ReuseKey != base[0].ReuseKey || same[0].ThreadName == base[0].ThreadName {
		t.Errorf("another run id (and thread name) changed the key")
	}
	for name, items := range map[string][]pipelines.Item{
		"updated_at of the item's artifact": planReuse(t, reuseYAML, "run-1", reuseSets(t0.Add(time.Second), "Published/Done")),
		"state of a context artifact":       planReuse(t, reuseYAML, "run-1", reuseSets(t0, "Ready/Done")),
		"the prompt":                        planReuse(t, strings.Replace(reuseYAML, "Summarize", "Sum up", 1), "run-1", reuseSets(t0, "Published/Done")),
		"max_tokens":                        planReuse(t, strings.Replace(reuseYAML, "reuse: unchanged", "reuse: unchanged\n    max_tokens: 99", 1), "run-1", reuseSets(t0, "Published/Done")),
	} {
		if items[0].ReuseKey == base[0].ReuseKey {
			t.Errorf("changing %s left the key unchanged", name)
		}
	}
	if changed := planReuse(t, reuseYAML, "run-1", reuseSets(t0.Add(time.Second), "Published/Done")); changed[1].ReuseKey != base[1].ReuseKey {
		t.Errorf("changing artifact a changed the key of the item over b")
	}
	never := planReuse(t, strings.Replace(reuseYAML, "reuse: unchanged", "reuse: never", 1), "run-1", reuseSets(t0, "Published/Done"))
	if never[0].ReuseKey != "" {
		t.Errorf("reuse: never: key %q, want none", never[0].ReuseKey)
	}
}

func TestDeliveryChecksNameTheField(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"  - id: s\n    prompt: x\n    reuse: sometimes\n", `reuse.yaml:6:12: steps[0].reuse: "sometimes" is not one of never, unchanged`},
		{"  - id: s\n    prompt: x\noutput: { publish: { name: \"{{ .Artifact.Name }}\" } }\n", `output.publish.name`},
		{"  - id: s\n    prompt: x\n    for_each: d\n    reuse: unchanged\n    thread: { per: run }\nartifacts: { d: { folder: F } }\n", `steps[0].reuse: reuse: unchanged needs a thread per item`},
		{"  - id: s\n    prompt: x\n    reuse: unchanged\n    artifacts: [every]\nartifacts: { every: { all: true } }\n", `steps[0].reuse: reuse: unchanged cannot tell whether the project changed`},
		{"  - id: s\n    prompt: x\noutput: { files: { step: t, name: x } }\n", `output.files.step: there is no step "t"`},
		{"  - id: s\n    prompt: x\noutput: { csv: ../x.csv }\n", `output.csv: "../x.csv" must be a plain file name`},
		{"  - id: s\n    prompt: x\nnotify: [ { webhook: ftp://x } ]\n", `notify[0].webhook: must be an http or https URL`},
		{"  - id: s\n    prompt: x\nnotify: [ { webhook: \"https://x\", on: [done] } ]\n", `notify[0].on[0]: "done" is not one of succeeded, failed, stopped, canceled, error`},
		{"  - id: s\n    prompt: x\nnotify: [ { webhook: \"https://x\", secret_env: \"A-B\" } ]\n", `notify[0].secret_env: "A-B" must be the name of an environment variable`},
	} {
		_, err := pipelines.Parse("reuse.yaml", []byte("version: 1\nname: n\nsteps:\n"+tc.yaml), func(string) (string, bool) { return "", false })
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.yaml, err, tc.want)
		}
	}
}

// ExampleReuseKey: the key of an item ignores the run id in its thread
// name, and changes when its artifact is updated.
func ExampleReuseKey() {
	p, _ := pipelines.Parse("ex.yaml", []byte(`version: 1
name: ex
artifacts: { docs: { folder: Inbox } }
steps:
  - id: s
    for_each: docs
    reuse: unchanged
    thread: { name: "{{ .Run.ID }}" }
    prompt: "Summarize {{ .Artifact.Name }}."
`), func(string) (string, bool) { return "", false })
	day := time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)
	key := func(runID string, updated time.Time) string {
		sets := map[string][]pipelines.ArtifactRef{"docs": {{ID: "artifact_a", Name: "a.md", UpdatedAt: updated}}}
		items, _ := pipelines.Plan(p, "s", pipelines.RunInfo{ID: runID}, sets, nil)
		return items[0].ReuseKey
	}
	fmt.Println(key("run-1", day) == key("run-2", day))
	fmt.Println(key("run-1", day) == key("run-1", day.Add(time.Hour)))
	// Output:
	// true
	// false
}
