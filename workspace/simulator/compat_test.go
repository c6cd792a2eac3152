package simulator_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/threadmill/threadmill/workspace"
	"github.com/threadmill/threadmill/workspace/simulator"
)

// routes=project serves the project-scoped routes, and the current ones
// answer exactly what any unknown path answers.
func TestCompatRoutesProject(t *testing.T) {
	e := newEnv(t, simulator.Config{Compat: simulator.Compat{Routes: simulator.RoutesProject}})
	th := e.createThread("old")
	p := "/api/v1/app/project/" + project

	// The current routes: the route-level 404 of an unknown path.
	_, unknown := e.do("GET", "/api/v1/app/nope", nil)
	for _, r := range []struct{ method, path string }{
		{"POST", "/api/v1/app/thread/" + th.ID + "/interaction"},
		{"GET", "/api/v1/app/thread/" + th.ID},
		{"GET", "/api/v1/app/interaction/inter_x"},
		{"GET", "/api/v1/app/interaction/inter_x/stream"},
		{"POST", "/api/v1/app/interaction/inter_x/cancel"},
	} {
		var body any
		if r.method == "POST" {
			body = "{}"
		}
		status, got := e.do(r.method, r.path, body)
		want := strings.Replace(string(unknown), "GET /api/v1/app/nope", r.method+" "+r.path, 1)
		if status != http.StatusNotFound || string(got) != want {
			t.Errorf("%s %s: %d %s, want 404 %s", r.method, r.path, status, got, want)
		}
	}

	// The project-scoped ones work: create with thread_id in the body.
	var in workspace.Interaction
	e.must("POST", p+"/interaction", workspace.CreateInteractionRequest{
		ThreadID: th.ID, PGPT: chat("What is the refund policy?"), Agent: workspace.AgentDefault,
	}, http.StatusCreated, &in)
	if in.ThreadID != th.ID || in.State != workspace.StateCompleted {
		t.Fatalf("created %+v", in)
	}
	e.must("GET", p+"/interaction/"+in.ID, nil, http.StatusOK, &in)
	var page workspace.Page[workspace.Interaction]
	e.must("GET", p+"/thread/"+th.ID+"/interaction", nil, http.StatusOK, &page)
	if len(page.Data) != 1 || page.Data[0].ID != in.ID {
		t.Fatalf("list %+v", page)
	}
	status, _, body := e.send(e.request("GET", p+"/interaction/"+in.ID+"/stream", nil))
	if status != http.StatusOK || !strings.Contains(string(body), "message_stop") {
		t.Fatalf("stream: %d %s", status, body)
	}
	if status, body := e.do("POST", p+"/interaction/"+in.ID+"/cancel", nil); status != http.StatusConflict {
		t.Fatalf("cancel of a finished interaction: %d %s", status, body)
	}
	e.must("GET", p+"/thread/"+th.ID, nil, http.StatusOK, nil)
	e.must("DELETE", p+"/thread/"+th.ID, nil, http.StatusOK, nil)
	if status, body := e.do("GET", p+"/thread/"+th.ID, nil); status != http.StatusNotFound || !strings.Contains(string(body), "not found") {
		t.Fatalf("deleted thread: %d %s", status, body)
	}

	// Errors of the project-scoped create name the field or the project.
	if status, body := e.do("POST", p+"/interaction", map[string]any{"pgpt": chat("x")}); status != http.StatusBadRequest || !strings.Contains(string(body), "thread_id is required") {
		t.Errorf("create without thread_id: %d %s", status, body)
	}
	if status, body := e.do("GET", "/api/v1/app/project/proj_other/interaction/"+in.ID, nil); status != http.StatusNotFound || !strings.Contains(string(body), "project") {
		t.Errorf("another project: %d %s", status, body)
	}
	if c := e.sim.Counters(); c.InteractionsCreated != 1 {
		t.Errorf("created %d interactions", c.InteractionsCreated)
	}
}

// The default serves the current routes only: the project-scoped ones are
// unknown paths.
func TestCompatRoutesCurrentByDefault(t *testing.T) {
	e := newEnv(t, simulator.Config{})
	th := e.createThread("new")
	status, body := e.do("GET", "/api/v1/app/project/"+project+"/thread/"+th.ID, nil)
	if status != http.StatusNotFound || !strings.Contains(string(body), "no route for GET") {
		t.Fatalf("project-scoped route on a current server: %d %s", status, body)
	}
	e.must("GET", "/api/v1/app/thread/"+th.ID, nil, http.StatusOK, nil)
}

