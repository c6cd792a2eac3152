package workspace_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/threadmill/threadmill/workspace"
)

// serve starts an httptest server with h and returns a client for it.
func serve(t *testing.T, h http.HandlerFunc, opts ...workspace.Option) (*workspace.Client, *httptest.Server) {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return newClient(t, srv, opts...), srv
}

func TestNewBaseURL(t *testing.T) {
	ok := map[string]string{
		"http://127.0.0.1:8080":             "http://127.0.0.1:8080/api/v1",
		"http://127.0.0.1:8080/":            "http://127.0.0.1:8080/api/v1",
		"https://zylon.example.com/api/v1":  "https://zylon.example.com/api/v1",
		"https://zylon.example.com/api/v1/": "https://zylon.example.com/api/v1",
		" https://h.example/zylon ":         "https://h.example/zylon/api/v1",
	}
	for in, want := range ok {
		c, err := workspace.New(in)
		if err != nil {
			t.Errorf("New(%q): %v", in, err)
			continue
		}
		if c.BaseURL() != want {
			t.Errorf("New(%q).BaseURL() = %q, want %q", in, c.BaseURL(), want)
		}
	}
	bad := map[string]string{
		"":                    "empty base URL",
		"zylon.example.com":   "scheme must be http or https",
		"ftp://h":             "scheme must be http or https",
		"http://":             "no host",
		"http://user:pw@h":    "credentials in the URL",
		"http://h/api/v1?x=1": "no query or fragment",
		"http://h:bad":        "base URL",
	}
	for in, want := range bad {
		_, err := workspace.New(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New(%q) = %v, want an error with %q", in, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "pw@") {
			t.Errorf("New(%q) leaked the password: %v", in, err)
		}
	}
	for name, opt := range map[string]workspace.Option{
		"WithTimeout":           workspace.WithTimeout(-time.Second),
		"WithHTTPClient":        workspace.WithHTTPClient(nil),
		"WithToken":             workspace.WithToken("abc\r\nX-Evil: 1"),
		"WithOrg":               workspace.WithOrg("a\nb"),
		"WithMaxBodyBytes":      workspace.WithMaxBodyBytes(0),
		"WithStreamLimits":      workspace.WithStreamLimits(workspace.Limits{MaxLine: -1}),
		"WithPollInterval":      workspace.WithPollInterval(time.Second, time.Millisecond),
		"WithStreamIdleTimeout": workspace.WithStreamIdleTimeout(-1),
	} {
		_, err := workspace.New("http://h", opt)
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: err %v, want one naming the option", name, err)
		}
	}
}

