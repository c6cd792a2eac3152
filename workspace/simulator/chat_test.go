package simulator_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/threadmill/threadmill/workspace"
	"github.com/threadmill/threadmill/workspace/simulator"
)

// invalidChats are bodies the chat, validate and interaction (as pgpt)
// routes all refuse with 400, and the message each must carry.
var invalidChats = []struct {
	name, body, msg string
}{
	{"plain string content", `{"messages":[{"role":"user","content":"hi"}]}`, "messages[0].content must be an array of content blocks"},
	{"unknown role", `{"messages":[{"role":"robot","content":[{"type":"text","text":"hi"}]}]}`, `messages[0].role "robot" is not one of system, user, assistant, tool`},
	{"empty messages", `{"messages":[]}`, "messages must not be empty"},
	{"missing messages", `{"max_tokens":10}`, "messages is required"},
	{"messages not array", `{"messages":{"role":"user"}}`, "messages must be an array of messages, not a object"},
	{"no user message", `{"messages":[{"role":"system","content":[{"type":"text","text":"be brief"}]}]}`, "at least one user message"},
	{"empty content", `{"messages":[{"role":"user","content":[]}]}`, "messages[0].content must contain at least one content block"},
	{"text block without text", `{"messages":[{"role":"user","content":[{"type":"text"}]}]}`, "messages[0].content[0].text is required"},
	{"blank text", `{"messages":[{"role":"user","content":[{"type":"text","text":"  "}]}]}`, "messages[0].content[0].text must not be empty"},
	{"unknown block type", `{"messages":[{"role":"user","content":[{"type":"video","data":"x"}]}]}`, `messages[0].content[0].type "video" is not a known content block type`},
	{"block without type", `{"messages":[{"role":"user","content":[{"text":"hi"}]}]}`, "messages[0].content[0].type is required"},
	{"role missing", `{"messages":[{"content":[{"type":"text","text":"hi"}]}]}`, "messages[0].role is required"},
	{"temperature too high", `{"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"temperature":2.5}`, "temperature must be in [0, 2], got 2.5"},
	{"temperature negative", `{"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"temperature":-0.1}`, "temperature must be in [0, 2]"},
	{"temperature string", `{"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"temperature":"hot"}`, "temperature must be a number, not a string"},
	{"max_tokens zero", `{"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"max_tokens":0}`, "max_tokens must be in [1, 32768], got 0"},
	{"max_tokens too big", `{"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"max_tokens":40000}`, "max_tokens must be in [1, 32768], got 40000"},
	{"max_tokens fraction", `{"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"max_tokens":1.5}`, "max_tokens must be an integer"},
	{"top_p out of range", `{"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"top_p":1.5}`, "top_p must be in [0, 1]"},
	{"system string", `{"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"system":"be brief"}`, "system must be an object"},
	{"malformed output schema", `{"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"response_format":{"type":"json_schema","json_schema":{"type":"object","properties":{"a":{"type":"strin"}}}}}`, "response_format.json_schema is not a valid JSON Schema: at /properties/a/type"},
	{"response_format type", `{"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"response_format":{"type":"xml"}}`, `response_format.type "xml" is not one of text, json_schema`},
	{"json_schema not an object", `{"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"response_format":{"type":"json_schema","json_schema":"x"}}`, "response_format.json_schema must be a JSON Schema object, not a string"},
	{"built-in tool type", `{"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"tools":[{"name":"web_search","type":"web_search_v2"}]}`, `tools[0]: the built-in tool web_search needs type "web_search_v1"`},
	{"tool_choice of no tool", `{"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"tool_choice":{"type":"tool","name":"web_search"}}`, `tool_choice.name "web_search" is not one of the request's tools`},
	{"citations not an object", `{"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"system":{"citations":true}}`, "system.citations must be an object"},
	{"thinking not an object", `{"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"thinking":true}`, "thinking must be an object"},
	{"wrong type elsewhere", `{"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"top_k":"many"}`, "top_k has the wrong type: want int, got string"},
}

