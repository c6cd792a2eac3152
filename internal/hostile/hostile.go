// Package hostile is a misbehaving front for a Workspace API in tests: an
// http.Handler that stands where a reverse proxy would, between the client
// and the (simulated) server, and for the requests its rules match loses
// answers, lies, stalls, resets connections and floods the client. Requests
// no rule matches pass through untouched.
//
// Each behaviour is an Action; a Rule says which requests get it and how
// many times. Hits counts the requests a rule acted on, so a test can check
// that the misbehaviour really happened before trusting its assertions.
package hostile

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Action answers a matched request. next is the server behind the front: an
// action may forward the request to it (so the server acts on it) and then
// replace, cut or withhold its answer.
type Action func(w http.ResponseWriter, r *http.Request, next http.Handler)

// Rule applies an Action to matching requests.
type Rule struct {
	// Method matches the request method; "" matches any.
	Method string
	// Path matches the URL path segment by segment; "*" matches one
	// segment, a trailing "**" any rest. "" matches any path.
	Path string
	// Match, when set, must also accept the request.
	Match func(*http.Request) bool
	// Skip lets the first Skip matching requests through untouched.
	Skip int
	// Times is how many matching requests (after Skip) get Do; 0 means
	// every one.
	Times int
	// Do is the misbehaviour.
	Do Action

	seen atomic.Int64
	hits atomic.Int64
}

// Hits returns how many requests the rule acted on.
func (r *Rule) Hits() int { return int(r.hits.Load()) }

// matches reports whether req matches the rule's method, path and Match.
func (r *Rule) matches(req *http.Request) bool {
	if r.Method != "" && r.Method != req.Method {
		return false
	}
	if r.Path != "" && !pathMatch(r.Path, req.URL.Path) {
		return false
	}
	return r.Match == nil || r.Match(req)
}

// take reports whether this matching request gets the rule's action.
func (r *Rule) take() bool {
	n := r.seen.Add(1)
	if n <= int64(r.Skip) {
		return false
	}
	if r.Times > 0 && n > int64(r.Skip+r.Times) {
		return false
	}
	r.hits.Add(1)
	return true
}

func pathMatch(pattern, path string) bool {
	ps := strings.Split(strings.Trim(pattern, "/"), "/")
	xs := strings.Split(strings.Trim(path, "/"), "/")
	for i, p := range ps {
		if p == "**" {
			return true
		}
		if i >= len(xs) || (p != "*" && p != xs[i]) {
			return false
		}
	}
	return len(ps) == len(xs)
}

// Front is the hostile front. The zero value is not usable: use New.
type Front struct {
	next   http.Handler
	mu     sync.Mutex
	rules  []*Rule
	closed context.Context
	close  context.CancelFunc
}

// New returns a front for next with no rules.
func New(next http.Handler) *Front {
	f := &Front{next: next}
	f.closed, f.close = context.WithCancel(context.Background())
	return f
}

// Add adds a rule, checked after the rules added before it, and returns it.
func (f *Front) Add(r *Rule) *Rule {
	f.mu.Lock()
	f.rules = append(f.rules, r)
	f.mu.Unlock()
	return r
}

// Close releases the requests that Stall holds.
func (f *Front) Close() { f.close() }

// ServeHTTP applies the first rule that matches and takes the request, else
// passes it through.
func (f *Front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	rules := f.rules
	f.mu.Unlock()
	for _, rule := range rules {
		if rule.matches(r) && rule.take() {
			ctx, cancel := context.WithCancel(r.Context())
			defer cancel()
			defer context.AfterFunc(f.closed, cancel)()
			rule.Do(w, r.WithContext(ctx), f.next)
			return
		}
	}
	f.next.ServeHTTP(w, r)
}

// Paths of the Workspace API that rules commonly match.
const (
	CreateInteraction = "/api/v1/app/thread/*/interaction"
	Interaction       = "/api/v1/app/interaction/*"
	InteractionStream = "/api/v1/app/interaction/*/stream"
	ListArtifacts     = "/api/v1/app/project/*/artifact"
	Validate          = "/api/v1/app/chat/validate"
	Chat              = "/api/v1/app/chat"
)

// forward serves r with next into a recorder and returns what next answered.
func forward(r *http.Request, next http.Handler) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	next.ServeHTTP(rec, r)
	return rec
}

// proxyPage is the body of a proxy's error page.
func proxyPage(status int) string {
	return fmt.Sprintf("<html><head><title>%d %s</title></head><body><center><h1>%d %s</h1></center><hr><center>nginx</center></body></html>\n",
		status, http.StatusText(status), status, http.StatusText(status))
}

// LoseAnswer forwards the request, so the server acts on it (creates,
// bills), then throws the server's answer away and answers status with an
// HTML error page, as a proxy that timed out (504) or lost its upstream
// (502) does.
func LoseAnswer(status int) Action {
	return func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		forward(r, next)
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(status)
		io.WriteString(w, proxyPage(status))
	}
}

