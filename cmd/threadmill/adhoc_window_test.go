package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/results"
	"github.com/threadmill/threadmill/scheduler"
	"github.com/threadmill/threadmill/workspace/simulator"
)

// weeklyPipeline fires every Monday at 09:00 in Madrid, over the tickets
// updated within its window.
func weeklyPipeline(name string) string {
	return `version: 1
name: ` + name + `
schedule: { cron: "0 9 * * MON", timezone: Europe/Madrid }
limits: { concurrency: 4, requests_per_minute: 1000000, tokens_per_minute: 100000000 }
artifacts:
  docs: { folder: Policies }
steps:
  - id: s
    for_each: docs
    prompt: "Summarize {{ .Artifact.Name }} for the week {{ .Run.WindowStart }} to {{ .Run.WindowEnd }}."
`
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// On a Wednesday, an ad-hoc run of a weekly Monday 09:00 pipeline covers the
// week that ended this Monday at 09:00 (the scheduler's latest fire), not
// the one ending next Monday; its id is <pipeline>-<UTC now>; --at picks
// the last fire at or before another time.
func TestPlanRunLatestCompletedWindow(t *testing.T) {
	p, err := pipelines.Parse("weekly.yaml", []byte(weeklyPipeline("weekly")), nil)
	if err != nil {
		t.Fatal(err)
	}
	wednesday := mustTime(t, "2026-12-02T15:04:05+01:00")
	monday := mustTime(t, "2026-11-30T09:00:00+01:00")
	prevMonday := mustTime(t, "2026-11-23T09:00:00+01:00")

	run, err := planRun(p, time.Time{}, wednesday, "")
	if err != nil {
		t.Fatal(err)
	}
	if !run.Time.Equal(monday) || !run.WindowStart.Equal(prevMonday) || !run.WindowEnd.Equal(monday) {
		t.Errorf("run at %s, window %s to %s; want fire %s, window %s to %s", run.Time, run.WindowStart, run.WindowEnd, monday, prevMonday, monday)
	}
	if run.ID != "weekly-20261202T140405Z" {
		t.Errorf("id %q, want weekly-20261202T140405Z (<pipeline>-<UTC now>)", run.ID)
	}
	// The fire time is the scheduler's: the one its catch-up would start now.
	s, err := scheduler.ScheduleOf(p)
	if err != nil {
		t.Fatal(err)
	}
	if latest := scheduler.Missed(s, scheduler.PolicyLatest, 0, prevMonday, wednesday); len(latest) != 1 || !latest[0].Equal(run.Time) {
		t.Errorf("scheduler's latest fire %v, ad-hoc run's %s", latest, run.Time)
	}

	// At the fire time itself, that fire's window has just completed.
	if run, _ := planRun(p, time.Time{}, monday, ""); !run.Time.Equal(monday) {
		t.Errorf("at %s: fire %s, want that very fire", monday, run.Time)
	}
	if run, _ := planRun(p, time.Time{}, monday.Add(-time.Second), ""); !run.Time.Equal(prevMonday) {
		t.Errorf("a second before %s: fire %s, want %s", monday, run.Time, prevMonday)
	}

	// --at picks another window; the id is still the time the run starts.
	at := mustTime(t, "2026-11-10T00:00:00Z")
	run, err = planRun(p, at, wednesday, "")
	if err != nil {
		t.Fatal(err)
	}
	if want := mustTime(t, "2026-11-09T09:00:00+01:00"); !run.Time.Equal(want) || !run.WindowEnd.Equal(want) {
		t.Errorf("--at %s: fire %s, want %s", at, run.Time, want)
	}
	if run.ID != "weekly-20261202T140405Z" {
		t.Errorf("--at: id %q", run.ID)
	}
	if run, _ := planRun(p, at, wednesday, "mine"); run.ID != "mine" {
		t.Errorf("--run-id: id %q", run.ID)
	}
}

// `plan` and `run` agree on the window and the id scheme, and a default
// `run` never covers a window that ends after it started.
func TestPlanAndRunAgreeOnTheWindow(t *testing.T) {
	unsetRunnerEnv(t)
	e := startRunnerSim(t, simulator.Config{})
	e.setenv(t)
	dir := t.TempDir()
	file := writeRunnerPipeline(t, dir, "weekly", weeklyPipeline("weekly"))
	root := filepath.Join(dir, "out")
	const wednesday = "2026-12-02T15:04:05+01:00"
	monday, prevMonday := mustTime(t, "2026-11-30T09:00:00+01:00"), mustTime(t, "2026-11-23T09:00:00+01:00")

	code, out, errb := runnerCLI(t.Context(), "plan", "--json", "--at", wednesday, file)
	if code != exitOK {
		t.Fatalf("plan: exit %d\n%s%s", code, out, errb)
	}
	var rep planReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if !rep.Run.Time.Equal(monday) || !rep.Run.WindowStart.Equal(prevMonday) || !rep.Run.WindowEnd.Equal(monday) {
		t.Errorf("plan --at %s: %+v", wednesday, rep.Run)
	}
	if _, err := time.Parse(runIDTime, strings.TrimPrefix(rep.Run.ID, "weekly-")); err != nil {
		t.Errorf("plan's run id %q is not <pipeline>-<UTC time>: %v", rep.Run.ID, err)
	}

	before := time.Now()
	code, out, errb = runnerCLI(t.Context(), "run", "--at", wednesday, "--results", root, "--progress", "none", file)
	if code != exitOK {
		t.Fatalf("run: exit %d\n%s%s", code, out, errb)
	}
	latest, err := results.LatestDir(root, "weekly")
	if err != nil {
		t.Fatal(err)
	}
	rj, err := results.ReadRun(latest)
	if err != nil {
		t.Fatal(err)
	}
	if rj.FireTime == nil || !rj.FireTime.Equal(monday) || !rj.WindowStart.Equal(prevMonday) || !rj.WindowEnd.Equal(monday) {
		t.Errorf("run --at %s: fire %v window %v to %v, want the plan's", wednesday, rj.FireTime, rj.WindowStart, rj.WindowEnd)
	}
	if _, err := time.Parse(runIDTime, strings.TrimPrefix(rj.RunID, "weekly-")); err != nil {
		t.Errorf("run's id %q is not <pipeline>-<UTC time>: %v", rj.RunID, err)
	}

	// Without --at: the latest completed window, which ended before now.
	code, out, errb = runnerCLI(t.Context(), "run", "--results", root, "--progress", "none", file)
	if code != exitOK {
		t.Fatalf("run: exit %d\n%s%s", code, out, errb)
	}
	latest, _ = results.LatestDir(root, "weekly")
	if rj, err = results.ReadRun(latest); err != nil {
		t.Fatal(err)
	}
	if rj.WindowEnd == nil || rj.WindowEnd.After(before) || !rj.FireTime.Equal(*rj.WindowEnd) || before.Sub(*rj.WindowEnd) > 7*24*time.Hour {
		t.Errorf("run now (%s): fire %v, window %v to %v: want the last completed week", before, rj.FireTime, rj.WindowStart, rj.WindowEnd)
	}
}
