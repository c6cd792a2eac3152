package scheduler

import (
	"strings"
	"testing"
	"time"
)

func mustSchedule(t testing.TB, expr, tz string) *Schedule {
	t.Helper()
	s, err := ParseSchedule(expr, tz)
	if err != nil {
		t.Fatalf("ParseSchedule(%q, %q): %v", expr, tz, err)
	}
	return s
}

func mustTime(t testing.TB, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func rfc(ts []time.Time) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.Format(time.RFC3339)
	}
	return out
}

func sameList(t *testing.T, what string, got []time.Time, want []string) {
	t.Helper()
	if g := strings.Join(rfc(got), " "); g != strings.Join(want, " ") {
		t.Errorf("%s:\n got  %s\n want %s", what, g, strings.Join(want, " "))
	}
}

// The fire times and windows around both 2026 DST changes in Europe/Madrid
// (29 March: 02:00 -> 03:00; 25 October: 03:00 -> 02:00).
func TestScheduleDST(t *testing.T) {
	cases := []struct {
		name, expr, from string
		want             []string
	}{
		{
			// 02:30 does not exist on 29 March: no fire that day (as asynq's
			// cron behaves); the next window covers the gap.
			name: "daily 02:30, spring forward", expr: "30 2 * * *", from: "2026-03-27T12:00:00Z",
			want: []string{"2026-03-28T02:30:00+01:00", "2026-03-30T02:30:00+02:00", "2026-03-31T02:30:00+02:00"},
		},
		{
			// 02:30 happens twice on 25 October: it fires once, at the first.
			name: "daily 02:30, fall back", expr: "30 2 * * *", from: "2026-10-23T12:00:00Z",
			want: []string{"2026-10-24T02:30:00+02:00", "2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"},
		},
		{
			name: "every 30 minutes in hour 2, fall back", expr: "*/30 2 * * *", from: "2026-10-24T23:00:00Z",
			want: []string{"2026-10-25T02:00:00+02:00", "2026-10-25T02:30:00+02:00", "2026-10-26T02:00:00+01:00"},
		},
		{
			// An hourly job runs every real hour, both passes of 02:00 included.
			name: "hourly, fall back", expr: "0 * * * *", from: "2026-10-24T22:30:00Z",
			want: []string{"2026-10-25T01:00:00+02:00", "2026-10-25T02:00:00+02:00", "2026-10-25T02:00:00+01:00", "2026-10-25T03:00:00+01:00"},
		},
		{
			name: "hourly, spring forward", expr: "0 * * * *", from: "2026-03-28T23:30:00Z",
			want: []string{"2026-03-29T01:00:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-29T04:00:00+02:00"},
		},
		{
			name: "weekly Monday 09:00 across spring forward", expr: "0 9 * * MON", from: "2026-03-20T00:00:00Z",
			want: []string{"2026-03-23T09:00:00+01:00", "2026-03-30T09:00:00+02:00", "2026-04-06T09:00:00+02:00"},
		},
		{
			name: "weekly Monday 09:00 across fall back", expr: "0 9 * * MON", from: "2026-10-17T00:00:00Z",
			want: []string{"2026-10-19T09:00:00+02:00", "2026-10-26T09:00:00+01:00", "2026-11-02T09:00:00+01:00"},
		},
		{
			name: "weekly Sunday 02:30 on both change days", expr: "30 2 * * SUN", from: "2026-03-21T00:00:00Z",
			want: []string{"2026-03-22T02:30:00+01:00", "2026-04-05T02:30:00+02:00"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := mustSchedule(t, c.expr, "Europe/Madrid")
			got := s.NextN(mustTime(t, c.from), len(c.want))
			sameList(t, "Next", got, c.want)

			// Prev walks the same sequence backwards, Floor maps each fire
			// time to itself and the instants between to the earlier one.
			for i := 1; i < len(got); i++ {
				if p := s.Prev(got[i]); !p.Equal(got[i-1]) {
					t.Errorf("Prev(%s) = %s, want %s", got[i].Format(time.RFC3339), p.Format(time.RFC3339), got[i-1].Format(time.RFC3339))
				}
				mid := got[i-1].Add(got[i].Sub(got[i-1]) / 2)
				if f := s.Floor(mid); !f.Equal(got[i-1]) {
					t.Errorf("Floor(%s) = %s, want %s", mid.Format(time.RFC3339), f.Format(time.RFC3339), got[i-1].Format(time.RFC3339))
				}
			}
			for _, f := range got {
				if fl := s.Floor(f); !fl.Equal(f) {
					t.Errorf("Floor(%s) = %s, want itself", f.Format(time.RFC3339), fl.Format(time.RFC3339))
				}
			}
			// Between over the whole span returns the list again.
			sameList(t, "Between", s.Between(mustTime(t, c.from), got[len(got)-1], 0), c.want)
		})
	}
}

