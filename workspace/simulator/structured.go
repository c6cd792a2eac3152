package simulator

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/threadmill/threadmill/structured"
	"github.com/threadmill/threadmill/workspace"
)

// The simulator's answers to the rest of the request surface:
// response_format (a deterministic JSON value valid for the schema, built
// from the referenced artifacts), thinking (a thinking block, billed), and
// system.citations (a source block and citations on the text block).

// builtinToolTypes are the built-in tools of workspace-api.md §6.
var builtinToolTypes = map[string]string{
	"semantic_search": "semantic_search_v1", "file_sematic_search": "file_semantic_search_v1",
	"tabular_analysis": "tabular_analysis_v1", "database_query": "database_query_v1",
	"web_search": "web_search_v1", "web_extract": "web_extract_v1", "list_project_files": "list_project_files_v1",
}

// checkSurface checks the fields of a ChatRequest beyond messages and
// sampling: system.citations ({enabled: bool, known_citations: [...]}),
// response_format (type text or json_schema; a json_schema that
// is a JSON Schema, given bare or as {name, schema}), thinking ({enabled:
// bool}), tools (a built-in tool's name with its type), tool_choice (auto,
// none, or tool with the name of a listed tool), seed and priority
// (integers).
func checkSurface(c *checker, obj map[string]json.RawMessage, prefix string) {
	if raw, ok := obj["response_format"]; ok && jsonKind(raw) != "null" {
		checkResponseFormat(c, raw, prefix+"response_format")
	}
	if raw, ok := obj["thinking"]; ok && jsonKind(raw) != "null" {
		var t map[string]json.RawMessage
		if jsonKind(raw) != "object" || json.Unmarshal(raw, &t) != nil {
			c.addf("%sthinking must be an object like {\"enabled\": true}, not a %s", prefix, jsonKind(raw))
		} else if k := jsonKind(t["enabled"]); k != "boolean" && k != "missing" {
			c.addf("%sthinking.enabled must be a boolean, not a %s", prefix, k)
		}
	}
	if sys := probeKeys(obj["system"]); sys != nil {
		if raw, ok := sys["citations"]; ok && jsonKind(raw) != "null" {
			cit := probeKeys(raw)
			switch {
			case jsonKind(raw) != "object":
				c.addf("%ssystem.citations must be an object like {\"enabled\": true}, not a %s", prefix, jsonKind(raw))
			case jsonKind(cit["enabled"]) != "boolean" && jsonKind(cit["enabled"]) != "missing":
				c.addf("%ssystem.citations.enabled must be a boolean, not a %s", prefix, jsonKind(cit["enabled"]))
			case jsonKind(cit["known_citations"]) != "array" && jsonKind(cit["known_citations"]) != "missing":
				c.addf("%ssystem.citations.known_citations must be an array", prefix)
			}
		}
	}
	names := map[string]bool{}
	if raw, ok := obj["tools"]; ok && jsonKind(raw) != "null" {
		var tools []map[string]json.RawMessage
		if jsonKind(raw) != "array" || json.Unmarshal(raw, &tools) != nil {
			c.addf("%stools must be an array of {name, type} objects", prefix)
		}
		for i, t := range tools {
			var name, typ string
			_ = json.Unmarshal(t["name"], &name)
			_ = json.Unmarshal(t["type"], &typ)
			switch want, builtin := builtinToolTypes[name]; {
			case name == "":
				c.addf("%stools[%d].name is required", prefix, i)
			case builtin && typ != want:
				c.addf("%stools[%d]: the built-in tool %s needs type %q, got %q", prefix, i, name, want, typ)
			case !builtin && typ != "" && len(t["inputSchema"]) == 0:
				c.addf("%stools[%d]: %q is not a built-in tool (semantic_search, file_sematic_search, tabular_analysis, database_query, web_search, web_extract, list_project_files)", prefix, i, name)
			}
			names[name] = true
		}
	}
	if raw, ok := obj["tool_choice"]; ok && jsonKind(raw) != "null" {
		var tc struct {
			Type string `json:"type"`
			Name string `json:"name"`
		}
		if jsonKind(raw) != "object" || json.Unmarshal(raw, &tc) != nil {
			c.addf("%stool_choice must be an object like {\"type\": \"auto\"}", prefix)
		} else {
			switch tc.Type {
			case "auto", "none":
			case "tool":
				if !names[tc.Name] {
					c.addf("%stool_choice.name %q is not one of the request's tools", prefix, tc.Name)
				}
			default:
				c.addf("%stool_choice.type %q is not one of auto, tool, none", prefix, tc.Type)
			}
		}
	}
	checkNumber(c, obj, prefix+"seed", "seed", 0, 1<<53, true)
	checkNumber(c, obj, prefix+"priority", "priority", -1<<31, 1<<31-1, true)
}

