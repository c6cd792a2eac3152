package webui

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"slices"
	"strconv"
	"time"

	"github.com/threadmill/threadmill/internal/runlist"
	"github.com/threadmill/threadmill/results"
	"github.com/threadmill/threadmill/runstore"
	"github.com/threadmill/threadmill/scheduler"
	"github.com/threadmill/threadmill/workspace"
)

// runFiles are the files of a run directory the UI links to and serves;
// no other name is ever served.
var runFiles = []string{results.ReportFile, results.ResultsFile, results.ErrorsFile, results.RunFile}

// maxReportBytes bounds the report.md rendered into a page.
const maxReportBytes = 4 << 20

// page is what every page's template sees.
type page struct {
	Title string
	// Nav is the active navigation entry: "runs" or "schedules".
	Nav string
	// Actions says the actions are on; LoggedIn that this browser may
	// use them, with CSRF in its forms.
	Actions  bool
	LoggedIn bool
	CSRF     string
	// Live is true when the page shows runs whose progress still moves.
	Live bool
	// Here is the page's path (with the prefix), for the login form.
	Here string
}

// runsView is the runs page.
type runsView struct {
	page
	Rows      []*runlist.Row
	Pipelines []string
	Statuses  []string
	Pipeline  string
	Status    string
	// Total is the number of runs before filtering.
	Total    int
	Problems []string
}

// statusChoices are the statuses the runs page filters on.
var statusChoices = []string{
	runstore.StatusPending, runstore.StatusRunning, runstore.StatusFinalizing,
	runstore.StatusSucceeded, runstore.StatusFailed, runstore.StatusStopped,
	runstore.StatusCanceled, runstore.StatusError, runlist.StatusInterrupted,
}

func (s *Server) runsPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	v := runsView{page: s.page(r, "Runs", "runs"), Pipeline: q.Get("pipeline"), Status: q.Get("status"), Statuses: statusChoices}
	if v.Pipeline != "" {
		if err := checkSegment(v.Pipeline); err != nil {
			s.fail(w, r, http.StatusBadRequest, "Bad pipeline filter: "+err.Error()+".")
			return
		}
	}
	if v.Status != "" && !slices.Contains(statusChoices, v.Status) {
		s.fail(w, r, http.StatusBadRequest, fmt.Sprintf("Bad status filter %q: pick one of the list.", v.Status))
		return
	}
	rows, ferr, serr := runlist.List(r.Context(), s.opts.Root, "", s.opts.Store, s.opts.Now())
	for _, err := range []error{ferr, serr} {
		if err != nil {
			v.Problems = append(v.Problems, err.Error())
		}
	}
	v.Total = len(rows)
	for _, row := range rows {
		if !slices.Contains(v.Pipelines, row.Pipeline) {
			v.Pipelines = append(v.Pipelines, row.Pipeline)
		}
		if (v.Pipeline == "" || row.Pipeline == v.Pipeline) && (v.Status == "" || row.Status == v.Status) {
			v.Rows = append(v.Rows, row)
			v.Live = v.Live || row.Live()
		}
	}
	slices.Sort(v.Pipelines)
	s.render(w, r, http.StatusOK, "runs", &v)
}

// runView is one run's page.
type runView struct {
	page
	Row *runlist.Row
	// Run is run.json, nil while the run has no directory under the root.
	Run *results.Run
	// State is the run in Redis, nil when Redis does not know it.
	State  *runstore.RunState
	Report []byte
	Steps  []stepView
	Items  []itemRow
	// ItemsTotal counts the items that match the state filter; Page is
	// the table's page (from 1) of Pages.
	ItemsTotal int
	Page       int
	Pages      int
	StateSel   string
	States     []string
	// ItemsFrom says where the items come from: results.jsonl, or "redis"
	// while the run's files are not written.
	ItemsFrom string
	Files     []string
	Notice    string
	Problem   string
	// CanCancel and CanRetry say which actions apply to the run now.
	CanCancel bool
	CanRetry  bool
}

// stepView is one step's line in the usage table.
type stepView struct {
	Step                                        string
	Total, Succeeded, Failed, Skipped, Canceled int
	Usage                                       workspace.Usage
}

// itemRow is one row of the items table: its number in the table, the
// item, and the address of its page.
type itemRow struct {
	N    int
	Item results.Item
	Href string
}

// notices are the messages an action's redirect may ask a run page to show.
var notices = map[string]string{
	"canceled":   "Cancel requested: workers stop the run's items within a second or so.",
	"retried":    "Retry enqueued: the run's failed, skipped and canceled items are sent again.",
	"nothing":    "Nothing to retry: the run has no failed, skipped or canceled items.",
	"finished":   "The run had already finished; nothing was canceled.",
	"logged-in":  "Logged in: actions are available.",
	"logged-out": "Logged out.",
}

