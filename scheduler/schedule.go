package scheduler

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/threadmill/threadmill/pipelines"
)

// cronParser reads the 5-field cron expressions and descriptors that asynq's
// own scheduler accepts (robfig/cron's standard parser), so the fire times
// computed here are the ones asynq fires at.
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Schedule is a pipeline's cron schedule evaluated in its time zone.
//
// Fire times follow robfig/cron (the library inside asynq's scheduler) with
// one correction, so that every scheduler process agrees on them:
//
//   - Spring forward: a wall-clock time that does not exist that day (02:30 in
//     Europe/Madrid on the last Sunday of March) does not fire that day, as
//     robfig/cron and therefore asynq behave. Nothing is lost: the next run's
//     window starts at the previous fire time, so it covers the gap.
//   - Fall back: a wall-clock time that happens twice (02:30 on the last Sunday
//     of October) fires once, at its first occurrence, unless the hour field is
//     "*" (an hourly or more frequent job), which fires in both passes because
//     they are different real hours. robfig/cron alone fires a fixed-hour job
//     twice; Next skips the repeat, and a scheduler whose asynq cron fires in
//     the repeated hour maps that instant back to the first occurrence (Floor),
//     whose run already exists.
//   - "@every D" fires at the multiples of D since the Unix epoch, not D after
//     each scheduler started, so that separate processes agree.
//
// robfig/cron has no "previous fire time"; Prev searches backwards by
// doubling a look-back window and walking forward with Next inside it, so it
// agrees with Next by construction.
type Schedule struct {
	expr  string
	spec  string
	loc   *time.Location
	sched cron.Schedule
	every time.Duration // > 0 for "@every D"
}

// maxLookback bounds Prev's search: robfig/cron itself gives up after five
// years without a fire time.
const maxLookback = 6 * 366 * 24 * time.Hour

// ParseSchedule parses a 5-field cron expression or descriptor (@daily,
// @weekly, @every 1h, ...) evaluated in the IANA zone tz ("" is UTC).
func ParseSchedule(expr, tz string) (*Schedule, error) {
	expr = strings.TrimSpace(expr)
	if expr == "" {
		return nil, errors.New("schedule.cron is empty")
	}
	if strings.HasPrefix(expr, "CRON_TZ=") || strings.HasPrefix(expr, "TZ=") {
		return nil, fmt.Errorf("schedule.cron %q: set the zone with schedule.timezone, not a TZ= prefix", expr)
	}
	if tz == "" {
		tz = pipelines.DefaultTimezone
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return nil, fmt.Errorf("schedule.timezone %q: %w", tz, err)
	}
	s := &Schedule{expr: expr, loc: loc, spec: "CRON_TZ=" + loc.String() + " " + expr}
	if d, ok := strings.CutPrefix(expr, "@every "); ok {
		every, err := time.ParseDuration(strings.TrimSpace(d))
		if err != nil {
			return nil, fmt.Errorf("schedule.cron %q: %w", expr, err)
		}
		if every < time.Second || every%time.Second != 0 {
			return nil, fmt.Errorf("schedule.cron %q: @every needs a whole number of seconds, at least 1s", expr)
		}
		s.every = every
		s.spec = expr // a constant delay has no zone
		return s, nil
	}
	sched, err := cronParser.Parse(s.spec)
	if err != nil {
		return nil, fmt.Errorf("schedule.cron %q: %w", expr, err)
	}
	s.sched = sched
	return s, nil
}

// ScheduleOf returns the schedule of a pipeline, or an error naming the
// pipeline when it has none or it does not parse.
func ScheduleOf(p *pipelines.Pipeline) (*Schedule, error) {
	if p.Schedule == nil || p.Schedule.Cron == "" {
		return nil, fmt.Errorf("pipeline %q has no schedule", p.Name)
	}
	s, err := ParseSchedule(p.Schedule.Cron, p.Schedule.Timezone)
	if err != nil {
		return nil, fmt.Errorf("pipeline %q: %w", p.Name, err)
	}
	return s, nil
}