// finished-stream decides what the stream of a finished interaction
// answers: a full replay, 200 with no event, or 409.
func TestCompatFinishedStream(t *testing.T) {
	for _, tc := range []struct {
		mode       string
		status     int
		stop, none bool
	}{
		{"", http.StatusOK, true, false},
		{simulator.FinishedStreamReplay, http.StatusOK, true, false},
		{simulator.FinishedStreamClose, http.StatusOK, false, true},
		{simulator.FinishedStream409, http.StatusConflict, false, false},
	} {
		t.Run("mode="+tc.mode, func(t *testing.T) {
			e := newEnv(t, simulator.Config{Compat: simulator.Compat{FinishedStream: tc.mode}})
			th := e.createThread("t")
			in := e.createInteraction(th.ID, chat("What is the refund policy?"))
			status, hdr, body := e.send(e.request("GET", "/api/v1/app/interaction/"+in.ID+"/stream", nil))
			if status != tc.status || strings.Contains(string(body), "message_stop") != tc.stop || (tc.none && len(body) != 0) {
				t.Fatalf("status %d (%s) body %q", status, hdr.Get("Content-Type"), body)
			}
			if tc.status == http.StatusConflict && !strings.Contains(string(body), "finished") {
				t.Errorf("409 body %s", body)
			}
		})
	}
}

func TestParseCompat(t *testing.T) {
	c, err := simulator.ParseCompat(" routes=project , finished-stream=409,")
	if err != nil || c != (simulator.Compat{Routes: simulator.RoutesProject, FinishedStream: simulator.FinishedStream409}) {
		t.Fatalf("ParseCompat = %+v, %v", c, err)
	}
	if c.String() != "routes=project,finished-stream=409" {
		t.Errorf("String = %q", c.String())
	}
	if c, err := simulator.ParseCompat(""); err != nil || c != (simulator.Compat{}) || c.String() != "" {
		t.Errorf("empty: %+v %v", c, err)
	}
	for in, want := range map[string]string{
		"routes":             "want KEY=VALUE",
		"routes=old":         "routes=old: want one of current | project",
		"stream=409":         `unknown key "stream" (known: artifact-size, cancel-end, chat-usage, create, finished-stream, max-page-size, pagination, profile, routes, validate-400)`,
		"finished-stream=no": "want one of replay | close | 409",
		"cancel-end=gone":    "want one of completed | error | stop",
		"chat-usage=maybe":   "want one of with | without",
		"max-page-size=0":    "max-page-size=0: want an integer >= 1",
		"max-page-size=lots": "want an integer >= 1",
		"pagination=offset":  "want one of page | cursor",
		"create=later":       "want one of blocking | async",
		"artifact-size=kb":   "want one of with | without",
		"validate-400=xml":   "want one of valid | detail-list | detail-string | message | error | text",
		"profile=2024":       "profile=2024: want one of 2025-11 | 2025-12 | newest | oldest",
	} {
		if _, err := simulator.ParseCompat(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseCompat(%q) = %v, want %q", in, err, want)
		}
	}
	if err := (simulator.Config{Compat: simulator.Compat{Routes: "old"}}).Validate(); err == nil || !strings.Contains(err.Error(), "Compat.Routes") {
		t.Errorf("Validate: %v", err)
	}
	c, err = simulator.ParseCompat("chat-usage=without,max-page-size=50,pagination=cursor")
	want := simulator.Compat{ChatUsage: simulator.ChatUsageWithout, MaxPageSize: 50, Pagination: simulator.PaginationCursor}
	if err != nil || c != want || c.String() != "chat-usage=without,max-page-size=50,pagination=cursor" {
		t.Errorf("ParseCompat = %+v %q, %v", c, c.String(), err)
	}
	for _, bad := range []simulator.Compat{{ChatUsage: "x"}, {MaxPageSize: -1}, {Pagination: "x"}, {Create: "x"}, {Validate400: "x"}, {ArtifactSize: "x"}} {
		if err := (simulator.Config{Compat: bad}).Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil", bad)
		}
	}
}