func (s *Server) runPage(w http.ResponseWriter, r *http.Request) {
	v, status, msg := s.loadRun(r)
	if v == nil {
		s.fail(w, r, status, msg)
		return
	}
	q := r.URL.Query()
	v.Notice = notices[q.Get("notice")]
	v.States = []string{results.StateSucceeded, results.StateFailed, results.StateSkipped, results.StateCanceled}
	v.StateSel = q.Get("state")
	if v.StateSel != "" && !slices.Contains(v.States, v.StateSel) {
		s.fail(w, r, http.StatusBadRequest, fmt.Sprintf("Bad state filter %q: pick one of the list.", v.StateSel))
		return
	}
	v.Page = 1
	if p := q.Get("page"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 {
			s.fail(w, r, http.StatusBadRequest, fmt.Sprintf("Bad page %q: a page number is 1 or more.", p))
			return
		}
		v.Page = n
	}
	if err := s.loadItems(r.Context(), v); err != nil {
		v.Problem = "Some of the run's items could not be read: " + err.Error()
	}
	s.render(w, r, http.StatusOK, "run", v)
}

// loadRun finds the run of the request's {pipeline} and {run}: its row
// (results root and Redis), run.json, report and Redis state. A nil view
// comes with the status and message to answer.
func (s *Server) loadRun(r *http.Request) (v *runView, status int, msg string) {
	pipeline, id := r.PathValue("pipeline"), r.PathValue("run")
	for _, seg := range []string{pipeline, id} {
		if err := checkSegment(seg); err != nil {
			return nil, http.StatusBadRequest, "Bad run address: " + err.Error() + "."
		}
	}
	ctx := r.Context()
	rows, _, _ := runlist.List(ctx, s.opts.Root, pipeline, s.opts.Store, s.opts.Now())
	v = &runView{page: s.page(r, id, "runs")}
	for _, row := range rows {
		if row.ID == id && (slices.Contains(row.Sources, "redis") || s.underRoot(pipeline, id)) {
			v.Row = row
		}
	}
	if v.Row == nil {
		return nil, http.StatusNotFound, fmt.Sprintf("No run %s of pipeline %s in %s%s.", id, pipeline, s.opts.Root, s.redisNote())
	}
	v.Title = id + " · " + pipeline
	v.Live = v.Row.Live()
	if s.opts.Store != nil && slices.Contains(v.Row.Sources, "redis") {
		if st, err := s.opts.Store.Run(ctx, id); err == nil {
			v.State = st
		}
	}
	if root, err := os.OpenRoot(s.opts.Root); err == nil {
		defer root.Close()
		dir := path.Join(pipeline, id)
		if b, err := readRootFile(root, path.Join(dir, results.RunFile), 16<<20); err == nil {
			var run results.Run
			if json.Unmarshal(b, &run) == nil {
				v.Run = &run
			}
		}
		if v.Run != nil {
			if b, err := readRootFile(root, path.Join(dir, results.ReportFile), maxReportBytes); err == nil {
				v.Report = b
			}
			for _, f := range runFiles {
				if fi, err := root.Stat(path.Join(dir, f)); err == nil && fi.Mode().IsRegular() {
					v.Files = append(v.Files, f)
				}
			}
		}
	}
	v.Steps = stepsOf(v.Run, v.State)
	if s.opts.Store != nil && v.State != nil {
		v.CanCancel = !v.State.Finished()
		v.CanRetry = v.State.Finished() && v.State.Status != runstore.StatusError && v.State.Failed+v.State.Skipped+v.State.Canceled > 0
	}
	return v, 0, ""
}

// underRoot reports whether the run's directory or journal is inside the
// results root, not reached through a link that leaves it (a pipeline
// directory linked from elsewhere lists runs that are not the root's).
func (s *Server) underRoot(pipeline, id string) bool {
	root, err := os.OpenRoot(s.opts.Root)
	if err != nil {
		return false
	}
	defer root.Close()
	for _, name := range []string{path.Join(pipeline, id, results.RunFile), results.JournalPath("", pipeline, id)} {
		if fi, err := root.Stat(name); err == nil && fi.Mode().IsRegular() {
			return true
		}
	}
	return false
}

// redisNote says whether Redis was looked at, for a "not found" message.
func (s *Server) redisNote() string {
	if s.opts.Store == nil {
		return " (no Redis given: runs in flight on a shared Redis are not shown)"
	}
	return " or in Redis"
}

