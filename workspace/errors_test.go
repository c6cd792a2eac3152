package workspace

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"
)

func TestDecodeErrorBody(t *testing.T) {
	cases := []struct {
		name, body, ct string
		msg, typ       string
		list           []string
	}{
		{"message", `{"message":"thread not found"}`, "application/json", "thread not found", "", nil},
		{"error string", `{"error":"Unauthorized"}`, "application/json", "Unauthorized", "", nil},
		{"error object", `{"type":"error","error":{"type":"invalid_request_error","message":"artifacts not fully ingested"}}`, "", "artifacts not fully ingested", "invalid_request_error", nil},
		{"message and error name", `{"status":400,"error":"Bad Request","message":"max_tokens must be at least 1"}`, "", "max_tokens must be at least 1", "Bad Request", nil},
		{"errors strings", `{"valid":false,"errors":["messages[0].content must be an array","temperature out of range"]}`, "", "messages[0].content must be an array; temperature out of range", "", []string{"messages[0].content must be an array", "temperature out of range"}},
		{"message plus errors", `{"message":"invalid request","errors":["messages: empty"]}`, "", "invalid request (messages: empty)", "", []string{"messages: empty"}},
		{"message repeats errors", `{"message":"messages: empty","errors":["messages: empty"]}`, "", "messages: empty", "", []string{"messages: empty"}},
		{"errors objects", `{"errors":[{"field":"max_tokens","message":"too large"},{"msg":"bad role"}]}`, "", "max_tokens: too large; bad role", "", []string{"max_tokens: too large", "bad role"}},
		{"fastapi detail list", `{"detail":[{"loc":["body","messages",0,"content"],"msg":"Input should be a valid list","type":"list_type"}]}`, "", "body.messages.0.content: Input should be a valid list", "", []string{"body.messages.0.content: Input should be a valid list"}},
		{"detail string", `{"detail":"Not authenticated"}`, "", "Not authenticated", "", nil},
		{"bare list", `["first problem","second problem"]`, "", "first problem; second problem", "", []string{"first problem", "second problem"}},
		{"html title", "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body><h1>nginx</h1></body></html>", "text/html", "502 Bad Gateway", "", nil},
		{"html no title", "<html><body><h1>Service\n Unavailable</h1><p>try later</p></body></html>", "text/html; charset=utf-8", "Service Unavailable try later", "", nil},
		{"plain text", "upstream connect error or disconnect/reset before headers\n", "text/plain", "upstream connect error or disconnect/reset before headers", "", nil},
		{"json without message", `{"status":500}`, "application/json", `{"status":500}`, "", nil},
		{"invalid json", `{"message": "cut`, "application/json", `{"message": "cut`, "", nil},
		{"empty", "", "", "", "", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			msg, typ, list := decodeErrorBody([]byte(c.body), c.ct)
			if msg != c.msg || typ != c.typ || fmt.Sprint(list) != fmt.Sprint(c.list) {
				t.Errorf("got (%q, %q, %q), want (%q, %q, %q)", msg, typ, list, c.msg, c.typ, c.list)
			}
		})
	}
	t.Run("long message is truncated on a rune boundary", func(t *testing.T) {
		long := strings.Repeat("é", 1000)
		msg, _, _ := decodeErrorBody([]byte(`{"message":"`+long+`"}`), "")
		if len(msg) > maxErrorMessage || !utf8.ValidString(msg) || !strings.HasSuffix(msg, "…") {
			t.Errorf("len %d valid %v", len(msg), utf8.ValidString(msg))
		}
	})
}

