package pipelines

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/threadmill/threadmill/structured"
)

var outputSchemaType = reflect.TypeFor[OutputSchema]()

// errReported stops the conversion of a schema whose problem was reported
// where it is.
var errReported = errors.New("reported")

// maxSchemaFile bounds an output_schema file.
const maxSchemaFile = 1 << 20

// decodeOutputSchema reads output_schema: an inline mapping (a JSON Schema
// written in YAML) or the path of a .json file, relative to the pipeline
// file's directory. The schema is compiled here, so a bad schema is a
// located error at load (validate) time: inside an inline schema, at the
// offending key.
func (d *decoder) decodeOutputSchema(n *yaml.Node, v reflect.Value, path string, p pos) {
	var out OutputSchema
	switch n.Kind {
	case yaml.MappingNode:
		var b bytes.Buffer
		if err := d.nodeJSON(&b, n, path); err != nil {
			if !errors.Is(err, errReported) {
				d.errs.add(p, "%s: %v", path, err)
			}
			return
		}
		out.Schema = b.Bytes()
	case yaml.ScalarNode:
		if n.Tag != "!!str" {
			d.errs.add(p, "%s: expected a mapping (an inline JSON Schema) or the path of a .json file, got %s", path, kindName(n))
			return
		}
		file := strings.TrimSpace(n.Value)
		if !strings.EqualFold(filepath.Ext(file), ".json") {
			d.errs.add(p, "%s: %q is not a .json file (write the schema inline as a mapping, or give the path of a .json file next to the pipeline)", path, file)
			return
		}
		data, err := readSchemaFile(filepath.Join(filepath.Dir(d.errs.file), file))
		if err != nil {
			d.errs.add(p, "%s: %v", path, err)
			return
		}
		out.File, out.Schema = file, data
	default:
		d.errs.add(p, "%s: expected a mapping (an inline JSON Schema) or the path of a .json file, got %s", path, kindName(n))
		return
	}
	sch, err := structured.Compile(out.Schema)
	if err != nil {
		at, where := p, ""
		if se, ok := errors.AsType[*structured.SchemaError](err); ok && n.Kind == yaml.MappingNode {
			at = nodePos(schemaNodeAt(n, se.Path))
		} else if out.File != "" {
			where = out.File + ": "
		}
		d.errs.add(at, "%s: %sinvalid JSON Schema: %v", path, where, err)
		return
	}
	if !isObjectSchema(sch.Raw()) {
		d.errs.add(p, `%s: the schema must describe a JSON object ("type": "object" at the top): later steps read its fields as .JSON.<field>`, path)
		return
	}
	v.Set(reflect.ValueOf(out))
}

// readSchemaFile reads a schema file and compacts it.
func readSchemaFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("cannot read the schema file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSchemaFile+1))
	if err != nil {
		return nil, fmt.Errorf("cannot read the schema file: %w", err)
	}
	if len(data) > maxSchemaFile {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, maxSchemaFile)
	}
	var b bytes.Buffer
	if err := json.Compact(&b, data); err != nil {
		return nil, fmt.Errorf("%s is not JSON: %v", filepath.Base(name), err)
	}
	return b.Bytes(), nil
}

func isObjectSchema(raw []byte) bool {
	var top struct {
		Type any `json:"type"`
	}
	if json.Unmarshal(raw, &top) != nil {
		return false
	}
	return top.Type == "object"
}

// schemaNodeAt follows a JSON pointer (as keys) through a YAML node and
// returns the deepest node it reaches.
func schemaNodeAt(n *yaml.Node, keys []string) *yaml.Node {
	for _, k := range keys {
		if n.Kind == yaml.AliasNode && n.Alias != nil {
			n = n.Alias
		}
		switch n.Kind {
		case yaml.MappingNode:
			found := false
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == k {
					n, found = n.Content[i+1], true
					break
				}
			}
			if !found {
				return n
			}
		case yaml.SequenceNode:
			i, err := strconv.Atoi(k)
			if err != nil || i < 0 || i >= len(n.Content) {
				return n
			}
			n = n.Content[i]
		default:
			return n
		}
	}
	return n
}

// nodeJSON writes a YAML node as JSON, keeping the order of mapping keys.
func (d *decoder) nodeJSON(b *bytes.Buffer, n *yaml.Node, path string) error {
	d.nodes++
	if d.nodes > maxNodes {
		return fmt.Errorf("the schema expands to more than %d nodes", maxNodes)
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return errors.New("unknown alias")
		}
		n = n.Alias
	}
	switch n.Kind {
	case yaml.MappingNode:
		b.WriteByte('{')
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Kind != yaml.ScalarNode || k.Tag == "!!merge" {
				return fmt.Errorf("line %d: a schema's keys must be strings (no merge keys)", k.Line)
			}
			if seen[k.Value] {
				return fmt.Errorf("line %d: duplicate key %q", k.Line, k.Value)
			}
			seen[k.Value] = true
			if i > 0 {
				b.WriteByte(',')
			}
			kb, _ := json.Marshal(k.Value)
			b.Write(kb)
			b.WriteByte(':')
			if err := d.nodeJSON(b, n.Content[i+1], path); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	case yaml.SequenceNode:
		b.WriteByte('[')
		for i, c := range n.Content {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := d.nodeJSON(b, c, path); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	case yaml.ScalarNode:
		if d.secret.scanValue(n, path) {
			return errReported
		}
		var v any
		if err := n.Decode(&v); err != nil {
			return fmt.Errorf("line %d: %v", n.Line, err)
		}
		if f, ok := v.(float64); ok && (math.IsNaN(f) || math.IsInf(f, 0)) {
			return fmt.Errorf("line %d: %s is not a JSON number", n.Line, n.Value)
		}
		vb, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("line %d: %v", n.Line, err)
		}
		b.Write(vb)
	default:
		return fmt.Errorf("line %d: unexpected YAML node", n.Line)
	}
	return nil
}
