package workspace

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/threadmill/threadmill/internal/secret"
)

// Sentinel errors, matched with errors.Is.
var (
	// ErrAlreadyFinished is matched by the error of CancelInteraction when
	// the server answers 409: the interaction had already finished.
	ErrAlreadyFinished = errors.New("workspace: interaction already finished")
	// ErrNotFound is matched by any *APIError whose status is 404.
	ErrNotFound = errors.New("workspace: not found")
	// ErrTimeout is matched when a call exceeds the client's per-call timeout
	// (WithTimeout) or a stream stays silent longer than its idle timeout. It
	// is retryable; a deadline or cancellation of the caller's own context is
	// not.
	ErrTimeout = errors.New("timed out")
	// ErrStreamIncomplete is matched when an interaction stream ends (EOF or
	// a cut connection) before its message_stop event.
	ErrStreamIncomplete = errors.New("stream ended before message_stop")
	// ErrBodyTooLarge is matched when a response body or a stream exceeds
	// the client's size limits.
	ErrBodyTooLarge = errors.New("response too large")
)

// Limits on what the client keeps of an error body.
const (
	maxErrorMessage = 512      // bytes of APIError.Message
	maxErrorBody    = 4 << 10  // bytes of APIError.Body
	maxErrorRead    = 64 << 10 // bytes read from an error response
	maxRetryAfter   = 24 * time.Hour
)

// APIError is a non-2xx answer of the Workspace API.
type APIError struct {
	// StatusCode is the HTTP status, e.g. 400.
	StatusCode int
	// Method and Path name the endpoint, e.g. "POST" and
	// "/api/v1/app/chat/validate" (no query string).
	Method, Path string
	// Message is the server's message, decoded from the JSON error shapes
	// of workspace-api.md §9 (message, error, errors[], detail), else the
	// raw text (the title of an HTML page), truncated to 512 bytes.
	Message string
	// Type is the error type when the body carried one
	// (error.type, e.g. "invalid_request_error").
	Type string
	// Errors lists the individual messages of errors[] or detail[].
	Errors []string
	// Body is the raw body, truncated to 4 KiB.
	Body string
	// RetryAfter is the parsed Retry-After header (seconds or HTTP date),
	// capped at 24h; zero when absent.
	RetryAfter time.Duration

	hasRetryAfter bool
	sentinel      error // an extra sentinel matched by errors.Is (ErrAlreadyFinished, ErrRouteMismatch)
	shape         notFoundShape
	routeMismatch bool        // a 404 of an unknown route: matches ErrRouteMismatch, not ErrNotFound
	scheme        RouteScheme // the scheme the client used, for the hint
}

