package simulator_test

import (
	"bytes"
	"flag"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/threadmill/threadmill/workspace"
	"github.com/threadmill/threadmill/workspace/simulator"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

const loginTicket = "Support/Tickets/TCK-1041-login-loop.md"

func TestInteractionSync(t *testing.T) {
	e := newEnv(t, simulator.Config{Latency: 30 * time.Millisecond})
	th := e.createThread("sync")
	id := e.artifactID(loginTicket)
	art, _ := e.sim.Artifact(id)
	req := chat("Summarize the login loop ticket in three bullets: cause, fix and follow-up.")
	req.MaxTokens = intp(400)
	req.Temperature = floatp(0.2)

	start := time.Now()
	in := e.createInteraction(th.ID, req, id)
	if el := time.Since(start); el < 30*time.Millisecond {
		t.Fatalf("sync create returned after %s, before the 30ms latency", el)
	}
	if in.State != "Completed" || in.ThreadID != th.ID || in.ProjectID != project || in.CreatedBy == nil ||
		in.PGPT == nil || in.UserInput == nil || in.UserInput.Content[0].Text != req.Messages[0].Content[0].Text ||
		!slices.Equal(in.ArtifactIDs, []string{id}) || in.CreatedAt != "2026-06-15T09:00:00Z" {
		t.Fatalf("interaction = %+v", in)
	}
	out := in.Output()
	bullets := strings.Split(out, "\n")
	if len(bullets) != 3 || in.StopReason() != "end_turn" {
		t.Fatalf("want three bullets ending in end_turn, got %q (%s)", out, in.StopReason())
	}
	for _, b := range bullets {
		s := strings.TrimPrefix(b, "- ")
		if s == b || !strings.Contains(art.Content, s) {
			t.Fatalf("bullet %q is not a sentence of the ticket", b)
		}
	}
	wantIn := workspace.EstimateTokens(req.Messages[0].Content[0].Text) + workspace.EstimateTokens(art.Content)
	if u := in.Usage(); int64(u.InputTokens) != wantIn || int64(u.OutputTokens) != workspace.EstimateTokens(out) {
		t.Fatalf("usage = %+v, want input %d output %d", u, wantIn, workspace.EstimateTokens(out))
	}

	// Determinism: the same request in another thread gives the same answer.
	th2 := e.createThread("sync-2")
	in2 := e.createInteraction(th2.ID, req, id)
	if in2.ID == in.ID || in2.Output() != out || in2.Usage() != in.Usage() {
		t.Fatalf("same request, different answer:\n%q\n%q", out, in2.Output())
	}

	var got workspace.Interaction
	e.must("GET", "/api/v1/app/interaction/"+in.ID, nil, 200, &got)
	if got.Output() != out || got.State != "Completed" {
		t.Fatalf("get = %+v", got)
	}
	var page workspace.Page[workspace.Interaction]
	e.must("GET", "/api/v1/app/thread/"+th.ID+"/interaction", nil, 200, &page)
	if len(page.Data) != 1 || page.Data[0].ID != in.ID {
		t.Fatalf("list = %+v", page)
	}

	// Cancel after the end is a conflict.
	if status, body := e.do("POST", "/api/v1/app/interaction/"+in.ID+"/cancel", nil); status != http.StatusConflict ||
		!strings.Contains(string(body), "already finished") {
		t.Fatalf("cancel finished: %d %s", status, body)
	}

	// Delete, then it is gone.
	e.must("DELETE", "/api/v1/app/interaction/"+in.ID, nil, 200, &got)
	if got.ID != in.ID {
		t.Fatalf("delete answered %+v", got)
	}
	for _, p := range []string{"", "/stream"} {
		if status, _ := e.do("GET", "/api/v1/app/interaction/"+in.ID+p, nil); status != 404 {
			t.Fatalf("GET deleted interaction%s: %d", p, status)
		}
	}
	e.must("GET", "/api/v1/app/thread/"+th.ID+"/interaction", nil, 200, &page)
	if len(page.Data) != 0 {
		t.Fatalf("list after delete = %+v", page.Data)
	}

	c := e.sim.Counters()
	if c.InteractionsCreated != 2 || c.InteractionsCompleted != 2 || c.TokensIn != 2*wantIn ||
		c.TokensOut != 2*int64(in.Usage().OutputTokens) || c.Requests["POST /api/v1/app/thread/{threadId}/interaction"][201] != 2 {
		t.Fatalf("counters = %+v", c)
	}
}

func TestInteractionArtifactSets(t *testing.T) {
	e := newEnv(t, simulator.Config{})
	th := e.createThread("sets")
	var ticketsIn, allIn int64
	for _, a := range e.sim.Artifacts() {
		if a.Type != "Document" {
			continue
		}
		full, _ := e.sim.Artifact(a.ID)
		allIn += workspace.EstimateTokens(full.Content)
		if strings.HasPrefix(a.Name, "TCK-") {
			ticketsIn += workspace.EstimateTokens(full.Content)
		}
	}
	prompt := "List the customers affected by payment problems."
	p := workspace.EstimateTokens(prompt)

	// A Folder id stands for its usable descendants.
	in := e.createInteraction(th.ID, chat(prompt), e.artifactID("Support/Tickets"))
	if got := int64(in.Usage().InputTokens); got != p+ticketsIn {
		t.Fatalf("folder input tokens = %d, want %d", got, p+ticketsIn)
	}
	for _, l := range strings.Split(in.Output(), "\n") {
		if !strings.HasSuffix(l, ".md]") || !strings.Contains(l, " [TCK-") {
			t.Fatalf("bullet %q does not name its ticket", l)
		}
	}

	// all_artifacts uses every usable document of the project.
	var all workspace.Interaction
	e.must("POST", "/api/v1/app/thread/"+th.ID+"/interaction", workspace.CreateInteractionRequest{
		ThreadID: th.ID, PGPT: chat(prompt), ArtifactIDs: []string{}, AllArtifacts: true,
	}, 201, &all)
	if got := int64(all.Usage().InputTokens); got != p+allIn || !all.AllArtifacts {
		t.Fatalf("all_artifacts input tokens = %d, want %d", got, p+allIn)
	}

	// Without artifacts, the answer comes from the prompt (chat mode).
	none := e.createInteraction(th.ID, chat("Summarize this. The build failed twice on Monday night. The fix was a cache reset."))
	if none.Output() != "- The build failed twice on Monday night.\n- The fix was a cache reset." {
		t.Fatalf("no-artifact answer = %q", none.Output())
	}

	// ProjectDeepResearch is accepted.
	var deep workspace.Interaction
	e.must("POST", "/api/v1/app/thread/"+th.ID+"/interaction", workspace.CreateInteractionRequest{
		ThreadID: th.ID, PGPT: chat(prompt), ArtifactIDs: []string{e.artifactID("Support/Tickets")}, Agent: "ProjectDeepResearch",
	}, 201, &deep)
	if n := len(strings.Split(deep.Output(), "\n")); n != 10 {
		t.Fatalf("deep research answer has %d bullets, want 10", n)
	}
}

func TestInteractionCreateErrors(t *testing.T) {
	e := newEnv(t, simulator.Config{})
	th := e.createThread("errors")
	dead := e.createThread("deleted")
	e.must("DELETE", "/api/v1/app/thread/"+dead.ID, nil, 200, nil)
	notReady := e.sim.AddArtifact(simulator.ArtifactSpec{Name: "scan.pdf", State: "Processing", IngestStatus: "Parsing"})
	good := `{"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}`
	path := "/api/v1/app/thread/" + th.ID + "/interaction"
	cases := []struct {
		name, path, body string
		want             int
		msg              string
	}{
		{"thread mismatch", path, `{"thread_id":"thread_other","pgpt":` + good + `}`, 400, `thread_id "thread_other" does not match`},
		{"thread_id missing", path, `{"pgpt":` + good + `}`, 400, "thread_id is required"},
		{"pgpt missing", path, `{"thread_id":"` + th.ID + `"}`, 400, "pgpt is required"},
		{"pgpt string", path, `{"thread_id":"` + th.ID + `","pgpt":"hi"}`, 400, "pgpt must be an object"},
		{"plain string content", path, `{"thread_id":"` + th.ID + `","pgpt":{"messages":[{"role":"user","content":"hi"}]}}`, 400, "pgpt.messages[0].content must be an array"},
		{"bad agent", path, `{"thread_id":"` + th.ID + `","agent":"Turbo","pgpt":` + good + `}`, 400, `agent "Turbo" is not one of Default, ProjectDeepResearch`},
		{"artifact_ids not array", path, `{"thread_id":"` + th.ID + `","artifact_ids":"a","pgpt":` + good + `}`, 400, "artifact_ids must be an array"},
		{"artifact id not string", path, `{"thread_id":"` + th.ID + `","artifact_ids":[1],"pgpt":` + good + `}`, 400, "artifact_ids[0] must be a string"},
		{"all_artifacts not bool", path, `{"thread_id":"` + th.ID + `","all_artifacts":"yes","pgpt":` + good + `}`, 400, "all_artifacts must be a boolean"},
		{"unknown artifact", path, `{"thread_id":"` + th.ID + `","artifact_ids":["artifact_nope"],"pgpt":` + good + `}`, 404, "artifact_nope"},
		{"artifact not ingested", path, `{"thread_id":"` + th.ID + `","artifact_ids":["` + notReady.ID + `"],"pgpt":` + good + `}`, 400, "not ready to use as context (state Processing, ingest_status Parsing)"},
		{"unknown thread", "/api/v1/app/thread/thread_nope/interaction", `{"thread_id":"thread_nope","pgpt":` + good + `}`, 404, `thread "thread_nope" not found`},
		{"deleted thread", "/api/v1/app/thread/" + dead.ID + "/interaction", `{"thread_id":"` + dead.ID + `","pgpt":` + good + `}`, 404, "not found"},
		{"not json", path, `thread please`, 400, "not valid JSON"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, body := e.do("POST", tc.path, tc.body)
			if status != tc.want || !strings.Contains(errText(body), tc.msg) {
				t.Fatalf("%d %s, want %d with %q", status, body, tc.want, tc.msg)
			}
		})
	}
	for _, p := range []string{"/api/v1/app/interaction/inter_nope", "/api/v1/app/interaction/inter_nope/stream", "/api/v1/app/thread/thread_nope/interaction"} {
		if status, _ := e.do("GET", p, nil); status != 404 {
			t.Errorf("GET %s: %d, want 404", p, status)
		}
	}
	if status, _ := e.do("POST", "/api/v1/app/interaction/inter_nope/cancel", nil); status != 404 {
		t.Error("cancel of unknown interaction is not 404")
	}
	if status, _ := e.do("DELETE", "/api/v1/app/interaction/inter_nope", nil); status != 404 {
		t.Error("delete of unknown interaction is not 404")
	}
	if c := e.sim.Counters(); c.InteractionsCreated != 0 {
		t.Fatalf("rejected requests created %d interactions", c.InteractionsCreated)
	}
}