// checkResponseFormat checks response_format and compiles its schema.
func checkResponseFormat(c *checker, raw json.RawMessage, at string) {
	var rf struct {
		Type       string          `json:"type"`
		JSONSchema json.RawMessage `json:"json_schema"`
	}
	if jsonKind(raw) != "object" || json.Unmarshal(raw, &rf) != nil {
		c.addf("%s must be an object like {\"type\": \"json_schema\", \"json_schema\": {...}}", at)
		return
	}
	switch rf.Type {
	case "text":
	case "json_schema":
		if jsonKind(rf.JSONSchema) != "object" {
			c.addf("%s.json_schema must be a JSON Schema object, not a %s", at, jsonKind(rf.JSONSchema))
			return
		}
		if _, err := structured.Compile(schemaOf(rf.JSONSchema)); err != nil {
			c.addf("%s.json_schema is not a valid JSON Schema: %v", at, err)
		}
	default:
		c.addf("%s.type %q is not one of text, json_schema", at, rf.Type)
	}
}

// schemaOf returns the schema of a json_schema value: the value itself, or
// its "schema" member when it is wrapped as {name, schema, strict}.
func schemaOf(js json.RawMessage) json.RawMessage {
	var w struct {
		Name   string          `json:"name"`
		Schema json.RawMessage `json:"schema"`
	}
	if json.Unmarshal(js, &w) == nil && jsonKind(w.Schema) == "object" {
		if _, isType := probeKeys(js)["type"]; !isType {
			return w.Schema
		}
	}
	return js
}

func probeKeys(raw json.RawMessage) map[string]json.RawMessage {
	var m map[string]json.RawMessage
	_ = json.Unmarshal(raw, &m)
	return m
}

// wantsJSON returns the schema of a request's response_format json_schema,
// or nil.
func wantsJSON(req workspace.ChatRequest) json.RawMessage {
	if rf := req.ResponseFormat; rf != nil && rf.Type == "json_schema" && len(rf.JSONSchema) > 0 {
		return schemaOf(rf.JSONSchema)
	}
	return nil
}

// decorate completes a responder answer with the request surface: a JSON
// answer for response_format (invalid when the fault says so), a thinking
// block for thinking, and sources and citations for system.citations.
func decorate(req workspace.ChatRequest, srcs []source, ans answer, invalidJSON bool) answer {
	if schema := wantsJSON(req); schema != nil {
		ans.text = jsonAnswer(schema, srcs, ans.text, invalidJSON)
		ans.stopReason = workspace.StopReasonEndTurn
	}
	if req.Thinking != nil && req.Thinking.Enabled {
		var q string
		for _, m := range req.Messages {
			if m.Role == workspace.RoleUser && len(m.Content) > 0 {
				q = m.Content[0].Text
			}
		}
		ans.thinking = "Reasoning about: " + strings.Join(strings.Fields(truncateRunes(q, 200)), " ")
	}
	if req.System != nil && req.System.Citations != nil && req.System.Citations.Enabled != nil && *req.System.Citations.Enabled {
		ans.sources, ans.citations = cite(srcs, ans.text)
	}
	ans.usage.OutputTokens = workspace.Count(workspace.EstimateTokens(ans.text) + workspace.EstimateTokens(ans.thinking))
	return ans
}

