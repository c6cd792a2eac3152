package simulator_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/threadmill/threadmill/examples"
	"github.com/threadmill/threadmill/workspace"
	"github.com/threadmill/threadmill/workspace/simulator"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const project = simulator.DefaultProjectID

// fixedNow is the clock of tests that compare timestamps.
var fixedNow = time.Date(2026, 6, 15, 9, 0, 0, 0, time.UTC)

// env is a simulator seeded with the example corpus behind a real HTTP
// server.
type env struct {
	t     *testing.T
	sim   *simulator.Server
	srv   *httptest.Server
	token string
	org   string
}

func newEnv(t *testing.T, cfg simulator.Config) *env {
	t.Helper()
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return fixedNow }
	}
	sim := simulator.New(cfg)
	if err := sim.AddDir(examples.Artifacts, "."); err != nil {
		t.Fatalf("AddDir: %v", err)
	}
	srv := httptest.NewServer(sim)
	t.Cleanup(func() {
		sim.Close()
		srv.Close()
	})
	return &env{t: t, sim: sim, srv: srv, token: cfg.Token, org: "default"}
}

// request builds a request with x-org and, when configured, the token.
func (e *env) request(method, path string, body any) *http.Request {
	e.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	case []byte:
		r = bytes.NewReader(b)
	default:
		r = bytes.NewReader(unescapedJSON(e.t, b))
	}
	req, err := http.NewRequest(method, e.srv.URL+path, r)
	if err != nil {
		e.t.Fatal(err)
	}
	if e.org != "" {
		req.Header.Set("x-org", e.org)
	}
	if e.token != "" {
		req.Header.Set("Authorization", "Bearer "+e.token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req
}

// send performs a request and returns the status, headers and body.
func (e *env) send(req *http.Request) (int, http.Header, []byte) {
	e.t.Helper()
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("%s %s: reading body: %v", req.Method, req.URL.Path, err)
	}
	return resp.StatusCode, resp.Header, data
}

func (e *env) do(method, path string, body any) (int, []byte) {
	e.t.Helper()
	status, _, data := e.send(e.request(method, path, body))
	return status, data
}

// must performs a request, requires the status and decodes the body into out.
func (e *env) must(method, path string, body any, want int, out any) {
	e.t.Helper()
	status, data := e.do(method, path, body)
	if status != want {
		e.t.Fatalf("%s %s: status %d, want %d; body %s", method, path, status, want, data)
	}
	if out != nil {
		reflect.ValueOf(out).Elem().SetZero() // no leftovers from an earlier decode
		if err := json.Unmarshal(data, out); err != nil {
			e.t.Fatalf("%s %s: decoding %s: %v", method, path, data, err)
		}
	}
}

func (e *env) createThread(name string) workspace.Thread {
	e.t.Helper()
	var th workspace.Thread
	e.must("POST", "/api/v1/app/project/"+project+"/thread",
		workspace.CreateThreadRequest{Name: name, Visibility: workspace.VisibilityPrivate}, http.StatusOK, &th)
	return th
}

func (e *env) artifactID(path string) string {
	e.t.Helper()
	a, ok := e.sim.ArtifactByPath(path)
	if !ok {
		e.t.Fatalf("no artifact at %s", path)
	}
	return a.ID
}

// errText returns the message and errors of a JSON error body, one per
// line, or the raw body when it is not one.
func errText(body []byte) string {
	var eb struct {
		Message string
		Errors  []string
	}
	if err := json.Unmarshal(body, &eb); err != nil || eb.Message == "" {
		return string(body)
	}
	return strings.Join(append([]string{eb.Message}, eb.Errors...), "\n")
}

func intp(n int) *int           { return &n }
func floatp(f float64) *float64 { return &f }
func chat(text string) workspace.ChatRequest {
	return workspace.ChatRequest{Messages: []workspace.Message{workspace.UserText(text)}}
}

func (e *env) createInteraction(threadID string, req workspace.ChatRequest, ids ...string) workspace.Interaction {
	e.t.Helper()
	var in workspace.Interaction
	e.must("POST", "/api/v1/app/thread/"+threadID+"/interaction", workspace.CreateInteractionRequest{
		ThreadID: threadID, PGPT: req, ArtifactIDs: ids, Agent: workspace.AgentDefault,
	}, http.StatusCreated, &in)
	return in
}

// sseEvent is one parsed server-sent event.
type sseEvent struct {
	Event string
	Data  map[string]any
	Raw   string
}

// sseReader reads events from a stream body.
type sseReader struct{ sc *bufio.Scanner }

func newSSEReader(r io.Reader) *sseReader {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	return &sseReader{sc: sc}
}

// next returns the next event, or io.EOF / the read error.
func (r *sseReader) next() (sseEvent, error) {
	var ev sseEvent
	for r.sc.Scan() {
		line := r.sc.Text()
		switch {
		case line == "":
			if ev.Event != "" || ev.Raw != "" {
				if err := json.Unmarshal([]byte(ev.Raw), &ev.Data); err != nil {
					return ev, err
				}
				return ev, nil
			}
		case strings.HasPrefix(line, "event: "):
			ev.Event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			ev.Raw += strings.TrimPrefix(line, "data: ")
		}
	}
	if err := r.sc.Err(); err != nil {
		return ev, err
	}
	return ev, io.EOF
}

// readAll reads every event until the end of the stream.
func (r *sseReader) readAll() ([]sseEvent, error) {
	var out []sseEvent
	for {
		ev, err := r.next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, ev)
	}
}

// streamText concatenates the text deltas of events.
func streamText(evs []sseEvent) string {
	var b strings.Builder
	for _, ev := range evs {
		if ev.Event == "content_block_delta" {
			b.WriteString(ev.Data["delta"].(map[string]any)["text"].(string))
		}
	}
	return b.String()
}

func eventNames(evs []sseEvent) []string {
	var out []string
	for _, ev := range evs {
		out = append(out, ev.Event)
	}
	return out
}

// waitUntil polls cond until it holds or the deadline passes.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// unescapedJSON encodes v as a client that does not escape HTML does
// (Python's json.dumps, curl): "<", ">" and "&" as they are.
func unescapedJSON(t testing.TB, v any) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}
