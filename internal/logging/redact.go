package logging

import (
	"context"
	"encoding"
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/threadmill/threadmill/internal/secret"
)

// Redacted replaces a secret in log output.
const Redacted = secret.Mask

// MinSecretLen is the length from which a secret is masked wherever it
// appears; a shorter one is masked only in Authorization headers and URLs
// (see package internal/secret).
const MinSecretLen = secret.MinLen

// RedactingHandler masks secret values in every record before passing it to
// the next handler. Masking happens on values, before encoding, so a secret
// is caught whatever the output format escapes.
type RedactingHandler struct {
	next slog.Handler
	red  *secret.Redactor
}

var _ slog.Handler = (*RedactingHandler)(nil)

// NewRedactingHandler wraps next so that secrets are replaced by Redacted:
// a secret of MinSecretLen bytes or more wherever it occurs, a shorter one
// only where it is a credential (after "Bearer ", in a URL's userinfo, as a
// token=, access_token=, api_key=... query value), so that a test token
// such as "x" does not mangle every word holding an x. Empty secrets are
// ignored; with none left, next is returned unchanged.
func NewRedactingHandler(next slog.Handler, secrets ...string) slog.Handler {
	red := secret.New(secrets...)
	if red == nil {
		return next
	}
	return &RedactingHandler{next: next, red: red}
}

// Enabled implements slog.Handler.
func (h *RedactingHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

// Handle implements slog.Handler.
func (h *RedactingHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, h.redactString(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.redactAttr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

// WithAttrs implements slog.Handler.
func (h *RedactingHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		red[i] = h.redactAttr(a)
	}
	return &RedactingHandler{next: h.next.WithAttrs(red), red: h.red}
}

// WithGroup implements slog.Handler.
func (h *RedactingHandler) WithGroup(name string) slog.Handler {
	return &RedactingHandler{next: h.next.WithGroup(h.redactString(name)), red: h.red}
}

func (h *RedactingHandler) redactString(s string) string { return h.red.Redact(s) }

// masked returns s redacted, and whether that changed it.
func (h *RedactingHandler) masked(s string) (string, bool) {
	red := h.red.Redact(s)
	return red, red != s
}

func (h *RedactingHandler) redactAttr(a slog.Attr) slog.Attr {
	a.Key = h.redactString(a.Key)
	a.Value = h.redactValue(a.Value)
	return a
}

func (h *RedactingHandler) redactValue(v slog.Value) slog.Value {
	v = v.Resolve()
	switch v.Kind() {
	case slog.KindString:
		if red, ok := h.masked(v.String()); ok {
			return slog.StringValue(red)
		}
		return v
	case slog.KindGroup:
		attrs := v.Group()
		red := make([]slog.Attr, len(attrs))
		for i, a := range attrs {
			red[i] = h.redactAttr(a)
		}
		return slog.GroupValue(red...)
	case slog.KindAny:
		return h.redactAny(v)
	default: // numbers, bools, times, durations cannot carry a secret
		return v
	}
}

// redactAny checks the forms in which the handlers may print an arbitrary
// value (its error text, its text marshaling, fmt's %+v and its JSON
// encoding) and replaces the
// value by a masked string when any of them holds a secret.
func (h *RedactingHandler) redactAny(v slog.Value) slog.Value {
	x := v.Any()
	switch t := x.(type) {
	case nil:
		return v
	case error:
		if red, ok := h.masked(t.Error()); ok {
			return slog.StringValue(red)
		}
		return v
	case []byte:
		if red, ok := h.masked(string(t)); ok {
			return slog.StringValue(red)
		}
		return v
	}
	if tm, ok := x.(encoding.TextMarshaler); ok {
		if b, err := tm.MarshalText(); err == nil {
			if red, ok := h.masked(string(b)); ok {
				return slog.StringValue(red)
			}
		}
	}
	if red, ok := h.masked(fmt.Sprintf("%+v", x)); ok {
		return slog.StringValue(red)
	}
	if b, err := json.Marshal(x); err == nil {
		if red, ok := h.masked(string(b)); ok {
			return slog.StringValue(red)
		}
	}
	return v
}