// cite builds the source block (one context.chunk per referenced artifact,
// its best sentence for the answer as text) and one citation per source.
func cite(srcs []source, text string) (json.RawMessage, []workspace.Citation) {
	type chunk struct {
		Type     string  `json:"type"`
		ID       string  `json:"id"`
		Score    float64 `json:"score"`
		Text     string  `json:"text"`
		Document struct {
			Object      string            `json:"object"`
			Artifact    string            `json:"artifact"`
			DocMetadata map[string]string `json:"doc_metadata"`
		} `json:"document"`
		Metadata struct {
			Title string `json:"title"`
			Page  int    `json:"page"`
		} `json:"metadata"`
	}
	keys := keywordSet(text)
	var chunks []chunk
	var cites []workspace.Citation
	for i, s := range srcs {
		if i == 10 {
			break
		}
		best, score := bestOf(s, keys)
		c := chunk{Type: "context.chunk", ID: fmt.Sprintf("src_%d", i+1), Score: float64(max(score, 0)) / float64(max(len(keys), 1)), Text: best}
		c.Document.Object, c.Document.Artifact = "artifact", s.id
		c.Document.DocMetadata = map[string]string{"file_name": s.name}
		c.Metadata.Title, c.Metadata.Page = s.name, 1
		chunks = append(chunks, c)
		cites = append(cites, workspace.Citation{ID: fmt.Sprintf("cite_%d", i+1), Index: workspace.Count(i + 1), ArtifactID: s.id, SourceID: c.ID})
	}
	if len(chunks) == 0 {
		return nil, nil
	}
	raw, _ := json.Marshal(chunks)
	return raw, cites
}

// bestOf returns the sentence of s with the most keywords (the first on
// ties) and its count, -1 when s has no sentence.
func bestOf(s source, keys map[string]bool) (string, int) {
	sents := s.sents
	if sents == nil {
		sents = analyze(s.content)
	}
	best, score := "", -1
	for _, sen := range sents {
		n := 0
		for _, w := range sen.stems {
			if keys[w] {
				n++
			}
		}
		if n > score {
			best, score = sen.text, n
		}
	}
	return best, score
}

// content returns the answer's content blocks: thinking, source, then the
// text with its citations.
func (a answer) content(text string) []workspace.ContentBlock {
	var out []workspace.ContentBlock
	if a.thinking != "" {
		out = append(out, workspace.ContentBlock{Type: "thinking", Thinking: a.thinking})
	}
	if len(a.sources) > 0 {
		out = append(out, workspace.ContentBlock{Type: "source", Sources: a.sources})
	}
	if text != "" {
		b := workspace.TextBlock(text)
		b.Citations = a.citations
		out = append(out, b)
	}
	return out
}

// ---- JSON answers ----

// jnode is a decoded JSON value that keeps the order of object keys.
type jnode struct {
	obj    []jkv
	arr    []*jnode
	scalar any
	isObj  bool
	isArr  bool
}

type jkv struct {
	key string
	val *jnode
}

func parseOrdered(dec *json.Decoder) (*jnode, error) {
	t, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t {
	case json.Delim('{'):
		n := &jnode{isObj: true}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return nil, err
			}
			k, _ := kt.(string)
			v, err := parseOrdered(dec)
			if err != nil {
				return nil, err
			}
			n.obj = append(n.obj, jkv{k, v})
		}
		_, err := dec.Token()
		return n, err
	case json.Delim('['):
		n := &jnode{isArr: true}
		for dec.More() {
			v, err := parseOrdered(dec)
			if err != nil {
				return nil, err
			}
			n.arr = append(n.arr, v)
		}
		_, err := dec.Token()
		return n, err
	}
	return &jnode{scalar: t}, nil
}

func (n *jnode) get(key string) *jnode {
	if n == nil {
		return nil
	}
	for _, kv := range n.obj {
		if kv.key == key {
			return kv.val
		}
	}
	return nil
}

func (n *jnode) str() string {
	if n == nil {
		return ""
	}
	s, _ := n.scalar.(string)
	return s
}