func TestClientStringHidesToken(t *testing.T) {
	c, err := workspace.New("http://h", workspace.WithToken("tok_topsecret"), workspace.WithOrg("acme"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{c.String(), fmt.Sprintf("%v %+v %#v %s", c, c, c, c)} {
		if strings.Contains(s, "tok_topsecret") {
			t.Fatalf("token printed: %s", s)
		}
	}
	if !strings.Contains(c.String(), "[REDACTED]") || !strings.Contains(c.String(), "acme") {
		t.Errorf("String() = %s", c)
	}
}

// recorded is one request as a test server saw it.
type recorded struct {
	method, path, rawPath, query string
	header                       http.Header
	body                         map[string]any
}

func recorder(t *testing.T, reply func(w http.ResponseWriter, r *http.Request)) (http.HandlerFunc, func() []recorded) {
	var mu sync.Mutex
	var got []recorded
	return func(w http.ResponseWriter, r *http.Request) {
			rec := recorded{method: r.Method, path: r.URL.Path, rawPath: r.URL.EscapedPath(), query: r.URL.RawQuery, header: r.Header.Clone()}
			if b, _ := io.ReadAll(r.Body); len(b) > 0 {
				if err := json.Unmarshal(b, &rec.body); err != nil {
					t.Errorf("%s %s: body is not a JSON object: %v", r.Method, r.URL.Path, err)
				}
			}
			mu.Lock()
			got = append(got, rec)
			mu.Unlock()
			reply(w, r)
		}, func() []recorded {
			mu.Lock()
			defer mu.Unlock()
			return append([]recorded(nil), got...)
		}
}

func TestRequestShape(t *testing.T) {
	h, requests := recorder(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.URL.Path == "/api/v1/app/chat/validate":
			w.WriteHeader(http.StatusNoContent)
		case strings.HasSuffix(r.URL.Path, "/interaction") && r.Method == "POST":
			w.WriteHeader(http.StatusCreated)
			io.WriteString(w, `{"id":"inter_1","project_id":"p","state":"Completed","created_at":"2026-07-01T00:00:00Z","unknown_field":{"x":1},
				"assistant_output":{"created":1751328000.0,"stop_reason":"end_turn","content":[{"type":"thinking","thinking":"hm"},{"type":"text","text":"ok"}],"usage":{"input_tokens":"10","output_tokens":2.0}}}`)
		case strings.Contains(r.URL.Path, "/artifact/"):
			io.WriteString(w, `{"id":"a","project_id":"p","name":"n","type":"Document","state":"Published","ingest_status":"Done","parent_id":null,"child_count":"0"}`)
		case strings.Contains(r.URL.Path, "/artifact"):
			io.WriteString(w, `{"data":[],"has_next_page":false,"has_previous_page":false}`)
		default:
			io.WriteString(w, `{"id":"x","role":"assistant","content":[{"type":"text","text":"hi"}]}`)
		}
	})
	c, _ := serve(t, h, workspace.WithUserAgent("threadmill-test/1.0"))
	ctx := ctxT(t)

	in, err := c.CreateInteraction(ctx, "thr/1 x", workspace.CreateInteractionRequest{PGPT: ask("hello", 10)})
	if err != nil {
		t.Fatal(err)
	}
	if in.Output() != "ok" || in.Usage().InputTokens != 10 || in.Usage().OutputTokens != 2 || in.AssistantOutput.Created != 1751328000 {
		t.Errorf("tolerant decoding: output %q usage %+v created %v", in.Output(), in.Usage(), in.AssistantOutput.Created)
	}
	if _, err := c.Chat(ctx, ask("hello", 10)); err != nil {
		t.Fatal(err)
	}
	if err := c.ValidateChat(ctx, ask("hello", 10)); err != nil {
		t.Fatalf("204 from validate: %v", err)
	}
	q := workspace.ArtifactQuery{
		State: []string{"Published", " ", "Error"}, IngestStatus: []string{"Done"}, Type: []string{"Document"}, SubType: []string{"pdf"},
		Source: []string{"User"}, ParentID: "art_f", IncludeDescendants: true, FilterByText: "login loop", KeepAncestors: true,
		ResolveLinks: true, FilterByParent: true, CreatedBy: "usr_1", OrderBy: "Alphabetical", Order: "DESC_NULLS_LAST",
		Include:    []string{"User"},
		PageParams: workspace.PageParams{Page: 3, PageSize: 50, PageOrder: "DESC", After: "c1", Before: "c0", First: 5, Last: 6, TotalCount: true},
	}
	if _, err := c.ListArtifacts(ctx, "proj 1", q); err != nil {
		t.Fatal(err)
	}
	a, err := c.GetArtifact(ctx, "p", "a", workspace.ArtifactGetQuery{IncludeContent: true, IncludeReferences: true, IncludeRelationships: true, Include: []string{"User"}})
	if err != nil || a.ID != "a" || !a.Usable() {
		t.Fatalf("get artifact: %+v %v", a, err)
	}

	reqs := requests()
	if len(reqs) != 5 {
		t.Fatalf("%d requests", len(reqs))
	}
	for _, r := range reqs {
		if r.header.Get("Authorization") != "Bearer "+testToken || r.header.Get("x-org") != testOrg ||
			r.header.Get("User-Agent") != "threadmill-test/1.0" || r.header.Get("Accept") != "application/json" {
			t.Errorf("%s %s headers %v", r.method, r.path, r.header)
		}
		if r.method == "POST" && r.header.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s content type %q", r.method, r.path, r.header.Get("Content-Type"))
		}
	}
	// Interactions wrap the request in pgpt, with thread_id and artifact_ids.
	ib := reqs[0].body
	if reqs[0].rawPath != "/api/v1/app/thread/thr%2F1%20x/interaction" {
		t.Errorf("escaped path %q", reqs[0].rawPath)
	}
	if ib["thread_id"] != "thr/1 x" || ib["pgpt"] == nil || ib["messages"] != nil || fmt.Sprint(ib["artifact_ids"]) != "[]" || ib["all_artifacts"] != false {
		t.Errorf("interaction body %v", ib)
	}
	msgs := ib["pgpt"].(map[string]any)["messages"].([]any)
	content := msgs[0].(map[string]any)["content"].([]any)
	if content[0].(map[string]any)["type"] != "text" {
		t.Errorf("content must be an array of blocks: %v", msgs)
	}
	// Chat and validate take the bare request.
	for _, r := range reqs[1:3] {
		if r.body["messages"] == nil || r.body["pgpt"] != nil || r.body["max_tokens"] != 10.0 {
			t.Errorf("%s body %v", r.path, r.body)
		}
	}
	wantQ := url.Values{
		"state": {"Published,Error"}, "ingest_status": {"Done"}, "type": {"Document"}, "sub_type": {"pdf"}, "source": {"User"},
		"parent_id": {"art_f"}, "include_descendants": {"true"}, "filter_by_text": {"login loop"}, "keep_ancestors": {"true"},
		"resolve_links": {"true"}, "filter_by_parent": {"true"}, "created_by": {"usr_1"}, "order_by": {"Alphabetical"},
		"order": {"DESC_NULLS_LAST"}, "include": {"User"}, "page": {"3"}, "page_size": {"50"}, "page_order": {"DESC"},
		"after": {"c1"}, "before": {"c0"}, "first": {"5"}, "last": {"6"}, "total_count": {"true"},
	}
	if reqs[3].query != wantQ.Encode() || reqs[3].rawPath != "/api/v1/app/project/proj%201/artifact" {
		t.Errorf("artifact list query\n got %s\nwant %s (path %s)", reqs[3].query, wantQ.Encode(), reqs[3].rawPath)
	}
	if reqs[4].query != "include=User&include_content=true&include_references=true&include_relationships=true" {
		t.Errorf("artifact get query %s", reqs[4].query)
	}
}

