package pipelines_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/threadmill/threadmill/pipelines"
)

func parse(t *testing.T, src string, env map[string]string) (*pipelines.Pipeline, error) {
	t.Helper()
	return pipelines.Parse("p.yaml", []byte(src), func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	})
}

func mustParse(t *testing.T, src string, env map[string]string) *pipelines.Pipeline {
	t.Helper()
	p, err := parse(t, src, env)
	if err != nil {
		t.Fatalf("parse:\n%v", err)
	}
	return p
}

func TestDefaultsAppliedInOnePlace(t *testing.T) {
	p := mustParse(t, `
version: 1
name: d
schedule: { cron: "@daily" }
defaults: { system: "Be brief.", temperature: 0.3, agent: ProjectDeepResearch }
steps:
  - id: a
    prompt: Hi
  - id: b
    mode: chat
    max_tokens: 42
    temperature: 1.5
    prompt: Hi
`, map[string]string{"WORKSPACE_PROJECT": "proj_env"})
	a, _ := p.StepByID("a")
	b, _ := p.StepByID("b")
	checks := []struct {
		name      string
		got, want any
	}{
		{"project from WORKSPACE_PROJECT", p.Workspace.Project, "proj_env"},
		{"timezone", p.Schedule.Timezone, "UTC"},
		{"catchup", p.Schedule.Catchup, pipelines.CatchupLatest},
		{"catchup_limit", p.Schedule.CatchupLimit, pipelines.DefaultCatchupLimit},
		{"overlap", p.Schedule.Overlap, pipelines.OverlapSkip},
		{"concurrency", p.Limits.Concurrency, pipelines.DefaultConcurrency},
		{"max_attempts", p.Limits.MaxAttempts, pipelines.DefaultMaxAttempts},
		{"item_timeout", p.Limits.ItemTimeout.D(), pipelines.DefaultItemTimeout},
		{"a.mode", a.Mode, pipelines.ModeThread},
		{"a.agent", a.Agent, "ProjectDeepResearch"},
		{"a.max_tokens", a.MaxTokens, pipelines.DefaultMaxTokens},
		{"a.temperature", *a.Temperature, 0.3},
		{"a.system", a.System, "Be brief."},
		{"a.on_error", a.OnError, pipelines.OnErrorContinue},
		{"a.thread.visibility", a.Thread.Visibility, "Private"},
		{"a.thread.per", a.Thread.Per, pipelines.PerItem},
		{"b.max_tokens", b.MaxTokens, 42},
		{"b.temperature", *b.Temperature, 1.5},
		{"b.thread (chat)", b.Thread, pipelines.Thread{}},
		{"use_default_prompt", *p.Defaults.UseDefaultPrompt, true},
		{"output.dir", p.Output.Dir, pipelines.DefaultOutputDir},
		{"output.report", p.Output.Report, "b"},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	// The file's project wins over the environment.
	p2 := mustParse(t, "version: 1\nname: x\nworkspace: {project: proj_file}\nsteps: [{id: a, prompt: hi}]\n",
		map[string]string{"WORKSPACE_PROJECT": "proj_env"})
	if p2.Workspace.Project != "proj_file" {
		t.Errorf("project = %q, want the file's", p2.Workspace.Project)
	}
}

func TestPipelineRoundTripsThroughJSON(t *testing.T) {
	files, _ := filepath.Glob("testdata/valid/*.yaml")
	examples, _ := filepath.Glob("../examples/*.yaml")
	for _, f := range append(files, examples...) {
		p, err := pipelines.Load(f, goldenEnv)
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		var back pipelines.Pipeline
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if !reflect.DeepEqual(p, &back) {
			t.Errorf("%s: the pipeline changed through JSON:\n%+v\n%+v", f, p, &back)
		}
	}
}

func TestDurationJSON(t *testing.T) {
	var d pipelines.Duration
	for in, want := range map[string]time.Duration{`"90s"`: 90 * time.Second, `"1h30m"`: 90 * time.Minute, `1000`: time.Microsecond} {
		if err := json.Unmarshal([]byte(in), &d); err != nil || d.D() != want {
			t.Errorf("unmarshal %s = %v, %v; want %v", in, d.D(), err, want)
		}
	}
	if err := json.Unmarshal([]byte(`"soon"`), &d); err == nil {
		t.Error("unmarshal \"soon\": no error")
	}
	b, _ := json.Marshal(pipelines.Duration(10 * time.Minute))
	if string(b) != `"10m0s"` {
		t.Errorf("marshal 10m = %s", b)
	}
}

func TestInterpolation(t *testing.T) {
	env := map[string]string{"A": "alpha", "EMPTY": "", "N": "7"}
	p := mustParse(t, `
version: 1
name: interp
limits: { max_attempts: "${N}" }
vars:
  plain: "${A}-${A}"
  unset_default: "${NOPE:-fallback}"
  empty_default: "${EMPTY:-fallback}"
  empty_set: "[${EMPTY}]"
  escaped: "$${A} costs $5"
steps: [{id: a, prompt: "{{ .Vars.plain }}"}]
`, env)
	want := map[string]string{
		"plain": "alpha-alpha", "unset_default": "fallback", "empty_default": "fallback",
		"empty_set": "[]", "escaped": "${A} costs $5",
	}
	if !reflect.DeepEqual(p.Vars, want) {
		t.Errorf("vars = %v, want %v", p.Vars, want)
	}
	if p.Limits.MaxAttempts != 7 {
		t.Errorf("max_attempts from ${N} = %d, want 7", p.Limits.MaxAttempts)
	}
	// Every missing variable is reported, at its value.
	_, err := parse(t, "version: 1\nname: x\nvars: {a: \"${X1}\", b: \"${X2}\"}\nsteps: [{id: a, prompt: hi}]\n", nil)
	var list pipelines.ErrorList
	if !errors.As(err, &list) || len(list) != 2 || !strings.Contains(list[0].Msg, "X1") || !strings.Contains(list[1].Msg, "X2") {
		t.Errorf("want two located errors naming X1 and X2, got %v", err)
	}
}

func TestReady(t *testing.T) {
	p := mustParse(t, `
version: 1
name: dag
steps:
  - {id: a, prompt: x}
  - {id: b, prompt: x}
  - {id: c, needs: [a], prompt: x}
  - {id: d, needs: [a, c], prompt: x}
`, nil)
	for _, c := range []struct {
		done []string
		want []string
	}{
		{nil, []string{"a", "b"}},
		{[]string{"a"}, []string{"b", "c"}},
		{[]string{"a", "b", "c"}, []string{"d"}},
		{[]string{"a", "b", "c", "d"}, nil},
	} {
		done := map[string]bool{}
		for _, d := range c.done {
			done[d] = true
		}
		if got := p.Ready(done); !slices.Equal(got, c.want) {
			t.Errorf("Ready(%v) = %v, want %v", c.done, got, c.want)
		}
	}
	if got := p.Dependents("a"); !slices.Equal(got, []string{"c", "d"}) {
		t.Errorf("Dependents(a) = %v", got)
	}
}

func TestLoadErrors(t *testing.T) {
	_, err := pipelines.Load("testdata/does-not-exist.yaml", nil)
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	big := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(big, []byte("version: 1\nname: big\nsteps: [{id: a, prompt: \""+strings.Repeat("x", 5<<20)+"\"}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = pipelines.Load(big, nil)
	var list pipelines.ErrorList
	if !errors.As(err, &list) || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("oversized file: %v", err)
	}
}

func TestSecretsAreRefused(t *testing.T) {
	cases := map[string]string{
		"bearer":   `prompt: "use Bearer eyAbCdEf0123456789"`,
		"openai":   `prompt: "key sk-proj-abcdefghijklmnop1234"`,
		"jwt":      `prompt: "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"`,
		"aws":      `prompt: "AKIAIOSFODNN7EXAMPLE"`,
		"entropy":  `prompt: "token 9fK2mQ7xLp3VbR8tZw1NcY6hJ4dS0gEa"`,
		"password": `password: hunter2`,
	}
	for name, line := range cases {
		src := "version: 1\nname: s\nsteps:\n  - id: a\n    " + line + "\n"
		if !strings.Contains(line, "prompt:") {
			src += "    prompt: hi\n"
		}
		_, err := parse(t, src, nil)
		if err == nil || !strings.Contains(err.Error(), "WORKSPACE_API_TOKEN") {
			t.Errorf("%s: not refused: %v", name, err)
		}
	}
	// Things that look long but are not secrets pass.
	mustParse(t, `
version: 1
name: fine
artifacts:
  h: { ids: [artifact_2b4d6f8a1c3e5a7b, artifact_0123456789abcdef0123456789abcdef] }
steps:
  - id: a
    artifacts: [h]
    prompt: |
      Summarize the_quarterly_revenue_report_for_emea_and_apac_regions and
      https://docs.example.com/guides/getting-started/installation-on-linux
      sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
`, nil)
}

// FuzzParse: no input makes the loader panic (a panic would surface as an
// "internal error" message, which the fuzz target rejects); every problem is
// located in the file and sorted; a pipeline that loads survives JSON.
func FuzzParse(f *testing.F) {
	for _, dir := range []string{"testdata/valid", "testdata/invalid", "../examples"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Add([]byte("version: 1\nname: x\nsteps: [{id: a, prompt: '{{ range .Steps.a.Items }}{{ .Artifact.Name }}{{ end }}'}]"))
	f.Add([]byte("a: &a [*a]"))
	f.Add([]byte("\xff\xfe"))
	env := func(k string) (string, bool) { return "v_" + k, k != "UNSET" }
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := pipelines.Parse("fuzz.yaml", data, env)
		if err != nil {
			if p != nil {
				t.Fatal("a pipeline came back with an error")
			}
			var list pipelines.ErrorList
			if !errors.As(err, &list) || len(list) == 0 {
				t.Fatalf("error is not a non-empty ErrorList: %T %v", err, err)
			}
			for i, e := range list {
				if strings.Contains(e.Msg, "internal error") {
					t.Fatalf("loader panicked: %v", e)
				}
				if e.File != "fuzz.yaml" || e.Line < 0 || e.Col < 0 {
					t.Fatalf("badly located: %+v", e)
				}
				if i > 0 && (list[i-1].Line > e.Line || (list[i-1].Line == e.Line && list[i-1].Col > e.Col)) {
					t.Fatalf("not sorted: %v before %v", list[i-1], e)
				}
			}
			return
		}
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		var back pipelines.Pipeline
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(p, &back) {
			t.Fatalf("JSON round trip changed the pipeline")
		}
	})
}