// profile=NAME sets every switch of the preset; the keys after it
// override, and an alias is the same preset.
func TestParseCompatProfiles(t *testing.T) {
	c, err := simulator.ParseCompat("profile=oldest")
	want := "routes=project,finished-stream=409,cancel-end=error,chat-usage=without,validate-400=detail-list,artifact-size=without,max-page-size=50,pagination=cursor"
	if err != nil || c != simulator.Profiles["oldest"].Compat || c.String() != want {
		t.Fatalf("profile=oldest: %+v %q %v, want %q", c, c.String(), err, want)
	}
	if c2, err := simulator.ParseCompat("profile=2025-11"); err != nil || c2 != c {
		t.Errorf("profile=2025-11 = %+v %v, want oldest", c2, err)
	}
	c, err = simulator.ParseCompat("profile=newest,pagination=cursor")
	if err != nil || c.String() != "create=async,pagination=cursor" || c.Routes != simulator.RoutesCurrent {
		t.Errorf("profile=newest,pagination=cursor: %+v %q %v", c, c.String(), err)
	}
	for name, p := range simulator.Profiles {
		if err := (simulator.Config{Compat: p.Compat}).Validate(); err != nil || p.StandsFor == "" {
			t.Errorf("profile %s: %v, stands for %q", name, err, p.StandsFor)
		}
	}
}

// artifact-size=without drops content_length from a Document's props, in
// listings and on GET, and keeps the rest.
func TestCompatArtifactSize(t *testing.T) {
	for _, tc := range []struct {
		mode  string
		sized bool
	}{{"", true}, {simulator.ArtifactSizeWith, true}, {simulator.ArtifactSizeWithout, false}} {
		e := newEnv(t, simulator.Config{Compat: simulator.Compat{ArtifactSize: tc.mode}})
		doc := e.sim.AddArtifact(simulator.ArtifactSpec{Name: "a.md", Content: "twelve bytes"})
		var page workspace.Page[workspace.Artifact]
		e.must("GET", "/api/v1/app/project/"+project+"/artifact", nil, http.StatusOK, &page)
		var one workspace.Artifact
		e.must("GET", "/api/v1/app/project/"+project+"/artifact/"+doc.ID, nil, http.StatusOK, &one)
		listed := slices.IndexFunc(page.Data, func(a workspace.Artifact) bool { return a.ID == doc.ID })
		if listed < 0 {
			t.Fatalf("a.md is not listed: %+v", page.Data)
		}
		for _, a := range []workspace.Artifact{page.Data[listed], one} {
			n, ok := a.Size()
			if ok != tc.sized || tc.sized && n != 12 || !strings.Contains(string(a.Props), `"file_name":"a.md"`) {
				t.Errorf("artifact-size=%q: Size() = %d, %v; props %s", tc.mode, n, ok, a.Props)
			}
		}
	}
}

// create=async answers 201 Processing at once (as Config.Async), blocking
// answers Completed; --async with create=blocking is refused.
func TestCompatCreate(t *testing.T) {
	for _, tc := range []struct {
		cfg   simulator.Config
		state string
	}{
		{simulator.Config{}, workspace.StateCompleted},
		{simulator.Config{Compat: simulator.Compat{Create: simulator.CreateBlocking}}, workspace.StateCompleted},
		{simulator.Config{Compat: simulator.Compat{Create: simulator.CreateAsync}}, workspace.StateProcessing},
		{simulator.Config{Async: true}, workspace.StateProcessing},
	} {
		tc.cfg.Latency = 300 * time.Millisecond
		e := newEnv(t, tc.cfg)
		in := e.createInteraction(e.createThread("t").ID, chat("What is the refund policy?"))
		if in.State != tc.state {
			t.Errorf("%+v: created %s, want %s", tc.cfg.Compat, in.State, tc.state)
		}
	}
	err := simulator.Config{Async: true, Compat: simulator.Compat{Create: simulator.CreateBlocking}}.Validate()
	if err == nil || !strings.Contains(err.Error(), "Async contradicts Compat.Create") {
		t.Errorf("Validate: %v", err)
	}
}

