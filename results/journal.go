package results

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"path/filepath"
	"sync"
)

// JournalPath returns where the embedded runner keeps the journal of a run:
// root/pipeline/run-id.journal.jsonl, beside the run directory.
func JournalPath(root, pipeline, runID string) string {
	return filepath.Join(root, pipeline, runID+".journal.jsonl")
}

// Journal is an append-only JSON-lines file of finished items. Each Append
// is a single write(2) of one whole line, so a process killed at any moment
// (SIGKILL included) leaves every appended line intact; at most a line cut
// by a machine crash is lost, and opening the file drops it. Its methods are
// safe for concurrent use.
type Journal struct {
	mu      sync.Mutex
	f       *os.File
	path    string
	prepare func() error
	closed  bool
	created bool // the file was opened
}

// NewJournal returns the journal at path without touching the disk: its
// first Append runs prepare (when not nil; the embedded runner writes the
// run's resume metadata there), then opens the file as OpenJournal does. A
// run that finishes no item therefore leaves no journal behind. A prepare
// that fails fails that Append, and the next Append tries again.
func NewJournal(path string, prepare func() error) *Journal {
	return &Journal{path: path, prepare: prepare}
}

// OpenJournal opens (creating it and its directory when needed) the journal at
// path for appending. A torn last line, left by a crash in the middle of a
// write, is cut off first so that appends start on a line of their own.
func OpenJournal(path string) (*Journal, error) {
	f, err := openJournalFile(path)
	if err != nil {
		return nil, err
	}
	return &Journal{f: f, path: path, created: true}, nil
}

func openJournalFile(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("results: journal %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("results: journal %s: %w", path, err)
	}
	end, err := completeLength(f)
	if err == nil {
		err = f.Truncate(end)
	}
	if err == nil {
		_, err = f.Seek(end, io.SeekStart)
	}
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("results: journal %s: %w", path, err)
	}
	return f, nil
}

// completeLength returns the length of f up to and including its last newline.
func completeLength(f *os.File) (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	size := fi.Size()
	buf := make([]byte, 4096)
	for end := size; end > 0; {
		start := max(0, end-int64(len(buf)))
		n, err := f.ReadAt(buf[:end-start], start)
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			return start + int64(i) + 1, nil
		}
		end = start
	}
	return 0, nil
}

// Path returns the journal's file name.
func (j *Journal) Path() string { return j.path }

// Append writes one item as one line.
func (j *Journal) Append(it Item) error {
	line, err := marshalLine(it)
	if err != nil {
		return fmt.Errorf("results: journal %s: item %s/%s: %w", j.path, it.Step, it.Key, err)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return fmt.Errorf("results: journal %s is closed", j.path)
	}
	if j.f == nil {
		if j.prepare != nil {
			if err := j.prepare(); err != nil {
				return fmt.Errorf("results: journal %s: %w", j.path, err)
			}
			j.prepare = nil
		}
		if j.f, err = openJournalFile(j.path); err != nil {
			return err
		}
		j.created = true
	}
	if _, err := j.f.Write(line); err != nil {
		return fmt.Errorf("results: journal %s: %w", j.path, err)
	}
	return nil
}

// Sync flushes the journal to stable storage.
func (j *Journal) Sync() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return nil
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("results: journal %s: %w", j.path, err)
	}
	return nil
}

// Created reports whether the journal's file exists: OpenJournal, or an
// Append to a NewJournal.
func (j *Journal) Created() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.created
}

// Close syncs and closes the journal; closing twice is a no-op. A NewJournal
// never appended to stays without a file.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.closed = true
	if j.f == nil {
		return nil
	}
	f := j.f
	j.f = nil
	err := f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("results: journal %s: %w", j.path, err)
	}
	return nil
}

// ReadJournal yields the items of the journal at path in order, streaming.
// A missing file is an error wrapping fs.ErrNotExist. A malformed line is
// yielded as an error naming path:line, and reading goes on; a last line
// without its newline is an unfinished append and is ignored. An item may
// appear more than once (a retried append): callers key on Item.Key.
func ReadJournal(path string) iter.Seq2[Item, error] {
	return readItemLines(path, "journal", true)
}

// ReadItems yields the items of a committed results.jsonl or errors.jsonl
// in order, streaming, for programs that consume a run's results. A missing
// file is an error wrapping fs.ErrNotExist; a malformed line, an item
// without a key, or a last line without its newline (the file was not
// written by a committed run) is yielded as an error naming path:line.
func ReadItems(path string) iter.Seq2[Item, error] {
	return readItemLines(path, "items", false)
}

// readItemLines yields one Item per JSON line of path; what names the file
// kind in errors, and torn says whether a last line without a newline is an
// unfinished append to ignore (a journal) or an error (a committed file).
func readItemLines(path, what string, torn bool) iter.Seq2[Item, error] {
	return func(yield func(Item, error) bool) {
		f, err := os.Open(path)
		if err != nil {
			yield(Item{}, fmt.Errorf("results: %s: %w", what, err))
			return
		}
		defer f.Close()
		decodeItemLines(f, path, what, torn, yield)
	}
}

// ReadItemsFrom is ReadItems over an open results.jsonl or errors.jsonl
// (for a reader that opened it under an os.Root); name names it in errors.
func ReadItemsFrom(r io.Reader, name string) iter.Seq2[Item, error] {
	return func(yield func(Item, error) bool) {
		decodeItemLines(r, name, "items", false, yield)
	}
}

// decodeItemLines yields one Item per JSON line of f, named path in errors.
func decodeItemLines(f io.Reader, path, what string, torn bool, yield func(Item, error) bool) {
	r := bufio.NewReaderSize(f, 64<<10)
	for n := 1; ; n++ {
		line, err := r.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			if !torn && len(bytes.TrimSpace(line)) > 0 {
				yield(Item{}, fmt.Errorf("results: %s %s:%d: last line has no newline (file not complete)", what, path, n))
			}
			return
		}
		if err != nil {
			yield(Item{}, fmt.Errorf("results: %s %s:%d: %w", what, path, n, err))
			return
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		var it Item
		if err := json.Unmarshal(line, &it); err != nil {
			if !yield(Item{}, fmt.Errorf("results: %s %s:%d: %w", what, path, n, err)) {
				return
			}
			continue
		}
		if it.Key == "" {
			if !yield(Item{}, fmt.Errorf("results: %s %s:%d: item without a key", what, path, n)) {
				return
			}
			continue
		}
		if !yield(it, nil) {
			return
		}
	}
}