func TestNonJSONAndOversizedBodies(t *testing.T) {
	const page = "<!DOCTYPE html><html><head><title>Sign in - Corporate Proxy</title></head><body>" +
		"<form>...</form></body></html>"
	cases := []struct {
		name    string
		status  int
		ct      string
		body    string
		check   func(t *testing.T, err error)
		maxBody int64
	}{
		{"HTML on 200", 200, "text/html; charset=utf-8", page, func(t *testing.T, err error) {
			re, ok := errors.AsType[*workspace.RequestError](err)
			if !ok || re.Path != "/api/v1/app/me" || !strings.Contains(err.Error(), `content type "text/html; charset=utf-8"`) ||
				!strings.Contains(err.Error(), "Sign in - Corporate Proxy") {
				t.Errorf("err %v", err)
			}
		}, 0},
		{"garbage on 200", 200, "application/json", "OK", func(t *testing.T, err error) {
			if err == nil || !strings.Contains(err.Error(), "GET /api/v1/app/me: 200 response is not valid JSON") || !strings.Contains(err.Error(), `"OK"`) {
				t.Errorf("err %v", err)
			}
		}, 0},
		{"empty 200", 200, "application/json", "", func(t *testing.T, err error) {
			if err == nil || !strings.Contains(err.Error(), "GET /api/v1/app/me: 200 response has an empty body") {
				t.Errorf("err %v", err)
			}
		}, 0},
		{"HTML 502 from a proxy", 502, "text/html", "<html><head><title>502 Bad Gateway</title></head><body><center>nginx</center></body></html>", func(t *testing.T, err error) {
			ae, ok := errors.AsType[*workspace.APIError](err)
			if !ok || ae.Message != "502 Bad Gateway" || !workspace.IsRetryable(err) || !strings.Contains(ae.Body, "nginx") {
				t.Errorf("err %v", err)
			}
		}, 0},
		{"FastAPI 422", 422, "application/json", `{"detail":[{"loc":["body","messages"],"msg":"Field required","type":"missing"}]}`, func(t *testing.T, err error) {
			if err == nil || err.Error() != "workspace: GET /api/v1/app/me: 422 Unprocessable Entity: body.messages: Field required" || !workspace.IsPermanent(err) {
				t.Errorf("err %v", err)
			}
		}, 0},
		{"oversized 200", 200, "application/json", `{"id":"` + strings.Repeat("x", 4000) + `"}`, func(t *testing.T, err error) {
			if !errors.Is(err, workspace.ErrBodyTooLarge) || !strings.Contains(err.Error(), "GET /api/v1/app/me: 200 response body exceeds the 1 KiB limit") {
				t.Errorf("err %v", err)
			}
		}, 1 << 10},
		{"oversized error body", 500, "text/plain", strings.Repeat("boom ", 200000), func(t *testing.T, err error) {
			ae, ok := errors.AsType[*workspace.APIError](err)
			if !ok || ae.StatusCode != 500 || len(ae.Body) > 4<<10 || len(ae.Message) > 512 || !strings.HasPrefix(ae.Message, "boom boom") {
				t.Errorf("err %v", err)
			}
		}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var opts []workspace.Option
			if tc.maxBody > 0 {
				opts = append(opts, workspace.WithMaxBodyBytes(tc.maxBody))
			}
			c, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tc.ct)
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			}, opts...)
			_, err := c.Me(ctxT(t))
			tc.check(t, err)
		})
	}
}