func TestWindowsAcrossDST(t *testing.T) {
	s := mustSchedule(t, "30 2 * * *", "Europe/Madrid")
	cases := []struct {
		fire, start string
		hours       float64
	}{
		// The day after spring forward covers the skipped day too: 47 hours.
		{"2026-03-30T02:30:00+02:00", "2026-03-28T02:30:00+01:00", 47},
		{"2026-03-28T02:30:00+01:00", "2026-03-27T02:30:00+01:00", 24},
		// The fall-back day is 25 hours long, and so is its window.
		{"2026-10-26T02:30:00+01:00", "2026-10-25T02:30:00+02:00", 25},
	}
	for _, c := range cases {
		start, end := s.Window(mustTime(t, c.fire))
		if start.Format(time.RFC3339) != c.start || end.Format(time.RFC3339) != c.fire {
			t.Errorf("Window(%s) = [%s, %s), want [%s, %s)", c.fire, start.Format(time.RFC3339), end.Format(time.RFC3339), c.start, c.fire)
		}
		if h := end.Sub(start).Hours(); h != c.hours {
			t.Errorf("Window(%s) is %vh long, want %vh", c.fire, h, c.hours)
		}
	}

	// The repeated 02:30 (CET, the second pass) is not a fire time: an asynq
	// cron that fires then maps back to the first pass, whose run exists.
	second := mustTime(t, "2026-10-25T02:30:00+01:00")
	if f := s.Floor(second); f.Format(time.RFC3339) != "2026-10-25T02:30:00+02:00" {
		t.Errorf("Floor(second 02:30) = %s, want the first 02:30", f.Format(time.RFC3339))
	}

	// Consecutive windows tile time: each starts where the previous ended.
	w := mustSchedule(t, "0 9 * * MON", "Europe/Madrid")
	fires := w.NextN(mustTime(t, "2026-01-01T00:00:00Z"), 60)
	for i := 1; i < len(fires); i++ {
		start, _ := w.Window(fires[i])
		if !start.Equal(fires[i-1]) {
			t.Fatalf("window of %s starts at %s, want %s", fires[i], start, fires[i-1])
		}
	}
}

func TestRunIDsAcrossFallBack(t *testing.T) {
	s := mustSchedule(t, "0 * * * *", "Europe/Madrid")
	fires := s.NextN(mustTime(t, "2026-10-24T23:30:00Z"), 2)
	a, b := RunInfo("hourly", s, fires[0]), RunInfo("hourly", s, fires[1])
	if a.ID != "hourly@2026-10-25T02:00:00+02:00" || b.ID != "hourly@2026-10-25T02:00:00+01:00" {
		t.Fatalf("run ids = %q, %q", a.ID, b.ID)
	}
	if !b.WindowStart.Equal(a.WindowEnd) || b.WindowEnd.Sub(b.WindowStart) != time.Hour {
		t.Errorf("second window = [%s, %s)", b.WindowStart, b.WindowEnd)
	}
}

func TestEveryIsEpochAligned(t *testing.T) {
	s := mustSchedule(t, "@every 7s", "Europe/Madrid")
	at := time.Unix(1_000_000_003, 500)
	n := s.Next(at)
	if n.Unix()%7 != 0 || !n.After(at) || n.Sub(at) > 7*time.Second {
		t.Fatalf("Next(%v) = %v, want the next multiple of 7s since the epoch", at, n)
	}
	if p := s.Prev(n); n.Sub(p) != 7*time.Second {
		t.Errorf("Prev(%v) = %v", n, p)
	}
	if f := s.Floor(n.Add(6 * time.Second)); !f.Equal(n) {
		t.Errorf("Floor = %v, want %v", f, n)
	}
	// Two processes started at different instants agree on the grid.
	a, b := s.Next(time.Unix(1_000_000_002, 0)), s.Next(time.Unix(1_000_000_006, 900))
	if !a.Equal(b) {
		t.Errorf("Next from two start instants = %v, %v", a, b)
	}
}

func TestBetweenCapsToLatest(t *testing.T) {
	s := mustSchedule(t, "*/10 * * * *", "UTC")
	from, to := mustTime(t, "2026-01-01T00:00:00Z"), mustTime(t, "2026-01-01T01:00:00Z")
	sameList(t, "Between cap 3", s.Between(from, to, 3), []string{"2026-01-01T00:40:00Z", "2026-01-01T00:50:00Z", "2026-01-01T01:00:00Z"})
	if got := s.Between(from, to, 0); len(got) != 6 {
		t.Errorf("Between without cap = %d fire times, want 6 (from is exclusive, to inclusive)", len(got))
	}
	if got := s.Between(to, from, 0); len(got) != 0 {
		t.Errorf("Between of an empty range = %v", got)
	}
}