// readRootFile reads name under root, at most limit bytes.
func readRootFile(root *os.Root, name string, limit int64) ([]byte, error) {
	f, err := root.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, limit)
	}
	return b, nil
}

// stepsOf is the usage per step: run.json's once the run is written, else
// the live figures in Redis.
func stepsOf(run *results.Run, st *runstore.RunState) []stepView {
	var out []stepView
	switch {
	case run != nil:
		for _, su := range run.Steps {
			sv := stepView{Step: su.Step, Usage: su.Usage, Succeeded: su.Items[results.StateSucceeded],
				Failed: su.Items[results.StateFailed], Skipped: su.Items[results.StateSkipped], Canceled: su.Items[results.StateCanceled]}
			sv.Total = sv.Succeeded + sv.Failed + sv.Skipped + sv.Canceled
			out = append(out, sv)
		}
	case st != nil:
		for _, ss := range st.Steps {
			out = append(out, stepView{Step: ss.ID, Total: ss.Total, Succeeded: ss.Succeeded, Failed: ss.Failed,
				Skipped: ss.Skipped, Canceled: ss.Canceled, Usage: ss.Usage})
		}
	}
	return out
}

// loadItems fills the items table with one page of the items whose state
// matches the filter: those of results.jsonl once the run's files are
// written, else those Redis has recorded so far.
func (s *Server) loadItems(ctx context.Context, v *runView) error {
	per := s.opts.ItemsPerPage
	first := (v.Page - 1) * per
	add := func(it results.Item, href string) {
		if v.StateSel != "" && it.State != v.StateSel {
			return
		}
		if v.ItemsTotal >= first && v.ItemsTotal < first+per {
			v.Items = append(v.Items, itemRow{N: v.ItemsTotal + 1, Item: it, Href: href})
		}
		v.ItemsTotal++
	}
	var err error
	switch {
	case slices.Contains(v.Files, results.ResultsFile):
		v.ItemsFrom = results.ResultsFile
		err = s.eachItem(v.Row.Pipeline, v.Row.ID, func(n int, it results.Item) bool {
			add(it, joinURL(s.opts.Prefix, "runs", v.Row.Pipeline, v.Row.ID, "items", strconv.Itoa(n)))
			return true
		})
	case v.State != nil && s.opts.Store != nil:
		v.ItemsFrom = "redis"
		for _, st := range v.State.Steps {
			for it, ierr := range s.opts.Store.Items(ctx, v.Row.ID, st.ID, st.Total) {
				if ierr != nil {
					continue // not finished yet
				}
				add(it, joinURL(s.opts.Prefix, "runs", v.Row.Pipeline, v.Row.ID, "steps", st.ID, "items", strconv.Itoa(it.Index)))
			}
		}
	}
	v.Pages = max(1, (v.ItemsTotal+per-1)/per)
	return err
}

// eachItem calls fn with each item of the run's results.jsonl and its line
// number (from 1), until fn returns false.
func (s *Server) eachItem(pipeline, id string, fn func(n int, it results.Item) bool) error {
	root, err := os.OpenRoot(s.opts.Root)
	if err != nil {
		return err
	}
	defer root.Close()
	name := path.Join(pipeline, id, results.ResultsFile)
	f, err := root.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	n := 0
	for it, err := range results.ReadItemsFrom(f, name) {
		n++
		if err != nil {
			return err
		}
		if !fn(n, it) {
			return nil
		}
	}
	return nil
}

// itemView is one item's page.
type itemView struct {
	page
	Row *runlist.Row
	// Name is "Item 3" (the third line of results.jsonl) or "Item
	// summarize#2" (a step's item in Redis).
	Name     string
	Item     results.Item
	Requests string
}

// itemPage shows the n-th item of results.jsonl.
func (s *Server) itemPage(w http.ResponseWriter, r *http.Request) {
	v, status, msg := s.loadRun(r)
	if v == nil {
		s.fail(w, r, status, msg)
		return
	}
	n, err := strconv.Atoi(r.PathValue("n"))
	if err != nil || n < 1 {
		s.fail(w, r, http.StatusBadRequest, fmt.Sprintf("Bad item number %q: items are numbered from 1.", r.PathValue("n")))
		return
	}
	var item *results.Item
	if slices.Contains(v.Files, results.ResultsFile) {
		err = s.eachItem(v.Row.Pipeline, v.Row.ID, func(i int, it results.Item) bool {
			if i == n {
				item = &it
				return false
			}
			return true
		})
		if err != nil {
			s.fail(w, r, http.StatusInternalServerError, "The run's results could not be read: "+err.Error())
			return
		}
	}
	if item == nil {
		s.fail(w, r, http.StatusNotFound, fmt.Sprintf("Run %s has no item %d.", v.Row.ID, n))
		return
	}
	s.renderItem(w, r, v, fmt.Sprintf("Item %d", n), item)
}

