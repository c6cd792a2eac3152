package webui

import (
	"fmt"
	"net/http"
	"os"
	"path"
	"slices"

	"github.com/threadmill/threadmill/results"
)

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
