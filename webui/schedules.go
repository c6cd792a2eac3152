package webui

import (
	"context"
	"net/http"

	"github.com/threadmill/threadmill/internal/runlist"
	"github.com/threadmill/threadmill/scheduler"
)

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