// stepItemPage shows an item Redis has recorded, by step and plan index,
// while the run's files are not written.
func (s *Server) stepItemPage(w http.ResponseWriter, r *http.Request) {
	v, status, msg := s.loadRun(r)
	if v == nil {
		s.fail(w, r, status, msg)
		return
	}
	step := r.PathValue("step")
	index, err := strconv.Atoi(r.PathValue("index"))
	if err != nil || index < 0 || checkSegment(step) != nil {
		s.fail(w, r, http.StatusBadRequest, fmt.Sprintf("Bad item address %q/%q: a step and an index from 0.", step, r.PathValue("index")))
		return
	}
	var item *results.Item
	if v.State != nil && s.opts.Store != nil {
		item, err = s.opts.Store.Item(r.Context(), v.Row.ID, step, index)
		if err != nil {
			s.fail(w, r, http.StatusInternalServerError, "The item could not be read from Redis: "+err.Error())
			return
		}
	}
	if item == nil {
		s.fail(w, r, http.StatusNotFound, fmt.Sprintf("Run %s has no finished item %d of step %s in Redis.", v.Row.ID, index, step))
		return
	}
	s.renderItem(w, r, v, fmt.Sprintf("Item %s#%d", step, index), item)
}

// renderItem renders an item's page.
func (s *Server) renderItem(w http.ResponseWriter, r *http.Request, v *runView, name string, it *results.Item) {
	iv := itemView{page: s.page(r, name+" · "+v.Row.ID, "runs"), Row: v.Row, Name: name, Item: *it}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(it.Requests); err == nil {
		iv.Requests = b.String()
	}
	s.render(w, r, http.StatusOK, "item", &iv)
}

