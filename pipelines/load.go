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
	"unicode/utf8"

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
	doc, ok := parseYAML(e, data)
	if !ok {
		return nil, e.err()
	}
	root := doc.Content[0]
	src := strings.Split(string(data), "\n")
	secret := &secretScanner{errs: e, reported: map[*yaml.Node]bool{}}
	secret.scanComments(doc, src)
	p = &Pipeline{}
	d := &decoder{
		errs:   e,
		env:    &interpolator{lookup: lookupEnv, errs: e},
		secret: secret,
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
	c := &checker{p: p, d: d, e: e, src: src, root: nodePos(root)}
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

// parseYAML parses exactly one YAML document whose root is a mapping, and
// returns the document node (its root is doc.Content[0]).
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
		addYAMLError(e, err, data)
		return nil, false
	}
	var next yaml.Node
	if err := dec.Decode(&next); err == nil {
		e.add(pos{next.Line, next.Column}, "a pipeline file holds one YAML document; remove the second one (after ---) or put it in its own file")
		return nil, false
	} else if !errors.Is(err, io.EOF) {
		addYAMLError(e, err, data)
		return nil, false
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		e.add(pos{}, "the file has no YAML document")
		return nil, false
	}
	if root := doc.Content[0]; root.Kind != yaml.MappingNode {
		e.add(nodePos(root), "a pipeline is a mapping (version, name, steps, ...), got %s", kindName(root))
		return nil, false
	}
	return &doc, true
}

// yamlParserContexts are the messages of go-yaml's parser (not scanner)
// errors, with the construct the line it reports belongs to. For these the
// line in the message is 0-based and is where that construct starts, not
// where the parser gave up.
// When the construct starts on line 1, go-yaml reports the line where it
// gave up instead; the opener, when the line lacks it, tells the two apart.
var yamlParserContexts = map[string]struct{ what, opener string }{
	"did not find expected '-' indicator": {"the list that starts on this line", "-"},
	"did not find expected key":           {"the mapping that starts on this line", ""},
	"did not find expected ',' or ']'":    {"the [...] list that starts on this line", "["},
	"did not find expected ',' or '}'":    {"the {...} mapping that starts on this line", "{"},
	"did not find expected node content":  {"the value that starts on this line", ""},
}

var yamlAnchorRe = regexp.MustCompile(`^unknown anchor '(.*)' referenced$`)

// addYAMLError reports a YAML syntax error at its line. go-yaml gives a
// line only when it is not the first, and 0-based for parser errors; a
// message without a line is on line 1, and an unknown anchor is placed at
// its first use.
func addYAMLError(e *errs, err error, data []byte) {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		for _, m := range te.Errors {
			e.add(pos{1, 1}, "%s", m)
		}
		return
	}
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 1
	if m := yamlLineRe.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
		if _, ok := yamlParserContexts[msg]; ok {
			line++
		}
	}
	if ctx, ok := yamlParserContexts[msg]; ok {
		lines := strings.Split(string(data), "\n")
		if ctx.opener != "" && line <= len(lines) && !strings.Contains(lines[line-1], ctx.opener) {
			line = 1
		}
		msg += " (in " + ctx.what + ")"
	}
	p := pos{line, 1}
	if m := yamlAnchorRe.FindStringSubmatch(msg); m != nil {
		if at, ok := findAlias(data, m[1]); ok {
			p = at
		}
	}
	e.add(p, "YAML syntax: %s", msg)
}

// findAlias returns the position of the first "*name" alias in data.
func findAlias(data []byte, name string) (pos, bool) {
	for i, l := range strings.Split(string(data), "\n") {
		for off := 0; ; {
			j := strings.Index(l[off:], "*"+name)
			if j < 0 {
				break
			}
			j += off
			end := j + 1 + len(name)
			if end == len(l) || strings.ContainsRune(" \t,]}#", rune(l[end])) {
				return pos{i + 1, utf8.RuneCountInString(l[:j]) + 1}, true
			}
			off = j + 1
		}
	}
	return pos{}, false
}
