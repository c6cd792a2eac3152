package runstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// recordRefPrefix starts the value a store with RecordFiles keeps in Redis
// instead of an item record: "@<offset>+<length>" in the run's record file.
// A record itself is a JSON object, so it never starts with '@'.
const recordRefPrefix = "@"

// RecordFiles keeps item records in append-only files on the local disk,
// one per run, and lets Redis hold only their places: the embedded default
// keeps its Redis in the process's memory, and a run's records (requests
// and outputs) are most of what it would hold. Give it to a store with
// WithRecordFiles, and to no other: the places are valid only in this
// process, which must be the only one writing the run's records (the
// embedded default's Redis lives and dies with it). Its methods are safe
// for concurrent use.
type RecordFiles struct {
	dir string

	mu    sync.Mutex
	files map[string]*recordFile
	err   error // Close's
}

type recordFile struct {
	mu   sync.Mutex
	f    *os.File
	size int64
}

// NewRecordFiles keeps record files in dir (created when needed), named
// ".<run id>.records". A file left there by an earlier process for the same
// run is replaced at its first write.
func NewRecordFiles(dir string) *RecordFiles {
	return &RecordFiles{dir: dir, files: map[string]*recordFile{}}
}

// WithRecordFiles makes the store keep item records in rf's files and only
// their places in Redis (see RecordFiles).
func WithRecordFiles(rf *RecordFiles) Option {
	return func(s *Store) { s.records = rf }
}

// Path is the record file of run runID.
func (rf *RecordFiles) Path(runID string) string {
	return filepath.Join(rf.dir, "."+runID+".records")
}

func (rf *RecordFiles) file(runID string, create bool) (*recordFile, error) {
	rf.mu.Lock()
	defer rf.mu.Unlock()
	if rf.files == nil {
		return nil, fmt.Errorf("runstore: record file of run %s: closed", runID)
	}
	if f := rf.files[runID]; f != nil || !create {
		return f, nil
	}
	if err := os.MkdirAll(rf.dir, 0o755); err != nil {
		return nil, fmt.Errorf("runstore: record file of run %s: %w", runID, err)
	}
	f, err := os.OpenFile(rf.Path(runID), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("runstore: record file of run %s: %w", runID, err)
	}
	r := &recordFile{f: f}
	rf.files[runID] = r
	return r, nil
}

// put appends record b of run runID and returns its place.
func (rf *RecordFiles) put(runID string, b []byte) (string, error) {
	r, err := rf.file(runID, true)
	if err != nil {
		return "", err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	off := r.size
	if _, err := r.f.WriteAt(b, off); err != nil {
		return "", fmt.Errorf("runstore: write %s: %w", r.f.Name(), err)
	}
	r.size += int64(len(b))
	return recordRefPrefix + strconv.FormatInt(off, 10) + "+" + strconv.Itoa(len(b)), nil
}

// get reads the record at place ref of run runID.
func (rf *RecordFiles) get(runID, ref string) ([]byte, error) {
	offs, lens, ok := strings.Cut(strings.TrimPrefix(ref, recordRefPrefix), "+")
	off, err1 := strconv.ParseInt(offs, 10, 64)
	n, err2 := strconv.Atoi(lens)
	if !ok || err1 != nil || err2 != nil || off < 0 || n < 0 {
		return nil, fmt.Errorf("runstore: run %s: malformed record place %q", runID, ref)
	}
	r, err := rf.file(runID, false)
	if err != nil {
		return nil, err
	}
	if r == nil {
		return nil, fmt.Errorf("runstore: run %s: record %s is in a record file this process did not write (%s)", runID, ref, rf.Path(runID))
	}
	b := make([]byte, n)
	if _, err := r.f.ReadAt(b, off); err != nil {
		return nil, fmt.Errorf("runstore: read %s at %d: %w", r.f.Name(), off, err)
	}
	return b, nil
}

// Close closes and removes every record file; the store must not be used
// afterwards. Closing twice returns the first result.
func (rf *RecordFiles) Close() error {
	rf.mu.Lock()
	defer rf.mu.Unlock()
	if rf.files == nil {
		return rf.err
	}
	var errs []error
	for _, r := range rf.files {
		errs = append(errs, r.f.Close(), os.Remove(r.f.Name()))
	}
	rf.files = nil
	rf.err = errors.Join(errs...)
	return rf.err
}

// stash returns what Redis keeps of value b (a JSON document) of run runID:
// b itself, or with RecordFiles its place in the run's record file.
func (s *Store) stash(runID string, b []byte) ([]byte, error) {
	if s.records == nil {
		return b, nil
	}
	ref, err := s.records.put(runID, b)
	return []byte(ref), err
}

// unstash returns the value whose stash Redis kept as v (what names it,
// for errors).
func (s *Store) unstash(runID, what string, v []byte) ([]byte, error) {
	if !strings.HasPrefix(string(v), recordRefPrefix) {
		return v, nil
	}
	if s.records == nil {
		return nil, fmt.Errorf("runstore: run %s: %s is kept in the record file of the process that wrote it (the embedded default), not in Redis", runID, what)
	}
	return s.records.get(runID, string(v))
}
