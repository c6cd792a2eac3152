package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/threadmill/threadmill/internal/redistest"
	"github.com/threadmill/threadmill/runstore"
)

var updateScheduleGolden = flag.Bool("update-schedule-golden", false, "rewrite testdata/schedule-*.golden and backfill-*.golden")

// schedPipeline is a valid pipeline file with the given schedule.
func schedPipeline(name, schedule string) string {
	return fmt.Sprintf(`version: 1
name: %s
schedule: %s
workspace: { project: proj_7a5c3e1b9d2f4a6c }
artifacts:
  tickets: { folder: Support/Tickets, updated: within_run_window, allow_empty: true }
steps:
  - id: summarize
    for_each: tickets
    prompt: "Summarize {{ .Artifact.Name }}."
`, name, schedule)
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// golden compares got with testdata/name, or rewrites it with
// -update-schedule-golden.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *updateScheduleGolden {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update-schedule-golden)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s:\n--- got\n%s--- want\n%s", path, got, want)
	}
}

func noEnv(string) (string, bool) { return "", false }

// scheduleDir is a directory with two scheduled pipelines, one without a
// schedule and one broken file.
func scheduleDir(t *testing.T) string {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"weekly.yaml":  schedPipeline("weekly-brief", `{ cron: "0 9 * * MON", timezone: Europe/Madrid }`),
		"nightly.yaml": schedPipeline("nightly", `{ cron: "30 2 * * *", timezone: Europe/Madrid, catchup: all, catchup_limit: 3 }`),
		"manual.yaml":  strings.Replace(schedPipeline("manual", "{ cron: x }"), "schedule: { cron: x }\n", "", 1),
		"broken.yaml":  strings.Replace(schedPipeline("broken", `{ cron: "@daily" }`), "prompt:", "promt:", 1),
		"notes.txt":    "not a pipeline",
	})
	return dir
}

// The listing without Redis, around the March DST change: next fire times
// in each pipeline's zone, the spring-forward day skipped at 02:30; the
// broken file reported with its position and exit 1.
func TestScheduleLs(t *testing.T) {
	dir := scheduleDir(t)
	o := &scheduleLsOptions{Next: 3, LookupEnv: noEnv, Now: func() time.Time { return time.Date(2026, 3, 27, 12, 0, 0, 0, time.UTC) }}
	o.Pipelines.Dir = dir
	var out, errb bytes.Buffer
	err := runScheduleLs(context.Background(), o, &out, &errb)
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != exitFailure || !strings.Contains(err.Error(), "1 file not scheduled") {
		t.Fatalf("error = %v, want exit %d naming the file count", err, exitFailure)
	}
	golden(t, "schedule-ls.golden", strings.ReplaceAll(out.String(), dir, "DIR"))
	if want := filepath.Join(dir, "broken.yaml") + ":10:5: "; !strings.HasPrefix(errb.String(), want) {
		t.Errorf("stderr = %q, want a line starting %q", errb.String(), want)
	}
}

// Backfill twice over one Redis: the first starts every run, the second
// finds them all; `schedule ls` then shows the last run and its status.
func TestBackfillCmdTwiceThenLs(t *testing.T) {
	srv := redistest.Start(t)
	dir := scheduleDir(t)
	now := time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)
	backfill := func() string {
		o := &backfillOptions{Pipeline: "nightly", From: "2026-03-27", To: "2026-03-31T00:00:00Z", Queue: "threadmill", Max: 100,
			LookupEnv: noEnv, Now: func() time.Time { return now }}
		o.Pipelines.Dir = dir
		o.Redis.URL = srv.URL()
		var out, errb bytes.Buffer
		if err := runBackfill(context.Background(), o, &out, &errb); err != nil {
			t.Fatalf("backfill: %v\n%s", err, errb.String())
		}
		return strings.NewReplacer(srv.URL(), "REDIS", dir, "DIR").Replace(out.String())
	}
	golden(t, "backfill-first.golden", backfill())
	golden(t, "backfill-second.golden", backfill())

	runs, err := runstore.New(srv.Client(t), "").Runs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 3 { // 27, 28 and 30 March: 02:30 does not exist on the 29th
		t.Errorf("%d runs in the store, want 3", len(runs))
	}

	o := &scheduleLsOptions{Next: 2, LookupEnv: noEnv, Now: func() time.Time { return now }}
	o.Pipelines.Dir = dir
	o.Redis.URL = srv.URL()
	var out, errb bytes.Buffer
	_ = runScheduleLs(context.Background(), o, &out, &errb) // exit 1 for broken.yaml, checked above
	golden(t, "schedule-ls-runs.golden", strings.ReplaceAll(out.String(), dir, "DIR"))
}

