package simulator_test

import (
	"net/http"
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
		"stream=409":         `unknown key "stream" (known: cancel-end, finished-stream, routes)`,
		"finished-stream=no": "want one of replay | close | 409",
		"cancel-end=gone":    "want one of completed | error | stop",
	} {
		if _, err := simulator.ParseCompat(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseCompat(%q) = %v, want %q", in, err, want)
		}
	}
	if err := (simulator.Config{Compat: simulator.Compat{Routes: "old"}}).Validate(); err == nil || !strings.Contains(err.Error(), "Compat.Routes") {
		t.Errorf("Validate: %v", err)
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
