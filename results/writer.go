package results

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/threadmill/threadmill/workspace"
)

// File names inside a run directory.
const (
	RunFile     = "run.json"
	ResultsFile = "results.jsonl"
	ErrorsFile  = "errors.jsonl"
	ReportFile  = "report.md"
	// LatestLink is the per-pipeline symlink to the newest committed run.
	LatestLink = "latest"
)

// maxReportFailures bounds the failures listed in report.md (all of them are
// in errors.jsonl), keeping the Writer's memory flat.
const maxReportFailures = 20

// staleTempAge is how old another attempt's temporary directory for the same
// run must be before Commit removes it.
const staleTempAge = time.Hour

// fileWriter is the part of *os.File a Writer uses; tests inject faults.
type fileWriter interface {
	io.Writer
	Sync() error
	Close() error
	Name() string
}

// openFile creates a file for writing; a variable so tests can inject faults.
var openFile = func(name string) (fileWriter, error) {
	return os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
}

// Writer builds one run directory. Add streams items to disk; Commit moves the
// finished directory into place; Abort removes it. Its methods are safe for
// concurrent use. Its memory does not grow with the number of items.
type Writer struct {
	root, pipeline, runID string
	pipeDir, tmpDir       string

	mu       sync.Mutex
	results  *jsonlFile
	errs     *jsonlFile
	steps    map[string]*StepUsage
	order    []string
	counts   map[string]int
	total    int
	usage    workspace.Usage
	retries  int
	reused   int
	saved    int64
	csv      *csvFile // output.csv, nil when not enabled (see EnableCSV)
	files    int      // files added with AddFile
	failures []Item   // the first maxReportFailures failed items, without requests
	failed   int
	body     *reportBody // the report text streamed by AppendReport
	err      error       // the first write error; the Writer is unusable after it
	done     bool        // committed or aborted
}

// Create starts the result directory of a run under root
// (root/pipeline/run-id). Files are written in a hidden temporary directory
// root/pipeline/.run-id.tmp-* until Commit.
func Create(root, pipeline, runID string) (*Writer, error) {
	if err := checkSegment("pipeline name", pipeline); err != nil {
		return nil, err
	}
	if err := checkSegment("run id", runID); err != nil {
		return nil, err
	}
	if root == "" {
		root = "."
	}
	pipeDir := filepath.Join(root, pipeline)
	if err := os.MkdirAll(pipeDir, 0o755); err != nil {
		return nil, fmt.Errorf("results: create %s: %w", pipeDir, err)
	}
	tmp, err := mkdirTemp(pipeDir, "."+runID+".tmp-")
	if err != nil {
		return nil, fmt.Errorf("results: create temporary directory in %s: %w", pipeDir, err)
	}
	w := &Writer{
		root: root, pipeline: pipeline, runID: runID,
		pipeDir: pipeDir, tmpDir: tmp,
		steps:  map[string]*StepUsage{},
		counts: map[string]int{StateSucceeded: 0, StateFailed: 0, StateSkipped: 0},
	}
	if w.results, err = newJSONL(filepath.Join(tmp, ResultsFile)); err == nil {
		w.errs, err = newJSONL(filepath.Join(tmp, ErrorsFile))
	}
	if err != nil {
		_ = w.Abort()
		return nil, err
	}
	return w, nil
}

// Dir returns the directory the run is committed to: root/pipeline/run-id.
func (w *Writer) Dir() string { return filepath.Join(w.pipeDir, w.runID) }

// Add appends an item to results.jsonl, and to errors.jsonl when it failed,
// and adds it to the counts and usage. An unknown state is an error. After a
// write error every later call returns that error.
func (w *Writer) Add(it Item) error {
	switch it.State {
	case StateSucceeded, StateFailed, StateSkipped, StateCanceled:
	default:
		return fmt.Errorf("results: item %s/%s: unknown state %q (want %s, %s, %s or %s)",
			it.Step, it.Key, it.State, StateSucceeded, StateFailed, StateSkipped, StateCanceled)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return fmt.Errorf("results: run %s: Add after Commit or Abort", w.runID)
	}
	if w.err != nil {
		return w.err
	}
	line, err := marshalLine(it)
	if err != nil {
		return fmt.Errorf("results: item %s/%s: %w", it.Step, it.Key, err)
	}
	if err := w.results.write(line); err != nil {
		w.err = err
		return err
	}
	if w.csv != nil {
		if err := w.csv.addRow(it); err != nil {
			w.err = err
			return err
		}
	}
	if it.State == StateFailed {
		if err := w.errs.write(line); err != nil {
			w.err = err
			return err
		}
		w.failed++
		if len(w.failures) < maxReportFailures {
			f := it
			f.Requests, f.Outputs = nil, nil
			w.failures = append(w.failures, f)
		}
	}
	su := w.steps[it.Step]
	if su == nil {
		su = &StepUsage{Step: it.Step, Items: map[string]int{StateSucceeded: 0, StateFailed: 0, StateSkipped: 0}}
		w.steps[it.Step] = su
		w.order = append(w.order, it.Step)
	}
	su.Items[it.State]++
	su.Usage = su.Usage.Add(it.Usage)
	if it.State == StateSucceeded && it.EstimatedTokens > 0 {
		if su.Estimate == nil {
			su.Estimate = &StepEstimate{}
		}
		su.Estimate.add(it)
	}
	w.counts[it.State]++
	w.total++
	w.usage = w.usage.Add(it.Usage)
	if it.ReusedFrom != "" {
		su.Reused++
		w.reused++
		w.saved += it.ReusedUsage.Total()
	}
	if it.Attempts > 1 {
		w.retries += it.Attempts - 1
	}
	return nil
}

