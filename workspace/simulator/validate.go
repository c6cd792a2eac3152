package simulator

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"

	"github.com/threadmill/threadmill/workspace"
)

// DefaultMaxBodyBytes is the default of Config.MaxBodyBytes.
const DefaultMaxBodyBytes = 8 << 20

// readBody reads a JSON request body of at most maxBodyBytes as a generic
// object.
func readBody(r *http.Request, maxBodyBytes int64) (map[string]json.RawMessage, []byte, *httpError) {
	data, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
	if err != nil {
		return nil, nil, errorf(http.StatusBadRequest, "reading request body: %v", err)
	}
	if int64(len(data)) > maxBodyBytes {
		return nil, nil, errorf(http.StatusRequestEntityTooLarge, "request body exceeds %d bytes", maxBodyBytes)
	}
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil, nil, errorf(http.StatusBadRequest, "request body is empty; a JSON object is required")
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil || obj == nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, nil, errorf(http.StatusBadRequest, "request body is not valid JSON: %v (at byte %d)", se, se.Offset)
		}
		return nil, nil, errorf(http.StatusBadRequest, "request body must be a JSON object")
	}
	return obj, data, nil
}

// checker collects validation messages, each naming a JSON path.
type checker struct{ errs []string }

func (c *checker) addf(format string, args ...any) {
	c.errs = append(c.errs, fmt.Sprintf(format, args...))
}

// err returns a 400 carrying every message, or nil.
func (c *checker) err() *httpError {
	switch len(c.errs) {
	case 0:
		return nil
	case 1:
		return &httpError{status: http.StatusBadRequest, msg: "invalid request: " + c.errs[0], errs: c.errs}
	default:
		return &httpError{status: http.StatusBadRequest,
			msg:  fmt.Sprintf("invalid request: %s (and %d more)", c.errs[0], len(c.errs)-1),
			errs: c.errs}
	}
}

func jsonKind(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "missing"
	}
	switch raw[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	default:
		return "number"
	}
}

// validRoles are the accepted message roles.
var validRoles = map[string]bool{
	workspace.RoleSystem: true, workspace.RoleUser: true,
	workspace.RoleAssistant: true, workspace.RoleTool: true,
}

// blockTypes are the content block types of workspace-api.md §6.
var blockTypes = map[string]bool{
	"text": true, "image": true, "audio": true, "binary": true, "file": true,
	"source": true, "thinking": true, "tool_use": true, "tool_result": true, "tldr": true,
}

// parseChatRequest checks a ChatRequest given as a JSON object and decodes it.
// prefix ("" or "pgpt.") is prepended to every path in the messages.
//
// The rules: messages is a non-empty array with at least one user message;
// each message is an object with role system, user, assistant or tool and
// content an array (never a plain string) of at least one block; every block
// is an object with a known type; a text block has non-blank text; system is
// an object (never a string) whose text is a string; max_tokens is an integer
// in [1, 32768]; temperature is in [0, 2] and top_p in [0, 1]. Fields are
// strictly typed; unknown fields are ignored.
func parseChatRequest(obj map[string]json.RawMessage, prefix string) (workspace.ChatRequest, *httpError) {
	var c checker
	msgs := obj["messages"]
	switch k := jsonKind(msgs); k {
	case "missing", "null":
		c.addf("%smessages is required", prefix)
	case "array":
		var items []json.RawMessage
		_ = json.Unmarshal(msgs, &items)
		if len(items) == 0 {
			c.addf("%smessages must not be empty", prefix)
		}
		users := 0
		for i, item := range items {
			if checkMessage(&c, fmt.Sprintf("%smessages[%d]", prefix, i), item) == workspace.RoleUser {
				users++
			}
		}
		if len(items) > 0 && users == 0 && len(c.errs) == 0 {
			c.addf("%smessages must contain at least one user message", prefix)
		}
	default:
		c.addf("%smessages must be an array of messages, not a %s", prefix, k)
	}
	if raw, ok := obj["system"]; ok {
		switch k := jsonKind(raw); k {
		case "null":
		case "object":
			var sys map[string]json.RawMessage
			_ = json.Unmarshal(raw, &sys)
			if t, ok := sys["text"]; ok && jsonKind(t) != "string" && jsonKind(t) != "null" {
				c.addf("%ssystem.text must be a string, not a %s", prefix, jsonKind(t))
			}
		default:
			c.addf("%ssystem must be an object like {\"text\": \"...\"}, not a %s", prefix, k)
		}
	}
	checkNumber(&c, obj, prefix+"max_tokens", "max_tokens", 1, MaxMaxTokens, true)
	checkNumber(&c, obj, prefix+"temperature", "temperature", 0, 2, false)
	checkNumber(&c, obj, prefix+"top_p", "top_p", 0, 1, false)
	checkSurface(&c, obj, prefix)
	if e := c.err(); e != nil {
		return workspace.ChatRequest{}, e
	}
	data, _ := encodeJSON(obj) // RawMessage fields keep "<" and "&" as sent
	var req workspace.ChatRequest
	if err := json.Unmarshal(data, &req); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			c.addf("%s%s has the wrong type: want %s, got %s", prefix, te.Field, te.Type, te.Value)
		} else {
			c.addf("%s%v", prefix, err)
		}
		return workspace.ChatRequest{}, c.err()
	}
	return req, nil
}