// Expr returns the cron expression as written.
func (s *Schedule) Expr() string { return s.expr }

// Spec returns the expression asynq registers: the cron expression with a
// CRON_TZ= prefix naming the zone ("@every" specs have no zone).
func (s *Schedule) Spec() string { return s.spec }

// Location returns the schedule's time zone.
func (s *Schedule) Location() *time.Location { return s.loc }

// Next returns the first fire time strictly after t, in the schedule's zone,
// or the zero time when there is none within five years.
func (s *Schedule) Next(t time.Time) time.Time {
	if s.every > 0 {
		return alignEvery(t.Add(time.Nanosecond), s.every).In(s.loc)
	}
	n := s.sched.Next(t)
	for !n.IsZero() && s.repeated(n) {
		n = s.sched.Next(n)
	}
	if n.IsZero() {
		return n
	}
	return n.In(s.loc)
}

// alignEvery returns the first multiple of d since the Unix epoch at or after
// n (time.Truncate's grid starts at year 1, which differs for some d).
func alignEvery(n time.Time, d time.Duration) time.Time {
	off := time.Duration(n.UnixNano()) % d
	if off == 0 {
		return n
	}
	if off < 0 {
		off += d
	}
	return n.Add(d - off)
}

// repeated reports whether n lies in the second pass of a fall-back
// transition (its wall-clock time already happened under the previous
// offset) and the schedule names a fixed hour, so it must not fire again.
func (s *Schedule) repeated(n time.Time) bool {
	if spec, ok := s.sched.(*cron.SpecSchedule); ok && spec.Hour&(1<<63) != 0 {
		return false // hour field "*": both passes are distinct hours to run
	}
	n = n.In(s.loc)
	start, _ := n.ZoneBounds()
	if start.IsZero() {
		return false
	}
	_, offNow := n.Zone()
	_, offBefore := start.Add(-time.Nanosecond).Zone()
	back := time.Duration(offBefore-offNow) * time.Second
	return back > 0 && n.Sub(start) < back
}

// Prev returns the last fire time strictly before t, or the zero time when
// there is none within about six years.
func (s *Schedule) Prev(t time.Time) time.Time {
	if s.every > 0 {
		return alignEvery(t, s.every).Add(-s.every).In(s.loc)
	}
	for back := time.Minute; back <= maxLookback; back *= 2 {
		x := s.Next(t.Add(-back))
		if x.IsZero() || !x.Before(t) {
			continue
		}
		for {
			n := s.Next(x)
			if n.IsZero() || !n.Before(t) {
				return x
			}
			x = n
		}
	}
	return time.Time{}
}

// Floor returns the last fire time at or before t: the fire time that an
// asynq cron firing at instant t stands for, however late it fired.
func (s *Schedule) Floor(t time.Time) time.Time { return s.Prev(t.Add(time.Nanosecond)) }

// Window returns the run window of the fire time f: [previous fire time, f).
// The windows of consecutive fire times are contiguous, so every instant
// belongs to exactly one run's window.
func (s *Schedule) Window(f time.Time) (start, end time.Time) {
	return s.Prev(f), f.In(s.loc)
}

// NextN returns the first n fire times strictly after t.
func (s *Schedule) NextN(t time.Time, n int) []time.Time {
	out := make([]time.Time, 0, n)
	for len(out) < n {
		t = s.Next(t)
		if t.IsZero() {
			break
		}
		out = append(out, t)
	}
	return out
}

// Between returns the fire times f with from < f <= to in order, at most max
// of them (the latest ones when there are more; max <= 0 means no cap). It
// walks backwards from to, so a long range with a small cap stays cheap.
func (s *Schedule) Between(from, to time.Time, max int) []time.Time {
	var rev []time.Time
	for f := s.Floor(to); !f.IsZero() && f.After(from); f = s.Prev(f) {
		if max > 0 && len(rev) == max {
			break
		}
		rev = append(rev, f)
	}
	out := make([]time.Time, len(rev))
	for i, f := range rev {
		out[len(rev)-1-i] = f
	}
	return out
}