// validate-400 chooses the body of a 400 from /app/chat/validate; every
// shape carries the same message.
func TestCompatValidate400(t *testing.T) {
	bad := map[string]any{"messages": []any{}}
	const msg = "invalid request: messages must not be empty"
	for _, tc := range []struct{ shape, ctype, body string }{
		{"", "application/json", `{"valid":false,"message":"` + msg + `","errors":["messages must not be empty"]}`},
		{simulator.Validate400Valid, "application/json", `{"valid":false,"message":"` + msg + `","errors":["messages must not be empty"]}`},
		{simulator.Validate400DetailList, "application/json", `{"detail":[{"input":null,"loc":["body"],"msg":"messages must not be empty","type":"value_error"}]}`},
		{simulator.Validate400DetailString, "application/json", `{"detail":"` + msg + `"}`},
		{simulator.Validate400Message, "application/json", `{"message":"` + msg + `"}`},
		{simulator.Validate400Error, "application/json", `{"error":{"message":"` + msg + `","type":"invalid_request_error"}}`},
		{simulator.Validate400Text, "text/plain; charset=utf-8", msg},
	} {
		e := newEnv(t, simulator.Config{Compat: simulator.Compat{Validate400: tc.shape}})
		status, h, body := e.send(e.request("POST", "/api/v1/app/chat/validate", bad))
		if status != http.StatusBadRequest || h.Get("Content-Type") != tc.ctype || strings.TrimSpace(string(body)) != tc.body {
			t.Errorf("validate-400=%s: %d %s %s\nwant 400 %s %s", tc.shape, status, h.Get("Content-Type"), body, tc.ctype, tc.body)
		}
		if c := e.sim.Counters(); c.Validations != 1 || c.ValidationsFailed != 1 {
			t.Errorf("validate-400=%s: counters %d validations, %d failed", tc.shape, c.Validations, c.ValidationsFailed)
		}
	}
}

// cancel-end decides the state and stop reason of a cancelled interaction,
// on GET and at the end of its stream.
func TestCompatCancelEnd(t *testing.T) {
	for _, tc := range []struct{ mode, state, stop string }{
		{"", workspace.StateCompleted, workspace.StopReasonCancelled},
		{simulator.CancelEndCompleted, workspace.StateCompleted, workspace.StopReasonCancelled},
		{simulator.CancelEndError, workspace.StateError, workspace.StopReasonCancelled},
		{simulator.CancelEndStop, workspace.StateCompleted, workspace.StopReasonStop},
	} {
		t.Run("mode="+tc.mode, func(t *testing.T) {
			e := newEnv(t, simulator.Config{Async: true, Latency: time.Minute, Compat: simulator.Compat{CancelEnd: tc.mode}})
			th := e.createThread("t")
			in := e.createInteraction(th.ID, chat("What is the refund policy?"))
			e.must("POST", "/api/v1/app/interaction/"+in.ID+"/cancel", nil, http.StatusNoContent, nil)
			var got workspace.Interaction
			e.must("GET", "/api/v1/app/interaction/"+in.ID, nil, http.StatusOK, &got)
			if got.State != tc.state || got.StopReason() != tc.stop {
				t.Fatalf("cancelled interaction: state %s stop_reason %q, want %s %q", got.State, got.StopReason(), tc.state, tc.stop)
			}
			_, _, body := e.send(e.request("GET", "/api/v1/app/interaction/"+in.ID+"/stream", nil))
			if !strings.Contains(string(body), `"stop_reason":"`+tc.stop+`"`) || !strings.Contains(string(body), "message_stop") {
				t.Errorf("stream: %s", body)
			}
			if tc.state == workspace.StateError && !strings.Contains(string(body), "event: error") {
				t.Errorf("an Error end sends no error event: %s", body)
			}
			if c := e.sim.Counters(); c.InteractionsCancelled != 1 {
				t.Errorf("%d cancelled", c.InteractionsCancelled)
			}
		})
	}
}

