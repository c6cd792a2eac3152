package scheduler

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/threadmill/threadmill/internal/logging"
	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/runstore"
)

// DefaultBackfillMax is the most fire times one backfill starts unless told
// otherwise.
const DefaultBackfillMax = 1000

// BackfillOptions configure Backfill. Starter is required.
type BackfillOptions struct {
	// Starter starts each run; it must be idempotent per run id.
	Starter Starter
	// RDB and Prefix record the runs in the pipeline's run history (what
	// `schedule ls` shows); RDB nil records nothing. Prefix defaults to
	// DefaultPrefix.
	RDB    redis.UniversalClient
	Prefix string
	// Max refuses a range with more fire times; default DefaultBackfillMax.
	Max int
	// Now bounds the range: fire times after it cannot be backfilled;
	// default time.Now.
	Now func() time.Time
	// Logger; default discard.
	Logger *slog.Logger
}

// BackfillRun is one fire time of a backfill.
type BackfillRun struct {
	Run pipelines.RunInfo
	// Created is false when the run already existed (a second backfill of
	// the same range, or the scheduler got there first).
	Created bool
}

// BackfillTimes returns the fire times of s in [from, to], oldest first. It
// fails when from is after to, when to is after now, or when the range has
// more than max fire times.
func BackfillTimes(s *Schedule, from, to, now time.Time, max int) ([]time.Time, error) {
	max = cmp.Or(max, DefaultBackfillMax)
	switch {
	case from.After(to):
		return nil, fmt.Errorf("--from %s is after --to %s", from.Format(time.RFC3339), to.Format(time.RFC3339))
	case to.After(now):
		return nil, fmt.Errorf("--to %s is in the future; only past fire times can be backfilled", to.Format(time.RFC3339))
	}
	fires := s.Between(from.Add(-time.Nanosecond), to, max+1)
	if len(fires) > max {
		return nil, fmt.Errorf("the range has more than %d fire times; narrow it or raise --max", max)
	}
	return fires, nil
}

// Backfill starts one run of e per fire time in [from, to], oldest first,
// with the same run ids and windows the scheduler gives them, so running it
// twice, or over fire times the scheduler already ran, creates each run once.
// It ignores schedule.overlap: every run starts at once (a fire time the
// scheduler skipped is created; one that waits is released).
// each, when not nil, is called after every run.
func Backfill(ctx context.Context, e *Entry, from, to time.Time, o BackfillOptions, each func(BackfillRun)) error {
	if o.Starter == nil {
		return errors.New("scheduler: backfill: no Starter")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = logging.Discard()
	}
	fires, err := BackfillTimes(e.Schedule, from, to, o.Now(), o.Max)
	if err != nil {
		return fmt.Errorf("backfill %s: %w", e.Name(), err)
	}
	var st *state
	if o.RDB != nil {
		st = &state{rdb: o.RDB, prefix: cmp.Or(o.Prefix, DefaultPrefix)}
	}
	for _, f := range fires {
		run := RunInfo(e.Name(), e.Schedule, f)
		// Backfill creates runs on purpose, often many at once: it ignores
		// schedule.overlap (an explicit request, like enqueue). Its runs do
		// count as active for the scheduler's next fire.
		a, err := o.Starter.Start(ctx, e.Pipeline, run, pipelines.OverlapAllow)
		if err != nil {
			return fmt.Errorf("backfill %s: start run %s: %w", e.Name(), run.ID, err)
		}
		if st != nil {
			if err := st.record(ctx, e.Name(), run.ID, f); err != nil {
				return fmt.Errorf("backfill %s: %w", e.Name(), err)
			}
		}
		created := a.Outcome == runstore.AdmitCreated
		o.Logger.Info("backfill", logging.KeyPipeline, e.Name(), logging.KeyRun, run.ID, "created", created)
		if each != nil {
			each(BackfillRun{Run: run, Created: created})
		}
	}
	return nil
}

// EntryOf checks that p is scheduled and returns it as an Entry, for
// callers (backfill, schedule ls) that load a single file.
func EntryOf(p *pipelines.Pipeline) (*Entry, error) { return entryOf(p, p.File) }
