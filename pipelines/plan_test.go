package pipelines_test

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/workspace"
)

// resolvedMapReduce loads testdata/valid/map-reduce.yaml and resolves its
// sets against ws.
func resolvedMapReduce(t *testing.T, ws *simWorkspace) (*pipelines.Pipeline, map[string][]pipelines.ArtifactRef) {
	t.Helper()
	p, err := pipelines.Load("testdata/valid/map-reduce.yaml", goldenEnv)
	if err != nil {
		t.Fatal(err)
	}
	sets, err := pipelines.Resolve(context.Background(), ws.client, p, goldenRun)
	if err != nil {
		t.Fatal(err)
	}
	return p, sets
}

func TestPlanKeysAreStableAcrossReplans(t *testing.T) {
	ws := newSimWorkspace(t, "")
	p, sets := resolvedMapReduce(t, ws)
	first := planAll(t, p, goldenRun, sets)

	// A resumed run re-resolves, and the earlier step's outputs differ: the
	// keys of the items stay the same.
	sets2, err := pipelines.Resolve(context.Background(), ws.client, p, goldenRun)
	if err != nil {
		t.Fatal(err)
	}
	items, err := pipelines.Plan(p, "summarize", goldenRun, sets2, nil)
	if err != nil {
		t.Fatal(err)
	}
	prior := map[string]pipelines.StepOutput{"summarize": {Items: []pipelines.ItemOutput{{Artifact: items[0].Artifact, Output: "different"}}}}
	brief, err := pipelines.Plan(p, "brief", goldenRun, sets2, prior)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for i, it := range items {
		if it.Key != first["summarize"][i].Key {
			t.Errorf("item %d: key %q, then %q", i, first["summarize"][i].Key, it.Key)
		}
		if seen[it.Key] {
			t.Errorf("duplicate key %q", it.Key)
		}
		seen[it.Key] = true
	}
	if brief[0].Key != first["brief"][0].Key || brief[0].Key != "brief" {
		t.Errorf("brief key %q, then %q", first["brief"][0].Key, brief[0].Key)
	}
	if !strings.Contains(brief[0].Requests[0].Messages[0].Content[0].Text, "different") {
		t.Error("the brief does not read the prior output it was given")
	}
}

func TestItemKey(t *testing.T) {
	if got := pipelines.ItemKey("s", nil); got != "s" {
		t.Errorf("once: %q", got)
	}
	if got := pipelines.ItemKey("s", &pipelines.ArtifactRef{ID: "artifact_1"}); got != "s/artifact_1" {
		t.Errorf("safe id: %q", got)
	}
	a := pipelines.ItemKey("s", &pipelines.ArtifactRef{ID: "a/b c"})
	b := pipelines.ItemKey("s", &pipelines.ArtifactRef{ID: "a/b d"})
	if !strings.HasPrefix(a, "s/sha256-") || len(a) != len("s/sha256-")+16 || a == b {
		t.Errorf("unsafe ids: %q, %q", a, b)
	}
}

func TestEstimateItemTokens(t *testing.T) {
	mt := 100
	req := func(text, system string) workspace.ChatRequest {
		return workspace.ChatRequest{Messages: []workspace.Message{workspace.UserText(text)},
			System: &workspace.System{Text: system}, MaxTokens: &mt}
	}
	// Turn 1: system 2 + prompt 3 + output 100 = 105.
	// Turn 2: system 2 + prompts 3+1 + earlier answer 100 + output 100 = 206.
	got := pipelines.EstimateItemTokens([]workspace.ChatRequest{req("twelve bytes", "sys ok"), req("four", "sys ok")})
	if got != 105+206 {
		t.Errorf("estimate = %d, want %d", got, 105+206)
	}
}