// AppendReport adds text to the report step's text in report.md, streamed
// to a file in the run's temporary directory so that memory stays flat
// however long the report. Leading and trailing white space of the whole
// text is dropped, as Commit does with its report argument (which comes
// after it). After a write error every later call returns that error.
func (w *Writer) AppendReport(text string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return fmt.Errorf("results: run %s: AppendReport after Commit or Abort", w.runID)
	}
	if w.err != nil {
		return w.err
	}
	if w.body == nil {
		f, err := openFile(filepath.Join(w.tmpDir, reportBodyFile))
		if err != nil {
			w.err = fmt.Errorf("results: create %s: %w", filepath.Join(w.tmpDir, reportBodyFile), err)
			return w.err
		}
		w.body = &reportBody{jsonlFile: jsonlFile{f: f, bw: bufio.NewWriterSize(f, 64<<10)}}
	}
	if err := w.body.add(text); err != nil {
		w.err = err
		return err
	}
	return nil
}

// Commit completes run (see Run for the fields it computes), writes run.json
// and report.md (report is the report step's text, after what AppendReport streamed), syncs everything to disk
// and renames the directory into place, replacing an older attempt of the
// same run. It then points root/pipeline/latest at the run unless latest
// already names a newer one. It returns the run directory.
//
// A run id reserved (Reserve) by another live run, in another process or in
// this one, is not committed: the error wraps ErrRunBusy and the directory
// in place, if any, is left alone. Commit in the process that holds the
// reservation, or while nobody holds it, goes ahead (holding it meanwhile).
func (w *Writer) Commit(run Run, report string) (string, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return "", fmt.Errorf("results: run %s: Commit after Commit or Abort", w.runID)
	}
	if w.err != nil {
		w.abortLocked()
		return "", fmt.Errorf("results: run %s not committed after an earlier write error: %w", w.runID, w.err)
	}
	run = w.complete(run)
	err := errors.Join(w.results.close(), w.errs.close(), w.csv.close())
	if err == nil {
		err = w.writeFile(RunFile, func(b *bufio.Writer) error {
			enc := json.NewEncoder(b)
			enc.SetIndent("", "  ")
			enc.SetEscapeHTML(false)
			return enc.Encode(run)
		})
	}
	if err == nil {
		err = w.writeReport(&run, report)
	}
	if err == nil {
		err = syncDir(w.tmpDir)
	}
	if err != nil {
		w.abortLocked()
		return "", err
	}
	// A run id held by another live run (an embedded run in another
	// process, or another run of this one) is that run's directory to write.
	if lock := LockPath(w.root, w.pipeline, w.runID); !heldHere(lock) {
		r, err := Reserve(w.root, w.pipeline, w.runID)
		if err != nil {
			w.abortLocked()
			return "", fmt.Errorf("results: run %s not committed: %w", w.runID, err)
		}
		defer r.Release()
	}
	final := w.Dir()
	if err := replaceDir(w.tmpDir, final); err != nil {
		w.abortLocked()
		return "", fmt.Errorf("results: move %s into place: %w", final, err)
	}
	w.done = true
	if err := syncDir(w.pipeDir); err != nil {
		return final, err
	}
	if err := w.updateLatest(&run); err != nil {
		return final, err
	}
	w.removeStaleTemps()
	return final, nil
}

// Abort closes and removes the temporary directory. It is a no-op after
// Commit, so `defer w.Abort()` is the usual pattern.
func (w *Writer) Abort() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return nil
	}
	return w.abortLocked()
}

func (w *Writer) abortLocked() error {
	w.done = true
	var errs []error
	for _, f := range []*jsonlFile{w.results, w.errs} {
		if f != nil {
			errs = append(errs, f.close())
		}
	}
	errs = append(errs, w.csv.close())
	if w.body != nil {
		errs = append(errs, w.body.close())
	}
	if err := os.RemoveAll(w.tmpDir); err != nil {
		errs = append(errs, fmt.Errorf("results: remove %s: %w", w.tmpDir, err))
	}
	return errors.Join(errs...)
}