func TestScheduleErrors(t *testing.T) {
	cases := []struct{ expr, tz, want string }{
		{"", "UTC", "schedule.cron is empty"},
		{"61 * * * *", "UTC", `schedule.cron "61 * * * *"`},
		{"0 9 * * MON", "Mars/Olympus", `schedule.timezone "Mars/Olympus"`},
		{"CRON_TZ=UTC 0 9 * * *", "", "set the zone with schedule.timezone"},
		{"@every 1500ms", "UTC", "whole number of seconds"},
		{"@every soon", "UTC", `schedule.cron "@every soon"`},
	}
	for _, c := range cases {
		_, err := ParseSchedule(c.expr, c.tz)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseSchedule(%q, %q) error = %v, want it to contain %q", c.expr, c.tz, err, c.want)
		}
	}
}

func TestSpecCarriesZone(t *testing.T) {
	s := mustSchedule(t, "0 9 * * MON", "Europe/Madrid")
	if s.Spec() != "CRON_TZ=Europe/Madrid 0 9 * * MON" {
		t.Errorf("Spec() = %q", s.Spec())
	}
	if mustSchedule(t, "@daily", "").Location() != time.UTC {
		t.Error("empty timezone is not UTC")
	}
}

func TestMissedPolicies(t *testing.T) {
	s := mustSchedule(t, "0 * * * *", "UTC")
	after, now := mustTime(t, "2026-05-01T00:30:00Z"), mustTime(t, "2026-05-01T05:10:00Z")
	sameList(t, "none", Missed(s, PolicyNone, 0, after, now), nil)
	sameList(t, "latest", Missed(s, PolicyLatest, 0, after, now), []string{"2026-05-01T05:00:00Z"})
	sameList(t, "all", Missed(s, PolicyAll, 10, after, now), []string{
		"2026-05-01T01:00:00Z", "2026-05-01T02:00:00Z", "2026-05-01T03:00:00Z", "2026-05-01T04:00:00Z", "2026-05-01T05:00:00Z",
	})
	sameList(t, "all, limit 2", Missed(s, PolicyAll, 2, after, now), []string{"2026-05-01T04:00:00Z", "2026-05-01T05:00:00Z"})
	sameList(t, "nothing missed", Missed(s, PolicyAll, 10, mustTime(t, "2026-05-01T05:00:00Z"), now), nil)
	if _, err := ParsePolicy("sometimes"); err == nil || !strings.Contains(err.Error(), "want none, latest or all") {
		t.Errorf("ParsePolicy(sometimes) error = %v", err)
	}
}

func TestRunIDRoundTrip(t *testing.T) {
	loc, _ := time.LoadLocation("Europe/Madrid")
	f := mustTime(t, "2026-03-30T07:00:00Z")
	id := RunID("weekly-support-brief", f, loc)
	if id != "weekly-support-brief@2026-03-30T09:00:00+02:00" {
		t.Fatalf("RunID = %q", id)
	}
	p, g, err := ParseRunID(id)
	if err != nil || p != "weekly-support-brief" || !g.Equal(f) {
		t.Fatalf("ParseRunID(%q) = %q, %v, %v", id, p, g, err)
	}
	for _, bad := range []string{"", "x", "@2026-03-30T09:00:00Z", "p@", "p@yesterday"} {
		if _, _, err := ParseRunID(bad); err == nil {
			t.Errorf("ParseRunID(%q) succeeded", bad)
		}
	}
}

func FuzzParseSchedule(f *testing.F) {
	for _, s := range []string{"0 9 * * MON", "*/5 * * * *", "@daily", "@every 90s", "30 2 * * *", "0 0 30 2 *", "@every 0s", "1-5/2 */3 L * *"} {
		f.Add(s, "Europe/Madrid")
	}
	f.Fuzz(func(t *testing.T, expr, tz string) {
		if strings.ContainsAny(tz, "/\\.") && len(tz) > 40 {
			return
		}
		s, err := ParseSchedule(expr, tz)
		if err != nil {
			return
		}
		at := time.Date(2026, 10, 24, 12, 0, 0, 0, time.UTC)
		n := s.Next(at)
		if n.IsZero() {
			return
		}
		if !n.After(at) {
			t.Fatalf("Next(%v) = %v is not after", at, n)
		}
		if fl := s.Floor(n); !fl.Equal(n) {
			t.Fatalf("%q: Floor(Next) = %v, want %v", expr, fl, n)
		}
		if p := s.Prev(n); !p.IsZero() && !p.Before(n) {
			t.Fatalf("%q: Prev(%v) = %v", expr, n, p)
		}
	})
}

func FuzzParseRunID(f *testing.F) {
	f.Add("weekly@2026-03-30T09:00:00+02:00")
	f.Add("a@b@2026-01-01T00:00:00Z")
	f.Fuzz(func(t *testing.T, id string) {
		p, fire, err := ParseRunID(id)
		if err != nil {
			return
		}
		if again := RunID(p, fire, fire.Location()); again != id {
			// Only canonical RFC 3339 forms round-trip (e.g. "Z" vs "+00:00").
			if _, f2, err := ParseRunID(again); err != nil || !f2.Equal(fire) {
				t.Fatalf("RunID(ParseRunID(%q)) = %q, which does not parse back to the same time", id, again)
			}
		}
	})
}
