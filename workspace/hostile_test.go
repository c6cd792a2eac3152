package workspace_test

import (
	"bytes"
	"compress/gzip"
	"errors"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/threadmill/threadmill/workspace"
)

// limitOf is the default body limit of a hostile call's endpoint.
func limitOf(t *testing.T, call string) int64 {
	l := workspace.DefaultBodyLimits()
	switch call {
	case "me":
		return l.Small
	case "interaction", "chat":
		return l.Interaction
	case "page":
		return l.Page
	case "stream":
		return workspace.DefaultLimits().MaxTotal
	}
	t.Fatalf("no limit for %s", call)
	return 0
}

// allocDuring returns the bytes the process allocated while f ran. Unlike
// RSS it does not depend on when the collector runs, so a bound on it
// cannot flake.
func allocDuring(f func()) uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	before := ms.TotalAlloc
	f()
	runtime.ReadMemStats(&ms)
	return ms.TotalAlloc - before
}

// TestHostileBodies meets every body-reading endpoint with a 200 MB JSON
// body (chunked, and with its Content-Length announced), a gzip bomb the
// transport decodes, and one sent unasked to a transport that does not: each
// call must fail with ErrBodyTooLarge naming the endpoint, having allocated
// less than three times its endpoint's limit (plus 512 KiB for the HTTP
// and gzip machinery).
func TestHostileBodies(t *testing.T) {
	for _, hb := range hostileBodies() {
		if hb.calls[0].name == "stream" {
			continue // TestHostileStreams
		}
		for _, hc := range hb.calls {
			t.Run(hb.name+"/"+hc.name, func(t *testing.T) {
				srv := httptest.NewServer(hb.handler)
				t.Cleanup(srv.Close)
				c := newClient(t, srv, workspace.WithHTTPClient(hb.client(srv)))
				t.Cleanup(c.CloseIdleConnections)
				limit := limitOf(t, hc.name)
				var err error
				alloc := allocDuring(func() { err = hc.call(ctxT(t), c) })
				if !errors.Is(err, workspace.ErrBodyTooLarge) {
					t.Fatalf("err = %v, want ErrBodyTooLarge", err)
				}
				want := "workspace: " + hc.path + ": 200 response body exceeds the " + byteSize(limit) + " limit"
				if !strings.HasPrefix(err.Error(), want) {
					t.Errorf("err = %q, want it to start %q", err, want)
				}
				if strings.Contains(hb.name, "gzip") && !strings.HasSuffix(err.Error(), "(decoded from gzip)") {
					t.Errorf("err = %q does not say the body was decoded", err)
				}
				if bound := 3*uint64(limit) + 512<<10; alloc > bound {
					t.Errorf("the call allocated %d bytes, want at most %d (3 x the %s limit + 512 KiB)", alloc, bound, byteSize(limit))
				}
				if workspace.IsRetryable(err) {
					t.Errorf("an oversized body is retryable: %v", err)
				}
			})
		}
	}
}

// TestGzipUnaskedIsDecoded checks that a transport that does not ask for
// gzip still gets a gzip answer decoded, a small one whole.
func TestGzipUnaskedIsDecoded(t *testing.T) {
	seen := make(chan string, 1)
	srv := httptest.NewServer(gzipBomb("application/json", spacesPiece, seen))
	t.Cleanup(srv.Close)
	c := newClient(t, srv, workspace.WithHTTPClient(noGzipClient()), workspace.WithMaxBodyBytes(1<<20))
	_, err := c.Me(ctxT(t))
	if ae := <-seen; ae != "" {
		t.Fatalf("the request asked for %q; the test needs a transport that does not ask", ae)
	}
	if !errors.Is(err, workspace.ErrBodyTooLarge) || !strings.Contains(err.Error(), "GET /api/v1/app/me: 200 response body exceeds the 64 KiB limit (decoded from gzip)") {
		t.Fatalf("err = %v", err)
	}

	small := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Encoding", "gzip")
		w.Write(gzipped(`{"id":"u1","org_id":"o","name":"Ada","email":"ada@example.com"}`))
	}))
	t.Cleanup(small.Close)
	c = newClient(t, small, workspace.WithHTTPClient(noGzipClient()))
	u, err := c.Me(ctxT(t))
	if err != nil || u.Name != "Ada" {
		t.Fatalf("Me = %+v, %v", u, err)
	}
}

// TestUnsupportedEncoding checks that an encoding the client cannot decode
// is named instead of being parsed as JSON.
func TestUnsupportedEncoding(t *testing.T) {
	c, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Encoding", "br")
		w.Write([]byte{0x1b, 0x2f, 0, 0})
	})
	_, err := c.Me(ctxT(t))
	if err == nil || err.Error() != `workspace: GET /api/v1/app/me: 200 response: unsupported content encoding "br"` {
		t.Fatalf("err = %v", err)
	}
}

