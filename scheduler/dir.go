package scheduler

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/hibiken/asynq"

	"github.com/threadmill/threadmill/pipelines"
)

// Loader loads and checks one pipeline file; pipelines.Load with the
// process environment is the usual one. Its error is printed as is, so it
// should name the file, line and column (pipelines.ErrorList does).
type Loader func(path string) (*pipelines.Pipeline, error)

// Entry is a scheduled pipeline: the last good version of its file and its
// parsed schedule.
type Entry struct {
	Pipeline *pipelines.Pipeline
	Schedule *Schedule
	Policy   Policy
	// File is the path the pipeline was loaded from.
	File string
}

// Name returns the pipeline's name.
func (e *Entry) Name() string { return e.Pipeline.Name }

// overlap returns the pipeline's schedule.overlap, skip when unset (a
// pipeline built without Load).
func (e *Entry) overlap() string {
	if s := e.Pipeline.Schedule; s != nil && s.Overlap != "" {
		return s.Overlap
	}
	return pipelines.OverlapSkip
}

// key identifies the entry's version: a change to the file or its schedule
// makes a new key, so the asynq entry is registered anew.
func (e *Entry) key() string { return e.Schedule.Spec() + "\x00" + e.Pipeline.Hash }

// Problem is a pipeline file that could not be (re)loaded. When the file had
// loaded before, its last good version stays scheduled.
type Problem struct {
	File string
	Err  error
	// Kept names the pipeline whose last good version, from an earlier
	// read of this file, stays scheduled; "" when none does.
	Kept string
}

// Error returns the loader's message, which names file:line:col.
func (p Problem) Error() string { return p.Err.Error() }

// Snapshot is the result of one scan of a pipelines directory.
type Snapshot struct {
	// Entries are the scheduled pipelines, sorted by name.
	Entries []*Entry
	// Problems are the files that failed to load, sorted by path.
	Problems []Problem
	// Unscheduled lists the files of valid pipelines without a schedule.
	Unscheduled []string
}

// Dir reads a directory of pipeline files (*.yaml and *.yml, not recursive;
// names starting with "." are ignored). Each Scan re-reads every file and
// reloads those whose content changed; a file that fails to load is reported
// and its last good version stays scheduled; a removed file is dropped. Two
// files declaring the same pipeline name are a problem: the first path in
// lexical order wins.
//
// Dir is an asynq.PeriodicTaskConfigProvider, so it also works with asynq's
// own PeriodicTaskManager.
type Dir struct {
	path string
	load Loader

	mu    sync.Mutex
	files map[string]*fileState
}

type fileState struct {
	sum  string // sha256 of the content last loaded
	good *Entry // last good version, nil when it never loaded or has no schedule
	err  error  // the current version's problem, nil when it loaded
	none bool   // loaded fine but has no schedule
}

// NewDir returns a Dir over path, loading files with load.
func NewDir(path string, load Loader) *Dir {
	return &Dir{path: path, load: load, files: make(map[string]*fileState)}
}

// Path returns the directory.
func (d *Dir) Path() string { return d.path }

// Scan reads the directory once. An error is returned only when the directory
// itself cannot be read; problems with single files are in the snapshot.
func (d *Dir) Scan() (Snapshot, error) {
	des, err := os.ReadDir(d.path)
	if err != nil {
		return Snapshot{}, fmt.Errorf("scheduler: read pipelines directory %s: %w", d.path, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	seen := make(map[string]bool)
	for _, de := range des {
		name := de.Name()
		if strings.HasPrefix(name, ".") || de.IsDir() {
			continue
		}
		if ext := filepath.Ext(name); ext != ".yaml" && ext != ".yml" {
			continue
		}
		path := filepath.Join(d.path, name)
		seen[path] = true
		d.refresh(path)
	}
	for path := range d.files {
		if !seen[path] {
			delete(d.files, path) // removed: unscheduled
		}
	}

	var snap Snapshot
	paths := make([]string, 0, len(d.files))
	for p := range d.files {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	owner := make(map[string]string)
	for _, p := range paths {
		st := d.files[p]
		if st.err != nil {
			pr := Problem{File: p, Err: st.err}
			if st.good != nil {
				pr.Kept = st.good.Name()
			}
			snap.Problems = append(snap.Problems, pr)
		}
		if st.none {
			snap.Unscheduled = append(snap.Unscheduled, p)
		}
		if st.good == nil {
			continue
		}
		name := st.good.Name()
		if first, dup := owner[name]; dup {
			snap.Problems = append(snap.Problems, Problem{File: p, Err: fmt.Errorf("%s: pipeline %q is also defined in %s; this file is not scheduled", p, name, first)})
			continue
		}
		owner[name] = p
		snap.Entries = append(snap.Entries, st.good)
	}
	sortEntries(snap.Entries)
	return snap, nil
}

// refresh reloads path when its content changed since the last scan.
func (d *Dir) refresh(path string) {
	st := d.files[path]
	if st == nil {
		st = &fileState{}
		d.files[path] = st
	}
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			delete(d.files, path) // removed between ReadDir and now
			return
		}
		st.err = fmt.Errorf("%s: %w", path, err)
		return
	}
	h := sha256.Sum256(data)
	sum := hex.EncodeToString(h[:])
	if sum == st.sum {
		return
	}
	st.sum = sum
	p, err := d.load(path)
	if err != nil {
		st.err = err
		return
	}
	if p.Schedule == nil || p.Schedule.Cron == "" {
		st.err, st.good, st.none = nil, nil, true
		return
	}
	e, err := entryOf(p, path)
	if err != nil {
		st.err = fmt.Errorf("%s: %w", path, err)
		return
	}
	st.err, st.good, st.none = nil, e, false
}

func entryOf(p *pipelines.Pipeline, path string) (*Entry, error) {
	s, err := ScheduleOf(p)
	if err != nil {
		return nil, err
	}
	pol, err := ParsePolicy(p.Schedule.Catchup)
	if err != nil {
		return nil, fmt.Errorf("pipeline %q: %w", p.Name, err)
	}
	if p.Hash == "" {
		b, err := json.Marshal(p)
		if err != nil {
			return nil, fmt.Errorf("pipeline %q: %w", p.Name, err)
		}
		h := sha256.Sum256(b)
		p.Hash = hex.EncodeToString(h[:])
	}
	return &Entry{Pipeline: p, Schedule: s, Policy: pol, File: path}, nil
}

// GetConfigs implements asynq.PeriodicTaskConfigProvider: one periodic fire
// task per scheduled pipeline, on DefaultQueue.
func (d *Dir) GetConfigs() ([]*asynq.PeriodicTaskConfig, error) {
	snap, err := d.Scan()
	if err != nil {
		return nil, err
	}
	out := make([]*asynq.PeriodicTaskConfig, 0, len(snap.Entries))
	for _, e := range snap.Entries {
		c, err := fireConfig(e, DefaultQueue, 0)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

var _ asynq.PeriodicTaskConfigProvider = (*Dir)(nil)

func sortEntries(es []*Entry) {
	slices.SortFunc(es, func(a, b *Entry) int { return strings.Compare(a.Name(), b.Name()) })
}