// Error formats the error as
// "workspace: POST /api/v1/app/chat/validate: 400 Bad Request: <message>".
func (e *APIError) Error() string {
	var b strings.Builder
	b.WriteString("workspace: ")
	b.WriteString(e.Method)
	b.WriteByte(' ')
	b.WriteString(e.Path)
	b.WriteString(": ")
	b.WriteString(strconv.Itoa(e.StatusCode))
	if t := http.StatusText(e.StatusCode); t != "" {
		b.WriteByte(' ')
		b.WriteString(t)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.routeMismatch {
		b.WriteString(" (no such route: ")
		b.WriteString(mismatchHint(e.scheme))
		b.WriteByte(')')
	}
	return b.String()
}

// Is reports whether the error matches ErrNotFound (a 404 that is not a
// route mismatch), or the sentinel the client attached (ErrAlreadyFinished
// for a 409 on cancel, ErrRouteMismatch for a 404 of an unknown route).
func (e *APIError) Is(target error) bool {
	switch {
	case target == ErrNotFound:
		return e.StatusCode == http.StatusNotFound && !e.routeMismatch
	case e.sentinel != nil:
		return target == e.sentinel
	}
	return false
}

// Retryable reports whether the status is worth retrying after a backoff:
// 408, 429, 500, 502, 503 and 504.
func (e *APIError) Retryable() bool {
	switch e.StatusCode {
	case http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
		http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// Permanent reports whether the status means the same request will never
// succeed: 400, 401, 403, 404, 413 and 422.
func (e *APIError) Permanent() bool {
	switch e.StatusCode {
	case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound,
		http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity:
		return true
	}
	return false
}

// limitError is a size limit hit; it matches ErrBodyTooLarge.
type limitError struct{ msg string }

func (e *limitError) Error() string        { return e.msg }
func (e *limitError) Is(target error) bool { return target == ErrBodyTooLarge }

func limitErrorf(format string, args ...any) error {
	return &limitError{msg: fmt.Sprintf(format, args...)}
}

// RequestError is a failure to get an answer at all: the connection was
// refused or reset, the call timed out, the caller's context ended, or the
// body could not be read or decoded.
type RequestError struct {
	// Method and Path name the endpoint.
	Method, Path string
	// Err is the cause.
	Err error
}

// Error formats the error as "workspace: GET /api/v1/app/me: <cause>".
func (e *RequestError) Error() string {
	return "workspace: " + e.Method + " " + e.Path + ": " + e.Err.Error()
}

// Unwrap returns the cause.
func (e *RequestError) Unwrap() error { return e.Err }

// StreamError is an `error` event sent by the server inside an interaction
// stream (workspace-api.md §5.4, types from §9).
type StreamError struct {
	// Path is the stream's endpoint.
	Path string
	// Type is the error type, e.g. "overloaded_error" or
	// "invalid_request_error"; may be empty.
	Type string
	// Message is the server's message.
	Message string
}

// Error formats the error as
// "workspace: GET /api/v1/app/interaction/x/stream: stream error overloaded_error: <message>".
func (e *StreamError) Error() string {
	s := "workspace: stream error"
	if e.Path != "" {
		s = "workspace: GET " + e.Path + ": stream error"
	}
	if e.Type != "" {
		s += " " + e.Type
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Retryable reports whether the error type asks for a retry with backoff
// (api_error, overloaded_error).
func (e *StreamError) Retryable() bool {
	return e.Type == "api_error" || e.Type == "overloaded_error"
}

// Permanent reports whether the error type means the request must change
// (invalid_request_error, permission_error, request_too_large).
func (e *StreamError) Permanent() bool {
	switch e.Type {
	case "invalid_request_error", "permission_error", "request_too_large", "authentication_error", "not_found_error":
		return true
	}
	return false
}

// IsRetryable reports whether err is transient, so the same call may succeed
// later: a 408, 429, 500, 502, 503 or 504 answer; a connection refused, reset
// or closed early (EOF); a transport timeout or the client's per-call
// timeout; a stream cut before message_stop; a stream error event of type
// api_error or overloaded_error. A cancellation or deadline of the caller's
// own context is not retryable. Beware that a POST which creates something
// may have succeeded before the connection failed.
func IsRetryable(err error) bool {
	if err == nil {
		return false
	}
	if ae, ok := errors.AsType[*APIError](err); ok {
		return ae.Retryable()
	}
	if se, ok := errors.AsType[*StreamError](err); ok {
		return se.Retryable()
	}
	if errors.Is(err, ErrTimeout) || errors.Is(err, ErrStreamIncomplete) {
		return true
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		return true
	}
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		return true
	}
	return false
}

// IsPermanent reports whether err means the request itself is wrong and
// retrying it unchanged cannot help: a 400, 401, 403, 404, 413 or 422 answer,
// or a stream error event of type invalid_request_error, permission_error or
// request_too_large.
func IsPermanent(err error) bool {
	if err == nil {
		return false
	}
	if ae, ok := errors.AsType[*APIError](err); ok {
		return ae.Permanent()
	}
	if se, ok := errors.AsType[*StreamError](err); ok {
		return se.Permanent()
	}
	return false
}

// RetryAfter returns the server's Retry-After delay carried by err, and
// whether the answer had one.
func RetryAfter(err error) (time.Duration, bool) {
	ae, ok := errors.AsType[*APIError](err)
	if !ok || !ae.hasRetryAfter && ae.RetryAfter <= 0 {
		return 0, false
	}
	return ae.RetryAfter, true
}

// newAPIError builds the error for a non-2xx answer from its status, headers
// and (already limited) body. The token, when set, is redacted from the body
// by the rule of internal/secret: wherever it appears when it is at least
// secret.MinLen bytes long, else only after "Bearer " and in URLs.
func newAPIError(method, path string, status int, h http.Header, body []byte, now time.Time, token string) *APIError {
	red := secret.New(token)
	body = red.RedactBytes(body)
	msg, typ, list := decodeErrorBody(body, h.Get("Content-Type"))
	// The token may also hide behind JSON escapes.
	msg = red.Redact(msg)
	for i := range list {
		list[i] = red.Redact(list[i])
	}
	e := &APIError{
		StatusCode: status,
		Method:     method,
		Path:       path,
		Message:    msg,
		Type:       typ,
		Errors:     list,
		Body:       truncate(strings.ToValidUTF8(string(body), "\uFFFD"), maxErrorBody),
	}
	if v := h.Get("Retry-After"); v != "" {
		e.RetryAfter, e.hasRetryAfter = parseRetryAfter(v, now)
	}
	return e
}

// parseRetryAfter reads a Retry-After value: delay seconds (fractions
// accepted) or an HTTP date. Negative delays become zero, long ones are
// capped at 24h.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		switch {
		case f != f || f <= 0: // NaN or negative
			return 0, true
		case f >= maxRetryAfter.Seconds():
			return maxRetryAfter, true
		}
		return time.Duration(f * float64(time.Second)), true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	d := t.Sub(now)
	return min(max(d, 0), maxRetryAfter), true
}

// decodeErrorBody extracts the server's message from an error body. It
// understands the JSON shapes of workspace-api.md §9:
//
//	{"message": "..."}
//	{"error": "..."} and {"error": {"type": "...", "message": "..."}}
//	{"errors": ["...", {"message": "..."}]}
//	{"detail": "..."} and {"detail": [{"loc": [...], "msg": "...", "type": "..."}]}
//
// and falls back to the raw text (the <title> of an HTML page, else the text
// without tags), whitespace-collapsed and truncated to 512 bytes.
func decodeErrorBody(body []byte, contentType string) (msg, typ string, list []string) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) > 0 && (trimmed[0] == '{' || trimmed[0] == '[') {
		var v any
		if err := json.Unmarshal(trimmed, &v); err == nil {
			if msg, typ, list, ok := fromJSONError(v); ok {
				return truncate(msg, maxErrorMessage), truncate(typ, 128), list
			}
		}
	}
	return truncate(plainText(trimmed, contentType), maxErrorMessage), "", nil
}