// TestAPIErrorShortToken checks that a token too short to be a real one
// (secret.MinLen) does not mangle the server's words, yet is still masked
// where it is a credential: after "Bearer " and in URLs.
func TestAPIErrorShortToken(t *testing.T) {
	body := `{"message":"Retry exhausted; sent Authorization: Bearer x to https://u:x@host/?token=x"}`
	e := newAPIError("POST", "/api/v1/app/chat", 401, http.Header{}, []byte(body), time.Now(), "x")
	want := "workspace: POST /api/v1/app/chat: 401 Unauthorized: Retry exhausted; sent Authorization: Bearer [REDACTED] to https://u:[REDACTED]@host/?token=[REDACTED]"
	if e.Error() != want {
		t.Errorf("Error() = %q\nwant %q", e.Error(), want)
	}
	if !strings.Contains(e.Body, "Retry exhausted") || strings.Contains(e.Body, "Bearer x") {
		t.Errorf("Body = %q", e.Body)
	}
}

func TestAPIErrorFormatAndRedaction(t *testing.T) {
	h := http.Header{"Content-Type": {"application/json"}, "Retry-After": {"7"}}
	e := newAPIError("POST", "/api/v1/app/chat/validate", 400, h,
		[]byte(`{"message":"bad token s3cr3t-token in request"}`), time.Now(), "s3cr3t-token")
	want := "workspace: POST /api/v1/app/chat/validate: 400 Bad Request: bad token [REDACTED] in request"
	if e.Error() != want {
		t.Errorf("Error() = %q, want %q", e.Error(), want)
	}
	if strings.Contains(e.Body, "s3cr3t") {
		t.Errorf("token leaked into Body %q", e.Body)
	}
	if d, ok := RetryAfter(e); !ok || d != 7*time.Second {
		t.Errorf("RetryAfter = %v %v", d, ok)
	}
	if !IsPermanent(e) || IsRetryable(e) {
		t.Errorf("400: permanent %v retryable %v", IsPermanent(e), IsRetryable(e))
	}
	if got := (&APIError{StatusCode: 599, Method: "GET", Path: "/x"}).Error(); got != "workspace: GET /x: 599" {
		t.Errorf("unknown status: %q", got)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		in   string
		d    time.Duration
		ok   bool
		name string
	}{
		{"3", 3 * time.Second, true, "seconds"},
		{" 1.5 ", 1500 * time.Millisecond, true, "fraction"},
		{"0", 0, true, "zero"},
		{"-4", 0, true, "negative"},
		{"99999999999999", maxRetryAfter, true, "huge"},
		{"Wed, 01 Jul 2026 12:00:30 GMT", 30 * time.Second, true, "http date"},
		{"Wed, 01 Jul 2026 11:00:00 GMT", 0, true, "date in the past"},
		{"soon", 0, false, "garbage"},
		{"NaN", 0, true, "NaN"},
	}
	for _, c := range cases {
		d, ok := parseRetryAfter(c.in, now)
		if d != c.d || ok != c.ok {
			t.Errorf("%s: parseRetryAfter(%q) = %v %v, want %v %v", c.name, c.in, d, ok, c.d, c.ok)
		}
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestClassify(t *testing.T) {
	req := func(err error) error { return &RequestError{Method: "GET", Path: "/api/v1/app/me", Err: err} }
	cases := []struct {
		name                 string
		err                  error
		retryable, permanent bool
	}{
		{"nil", nil, false, false},
		{"429", &APIError{StatusCode: 429}, true, false},
		{"500", &APIError{StatusCode: 500}, true, false},
		{"502", &APIError{StatusCode: 502}, true, false},
		{"503", &APIError{StatusCode: 503}, true, false},
		{"504", &APIError{StatusCode: 504}, true, false},
		{"400", &APIError{StatusCode: 400}, false, true},
		{"401", &APIError{StatusCode: 401}, false, true},
		{"403", &APIError{StatusCode: 403}, false, true},
		{"404", &APIError{StatusCode: 404}, false, true},
		{"413", &APIError{StatusCode: 413}, false, true},
		{"422", &APIError{StatusCode: 422}, false, true},
		{"409", &APIError{StatusCode: 409}, false, false},
		{"302", &APIError{StatusCode: 302}, false, false},
		{"wrapped 503", fmt.Errorf("item x: %w", &APIError{StatusCode: 503}), true, false},
		{"connection reset", req(&net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}), true, false},
		{"connection refused", req(&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}), true, false},
		{"EOF", req(io.EOF), true, false},
		{"unexpected EOF", req(io.ErrUnexpectedEOF), true, false},
		{"transport timeout", req(timeoutErr{}), true, false},
		{"client timeout", req(fmt.Errorf("%w after 1s", ErrTimeout)), true, false},
		{"caller cancel", req(context.Canceled), false, false},
		{"caller deadline", req(context.DeadlineExceeded), false, false},
		{"stream incomplete", req(ErrStreamIncomplete), true, false},
		{"stream overloaded", &StreamError{Type: "overloaded_error"}, true, false},
		{"stream api_error", &StreamError{Type: "api_error"}, true, false},
		{"stream invalid", &StreamError{Type: "invalid_request_error"}, false, true},
		{"stream too large", &StreamError{Type: "request_too_large"}, false, true},
		{"body too large", req(limitErrorf("too big")), false, false},
		{"other", errors.New("boom"), false, false},
	}
	for _, c := range cases {
		if got := IsRetryable(c.err); got != c.retryable {
			t.Errorf("%s: IsRetryable = %v, want %v", c.name, got, c.retryable)
		}
		if got := IsPermanent(c.err); got != c.permanent {
			t.Errorf("%s: IsPermanent = %v, want %v", c.name, got, c.permanent)
		}
	}
	if !errors.Is(&APIError{StatusCode: 404}, ErrNotFound) || errors.Is(&APIError{StatusCode: 400}, ErrNotFound) {
		t.Error("ErrNotFound must match 404 only")
	}
	if errors.Is(&APIError{StatusCode: 409}, ErrAlreadyFinished) {
		t.Error("a 409 outside cancel must not match ErrAlreadyFinished")
	}
	if _, ok := RetryAfter(&APIError{StatusCode: 503}); ok {
		t.Error("RetryAfter without the header reported one")
	}
}