func TestRedirectIsNotFollowed(t *testing.T) {
	var followed atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/login" {
			followed.Add(1)
			return
		}
		http.Redirect(w, r, "/login", http.StatusFound)
	}))
	t.Cleanup(srv.Close)
	c, err := workspace.New(srv.URL, workspace.WithToken(testToken), workspace.WithOrg(testOrg)) // the default HTTP client
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	_, err = c.Me(ctxT(t))
	ae, ok := errors.AsType[*workspace.APIError](err)
	if !ok || ae.StatusCode != http.StatusFound || followed.Load() != 0 {
		t.Errorf("err %v, followed %d", err, followed.Load())
	}
}

func TestConnectionErrors(t *testing.T) {
	t.Run("refused", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		c, err := workspace.New("http://"+addr, workspace.WithHTTPClient(&http.Client{Transport: &http.Transport{}}))
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Me(ctxT(t))
		re, ok := errors.AsType[*workspace.RequestError](err)
		if !ok || re.Path != "/api/v1/app/me" || !workspace.IsRetryable(err) || workspace.IsPermanent(err) {
			t.Errorf("err %v: want a retryable *RequestError naming the endpoint", err)
		}
	})
	t.Run("closed before the answer", func(t *testing.T) {
		c, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			conn.Close()
		})
		_, err := c.GetThread(ctxT(t), "t1")
		if !workspace.IsRetryable(err) || !strings.Contains(err.Error(), "GET /api/v1/app/thread/t1") {
			t.Errorf("err %v: want retryable, naming the endpoint", err)
		}
	})
	t.Run("cut mid body", func(t *testing.T) {
		c, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "1000")
			io.WriteString(w, `{"id":"t1","na`)
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		})
		_, err := c.GetThread(ctxT(t), "t1")
		if !workspace.IsRetryable(err) {
			t.Errorf("err %v: want retryable", err)
		}
	})
}

// sseHandler serves body as an event stream on the stream route and
// interaction JSON on GET.
func sseHandler(t *testing.T, stream func(w http.ResponseWriter, r *http.Request), get func(n int) string) (http.HandlerFunc, *atomic.Int32) {
	var gets atomic.Int32
	return func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/stream") {
			if r.Header.Get("Accept") != "text/event-stream" {
				t.Errorf("stream Accept %q", r.Header.Get("Accept"))
			}
			stream(w, r)
			return
		}
		n := gets.Add(1)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, get(int(n)))
	}, &gets
}

func writeSSE(body string) func(w http.ResponseWriter, r *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, body)
	}
}

const completedNoUsage = `{"id":"i1","project_id":"p","state":"Completed","created_at":"x","assistant_output":{"content":[{"type":"text","text":"Hello, world"}]}}`

