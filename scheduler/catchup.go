package scheduler

import (
	"fmt"
	"time"

	"github.com/threadmill/threadmill/pipelines"
)

// Policy is what a scheduler does with the fire times a pipeline missed
// while no scheduler was running (schedule.catchup).
type Policy string

// Catch-up policies.
const (
	// PolicyNone drops missed fire times; the next run is the next fire time.
	PolicyNone Policy = pipelines.CatchupNone
	// PolicyLatest starts the most recent missed fire time only: one run
	// brings the pipeline up to date (its window is still one period).
	PolicyLatest Policy = pipelines.CatchupLatest
	// PolicyAll starts every missed fire time, oldest first, up to the
	// pipeline's catchup_limit (the most recent ones when more were missed).
	PolicyAll Policy = pipelines.CatchupAll
)

// ParsePolicy returns the policy named s; "" is PolicyLatest, the format's
// default.
func ParsePolicy(s string) (Policy, error) {
	switch p := Policy(s); p {
	case "":
		return PolicyLatest, nil
	case PolicyNone, PolicyLatest, PolicyAll:
		return p, nil
	}
	return "", fmt.Errorf("schedule.catchup %q: want none, latest or all", s)
}

// Missed returns the fire times to start for a catch-up over (after, now]
// under policy: none for PolicyNone, the latest for PolicyLatest, and the
// latest limit ones in order for PolicyAll (limit <= 0 means
// pipelines.DefaultCatchupLimit). It is pure: the scheduler calls it with the
// pipeline's cursor (the time up to which fire times were handled) and the
// current time.
func Missed(s *Schedule, policy Policy, limit int, after, now time.Time) []time.Time {
	if !now.After(after) {
		return nil
	}
	switch policy {
	case PolicyNone:
		return nil
	case PolicyAll:
		if limit <= 0 {
			limit = pipelines.DefaultCatchupLimit
		}
		return s.Between(after, now, limit)
	default:
		return s.Between(after, now, 1)
	}
}
