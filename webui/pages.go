package webui

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"slices"
	"strconv"

	"github.com/threadmill/threadmill/internal/runlist"
	"github.com/threadmill/threadmill/results"
	"github.com/threadmill/threadmill/runstore"
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