func TestStreamEdgeCases(t *testing.T) {
	crlf := strings.ReplaceAll("event: message_start\n"+
		`data: {"type":"message_start","message":{"id":"m","content":[]}}`+"\n\n"+
		": keep-alive comment\n\n"+
		"event: content_block_delta\n"+
		`data: {"type":"content_block_delta",`+"\n"+
		`data: "delta":{"type":"text_delta","text":"Hello"}}`+"\n\n"+
		"event: something_new\ndata: {\"type\":\"something_new\",\"x\":[1,2]}\n\n"+
		"event: content_block_delta\n"+
		`data: {"type":"content_block_delta","delta":{"type":"text_delta","text":", world"}}`+"\n\n"+
		"event: message_delta\n"+
		`data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"input_tokens":12,"output_tokens":3}}`+"\n\n"+
		"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n", "\n", "\r\n")

	t.Run("CRLF, multi-line data, unknown event, usage beside delta", func(t *testing.T) {
		h, _ := sseHandler(t, writeSSE(crlf), func(int) string { return completedNoUsage })
		c, _ := serve(t, h)
		var types []string
		res, err := c.StreamInteraction(ctxT(t), "i1", func(ev workspace.Event) { types = append(types, ev.Type) })
		if err != nil {
			t.Fatal(err)
		}
		if res.Text() != "Hello, world" || res.StopReason != "end_turn" || res.Usage == nil || res.Usage.Total() != 15 {
			t.Errorf("result %+v text %q", res, res.Text())
		}
		if strings.Join(types, ",") != "message_start,content_block_delta,something_new,content_block_delta,message_delta,message_stop" {
			t.Errorf("events %v", types)
		}
		// WaitInteraction fills the usage the GET lacks from the stream.
		in, err := c.WaitInteraction(ctxT(t), "i1")
		if err != nil {
			t.Fatal(err)
		}
		if in.Usage().InputTokens != 12 || in.StopReason() != "end_turn" || in.Output() != "Hello, world" {
			t.Errorf("waited %+v", in.AssistantOutput)
		}
	})

	t.Run("missing message_stop, then polling", func(t *testing.T) {
		cut := "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"par\"}}\n\n"
		h, gets := sseHandler(t, writeSSE(cut), func(n int) string {
			if n < 3 {
				return `{"id":"i1","project_id":"p","state":"Processing","created_at":"x"}`
			}
			return `{"id":"i1","project_id":"p","state":"Completed","created_at":"x","assistant_output":{"stop_reason":"stop","content":[{"type":"text","text":"partial and more"}],"usage":{"input_tokens":4,"output_tokens":4}}}`
		})
		c, _ := serve(t, h)
		res, err := c.StreamInteraction(ctxT(t), "i1", nil)
		if !errors.Is(err, workspace.ErrStreamIncomplete) || res.Text() != "par" || res.Completed {
			t.Fatalf("err %v text %q", err, res.Text())
		}
		if !strings.Contains(err.Error(), "workspace: GET /api/v1/app/interaction/i1/stream: stream ended before message_stop (after 1 events)") {
			t.Errorf("message %q", err)
		}
		in, err := c.WaitInteraction(ctxT(t), "i1")
		if err != nil {
			t.Fatal(err)
		}
		if in.State != workspace.StateCompleted || in.Output() != "partial and more" || gets.Load() != 3 {
			t.Errorf("state %s output %q after %d GETs", in.State, in.Output(), gets.Load())
		}
	})

	t.Run("error event", func(t *testing.T) {
		body := "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":\"artifacts not fully ingested\"}}\n\n"
		h, _ := sseHandler(t, writeSSE(body), func(int) string {
			return `{"id":"i1","project_id":"p","state":"Error","created_at":"x","assistant_output":{"content":[],"errors":[{"type":"invalid_request_error","message":"artifacts not fully ingested"}]}}`
		})
		c, _ := serve(t, h)
		_, err := c.StreamInteraction(ctxT(t), "i1", nil)
		se, ok := errors.AsType[*workspace.StreamError](err)
		if !ok || se.Path != "/api/v1/app/interaction/i1/stream" || !workspace.IsPermanent(err) ||
			err.Error() != "workspace: GET /api/v1/app/interaction/i1/stream: stream error invalid_request_error: artifacts not fully ingested" {
			t.Fatalf("err %v", err)
		}
		in, err := c.WaitInteraction(ctxT(t), "i1")
		if err != nil || in.State != workspace.StateError {
			t.Errorf("wait after an error event: %v %+v", err, in)
		}
	})

	t.Run("HTML instead of a stream", func(t *testing.T) {
		h, _ := sseHandler(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, "<html><title>Maintenance</title></html>")
		}, func(int) string { return completedNoUsage })
		c, _ := serve(t, h)
		_, err := c.StreamInteraction(ctxT(t), "i1", nil)
		if err == nil || !strings.Contains(err.Error(), "GET /api/v1/app/interaction/i1/stream: 200 response is not an event stream") || !strings.Contains(err.Error(), "Maintenance") {
			t.Errorf("err %v", err)
		}
		if in, err := c.WaitInteraction(ctxT(t), "i1"); err != nil || in.Output() != "Hello, world" {
			t.Errorf("wait falls back to GET: %v", err)
		}
	})

	t.Run("stream 401 ends the wait", func(t *testing.T) {
		h, gets := sseHandler(t, func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, `{"message":"invalid API token"}`, http.StatusUnauthorized)
		}, func(int) string { return completedNoUsage })
		c, _ := serve(t, h)
		_, err := c.WaitInteraction(ctxT(t), "i1")
		if !workspace.IsPermanent(err) || gets.Load() != 0 {
			t.Errorf("err %v after %d GETs", err, gets.Load())
		}
	})

	t.Run("hostile endless stream", func(t *testing.T) {
		h, _ := sseHandler(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			line := []byte("event: ping\ndata: {\"type\":\"ping\",\"pad\":\"" + strings.Repeat("z", 200) + "\"}\n\n")
			for r.Context().Err() == nil {
				if _, err := w.Write(line); err != nil {
					return
				}
			}
		}, func(int) string { return completedNoUsage })
		c, _ := serve(t, h, workspace.WithStreamLimits(workspace.Limits{MaxTotal: 1 << 20}))
		pings := 0
		_, err := c.StreamInteraction(ctxT(t), "i1", func(workspace.Event) { pings++ })
		if !errors.Is(err, workspace.ErrBodyTooLarge) || !strings.Contains(err.Error(), "stream exceeds the 1 MiB limit") {
			t.Fatalf("err %v", err)
		}
		if pings < 1000 || pings > (1<<20)/200 {
			t.Errorf("%d events read before the limit", pings)
		}
	})

	t.Run("hostile endless line", func(t *testing.T) {
		h, _ := sseHandler(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			chunk := []byte("data: " + strings.Repeat("q", 8192))
			for r.Context().Err() == nil {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		}, func(int) string { return completedNoUsage })
		c, _ := serve(t, h, workspace.WithStreamLimits(workspace.Limits{MaxLine: 64 << 10}))
		_, err := c.StreamInteraction(ctxT(t), "i1", nil)
		if !errors.Is(err, workspace.ErrBodyTooLarge) || !strings.Contains(err.Error(), "line exceeds the 64 KiB limit") {
			t.Fatalf("err %v", err)
		}
	})

	t.Run("idle stream times out", func(t *testing.T) {
		h, _ := sseHandler(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"content\":[]}}\n\n")
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}, func(int) string { return completedNoUsage })
		c, _ := serve(t, h, workspace.WithStreamIdleTimeout(100*time.Millisecond))
		start := time.Now()
		res, err := c.StreamInteraction(ctxT(t), "i1", nil)
		if !errors.Is(err, workspace.ErrTimeout) || !workspace.IsRetryable(err) || res == nil || res.Events != 1 {
			t.Fatalf("err %v res %+v", err, res)
		}
		if el := time.Since(start); el > 5*time.Second {
			t.Errorf("idle timeout took %v", el)
		}
	})
}

