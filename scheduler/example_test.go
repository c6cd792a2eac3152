package scheduler_test

import (
	"fmt"
	"time"

	"github.com/threadmill/threadmill/scheduler"
)

// The weekly brief, every Monday at 09:00 in Madrid: run ids, windows and
// the fire times around the spring-forward change.
func ExampleSchedule() {
	s, err := scheduler.ParseSchedule("0 9 * * MON", "Europe/Madrid")
	if err != nil {
		panic(err)
	}
	fmt.Println(s.Spec())
	for _, f := range s.NextN(time.Date(2026, 3, 20, 0, 0, 0, 0, time.UTC), 2) {
		run := scheduler.RunInfo("weekly-support-brief", s, f)
		fmt.Printf("%s window [%s, %s) %vh\n", run.ID, run.WindowStart.Format(time.RFC3339),
			run.WindowEnd.Format(time.RFC3339), run.WindowEnd.Sub(run.WindowStart).Hours())
	}
	// Output:
	// CRON_TZ=Europe/Madrid 0 9 * * MON
	// weekly-support-brief@2026-03-23T09:00:00+01:00 window [2026-03-16T09:00:00+01:00, 2026-03-23T09:00:00+01:00) 168h
	// weekly-support-brief@2026-03-30T09:00:00+02:00 window [2026-03-23T09:00:00+01:00, 2026-03-30T09:00:00+02:00) 167h
}

// A daily 02:30 job in Madrid does not fire on the spring-forward day (02:30
// does not exist) and fires once on the fall-back day (02:30 happens twice).
func ExampleSchedule_dst() {
	s, _ := scheduler.ParseSchedule("30 2 * * *", "Europe/Madrid")
	for _, from := range []string{"2026-03-27T12:00:00Z", "2026-10-23T12:00:00Z"} {
		t, _ := time.Parse(time.RFC3339, from)
		for _, f := range s.NextN(t, 3) {
			fmt.Println(f.Format(time.RFC3339))
		}
	}
	// Output:
	// 2026-03-28T02:30:00+01:00
	// 2026-03-30T02:30:00+02:00
	// 2026-03-31T02:30:00+02:00
	// 2026-10-24T02:30:00+02:00
	// 2026-10-25T02:30:00+02:00
	// 2026-10-26T02:30:00+01:00
}

// Catch-up after downtime: which missed fire times each policy starts.
func ExampleMissed() {
	s, _ := scheduler.ParseSchedule("0 * * * *", "UTC")
	down := time.Date(2026, 5, 1, 0, 30, 0, 0, time.UTC)
	back := time.Date(2026, 5, 1, 5, 10, 0, 0, time.UTC)
	for _, p := range []scheduler.Policy{scheduler.PolicyNone, scheduler.PolicyLatest, scheduler.PolicyAll} {
		var hours []string
		for _, f := range scheduler.Missed(s, p, 3, down, back) {
			hours = append(hours, f.Format("15:04"))
		}
		fmt.Println(p, hours)
	}
	// Output:
	// none []
	// latest [05:00]
	// all [03:00 04:00 05:00]
}
