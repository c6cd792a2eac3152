package results

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// journalSuffix ends the file name of a run's journal (see JournalPath).
const journalSuffix = ".journal.jsonl"

// Entry is a run found under a results root: a committed run directory, or
// the journal of a run that was interrupted before its files were written.
type Entry struct {
	// Pipeline and RunID name the run.
	Pipeline, RunID string
	// Dir and Run are the committed run directory and its run.json; empty
	// for an interrupted run.
	Dir string
	Run *Run
	// Journal is the journal of an interrupted run (no directory yet), and
	// JournalItems the items it holds.
	Journal      string
	JournalItems int
	// Modified is when the run's files last changed: run.json's end, or
	// the journal's modification time.
	Modified time.Time
}

// Interrupted reports whether the entry is a journal without a committed run
// directory: a run that stopped before it finished.
func (e *Entry) Interrupted() bool { return e.Run == nil }

// ListRuns lists the runs under root, newest first: every committed run
// directory (root/<pipeline>/<run-id>/run.json) and every journal of an
// interrupted run that has no directory. With pipeline set only that
// pipeline's runs are listed. A run directory whose run.json cannot be read
// is reported in the error (joined, each naming its file) and skipped; the
// other entries are still returned. A missing root lists nothing.
func ListRuns(root, pipeline string) ([]Entry, error) {
	var pipes []string
	if pipeline != "" {
		if err := checkSegment("pipeline name", pipeline); err != nil {
			return nil, err
		}
		pipes = []string{pipeline}
	} else {
		des, err := os.ReadDir(root)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("results: list runs: %w", err)
		}
		for _, de := range des {
			if de.IsDir() && !strings.HasPrefix(de.Name(), ".") {
				pipes = append(pipes, de.Name())
			}
		}
	}
	var out []Entry
	var errs []error
	for _, p := range pipes {
		entries, err := listPipeline(root, p)
		out = append(out, entries...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	slices.SortStableFunc(out, func(a, b Entry) int {
		return cmp.Or(b.sortTime().Compare(a.sortTime()), strings.Compare(b.RunID, a.RunID))
	})
	return out, errors.Join(errs...)
}

// sortTime is when the run started, else when its files last changed.
func (e *Entry) sortTime() time.Time {
	if e.Run != nil && !e.Run.StartedAt.IsZero() {
		return e.Run.StartedAt
	}
	return e.Modified
}

func listPipeline(root, pipeline string) ([]Entry, error) {
	dir := filepath.Join(root, pipeline)
	des, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("results: list runs: %w", err)
	}
	var out []Entry
	var errs []error
	committed := map[string]bool{}
	for _, de := range des {
		name := de.Name()
		if !de.IsDir() || strings.HasPrefix(name, ".") || name == LatestLink {
			continue
		}
		runDir := filepath.Join(dir, name)
		run, err := ReadRun(runDir)
		if errors.Is(err, fs.ErrNotExist) {
			continue // not a run directory
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		committed[name] = true
		out = append(out, Entry{Pipeline: pipeline, RunID: name, Dir: runDir, Run: run, Modified: run.FinishedAt})
	}
	for _, de := range des {
		name := de.Name()
		id, ok := strings.CutSuffix(name, journalSuffix)
		if !ok || de.IsDir() || committed[id] {
			continue
		}
		path := filepath.Join(dir, name)
		e := Entry{Pipeline: pipeline, RunID: id, Journal: path}
		if fi, err := de.Info(); err == nil {
			e.Modified = fi.ModTime()
		}
		for _, err := range ReadJournal(path) {
			if err != nil {
				break
			}
			e.JournalItems++
		}
		out = append(out, e)
	}
	return out, errors.Join(errs...)
}