func TestWaitInteractionPollingLimits(t *testing.T) {
	var gets atomic.Int32
	c, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/stream") {
			http.Error(w, "stream unsupported", http.StatusNotFound)
			return
		}
		gets.Add(1)
		w.Header().Set("Retry-After", "0")
		http.Error(w, `{"message":"overloaded"}`, http.StatusServiceUnavailable)
	})
	_, err := c.WaitInteraction(ctxT(t), "i1")
	ae, ok := errors.AsType[*workspace.APIError](err)
	if !ok || ae.StatusCode != 503 || gets.Load() != 5 || !strings.Contains(err.Error(), "5 failed polls in a row") {
		t.Errorf("err %v after %d GETs", err, gets.Load())
	}
}

func TestPaginationGuards(t *testing.T) {
	t.Run("server ignoring page", func(t *testing.T) {
		var calls atomic.Int32
		c, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
			calls.Add(1)
			io.WriteString(w, `{"data":[{"id":"a1","name":"one"},{"id":"a2","name":"two"}],"has_next_page":true,"has_previous_page":false}`)
		})
		var ids []string
		var last error
		for a, err := range c.Artifacts(ctxT(t), "p", workspace.ArtifactQuery{}) {
			if err != nil {
				last = err
				continue
			}
			ids = append(ids, a.ID)
		}
		if strings.Join(ids, ",") != "a1,a2" || last == nil || !strings.Contains(last.Error(), "page 2 brought no new items") || calls.Load() != 2 {
			t.Errorf("ids %v err %v calls %d", ids, last, calls.Load())
		}
	})
	t.Run("cursor mode", func(t *testing.T) {
		c, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Query().Get("after") {
			case "start":
				io.WriteString(w, `{"data":[{"id":"a1"}],"next_cursor":"c2","has_next_page":true,"has_previous_page":false}`)
			case "c2":
				io.WriteString(w, `{"data":[{"id":"a2"},{"id":"a1"}],"next_cursor":"c3","has_next_page":true,"has_previous_page":true}`)
			case "c3":
				io.WriteString(w, `{"data":[{"id":"a3"}],"has_next_page":false,"has_previous_page":true}`)
			default:
				http.Error(w, "bad cursor", 400)
			}
		})
		var ids []string
		for a, err := range c.Artifacts(ctxT(t), "p", workspace.ArtifactQuery{PageParams: workspace.PageParams{After: "start"}}) {
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, a.ID)
		}
		if strings.Join(ids, ",") != "a1,a2,a3" {
			t.Errorf("ids %v (a duplicate must be skipped)", ids)
		}
	})
}