// filePage serves one of runFiles from the run directory under the root,
// as text (a report or JSON lines are for reading, not for running).
func (s *Server) filePage(w http.ResponseWriter, r *http.Request) {
	pipeline, id, file := r.PathValue("pipeline"), r.PathValue("run"), r.PathValue("file")
	for _, seg := range []string{pipeline, id, file} {
		if err := checkSegment(seg); err != nil {
			s.fail(w, r, http.StatusBadRequest, "Bad file address: "+err.Error()+".")
			return
		}
	}
	if !slices.Contains(runFiles, file) {
		s.fail(w, r, http.StatusNotFound, fmt.Sprintf("%q is not a run file: only %v are served.", file, runFiles))
		return
	}
	root, err := os.OpenRoot(s.opts.Root)
	if err != nil {
		s.fail(w, r, http.StatusNotFound, "No results root "+s.opts.Root+".")
		return
	}
	defer root.Close()
	f, err := root.Open(path.Join(pipeline, id, file))
	if err != nil {
		// Missing, or a link that leaves the root: the same answer.
		s.fail(w, r, http.StatusNotFound, fmt.Sprintf("Run %s of %s has no %s under the results root.", id, pipeline, file))
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		s.fail(w, r, http.StatusNotFound, fmt.Sprintf("Run %s of %s has no %s under the results root.", id, pipeline, file))
		return
	}
	ctype := "text/plain; charset=utf-8"
	if file == results.RunFile {
		ctype = "application/json; charset=utf-8"
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Security-Policy", "sandbox; default-src 'none'")
	w.Header().Set("Cache-Control", "no-cache")
	http.ServeContent(w, r, file, fi.ModTime(), f)
}

// schedulesView is the schedules page.
type schedulesView struct {
	page
	Dir         string
	Pipelines   []scheduleRow
	Problems    []string
	Unscheduled []string
	Error       string
}

// scheduleRow is one scheduled pipeline: its description and where its
// last run's page is.
type scheduleRow struct {
	scheduler.Description
	// HasLastPage is set when LastRun has a page here.
	HasLastPage bool
}

func (s *Server) schedulesPage(w http.ResponseWriter, r *http.Request) {
	v := schedulesView{page: s.page(r, "Schedules", "schedules"), Dir: s.opts.PipelinesDir}
	if v.Dir != "" {
		if err := s.loadSchedules(r.Context(), &v); err != nil {
			v.Error = err.Error()
		}
	}
	s.render(w, r, http.StatusOK, "schedules", &v)
}

// loadSchedules reads the pipelines directory and describes each schedule;
// a pipeline Redis knows no run of gets its last run from the results root.
func (s *Server) loadSchedules(ctx context.Context, v *schedulesView) error {
	snap, err := scheduler.NewDir(v.Dir, s.opts.Load).Scan()
	if err != nil {
		return err
	}
	for _, p := range snap.Problems {
		v.Problems = append(v.Problems, p.Error())
	}
	v.Unscheduled = snap.Unscheduled
	descs, err := scheduler.Describe(ctx, snap.Entries, s.opts.Store, s.opts.Now(), 3)
	if err != nil {
		return err
	}
	rows, _, _ := runlist.List(ctx, s.opts.Root, "", s.opts.Store, s.opts.Now())
	for _, d := range descs {
		sr := scheduleRow{Description: d}
		for _, row := range rows { // newest first
			if row.Pipeline != d.Pipeline {
				continue
			}
			if sr.LastRun == "" {
				sr.LastRun, sr.LastStatus = row.ID, row.Status
			}
			if row.ID == sr.LastRun {
				sr.HasLastPage = true
				break
			}
		}
		v.Pipelines = append(v.Pipelines, sr)
	}
	return nil
}

// liveRun is what the live updates send for one run: the figures its row
// and run page show, already formatted.
type liveRun struct {
	Key       string `json:"key"`
	Status    string `json:"status"`
	Done      int    `json:"done"`
	Total     int    `json:"total"`
	Succeeded int    `json:"succeeded"`
	Failed    int    `json:"failed"`
	Skipped   int    `json:"skipped"`
	Canceled  int    `json:"canceled"`
	Tokens    string `json:"tokens"`
	Duration  string `json:"duration"`
	Items     string `json:"items"`
	Live      bool   `json:"live"`
	// Steps are the run's steps, for its usage table.
	Steps []liveStep `json:"steps,omitempty"`
}

// liveStep is one step's figures in the live updates.
type liveStep struct {
	ID        string `json:"id"`
	Total     int    `json:"total"`
	Succeeded int    `json:"succeeded"`
	Failed    int    `json:"failed"`
	Skipped   int    `json:"skipped"`
	Canceled  int    `json:"canceled"`
	Input     string `json:"input"`
	Output    string `json:"output"`
}

// events streams the runs in Redis as server-sent events ("runs", a JSON
// array of liveRun) every Interval while they change. Without Redis there
// is nothing live: 204, which tells EventSource not to reconnect.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	if s.opts.Store == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, "retry: 2000\n\n")
	_ = rc.Flush()
	ctx := r.Context()
	var last []byte
	t := time.NewTicker(s.opts.Interval)
	defer t.Stop()
	for quiet := 0; ; quiet++ {
		states, err := s.opts.Store.Runs(ctx)
		if err != nil && ctx.Err() == nil {
			s.opts.Logger.Warn("webui: live updates: runs in Redis not read", "err", err)
		}
		runs := make([]liveRun, 0, len(states))
		for i := range states {
			lr := liveOf(runlist.FromState(&states[i], s.opts.Now()))
			for _, st := range states[i].Steps {
				lr.Steps = append(lr.Steps, liveStep{ID: st.ID, Total: st.Total, Succeeded: st.Succeeded, Failed: st.Failed, Skipped: st.Skipped,
					Canceled: st.Canceled, Input: thousands(int64(st.Usage.InputTokens)), Output: thousands(int64(st.Usage.OutputTokens))})
			}
			runs = append(runs, lr)
		}
		b, _ := json.Marshal(runs)
		switch {
		case err == nil && !bytes.Equal(b, last):
			if _, werr := fmt.Fprintf(w, "event: runs\ndata: %s\n\n", b); werr != nil {
				return
			}
			last, quiet = b, 0
		case quiet >= 15:
			if _, werr := io.WriteString(w, ": ping\n\n"); werr != nil {
				return
			}
			quiet = 0
		}
		if err := rc.Flush(); err != nil {
			return
		}
		if !s.waitOrClosed(ctx, t) {
			return
		}
	}
}

// liveOf formats a row for the live updates.
func liveOf(row *runlist.Row) liveRun {
	return liveRun{Key: row.Key(), Status: row.Status, Done: row.Done, Total: row.Total,
		Succeeded: row.Succeeded, Failed: row.Failed, Skipped: row.Skipped, Canceled: row.Canceled,
		Tokens: thousands(row.Tokens), Duration: duration(row.Duration()), Items: itemsText(row), Live: row.Live()}
}
