package pipelines

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

// Every example of the template reference renders to the output it shows,
// after passing the checker.
func TestTemplateDocExamples(t *testing.T) {
	for _, d := range append(TemplateFields(), TemplateFunctions()...) {
		if d.Summary == "" || d.Example == "" || strings.Contains(d.Example, "\n") {
			t.Errorf("%s: want a summary and a one-line example, got %+v", d.Name, d)
			continue
		}
		got, err := RenderTemplateExample(d.Example)
		if err != nil {
			t.Errorf("%s: %v", d.Name, err)
			continue
		}
		if got != d.Output {
			t.Errorf("%s: %s renders to %q, the reference shows %q", d.Name, d.Example, got, d.Output)
		}
	}
}

// Every function has an entry, in name order, and every entry is a function.
func TestTemplateDocCoversEveryFunction(t *testing.T) {
	var names []string
	for _, d := range TemplateFunctions() {
		names = append(names, d.Name)
		if !strings.HasPrefix(d.Usage, d.Name+" ") && d.Usage != d.Name {
			t.Errorf("%s: usage %q does not start with the name", d.Name, d.Usage)
		}
		if !strings.Contains(d.Example, d.Name) {
			t.Errorf("%s: the example %q does not use it", d.Name, d.Example)
		}
	}
	if !slices.Equal(names, FuncNames()) {
		t.Errorf("documented functions %v, the template functions are %v", names, FuncNames())
	}
}

// Every field of the template data has an entry, and every entry names a
// field.
func TestTemplateDocCoversEveryField(t *testing.T) {
	want := map[string]bool{".Vars.<key>": true}
	add := func(prefix string, v any) {
		rt := reflect.TypeOf(v)
		for i := range rt.NumField() {
			want[prefix+rt.Field(i).Name] = true
		}
	}
	add(".Run.", templateRun{})
	add(".Pipeline.", templatePipeline{})
	add(".Artifact.", templateArtifact{})
	add(".Steps.<id>.", templateStep{})
	add(".Steps.<id>.Items[].", templateItem{})
	delete(want, ".Steps.<id>.Items[].Usage")
	add(".Steps.<id>.Items[].Usage.", templateUsage{})
	for k := range ExampleTemplateData() {
		if !slices.ContainsFunc(TemplateFields(), func(d TemplateDoc) bool { return strings.HasPrefix(d.Name, "."+k+".") }) {
			t.Errorf(".%s (a key of the template data) has no entry", k)
		}
	}
	got := map[string]bool{}
	for _, d := range TemplateFields() {
		if got[d.Name] {
			t.Errorf("%s is documented twice", d.Name)
		}
		got[d.Name] = true
		if !want[d.Name] {
			t.Errorf("%s is documented but is not a field of the template data", d.Name)
		}
	}
	for k := range want {
		if !got[k] {
			t.Errorf("%s has no entry in TemplateFields", k)
		}
	}
}