// checkMessage validates one message and returns its role.
func checkMessage(c *checker, at string, raw json.RawMessage) string {
	if k := jsonKind(raw); k != "object" {
		c.addf("%s must be an object {role, content}, not a %s", at, k)
		return ""
	}
	var m map[string]json.RawMessage
	_ = json.Unmarshal(raw, &m)
	var role string
	switch k := jsonKind(m["role"]); k {
	case "string":
		_ = json.Unmarshal(m["role"], &role)
		if !validRoles[role] {
			c.addf("%s.role %q is not one of system, user, assistant, tool", at, role)
		}
	case "missing":
		c.addf("%s.role is required", at)
	default:
		c.addf("%s.role must be a string, not a %s", at, k)
	}
	switch k := jsonKind(m["content"]); k {
	case "array":
		var blocks []json.RawMessage
		_ = json.Unmarshal(m["content"], &blocks)
		if len(blocks) == 0 {
			c.addf("%s.content must contain at least one content block", at)
		}
		for j, b := range blocks {
			checkBlock(c, fmt.Sprintf("%s.content[%d]", at, j), b)
		}
	case "string":
		c.addf("%s.content must be an array of content blocks like [{\"type\":\"text\",\"text\":\"...\"}]; a plain string is not accepted", at)
	case "missing":
		c.addf("%s.content is required", at)
	default:
		c.addf("%s.content must be an array of content blocks, not a %s", at, k)
	}
	return role
}

func checkBlock(c *checker, at string, raw json.RawMessage) {
	if k := jsonKind(raw); k != "object" {
		c.addf("%s must be a content block object, not a %s", at, k)
		return
	}
	var b map[string]json.RawMessage
	_ = json.Unmarshal(raw, &b)
	var typ string
	if jsonKind(b["type"]) != "string" {
		c.addf("%s.type is required (a string such as \"text\")", at)
		return
	}
	_ = json.Unmarshal(b["type"], &typ)
	if !blockTypes[typ] {
		c.addf("%s.type %q is not a known content block type", at, typ)
		return
	}
	if typ == "text" {
		switch k := jsonKind(b["text"]); k {
		case "string":
			var s string
			_ = json.Unmarshal(b["text"], &s)
			if strings.TrimSpace(s) == "" {
				c.addf("%s.text must not be empty", at)
			}
		case "missing", "null":
			c.addf("%s.text is required for a text block", at)
		default:
			c.addf("%s.text must be a string, not a %s", at, k)
		}
	}
}

// checkNumber checks an optional numeric field against [lo, hi].
func checkNumber(c *checker, obj map[string]json.RawMessage, at, key string, lo, hi float64, integer bool) {
	raw, ok := obj[key]
	if !ok || jsonKind(raw) == "null" {
		return
	}
	if k := jsonKind(raw); k != "number" {
		c.addf("%s must be a number, not a %s", at, k)
		return
	}
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil || math.IsNaN(f) {
		c.addf("%s is not a valid number", at)
		return
	}
	if integer && f != math.Trunc(f) {
		c.addf("%s must be an integer, got %s", at, raw)
		return
	}
	if f < lo || f > hi {
		c.addf("%s must be in [%g, %g], got %s", at, lo, hi, raw)
	}
}

