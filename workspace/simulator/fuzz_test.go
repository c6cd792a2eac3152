package simulator

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/threadmill/threadmill/workspace"
)

// FuzzChatRequest feeds arbitrary bodies to the validator and, when they
// pass, to the responder: nothing panics, a rejection is a 4xx with at
// least one message, and an answer honours max_tokens and is deterministic.
func FuzzChatRequest(f *testing.F) {
	f.Add(`{"messages":[{"role":"user","content":[{"type":"text","text":"Summarize in two bullets. One two three four. Five six seven eight."}]}],"max_tokens":5}`)
	f.Add(`{"messages":[{"role":"user","content":"plain"}]}`)
	f.Add(`{"messages":[],"temperature":3}`)
	f.Add(`{"messages":[{"role":"user","content":[{"type":"text","text":"x"}]}],"system":{"text":"s"},"top_k":1.5}`)
	f.Add(`[]`)
	f.Add(`{"messages":null}`)
	f.Add("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"```\\ncode\\n```\\n# h\\n- a b c d e.\"}]}]}")
	f.Fuzz(func(t *testing.T, body string) {
		r := httptest.NewRequest("POST", "/api/v1/app/chat", strings.NewReader(body))
		obj, _, e := readBody(r, DefaultMaxBodyBytes)
		if e == nil {
			var req workspace.ChatRequest
			req, e = parseChatRequest(obj, "")
			if e == nil {
				a := respond(req, nil, workspace.AgentDefault)
				limit := DefaultMaxTokens
				if req.MaxTokens != nil {
					limit = *req.MaxTokens
				}
				if int(a.usage.OutputTokens) > limit {
					t.Fatalf("answer of %d tokens exceeds max_tokens %d", a.usage.OutputTokens, limit)
				}
				if b := respond(req, nil, workspace.AgentDefault); !reflect.DeepEqual(b, a) {
					t.Fatalf("responder is not deterministic: %+v vs %+v", a, b)
				}
				if utf8.ValidString(body) && !utf8.ValidString(a.text) {
					t.Fatalf("answer is not valid UTF-8: %q", a.text)
				}
				return
			}
		}
		if e.status < 400 || e.status > 499 || e.msg == "" {
			t.Fatalf("rejection %d %q", e.status, e.msg)
		}
		if e.status == http.StatusBadRequest && len(e.errs) == 0 && !strings.HasPrefix(e.msg, "request body") && !strings.HasPrefix(e.msg, "reading") {
			t.Fatalf("400 without error list: %q", e.msg)
		}
	})
}

// FuzzSentences checks the splitter never panics, never returns blank
// sentences, and that every sentence's words come from the input.
func FuzzSentences(f *testing.F) {
	f.Add("# Title\n\nFirst sentence is here. Second one follows! A third?\n- bullet item with words\n| a | b |\n```\ncode here is not used\n```")
	f.Add("")
	f.Add("...!!!???")
	f.Fuzz(func(t *testing.T, text string) {
		for _, s := range sentences(text) {
			if strings.TrimSpace(s) == "" || len(strings.Fields(s)) < 4 {
				t.Fatalf("bad sentence %q", s)
			}
			strip := strings.NewReplacer("*", "", "_", "", "`", "")
			for _, w := range strings.Fields(s) {
				if !bytes.Contains([]byte(strip.Replace(text)), []byte(strip.Replace(w))) {
					t.Fatalf("word %q of %q not in the input", w, s)
				}
			}
		}
		chunks := splitChunks(text)
		if strings.Join(chunks, "") != text {
			t.Fatalf("chunks %q do not rebuild %q", chunks, text)
		}
		// The running estimates never go down and end at the whole text's.
		cum := cumTokens(chunks)
		for k := 1; k < len(cum); k++ {
			if cum[k] < cum[k-1] {
				t.Fatalf("token estimate falls from %d to %d at chunk %d of %q", cum[k-1], cum[k], k, chunks)
			}
		}
		if len(cum) > 0 && cum[len(cum)-1] != workspace.EstimateTokens(text) {
			t.Fatalf("last running estimate %d, the text's %d", cum[len(cum)-1], workspace.EstimateTokens(text))
		}
	})
}
