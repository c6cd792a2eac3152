package structured_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/threadmill/threadmill/structured"
)

func TestExtract(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"bare object", `{"a": 1}`, `{"a":1}`},
		{"blanks and BOM", "\ufeff  \n{\"a\": [1, 2]}\n ", `{"a":[1,2]}`},
		{"bare scalar", `"yes"`, `"yes"`},
		{"json fence", "Here you go:\n```json\n{\"a\": \"b\"}\n```\nHope this helps.", `{"a":"b"}`},
		{"plain fence", "```\n{\"a\": true}\n```", `{"a":true}`},
		{"tilde fence", "~~~json\n[1,2]\n~~~", `[1,2]`},
		{"second fence", "```sh\nls -l\n```\n```json\n{\"a\":null}\n```", `{"a":null}`},
		{"prose around", `The answer is {"severity": "P1", "note": "a } in a string"} as requested.`, `{"severity":"P1","note":"a } in a string"}`},
		{"citation marker before", `See [1] and {"a": 2}`, `{"a":2}`},
		{"brace in prose first", `Use {curly} then {"a": 3}`, `{"a":3}`},
		{"array in prose", `Items: [1, 2, 3].`, `[1,2,3]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := structured.Extract(tc.in)
			if err != nil {
				t.Fatalf("Extract(%q): %v", tc.in, err)
			}
			if string(got) != tc.want {
				t.Errorf("Extract(%q) = %s, want %s", tc.in, got, tc.want)
			}
		})
	}
	for _, tc := range []struct{ name, in, want string }{
		{"prose only", "I cannot help with that.", "holds no JSON value"},
		{"empty", "  ", "holds no JSON value"},
		{"broken object", `{"a": 1,`, "does not parse"},
		{"broken fence", "```json\n{\"a\": }\n```", "does not parse"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := structured.Extract(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Extract(%q) = %s, %v; want an error with %q", tc.in, got, err, tc.want)
			}
		})
	}
	if _, err := structured.Extract("nothing"); !errors.Is(err, structured.ErrNoJSON) {
		t.Errorf("no JSON: %v, want ErrNoJSON", err)
	}
}

// FuzzExtract: Extract never panics, returns valid compact JSON when it
// succeeds, and finds an object embedded in any prose that holds no brace
// or bracket.
func FuzzExtract(f *testing.F) {
	for _, s := range []string{`{"a":1}`, "```json\n{\"a\":1}\n```", `x {"a": [1, {"b": "}"}]} y`, `[`, `{{{{`, "```", "\ufeff[1]", `"\u00e9"`} {
		f.Add(s, "prose")
	}
	f.Fuzz(func(t *testing.T, text, prose string) {
		got, err := structured.Extract(text)
		if err == nil {
			if !json.Valid(got) {
				t.Fatalf("Extract(%q) = %q, not valid JSON", text, got)
			}
			if strings.ContainsAny(string(got), "\n\t") && !strings.Contains(string(got), `"`) {
				t.Fatalf("Extract(%q) = %q, not compact", text, got)
			}
		}
		if strings.ContainsAny(prose, "{}[]`~\"\\") || !utf8.ValidString(prose) {
			return
		}
		want := `{"k":"v","n":[1,2]}`
		got, err = structured.Extract(prose + " " + want + " " + prose)
		if err != nil || string(got) != want {
			t.Fatalf("Extract of an object in prose %q = %q, %v", prose, got, err)
		}
	})
}

const ticketSchema = `{
  "type": "object",
  "required": ["customer", "severity"],
  "additionalProperties": false,
  "properties": {
    "customer": {"type": "string", "minLength": 1},
    "severity": {"enum": ["P1", "P2", "P3"]},
    "tags": {"type": "array", "items": {"type": "string"}}
  }
}`

func TestSchemaCheck(t *testing.T) {
	s, err := structured.Compile([]byte(ticketSchema))
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Fields(); !slices.Equal(got, []string{"customer", "severity", "tags"}) {
		t.Errorf("Fields = %v", got)
	}
	raw, probs := s.Check("```json\n{\"customer\": \"Acme\", \"severity\": \"P2\"}\n```")
	if len(probs) > 0 || string(raw) != `{"customer":"Acme","severity":"P2"}` {
		t.Errorf("valid answer: %s, %v", raw, probs)
	}
	_, probs = s.Check(`{"customer": "", "severity": "P9", "extra": 1}`)
	var msgs []string
	for _, p := range probs {
		msgs = append(msgs, p.String())
	}
	got := strings.Join(msgs, "\n")
	for _, want := range []string{"at the top level: additional properties 'extra' not allowed", "at /customer: minLength", "at /severity: value must be one of"} {
		if !strings.Contains(got, want) {
			t.Errorf("problems %q lack %q", got, want)
		}
	}
	_, probs = s.Check("no json here")
	if len(probs) != 1 || !strings.Contains(probs[0].Msg, "no JSON value") {
		t.Errorf("no JSON: %v", probs)
	}
}

func TestCompileRejects(t *testing.T) {
	for _, tc := range []struct{ schema, want string }{
		{`{"type": "strin"}`, "at /type:"},
		{`{"properties": {"a": {"minLength": -1}}}`, "at /properties/a/minLength:"},
		{`{"$ref": "https://example.com/x.json"}`, "self-contained"},
		{`{"type":`, "not JSON"},
	} {
		_, err := structured.Compile([]byte(tc.schema))
		var se *structured.SchemaError
		if !errors.As(err, &se) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Compile(%s) = %v, want a SchemaError with %q", tc.schema, err, tc.want)
		}
	}
}

func ExampleExtract() {
	raw, err := structured.Extract("Sure! Here is the triage:\n```json\n{\"severity\": \"P1\"}\n```")
	fmt.Println(string(raw), err)
	// Output: {"severity":"P1"} <nil>
}

func ExampleFields() {
	fmt.Println(structured.Fields([]byte(`{"type":"object","properties":{"customer":{},"severity":{},"status":{}}}`)))
	// Output: [customer severity status]
}
