// Package docgen renders reference documentation from the sources of truth,
// so the docs cannot drift from the code: the pipeline format reference
// (docs/pipeline-reference.md) from the pipelines package's JSON Schema.
// Its tests fail when a committed page differs from what it renders; run
// `go test ./internal/docgen -update` to rewrite the pages.
package docgen

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// node is the part of a JSON Schema (draft 2020-12) the renderer reads.
type node struct {
	Ref                  string           `json:"$ref"`
	Title                string           `json:"title"`
	Description          string           `json:"description"`
	Type                 any              `json:"type"` // string or []string
	Const                any              `json:"const"`
	Enum                 []any            `json:"enum"`
	Properties           map[string]*node `json:"properties"`
	Required             []string         `json:"required"`
	AdditionalProperties json.RawMessage  `json:"additionalProperties"`
	PropertyNames        *node            `json:"propertyNames"`
	Items                *node            `json:"items"`
	AnyOf                []*node          `json:"anyOf"`
	OneOf                []*node          `json:"oneOf"`
	Not                  *node            `json:"not"`
	Pattern              string           `json:"pattern"`
	MinLength            *int             `json:"minLength"`
	MaxLength            *int             `json:"maxLength"`
	Minimum              *float64         `json:"minimum"`
	Maximum              *float64         `json:"maximum"`
	ExclusiveMinimum     *float64         `json:"exclusiveMinimum"`
	MinItems             *int             `json:"minItems"`
	UniqueItems          bool             `json:"uniqueItems"`
	MinProperties        *int             `json:"minProperties"`
	Defs                 map[string]*node `json:"$defs"`
	Default              any              `json:"default"`
}

// section is one object of the schema, rendered as a heading and a table.
type section struct {
	path string // e.g. "steps[].thread"
	n    *node
}

type renderer struct {
	defs     map[string]*node
	sections []section
	seen     map[string]bool
}

// PipelineReference renders the Markdown reference of the pipeline format
// from its JSON Schema. source names the schema file in the banner.
func PipelineReference(schema []byte, source string) (string, error) {
	var root node
	if err := json.Unmarshal(schema, &root); err != nil {
		return "", fmt.Errorf("docgen: %s: %w", source, err)
	}
	r := &renderer{defs: root.Defs, seen: map[string]bool{}}
	r.sections = append(r.sections, section{path: "", n: &root})
	var b strings.Builder
	fmt.Fprintf(&b, "# Pipeline reference\n\n")
	fmt.Fprintf(&b, "<!-- Generated from %s by `go test ./internal/docgen -update`. Do not edit: change the schema's descriptions instead. -->\n\n", source)
	fmt.Fprintf(&b, "%s\n\n", cell(root.Description))
	b.WriteString("Every key of a pipeline file, generated from the JSON Schema that `threadmill schema` prints and `threadmill validate` enforces (with the checks of meaning the schema cannot express: see [concepts.md](concepts.md)). Editors that read `# yaml-language-server: $schema=` complete and check these keys as you type.\n\n")
	b.WriteString("Sections: ")
	// Sections are discovered while rendering; render bodies first.
	var body strings.Builder
	for i := 0; i < len(r.sections); i++ {
		if err := r.renderSection(&body, r.sections[i]); err != nil {
			return "", err
		}
	}
	var toc []string
	for _, s := range r.sections {
		toc = append(toc, fmt.Sprintf("[%s](#%s)", heading(s.path), anchor(heading(s.path))))
	}
	b.WriteString(strings.Join(toc, " · "))
	b.WriteString("\n\n")
	b.WriteString(body.String())
	return b.String(), nil
}

// heading is a section's title: the key path in code, so that <name> is
// not taken for HTML.
func heading(path string) string {
	if path == "" {
		return "Top level"
	}
	return "`" + path + "`"
}

// anchor is GitHub's heading anchor of a plain heading.
func anchor(h string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(h) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}

