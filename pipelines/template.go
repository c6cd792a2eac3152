package pipelines

import (
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"text/template/parse"
	"time"
	"unicode/utf8"
)

// Templates are Go text/template texts (prompt, turns, system, thread.name)
// executed with missingkey=error: a missing key is an error, never
// "<no value>". The data they see (.Run, .Pipeline, .Vars, .Artifact,
// .Steps) is built by templateData; the functions are funcs. Both are
// documented, with an example each, in TemplateFields and
// TemplateFunctions (templatedoc.go), from which docs/templates.md is
// generated; tests check every field and function has an entry and every
// example renders to what the page shows.
//
// The checker also reads {{ index .Vars "name" }} and {{ index .Steps "id" }}
// with a constant key like the fields they stand for.
var funcs = template.FuncMap{
	"join":     tplJoin,
	"upper":    strings.ToUpper,
	"lower":    strings.ToLower,
	"trim":     strings.TrimSpace,
	"truncate": tplTruncate,
	"indent":   tplIndent,
	"default":  tplDefault,
	"date":     tplDate,
	"json":     tplJSON,
	"quote":    strconv.Quote,
	"outputs":  tplOutputs,
}

// FuncNames lists the template functions, sorted.
func FuncNames() []string {
	names := make([]string, 0, len(funcs))
	for n := range funcs {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func tplJoin(sep string, list any) (string, error) {
	v := reflect.ValueOf(list)
	if v.Kind() != reflect.Slice && v.Kind() != reflect.Array {
		return "", fmt.Errorf("join: want a list, got %T", list)
	}
	parts := make([]string, v.Len())
	for i := range v.Len() {
		parts[i] = fmt.Sprint(v.Index(i).Interface())
	}
	return strings.Join(parts, sep), nil
}

func tplTruncate(n int, s string) string {
	if n < 0 || utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	if n == 0 {
		return ""
	}
	return string(r[:n-1]) + "…"
}

func tplIndent(n int, s string) string {
	if n <= 0 || s == "" {
		return s
	}
	pad := strings.Repeat(" ", min(n, 80))
	return pad + strings.ReplaceAll(s, "\n", "\n"+pad)
}

func tplDefault(def, v any) any {
	if v == nil {
		return def
	}
	rv := reflect.ValueOf(v)
	if rv.IsZero() || ((rv.Kind() == reflect.Slice || rv.Kind() == reflect.Map) && rv.Len() == 0) {
		return def
	}
	return v
}

func tplDate(layout string, t any) (string, error) {
	switch v := t.(type) {
	case time.Time:
		return v.Format(layout), nil
	case *time.Time:
		if v == nil {
			return "", nil
		}
		return v.Format(layout), nil
	}
	return "", fmt.Errorf("date: want a time, got %T", t)
}

func tplJSON(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

func tplOutputs(s templateStep) []string {
	out := make([]string, len(s.Items))
	for i, it := range s.Items {
		out[i] = it.Output
	}
	return out
}

// templateRun is .Run.
type templateRun struct {
	ID          string
	Time        time.Time
	Date        string
	Week        string
	WindowStart time.Time
	WindowEnd   time.Time
}

// templatePipeline is .Pipeline.
type templatePipeline struct {
	Name        string
	Description string
}

// templateStep is .Steps.<id>.
type templateStep struct {
	Items  []templateItem
	Output string
	// JSON is the value of a step that runs once and has output_schema.
	JSON any
}

// templateItem is one of .Steps.<id>.Items.
type templateItem struct {
	Artifact *templateArtifact
	Output   string
	Usage    templateUsage
	// JSON is the answer's value when the step has output_schema.
	JSON any
}

// templateUsage is .Usage of an item.
type templateUsage struct {
	InputTokens  int64
	OutputTokens int64
	Total        int64
}

// templateArtifact is .Artifact.
type templateArtifact struct {
	ID        string
	Name      string
	Type      string
	Folder    string
	UpdatedAt time.Time
}

func toTemplateArtifact(a *ArtifactRef) *templateArtifact {
	if a == nil {
		return nil
	}
	return &templateArtifact{ID: a.ID, Name: a.Name, Type: a.Type, Folder: a.Folder, UpdatedAt: a.UpdatedAt}
}

// templateData builds the data of one item's templates. artifact is nil
// outside for_each steps, and then .Artifact is absent (an error to use).
func templateData(p *Pipeline, run RunInfo, artifact *ArtifactRef, prior map[string]StepOutput, needs []string) map[string]any {
	loc := p.Location()
	t := run.Time.In(loc)
	y, w := t.ISOWeek()
	r := templateRun{
		ID: run.ID, Time: t, Date: t.Format(time.DateOnly), Week: fmt.Sprintf("%04d-W%02d", y, w),
		WindowStart: inLoc(run.WindowStart, loc), WindowEnd: inLoc(run.WindowEnd, loc),
	}
	vars := make(map[string]string, len(p.Vars))
	for k, v := range p.Vars {
		vars[k] = v
	}
	steps := make(map[string]templateStep, len(needs))
	for _, id := range needs {
		so := prior[id]
		ts := templateStep{Items: make([]templateItem, len(so.Items)), Output: so.Output}
		for i, it := range so.Items {
			ts.Items[i] = templateItem{
				Artifact: toTemplateArtifact(it.Artifact), Output: it.Output,
				Usage: templateUsage{InputTokens: int64(it.Usage.InputTokens), OutputTokens: int64(it.Usage.OutputTokens), Total: it.Usage.Total()},
				JSON:  templateJSON(it.JSON, p, id),
			}
		}
		if ts.Output == "" && len(so.Items) == 1 {
			ts.Output = so.Items[0].Output
		}
		if len(so.Items) == 1 {
			ts.JSON = ts.Items[0].JSON
		}
		steps[id] = ts
	}
	data := map[string]any{
		"Run":      r,
		"Pipeline": templatePipeline{Name: p.Name, Description: p.Description},
		"Vars":     vars,
		"Steps":    steps,
	}
	return withArtifact(data, artifact)
}

// withArtifact returns data with .Artifact set to a (absent when a is
// nil), sharing the rest: a step's items differ only in their artifact.
func withArtifact(data map[string]any, a *ArtifactRef) map[string]any {
	out := make(map[string]any, len(data)+1)
	for k, v := range data {
		if k != "Artifact" {
			out[k] = v
		}
	}
	if a != nil {
		out["Artifact"] = toTemplateArtifact(a)
	}
	return out
}

func inLoc(t time.Time, loc *time.Location) time.Time {
	if t.IsZero() {
		return t
	}
	return t.In(loc)
}

// parseTemplate parses one template text with the function set.
func parseTemplate(name, text string) (*template.Template, error) {
	return template.New(name).Funcs(funcs).Option("missingkey=error").Parse(text)
}

// render executes a template text with data.
func render(name, text string, data map[string]any) (string, error) {
	return (&renderer{}).render(name, text, data)
}

// renderer parses each template once and executes it many times: Plan
// renders the same few texts for every item of a step.
type renderer struct {
	parsed map[string]*template.Template
}

func (r *renderer) render(name, text string, data map[string]any) (string, error) {
	t, ok := r.parsed[name]
	if !ok || t == nil {
		var err error
		if t, err = parseTemplate(name, text); err != nil {
			return "", err
		}
		if r.parsed == nil {
			r.parsed = map[string]*template.Template{}
		}
		r.parsed[name] = t
	}
	var b strings.Builder
	if err := t.Execute(&b, data); err != nil {
		return "", err
	}
	return b.String(), nil
}

// ---- static checking ----

// shapeKind is what a template value is, as far as the checker knows.
type shapeKind int

const (
	shapeAny    shapeKind = iota // anything: no checks below this point
	shapeFields                  // a struct or a map with a known set of keys
	shapeList                    // a list of elem
	shapeScalar                  // a string or number: no fields
	shapeAbsent                  // a name that exists but is not available here
)

// shape describes a template value for the static checker.
type shape struct {
	kind   shapeKind
	name   string // ".Run", for messages
	fields map[string]*shape
	elem   *shape
	// unknown explains a missing field; nil means the generic message.
	unknown func(field string) string
	// absent explains why an absent value cannot be used.
	absent string
}

func fieldsShape(name string, fields ...string) *shape {
	s := &shape{kind: shapeFields, name: name, fields: map[string]*shape{}}
	for _, f := range fields {
		s.fields[f] = &shape{kind: shapeAny, name: name + "." + f}
	}
	return s
}

func artifactShape(name string) *shape {
	s := fieldsShape(name, "ID", "Name", "Type", "Folder", "UpdatedAt")
	for _, f := range []string{"ID", "Name", "Type", "Folder"} {
		s.fields[f].kind = shapeScalar
	}
	return s
}

// tplScope says what a template may use.
type tplScope struct {
	// forEach is true in a for_each step (.Artifact exists).
	forEach bool
	// perRunThread is true for the thread name of a for_each step whose
	// items share one thread: its name cannot depend on .Artifact.
	perRunThread bool
	// needs are the steps whose outputs .Steps holds; allSteps every step id.
	needs, allSteps []string
	// stepID names the step, for messages ("" for defaults).
	stepID string
	vars   map[string]string
	// forEachSets maps the steps with for_each to their set: their
	// .Output does not exist (they have one item per artifact).
	forEachSets map[string]string
	// schemas maps the steps with output_schema to its top-level fields:
	// their items have .JSON.
	schemas map[string][]string
}

// rootShape is the shape of a template's data in a scope.
func rootShape(sc tplScope) *shape {
	root := &shape{kind: shapeFields, name: "", fields: map[string]*shape{}}
	root.unknown = func(f string) string {
		msg := fmt.Sprintf(".%s does not exist (the data is .Run, .Pipeline, .Vars, .Artifact and .Steps)", f)
		if s := suggest(f, []string{"Run", "Pipeline", "Vars", "Artifact", "Steps"}); s != "" {
			msg += fmt.Sprintf("; did you mean .%s?", s)
		}
		return msg
	}
	run := fieldsShape(".Run", "ID", "Time", "Date", "Week", "WindowStart", "WindowEnd")
	run.fields["ID"].kind, run.fields["Date"].kind, run.fields["Week"].kind = shapeScalar, shapeScalar, shapeScalar
	root.fields["Run"] = run
	pl := fieldsShape(".Pipeline", "Name", "Description")
	pl.fields["Name"].kind, pl.fields["Description"].kind = shapeScalar, shapeScalar
	root.fields["Pipeline"] = pl

	vars := &shape{kind: shapeFields, name: ".Vars", fields: map[string]*shape{}}
	varNames := make([]string, 0, len(sc.vars))
	for k := range sc.vars {
		vars.fields[k] = &shape{kind: shapeScalar, name: ".Vars." + k}
		varNames = append(varNames, k)
	}
	slices.Sort(varNames)
	vars.unknown = func(f string) string {
		msg := fmt.Sprintf(".Vars.%s is not defined in vars", f)
		if s := suggest(f, varNames); s != "" {
			msg += fmt.Sprintf("; did you mean .Vars.%s?", s)
		}
		return msg
	}
	root.fields["Vars"] = vars

	switch {
	case sc.perRunThread:
		root.fields["Artifact"] = &shape{kind: shapeAbsent, name: ".Artifact",
			absent: ".Artifact cannot be used in the thread name of a step whose items share one thread (thread.per: run)"}
	case sc.forEach:
		root.fields["Artifact"] = artifactShape(".Artifact")
	default:
		root.fields["Artifact"] = &shape{kind: shapeAbsent, name: ".Artifact",
			absent: ".Artifact is only available in a step with for_each"}
	}
	if sc.stepID == "" {
		root.fields["Artifact"].absent = ".Artifact is not available in defaults (use it in a step with for_each)"
	}

	steps := &shape{kind: shapeFields, name: ".Steps", fields: map[string]*shape{}}
	for _, id := range sc.needs {
		st := fieldsShape(".Steps."+id, "Items", "Output")
		st.fields["Output"].kind = shapeScalar
		if set, ok := sc.forEachSets[id]; ok {
			st.fields["Output"] = &shape{kind: shapeAbsent, name: ".Steps." + id + ".Output",
				absent: fmt.Sprintf(".Steps.%s.Output is only for a step that runs once; step %s runs once per artifact of %s: range over .Steps.%s.Items, or use (outputs .Steps.%s)", id, id, set, id, id)}
		}
		item := fieldsShape(".Steps."+id+".Items[]", "Artifact", "Output", "Usage", "JSON")
		item.fields["JSON"] = jsonShape(id, sc.schemas)
		st.fields["JSON"] = jsonShape(id, sc.schemas)
		if _, ok := sc.forEachSets[id]; ok {
			st.fields["JSON"] = &shape{kind: shapeAbsent, name: ".Steps." + id + ".JSON",
				absent: fmt.Sprintf(".Steps.%s.JSON is only for a step that runs once; range over .Steps.%s.Items and use .JSON", id, id)}
		}
		item.fields["Artifact"] = artifactShape(".Artifact")
		item.fields["Output"].kind = shapeScalar
		item.fields["Usage"] = fieldsShape(".Usage", "InputTokens", "OutputTokens", "Total")
		st.fields["Items"] = &shape{kind: shapeList, name: ".Steps." + id + ".Items", elem: item}
		steps.fields[id] = st
	}
	steps.unknown = func(f string) string {
		if slices.Contains(sc.allSteps, f) {
			if f == sc.stepID {
				return fmt.Sprintf(".Steps.%s is this step itself; a step reads only the steps in its needs", f)
			}
			return fmt.Sprintf(".Steps.%s: step %q is not in this step's needs (add needs: [%s])", f, f, f)
		}
		msg := fmt.Sprintf(".Steps.%s: there is no step %q", f, f)
		if s := suggest(f, sc.needs); s != "" {
			msg += fmt.Sprintf("; did you mean .Steps.%s?", s)
		}
		return msg
	}
	root.fields["Steps"] = steps
	return root
}

// tplProblem is a problem in a template, at a line and column of its text
// (1-based; col is 0 when only the line is known) and, when col is known,
// at byte offset off of the text.
type tplProblem struct {
	line, col, off int
	msg            string
}

// checkTemplate parses text and checks that it uses only what exists in the
// scope. It returns the problems found, positioned inside the text.
func checkTemplate(name, text string, sc tplScope) []tplProblem {
	t, err := parseTemplate(name, text)
	if err != nil {
		return []tplProblem{parseProblem(name, text, err)}
	}
	c := &tplChecker{text: text, root: rootShape(sc)}
	for _, tt := range t.Templates() {
		if tt.Tree == nil || tt.Root == nil {
			continue
		}
		if tt.Name() != name {
			c.report(tt.Root.Position(), fmt.Sprintf("{{define %q}} (or {{block}}) is not supported: a pipeline template is self-contained", tt.Name()))
			continue
		}
		c.walk(tt.Root, c.root, map[string]*shape{"$": c.root})
	}
	return c.problems
}

// parseProblem turns text/template's "template: NAME:LINE: msg" into a
// located problem. An unclosed action is placed where it started.
func parseProblem(name, text string, err error) tplProblem {
	msg := err.Error()
	rest, ok := strings.CutPrefix(msg, "template: "+name+":")
	if !ok {
		return tplProblem{line: 1, msg: msg}
	}
	lineStr, m, _ := strings.Cut(rest, ":")
	line, err2 := strconv.Atoi(lineStr)
	if err2 != nil {
		return tplProblem{line: 1, msg: "template: " + strings.TrimSpace(rest)}
	}
	m = strings.TrimSpace(m)
	if i := strings.Index(m, "started at "+name+":"); i >= 0 {
		if l, err := strconv.Atoi(m[i+len("started at "+name+":"):]); err == nil {
			line = l
			m = m[:i] + "started here"
		}
	}
	m = strings.ReplaceAll(m, name+":", "line ")
	if fn, ok := undefinedFunction(m); ok {
		return unknownFunction(text, line, fn)
	}
	return tplProblem{line: line, msg: "template: " + m}
}

// builtinFuncs are text/template's predefined functions.
var builtinFuncs = []string{"and", "call", "eq", "ge", "gt", "html", "index", "js", "le", "len", "lt", "ne", "not", "or", "print", "printf", "println", "slice", "urlquery"}

var (
	undefinedFuncRe = regexp.MustCompile(`^function "([^"]+)" not defined$`)
	actionRe        = regexp.MustCompile(`(?s)\{\{.*?\}\}`)
)

// undefinedFunction returns the name in text/template's `function "x" not
// defined`.
func undefinedFunction(msg string) (string, bool) {
	m := undefinedFuncRe.FindStringSubmatch(msg)
	if m == nil {
		return "", false
	}
	return m[1], true
}

// unknownFunction is the problem of a call to a function that does not
// exist: placed on its first use inside an action (else on line), with
// the closest function name when one is close, as a misspelled key gets.
func unknownFunction(text string, line int, fn string) tplProblem {
	msg := fmt.Sprintf("template: function %q not defined", fn)
	if s := suggest(fn, append(FuncNames(), builtinFuncs...)); s != "" {
		msg += fmt.Sprintf("; did you mean %q?", s)
	} else {
		msg += " (the functions: " + strings.Join(FuncNames(), ", ") + ", and text/template's own)"
	}
	use := regexp.MustCompile(`(^|[^\w.$])` + regexp.QuoteMeta(fn) + `\b`)
	for _, a := range actionRe.FindAllStringIndex(text, -1) {
		if m := use.FindStringSubmatchIndex(text[a[0]:a[1]]); m != nil {
			off := a[0] + m[3] // after the character before the name
			before := text[:off]
			return tplProblem{
				line: strings.Count(before, "\n") + 1,
				col:  utf8.RuneCountInString(before[strings.LastIndexByte(before, '\n')+1:]) + 1,
				off:  off,
				msg:  msg,
			}
		}
	}
	return tplProblem{line: line, msg: msg}
}

type tplChecker struct {
	text     string
	root     *shape
	problems []tplProblem
}

func (c *tplChecker) report(p parse.Pos, msg string) {
	off := min(int(p), len(c.text))
	before := c.text[:off]
	line := strings.Count(before, "\n") + 1
	col := utf8.RuneCountInString(before[strings.LastIndexByte(before, '\n')+1:]) + 1
	c.problems = append(c.problems, tplProblem{line: line, col: col, off: off, msg: msg})
}

func copyVars(v map[string]*shape) map[string]*shape {
	out := make(map[string]*shape, len(v))
	for k, s := range v {
		out[k] = s
	}
	return out
}

func (c *tplChecker) walk(n parse.Node, dot *shape, vars map[string]*shape) {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, x := range n.Nodes {
			c.walk(x, dot, vars)
		}
	case *parse.ActionNode:
		c.pipe(n.Pipe, dot, vars)
	case *parse.IfNode:
		c.pipe(n.Pipe, dot, vars)
		c.walk(n.List, dot, copyVars(vars))
		c.walk(n.ElseList, dot, copyVars(vars))
	case *parse.WithNode:
		inner := c.pipe(n.Pipe, dot, vars)
		c.walk(n.List, inner, copyVars(vars))
		c.walk(n.ElseList, dot, copyVars(vars))
	case *parse.RangeNode:
		v := copyVars(vars)
		ranged := c.pipeNoDecl(n.Pipe, dot, vars)
		elem := &shape{kind: shapeAny}
		switch ranged.kind {
		case shapeList:
			elem = ranged.elem
		case shapeScalar:
			c.report(n.Pipe.Position(), fmt.Sprintf("range over %s: it is not a list", ranged.name))
		}
		switch len(n.Pipe.Decl) {
		case 1:
			v[n.Pipe.Decl[0].Ident[0]] = elem
		case 2:
			v[n.Pipe.Decl[0].Ident[0]] = &shape{kind: shapeAny}
			v[n.Pipe.Decl[1].Ident[0]] = elem
		}
		c.walk(n.List, elem, v)
		c.walk(n.ElseList, dot, copyVars(vars))
	case *parse.TemplateNode:
		c.report(n.Position(), fmt.Sprintf("{{template %q}} is not supported: a pipeline template is self-contained", n.Name))
	}
}

// pipe checks a pipeline and returns the shape of its value, declaring its
// variables.
func (c *tplChecker) pipe(p *parse.PipeNode, dot *shape, vars map[string]*shape) *shape {
	s := c.pipeNoDecl(p, dot, vars)
	if p != nil {
		for _, d := range p.Decl {
			vars[d.Ident[0]] = s
		}
	}
	return s
}

func (c *tplChecker) pipeNoDecl(p *parse.PipeNode, dot *shape, vars map[string]*shape) *shape {
	if p == nil {
		return &shape{kind: shapeAny}
	}
	result := &shape{kind: shapeAny}
	for i, cmd := range p.Cmds {
		shapes := make([]*shape, len(cmd.Args))
		for j, arg := range cmd.Args {
			shapes[j] = c.arg(arg, dot, vars)
		}
		if i < len(p.Cmds)-1 {
			continue
		}
		switch {
		case len(cmd.Args) == 1:
			result = shapes[0]
		case isIndexOfKey(cmd):
			// {{ index .Vars "name" }} returns "" for a missing key
			// instead of failing: check the key like a field.
			result = c.fields(cmd.Args[2].Position(), shapes[1], []string{cmd.Args[2].(*parse.StringNode).Text})
		}
	}
	return result
}

// isIndexOfKey reports whether cmd is `index X "key"`, one constant key.
func isIndexOfKey(cmd *parse.CommandNode) bool {
	if len(cmd.Args) != 3 {
		return false
	}
	id, ok := cmd.Args[0].(*parse.IdentifierNode)
	_, str := cmd.Args[2].(*parse.StringNode)
	return ok && id.Ident == "index" && str
}

// arg checks one argument and returns its shape.
func (c *tplChecker) arg(n parse.Node, dot *shape, vars map[string]*shape) *shape {
	switch n := n.(type) {
	case *parse.DotNode:
		return dot
	case *parse.FieldNode:
		return c.fields(n.Position(), dot, n.Ident)
	case *parse.VariableNode:
		base, ok := vars[n.Ident[0]]
		if !ok {
			base = &shape{kind: shapeAny}
		}
		return c.fields(n.Position(), base, n.Ident[1:])
	case *parse.ChainNode:
		base := c.arg(n.Node, dot, vars)
		return c.fields(n.Position(), base, n.Field)
	case *parse.PipeNode:
		return c.pipe(n, dot, vars)
	case *parse.CommandNode:
		for _, a := range n.Args {
			c.arg(a, dot, vars)
		}
	}
	return &shape{kind: shapeAny}
}

// fields follows a chain of field names from a shape, reporting the first
// one that does not exist.
func (c *tplChecker) fields(p parse.Pos, s *shape, idents []string) *shape {
	for _, f := range idents {
		switch s.kind {
		case shapeAny:
			return s
		case shapeAbsent:
			c.report(p, s.absent)
			return &shape{kind: shapeAny}
		case shapeScalar:
			c.report(p, fmt.Sprintf("%s has no field %s (it is a single value)", s.name, f))
			return &shape{kind: shapeAny}
		case shapeList:
			c.report(p, fmt.Sprintf("%s has no field %s (it is a list: use range, or index)", s.name, f))
			return &shape{kind: shapeAny}
		case shapeFields:
			next, ok := s.fields[f]
			if !ok {
				if s.unknown != nil {
					c.report(p, s.unknown(f))
				} else {
					names := make([]string, 0, len(s.fields))
					for k := range s.fields {
						names = append(names, k)
					}
					slices.Sort(names)
					msg := fmt.Sprintf("%s has no field %s (fields: %s)", s.name, f, strings.Join(names, ", "))
					if sg := suggest(f, names); sg != "" {
						msg = fmt.Sprintf("%s has no field %s; did you mean %s.%s?", s.name, f, s.name, sg)
					}
					c.report(p, msg)
				}
				return &shape{kind: shapeAny}
			}
			s = next
		}
	}
	if s.kind == shapeAbsent {
		c.report(p, s.absent)
		return &shape{kind: shapeAny}
	}
	return s
}