// The listing remembers the ids of its last 10,000 artifacts, not all of
// them: a repeat from the page before (a list that shifted) is skipped; one
// from 11,000 artifacts back is yielded again (Resolve drops it when it
// sorts the set), so listing a million artifacts holds 10,000 ids.
func TestPaginationRemembersARecentWindow(t *testing.T) {
	const pages, size = 12, 1000
	c, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
		page, _ := strconv.Atoi(r.URL.Query().Get("page"))
		var ids []string
		for i := range size {
			ids = append(ids, fmt.Sprintf(`{"id":"a%d"}`, (page-1)*size+i))
		}
		if page == pages {
			ids = append(ids, fmt.Sprintf(`{"id":"a%d"}`, (page-1)*size-1), `{"id":"a1"}`)
		}
		fmt.Fprintf(w, `{"data":[%s],"has_next_page":%t,"has_previous_page":%t}`, strings.Join(ids, ","), page < pages, page > 1)
	})
	count := map[string]int{}
	for a, err := range c.Artifacts(ctxT(t), "p", workspace.ArtifactQuery{PageParams: workspace.PageParams{PageSize: size}}) {
		if err != nil {
			t.Fatal(err)
		}
		count[a.ID]++
	}
	if len(count) != pages*size || count[fmt.Sprintf("a%d", (pages-1)*size-1)] != 1 || count["a1"] != 2 {
		t.Errorf("%d distinct ids; the last page's repeat of the page before yielded %d times (want 1), of the first page %d times (want 2)",
			len(count), count[fmt.Sprintf("a%d", (pages-1)*size-1)], count["a1"])
	}
}

func TestLoggerNeverSeesToken(t *testing.T) {
	var mu sync.Mutex
	var buf strings.Builder
	logger := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return buf.Write(p)
	}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	h, _ := sseHandler(t, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"message":"stream unavailable for `+r.Header.Get("Authorization")+`"}`, http.StatusServiceUnavailable)
	}, func(int) string { return completedNoUsage })
	c, _ := serve(t, h, workspace.WithLogger(logger))
	if _, err := c.WaitInteraction(ctxT(t), "i1"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	out := buf.String()
	mu.Unlock()
	if !strings.Contains(out, "workspace stream failed; polling the interaction") || !strings.Contains(out, "path=/api/v1/app/interaction/i1") {
		t.Errorf("log lacks the call and the fallback:\n%s", out)
	}
	if strings.Contains(out, testToken) {
		t.Errorf("the token reached the log:\n%s", out)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