func TestChatValidation(t *testing.T) {
	e := newEnv(t, simulator.Config{})
	th := e.createThread("validation")
	for _, tc := range invalidChats {
		t.Run(tc.name, func(t *testing.T) {
			// /app/chat
			status, body := e.do("POST", "/api/v1/app/chat", tc.body)
			var eb struct {
				Valid   *bool
				Message string
				Errors  []string
			}
			if err := json.Unmarshal(body, &eb); status != 400 || err != nil || !strings.Contains(eb.Message, tc.msg) || len(eb.Errors) == 0 {
				t.Fatalf("chat: %d %s, want 400 with %q", status, body, tc.msg)
			}
			// /app/chat/validate
			status, body = e.do("POST", "/api/v1/app/chat/validate", tc.body)
			eb.Valid = nil
			if err := json.Unmarshal(body, &eb); status != 400 || err != nil || eb.Valid == nil || *eb.Valid ||
				!strings.Contains(strings.Join(eb.Errors, "\n"), tc.msg) {
				t.Fatalf("validate: %d %s, want 400 {valid:false} with %q", status, body, tc.msg)
			}
			// interaction pgpt: same rule, path prefixed with pgpt.
			status, body = e.do("POST", "/api/v1/app/thread/"+th.ID+"/interaction",
				`{"thread_id":"`+th.ID+`","pgpt":`+tc.body+`}`)
			if status != 400 || !strings.Contains(string(body), "pgpt.") {
				t.Fatalf("interaction: %d %s, want 400 naming pgpt.", status, body)
			}
		})
	}
	c := e.sim.Counters()
	if c.Validations != len(invalidChats) || c.ValidationsFailed != len(invalidChats) || c.ChatsAnswered != 0 || c.InteractionsCreated != 0 {
		t.Fatalf("counters after invalid requests: %+v", c)
	}
	if got := c.Requests["POST /api/v1/app/chat"][400]; got != len(invalidChats) {
		t.Fatalf("chat 400s = %d", got)
	}
}

func TestValidateAcceptsValidRequests(t *testing.T) {
	e := newEnv(t, simulator.Config{})
	valid := []string{
		`{"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}`,
		`{"messages":[{"role":"system","content":[{"type":"text","text":"Be brief."}]},{"role":"user","content":[{"type":"text","text":"hi"}]},{"role":"assistant","content":[{"type":"text","text":"hello"}]},{"role":"user","content":[{"type":"text","text":"more"}]}],
		  "system":{"text":"x","use_default_prompt":true},"max_tokens":32768,"temperature":0,"top_p":1,"seed":4,"unknown_field":{"tolerated":true}}`,
		`{"messages":[{"role":"user","content":[{"type":"text","text":"hi"},{"type":"image","data":"aGk=","mime_type":"image/png"}]}],"max_tokens":1,"temperature":2}`,
	}
	for _, body := range valid {
		status, data := e.do("POST", "/api/v1/app/chat/validate", body)
		if status != http.StatusNoContent || len(data) != 0 {
			t.Fatalf("validate %s: %d %s, want 204 with no body", body, status, data)
		}
	}
	if c := e.sim.Counters(); c.Validations != 3 || c.ValidationsFailed != 0 || c.TokensIn != 0 {
		t.Fatalf("counters = %+v", c)
	}
}

