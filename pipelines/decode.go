package pipelines

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// maxNodes bounds the nodes one file may expand to (aliases included), so a
// "billion laughs" file is refused instead of exhausting memory.
const maxNodes = 100_000

// decoder walks a yaml.Node tree into the format's Go types, strictly: an
// unknown key, a wrong kind or a value of the wrong type is a located error,
// and decoding goes on so that every problem of the file is reported at once.
type decoder struct {
	errs   *errs
	env    *interpolator
	secret *secretScanner
	// pos maps a field path ("steps[1].needs[0]") to its value's position;
	// keyPos to its key's position.
	pos    map[string]pos
	keyPos map[string]pos
	// raw keeps each scalar as written (before interpolation), by path.
	raw map[string]*yaml.Node
	// bad holds the paths whose value failed to decode, so the checks do
	// not pile a second message on a zero value.
	bad map[string]bool
	// typo holds the paths of known keys that an unknown key looks like a
	// misspelling of ("promt" -> steps[0].prompt): "x is required" is not
	// reported for them, the unknown key's message says it all.
	typo  map[string]bool
	nodes int
	// tooBig is set once maxNodes is exceeded; decoding stops.
	tooBig bool
}

func nodePos(n *yaml.Node) pos { return pos{n.Line, n.Column} }

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// kindName describes a node for messages.
func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "null"
		}
		return fmt.Sprintf("%q", n.Value)
	}
	return "a YAML node"
}

// fieldName is the name used in messages: the path, or "the file" at the top.
func fieldName(path string) string {
	if path == "" {
		return "the file"
	}
	return path
}

var durationType = reflect.TypeFor[Duration]()

// decode stores n into v (addressable), recording positions under path.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	if d.tooBig {
		return
	}
	d.nodes++
	if d.nodes > maxNodes {
		d.tooBig = true
		d.errs.add(nodePos(n), "the document expands to more than %d nodes (aliases?); refusing it", maxNodes)
		return
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			d.errs.add(nodePos(n), "%s: unknown alias", fieldName(path))
			return
		}
		p := nodePos(n)
		n = n.Alias
		d.pos[path] = p
		d.decodeLeaf(n, v, path, p)
		return
	}
	p := nodePos(n)
	d.pos[path] = p
	d.decodeLeaf(n, v, path, p)
}

// decodeLeaf decodes and marks path bad when a scalar (or a value of the
// wrong kind) fails to decode.
func (d *decoder) decodeLeaf(n *yaml.Node, v reflect.Value, path string, p pos) {
	before := len(d.errs.list)
	d.decodeResolved(n, v, path, p)
	if len(d.errs.list) == before {
		return
	}
	switch v.Kind() {
	case reflect.Struct, reflect.Map, reflect.Slice, reflect.Pointer:
		if _, ok := d.pos[path]; ok && !d.kindOK(n, v) {
			d.markBad(path)
		}
	default:
		d.markBad(path)
	}
}

// kindOK reports whether a node's kind fits a composite value.
func (d *decoder) kindOK(n *yaml.Node, v reflect.Value) bool {
	t := v.Type()
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		return n.Kind == yaml.MappingNode || t == durationType
	case reflect.Slice:
		return n.Kind == yaml.SequenceNode
	}
	return n.Kind == yaml.ScalarNode
}

// markBad records that the value at path did not decode.
func (d *decoder) markBad(path string) { d.bad[path] = true }

func (d *decoder) decodeResolved(n *yaml.Node, v reflect.Value, path string, p pos) {
	// A null leaves the zero value: "key:" with nothing after it.
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" && v.Kind() != reflect.String {
		return
	}
	if v.Type() == durationType {
		d.decodeDuration(n, v, path, p)
		return
	}
	if v.Type() == outputSchemaType {
		d.decodeOutputSchema(n, v, path, p)
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		nv := reflect.New(v.Type().Elem())
		d.decode(n, nv.Elem(), path)
		v.Set(nv)
	case reflect.Struct:
		d.decodeStruct(n, v, path, p)
	case reflect.Map:
		d.decodeMap(n, v, path, p)
	case reflect.Slice:
		d.decodeSlice(n, v, path, p)
	case reflect.String:
		s, ok := d.scalar(n, path, p, "a string")
		if ok {
			v.SetString(s)
		}
	case reflect.Int, reflect.Int64:
		d.decodeInt(n, v, path, p)
	case reflect.Float64:
		d.decodeFloat(n, v, path, p)
	case reflect.Bool:
		d.decodeBool(n, v, path, p)
	default:
		panic(fmt.Sprintf("pipelines: no decoder for %s", v.Type()))
	}
}

