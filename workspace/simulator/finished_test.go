package simulator_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/threadmill/threadmill/workspace"
	"github.com/threadmill/threadmill/workspace/simulator"
)

// richRequest is a request with most of the ChatRequest surface set, so
// that its pgpt echo has something to lose.
func richRequest(question, correlationID string) workspace.ChatRequest {
	on := true
	seed := int64(7)
	req := workspace.ChatRequest{
		Messages: []workspace.Message{
			workspace.UserText("Earlier question about the login loop."),
			{Role: workspace.RoleAssistant, Content: []workspace.ContentBlock{workspace.TextBlock("An earlier answer <with> & markup.")}},
			workspace.UserText(question),
		},
		System:        &workspace.System{Text: "Answer from the documents.", Citations: &workspace.Citations{Enabled: &on}},
		MaxTokens:     intp(150),
		Temperature:   floatp(0.3),
		TopP:          floatp(0.9),
		Seed:          &seed,
		Stream:        &on,
		Thinking:      &workspace.Thinking{Enabled: true},
		MCPServers:    json.RawMessage(`{"servers": ["a <b>", 2]}`),
		CorrelationID: correlationID,
	}
	return req
}

// reads is what the API answers about one interaction: GET, its entry in
// its thread's list, and its stream's events without pings.
type reads struct {
	get    []byte
	listed map[string]any
	stream []sseEvent
}

func (e *env) reads(threadID, id string) reads {
	e.t.Helper()
	status, get := e.do("GET", "/api/v1/app/interaction/"+id, nil)
	if status != http.StatusOK {
		e.t.Fatalf("GET %s: %d %s", id, status, get)
	}
	var page struct{ Data []map[string]any }
	e.must("GET", "/api/v1/app/thread/"+threadID+"/interaction", nil, http.StatusOK, &page)
	var listed map[string]any
	for _, in := range page.Data {
		if in["id"] == id {
			listed = in
		}
	}
	_, sr := e.openStream(id)
	evs, err := sr.readAll()
	if err != nil {
		e.t.Fatal(err)
	}
	return reads{get: get, listed: listed, stream: withoutPings(evs)}
}

func withoutPings(evs []sseEvent) []sseEvent {
	return slices.DeleteFunc(slices.Clone(evs), func(ev sseEvent) bool { return ev.Event == "ping" })
}

// check compares the reads of a finished interaction with what its live
// stream sent and with an earlier round of reads. The replay is the live
// stream, except for an interaction that failed while generating: its
// replay has no content blocks (GET shows none either).
func (r reads) check(t *testing.T, what string, sent workspace.ChatRequest, live []sseEvent, earlier *reads) {
	t.Helper()
	replay := live
	if failed := live[len(live)-2].Data["delta"].(map[string]any)["stop_reason"] == workspace.StopReasonError; failed {
		replay = slices.DeleteFunc(slices.Clone(live), func(ev sseEvent) bool { return strings.HasPrefix(ev.Event, "content_block_") })
	}
	var got workspace.Interaction
	if err := json.Unmarshal(r.get, &got); err != nil {
		t.Fatalf("%s: GET: %v", what, err)
	}
	var get map[string]any
	_ = json.Unmarshal(r.get, &get)
	if !reflect.DeepEqual(get, r.listed) {
		t.Errorf("%s: the thread's list shows\n%v\nGET shows\n%v", what, r.listed, get)
	}
	// The echo, byte for byte as sent ("<" and "&" included).
	var raw struct {
		PGPT json.RawMessage `json:"pgpt"`
	}
	_ = json.Unmarshal(r.get, &raw)
	want, echo := unescapedJSON(t, sent), []byte(raw.PGPT)
	if !bytes.Equal(echo, want) {
		t.Errorf("%s: pgpt echoes\n%s\nthe request was\n%s", what, echo, want)
	}
	if u, _ := json.Marshal(got.UserInput); string(u) != mustJSON(t, sent.Messages[len(sent.Messages)-1]) {
		t.Errorf("%s: user_input %s", what, u)
	}
	if len(r.stream) != len(replay) {
		t.Fatalf("%s: the replay sent %v, want %v", what, eventNames(r.stream), eventNames(replay))
	}
	for i := range replay {
		if r.stream[i].Event != replay[i].Event || r.stream[i].Raw != replay[i].Raw {
			t.Errorf("%s: event %d replayed as %s %s, want %s %s", what, i,
				r.stream[i].Event, r.stream[i].Raw, replay[i].Event, replay[i].Raw)
		}
	}
	switch got.State {
	case workspace.StateCompleted:
		if text := textDeltas(live); text != got.Output() {
			t.Errorf("%s: GET output %q, the stream sent %q", what, got.Output(), text)
		}
	case workspace.StateError:
		var errs []any
		for _, ev := range live {
			if ev.Event == "error" {
				errs = append(errs, ev.Data["error"])
			}
		}
		var gotErrs []any
		_ = json.Unmarshal([]byte(mustJSON(t, got.AssistantOutput.Errors)), &gotErrs)
		if got.Output() != "" || len(errs) == 0 || !reflect.DeepEqual(errs, gotErrs) {
			t.Errorf("%s: GET output %q, errors %v; the stream's errors %v", what, got.Output(), gotErrs, errs)
		}
	default:
		t.Errorf("%s: state %s after the stream ended", what, got.State)
	}
	if md := live[len(live)-2]; md.Event == "message_delta" {
		usage, _ := json.Marshal(md.Data["delta"].(map[string]any)["usage"])
		if string(usage) != mustJSON(t, got.Usage()) {
			t.Errorf("%s: GET usage %+v, the stream's %s", what, got.Usage(), usage)
		}
	}
	if earlier != nil && string(r.get) != string(earlier.get) {
		t.Errorf("%s: GET changed:\n%s\nwas\n%s", what, r.get, earlier.get)
	}
}