// openStream opens the stream of an interaction.
func (e *env) openStream(id string) (*http.Response, *sseReader) {
	e.t.Helper()
	req := e.request("GET", "/api/v1/app/interaction/"+id+"/stream", nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		e.t.Fatalf("stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return resp, newSSEReader(resp.Body)
}

func (e *env) getInteraction(id string) workspace.Interaction {
	e.t.Helper()
	var in workspace.Interaction
	e.must("GET", "/api/v1/app/interaction/"+id, nil, 200, &in)
	return in
}

func TestInteractionAsyncLifecycle(t *testing.T) {
	e := newEnv(t, simulator.Config{Async: true, Latency: 20 * time.Millisecond, PerOutputToken: 5 * time.Millisecond})
	th := e.createThread("async")
	req := chat("What does the refund policy say about annual plans and billing errors?")
	in := e.createInteraction(th.ID, req, e.artifactID("Policies/refund-policy.md"))
	if in.State != "Processing" || in.AssistantOutput != nil {
		t.Fatalf("async create = %+v, want Processing without output", in)
	}

	_, sr := e.openStream(in.ID)
	var live []sseEvent
	for {
		ev, err := sr.next()
		if err != nil {
			t.Fatalf("stream ended before the first delta: %v", err)
		}
		live = append(live, ev)
		if ev.Event == "content_block_delta" {
			break
		}
	}
	// The first delta arrived while the interaction is still processing.
	if got := e.getInteraction(in.ID); got.State != "Processing" {
		t.Fatalf("state after the first delta = %s, want Processing", got.State)
	}
	rest, err := sr.readAll()
	if err != nil {
		t.Fatal(err)
	}
	live = append(live, rest...)
	names := eventNames(live)
	if names[0] != "message_start" || names[1] != "ping" || names[2] != "content_block_start" ||
		!slices.Equal(names[len(names)-3:], []string{"content_block_stop", "message_delta", "message_stop"}) {
		t.Fatalf("events = %v", names)
	}
	done := e.getInteraction(in.ID)
	if done.State != "Completed" || streamText(live) != done.Output() || done.Output() == "" {
		t.Fatalf("after the stream: state %s, output %q, streamed %q", done.State, done.Output(), streamText(live))
	}
	md := live[len(live)-2].Data["delta"].(map[string]any)
	usage := md["usage"].(map[string]any)
	if md["stop_reason"] != "end_turn" || int64(usage["output_tokens"].(float64)) != int64(done.Usage().OutputTokens) ||
		int64(usage["input_tokens"].(float64)) != int64(done.Usage().InputTokens) {
		t.Fatalf("message_delta = %v, interaction usage %+v", md, done.Usage())
	}

	// A finished interaction replays in full, without pings.
	_, sr2 := e.openStream(in.ID)
	replay, err := sr2.readAll()
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(eventNames(replay), "ping") || streamText(replay) != done.Output() ||
		len(replay) != len(live)-countEvents(live, "ping") {
		t.Fatalf("replay = %v", eventNames(replay))
	}
}

func countEvents(evs []sseEvent, name string) int {
	n := 0
	for _, ev := range evs {
		if ev.Event == name {
			n++
		}
	}
	return n
}

func TestInteractionAsyncPollOnly(t *testing.T) {
	e := newEnv(t, simulator.Config{Async: true, Latency: 30 * time.Millisecond})
	th := e.createThread("poll")
	in := e.createInteraction(th.ID, chat("Who owns the on-call policy?"), e.artifactID("Policies/on-call-policy.md"))
	if in.State != "Processing" {
		t.Fatalf("state = %s", in.State)
	}
	waitUntil(t, 5*time.Second, "completion", func() bool { return e.getInteraction(in.ID).State == "Completed" })
	if got := e.getInteraction(in.ID); got.Output() == "" || got.StopReason() != "end_turn" {
		t.Fatalf("completed = %+v", got)
	}
}

func TestInteractionCancel(t *testing.T) {
	e := newEnv(t, simulator.Config{Async: true, PerOutputToken: 20 * time.Millisecond, PingInterval: 50 * time.Millisecond})
	th := e.createThread("cancel")
	in := e.createInteraction(th.ID, chat("Summarize every ticket in ten bullets."), e.artifactID("Support/Tickets"))

	_, sr := e.openStream(in.ID)
	var evs []sseEvent
	for countEvents(evs, "content_block_delta") < 2 {
		ev, err := sr.next()
		if err != nil {
			t.Fatalf("stream: %v", err)
		}
		evs = append(evs, ev)
	}
	if status, body := e.do("POST", "/api/v1/app/interaction/"+in.ID+"/cancel", nil); status != http.StatusNoContent || len(body) != 0 {
		t.Fatalf("cancel: %d %s", status, body)
	}
	rest, err := sr.readAll()
	if err != nil {
		t.Fatal(err)
	}
	evs = append(evs, rest...)
	last := evs[len(evs)-2]
	if last.Event != "message_delta" || last.Data["delta"].(map[string]any)["stop_reason"] != "cancelled" || evs[len(evs)-1].Event != "message_stop" {
		t.Fatalf("stream after cancel ends with %v", eventNames(evs[len(evs)-3:]))
	}
	got := e.getInteraction(in.ID)
	if got.State != "Completed" || got.StopReason() != "cancelled" || got.Output() != streamText(evs) || got.Output() == "" {
		t.Fatalf("cancelled interaction = %+v; streamed %q", got.AssistantOutput, streamText(evs))
	}
	if status, _ := e.do("POST", "/api/v1/app/interaction/"+in.ID+"/cancel", nil); status != http.StatusConflict {
		t.Fatalf("second cancel: %d, want 409", status)
	}
	c := e.sim.Counters()
	if c.InteractionsCancelled != 1 || c.TokensOut != int64(got.Usage().OutputTokens) || c.TokensIn != int64(got.Usage().InputTokens) || got.Usage().InputTokens == 0 {
		t.Fatalf("counters = %+v, usage %+v", c, got.Usage())
	}
	// Ten bullets over fifteen tickets are far more than two deltas' worth.
	if got.Usage().OutputTokens >= 100 {
		t.Fatalf("cancelled early but billed %d output tokens", got.Usage().OutputTokens)
	}
}

func TestDeleteThreadCancelsInteractions(t *testing.T) {
	e := newEnv(t, simulator.Config{Async: true, Latency: time.Hour})
	th := e.createThread("doomed")
	in := e.createInteraction(th.ID, chat("Anything about refunds?"), e.artifactID("Policies/refund-policy.md"))
	e.must("DELETE", "/api/v1/app/thread/"+th.ID, nil, 200, nil)
	if status, _ := e.do("GET", "/api/v1/app/interaction/"+in.ID, nil); status != 404 {
		t.Fatalf("interaction of a deleted thread: %d", status)
	}
	if c := e.sim.Counters(); c.InteractionsCancelled != 1 {
		t.Fatalf("counters = %+v", c)
	}
}

func TestCloseEndsOpenStreams(t *testing.T) {
	e := newEnv(t, simulator.Config{Async: true, Latency: time.Hour})
	th := e.createThread("close")
	in := e.createInteraction(th.ID, chat("Anything about refunds?"), e.artifactID("Policies/refund-policy.md"))
	_, sr := e.openStream(in.ID)
	if ev, err := sr.next(); err != nil || ev.Event != "message_start" {
		t.Fatalf("first event %v %v", ev, err)
	}
	closed := make(chan struct{})
	go func() { e.sim.Close(); close(closed) }()
	evs, _ := sr.readAll()
	if slices.Contains(eventNames(evs), "message_stop") {
		t.Fatal("stream finished normally after Close")
	}
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
}

func TestStreamGolden(t *testing.T) {
	e := newEnv(t, simulator.Config{})
	th := e.createThread("golden")
	req := chat("How was the Brightline login loop fixed? Answer in two bullets.")
	req.MaxTokens = intp(60)
	in := e.createInteraction(th.ID, req, e.artifactID(loginTicket))
	resp, _ := e.openStream(in.ID)
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "stream.golden")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("stream differs from %s:\n--- got\n%s\n--- want\n%s", golden, got, want)
	}
	// The stream agrees with the interaction it replays.
	evs, err := newSSEReader(bytes.NewReader(got)).readAll()
	if err != nil {
		t.Fatal(err)
	}
	if streamText(evs) != in.Output() {
		t.Fatalf("golden stream text %q != output %q", streamText(evs), in.Output())
	}
}