// scalar returns the interpolated text of a scalar node, or reports that a
// scalar was expected.
func (d *decoder) scalar(n *yaml.Node, path string, p pos, want string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		d.errs.add(p, "%s: expected %s, got %s", fieldName(path), want, kindName(n))
		return "", false
	}
	if n.Tag == "!!null" {
		return "", true
	}
	d.raw[path] = n
	if d.secret.scanValue(n, path) {
		d.markBad(path)
	}
	return d.env.expand(n.Value, path, p)
}

// interpolated reports whether a scalar's text came from ${VAR} interpolation,
// in which case its YAML tag says nothing about its type.
func interpolated(n *yaml.Node) bool { return strings.Contains(n.Value, "${") }

func (d *decoder) decodeInt(n *yaml.Node, v reflect.Value, path string, p pos) {
	s, ok := d.scalar(n, path, p, "an integer")
	if !ok {
		return
	}
	if n.Tag != "!!int" && !interpolated(n) {
		d.errs.add(p, "%s: expected an integer, got %s", fieldName(path), kindName(n))
		return
	}
	i, err := strconv.ParseInt(strings.ReplaceAll(strings.TrimSpace(s), "_", ""), 0, 64)
	if err != nil || (v.Kind() == reflect.Int && (i > math.MaxInt32 || i < math.MinInt32)) {
		d.errs.add(p, "%s: expected an integer, got %q", fieldName(path), s)
		return
	}
	v.SetInt(i)
}

func (d *decoder) decodeFloat(n *yaml.Node, v reflect.Value, path string, p pos) {
	s, ok := d.scalar(n, path, p, "a number")
	if !ok {
		return
	}
	if n.Tag != "!!int" && n.Tag != "!!float" && !interpolated(n) {
		d.errs.add(p, "%s: expected a number, got %s", fieldName(path), kindName(n))
		return
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		d.errs.add(p, "%s: expected a number, got %q", fieldName(path), s)
		return
	}
	v.SetFloat(f)
}

func (d *decoder) decodeBool(n *yaml.Node, v reflect.Value, path string, p pos) {
	s, ok := d.scalar(n, path, p, "true or false")
	if !ok {
		return
	}
	switch strings.TrimSpace(s) {
	case "true":
		v.SetBool(true)
	case "false":
		v.SetBool(false)
	default:
		d.errs.add(p, "%s: expected true or false, got %q", fieldName(path), s)
	}
}

func (d *decoder) decodeDuration(n *yaml.Node, v reflect.Value, path string, p pos) {
	s, ok := d.scalar(n, path, p, `a duration such as "90s" or "10m"`)
	if !ok {
		return
	}
	dur, err := parseDuration(s)
	if err != nil {
		d.errs.add(p, "%s: %v", fieldName(path), err)
		return
	}
	v.SetInt(int64(dur))
}

// parseDuration reads a Go duration ("90s", "1h30m").
func parseDuration(s string) (time.Duration, error) {
	dur, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (use a number and a unit, as in 90s, 10m or 1h30m)", s)
	}
	return dur, nil
}

