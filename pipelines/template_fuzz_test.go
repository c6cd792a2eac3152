package pipelines

import (
	"testing"
	"time"

	"github.com/threadmill/threadmill/workspace"
)

// FuzzTemplate: checking any template text never panics, and a text the
// checker accepts renders without panicking (it may still fail, e.g. on an
// index out of range, with an error).
func FuzzTemplate(f *testing.F) {
	for _, s := range []string{
		"Summarize {{ .Artifact.Name }} from {{ .Artifact.Folder }}",
		"{{ range $i, $it := .Steps.a.Items }}{{ $i }}: {{ $it.Output | truncate 20 }}{{ end }}",
		"{{ with .Vars }}{{ .team | upper }}{{ end }} {{ .Run.Week }} {{ date \"Jan 2\" .Run.Time }}",
		"{{ if .Steps.a.Output }}{{ .Steps.a.Output }}{{ else }}{{ json .Steps.a.Items }}{{ end }}",
		"{{ join \", \" (outputs .Steps.a) }} {{ indent 2 .Pipeline.Description }} {{ default \"x\" .Vars.team }}",
		"{{ (index .Steps.a.Items 0).Artifact.Name }} {{ $.Run.ID }} {{ .Nope.Deeper }}",
		"{{ define \"x\" }}{{ template \"x\" }}{{ end }}{{ template \"x\" }}",
		"{{ range .Run.ID }}{{ .Foo }}{{ end }}{{ .Vars.team.Foo }}",
		"{{",
	} {
		f.Add(s, true)
		f.Add(s, false)
	}
	p := &Pipeline{Name: "fuzz", Vars: map[string]string{"team": "Support"}}
	art := &ArtifactRef{ID: "artifact_1", Name: "a.md", Folder: "F", UpdatedAt: time.Unix(0, 0)}
	prior := map[string]StepOutput{"a": {Items: []ItemOutput{{Artifact: art, Output: "out", Usage: workspace.Usage{InputTokens: 1}}}}}
	run := RunInfo{ID: "r", Time: time.Unix(1e9, 0)}
	f.Fuzz(func(t *testing.T, text string, forEach bool) {
		sc := tplScope{forEach: forEach, needs: []string{"a"}, allSteps: []string{"a", "b"}, stepID: "b", vars: p.Vars}
		problems := checkTemplate("steps[1].prompt", text, sc)
		for _, pr := range problems {
			if pr.line < 1 || pr.msg == "" {
				t.Fatalf("badly located problem %+v", pr)
			}
		}
		if len(problems) > 0 {
			return
		}
		var a *ArtifactRef
		if forEach {
			a = art
		}
		_, _ = render("steps[1].prompt", text, templateData(p, run, a, prior, []string{"a"}))
	})
}
