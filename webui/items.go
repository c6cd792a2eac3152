package webui

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"

	"github.com/threadmill/threadmill/internal/runlist"
	"github.com/threadmill/threadmill/results"
)

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
