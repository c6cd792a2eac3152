package pipelines

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// maxFileSize bounds a pipeline file.
const maxFileSize = 4 << 20

// Load reads, decodes and checks the pipeline file at path. lookupEnv
// resolves ${VAR} references (os.LookupEnv in production; nil means no
// variable is set). When the file has problems the error is an ErrorList
// with every problem, sorted by position; other errors (an unreadable file)
// are returned as they are.
func Load(path string, lookupEnv func(string) (string, bool)) (*Pipeline, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load pipeline: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("load pipeline %s: %w", path, err)
	}
	if len(data) > maxFileSize {
		return nil, ErrorList{{File: path, Msg: fmt.Sprintf("the file is larger than %d bytes", maxFileSize)}}
	}
	return Parse(path, data, lookupEnv)
}

// Parse decodes and checks a pipeline from data; filename is used in
// messages and recorded in Pipeline.File. On success the pipeline has its
// defaults applied (see applyDefaults). On failure the error is an ErrorList
// and no pipeline is returned.
func Parse(filename string, data []byte, lookupEnv func(string) (string, bool)) (p *Pipeline, err error) {
	e := &errs{file: filename}
	defer func() {
		// The checks are written not to panic; this keeps a bug in a
		// dependency's parser from taking a process down with it.
		if r := recover(); r != nil {
			p, err = nil, ErrorList{{File: filename, Msg: fmt.Sprintf("internal error while reading the file: %v", r)}}
		}
	}()
	root, ok := parseYAML(e, data)
	if !ok {
		return nil, e.err()
	}
	p = &Pipeline{}
	d := &decoder{
		errs:   e,
		env:    &interpolator{lookup: lookupEnv, errs: e},
		secret: &secretScanner{errs: e, reported: map[*yaml.Node]bool{}},
		pos:    map[string]pos{},
		keyPos: map[string]pos{},
		raw:    map[string]*yaml.Node{},
		bad:    map[string]bool{},
		typo:   map[string]bool{},
	}
	d.decode(root, reflect.ValueOf(p).Elem(), "")
	if d.tooBig {
		return nil, e.err()
	}
	c := &checker{p: p, d: d, e: e, src: strings.Split(string(data), "\n"), root: nodePos(root)}
	c.check()
	if err := e.err(); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	p.File, p.Hash = filename, hex.EncodeToString(sum[:])
	p.applyDefaults(lookupEnv)
	return p, nil
}

var yamlLineRe = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parseYAML parses exactly one YAML document whose root is a mapping.
func parseYAML(e *errs, data []byte) (*yaml.Node, bool) {
	if len(bytes.TrimSpace(data)) == 0 {
		e.add(pos{}, "the file is empty: a pipeline needs at least version, name and steps")
		return nil, false
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			e.add(pos{}, "the file has no YAML document: a pipeline needs at least version, name and steps")
			return nil, false
		}
		addYAMLError(e, err)
		return nil, false
	}
	var next yaml.Node
	if err := dec.Decode(&next); err == nil {
		e.add(pos{next.Line, next.Column}, "a pipeline file holds one YAML document; remove the second one (after ---) or put it in its own file")
		return nil, false
	} else if !errors.Is(err, io.EOF) {
		addYAMLError(e, err)
		return nil, false
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		e.add(pos{}, "the file has no YAML document")
		return nil, false
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		e.add(nodePos(root), "a pipeline is a mapping (version, name, steps, ...), got %s", kindName(root))
		return nil, false
	}
	return root, true
}

// addYAMLError reports a YAML syntax error at its line.
func addYAMLError(e *errs, err error) {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		for _, m := range te.Errors {
			e.add(pos{}, "%s", m)
		}
		return
	}
	msg := err.Error()
	if m := yamlLineRe.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		e.add(pos{line, 1}, "YAML syntax: %s", m[2])
		return
	}
	e.add(pos{}, "YAML syntax: %s", strings.TrimPrefix(msg, "yaml: "))
}