// Respond answers status with header values (name, value pairs) and body,
// without asking the server.
func Respond(status int, body string, header ...string) Action {
	return func(w http.ResponseWriter, r *http.Request, _ http.Handler) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		if w.Header().Get("Content-Type") == "" {
			w.Header().Set("Content-Type", "application/json")
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

// RetryAfter answers 429 with the given Retry-After value (seconds, or an
// HTTP date: see HTTPDate), without asking the server.
func RetryAfter(value string) Action {
	return Respond(http.StatusTooManyRequests, `{"message":"rate limited"}`, "Retry-After", value)
}

// HTTPDate formats t as a Retry-After HTTP date.
func HTTPDate(t time.Time) string { return t.UTC().Format(http.TimeFormat) }

// SamePageForever answers every page of a listing with the first page, and
// claims a next page: a server that ignores the page parameter and never
// ends.
func SamePageForever() Action {
	return func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		r2 := r.Clone(r.Context())
		q := r2.URL.Query()
		q.Set("page", "1")
		q.Del("after")
		r2.URL.RawQuery = q.Encode()
		rec := forward(r2, next)
		var page map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &page); err != nil || rec.Code != http.StatusOK {
			copyRecorded(w, rec)
			return
		}
		page["has_next_page"] = true
		page["next_cursor"] = "forever"
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(page)
	}
}

// HugeJSON answers 200 with a syntactically valid JSON object of about n
// bytes, streamed without holding it in memory.
func HugeJSON(n int64) Action {
	return func(w http.ResponseWriter, r *http.Request, _ http.Handler) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		writePadded(w, n)
	}
}

// GzipBomb answers 200 with a gzip-encoded JSON object that decodes to about
// n bytes (it is a few hundred KiB on the wire per GiB).
func GzipBomb(n int64) Action {
	return func(w http.ResponseWriter, r *http.Request, _ http.Handler) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Encoding", "gzip")
		w.WriteHeader(http.StatusOK)
		zw, _ := gzip.NewWriterLevel(w, gzip.BestCompression)
		writePadded(zw, n)
		zw.Close()
	}
}

// writePadded writes {"pad":"   ...   "} of about n bytes to w, stopping at
// the first write error (the client gave up).
func writePadded(w io.Writer, n int64) {
	if _, err := io.WriteString(w, `{"pad":"`); err != nil {
		return
	}
	chunk := bytes.Repeat([]byte(" "), 64<<10)
	for left := n; left > 0; left -= int64(len(chunk)) {
		c := chunk
		if left < int64(len(c)) {
			c = c[:left]
		}
		if _, err := w.Write(c); err != nil {
			return
		}
	}
	io.WriteString(w, `"}`)
}

// Stall sends the status line and headers of a 200, then nothing, until the
// client gives up or the front is closed.
func Stall() Action {
	return func(w http.ResponseWriter, r *http.Request, _ http.Handler) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, `{"id":`)
		if fl, ok := w.(http.Flusher); ok {
			fl.Flush()
		}
		<-r.Context().Done()
	}
}

// ResetMidBody forwards the request (the server acts on it), sends the
// server's status, headers and the first half of its body, then resets the
// connection.
func ResetMidBody() Action {
	return func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		rec := forward(r, next)
		body := rec.Body.Bytes()
		hj, ok := w.(http.Hijacker)
		if !ok {
			panic("hostile: ResetMidBody needs a hijackable connection")
		}
		conn, buf, err := hj.Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprintf(buf, "HTTP/1.1 %d %s\r\n", rec.Code, http.StatusText(rec.Code))
		rec.Header().Set("Content-Length", strconv.Itoa(len(body)))
		rec.Header().Write(buf)
		buf.WriteString("\r\n")
		buf.Write(body[:len(body)/2])
		buf.Flush()
		if tc, ok := conn.(*net.TCPConn); ok {
			tc.SetLinger(0) // close with a RST, not a FIN
		}
	}
}

// copyRecorded writes a recorded answer to w.
func copyRecorded(w http.ResponseWriter, rec *httptest.ResponseRecorder) {
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	w.Write(rec.Body.Bytes())
}

// Vanished is an interaction that VanishInteraction made disappear.
type Vanished struct {
	mu sync.Mutex
	id string
}

// ID returns the vanished interaction's id; "" until it was created.
func (v *Vanished) ID() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.id
}

// VanishInteraction lets the first interaction created through the front be
// created and answered 201, then makes it vanish for good: every request
// naming its id answers 404, and its thread's list leaves it out, as a
// server that lost (or deleted) it would.
func (f *Front) VanishInteraction() *Vanished {
	v := &Vanished{}
	f.Add(&Rule{Method: http.MethodPost, Path: CreateInteraction, Times: 1, Do: func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		rec := forward(r, next)
		var in struct{ ID string }
		if rec.Code == http.StatusCreated && json.Unmarshal(rec.Body.Bytes(), &in) == nil {
			v.mu.Lock()
			v.id = in.ID
			v.mu.Unlock()
		}
		copyRecorded(w, rec)
	}})
	f.Add(&Rule{
		Match: func(r *http.Request) bool {
			id := v.ID()
			return id != "" && strings.Contains(r.URL.Path+"/", "/"+id+"/")
		},
		Do: Respond(http.StatusNotFound, `{"message":"interaction not found"}`),
	})
	f.Add(&Rule{
		Method: http.MethodGet, Path: CreateInteraction,
		Match: func(*http.Request) bool { return v.ID() != "" },
		Do: func(w http.ResponseWriter, r *http.Request, next http.Handler) {
			rec := forward(r, next)
			var page map[string]any
			if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &page) != nil {
				copyRecorded(w, rec)
				return
			}
			data, _ := page["data"].([]any)
			kept := data[:0]
			for _, it := range data {
				if m, ok := it.(map[string]any); ok && m["id"] == v.ID() {
					continue
				}
				kept = append(kept, it)
			}
			page["data"] = kept
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(page)
		},
	})
	return v
}