// resolve follows a local $ref ("#/$defs/name"); the referring node's
// description, when set, wins over the definition's.
func (r *renderer) resolve(n *node) (*node, error) {
	if n == nil || n.Ref == "" {
		return n, nil
	}
	name, ok := strings.CutPrefix(n.Ref, "#/$defs/")
	if !ok {
		return nil, fmt.Errorf("docgen: unsupported $ref %q", n.Ref)
	}
	d, ok := r.defs[name]
	if !ok {
		return nil, fmt.Errorf("docgen: $ref %q: no such definition", n.Ref)
	}
	d, err := r.resolve(d)
	if err != nil {
		return nil, err
	}
	out := *d
	if n.Description != "" {
		out.Description = n.Description
	}
	if n.Default != nil {
		out.Default = n.Default
	}
	return &out, nil
}

func (r *renderer) renderSection(b *strings.Builder, s section) error {
	fmt.Fprintf(b, "## %s\n\n", heading(s.path))
	if s.path != "" && s.n.Description != "" {
		fmt.Fprintf(b, "%s\n\n", cell(s.n.Description))
	}
	if s.n.MinProperties != nil && *s.n.MinProperties > 0 {
		fmt.Fprintf(b, "At least %d key%s must be set.\n\n", *s.n.MinProperties, plural(*s.n.MinProperties))
	}
	if s.n.Not != nil {
		if combos := exclusions(s.n.Not); len(combos) > 0 {
			fmt.Fprintf(b, "These keys cannot be combined: %s.\n\n", strings.Join(combos, "; "))
		}
	}
	b.WriteString("| key | type | required | description |\n| --- | --- | --- | --- |\n")
	keys := make([]string, 0, len(s.n.Properties))
	for k := range s.n.Properties {
		keys = append(keys, k)
	}
	slices.SortStableFunc(keys, func(a, c string) int {
		// Required keys first, then alphabetical.
		ra, rc := slices.Contains(s.n.Required, a), slices.Contains(s.n.Required, c)
		switch {
		case ra && !rc:
			return -1
		case rc && !ra:
			return 1
		}
		return strings.Compare(a, c)
	})
	for _, k := range keys {
		p, err := r.resolve(s.n.Properties[k])
		if err != nil {
			return fmt.Errorf("%s.%s: %w", s.path, k, err)
		}
		child := k
		if s.path != "" {
			child = s.path + "." + k
		}
		typ, err := r.typeOf(p, child)
		if err != nil {
			return fmt.Errorf("%s: %w", child, err)
		}
		req := ""
		if slices.Contains(s.n.Required, k) {
			req = "yes"
		}
		desc := p.Description
		if c := constraints(p); c != "" {
			desc = strings.TrimSpace(desc + " " + c)
		}
		fmt.Fprintf(b, "| `%s` | %s | %s | %s |\n", k, typ, req, cell(desc))
	}
	b.WriteString("\n")
	return nil
}

// typeOf renders a resolved node's type; objects with properties become
// sections of their own, linked from here.
func (r *renderer) typeOf(n *node, path string) (string, error) {
	n, err := r.resolve(n)
	if err != nil {
		return "", err
	}
	if n.Const != nil {
		return "`" + literal(n.Const) + "`", nil
	}
	if len(n.Enum) > 0 {
		var vs []string
		for _, v := range n.Enum {
			vs = append(vs, "`"+literal(v)+"`")
		}
		return "one of " + strings.Join(vs, ", "), nil
	}
	if alts := append(slices.Clone(n.AnyOf), n.OneOf...); len(alts) > 0 && n.Type == nil {
		var ts []string
		for _, a := range alts {
			t, err := r.typeOf(a, path)
			if err != nil {
				return "", err
			}
			ts = append(ts, t)
		}
		return strings.Join(ts, " or "), nil
	}
	switch typeName(n) {
	case "object":
		if len(n.Properties) > 0 {
			r.addSection(path, n)
			return fmt.Sprintf("object, see [%s](#%s)", heading(path), anchor(heading(path))), nil
		}
		if len(n.AdditionalProperties) > 0 && string(n.AdditionalProperties) != "false" && string(n.AdditionalProperties) != "true" {
			var v node
			if err := json.Unmarshal(n.AdditionalProperties, &v); err != nil {
				return "", err
			}
			key := "name"
			if n.PropertyNames != nil && n.PropertyNames.Pattern != "" {
				key = "name matching `" + n.PropertyNames.Pattern + "`"
			}
			vt, err := r.typeOf(&v, path+".<name>")
			if err != nil {
				return "", err
			}
			return "map from " + key + " to " + vt, nil
		}
		return "object", nil
	case "array":
		if n.Items == nil {
			return "list", nil
		}
		it, err := r.typeOf(n.Items, path+"[]")
		if err != nil {
			return "", err
		}
		if ic := constraints(mustResolve(r, n.Items)); ic != "" && !strings.Contains(it, "see [") {
			it += " (" + strings.TrimSuffix(ic, ".") + ")"
		}
		return "list of " + it, nil
	case "":
		return "any", nil
	default:
		return typeName(n), nil
	}
}

