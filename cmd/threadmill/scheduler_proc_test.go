package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/threadmill/threadmill/internal/redistest"
	"github.com/threadmill/threadmill/runstore"
	"github.com/threadmill/threadmill/scheduler"
	"github.com/threadmill/threadmill/worker"
)

// schedLog is a goroutine-safe buffer for a subprocess's stderr.
type schedLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *schedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *schedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var healthAddrRe = regexp.MustCompile(`"msg":"serving metrics and health","addr":"([^"]+)"`)

// Two `threadmill scheduler` processes on one Redis and one directory: a
// pipeline firing every second gets exactly one run per fire time, an
// hourly one whose last handled time was five hours ago is caught up once
// (catchup: all, limit 3), asynq's Inspector lists both processes' entries
// with their next fire times, /healthz answers, and SIGTERM stops both
// cleanly.
func TestTwoSchedulerProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := threadmillBin // built by TestMain
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		// No worker runs these runs: overlap allow starts every second's
		// run without waiting for the previous one.
		"tick.yaml":   schedPipeline("tick", `{ cron: "@every 1s", catchup: none, overlap: allow }`),
		"hourly.yaml": schedPipeline("hourly", `{ cron: "0 * * * *", catchup: all, catchup_limit: 3 }`),
	})
	started := time.Now()
	cursor := started.Add(-5 * time.Hour).UnixMilli()
	if err := rdb.Set(context.Background(), scheduler.DefaultPrefix+"sched:cursor:hourly", cursor, 0).Err(); err != nil {
		t.Fatal(err)
	}

	type proc struct {
		cmd  *exec.Cmd
		log  *schedLog
		done chan error
	}
	var procs []*proc
	for range 2 {
		p := &proc{log: &schedLog{}, done: make(chan error, 1)}
		p.cmd = exec.Command(bin, "scheduler", "--pipelines", dir, "--redis", srv.URL(),
			"--health-addr", "127.0.0.1:0", "--log-format", "json", "--log-level", "debug")
		p.cmd.Env = append(p.cmd.Environ(), "THREADMILL_REDIS_URL=", "THREADMILL_PIPELINES=")
		p.cmd.Stderr = p.log
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { p.done <- p.cmd.Wait() }()
		t.Cleanup(func() {
			if p.cmd.ProcessState == nil {
				_ = p.cmd.Process.Kill()
				<-p.done
			}
			if t.Failed() {
				t.Logf("scheduler %d log:\n%s", p.cmd.Process.Pid, p.log.String())
			}
		})
		procs = append(procs, p)
	}

	store := runstore.New(rdb, "")
	runsOf := func(pipeline string) []runstore.RunState {
		runs, err := store.Runs(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var out []runstore.RunState
		for _, r := range runs {
			if r.Pipeline == pipeline {
				out = append(out, r)
			}
		}
		return out
	}
	waitFor := func(within time.Duration, what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(within)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out after %v waiting for %s", within, what)
			}
			time.Sleep(50 * time.Millisecond) // polling a condition, bounded by the deadline
		}
	}
	waitFor(30*time.Second, "6 runs of tick", func() bool { return len(runsOf("tick")) >= 6 })

	insp := asynq.NewInspectorFromRedisClient(rdb)
	waitFor(15*time.Second, "4 scheduler entries (2 pipelines x 2 processes)", func() bool {
		ents, err := insp.SchedulerEntries()
		return err == nil && len(ents) == 4
	})
	ents, _ := insp.SchedulerEntries()
	var specs []string
	for _, e := range ents {
		if e.Next.Before(started) {
			t.Errorf("entry %s: next fire time %v", e.Spec, e.Next)
		}
		specs = append(specs, e.Spec)
	}
	slices.Sort(specs)
	if want := []string{"@every 1s", "@every 1s", "CRON_TZ=UTC 0 * * * *", "CRON_TZ=UTC 0 * * * *"}; !slices.Equal(specs, want) {
		t.Errorf("entry specs = %v, want %v", specs, want)
	}

	counted := 0
	for _, p := range procs {
		m := healthAddrRe.FindStringSubmatch(p.log.String())
		if m == nil {
			t.Fatalf("no health address in the log:\n%s", p.log.String())
		}
		resp, err := http.Get("http://" + m[1] + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		var h scheduler.Health
		err = json.NewDecoder(resp.Body).Decode(&h)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || !h.OK || !slices.Equal(h.Entries, []string{"hourly", "tick"}) {
			t.Errorf("GET /healthz: %d %+v %v", resp.StatusCode, h, err)
		}
		resp, err = http.Get("http://" + m[1] + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, series := range []string{"threadmill_scheduler_entries 2", "threadmill_scheduler_last_sync_timestamp_seconds", `threadmill_queue_tasks{`} {
			if !strings.Contains(string(body), series) {
				t.Errorf("GET /metrics has no %s", series)
			}
		}
		// Whichever process handled a fire task counted it.
		if strings.Contains(string(body), `threadmill_scheduler_fires_total{outcome="created",pipeline="tick"}`) {
			counted++
		}
	}

	if counted == 0 {
		t.Error("no process counted a created tick run in threadmill_scheduler_fires_total")
	}
	for _, p := range procs {
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range procs {
		select {
		case err := <-p.done:
			if err != nil {
				t.Errorf("scheduler exited with %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("scheduler did not stop within 20s of SIGTERM")
		}
	}

	// Exactly one run per fire time: consecutive seconds, no gap, no double.
	var fires []time.Time
	for _, r := range runsOf("tick") {
		_, f, err := scheduler.ParseRunID(r.ID)
		if err != nil {
			t.Fatal(err)
		}
		fires = append(fires, f)
	}
	slices.SortFunc(fires, func(a, b time.Time) int { return a.Compare(b) })
	for i := 1; i < len(fires); i++ {
		if d := fires[i].Sub(fires[i-1]); d != time.Second {
			t.Errorf("tick fire times %s and %s are %v apart", fires[i-1].Format(time.RFC3339), fires[i].Format(time.RFC3339), d)
		}
	}
	// The hourly catch-up: the last three hours, once, although both
	// processes caught up at start.
	var hourly []string
	waiting := 0
	for _, r := range runsOf("hourly") {
		hourly = append(hourly, r.ID)
		if r.WaitingFor != "" {
			waiting++ // caught-up fire times queue behind each other (overlap)
		}
	}
	slices.Sort(hourly)
	var want []string
	last := started.UTC().Truncate(time.Hour)
	for i := 2; i >= 0; i-- {
		want = append(want, "hourly@"+last.Add(-time.Duration(i)*time.Hour).Format(time.RFC3339))
	}
	// (Unless the test crossed an hour boundary, which adds an on-time run.)
	crossed := !time.Now().UTC().Truncate(time.Hour).Equal(last)
	if !crossed && !slices.Equal(hourly, want) {
		t.Errorf("hourly runs = %v, want %v", hourly, want)
	}
	// No worker runs the hourly runs: the first caught-up one started, the
	// others wait for it (schedule.overlap skip queues caught-up fire times).
	if !crossed && waiting != len(hourly)-1 {
		t.Errorf("%d of the hourly runs %v wait, want all but the first", waiting, hourly)
	}
	// One run:start task per run started, on the workers' priority queue.
	q, err := insp.GetQueueInfo(worker.PriorityQueue("threadmill"))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(fires) + len(hourly) - waiting; q.Size != n {
		t.Errorf("queue %s holds %d tasks for %d runs started", q.Queue, q.Size, n)
	}
	// `threadmill status` shows each run once.
	out, err := exec.Command(bin, "status", "--redis", srv.URL()).Output()
	if err != nil {
		t.Fatalf("threadmill status: %v", err)
	}
	for _, f := range fires {
		id := "tick@" + f.Format(time.RFC3339)
		if n := strings.Count(string(out), id+" "); n != 1 {
			t.Errorf("threadmill status shows %s %d times:\n%s", id, n, out)
		}
	}
	// Each process logged its own fires: both took part.
	for _, p := range procs {
		if !strings.Contains(p.log.String(), `"msg":"scheduler started"`) {
			t.Errorf("process %d did not start scheduling", p.cmd.Process.Pid)
		}
	}
	t.Logf("%d tick runs, %d hourly runs in %s", len(fires), len(hourly), strconv.Quote(time.Since(started).Round(time.Millisecond).String()))
}