// complete fills the computed fields of run from the tallies.
func (w *Writer) complete(run Run) Run {
	run.Pipeline, run.RunID = w.pipeline, w.runID
	run.Total = w.total
	run.Counts = make(map[string]int, len(w.counts))
	for k, v := range w.counts {
		run.Counts[k] = v
	}
	run.Usage = w.usage
	run.Reused, run.TokensSaved = w.reused, w.saved
	run.Files = w.files
	if run.Retries == 0 {
		run.Retries = w.retries
	}
	var steps []StepUsage
	seen := map[string]bool{}
	emit := func(name string) {
		if seen[name] {
			return
		}
		seen[name] = true
		if su := w.steps[name]; su != nil {
			c := *su
			if c.Estimate != nil {
				e := *c.Estimate
				e.Ratio = math.Round(float64(e.UsedTokens)/float64(e.EstimatedTokens)*1000) / 1000
				c.Estimate = &e
			}
			steps = append(steps, c)
		} else {
			steps = append(steps, StepUsage{Step: name, Items: map[string]int{StateSucceeded: 0, StateFailed: 0, StateSkipped: 0}})
		}
	}
	for _, s := range run.Steps {
		emit(s.Step)
	}
	for _, name := range w.order {
		emit(name)
	}
	run.Steps = steps
	if run.Status == "" {
		run.Status = StatusSucceeded
		if w.counts[StateFailed]+w.counts[StateSkipped] > 0 {
			run.Status = StatusFailed
		}
		if w.counts[StateCanceled] > 0 {
			run.Status = StatusCanceled
		}
	}
	return run
}

// writeReport writes report.md, with the text AppendReport streamed (read
// back from its file, which is then removed) followed by report.
func (w *Writer) writeReport(run *Run, report string) error {
	var body io.Reader
	if w.body != nil {
		path := filepath.Join(w.tmpDir, reportBodyFile)
		defer os.Remove(path)
		if err := w.body.close(); err != nil {
			return err
		}
		if w.body.started {
			f, err := os.Open(path)
			if err != nil {
				return fmt.Errorf("results: read %s: %w", path, err)
			}
			defer f.Close()
			body = f
		}
	}
	return w.writeFile(ReportFile, func(b *bufio.Writer) error {
		return renderReport(b, run, body, report, w.failures, w.failed)
	})
}

// writeFile writes a file of the run directory through a buffer and syncs it.
func (w *Writer) writeFile(name string, fill func(*bufio.Writer) error) error {
	path := filepath.Join(w.tmpDir, name)
	f, err := openFile(path)
	if err != nil {
		return fmt.Errorf("results: create %s: %w", path, err)
	}
	b := bufio.NewWriterSize(f, 64<<10)
	if err := fill(b); err != nil {
		_ = f.Close()
		return fmt.Errorf("results: write %s: %w", path, err)
	}
	if err := b.Flush(); err != nil {
		_ = f.Close()
		return fmt.Errorf("results: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("results: sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("results: close %s: %w", path, err)
	}
	return nil
}

// updateLatest points pipeDir/latest at this run, atomically (a temporary
// symlink renamed over the old one), unless latest names a run whose fire
// time (or start time) is later than this one's: a backfill of an old week
// does not move latest backwards.
func (w *Writer) updateLatest(run *Run) error {
	link := filepath.Join(w.pipeDir, LatestLink)
	if cur, err := os.Readlink(link); err == nil && cur != w.runID {
		if other, err := ReadRun(filepath.Join(w.pipeDir, cur)); err == nil && runTime(other).After(runTime(run)) {
			return nil
		}
	}
	tmp := filepath.Join(w.pipeDir, fmt.Sprintf(".%s.tmp-%d", LatestLink, time.Now().UnixNano()))
	if err := os.Symlink(w.runID, tmp); err != nil {
		return fmt.Errorf("results: create %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, link); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("results: update %s: %w", link, err)
	}
	return syncDir(w.pipeDir)
}

func runTime(r *Run) time.Time {
	if r.FireTime != nil && !r.FireTime.IsZero() {
		return *r.FireTime
	}
	return r.StartedAt
}

// removeStaleTemps removes temporary directories that earlier, crashed
// attempts left for this run. Recent ones may belong to an attempt still
// running elsewhere and are kept.
func (w *Writer) removeStaleTemps() {
	matches, _ := filepath.Glob(filepath.Join(w.pipeDir, "."+w.runID+".tmp-*"))
	for _, m := range matches {
		if fi, err := os.Lstat(m); err == nil && time.Since(fi.ModTime()) > staleTempAge {
			_ = os.RemoveAll(m)
		}
	}
}

// mkdirTemp is os.MkdirTemp with mode 0755 (less the umask) instead of 0700:
// the directory becomes the run directory, an ordinary one.
func mkdirTemp(dir, prefix string) (string, error) {
	for range 100 {
		name := filepath.Join(dir, prefix+strconv.FormatUint(rand.Uint64(), 36))
		err := os.Mkdir(name, 0o755)
		if err == nil {
			return name, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return "", err
		}
	}
	return "", fmt.Errorf("no free temporary name in %s", dir)
}

// ReadRun reads dir/run.json.
func ReadRun(dir string) (*Run, error) {
	path := filepath.Join(dir, RunFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("results: %w", err)
	}
	var r Run
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("results: %s: %w", path, err)
	}
	return &r, nil
}

// LatestDir returns the directory root/pipeline/latest points to, or an error
// wrapping fs.ErrNotExist when the pipeline has no committed run.
func LatestDir(root, pipeline string) (string, error) {
	link := filepath.Join(root, pipeline, LatestLink)
	target, err := os.Readlink(link)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("results: no committed run of %s under %s: %w", pipeline, root, fs.ErrNotExist)
		}
		return "", fmt.Errorf("results: %w", err)
	}
	return filepath.Join(root, pipeline, target), nil
}