// TestHostileStreams checks that the stream limits count decoded bytes: a
// gzip bomb of text deltas, decoded by the transport or sent unasked, ends
// at the total limit, and a line that never ends at the line limit.
func TestHostileStreams(t *testing.T) {
	lim := workspace.DefaultLimits()
	for _, hb := range hostileBodies() {
		if hb.calls[0].name != "stream" {
			continue
		}
		t.Run(hb.name, func(t *testing.T) {
			srv := httptest.NewServer(hb.handler)
			t.Cleanup(srv.Close)
			c := newClient(t, srv, workspace.WithHTTPClient(hb.client(srv)))
			t.Cleanup(c.CloseIdleConnections)
			err := streamCall.call(ctxT(t), c)
			if !errors.Is(err, workspace.ErrBodyTooLarge) {
				t.Fatalf("err = %v, want ErrBodyTooLarge", err)
			}
			want := "the stream exceeds the " + byteSize(lim.MaxTotal) + " limit"
			if hb.name == "stream-endless-line" {
				want = "the line exceeds the " + byteSize(int64(lim.MaxLine)) + " limit"
			}
			if !strings.HasPrefix(err.Error(), "workspace: "+streamCall.path+": ") || !strings.Contains(err.Error(), want) {
				t.Errorf("err = %q, want the endpoint and %q", err, want)
			}
		})
	}
}

// TestStalledBody checks that an answer whose body stops coming ends at the
// per-call timeout with a retryable ErrTimeout naming the endpoint.
func TestStalledBody(t *testing.T) {
	for _, hc := range hostileCalls {
		t.Run(hc.name, func(t *testing.T) {
			c, _ := serve(t, stalled, workspace.WithTimeout(100*time.Millisecond))
			err := hc.call(ctxT(t), c)
			if !errors.Is(err, workspace.ErrTimeout) || !workspace.IsRetryable(err) {
				t.Fatalf("err = %v, want a retryable ErrTimeout", err)
			}
			if !strings.HasPrefix(err.Error(), "workspace: "+hc.path+": ") {
				t.Errorf("err = %q does not name %s", err, hc.path)
			}
		})
	}
}

// TestStalledGzipBody checks the same when the stall comes before a gzip
// header is complete, in the client's own decoder.
func TestStalledGzipBody(t *testing.T) {
	c, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Encoding", "gzip")
		w.WriteHeader(http.StatusOK)
		w.Write([]byte{0x1f, 0x8b})
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}, workspace.WithHTTPClient(noGzipClient()), workspace.WithTimeout(100*time.Millisecond))
	_, err := c.GetInteraction(ctxT(t), "i1")
	if !errors.Is(err, workspace.ErrTimeout) || !strings.Contains(err.Error(), "GET /api/v1/app/interaction/i1") {
		t.Fatalf("err = %v, want ErrTimeout naming the endpoint", err)
	}
}

// TestResetMidBody checks that a connection reset in the middle of a body
// is a retryable error naming the endpoint.
func TestResetMidBody(t *testing.T) {
	for _, hc := range hostileCalls {
		t.Run(hc.name, func(t *testing.T) {
			c, _ := serve(t, resetMidBody)
			err := hc.call(ctxT(t), c)
			if err == nil || !workspace.IsRetryable(err) {
				t.Fatalf("err = %v, want a retryable error", err)
			}
			if _, ok := errors.AsType[*workspace.RequestError](err); !ok {
				t.Errorf("err = %T %v, want a *RequestError", err, err)
			}
			if !strings.HasPrefix(err.Error(), "workspace: "+hc.path+": read 200 response body: ") {
				t.Errorf("err = %q does not name %s and the read", err, hc.path)
			}
		})
	}
}

// TestBodyLimitOptions checks that WithMaxBodyBytes is a ceiling over the
// per-kind limits and that WithBodyLimits raises or lowers one kind.
func TestBodyLimitOptions(t *testing.T) {
	body := `{"id":"i1","project_id":"p","state":"Completed","created_at":"x","user_input":{"role":"user","content":[{"type":"text","text":"` +
		strings.Repeat("a", 100<<10) + `"}]}}`
	h := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(body))
	}
	cases := []struct {
		name string
		opts []workspace.Option
		want string // "" for success
	}{
		{"default", nil, ""},
		{"ceiling", []workspace.Option{workspace.WithMaxBodyBytes(64 << 10)}, "exceeds the 64 KiB limit"},
		{"kind lowered", []workspace.Option{workspace.WithBodyLimits(workspace.BodyLimits{Interaction: 32 << 10})}, "exceeds the 32 KiB limit"},
		{"ceiling over a raised kind", []workspace.Option{workspace.WithBodyLimits(workspace.BodyLimits{Interaction: 64 << 20}), workspace.WithMaxBodyBytes(50 << 10)}, "exceeds the 50 KiB limit"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := serve(t, h, tc.opts...)
			in, err := c.GetInteraction(ctxT(t), "i1")
			switch {
			case tc.want == "" && (err != nil || in.ID != "i1"):
				t.Fatalf("GetInteraction = %v", err)
			case tc.want != "" && (!errors.Is(err, workspace.ErrBodyTooLarge) || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := workspace.New("http://h", workspace.WithBodyLimits(workspace.BodyLimits{Page: -1})); err == nil ||
		!strings.Contains(err.Error(), "WithBodyLimits: Page -1 is negative") {
		t.Errorf("negative limit: %v", err)
	}
}

// byteSize renders n as the client's errors do.
func byteSize(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + " MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + " KiB"
	}
	return strconv.FormatInt(n, 10) + " bytes"
}

// gzipped compresses s as a gzip member.
func gzipped(s string) []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write([]byte(s))
	zw.Close()
	return b.Bytes()
}