// The artifacts of an item's context count their size (a token per four
// bytes) on every turn; one without a size counts UnsizedArtifactTokens and
// is named in Unsized; a chat item has none.
func TestPlanCountsTheDocuments(t *testing.T) {
	p := mustParse(t, `
version: 1
name: d
defaults: { max_tokens: 10 }
artifacts:
  docs: { folder: Docs }
  handbook: { folder: Handbook }
steps:
  - id: each
    for_each: docs
    artifacts: [handbook]
    prompt: "Summarize."
    turns: ["Shorter."]
  - id: chat
    mode: chat
    prompt: "hi"
`, nil)
	sets := map[string][]pipelines.ArtifactRef{
		"docs":     {{ID: "a1", Name: "a.md", Size: 401}, {ID: "a2", Name: "b.pdf"}},
		"handbook": {{ID: "h1", Name: "h.md", Size: 800}, {ID: "a1", Name: "a.md", Size: 401}},
	}
	items, err := pipelines.Plan(p, "each", goldenRun, sets, nil)
	if err != nil {
		t.Fatal(err)
	}
	text := pipelines.EstimateItemTokens(items[0].Requests)
	// a1: 101 tokens, h1: 200, on each of 2 turns (a1 once, though in both sets).
	if it := items[0]; it.ContextTokens != 2*(101+200) || it.EstimatedTokens != text+it.ContextTokens || it.Unsized != nil {
		t.Errorf("sized item: context %d, estimate %d (text %d), unsized %v", it.ContextTokens, it.EstimatedTokens, text, it.Unsized)
	}
	// a2 has no size; a1 still comes from the handbook set.
	if it := items[1]; it.ContextTokens != 2*(pipelines.UnsizedArtifactTokens+200+101) || !slices.Equal(it.Unsized, []string{"a2"}) {
		t.Errorf("unsized item: context %d, unsized %v", it.ContextTokens, it.Unsized)
	}
	// A turn's context is capped: a 2 MB document counts MaxContextTokens.
	big := map[string][]pipelines.ArtifactRef{"docs": {{ID: "b", Name: "b.pdf", Size: 2 << 20}}, "handbook": {}}
	items, err = pipelines.Plan(p, "each", goldenRun, big, nil)
	if err != nil {
		t.Fatal(err)
	}
	if items[0].ContextTokens != 2*pipelines.MaxContextTokens {
		t.Errorf("a 2 MB document: context %d, want %d a turn", items[0].ContextTokens, pipelines.MaxContextTokens)
	}
	chat, err := pipelines.Plan(p, "chat", goldenRun, sets, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c := chat[0]; c.ContextTokens != 0 || c.Unsized != nil {
		t.Errorf("chat item: context %d, unsized %v", c.ContextTokens, c.Unsized)
	}
}

func TestPlanErrors(t *testing.T) {
	p := mustParse(t, `
version: 1
name: e
artifacts:
  docs: { folder: Docs }
steps:
  - id: a
    for_each: docs
    prompt: "{{ .Artifact.Name }}"
  - id: b
    needs: [a]
    prompt: "{{ (index .Steps.a.Items 5).Output }}"
`, nil)
	sets := map[string][]pipelines.ArtifactRef{"docs": {{ID: "d1", Name: "one.md"}}}
	if _, err := pipelines.Plan(p, "zzz", goldenRun, sets, nil); err == nil || !strings.Contains(err.Error(), `no step "zzz"`) {
		t.Errorf("unknown step: %v", err)
	}
	if _, err := pipelines.Plan(p, "a", goldenRun, nil, nil); err == nil || !strings.Contains(err.Error(), `"docs" was not resolved`) {
		t.Errorf("unresolved set: %v", err)
	}
	if _, err := pipelines.Plan(p, "b", goldenRun, sets, nil); err == nil || !strings.Contains(err.Error(), `outputs of step "a"`) {
		t.Errorf("missing prior outputs: %v", err)
	}
	prior := map[string]pipelines.StepOutput{"a": {Items: []pipelines.ItemOutput{{Output: "x"}}}}
	if _, err := pipelines.Plan(p, "b", goldenRun, sets, prior); err == nil || !strings.Contains(err.Error(), "steps[1].prompt") {
		t.Errorf("template error at run time: %v", err)
	}
}

func TestPlanChatAndAllArtifacts(t *testing.T) {
	p := mustParse(t, `
version: 1
name: c
artifacts:
  everything: { all: true }
steps:
  - id: chat
    mode: chat
    prompt: hi
  - id: ctx
    artifacts: [everything]
    thread: { per: run }
    prompt: hi
`, nil)
	sets := map[string][]pipelines.ArtifactRef{"everything": nil}
	chat, err := pipelines.Plan(p, "chat", goldenRun, sets, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c := chat[0]; c.Mode != "chat" || c.ThreadName != "" || len(c.ArtifactIDs) != 0 || c.ArtifactIDs == nil || c.AllArtifacts {
		t.Errorf("chat item: %+v", c)
	}
	ctx, err := pipelines.Plan(p, "ctx", goldenRun, sets, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c := ctx[0]; !c.AllArtifacts || len(c.ArtifactIDs) != 0 || c.ThreadPer != "run" || c.ThreadName != "c · ctx · "+goldenRun.ID {
		t.Errorf("all_artifacts item: %+v", c)
	}
}

// BenchmarkPlan10k plans a for_each step of 10,000 artifacts with a system
// prompt, a thread name and two turns.
func BenchmarkPlan10k(b *testing.B) {
	p, err := pipelines.Parse("bench.yaml", []byte(`
version: 1
name: bench
defaults: { system: "You summarize for {{ .Vars.team }}." }
vars: { team: Support }
artifacts:
  docs: { folder: Docs }
steps:
  - id: s
    for_each: docs
    thread: { name: "{{ .Pipeline.Name }} {{ .Run.Date }} {{ .Artifact.Name }}" }
    prompt: "Summarize {{ .Artifact.Name }} in {{ .Artifact.Folder }}."
    turns: ["Shorter.", "Now one line about {{ .Artifact.ID }}."]
`), nil)
	if err != nil {
		b.Fatal(err)
	}
	refs := make([]pipelines.ArtifactRef, 10_000)
	for i := range refs {
		refs[i] = pipelines.ArtifactRef{ID: fmt.Sprintf("artifact_%016x", i), Name: fmt.Sprintf("doc-%05d.md", i), Folder: "Docs", Type: "Document"}
	}
	sets := map[string][]pipelines.ArtifactRef{"docs": refs}
	b.ReportAllocs()
	for b.Loop() {
		items, err := pipelines.Plan(p, "s", goldenRun, sets, nil)
		if err != nil || len(items) != len(refs) {
			b.Fatal(err)
		}
	}
}

// A step plan renders the items Plan returns, byte for byte, every time it
// is ranged over and from any index.
func TestStepPlanItemsFromAnIndex(t *testing.T) {
	ws := newSimWorkspace(t, "")
	p, sets := resolvedMapReduce(t, ws)
	want, err := pipelines.Plan(p, "summarize", goldenRun, sets, nil)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := pipelines.NewStepPlan(context.Background(), p, "summarize", goldenRun, pipelines.SetsOf(sets), nil)
	if err != nil {
		t.Fatal(err)
	}
	if sp.Len() != len(want) || len(want) < 2 {
		t.Fatalf("Len %d, Plan %d items; want the same, at least 2", sp.Len(), len(want))
	}
	for _, from := range []int{-1, 0, 1, len(want) - 1, len(want), len(want) + 5} {
		var got []pipelines.Item
		for it, err := range sp.ItemsFrom(context.Background(), from) {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, it)
		}
		tail := want[min(max(from, 0), len(want)):]
		if !reflect.DeepEqual(got, tail) && !(len(got) == 0 && len(tail) == 0) {
			t.Errorf("ItemsFrom(%d): %d items, differ from Plan's %d", from, len(got), len(tail))
		}
	}
}