func (n *jnode) num() (float64, bool) {
	if n == nil {
		return 0, false
	}
	switch v := n.scalar.(type) {
	case float64:
		return v, true
	case json.Number:
		f, err := v.Float64()
		return f, err == nil
	}
	return 0, false
}

// types lists the schema's type keyword (a string or a list).
func (n *jnode) types() []string {
	t := n.get("type")
	if t == nil {
		return nil
	}
	if t.isArr {
		var out []string
		for _, e := range t.arr {
			out = append(out, e.str())
		}
		return out
	}
	return []string{t.str()}
}

// gen generates deterministic JSON values from the referenced artifacts.
type gen struct {
	srcs   []source
	labels map[string]string // normalised label -> value, first wins
	text   string            // every source's content, for enum matching
	answer string            // the responder's text answer, the fallback
	defs   *jnode
	depth  int
}

var (
	labelRe    = regexp.MustCompile(`^([\pL][\pL\pN _/-]{0,30}):\s*(.+)$`)
	numberRe   = regexp.MustCompile(`-?\d+(?:\.\d+)?`)
	dateRe     = regexp.MustCompile(`\b\d{4}-\d{2}-\d{2}\b`)
	nonLabelRe = regexp.MustCompile(`[^a-z0-9]+`)
)

func normLabel(s string) string { return nonLabelRe.ReplaceAllString(strings.ToLower(s), "") }

func newGen(srcs []source, answer string) *gen {
	g := &gen{srcs: srcs, labels: map[string]string{}, answer: answer}
	var all strings.Builder
	for _, s := range srcs {
		all.WriteString(s.content)
		all.WriteString("\n")
		for line := range strings.Lines(s.content) {
			line = inlineMarkup.Replace(listMarkerRe.ReplaceAllString(strings.TrimSpace(line), ""))
			if m := labelRe.FindStringSubmatch(line); m != nil {
				if k := normLabel(m[1]); g.labels[k] == "" {
					g.labels[k] = strings.TrimSpace(m[2])
				}
			}
		}
	}
	g.text = all.String()
	return g
}

// jsonAnswer is the answer to a response_format request: the generated
// value as JSON text. With invalid, the model "gets it wrong": the value
// loses its first required field (or, without required fields, its JSON is
// cut short), wrapped in a sentence of prose.
func jsonAnswer(schema json.RawMessage, srcs []source, textAnswer string, invalid bool) string {
	dec := json.NewDecoder(bytes.NewReader(schema))
	dec.UseNumber()
	root, err := parseOrdered(dec)
	if err != nil {
		return "{}"
	}
	g := newGen(srcs, textAnswer)
	g.defs = root.get("$defs")
	var b bytes.Buffer
	if !invalid {
		g.write(&b, root, "")
		return b.String()
	}
	req := root.get("required")
	if req != nil && len(req.arr) > 0 && root.isObj {
		drop := req.arr[0].str()
		pruned := &jnode{isObj: true}
		for _, kv := range root.obj {
			pruned.obj = append(pruned.obj, kv)
		}
		props := root.get("properties")
		if props != nil {
			kept := &jnode{isObj: true}
			for _, kv := range props.obj {
				if kv.key != drop {
					kept.obj = append(kept.obj, kv)
				}
			}
			for i := range pruned.obj {
				if pruned.obj[i].key == "properties" {
					pruned.obj[i].val = kept
				}
			}
		}
		g.write(&b, pruned, "")
		return "Here is what I found: " + b.String()
	}
	g.write(&b, root, "")
	s := b.String()
	return "```json\n" + s[:len(s)/2] + "\n```"
}

