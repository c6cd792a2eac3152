// Package logging builds the *slog.Logger every threadmill command passes
// down: text or JSON lines, a level, and a redacting handler that masks
// secrets (the Workspace API token) wherever they appear in a record.
//
// Lines about one work item carry the attributes named by the Key*
// constants (pipeline, run, step, item), so a log search for one run or one
// item finds every line about it, whichever worker wrote it.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// Attribute keys shared by every package that logs about runs and items.
const (
	KeyPipeline = "pipeline" // pipeline name
	KeyRun      = "run"      // run id
	KeyStep     = "step"     // step id
	KeyItem     = "item"     // item key within the step
	KeyTask     = "task"     // asynq task id
	KeyAttempt  = "attempt"  // 1-based attempt number of an item
	KeyError    = "err"      // an error value
)

// Format is the encoding of log lines.
type Format string

// Supported formats.
const (
	FormatText Format = "text" // logfmt-like key=value lines (slog.TextHandler)
	FormatJSON Format = "json" // one JSON object per line (slog.JSONHandler)
)

// ParseFormat returns the Format named by s ("text" or "json", any case).
func ParseFormat(s string) (Format, error) {
	switch f := Format(strings.ToLower(strings.TrimSpace(s))); f {
	case FormatText, FormatJSON:
		return f, nil
	}
	return "", fmt.Errorf("unknown log format %q (want text or json)", s)
}

// ParseLevel returns the level named by s: debug, info, warn (or warning) or
// error, in any case, optionally with an offset as slog writes it ("info+2").
func ParseLevel(s string) (slog.Level, error) {
	norm := strings.ToLower(strings.TrimSpace(s))
	if norm == "warning" {
		norm = "warn"
	}
	var l slog.Level
	if norm == "" || l.UnmarshalText([]byte(norm)) != nil {
		return 0, fmt.Errorf("unknown log level %q (want debug, info, warn or error)", s)
	}
	return l, nil
}

// Options configure New. The zero value writes text lines at info level and
// redacts nothing.
type Options struct {
	// Format is the line encoding; default FormatText.
	Format Format
	// Level is the minimum level written; default slog.LevelInfo.
	Level slog.Leveler
	// Secrets are values masked as "[REDACTED]" in the message, in
	// attribute values (strings, errors, byte slices, structs, groups) and
	// in attributes added with Logger.With: wherever they appear when at
	// least MinSecretLen bytes long, else only in Authorization headers and
	// URLs (see NewRedactingHandler). Empty strings are ignored.
	Secrets []string
	// AddSource adds the caller's file:line to each record; default false.
	AddSource bool
	// ReplaceAttr is passed to the slog handler (see slog.HandlerOptions);
	// it sees attributes after redaction. Default nil.
	ReplaceAttr func(groups []string, a slog.Attr) slog.Attr
}

// New returns a logger writing to w as opts say. It fails only on an unknown
// Format.
func New(w io.Writer, opts Options) (*slog.Logger, error) {
	h, err := NewHandler(w, opts)
	if err != nil {
		return nil, err
	}
	return slog.New(h), nil
}

// NewHandler is New's handler, for callers that wrap it further.
func NewHandler(w io.Writer, opts Options) (slog.Handler, error) {
	ho := &slog.HandlerOptions{Level: opts.Level, AddSource: opts.AddSource, ReplaceAttr: opts.ReplaceAttr}
	if ho.Level == nil {
		ho.Level = slog.LevelInfo
	}
	var h slog.Handler
	switch opts.Format {
	case FormatText, "":
		h = slog.NewTextHandler(w, ho)
	case FormatJSON:
		h = slog.NewJSONHandler(w, ho)
	default:
		return nil, fmt.Errorf("unknown log format %q (want text or json)", opts.Format)
	}
	return NewRedactingHandler(h, opts.Secrets...), nil
}

// Discard returns a logger that drops every record, for callers that were
// given no logger.
func Discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// Item returns l with the attributes that identify one work item.
func Item(l *slog.Logger, pipeline, run, step, item string) *slog.Logger {
	return l.With(KeyPipeline, pipeline, KeyRun, run, KeyStep, step, KeyItem, item)
}
