package scheduler

import (
	"fmt"
	"strings"
	"time"

	"github.com/threadmill/threadmill/pipelines"
)

// RunID returns the deterministic id of the run of pipeline at fire time f:
// "<pipeline>@<f, RFC 3339 in the schedule's zone>", for example
// "weekly-support-brief@2026-03-30T09:00:00+02:00". Every scheduler computes
// the same id for the same fire time, which is what makes a run start once.
// The UTC offset is part of the id, so the two passes of a fall-back hour
// (when an hourly job fires in both) get distinct ids.
func RunID(pipeline string, f time.Time, loc *time.Location) string {
	return pipeline + "@" + f.In(loc).Format(time.RFC3339)
}

// ParseRunID splits a scheduled run id into its pipeline name and fire time.
func ParseRunID(id string) (pipeline string, fire time.Time, err error) {
	i := strings.LastIndexByte(id, '@')
	if i <= 0 || i == len(id)-1 {
		return "", time.Time{}, fmt.Errorf("run id %q: want <pipeline>@<RFC 3339 fire time>", id)
	}
	fire, err = time.Parse(time.RFC3339, id[i+1:])
	if err != nil {
		return "", time.Time{}, fmt.Errorf("run id %q: fire time: %w", id, err)
	}
	return id[:i], fire, nil
}

// RunInfo returns the run of pipeline at fire time f under schedule s: its
// id, its time (f) and its window [previous fire time, f), which templates
// see as .Run and `updated: within_run_window` filters on.
func RunInfo(pipeline string, s *Schedule, f time.Time) pipelines.RunInfo {
	start, end := s.Window(f)
	return pipelines.RunInfo{
		ID:          RunID(pipeline, f, s.Location()),
		Time:        end,
		WindowStart: start,
		WindowEnd:   end,
	}
}
