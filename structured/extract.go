package structured

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// maxExtract bounds the text Extract looks at, and maxStarts the positions
// it tries to decode from, so a hostile answer costs bounded work.
const (
	maxExtract = 1 << 20
	maxStarts  = 64
)

// ErrNoJSON is returned by Extract when the text holds no JSON value.
var ErrNoJSON = errors.New("the answer holds no JSON value: answer with the JSON object only")

var fenceRe = regexp.MustCompile("(?s)(?:```|~~~)[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|~~~)")

// Extract finds the JSON value in an answer's text and returns it compacted.
// Models wrap JSON in many ways; Extract tries, in order:
//
//  1. the whole text (trimmed, a UTF-8 byte order mark dropped);
//  2. each fenced code block (```json ... ```, ``` ... ```, ~~~), in order;
//  3. the first '{' from which one complete JSON object decodes, then the
//     first '[' from which an array does (prose around it is ignored, so
//     "Here it is: {...} Hope this helps" works).
//
// A text with no decodable value gives ErrNoJSON, or the decoder's error
// for the most promising candidate (a fence, or text that starts like
// JSON) when there is one. Extract never panics and reads at most 1 MiB.
func Extract(text string) (json.RawMessage, error) {
	if len(text) > maxExtract {
		text = text[:maxExtract]
	}
	text = strings.TrimPrefix(strings.TrimSpace(text), "\ufeff")
	var firstErr error
	if raw, err := decodeOne(text, true); err == nil {
		return raw, nil
	} else if strings.HasPrefix(text, "{") || strings.HasPrefix(text, "[") {
		firstErr = err
	}
	for _, m := range fenceRe.FindAllStringSubmatch(text, 16) {
		raw, err := decodeOne(strings.TrimSpace(m[2]), true)
		if err == nil {
			return raw, nil
		}
		if firstErr == nil && (m[1] == "" || strings.EqualFold(m[1], "json")) {
			firstErr = err
		}
	}
	for _, open := range []byte{'{', '['} {
		off, tries := 0, 0
		for tries < maxStarts {
			i := strings.IndexByte(text[off:], open)
			if i < 0 {
				break
			}
			tries++
			start := off + i
			if raw, err := decodeOne(text[start:], false); err == nil {
				return raw, nil
			}
			off = start + 1
		}
	}
	if firstErr != nil {
		return nil, fmt.Errorf("the answer's JSON does not parse: %w", firstErr)
	}
	return nil, ErrNoJSON
}

// decodeOne decodes the JSON value at the start of s. With whole, nothing
// but blanks may follow it; without, the value must be an object or array
// and anything may follow.
func decodeOne(s string, whole bool) (json.RawMessage, error) {
	if s == "" {
		return nil, ErrNoJSON
	}
	dec := json.NewDecoder(strings.NewReader(s))
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return nil, err
	}
	if whole {
		if dec.More() || strings.TrimSpace(s[dec.InputOffset():]) != "" {
			return nil, errors.New("text follows the JSON value")
		}
	} else if raw[0] != '{' && raw[0] != '[' {
		return nil, ErrNoJSON
	}
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