// write writes a value for schema n, named key (the property it fills).
func (g *gen) write(b *bytes.Buffer, n *jnode, key string) {
	g.depth++
	defer func() { g.depth-- }()
	if n == nil || g.depth > 12 {
		b.WriteString("null")
		return
	}
	if ref := n.get("$ref").str(); strings.HasPrefix(ref, "#/$defs/") {
		g.write(b, g.defs.get(strings.TrimPrefix(ref, "#/$defs/")), key)
		return
	}
	if c := n.get("const"); c != nil {
		writeNode(b, c)
		return
	}
	if e := n.get("enum"); e != nil && len(e.arr) > 0 {
		writeNode(b, g.pickEnum(e.arr))
		return
	}
	for _, alt := range []string{"anyOf", "oneOf", "allOf"} {
		if a := n.get(alt); a != nil && len(a.arr) > 0 && n.get("type") == nil {
			g.write(b, a.arr[0], key)
			return
		}
	}
	typ := ""
	for _, t := range n.types() {
		if t != "null" {
			typ = t
			break
		}
	}
	if typ == "" && n.get("properties") != nil {
		typ = "object"
	}
	switch typ {
	case "object":
		b.WriteByte('{')
		for i, kv := range n.get("properties").objOrNil() {
			if i > 0 {
				b.WriteByte(',')
			}
			kb, _ := json.Marshal(kv.key)
			b.Write(kb)
			b.WriteByte(':')
			g.write(b, kv.val, kv.key)
		}
		b.WriteByte('}')
	case "array":
		count := 1
		if m, ok := n.get("minItems").num(); ok && int(m) > count {
			count = min(int(m), 10)
		}
		if m, ok := n.get("maxItems").num(); ok && int(m) < count {
			count = max(int(m), 0)
		}
		b.WriteByte('[')
		for i := range count {
			if i > 0 {
				b.WriteByte(',')
			}
			g.write(b, n.get("items"), key)
		}
		b.WriteByte(']')
	case "integer", "number":
		f := 0.0
		if v, ok := g.labels[normLabel(key)]; ok {
			if m := numberRe.FindString(v); m != "" {
				f, _ = strconv.ParseFloat(m, 64)
			}
		}
		if lo, ok := n.get("minimum").num(); ok && f < lo {
			f = lo
		}
		if hi, ok := n.get("maximum").num(); ok && f > hi {
			f = hi
		}
		if typ == "integer" {
			fmt.Fprintf(b, "%d", int64(f))
		} else {
			b.WriteString(strconv.FormatFloat(f, 'f', -1, 64))
		}
	case "boolean":
		v := strings.ToLower(g.labels[normLabel(key)])
		b.WriteString(strconv.FormatBool(strings.HasPrefix(v, "yes") || strings.HasPrefix(v, "true")))
	case "null":
		b.WriteString("null")
	default:
		sb, _ := json.Marshal(g.stringFor(n, key))
		b.Write(sb)
	}
}

func (n *jnode) objOrNil() []jkv {
	if n == nil {
		return nil
	}
	return n.obj
}

// pickEnum chooses the enum value that occurs first in the sources (as a
// whole word), else the first value.
func (g *gen) pickEnum(vals []*jnode) *jnode {
	best, at := vals[0], -1
	for _, v := range vals {
		s, ok := v.scalar.(string)
		if !ok || s == "" {
			continue
		}
		re := regexp.MustCompile(`(?i)\b` + regexp.QuoteMeta(s) + `\b`)
		if loc := re.FindStringIndex(g.text); loc != nil && (at < 0 || loc[0] < at) {
			best, at = v, loc[0]
		}
	}
	return best
}

// stringFor is a string for a property: the value of a "Label: value" line
// of the sources whose label is the property's name, else the sentence of
// the sources that best matches its name and description, cut to
// maxLength.
func (g *gen) stringFor(n *jnode, key string) string {
	var s string
	switch n.get("format").str() {
	case "date":
		s = cmpStr(dateRe.FindString(g.text), "2026-01-01")
	case "date-time":
		s = cmpStr(dateRe.FindString(g.text), "2026-01-01") + "T00:00:00Z"
	case "email":
		s = "someone@example.com"
	}
	if s == "" {
		s = g.labels[normLabel(key)]
	}
	if s == "" {
		s = g.bestSentence(strings.ReplaceAll(key, "_", " ") + " " + n.get("description").str() + " " + n.get("title").str())
	}
	if m, ok := n.get("maxLength").num(); ok {
		s = truncateRunes(s, int(m))
	}
	if m, ok := n.get("minLength").num(); ok {
		for utf8.RuneCountInString(s) < int(m) {
			s += "."
		}
	}
	return s
}