// textDeltas concatenates the text of the text_delta events.
func textDeltas(evs []sseEvent) string {
	var b strings.Builder
	for _, ev := range evs {
		if d, ok := ev.Data["delta"].(map[string]any); ok && d["type"] == "text_delta" {
			b.WriteString(d["text"].(string))
		}
	}
	return b.String()
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// streamLive reads an interaction's stream while it is processing; after
// cancelAfter deltas (0: never) it cancels the interaction.
func (e *env) streamLive(id string, cancelAfter int) []sseEvent {
	e.t.Helper()
	_, sr := e.openStream(id)
	var evs []sseEvent
	for {
		ev, err := sr.next()
		if err != nil {
			break
		}
		evs = append(evs, ev)
		if cancelAfter > 0 && countEvents(evs, "content_block_delta") == cancelAfter && ev.Event == "content_block_delta" {
			if status, body := e.do("POST", "/api/v1/app/interaction/"+id+"/cancel", nil); status != http.StatusNoContent {
				e.t.Fatalf("cancel: %d %s", status, body)
			}
		}
	}
	if evs[len(evs)-1].Event != "message_stop" {
		e.t.Fatalf("the live stream ended with %v", eventNames(evs))
	}
	return withoutPings(evs)
}

// TestFinishedInteractionReadsStayTheSame checks that a finished
// interaction answers every read as its live stream said it ended, again
// and again: GET (the request echoed as sent, the output and usage the
// stream gave), its thread's list, and its stream's replay (event for
// event what the live stream sent, pings aside); for an interaction that
// completed, one cancelled midway (each cancel end), one that failed, and a
// synchronous one, whose create answer is what GET answers later.
func TestFinishedInteractionReadsStayTheSame(t *testing.T) {
	for _, end := range []string{simulator.CancelEndCompleted, simulator.CancelEndError, simulator.CancelEndStop} {
		t.Run("cancel-end-"+end, func(t *testing.T) {
			e := newEnv(t, simulator.Config{Async: true, PerOutputToken: 2 * time.Millisecond, PingInterval: 20 * time.Millisecond,
				Compat: simulator.Compat{CancelEnd: end}})
			th := e.createThread("after")
			ticket := e.artifactID(loginTicket)
			policy := e.artifactID("Policies/escalation-policy.md")

			for i, c := range []struct {
				what        string
				cancelAfter int
				fail        bool
			}{{"completed", 0, false}, {"cancelled", 3, false}, {"failed", 0, true}} {
				if c.fail {
					e.sim.SetFaults(simulator.Faults{InteractionError: 1})
				}
				sent := richRequest("Summarize the login loop and the escalation rules in ten bullets.", fmt.Sprintf("run/step/%d", i))
				in := e.createInteraction(th.ID, sent, ticket, policy)
				live := e.streamLive(in.ID, c.cancelAfter)
				first := e.reads(th.ID, in.ID)
				first.check(t, c.what, sent, live, nil)
				again := e.reads(th.ID, in.ID)
				again.check(t, c.what+" (again)", sent, live, &first)
			}
		})
	}
	t.Run("sync", func(t *testing.T) {
		e := newEnv(t, simulator.Config{})
		th := e.createThread("after")
		sent := richRequest("Summarize the login loop ticket in three bullets.", "run/step/sync")
		status, created := e.do("POST", "/api/v1/app/thread/"+th.ID+"/interaction", workspace.CreateInteractionRequest{
			ThreadID: th.ID, PGPT: sent, ArtifactIDs: []string{e.artifactID(loginTicket)},
		})
		if status != http.StatusCreated {
			t.Fatalf("create: %d %s", status, created)
		}
		var in workspace.Interaction
		_ = json.Unmarshal(created, &in)
		first := e.reads(th.ID, in.ID)
		if string(first.get) != string(created) {
			t.Errorf("GET answers\n%s\ncreate answered\n%s", first.get, created)
		}
		first.check(t, "sync", sent, first.stream, nil)
		e.reads(th.ID, in.ID).check(t, "sync (again)", sent, first.stream, &first)
	})
}