// createInteractionBody is a checked POST /thread/{id}/interaction body.
type createInteractionBody struct {
	ThreadID     string
	PGPT         workspace.ChatRequest
	ArtifactIDs  []string
	AllArtifacts bool
	Agent        string
}

// parseCreateInteraction checks an interaction body against the thread id
// of the path.
func parseCreateInteraction(obj map[string]json.RawMessage, pathThreadID string) (createInteractionBody, *httpError) {
	var c checker
	var out createInteractionBody
	switch k := jsonKind(obj["thread_id"]); k {
	case "string":
		_ = json.Unmarshal(obj["thread_id"], &out.ThreadID)
		if out.ThreadID != pathThreadID {
			c.addf("thread_id %q does not match the thread %q of the path", out.ThreadID, pathThreadID)
		}
	case "missing", "null":
		c.addf("thread_id is required")
	default:
		c.addf("thread_id must be a string, not a %s", k)
	}
	switch k := jsonKind(obj["artifact_ids"]); k {
	case "missing", "null":
	case "array":
		var ids []json.RawMessage
		_ = json.Unmarshal(obj["artifact_ids"], &ids)
		for i, raw := range ids {
			var id string
			if jsonKind(raw) != "string" {
				c.addf("artifact_ids[%d] must be a string, not a %s", i, jsonKind(raw))
				continue
			}
			_ = json.Unmarshal(raw, &id)
			out.ArtifactIDs = append(out.ArtifactIDs, id)
		}
	default:
		c.addf("artifact_ids must be an array of strings, not a %s", k)
	}
	switch k := jsonKind(obj["all_artifacts"]); k {
	case "missing", "null":
	case "boolean":
		_ = json.Unmarshal(obj["all_artifacts"], &out.AllArtifacts)
	default:
		c.addf("all_artifacts must be a boolean, not a %s", k)
	}
	out.Agent = workspace.AgentDefault
	switch k := jsonKind(obj["agent"]); k {
	case "missing", "null":
	case "string":
		_ = json.Unmarshal(obj["agent"], &out.Agent)
		if out.Agent != workspace.AgentDefault && out.Agent != workspace.AgentProjectDeepResearch {
			c.addf("agent %q is not one of Default, ProjectDeepResearch", out.Agent)
		}
	default:
		c.addf("agent must be a string, not a %s", k)
	}
	switch k := jsonKind(obj["pgpt"]); k {
	case "object":
		var p map[string]json.RawMessage
		_ = json.Unmarshal(obj["pgpt"], &p)
		req, e := parseChatRequest(p, "pgpt.")
		if e != nil {
			c.errs = append(c.errs, e.errs...)
		}
		out.PGPT = req
	case "missing", "null":
		c.addf("pgpt is required (the ChatRequest with the messages)")
	default:
		c.addf("pgpt must be an object, not a %s", k)
	}
	return out, c.err()
}

// parseThreadBody checks a thread create (all=true) or update body.
func parseThreadBody(obj map[string]json.RawMessage, create bool) (name, visibility *string, e *httpError) {
	var c checker
	for _, key := range []string{"name", "visibility"} {
		raw, ok := obj[key]
		k := jsonKind(raw)
		if !ok || k == "null" {
			if create {
				c.addf("%s is required", key)
			}
			continue
		}
		if k != "string" {
			c.addf("%s must be a string, not a %s", key, k)
			continue
		}
		var v string
		_ = json.Unmarshal(raw, &v)
		switch key {
		case "name":
			if strings.TrimSpace(v) == "" {
				c.addf("name must not be empty")
			}
			name = &v
		case "visibility":
			switch v {
			case workspace.VisibilityPublic:
				v = workspace.VisibilityPublic // not a copy per thread
			case workspace.VisibilityPrivate:
				v = workspace.VisibilityPrivate
			default:
				c.addf("visibility %q is not one of Public, Private", v)
			}
			visibility = &v
		}
	}
	return name, visibility, c.err()
}
