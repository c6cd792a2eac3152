package workspace_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/threadmill/threadmill/workspace"
	"github.com/threadmill/threadmill/workspace/simulator"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	testToken = "tok_8f2b1c9e4d7a"
	testOrg   = "default"
	testProj  = "proj_test"
)

// simEnv is a simulator served over real HTTP and a client for it.
type simEnv struct {
	sim *simulator.Server
	srv *httptest.Server
	c   *workspace.Client
}

func newSim(t *testing.T, cfg simulator.Config, opts ...workspace.Option) *simEnv {
	t.Helper()
	if cfg.ProjectID == "" {
		cfg.ProjectID = testProj
	}
	if cfg.Org == "" {
		cfg.Org = testOrg
	}
	if cfg.Token == "" {
		cfg.Token = testToken
	}
	sim := simulator.New(cfg)
	srv := httptest.NewServer(sim)
	t.Cleanup(func() {
		sim.Close()
		srv.Close()
	})
	return &simEnv{sim: sim, srv: srv, c: newClient(t, srv, opts...)}
}

// newClient returns a client for srv with the test token and org; later
// options override earlier ones.
func newClient(t *testing.T, srv *httptest.Server, opts ...workspace.Option) *workspace.Client {
	t.Helper()
	base := []workspace.Option{
		workspace.WithHTTPClient(srv.Client()),
		workspace.WithToken(testToken),
		workspace.WithOrg(testOrg),
		workspace.WithPollInterval(5*time.Millisecond, 50*time.Millisecond),
	}
	c, err := workspace.New(srv.URL, append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func ask(text string, maxTokens int) workspace.ChatRequest {
	return workspace.ChatRequest{Messages: []workspace.Message{workspace.UserText(text)}, MaxTokens: &maxTokens}
}

// seedDocs adds a folder with n short documents and returns the folder id
// and the documents' ids.
func seedDocs(sim *simulator.Server, n int) (string, []string) {
	folder := sim.AddArtifact(simulator.ArtifactSpec{Name: "Tickets", Type: workspace.ArtifactTypeFolder})
	var ids []string
	for i := range n {
		a := sim.AddArtifact(simulator.ArtifactSpec{
			Name:     "ticket-" + string(rune('a'+i%26)) + strings.Repeat("x", i/26) + ".md",
			ParentID: folder.ID,
			Content: "The customer reports that the login page loops back to itself after SSO. " +
				"Clearing cookies did not help. The refund for the annual plan is pending review. " +
				"Engineering traced the loop to a stale session cookie on the EU cluster.",
		})
		ids = append(ids, a.ID)
	}
	return folder.ID, ids
}

func TestMeAndAuthErrors(t *testing.T) {
	env := newSim(t, simulator.Config{})
	ctx := ctxT(t)
	u, err := env.c.Me(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if u.ID == "" || u.Email == "" {
		t.Errorf("user %+v", u)
	}

	cases := []struct {
		name   string
		opts   []workspace.Option
		status int
		msg    string
	}{
		{"wrong token", []workspace.Option{workspace.WithToken("tok_wrong")}, 401, "invalid API token"},
		{"no token", []workspace.Option{workspace.WithToken("")}, 401, "Authorization"},
		{"wrong org", []workspace.Option{workspace.WithOrg("acme")}, 403, "acme"},
		{"no org", []workspace.Option{workspace.WithOrg("")}, 400, "x-org"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t, env.srv, tc.opts...)
			_, err := c.Me(ctx)
			ae, ok := errors.AsType[*workspace.APIError](err)
			if !ok {
				t.Fatalf("err %v, want *APIError", err)
			}
			if ae.StatusCode != tc.status || ae.Method != "GET" || ae.Path != "/api/v1/app/me" || !strings.Contains(ae.Message, tc.msg) {
				t.Errorf("got %d %s %s %q, want %d with %q", ae.StatusCode, ae.Method, ae.Path, ae.Message, tc.status, tc.msg)
			}
			if !workspace.IsPermanent(err) || workspace.IsRetryable(err) {
				t.Errorf("%d must be permanent, not retryable", tc.status)
			}
			if strings.Contains(err.Error(), testToken) {
				t.Errorf("the token leaked into %q", err)
			}
		})
	}
}

func TestThreads(t *testing.T) {
	env := newSim(t, simulator.Config{})
	ctx := ctxT(t)
	var ids []string
	for _, name := range []string{"batch-1", "batch-2", "batch-3", "batch-4", "batch-5"} {
		th, err := env.c.CreateThread(ctx, testProj, workspace.CreateThreadRequest{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		if th.ID == "" || th.Name != name || th.Visibility != workspace.VisibilityPrivate {
			t.Fatalf("created %+v", th)
		}
		ids = append(ids, th.ID)
	}

	got, err := env.c.GetThread(ctx, ids[2])
	if err != nil || got.Name != "batch-3" {
		t.Fatalf("get: %+v %v", got, err)
	}

	page, err := env.c.ListThreads(ctx, testProj, workspace.ThreadQuery{PageParams: workspace.PageParams{Page: 2, PageSize: 2, TotalCount: true}})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Data) != 2 || !page.HasNextPage || !page.HasPreviousPage || page.TotalCount == nil || *page.TotalCount != 5 {
		t.Errorf("page 2 of 5 threads by 2: %d items next %v prev %v total %v", len(page.Data), page.HasNextPage, page.HasPreviousPage, page.TotalCount)
	}

	name := "renamed"
	up, err := env.c.UpdateThread(ctx, ids[0], workspace.UpdateThreadRequest{Name: &name})
	if err != nil || up.Name != "renamed" || up.ID != ids[0] {
		t.Fatalf("update: %+v %v", up, err)
	}
	if again, _ := env.c.GetThread(ctx, ids[0]); again == nil || again.Name != "renamed" {
		t.Errorf("update not persisted: %+v", again)
	}

	if err := env.c.DeleteThread(ctx, ids[1]); err != nil {
		t.Fatal(err)
	}
	_, err = env.c.GetThread(ctx, ids[1])
	if !errors.Is(err, workspace.ErrNotFound) || !workspace.IsPermanent(err) {
		t.Errorf("get after delete: %v, want ErrNotFound", err)
	}
	if err := env.c.DeleteThread(ctx, "thread_nope"); !errors.Is(err, workspace.ErrNotFound) {
		t.Errorf("delete unknown: %v", err)
	}
	if _, err := env.c.ListThreads(ctx, "proj_other", workspace.ThreadQuery{}); !errors.Is(err, workspace.ErrNotFound) {
		t.Errorf("list in unknown project: %v", err)
	}
	if _, err := env.c.GetThread(ctx, ""); err == nil || !strings.Contains(err.Error(), "empty thread id") {
		t.Errorf("empty id: %v", err)
	}
}

func TestInteractionSync(t *testing.T) {
	env := newSim(t, simulator.Config{})
	ctx := ctxT(t)
	_, docs := seedDocs(env.sim, 3)
	th, err := env.c.CreateThread(ctx, testProj, workspace.CreateThreadRequest{Name: "sync"})
	if err != nil {
		t.Fatal(err)
	}
	in, err := env.c.CreateInteraction(ctx, th.ID, workspace.CreateInteractionRequest{
		PGPT:        ask("Why does the login page loop? Answer in two bullets.", 200),
		ArtifactIDs: docs[:2],
		Agent:       workspace.AgentDefault,
	})
	if err != nil {
		t.Fatal(err)
	}
	if in.State != workspace.StateCompleted || in.ThreadID != th.ID || !strings.Contains(in.Output(), "login") {
		t.Fatalf("interaction %s state %s output %q", in.ID, in.State, in.Output())
	}
	if u := in.Usage(); u.InputTokens <= 0 || u.OutputTokens <= 0 {
		t.Errorf("usage %+v", u)
	}
	got, err := env.c.GetInteraction(ctx, in.ID)
	if err != nil || got.Output() != in.Output() || got.Usage() != in.Usage() {
		t.Fatalf("get: %v, output %q vs %q", err, got.Output(), in.Output())
	}

	// A second turn, then list both.
	if _, err := env.c.CreateInteraction(ctx, th.ID, workspace.CreateInteractionRequest{PGPT: ask("And the refund?", 100)}); err != nil {
		t.Fatal(err)
	}
	list, err := env.c.ListInteractions(ctx, th.ID, workspace.PageParams{})
	if err != nil || len(list.Data) != 2 || list.Data[0].ID != in.ID {
		t.Fatalf("list: %v %+v", err, list)
	}
	var n int
	for it, err := range env.c.Interactions(ctx, th.ID, workspace.PageParams{PageSize: 1}) {
		if err != nil {
			t.Fatal(err)
		}
		if it.ThreadID != th.ID {
			t.Errorf("interaction of thread %s", it.ThreadID)
		}
		n++
	}
	if n != 2 {
		t.Errorf("Interactions yielded %d, want 2", n)
	}

	tagged := ask("Tagged turn", 50)
	tagged.CorrelationID = "item-42"
	sent, err := env.c.CreateInteraction(ctx, th.ID, workspace.CreateInteractionRequest{PGPT: tagged})
	if err != nil {
		t.Fatal(err)
	}
	found, ok, err := env.c.FindInteraction(ctx, th.ID, "item-42")
	if err != nil || !ok || found.ID != sent.ID {
		t.Errorf("FindInteraction: %v %v %+v", err, ok, found)
	}
	if _, ok, err := env.c.FindInteraction(ctx, th.ID, "item-43"); err != nil || ok {
		t.Errorf("FindInteraction of an unknown id: %v %v", ok, err)
	}

	del, err := env.c.DeleteInteraction(ctx, in.ID)
	if err != nil || del.ID != in.ID {
		t.Fatalf("delete: %+v %v", del, err)
	}
	if _, err := env.c.GetInteraction(ctx, in.ID); !errors.Is(err, workspace.ErrNotFound) {
		t.Errorf("get after delete: %v", err)
	}

	// The request is checked like the real API: the server's message names
	// the field, and the error is permanent.
	bad := ask("x", 0)
	_, err = env.c.CreateInteraction(ctx, th.ID, workspace.CreateInteractionRequest{PGPT: bad})
	ae, ok := errors.AsType[*workspace.APIError](err)
	if !ok || ae.StatusCode != 400 || !strings.Contains(ae.Message, "max_tokens") || !workspace.IsPermanent(err) {
		t.Errorf("max_tokens 0: %v", err)
	}
	_, err = env.c.CreateInteraction(ctx, th.ID, workspace.CreateInteractionRequest{ThreadID: "thread_other", PGPT: ask("x", 5)})
	if err == nil || !strings.Contains(err.Error(), "differs") {
		t.Errorf("mismatched thread id: %v", err)
	}
	_, err = env.c.CreateInteraction(ctx, "thread_missing", workspace.CreateInteractionRequest{PGPT: ask("x", 5)})
	if !errors.Is(err, workspace.ErrNotFound) {
		t.Errorf("unknown thread: %v", err)
	}
}

func TestStreamAsync(t *testing.T) {
	env := newSim(t, simulator.Config{Async: true, Latency: 30 * time.Millisecond, PerOutputToken: 5 * time.Millisecond, PingInterval: 10 * time.Millisecond})
	ctx := ctxT(t)
	_, docs := seedDocs(env.sim, 2)
	th, err := env.c.CreateThread(ctx, testProj, workspace.CreateThreadRequest{Name: "async"})
	if err != nil {
		t.Fatal(err)
	}
	in, err := env.c.CreateInteraction(ctx, th.ID, workspace.CreateInteractionRequest{
		PGPT: ask("Summarize the login loop in five bullets.", 300), ArtifactIDs: docs,
	})
	if err != nil {
		t.Fatal(err)
	}
	if in.State != workspace.StateProcessing {
		t.Fatalf("async create: state %s, want Processing", in.State)
	}

	var (
		deltas         int
		stateAtFirst   string
		sawStart, ping bool
	)
	res, err := env.c.StreamInteraction(ctx, in.ID, func(ev workspace.Event) {
		switch ev.Type {
		case workspace.EventMessageStart:
			sawStart = true
		case workspace.EventPing:
			ping = true
		case workspace.EventContentBlockDelta:
			deltas++
			if deltas == 1 {
				// A delta arrives while the interaction is still running.
				got, err := env.c.GetInteraction(ctx, in.ID)
				if err != nil {
					t.Error(err)
					return
				}
				stateAtFirst = got.State
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Completed || !sawStart || deltas < 2 {
		t.Fatalf("completed %v start %v deltas %d", res.Completed, sawStart, deltas)
	}
	if stateAtFirst != workspace.StateProcessing {
		t.Errorf("state at the first delta = %q, want Processing (deltas must stream before completion)", stateAtFirst)
	}
	t.Logf("deltas %d, events %d, ping seen %v", deltas, res.Events, ping)

	final, err := env.c.GetInteraction(ctx, in.ID)
	if err != nil {
		t.Fatal(err)
	}
	if final.State != workspace.StateCompleted || final.Output() != res.Text() {
		t.Errorf("final %s %q, stream %q", final.State, final.Output(), res.Text())
	}
	if res.Usage == nil || *res.Usage != final.Usage() || res.StopReason != final.StopReason() {
		t.Errorf("stream usage %+v stop %q, GET %+v %q", res.Usage, res.StopReason, final.Usage(), final.StopReason())
	}

	// The stream of a finished interaction replays it in full.
	again, err := env.c.StreamInteraction(ctx, in.ID, nil)
	if err != nil || again.Text() != res.Text() {
		t.Errorf("replay: %v %q", err, again.Text())
	}
}

func TestWaitInteraction(t *testing.T) {
	env := newSim(t, simulator.Config{Async: true, Latency: 20 * time.Millisecond, PerOutputToken: time.Millisecond})
	ctx := ctxT(t)
	_, docs := seedDocs(env.sim, 1)
	th, err := env.c.CreateThread(ctx, testProj, workspace.CreateThreadRequest{Name: "wait"})
	if err != nil {
		t.Fatal(err)
	}
	create := func() *workspace.Interaction {
		t.Helper()
		in, err := env.c.CreateInteraction(ctx, th.ID, workspace.CreateInteractionRequest{PGPT: ask("What is pending review?", 120), ArtifactIDs: docs})
		if err != nil {
			t.Fatal(err)
		}
		return in
	}

	t.Run("stream", func(t *testing.T) {
		in := create()
		got, err := env.c.WaitInteraction(ctx, in.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.State != workspace.StateCompleted || got.Output() == "" || got.Usage().OutputTokens == 0 {
			t.Errorf("waited: %s %q %+v", got.State, got.Output(), got.Usage())
		}
	})

	t.Run("cut stream falls back to polling", func(t *testing.T) {
		env.sim.SetFaults(simulator.Faults{CutStream: 1})
		defer env.sim.SetFaults(simulator.Faults{})
		in := create()
		before := env.sim.Counters()
		_, serr := env.c.StreamInteraction(ctx, in.ID, nil)
		if !errors.Is(serr, workspace.ErrStreamIncomplete) || !workspace.IsRetryable(serr) {
			t.Fatalf("cut stream: %v, want ErrStreamIncomplete", serr)
		}
		if !strings.Contains(serr.Error(), "/api/v1/app/interaction/"+in.ID+"/stream") {
			t.Errorf("error does not name the endpoint: %v", serr)
		}
		got, err := env.c.WaitInteraction(ctx, in.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.State != workspace.StateCompleted || got.Output() == "" {
			t.Errorf("after fallback: %s %q", got.State, got.Output())
		}
		after := env.sim.Counters()
		gets := after.Total("GET /api/v1/app/interaction/{interactionId}") - before.Total("GET /api/v1/app/interaction/{interactionId}")
		if gets < 1 {
			t.Errorf("no polling GET recorded")
		}
	})

	t.Run("unknown interaction answers 404 after the lag grace", func(t *testing.T) {
		c := newClient(t, env.srv, workspace.WithLagGrace(300*time.Millisecond), workspace.WithPollInterval(20*time.Millisecond, 50*time.Millisecond))
		before := env.sim.Counters().Total("GET /api/v1/app/interaction/{interactionId}")
		start := time.Now()
		_, err := c.WaitInteraction(ctx, "inter_missing")
		if !errors.Is(err, workspace.ErrNotFound) {
			t.Errorf("err %v, want ErrNotFound", err)
		}
		if d := time.Since(start); d < 300*time.Millisecond {
			t.Errorf("gave up after %s, within the 300ms grace", d)
		}
		if gets := env.sim.Counters().Total("GET /api/v1/app/interaction/{interactionId}") - before; gets < 2 {
			t.Errorf("%d GETs: a 404 within the grace was not polled again", gets)
		}
	})

	t.Run("replica lag after create is waited out", func(t *testing.T) {
		env.sim.SetFaults(simulator.Faults{ReplicaLag: 1, LagDuration: 200 * time.Millisecond})
		defer env.sim.SetFaults(simulator.Faults{})
		in := create()
		if _, err := env.c.GetInteraction(ctx, in.ID); !errors.Is(err, workspace.ErrNotFound) {
			t.Fatalf("GET right after the 201: %v, want a lagging 404", err)
		}
		got, err := env.c.WaitInteraction(ctx, in.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.ID != in.ID || got.State != workspace.StateCompleted {
			t.Errorf("waited: %s %s", got.ID, got.State)
		}
	})

	t.Run("no grace: the first 404 ends the wait", func(t *testing.T) {
		c := newClient(t, env.srv, workspace.WithLagGrace(0))
		before := env.sim.Counters().Total("GET /api/v1/app/interaction/{interactionId}")
		if _, err := c.WaitInteraction(ctx, "inter_missing"); !errors.Is(err, workspace.ErrNotFound) {
			t.Errorf("err %v, want ErrNotFound", err)
		}
		if gets := env.sim.Counters().Total("GET /api/v1/app/interaction/{interactionId}") - before; gets != 1 {
			t.Errorf("%d GETs, want 1", gets)
		}
	})

	t.Run("interaction error state", func(t *testing.T) {
		env.sim.SetFaults(simulator.Faults{InteractionError: 1})
		defer env.sim.SetFaults(simulator.Faults{})
		in := create()
		got, err := env.c.WaitInteraction(ctx, in.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.State != workspace.StateError || got.AssistantOutput == nil || len(got.AssistantOutput.Errors) == 0 {
			t.Errorf("state %s output %+v, want Error with errors[]", got.State, got.AssistantOutput)
		}
	})
}

func TestCancelInteraction(t *testing.T) {
	env := newSim(t, simulator.Config{Async: true, Latency: 10 * time.Second})
	ctx := ctxT(t)
	th, err := env.c.CreateThread(ctx, testProj, workspace.CreateThreadRequest{Name: "cancel"})
	if err != nil {
		t.Fatal(err)
	}
	in, err := env.c.CreateInteraction(ctx, th.ID, workspace.CreateInteractionRequest{PGPT: ask("A long answer please.", 500)})
	if err != nil {
		t.Fatal(err)
	}
	if err := env.c.CancelInteraction(ctx, in.ID); err != nil {
		t.Fatalf("cancel: %v", err)
	}
	got, err := env.c.WaitInteraction(ctx, in.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Terminal() || got.StopReason() != workspace.StopReasonCancelled {
		t.Errorf("after cancel: state %s stop %q", got.State, got.StopReason())
	}
	err = env.c.CancelInteraction(ctx, in.ID)
	ae, ok := errors.AsType[*workspace.APIError](err)
	if !errors.Is(err, workspace.ErrAlreadyFinished) || !ok || ae.StatusCode != http.StatusConflict {
		t.Fatalf("second cancel: %v, want ErrAlreadyFinished (409)", err)
	}
	if workspace.IsRetryable(err) || workspace.IsPermanent(err) {
		t.Errorf("409 is neither retryable nor permanent")
	}
	if err := env.c.CancelInteraction(ctx, "inter_missing"); !errors.Is(err, workspace.ErrNotFound) || errors.Is(err, workspace.ErrAlreadyFinished) {
		t.Errorf("cancel unknown: %v", err)
	}
}

func TestChatAndValidate(t *testing.T) {
	env := newSim(t, simulator.Config{})
	ctx := ctxT(t)
	temp := 0.2
	req := ask("Give a one-line status: the EU cluster is healthy and the backlog is shrinking.", 64)
	req.Temperature = &temp
	req.System = &workspace.System{Text: "Be brief."}
	if err := env.c.ValidateChat(ctx, req); err != nil {
		t.Fatalf("validate a good request: %v", err)
	}
	r, err := env.c.Chat(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if r.Role != "assistant" || r.Text() == "" || r.Usage == nil || r.Usage.InputTokens == 0 {
		t.Errorf("chat answer %+v", r)
	}
	r2, err := env.c.Chat(ctx, req)
	if err != nil || r2.Text() != r.Text() {
		t.Errorf("same request, different answer: %q vs %q (%v)", r2.Text(), r.Text(), err)
	}

	hot := 5.0
	bad := req
	bad.Temperature = &hot
	err = env.c.ValidateChat(ctx, bad)
	ae, ok := errors.AsType[*workspace.APIError](err)
	if !ok || ae.StatusCode != 400 || !strings.Contains(ae.Message, "temperature") || ae.Path != "/api/v1/app/chat/validate" {
		t.Fatalf("validate temperature 5: %v", err)
	}
	if !strings.HasPrefix(err.Error(), "workspace: POST /api/v1/app/chat/validate: 400 Bad Request: ") {
		t.Errorf("Error() = %q", err)
	}
	if !workspace.IsPermanent(err) {
		t.Error("a 400 from validate must be permanent")
	}
	if _, err := env.c.Chat(ctx, workspace.ChatRequest{}); !workspace.IsPermanent(err) {
		t.Errorf("chat without messages: %v", err)
	}
	c := env.sim.Counters()
	if c.Validations != 2 || c.ValidationsFailed != 1 || c.ChatsAnswered != 2 {
		t.Errorf("counters: validations %d failed %d chats %d", c.Validations, c.ValidationsFailed, c.ChatsAnswered)
	}
}

func TestArtifacts(t *testing.T) {
	env := newSim(t, simulator.Config{})
	ctx := ctxT(t)
	folder, ids := seedDocs(env.sim, 45)
	env.sim.AddArtifact(simulator.ArtifactSpec{Name: "draft-notes.md", Content: "A draft about login loops.", State: "Draft"})
	env.sim.AddArtifact(simulator.ArtifactSpec{Name: "handbook.md", Content: "How we answer tickets."})

	t.Run("iterator follows has_next_page", func(t *testing.T) {
		before := env.sim.Counters().Total("GET /api/v1/app/project/{projectId}/artifact")
		var got []string
		for a, err := range env.c.Artifacts(ctx, testProj, workspace.ArtifactQuery{ParentID: folder, PageParams: workspace.PageParams{PageSize: 10}}) {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, a.ID)
		}
		if len(got) != 45 {
			t.Fatalf("got %d artifacts, want 45", len(got))
		}
		seen := map[string]bool{}
		for _, id := range got {
			seen[id] = true
		}
		for _, id := range ids {
			if !seen[id] {
				t.Errorf("missing %s", id)
			}
		}
		if calls := env.sim.Counters().Total("GET /api/v1/app/project/{projectId}/artifact") - before; calls != 5 {
			t.Errorf("%d page requests for 45 items by 10, want 5", calls)
		}
	})

	t.Run("early break", func(t *testing.T) {
		n := 0
		for _, err := range env.c.Artifacts(ctx, testProj, workspace.ArtifactQuery{ParentID: folder, PageParams: workspace.PageParams{PageSize: 10}}) {
			if err != nil {
				t.Fatal(err)
			}
			if n++; n == 12 {
				break
			}
		}
		if n != 12 {
			t.Errorf("n = %d", n)
		}
	})

	t.Run("filters", func(t *testing.T) {
		root, err := env.c.ListArtifacts(ctx, testProj, workspace.ArtifactQuery{})
		if err != nil {
			t.Fatal(err)
		}
		names := func(p *workspace.Page[workspace.Artifact]) (out []string) {
			for _, a := range p.Data {
				out = append(out, a.Name)
			}
			return out
		}
		if got := strings.Join(names(root), ","); got != "Tickets,handbook.md" {
			t.Errorf("root level, default states: %s", got)
		}
		drafts, err := env.c.ListArtifacts(ctx, testProj, workspace.ArtifactQuery{State: []string{"Draft"}})
		if err != nil || strings.Join(names(drafts), ",") != "draft-notes.md" {
			t.Errorf("state=Draft: %v %v", names(drafts), err)
		}
		folders, err := env.c.ListArtifacts(ctx, testProj, workspace.ArtifactQuery{IncludeDescendants: true, Type: []string{workspace.ArtifactTypeFolder}})
		if err != nil || strings.Join(names(folders), ",") != "Tickets" {
			t.Errorf("type=Folder: %v %v", names(folders), err)
		}
		text, err := env.c.ListArtifacts(ctx, testProj, workspace.ArtifactQuery{IncludeDescendants: true, FilterByText: "handbook"})
		if err != nil || strings.Join(names(text), ",") != "handbook.md" {
			t.Errorf("filter_by_text: %v %v", names(text), err)
		}
		all, err := env.c.ListArtifacts(ctx, testProj, workspace.ArtifactQuery{IncludeDescendants: true, PageParams: workspace.PageParams{PageSize: 5, TotalCount: true}})
		if err != nil || all.TotalCount == nil || *all.TotalCount != 47 || len(all.Data) != 5 || !all.HasNextPage {
			t.Errorf("include_descendants total: %v %+v", err, all.TotalCount)
		}
	})

	t.Run("get", func(t *testing.T) {
		a, err := env.c.GetArtifact(ctx, testProj, ids[0], workspace.ArtifactGetQuery{IncludeContent: true})
		if err != nil || a.ID != ids[0] || !strings.Contains(a.Content, "login page") || !a.Usable() {
			t.Fatalf("get with content: %+v %v", a, err)
		}
		bare, err := env.c.GetArtifact(ctx, testProj, ids[0], workspace.ArtifactGetQuery{})
		if err != nil || bare.Content != "" {
			t.Errorf("get without include_content: content %q %v", bare.Content, err)
		}
		if _, err := env.c.GetArtifact(ctx, testProj, "artifact_missing", workspace.ArtifactGetQuery{}); !errors.Is(err, workspace.ErrNotFound) {
			t.Errorf("unknown artifact: %v", err)
		}
	})

	t.Run("error mid-iteration", func(t *testing.T) {
		var mu sync.Mutex
		n, errs := 0, 0
		for _, err := range env.c.Artifacts(ctx, "proj_unknown", workspace.ArtifactQuery{}) {
			mu.Lock()
			if err != nil {
				errs++
			} else {
				n++
			}
			mu.Unlock()
		}
		if n != 0 || errs != 1 {
			t.Errorf("unknown project: %d items, %d errors; want 0 and 1", n, errs)
		}
	})
}

func TestInjectedFaults(t *testing.T) {
	env := newSim(t, simulator.Config{})
	ctx := ctxT(t)
	cases := []struct {
		faults     simulator.Faults
		status     int
		msg        string
		retryAfter time.Duration
	}{
		{simulator.Faults{Error500: 1}, 500, "internal server error", 0},
		{simulator.Faults{Error502: 1}, 502, "502 Bad Gateway", 0},
		{simulator.Faults{Error503: 1, RetryAfter: 2 * time.Second}, 503, "unavailable", 2 * time.Second},
		{simulator.Faults{TooMany429: 1, RetryAfter: 3 * time.Second}, 429, "too many requests", 3 * time.Second},
	}
	for _, tc := range cases {
		env.sim.SetFaults(tc.faults)
		_, err := env.c.Me(ctx)
		ae, ok := errors.AsType[*workspace.APIError](err)
		if !ok || ae.StatusCode != tc.status || !strings.Contains(ae.Message, tc.msg) {
			t.Errorf("%d: got %v", tc.status, err)
			continue
		}
		if !workspace.IsRetryable(err) || workspace.IsPermanent(err) {
			t.Errorf("%d must be retryable", tc.status)
		}
		d, has := workspace.RetryAfter(err)
		if has != (tc.retryAfter > 0) || d != tc.retryAfter {
			t.Errorf("%d: RetryAfter %v %v, want %v", tc.status, d, has, tc.retryAfter)
		}
	}
	env.sim.SetFaults(simulator.Faults{})

	// One request per 10s: the second call, moments after the first, is
	// over the limit even on a loaded machine.
	env.sim.SetRateLimit(0.1, 1)
	_, err1 := env.c.Me(ctx)
	_, err2 := env.c.Me(ctx)
	if err1 != nil {
		t.Fatalf("first call under the rate limit: %v", err1)
	}
	if d, ok := workspace.RetryAfter(err2); !ok || d < 5*time.Second || !workspace.IsRetryable(err2) {
		t.Errorf("second call over 1 rps: %v (retry after %v %v)", err2, d, ok)
	}
}

func TestCancellationAndTimeouts(t *testing.T) {
	env := newSim(t, simulator.Config{})

	t.Run("caller cancel during a slow call", func(t *testing.T) {
		env.sim.SetFaults(simulator.Faults{Slow: 1, SlowDelay: time.Minute})
		defer env.sim.SetFaults(simulator.Faults{})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { _, err := env.c.Me(ctx); done <- err }()
		waitFor(t, func() bool { return env.sim.Counters().Faults["slow"] >= 1 })
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) || workspace.IsRetryable(err) {
				t.Errorf("err %v, want context.Canceled, not retryable", err)
			}
			if !strings.Contains(err.Error(), "GET /api/v1/app/me") {
				t.Errorf("error does not name the endpoint: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the call ignored the cancelled context")
		}
	})

	t.Run("per-call timeout", func(t *testing.T) {
		env.sim.SetFaults(simulator.Faults{Slow: 1, SlowDelay: time.Minute})
		defer env.sim.SetFaults(simulator.Faults{})
		c := newClient(t, env.srv, workspace.WithTimeout(50*time.Millisecond))
		_, err := c.Me(t.Context())
		if !errors.Is(err, workspace.ErrTimeout) || !workspace.IsRetryable(err) {
			t.Errorf("err %v, want ErrTimeout, retryable", err)
		}
	})

	t.Run("per-call timeout override", func(t *testing.T) {
		env.sim.SetFaults(simulator.Faults{Slow: 1, SlowDelay: 150 * time.Millisecond})
		defer env.sim.SetFaults(simulator.Faults{})
		short := newClient(t, env.srv, workspace.WithTimeout(50*time.Millisecond))
		if _, err := short.Me(workspace.WithCallTimeout(t.Context(), 0)); err != nil {
			t.Errorf("no timeout for this call: %v", err)
		}
		if _, err := short.Me(workspace.WithCallTimeout(t.Context(), 10*time.Second)); err != nil {
			t.Errorf("a longer timeout for this call: %v", err)
		}
		none := newClient(t, env.srv, workspace.WithTimeout(0))
		_, err := none.Me(workspace.WithCallTimeout(t.Context(), 20*time.Millisecond))
		if !errors.Is(err, workspace.ErrTimeout) || !strings.Contains(err.Error(), "timed out after 20ms") {
			t.Errorf("err %v, want the per-call timeout", err)
		}
	})

	t.Run("cancel inside a stream", func(t *testing.T) {
		env.sim.SetAsync(true)
		env.sim.SetLatency(time.Minute, 0, 0)
		defer func() { env.sim.SetAsync(false); env.sim.SetLatency(0, 0, 0) }()
		th, err := env.c.CreateThread(t.Context(), testProj, workspace.CreateThreadRequest{Name: "c"})
		if err != nil {
			t.Fatal(err)
		}
		in, err := env.c.CreateInteraction(t.Context(), th.ID, workspace.CreateInteractionRequest{PGPT: ask("slow", 50)})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		var once sync.Once
		start := time.Now()
		_, err = env.c.StreamInteraction(ctx, in.ID, func(ev workspace.Event) {
			once.Do(cancel) // cancel on the first event (message_start)
		})
		if !errors.Is(err, context.Canceled) || workspace.IsRetryable(err) {
			t.Errorf("err %v, want context.Canceled", err)
		}
		if time.Since(start) > 10*time.Second {
			t.Errorf("stream took %v to notice the cancel", time.Since(start))
		}
		_, err = env.c.WaitInteraction(ctx, in.ID)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("wait with a cancelled context: %v", err)
		}
	})
}

// waitFor polls cond until it holds, failing the test after 5s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// BenchmarkGetInteraction measures one GET round trip through the client
// against the simulator over loopback HTTP.
func BenchmarkGetInteraction(b *testing.B) {
	sim := simulator.New(simulator.Config{ProjectID: testProj, Token: testToken})
	srv := httptest.NewServer(sim)
	defer func() { sim.Close(); srv.Close() }()
	c, err := workspace.New(srv.URL, workspace.WithHTTPClient(srv.Client()), workspace.WithToken(testToken), workspace.WithOrg(testOrg))
	if err != nil {
		b.Fatal(err)
	}
	ctx := b.Context()
	th, err := c.CreateThread(ctx, testProj, workspace.CreateThreadRequest{Name: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	in, err := c.CreateInteraction(ctx, th.ID, workspace.CreateInteractionRequest{PGPT: ask("Say something about benchmarks and clients.", 200)})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.GetInteraction(ctx, in.ID); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// TestChatRequestFieldsRoundTrip sends every optional ChatRequest field of
// workspace-api.md §6 and reads it back from the interaction's pgpt echo,
// so a wrong JSON name cannot go unnoticed.
func TestChatRequestFieldsRoundTrip(t *testing.T) {
	env := newSim(t, simulator.Config{})
	ctx := ctxT(t)
	th, err := env.c.CreateThread(ctx, testProj, workspace.CreateThreadRequest{Name: "fields"})
	if err != nil {
		t.Fatal(err)
	}
	f := func(v float64) *float64 { return &v }
	n := func(v int) *int { return &v }
	seed, off, yes := int64(7), false, true
	req := ask("Summarize the refund policy.", 100)
	req.System = &workspace.System{Text: "Be brief.", UseDefaultPrompt: &off, Citations: &workspace.Citations{Enabled: &yes}, Extensions: []string{"zylon"}}
	req.Temperature, req.TopP, req.TopK, req.MinP = f(0.3), f(0.9), n(40), f(0.05)
	req.RepetitionPenalty, req.PresencePenalty, req.FrequencyPenalty = f(1.1), f(0.2), f(0.4)
	req.Seed, req.Priority, req.CorrelationID = &seed, n(3), "item-7"
	req.ResponseFormat = &workspace.ResponseFormat{Type: "json_schema", JSONSchema: []byte(`{"type":"object"}`)}
	req.Thinking = &workspace.Thinking{Enabled: true}
	req.Tools = []workspace.Tool{{Name: "semantic_search", Type: "semantic_search_v1"}}
	req.ToolChoice = &workspace.ToolChoice{Type: "tool", Name: "semantic_search", DisableParallelToolUse: &yes}
	req.MCPServers = []byte(`[{"url":"https://mcp.example/sse","name":"docs"}]`)
	req.ToolContext = []byte(`[{"type":"text","text":"extra"}]`)
	in, err := env.c.CreateInteraction(ctx, th.ID, workspace.CreateInteractionRequest{PGPT: req})
	if err != nil {
		t.Fatal(err)
	}
	got, err := env.c.GetInteraction(ctx, in.ID)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := json.Marshal(req)
	echo, _ := json.Marshal(got.PGPT)
	if string(echo) != string(want) {
		t.Errorf("pgpt echo differs:\n got %s\nwant %s", echo, want)
	}
	for _, key := range []string{`"min_p":0.05`, `"repetition_penalty":1.1`, `"presence_penalty":0.2`, `"frequency_penalty":0.4`,
		`"tool_choice":{"type":"tool","name":"semantic_search","disable_parallel_tool_use":true}`, `"mcp_servers":[`, `"tool_context":[`} {
		if !strings.Contains(string(want), key) {
			t.Errorf("request JSON lacks %s: %s", key, want)
		}
	}
}