func TestBackfillCmdErrors(t *testing.T) {
	dir := scheduleDir(t)
	t.Setenv(envPipelines, dir)
	t.Setenv(envRedisURL, "")
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"backfill", "nightly", "--to", "now"}, exitUsage, "--from is required"},
		{[]string{"backfill", "nightly", "--from", "yesterday", "--to", "now"}, exitUsage, `--from: "yesterday" is not an RFC 3339 time`},
		{[]string{"backfill", "nope", "--from", "2026-01-01", "--to", "now"}, exitFailure, `no scheduled pipeline "nope"`},
		{[]string{"backfill", "manual", "--from", "2026-01-01", "--to", "now"}, exitFailure, `pipeline "manual" (` + filepath.Join(dir, "manual.yaml") + ") has no schedule"},
		{[]string{"backfill", "nope", "--from", "2026-01-01", "--to", "now"}, exitFailure, "scheduled: nightly, weekly-brief"},
		{[]string{"backfill", "nightly", "--from", "2026-01-01", "--to", "2099-01-01"}, exitUsage, "is in the future"},
		{[]string{"backfill", "nightly", "--from", "2026-01-02", "--to", "2026-01-01"}, exitUsage, "is after --to"},
		{[]string{"backfill", "nightly", "--from", "2020-01-01", "--to", "now"}, exitUsage, "more than 1000 fire times"},
		{[]string{"backfill", "nightly", "--from", "2026-01-01", "--to", "2026-01-02"}, exitFailure, "no Redis: give --redis URL or set THREADMILL_REDIS_URL"},
		{[]string{"backfill", filepath.Join(dir, "broken.yaml"), "--from", "2026-01-01", "--to", "now"}, exitFailure, "broken.yaml is invalid"},
	}
	for _, c := range cases {
		code, _, errb := runCmdline(t, c.args...)
		if code != c.code || !strings.Contains(errb, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", c.args, code, errb, c.code, c.want)
		}
	}
	// A dry run needs no Redis and lists the fire times of the range.
	code, out, errb := runCmdline(t, "backfill", filepath.Join(dir, "nightly.yaml"), "--from", "2026-03-28", "--to", "2026-03-30T12:00:00+02:00", "--dry-run")
	if code != exitOK {
		t.Fatalf("dry run: exit %d: %s", code, errb)
	}
	golden(t, "backfill-dry-run.golden", out)
}

func TestSchedulerCmdErrors(t *testing.T) {
	t.Setenv(envRedisURL, "")
	t.Setenv(envPipelines, "")
	dir := t.TempDir()
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"scheduler", "--pipelines", dir}, exitFailure, "no Redis: give --redis URL or set THREADMILL_REDIS_URL"},
		{[]string{"scheduler", "--pipelines", filepath.Join(dir, "missing")}, exitFailure, "pipelines directory " + filepath.Join(dir, "missing") + " (from --pipelines): stat"},
		{[]string{"scheduler", "--pipelines", dir, "--health-addr", "nope"}, exitUsage, `--health-addr "nope": want host:port`},
		{[]string{"scheduler", "--pipelines", dir, "--metrics-addr", ":99999"}, exitUsage, `--metrics-addr ":99999": port "99999" is not a number`},
		{[]string{"scheduler", "--pipelines", dir, "--metrics-addr", ":9", "--health-addr", ":8"}, exitUsage, "name the same server: give one of them"},
		{[]string{"schedule", "ls", "--pipelines", filepath.Join(dir, "missing")}, exitFailure, "(from --pipelines): stat"},
		{[]string{"scheduler", "--pipelines", dir, "--sync-interval", "10ms"}, exitUsage, "--sync-interval must be at least 1s"},
		{[]string{"scheduler", "--pipelines", dir, "--log-level", "loud"}, exitUsage, "--log-level"},
		{[]string{"scheduler", "--pipelines", dir, "--redis", "unix:///nonexistent/redis.sock"}, exitFailure, "does not answer"},
		{[]string{"schedule"}, exitUsage, "schedule needs a subcommand: ls"},
		{[]string{"schedule", "ls", "--next", "0"}, exitUsage, "--next must be in 1..100"},
	}
	for _, c := range cases {
		code, _, errb := runCmdline(t, c.args...)
		if code != c.code || !strings.Contains(errb, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", c.args, code, errb, c.code, c.want)
		}
	}
	// The variable is named when the directory came from it.
	t.Setenv(envPipelines, filepath.Join(dir, "gone"))
	if code, _, errb := runCmdline(t, "scheduler"); code != exitFailure || !strings.Contains(errb, "(from "+envPipelines+"): stat") {
		t.Errorf("scheduler with a missing %s: exit %d, stderr %q", envPipelines, code, errb)
	}
}
