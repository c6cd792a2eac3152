package workspace_test

import (
	"bytes"
	"compress/flate"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/threadmill/threadmill/workspace"
)

// Hostile answers: bodies a broken or malicious server (or proxy) may send.
// The servers stream them from small precomputed pieces, so that what the
// test process allocates is the client's doing.

const (
	hugeBodyBytes = 200 << 20 // the 200 MB JSON body
	bombBytes     = 1 << 30   // what the gzip bomb decodes to
)

// hugeJSON serves a JSON interaction whose user text is hugeBodyBytes long,
// chunked, or with its Content-Length announced when withLength is set. It
// stops when the client goes away.
func hugeJSON(withLength bool) http.HandlerFunc {
	head := []byte(`{"id":"i1","project_id":"p","state":"Completed","user_input":{"role":"user","content":[{"type":"text","text":"`)
	tail := []byte(`"}]}}`)
	chunk := bytes.Repeat([]byte("a"), 32<<10)
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if withLength {
			w.Header().Set("Content-Length", strconv.Itoa(len(head)+hugeBodyBytes+len(tail)))
		}
		if _, err := w.Write(head); err != nil {
			return
		}
		for n := 0; n < hugeBodyBytes; n += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
		w.Write(tail)
	}
}

// deflated returns piece repeated to 1 MiB, compressed as deflate blocks
// that may be repeated back to back: the blocks only refer to the bytes of
// the same repeated content.
func deflated(piece string) []byte {
	var buf bytes.Buffer
	zw, _ := flate.NewWriter(&buf, flate.BestCompression)
	zw.Write(bytes.Repeat([]byte(piece), (1<<20)/len(piece)))
	zw.Flush()
	return buf.Bytes()
}

var (
	spacesOnce sync.Once
	spaces1MiB []byte // 1 MiB of JSON white space, deflated (about 1 KiB)
	pingsOnce  sync.Once
	deltas1MiB []byte // 1 MiB of text-delta events, deflated
)

// gzipBomb serves Content-Encoding gzip whatever the request asked for: a
// gzip member whose content is bombBytes of white space (valid JSON
// padding), sent as about 1 MiB on the wire. It stops when the client goes
// away. seen, when not nil, receives the request's Accept-Encoding.
func gzipBomb(contentType string, piece func() []byte, seen chan<- string) http.HandlerFunc {
	chunk := piece() // here, not in the handler, so as not to count as the client's
	return func(w http.ResponseWriter, r *http.Request) {
		if seen != nil {
			select {
			case seen <- r.Header.Get("Accept-Encoding"):
			default:
			}
		}
		w.Header().Set("Content-Type", contentType)
		w.Header().Set("Content-Encoding", "gzip")
		// A gzip header: magic, deflate, no flags, no time, unknown OS.
		if _, err := w.Write([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff}); err != nil {
			return
		}
		for range bombBytes >> 20 {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}
}

func spacesPiece() []byte {
	spacesOnce.Do(func() { spaces1MiB = deflated(" ") })
	return spaces1MiB
}

func deltasPiece() []byte {
	pingsOnce.Do(func() {
		deltas1MiB = deflated("event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"all work and no play \"}}\n\n")
	})
	return deltas1MiB
}

// endlessLine serves an event stream whose first line never ends.
func endlessLine(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/event-stream")
	chunk := bytes.Repeat([]byte("a"), 32<<10)
	if _, err := io.WriteString(w, "data: "); err != nil {
		return
	}
	for n := 0; n < hugeBodyBytes; n += len(chunk) {
		if _, err := w.Write(chunk); err != nil {
			return
		}
	}
}

// stalled sends the headers of a JSON answer, then nothing until the client
// goes away.
func stalled(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, `{"id":`)
	w.(http.Flusher).Flush()
	<-r.Context().Done()
}

// resetMidBody announces a JSON body, sends its start and resets the
// connection (RST, not FIN).
func resetMidBody(w http.ResponseWriter, r *http.Request) {
	conn, buf, err := w.(http.Hijacker).Hijack()
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	buf.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 50000\r\n\r\n{\"id\":\"i1\",\"state\":\"Compl")
	buf.Flush()
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
}

// hostileCall is one call of the client, named by its endpoint.
type hostileCall struct {
	name string
	path string // the endpoint's path as errors name it
	call func(ctx context.Context, c *workspace.Client) error
}

