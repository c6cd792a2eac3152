package docgen

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/threadmill/threadmill/pipelines"
)

// TemplateReference renders docs/templates.md from pipelines.TemplateFields
// and pipelines.TemplateFunctions. Each example's output is rendered here,
// with pipelines.ExampleTemplateData, not copied: the page shows what the
// code does. An example that fails to render, or renders to something other
// than the Output its entry states, is an error.
func TemplateReference() (string, error) {
	var b strings.Builder
	b.WriteString("# Template reference\n\n")
	b.WriteString("<!-- Generated from pipelines/templatedoc.go by `go test ./internal/docgen -update`. Do not edit: change the entries there instead. -->\n\n")
	b.WriteString(`A step's ` + "`prompt`" + `, its ` + "`turns`" + `, ` + "`system`" + ` (and ` + "`defaults.system`" + `) and ` + "`thread.name`" + ` are
[Go text/template](https://pkg.go.dev/text/template) texts. They are checked
when the file loads (` + "`threadmill validate`" + `): a field that does not exist, ` + "`.Artifact`" + `
outside a ` + "`for_each`" + ` step, ` + "`.Steps.<id>`" + ` of a step not in ` + "`needs`" + `, or a function
that does not exist is reported as ` + "`file:line:col`" + `, with "did you mean" when a
name is close to a real one:

` + "```" + `
` + misspelledExample() + `
` + "```" + `

They run with ` + "`missingkey=error`" + `: a missing key fails the item, never prints
` + "`<no value>`" + `.

Every example below is rendered by the generator of this page (and by a test)
with the data of one run of the weekly support brief: Monday 30 March 2026,
09:00 Europe/Madrid (window from the 23rd), team ` + "`Support`" + `, in a ` + "`for_each`" + ` step over
the ticket ` + "`TCK-1041-login-loop.md`" + ` that needs ` + "`summarize`" + ` (a ` + "`for_each`" + ` step with two
items) and ` + "`triage`" + ` (a step that ran once). An output with a line break or
spaces at its ends is shown as a quoted string.

Sections: [Data](#data) · [Functions](#functions) · [text/template's own](#texttemplates-own)

## Data

| field | what | example | output |
| --- | --- | --- | --- |
`)
	for _, d := range pipelines.TemplateFields() {
		if err := row(&b, "`"+d.Name+"`", d); err != nil {
			return "", err
		}
	}
	b.WriteString(`
## Functions

Besides text/template's own, in pipes too: ` + "`{{ .Artifact.Name | truncate 40 }}`" + ` is
` + "`truncate 40 .Artifact.Name`" + `.

| function | what | example | output |
| --- | --- | --- | --- |
`)
	for _, d := range pipelines.TemplateFunctions() {
		if err := row(&b, "`"+d.Usage+"`", d); err != nil {
			return "", err
		}
	}
	b.WriteString(`
## text/template's own

` + "`and`, `or`, `not`, `len`, `index`, `slice`, `print`, `printf`, `println`, `eq`, `ne`, `lt`, `le`, `gt`, `ge`, `call`, `html`, `js`, `urlquery`" + `,
and the actions ` + "`if`, `else`, `range`, `with`" + ` and variables (` + "`$x := ...`" + `); see
[text/template](https://pkg.go.dev/text/template#hdr-Functions).
` + "`{{define}}`, `{{template}}` and `{{block}}`" + ` are refused: a pipeline template is
self-contained.
`)
	return b.String(), nil
}

// misspelledExample is what `threadmill validate` says about a misspelled
// function, from the real checker.
func misspelledExample() string {
	const file = `version: 1
name: weekly
steps:
  - id: brief
    prompt: |
      Write the brief for {{ .Run.Date }},
      titled {{ .Pipeline.Name | trunacte 40 }}.
`
	_, err := pipelines.Parse("weekly.yaml", []byte(file), nil)
	if err == nil {
		return "(no error: the checker let a misspelled function through)"
	}
	return err.Error()
}

func row(b *strings.Builder, name string, d pipelines.TemplateDoc) error {
	got, err := pipelines.RenderTemplateExample(d.Example)
	if err != nil {
		return fmt.Errorf("docgen: the example of %s: %w", d.Name, err)
	}
	if got != d.Output {
		return fmt.Errorf("docgen: the example of %s, %s, renders to %q; its entry says %q", d.Name, d.Example, got, d.Output)
	}
	fmt.Fprintf(b, "| %s | %s | %s | %s |\n", cell(name), cell(d.Summary), codeCell(d.Example), codeCell(shown(got)))
	return nil
}

// shown is an output as the page shows it: quoted when a line break or
// edge spaces would be lost in a table cell.
func shown(s string) string {
	if s == "" || strings.ContainsAny(s, "\n\t") || strings.TrimSpace(s) != s {
		return strconv.Quote(s)
	}
	return s
}

// codeCell is s as a code span in a table cell: pipes escaped, and a
// fence longer than any run of backticks inside.
func codeCell(s string) string {
	fence := "`"
	for strings.Contains(s, fence) {
		fence += "`"
	}
	pad := ""
	if strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") {
		pad = " "
	}
	return fence + pad + strings.ReplaceAll(s, "|", `\|`) + pad + fence
}