func TestInteractionErrorFault(t *testing.T) {
	e := newEnv(t, simulator.Config{Faults: simulator.Faults{InteractionError: 1}})
	th := e.createThread("fail")
	in := e.createInteraction(th.ID, chat("Anything about refunds?"), e.artifactID("Policies/refund-policy.md"))
	if in.State != "Error" || in.AssistantOutput == nil || len(in.AssistantOutput.Errors) != 1 || in.StopReason() != "error" || in.Output() != "" {
		t.Fatalf("failed interaction = %+v", in.AssistantOutput)
	}
	_, sr := e.openStream(in.ID)
	evs, err := sr.readAll()
	if err != nil {
		t.Fatal(err)
	}
	if got := eventNames(evs); !slices.Equal(got, []string{"message_start", "error", "message_delta", "message_stop"}) {
		t.Fatalf("events = %v", got)
	}
	if c := e.sim.Counters(); c.InteractionsFailed != 1 || c.Faults["interaction_error"] != 1 || c.TokensOut != 0 {
		t.Fatalf("counters = %+v", c)
	}
}

// A reduce step pastes earlier outputs below its instruction and references
// artifacts: the answer draws on both.
func TestInteractionReducePrompt(t *testing.T) {
	e := newEnv(t, simulator.Config{})
	th := e.createThread("reduce")
	prompt := "Write this week's support brief for the support leads.\n" +
		"Start with the most important ticket issues, then the escalations the policies call for.\n\n" +
		"The ticket summaries:\n\n" +
		"## TCK-1041-login-loop.md\n" +
		"- TCK-1041: Forty users were stuck in a login loop after an SSO migration; the ticket was escalated to tier 2.\n\n" +
		"## TCK-1044-duplicate-charges-stripe.md\n" +
		"- TCK-1044: Duplicate charges were refunded as billing errors, and the P1 ticket missed its target.\n"
	in := e.createInteraction(th.ID, chat(prompt), e.artifactID("Policies"))
	lines := strings.Split(in.Output(), "\n")
	var fromPrompt, fromPolicies int
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "- TCK-104") && !strings.HasSuffix(l, "]"):
			fromPrompt++
		case strings.HasSuffix(l, ".md]"):
			fromPolicies++
		default:
			t.Fatalf("unexpected bullet %q", l)
		}
	}
	if len(lines) != 5 || fromPrompt != 2 || fromPolicies != 3 {
		t.Fatalf("answer:\n%s", in.Output())
	}
	if strings.Contains(in.Output(), "Write this week") || strings.Contains(in.Output(), "The ticket summaries") {
		t.Fatalf("the instruction leaked into the answer:\n%s", in.Output())
	}
}

func TestSetArtifactState(t *testing.T) {
	e := newEnv(t, simulator.Config{})
	th := e.createThread("states")
	id := e.artifactID("Policies/refund-policy.md")
	if err := e.sim.SetArtifactState(id, "Processing", "Storing"); err != nil {
		t.Fatal(err)
	}
	body := workspace.CreateInteractionRequest{ThreadID: th.ID, PGPT: chat("Refunds?"), ArtifactIDs: []string{id}}
	if status, data := e.do("POST", "/api/v1/app/thread/"+th.ID+"/interaction", body); status != 400 ||
		!strings.Contains(errText(data), "state Processing, ingest_status Storing") {
		t.Fatalf("not-ready artifact: %d %s", status, data)
	}
	if err := e.sim.SetArtifactState(id, "Published", "Done"); err != nil {
		t.Fatal(err)
	}
	e.createInteraction(th.ID, chat("Refunds?"), id)
	if err := e.sim.SetArtifactState("artifact_nope", "Error", ""); err == nil {
		t.Fatal("SetArtifactState on an unknown id succeeded")
	}
}