// checkSegment rejects names that are not a single, visible path segment.
func checkSegment(what, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("results: empty %s", what)
	case len(s) > 200:
		return fmt.Errorf("results: %s %.40q... is longer than 200 bytes", what, s)
	case s == "." || s == ".." || strings.HasPrefix(s, "."):
		return fmt.Errorf("results: %s %q must not start with a dot", what, s)
	case strings.ContainsAny(s, "/\\\x00"):
		return fmt.Errorf("results: %s %q must not contain a slash, backslash or NUL", what, s)
	case s == LatestLink:
		return fmt.Errorf("results: %s %q is reserved", what, s)
	}
	return nil
}

// syncDir fsyncs a directory so renames and new entries in it are durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("results: open %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return fmt.Errorf("results: sync %s: %w", dir, err)
	}
	return nil
}

// jsonlFile is a buffered JSON-lines file.
type jsonlFile struct {
	f      fileWriter
	bw     *bufio.Writer
	closed bool
}

func newJSONL(path string) (*jsonlFile, error) {
	f, err := openFile(path)
	if err != nil {
		return nil, fmt.Errorf("results: create %s: %w", path, err)
	}
	return &jsonlFile{f: f, bw: bufio.NewWriterSize(f, 64<<10)}, nil
}

func (j *jsonlFile) write(line []byte) error {
	if _, err := j.bw.Write(line); err != nil {
		return fmt.Errorf("results: write %s: %w", j.f.Name(), err)
	}
	return nil
}

// close flushes, syncs and closes the file; closing twice is a no-op.
func (j *jsonlFile) close() error {
	if j.closed {
		return nil
	}
	j.closed = true
	var err error
	if ferr := j.bw.Flush(); ferr != nil {
		err = fmt.Errorf("results: write %s: %w", j.f.Name(), ferr)
	} else if serr := j.f.Sync(); serr != nil {
		err = fmt.Errorf("results: sync %s: %w", j.f.Name(), serr)
	}
	if cerr := j.f.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("results: close %s: %w", j.f.Name(), cerr)
	}
	return err
}

// reportBodyFile holds the report text AppendReport streams, in the run's
// temporary directory until Commit copies it into report.md.
const reportBodyFile = ".report-body.md"

// reportBody is the file AppendReport writes: the concatenation of its
// texts without the leading and trailing white space of the whole. White
// space at the end of a text is held back until more text follows.
type reportBody struct {
	jsonlFile
	started bool
	held    []byte
}

func (r *reportBody) add(text string) error {
	if !r.started {
		text = strings.TrimLeftFunc(text, unicode.IsSpace)
		if text == "" {
			return nil
		}
		r.started = true
	}
	trimmed := strings.TrimRightFunc(text, unicode.IsSpace)
	if trimmed == "" {
		r.held = append(r.held, text...)
		return nil
	}
	if len(r.held) > 0 {
		if err := r.write(r.held); err != nil {
			return err
		}
		r.held = r.held[:0]
	}
	if err := r.write([]byte(trimmed)); err != nil {
		return err
	}
	r.held = append(r.held, text[len(trimmed):]...)
	return nil
}

// marshalLine encodes an item as one JSON line, HTML characters unescaped.
func marshalLine(it Item) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(it); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// add counts a succeeded item with an estimate.
func (e *StepEstimate) add(it Item) {
	e.Items++
	e.EstimatedTokens += it.EstimatedTokens
	e.UsedTokens += it.Usage.Total()
	if it.Unsized {
		e.Unsized++
	}
}
