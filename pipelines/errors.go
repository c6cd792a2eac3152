package pipelines

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Error is one problem in a pipeline file, located at a line and column
// (1-based; 0 when unknown).
type Error struct {
	File string `json:"file"`
	Line int    `json:"line"`
	Col  int    `json:"col"`
	Msg  string `json:"message"`
}

// Error formats the problem as "file:line:col: msg", the shape editors and
// CI annotations understand.
func (e *Error) Error() string {
	switch {
	case e.Line > 0 && e.Col > 0:
		return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
	case e.Line > 0:
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	default:
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	}
}

// ErrorList is every problem found in a file, sorted by position. Load and
// Parse return it (as error) when a file does not pass its checks.
type ErrorList []*Error

// Error joins the problems, one per line.
func (l ErrorList) Error() string {
	msgs := make([]string, len(l))
	for i, e := range l {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// Unwrap exposes each problem to errors.Is and errors.As.
func (l ErrorList) Unwrap() []error {
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errs
}

// sortErrors orders problems by file, line, column, then message, and drops
// exact duplicates.
func sortErrors(l ErrorList) ErrorList {
	slices.SortStableFunc(l, func(a, b *Error) int {
		return cmp.Or(
			cmp.Compare(a.File, b.File),
			cmp.Compare(a.Line, b.Line),
			cmp.Compare(a.Col, b.Col),
			cmp.Compare(a.Msg, b.Msg),
		)
	})
	return slices.CompactFunc(l, func(a, b *Error) bool { return *a == *b })
}

// pos is a position in the file.
type pos struct{ line, col int }

// errs collects the problems of one file.
type errs struct {
	file string
	list ErrorList
}

func (e *errs) add(p pos, format string, args ...any) {
	e.list = append(e.list, &Error{File: e.file, Line: p.line, Col: p.col, Msg: fmt.Sprintf(format, args...)})
}

func (e *errs) err() error {
	if len(e.list) == 0 {
		return nil
	}
	return sortErrors(e.list)
}