func TestChatAnswer(t *testing.T) {
	e := newEnv(t, simulator.Config{})
	req := workspace.ChatRequest{
		System: &workspace.System{Text: "You write support briefs."},
		Messages: []workspace.Message{workspace.UserText("Write this week's support brief in two bullets from these summaries:\n" +
			"- TCK-1041: Forty users at Brightline were stuck in a login loop after an SSO migration.\n" +
			"- TCK-1044: Duplicate card charges were refunded after a payment retry bug.\n" +
			"- TCK-1050: The iOS app crashed when scanning receipts without camera access.")},
		MaxTokens: intp(200),
	}
	var a, b workspace.ChatResponse
	e.must("POST", "/api/v1/app/chat", req, 200, &a)
	e.must("POST", "/api/v1/app/chat", req, 200, &b)
	if a.ID == b.ID || a.Role != "assistant" || a.Model != "default" || a.StopReason != "end_turn" {
		t.Fatalf("answer = %+v", a)
	}
	if a.Text() != b.Text() || *a.Usage != *b.Usage {
		t.Fatalf("same request, different answers:\n%q\n%q", a.Text(), b.Text())
	}
	lines := strings.Split(a.Text(), "\n")
	if len(lines) != 2 {
		t.Fatalf("asked for two bullets, got %q", a.Text())
	}
	// The instruction sentence is not echoed; bullets come from the summaries.
	for _, l := range lines {
		if !strings.HasPrefix(l, "- TCK-10") {
			t.Fatalf("bullet %q does not come from the summaries", l)
		}
	}
	wantIn := workspace.EstimateTokens(req.System.Text) + workspace.EstimateTokens(req.Messages[0].Content[0].Text)
	if int64(a.Usage.InputTokens) != wantIn || int64(a.Usage.OutputTokens) != workspace.EstimateTokens(a.Text()) {
		t.Fatalf("usage = %+v, want input %d, output %d", a.Usage, wantIn, workspace.EstimateTokens(a.Text()))
	}
	c := e.sim.Counters()
	if c.ChatsAnswered != 2 || c.TokensIn != 2*wantIn || c.TokensOut != 2*int64(a.Usage.OutputTokens) {
		t.Fatalf("counters = %+v", c)
	}

	// A one-sentence prompt has nothing to extract: the answer restates it.
	var short workspace.ChatResponse
	e.must("POST", "/api/v1/app/chat", chat("Give one-line status."), 200, &short)
	if short.Text() != "- Simulated answer to: Give one-line status." {
		t.Fatalf("short answer = %q", short.Text())
	}
}

func TestChatRespectsMaxTokens(t *testing.T) {
	e := newEnv(t, simulator.Config{})
	long := "Summarize the following notes. " + strings.Repeat("The quarterly numbers improved across every region this year. ", 40)
	for _, max := range []int{1, 3, 10, 25, 60} {
		var a workspace.ChatResponse
		req := chat(long)
		req.MaxTokens = intp(max)
		e.must("POST", "/api/v1/app/chat", req, 200, &a)
		if int(a.Usage.OutputTokens) > max || a.StopReason != "max_tokens" {
			t.Fatalf("max_tokens %d: output %d tokens, stop %q: %q", max, a.Usage.OutputTokens, a.StopReason, a.Text())
		}
	}
}

// TestChatsKeepsTheLatest checks that Chats remembers the last ChatsKept
// chats, in order, however many were answered.
func TestChatsKeepsTheLatest(t *testing.T) {
	e := newEnv(t, simulator.Config{})
	n := 2*simulator.ChatsKept + 3
	ids := make([]string, n)
	for i := range n {
		var a workspace.ChatResponse
		e.must("POST", "/api/v1/app/chat", chat(fmt.Sprintf("Give status %d.", i)), 200, &a)
		ids[i] = a.ID
	}
	chats := e.sim.Chats()
	if len(chats) != simulator.ChatsKept {
		t.Fatalf("%d chats kept, want %d", len(chats), simulator.ChatsKept)
	}
	for i, c := range chats {
		if want := ids[n-simulator.ChatsKept+i]; c.Response.ID != want || c.Request.Messages[0].Content[0].Text != fmt.Sprintf("Give status %d.", n-simulator.ChatsKept+i) {
			t.Fatalf("chat %d is %s %q, want %s", i, c.Response.ID, c.Request.Messages[0].Content[0].Text, want)
		}
	}
	if c := e.sim.Counters(); c.ChatsAnswered != n {
		t.Fatalf("%d chats counted, want %d", c.ChatsAnswered, n)
	}
}