// chat-usage=without answers POST /app/chat with no usage and no
// stop_reason; the default answers with both.
func TestCompatChatUsage(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  bool
	}{{"", true}, {simulator.ChatUsageWith, true}, {simulator.ChatUsageWithout, false}} {
		e := newEnv(t, simulator.Config{Compat: simulator.Compat{ChatUsage: tc.value}})
		var raw map[string]json.RawMessage
		e.must("POST", "/api/v1/app/chat", chat("What is the refund policy?"), http.StatusOK, &raw)
		_, usage := raw["usage"]
		_, stop := raw["stop_reason"]
		if usage != tc.want || stop != tc.want || len(raw["content"]) < 3 {
			t.Errorf("chat-usage=%q: usage %v, stop_reason %v, want %v: %v", tc.value, usage, stop, tc.want, raw)
		}
		if c := e.sim.Counters(); c.ChatsAnswered != 1 || c.TokensOut == 0 {
			t.Errorf("chat-usage=%q: counters %+v", tc.value, c)
		}
	}
}

// max-page-size=N answers a larger page_size with a FastAPI-style 422
// naming page_size, on every listing; N itself is served.
func TestCompatMaxPageSize(t *testing.T) {
	e := newEnv(t, simulator.Config{Compat: simulator.Compat{MaxPageSize: 2}})
	th := e.createThread("paged")
	for _, path := range []string{
		"/api/v1/app/project/" + project + "/artifact?include_descendants=true&page_size=3",
		"/api/v1/app/project/" + project + "/thread?page_size=3",
		"/api/v1/app/thread/" + th.ID + "/interaction?page_size=3",
	} {
		status, body := e.do("GET", path, nil)
		var got struct {
			Detail []struct {
				Type  string         `json:"type"`
				Loc   []string       `json:"loc"`
				Msg   string         `json:"msg"`
				Input string         `json:"input"`
				Ctx   map[string]int `json:"ctx"`
			} `json:"detail"`
		}
		if status != http.StatusUnprocessableEntity || json.Unmarshal(body, &got) != nil || len(got.Detail) != 1 ||
			strings.Join(got.Detail[0].Loc, ".") != "query.page_size" || got.Detail[0].Ctx["le"] != 2 ||
			got.Detail[0].Input != "3" || got.Detail[0].Msg != "Input should be less than or equal to 2" {
			t.Errorf("GET %s: %d %s", path, status, body)
		}
	}
	var page workspace.Page[workspace.Artifact]
	e.must("GET", "/api/v1/app/project/"+project+"/artifact?include_descendants=true&page_size=2", nil, http.StatusOK, &page)
	if len(page.Data) != 2 || !page.HasNextPage {
		t.Errorf("page_size=2: %d items, has_next_page %v", len(page.Data), page.HasNextPage)
	}
}

// pagination=cursor ignores page: page 2 is page 1 again, and only after
// moves on.
func TestCompatPaginationCursor(t *testing.T) {
	list := "/api/v1/app/project/" + project + "/artifact?include_descendants=true&page_size=2"
	var p1, p2, next workspace.Page[workspace.Artifact]
	e := newEnv(t, simulator.Config{})
	e.must("GET", list+"&page=1", nil, http.StatusOK, &p1)
	e.must("GET", list+"&page=2", nil, http.StatusOK, &p2)
	if len(p1.Data) != 2 || len(p2.Data) != 2 || p1.Data[0].ID == p2.Data[0].ID {
		t.Fatalf("default: page 2 must differ from page 1: %+v %+v", p1.Data, p2.Data)
	}
	e = newEnv(t, simulator.Config{Compat: simulator.Compat{Pagination: simulator.PaginationCursor}})
	e.must("GET", list+"&page=1", nil, http.StatusOK, &p1)
	e.must("GET", list+"&page=2", nil, http.StatusOK, &p2)
	if len(p1.Data) != 2 || p1.NextCursor == "" || p1.Data[0].ID != p2.Data[0].ID || p1.Data[1].ID != p2.Data[1].ID || p2.NextCursor != p1.NextCursor {
		t.Fatalf("cursor: page 2 must repeat page 1: %+v %+v", p1, p2)
	}
	e.must("GET", list+"&page=7&after="+p1.NextCursor, nil, http.StatusOK, &next)
	if len(next.Data) == 0 || next.Data[0].ID == p1.Data[0].ID || next.Data[0].ID == p1.Data[1].ID {
		t.Fatalf("after %s: %+v", p1.NextCursor, next.Data)
	}
}
