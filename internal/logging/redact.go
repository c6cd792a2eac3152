package logging

import (
	"context"
	"encoding"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
)

// Redacted replaces a secret in log output.
const Redacted = "[REDACTED]"

// RedactingHandler masks secret values in every record before passing it to
// the next handler. Masking happens on values, before encoding, so a secret
// is caught whatever the output format escapes.
type RedactingHandler struct {
	next     slog.Handler
	replacer *strings.Replacer
	secrets  []string
}

var _ slog.Handler = (*RedactingHandler)(nil)

// NewRedactingHandler wraps next so that every occurrence of any of secrets
// is replaced by Redacted. Empty secrets are ignored; with none left, next is
// returned unchanged.
func NewRedactingHandler(next slog.Handler, secrets ...string) slog.Handler {
	var kept []string
	for _, s := range secrets {
		if s != "" {
			kept = append(kept, s)
		}
	}
	if len(kept) == 0 {
		return next
	}
	// Longest first, so a secret that contains another is masked whole.
	for i := 1; i < len(kept); i++ {
		for j := i; j > 0 && len(kept[j]) > len(kept[j-1]); j-- {
			kept[j], kept[j-1] = kept[j-1], kept[j]
		}
	}
	pairs := make([]string, 0, 2*len(kept))
	for _, s := range kept {
		pairs = append(pairs, s, Redacted)
	}
	return &RedactingHandler{next: next, replacer: strings.NewReplacer(pairs...), secrets: kept}
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
	return &RedactingHandler{next: h.next.WithAttrs(red), replacer: h.replacer, secrets: h.secrets}
}

// WithGroup implements slog.Handler.
func (h *RedactingHandler) WithGroup(name string) slog.Handler {
	return &RedactingHandler{next: h.next.WithGroup(h.redactString(name)), replacer: h.replacer, secrets: h.secrets}
}

func (h *RedactingHandler) contains(s string) bool {
	for _, sec := range h.secrets {
		if strings.Contains(s, sec) {
			return true
		}
	}
	return false
}

func (h *RedactingHandler) redactString(s string) string {
	if !h.contains(s) {
		return s
	}
	return h.replacer.Replace(s)
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
		if s := v.String(); h.contains(s) {
			return slog.StringValue(h.replacer.Replace(s))
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
		if s := t.Error(); h.contains(s) {
			return slog.StringValue(h.replacer.Replace(s))
		}
		return v
	case []byte:
		if s := string(t); h.contains(s) {
			return slog.StringValue(h.replacer.Replace(s))
		}
		return v
	}
	if tm, ok := x.(encoding.TextMarshaler); ok {
		if b, err := tm.MarshalText(); err == nil && h.contains(string(b)) {
			return slog.StringValue(h.replacer.Replace(string(b)))
		}
	}
	if s := fmt.Sprintf("%+v", x); h.contains(s) {
		return slog.StringValue(h.replacer.Replace(s))
	}
	if b, err := json.Marshal(x); err == nil && h.contains(string(b)) {
		return slog.StringValue(h.replacer.Replace(string(b)))
	}
	return v
}