var hostileCalls = []hostileCall{
	{"me", "GET /api/v1/app/me", func(ctx context.Context, c *workspace.Client) error {
		_, err := c.Me(ctx)
		return err
	}},
	{"interaction", "GET /api/v1/app/interaction/i1", func(ctx context.Context, c *workspace.Client) error {
		_, err := c.GetInteraction(ctx, "i1")
		return err
	}},
	{"page", "GET /api/v1/app/project/p/artifact", func(ctx context.Context, c *workspace.Client) error {
		_, err := c.ListArtifacts(ctx, "p", workspace.ArtifactQuery{})
		return err
	}},
	{"chat", "POST /api/v1/app/chat", func(ctx context.Context, c *workspace.Client) error {
		_, err := c.Chat(ctx, workspace.ChatRequest{Messages: []workspace.Message{workspace.UserText("hi")}})
		return err
	}},
}

var streamCall = hostileCall{"stream", "GET /api/v1/app/interaction/i1/stream", func(ctx context.Context, c *workspace.Client) error {
	_, err := c.StreamInteraction(ctx, "i1", nil)
	return err
}}

// noGzipClient is an HTTP client whose transport neither asks for gzip nor
// decodes it, as a caller-supplied transport may be.
func noGzipClient() *http.Client {
	return &http.Client{Transport: &http.Transport{DisableCompression: true}}
}

// hostileBody is a server behaviour and the HTTP client to meet it with.
type hostileBody struct {
	name    string
	handler http.HandlerFunc
	client  func(srv *httptest.Server) *http.Client
	calls   []hostileCall
}

func hostileBodies() []hostileBody {
	def := func(srv *httptest.Server) *http.Client { return srv.Client() }
	noGzip := func(*httptest.Server) *http.Client { return noGzipClient() }
	return []hostileBody{
		{"huge-json-chunked", hugeJSON(false), def, hostileCalls},
		{"huge-json-length", hugeJSON(true), def, hostileCalls},
		{"gzip-bomb", gzipBomb("application/json", spacesPiece, nil), def, hostileCalls},
		{"gzip-unasked", gzipBomb("application/json", spacesPiece, nil), noGzip, hostileCalls},
		{"stream-gzip-bomb", gzipBomb("text/event-stream", deltasPiece, nil), def, []hostileCall{streamCall}},
		{"stream-gzip-unasked", gzipBomb("text/event-stream", deltasPiece, nil), noGzip, []hostileCall{streamCall}},
		{"stream-endless-line", endlessLine, def, []hostileCall{streamCall}},
	}
}

// BenchmarkHostile reports what each hostile body costs the client when
// three items meet it at once, as three worker slots would:
//
//	go test -run=XXX -bench=Hostile -benchtime=3x ./workspace/
//
// peak-RSS-MiB is the process's peak resident set (VmHWM, reset before each
// round; Linux only) and includes the test servers and the Go runtime;
// alloc-MiB/call is the heap allocated per call (runtime TotalAlloc).
func BenchmarkHostile(b *testing.B) {
	for _, hb := range hostileBodies() {
		for _, hc := range hb.calls {
			b.Run(hb.name+"/"+hc.name, func(b *testing.B) {
				srv := httptest.NewServer(hb.handler)
				defer srv.Close()
				c, err := workspace.New(srv.URL, workspace.WithHTTPClient(hb.client(srv)),
					workspace.WithToken("tok_8f2b1c9e4d7a"), workspace.WithOrg("default"))
				if err != nil {
					b.Fatal(err)
				}
				defer c.CloseIdleConnections()
				var peak int64
				var alloc uint64
				var ms runtime.MemStats
				for b.Loop() {
					b.StopTimer()
					debug.FreeOSMemory()
					resetPeakRSS()
					runtime.ReadMemStats(&ms)
					before := ms.TotalAlloc
					b.StartTimer()
					var wg sync.WaitGroup
					errs := make([]error, 3)
					for i := range errs {
						wg.Go(func() { errs[i] = hc.call(b.Context(), c) })
					}
					wg.Wait()
					b.StopTimer()
					runtime.ReadMemStats(&ms)
					alloc += ms.TotalAlloc - before
					peak = max(peak, peakRSS())
					for _, err := range errs {
						if err == nil {
							b.Fatal("a hostile body was accepted")
						}
					}
					if b.N == 1 || peak == 0 {
						b.Logf("%v", errs[0])
					}
					b.StartTimer()
				}
				if peak > 0 {
					b.ReportMetric(float64(peak)/(1<<20), "peak-RSS-MiB")
				}
				b.ReportMetric(float64(alloc)/float64(3*b.N)/(1<<20), "alloc-MiB/call")
			})
		}
	}
}

// resetPeakRSS resets the process's VmHWM to its current RSS (Linux 4.0+).
func resetPeakRSS() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// peakRSS returns the process's VmHWM in bytes, 0 when unknown.
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb int64
			if _, err := fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), &kb); err == nil {
				return kb << 10
			}
		}
	}
	return 0
}