func fromJSONError(v any) (msg, typ string, list []string, ok bool) {
	switch t := v.(type) {
	case []any: // a bare list of errors
		list = stringsOf(t)
		return strings.Join(list, "; "), "", list, len(list) > 0
	case map[string]any:
		msg = firstString(t, "message", "error_description", "title", "msg")
		switch e := t["error"].(type) {
		case string:
			if msg == "" {
				msg = e
			} else if e != msg {
				typ = e
			}
		case map[string]any:
			typ = firstString(e, "type", "code")
			if msg == "" {
				msg = firstString(e, "message", "msg", "detail")
			}
		}
		if typ == "" {
			typ = firstString(t, "type", "code")
		}
		if errs, ok := t["errors"].([]any); ok {
			list = append(list, stringsOf(errs)...)
		}
		switch d := t["detail"].(type) {
		case string:
			if msg == "" {
				msg = d
			}
		case []any:
			list = append(list, stringsOf(d)...)
		}
		if len(list) > 16 {
			list = list[:16]
		}
		switch {
		case msg == "" && len(list) > 0:
			msg = strings.Join(list, "; ")
		case msg != "" && len(list) > 0:
			var missing []string
			for _, s := range list {
				if !strings.Contains(msg, s) {
					missing = append(missing, s)
				}
			}
			if len(missing) > 0 {
				msg += " (" + strings.Join(missing, "; ") + ")"
			}
		}
		return msg, typ, list, msg != ""
	}
	return "", "", nil, false
}

// stringsOf renders a JSON list of error items: strings as is, objects by
// their message (with the FastAPI "loc" joined in front).
func stringsOf(items []any) []string {
	var out []string
	for _, it := range items {
		var s string
		switch x := it.(type) {
		case string:
			s = x
		case map[string]any:
			s = firstString(x, "message", "msg", "detail", "error")
			if s == "" {
				s = firstString(x, "type", "code")
			}
			var loc []string
			if l, ok := x["loc"].([]any); ok {
				for _, p := range l {
					switch p := p.(type) {
					case string:
						loc = append(loc, p)
					case float64:
						loc = append(loc, strconv.FormatFloat(p, 'f', -1, 64))
					}
				}
			} else if f := firstString(x, "field", "path", "pointer"); f != "" {
				loc = []string{f}
			}
			if len(loc) > 0 && s != "" {
				s = strings.Join(loc, ".") + ": " + s
			}
		}
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, truncate(s, maxErrorMessage))
		}
	}
	return out
}

func firstString(m map[string]any, keys ...string) string {
	for _, k := range keys {
		if s, ok := m[k].(string); ok && strings.TrimSpace(s) != "" {
			return strings.TrimSpace(s)
		}
	}
	return ""
}

// plainText turns a non-JSON body into a one-line message: the <title> of
// an HTML page when there is one, else the text with tags removed.
func plainText(body []byte, contentType string) string {
	s := strings.ToValidUTF8(string(body), "\uFFFD")
	lower := strings.ToLower(s)
	isHTML := strings.Contains(strings.ToLower(contentType), "html") ||
		strings.HasPrefix(lower, "<!doctype html") || strings.HasPrefix(lower, "<html")
	if isHTML {
		if i := strings.Index(lower, "<title"); i >= 0 {
			if j := strings.IndexByte(lower[i:], '>'); j >= 0 {
				rest := s[i+j+1:]
				if k := strings.Index(strings.ToLower(rest), "</title"); k >= 0 {
					if t := collapse(rest[:k]); t != "" {
						return t
					}
				}
			}
		}
		s = stripTags(s)
	}
	return collapse(s)
}

func stripTags(s string) string {
	var b strings.Builder
	in := false
	for _, r := range s {
		switch {
		case r == '<':
			in = true
		case r == '>' && in:
			in = false
			b.WriteByte(' ')
		case !in:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func collapse(s string) string { return strings.Join(strings.Fields(s), " ") }

// truncate cuts s to at most n bytes on a rune boundary, marking the cut
// with an ellipsis.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// snippet renders the start of a body for an error message.
func snippet(body []byte) string {
	return fmt.Sprintf("%q", truncate(collapse(strings.ToValidUTF8(string(body), "\uFFFD")), 120))
}