func (d *decoder) decodeSlice(n *yaml.Node, v reflect.Value, path string, p pos) {
	if n.Kind != yaml.SequenceNode {
		d.errs.add(p, "%s: expected a list, got %s", fieldName(path), kindName(n))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, c := range n.Content {
		d.decode(c, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
	}
	v.Set(s)
}

// entry is one key/value pair of a mapping, after merge keys are expanded.
type entry struct {
	key, val *yaml.Node
}

// entries lists a mapping's pairs, expanding "<<" merge keys (explicit keys
// win over merged ones) and reporting duplicate keys.
func (d *decoder) entries(n *yaml.Node, path string) []entry {
	var merged, own []entry
	seen := map[string]pos{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
			merged = append(merged, d.mergeEntries(val, path)...)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			d.errs.add(nodePos(k), "%s: keys must be strings, got %s", fieldName(path), kindName(k))
			continue
		}
		if d.secret.scanMapKey(k, path) {
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.errs.add(nodePos(k), "%s: duplicate key %q (first at line %d)", fieldName(path), k.Value, first.line)
			continue
		}
		seen[k.Value] = nodePos(k)
		own = append(own, entry{k, val})
	}
	out := own
	for _, e := range merged {
		if _, ok := seen[e.key.Value]; !ok {
			seen[e.key.Value] = nodePos(e.key)
			out = append(out, e)
		}
	}
	return out
}

func (d *decoder) mergeEntries(val *yaml.Node, path string) []entry {
	d.nodes++
	if d.nodes > maxNodes {
		if !d.tooBig {
			d.tooBig = true
			d.errs.add(nodePos(val), "the document expands to more than %d nodes (aliases?); refusing it", maxNodes)
		}
		return nil
	}
	if val.Kind == yaml.AliasNode && val.Alias != nil {
		val = val.Alias
	}
	switch val.Kind {
	case yaml.MappingNode:
		return d.entries(val, path)
	case yaml.SequenceNode:
		var out []entry
		for _, c := range val.Content {
			out = append(out, d.mergeEntries(c, path)...)
		}
		return out
	}
	d.errs.add(nodePos(val), "%s: a merge key (<<) needs a mapping, got %s", fieldName(path), kindName(val))
	return nil
}

func (d *decoder) decodeMap(n *yaml.Node, v reflect.Value, path string, p pos) {
	if n.Kind != yaml.MappingNode {
		d.errs.add(p, "%s: expected a mapping, got %s", fieldName(path), kindName(n))
		return
	}
	m := reflect.MakeMap(v.Type())
	for _, e := range d.entries(n, path) {
		sub := join(path, e.key.Value)
		d.keyPos[sub] = nodePos(e.key)
		d.secret.scanKey(e.key, e.val, sub, true)
		ev := reflect.New(v.Type().Elem()).Elem()
		d.decode(e.val, ev, sub)
		m.SetMapIndex(reflect.ValueOf(e.key.Value), ev)
	}
	v.Set(m)
}

// yamlFields maps a struct's YAML keys to field indexes.
func yamlFields(t reflect.Type) (names []string, index map[string]int) {
	index = map[string]int{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		names = append(names, name)
		index[name] = i
	}
	return names, index
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string, p pos) {
	if n.Kind != yaml.MappingNode {
		d.errs.add(p, "%s: expected a mapping, got %s", fieldName(path), kindName(n))
		return
	}
	names, index := yamlFields(v.Type())
	for _, e := range d.entries(n, path) {
		key := e.key.Value
		sub := join(path, key)
		i, ok := index[key]
		if !ok {
			if d.secret.scanKey(e.key, e.val, sub, false) {
				continue
			}
			msg := fmt.Sprintf("unknown key %q in %s", key, fieldName(path))
			if s := suggest(key, names); s != "" {
				msg += fmt.Sprintf("; did you mean %q?", s)
				d.typo[join(path, s)] = true
			} else {
				msg += fmt.Sprintf(" (known keys: %s)", strings.Join(names, ", "))
			}
			d.errs.add(nodePos(e.key), "%s", msg)
			continue
		}
		d.keyPos[sub] = nodePos(e.key)
		d.decode(e.val, v.Field(i), sub)
	}
}

// suggest returns the candidate closest to s by edit distance, if it is close
// enough to be a likely typo.
func suggest(s string, candidates []string) string {
	best, bestD := "", math.MaxInt
	for _, c := range candidates {
		if dist := editDistance(strings.ToLower(s), strings.ToLower(c)); dist < bestD {
			best, bestD = c, dist
		}
	}
	limit := max(1, min(3, len(s)/3))
	if bestD <= limit {
		return best
	}
	return ""
}

// editDistance is the Damerau-Levenshtein distance (optimal string alignment)
// between a and b, in runes.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	if len(ra) > 256 || len(rb) > 256 {
		return math.MaxInt / 2
	}
	prev2 := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(rb)]
}