func mustResolve(r *renderer, n *node) *node {
	out, err := r.resolve(n)
	if err != nil {
		return n
	}
	return out
}

func (r *renderer) addSection(path string, n *node) {
	if r.seen[path] {
		return
	}
	r.seen[path] = true
	r.sections = append(r.sections, section{path: path, n: n})
}

func typeName(n *node) string {
	switch t := n.Type.(type) {
	case string:
		return t
	case []any:
		var ts []string
		for _, x := range t {
			ts = append(ts, fmt.Sprint(x))
		}
		return strings.Join(ts, " or ")
	}
	if len(n.Properties) > 0 {
		return "object"
	}
	return ""
}

// constraints describes a node's limits in words.
func constraints(n *node) string {
	var cs []string
	if n.Pattern != "" {
		cs = append(cs, "Must match `"+n.Pattern+"`")
	}
	switch {
	case n.MinLength != nil && n.MaxLength != nil:
		cs = append(cs, fmt.Sprintf("%d to %d characters", *n.MinLength, *n.MaxLength))
	case n.MaxLength != nil:
		cs = append(cs, fmt.Sprintf("At most %d characters", *n.MaxLength))
	case n.MinLength != nil && *n.MinLength > 1:
		cs = append(cs, fmt.Sprintf("At least %d characters", *n.MinLength))
	case n.MinLength != nil && *n.MinLength == 1:
		cs = append(cs, "Not empty")
	}
	switch {
	case n.Minimum != nil && n.Maximum != nil:
		cs = append(cs, fmt.Sprintf("From %s to %s", num(*n.Minimum), num(*n.Maximum)))
	case n.Minimum != nil:
		cs = append(cs, "At least "+num(*n.Minimum))
	case n.ExclusiveMinimum != nil:
		cs = append(cs, "Greater than "+num(*n.ExclusiveMinimum))
	case n.Maximum != nil:
		cs = append(cs, "At most "+num(*n.Maximum))
	}
	if n.MinItems != nil && *n.MinItems > 0 {
		cs = append(cs, fmt.Sprintf("At least %d item%s", *n.MinItems, plural(*n.MinItems)))
	}
	if n.UniqueItems {
		cs = append(cs, "No duplicates")
	}
	if n.Default != nil {
		cs = append(cs, "Default `"+literal(n.Default)+"`")
	}
	if len(cs) == 0 {
		return ""
	}
	return strings.Join(cs, "; ") + "."
}

// exclusions reads `not: {anyOf: [{required: [a, b]}, ...]}` as pairs of
// keys that cannot be set together.
func exclusions(n *node) []string {
	var out []string
	for _, a := range n.AnyOf {
		if len(a.Required) < 2 {
			continue
		}
		var ks []string
		for _, k := range a.Required {
			ks = append(ks, "`"+k+"`")
		}
		out = append(out, strings.Join(ks, " with "))
	}
	return out
}

func literal(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return num(x)
	default:
		b, _ := json.Marshal(x)
		return string(b)
	}
}

func num(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// cell makes schema prose safe as Markdown inside a table cell: pipes
// escaped, whitespace folded, and outside code spans the characters
// Markdown would read as HTML (<name>) or emphasis escaped.
func cell(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	var b strings.Builder
	inCode := false
	for _, r := range s {
		switch {
		case r == '`':
			inCode = !inCode
			b.WriteRune(r)
		case r == '|':
			b.WriteString("\\|")
		case !inCode && r == '<':
			b.WriteString("&lt;")
		case !inCode && r == '>':
			b.WriteString("&gt;")
		case !inCode && (r == '*' || r == '_'):
			b.WriteByte('\\')
			b.WriteRune(r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