func cmpStr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// bestSentence is the source sentence with the most keywords of q (the
// first on ties), else the first line of the responder's answer.
func (g *gen) bestSentence(q string) string {
	keys := keywordSet(q)
	best, score := "", 0
	for _, s := range g.srcs {
		if b, n := bestOf(s, keys); n > score {
			best, score = b, n
		}
	}
	if best == "" {
		first, _, _ := strings.Cut(g.answer, "\n")
		best = strings.TrimPrefix(first, "- ")
	}
	return best
}

func writeNode(b *bytes.Buffer, n *jnode) {
	switch {
	case n.isObj:
		b.WriteByte('{')
		for i, kv := range n.obj {
			if i > 0 {
				b.WriteByte(',')
			}
			kb, _ := json.Marshal(kv.key)
			b.Write(kb)
			b.WriteByte(':')
			writeNode(b, kv.val)
		}
		b.WriteByte('}')
	case n.isArr:
		b.WriteByte('[')
		for i, e := range n.arr {
			if i > 0 {
				b.WriteByte(',')
			}
			writeNode(b, e)
		}
		b.WriteByte(']')
	default:
		v, _ := json.Marshal(n.scalar)
		b.Write(v)
	}
}

func truncateRunes(s string, n int) string {
	if n < 0 || utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n])
}

// invalidJSON decides the InvalidJSON fault for a response_format
// request: true while the thread (threadID; "" for a chat, whose earlier
// answers are its assistant messages) has had fewer than
// Faults.InvalidJSON response_format answers. It counts the fault.
func (s *Server) invalidJSON(threadID string, req workspace.ChatRequest) bool {
	if wantsJSON(req) == nil {
		return false
	}
	s.knobMu.Lock()
	limit := s.faults.InvalidJSON
	s.knobMu.Unlock()
	if limit <= 0 {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	earlier := 0
	if t := s.store.threads[threadID]; t != nil {
		for _, in := range t.interactions {
			if in.wantJSON {
				earlier++
			}
		}
	} else {
		for _, m := range req.Messages {
			if m.Role == workspace.RoleAssistant {
				earlier++
			}
		}
	}
	if earlier >= limit {
		return false
	}
	s.counters.Faults["invalid_json"]++
	return true
}

// sendExtras streams the blocks that come before an answer's text: its
// thinking block (start, one thinking_delta, stop) and its source block
// (content_block_synthetic).
func (s *Server) sendExtras(ev *sseWriter, in *interaction) error {
	type thinkingDelta struct {
		Type     string `json:"type"`
		Thinking string `json:"thinking"`
	}
	type evDelta struct {
		Type    string        `json:"type"`
		BlockID string        `json:"block_id"`
		Delta   thinkingDelta `json:"delta"`
	}
	type evSynthetic struct {
		Type    string                 `json:"type"`
		BlockID string                 `json:"block_id"`
		Block   workspace.ContentBlock `json:"block"`
	}
	if t := in.ans.thinking; t != "" {
		id := in.msgID + "_thinking"
		if err := ev.send("content_block_start", evBlockStart{Type: "content_block_start", BlockID: id,
			ContentBlock: workspace.ContentBlock{Type: "thinking"}}); err != nil {
			return err
		}
		if err := ev.send("content_block_delta", evDelta{Type: "content_block_delta", BlockID: id,
			Delta: thinkingDelta{Type: "thinking_delta", Thinking: t}}); err != nil {
			return err
		}
		if err := ev.send("content_block_stop", evBlockStop{Type: "content_block_stop", BlockID: id}); err != nil {
			return err
		}
	}
	if len(in.ans.sources) > 0 {
		return ev.send("content_block_synthetic", evSynthetic{Type: "content_block_synthetic", BlockID: in.msgID + "_sources",
			Block: workspace.ContentBlock{Type: "source", Sources: in.ans.sources}})
	}
	return nil
}