// FuzzDecodeErrorBody feeds arbitrary error bodies and headers to the error
// decoder: it must not panic, and the message must stay short, valid UTF-8
// and free of the token.
func FuzzDecodeErrorBody(f *testing.F) {
	f.Add([]byte(`{"message":"x","errors":["a",{"msg":"b","loc":["body",1]}]}`), "application/json", "12")
	f.Add([]byte(`{"error":{"type":"t","message":"m"},"detail":[1,null,{"loc":[null]}]}`), "", "Wed, 21 Oct 2015 07:28:00 GMT")
	f.Add([]byte("<html><title>50\xff2</title>"), "text/html", "-1")
	f.Add([]byte(`[{"message":"tok_SECRET"}]`), "", "")
	f.Add([]byte(`{"message":"tok_\u0053ECRET"}`), "", "")
	f.Fuzz(func(t *testing.T, body []byte, ct, retryAfter string) {
		h := http.Header{}
		h.Set("Content-Type", ct)
		h.Set("Retry-After", retryAfter)
		e := newAPIError("POST", "/api/v1/app/chat", 400, h, body, time.Now(), "tok_SECRET")
		if len(e.Message) > maxErrorMessage || !utf8.ValidString(e.Message) {
			t.Fatalf("message %d bytes, valid %v", len(e.Message), utf8.ValidString(e.Message))
		}
		if len(e.Body) > maxErrorBody || !utf8.ValidString(e.Body) {
			t.Fatalf("body %d bytes", len(e.Body))
		}
		if strings.Contains(e.Error(), "tok_SECRET") || strings.Contains(e.Body, "tok_SECRET") ||
			strings.Contains(strings.Join(e.Errors, " "), "tok_SECRET") {
			t.Fatalf("token leaked: %q", e.Error())
		}
		if e.RetryAfter < 0 || e.RetryAfter > maxRetryAfter {
			t.Fatalf("RetryAfter %v out of range", e.RetryAfter)
		}
		if !strings.HasPrefix(e.Error(), "workspace: POST /api/v1/app/chat: 400 Bad Request") {
			t.Fatalf("Error() = %q", e.Error())
		}
	})
}
