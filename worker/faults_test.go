package worker_test

import (
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/threadmill/threadmill/results"
	"github.com/threadmill/threadmill/runstore"
	"github.com/threadmill/threadmill/worker"
	"github.com/threadmill/threadmill/workspace/simulator"
)

const faultsPipeline = `
version: 1
name: faults
workspace: { project: proj_test }
defaults: { max_tokens: 80 }
limits: { concurrency: 16, max_attempts: 12 }
artifacts:
  docs: { folder: "Inbox" }
steps:
  - id: summarize
    for_each: docs
    prompt: "Summarize {{ .Artifact.Name }}."
`

func TestFaultsEveryItemSucceedsRetriesRecordedRetryAfterHonoured(t *testing.T) {
	e := newEnv(t, simulator.Config{
		Async:   true,
		Latency: 20 * time.Millisecond,
		Faults: simulator.Faults{
			Error500: 0.04, Error502: 0.03, Error503: 0.03, // 10% 5xx
			TooMany429: 0.05,
			CutStream:  0.3,
			RetryAfter: time.Second,
			Seed:       7,
		},
	})
	e.folder("Inbox", 30)
	e.startWorker()
	run := e.start(e.pipeline(faultsPipeline), "faults-1")
	st := e.wait(run, 3*time.Minute)
	if st.Status != runstore.StatusSucceeded {
		t.Fatalf("status %q (succeeded %d, failed %d, error %q)", st.Status, st.Succeeded, st.Failed, st.Error)
	}
	items := readItems(t, resultsFile(st.ResultDir))
	if len(items) != 30 {
		t.Fatalf("%d result lines, want 30", len(items))
	}
	retried := 0
	var in, out int64
	for _, it := range items {
		if it.State != results.StateSucceeded {
			t.Errorf("item %s: %s (%s)", it.Key, it.State, it.Error)
		}
		if it.Attempts > 1 {
			retried++
		}
		in += int64(it.Usage.InputTokens)
		out += int64(it.Usage.OutputTokens)
	}
	c := e.sim.Counters()
	t.Logf("faults injected: %v; items retried: %d; run retries: %d", c.Faults, retried, st.Retries)
	if c.Faults["429"] == 0 || c.Faults["500"]+c.Faults["502"]+c.Faults["503"] == 0 || c.Faults["cut_stream"] == 0 {
		t.Fatalf("the simulator injected too few faults to test anything: %v", c.Faults)
	}
	if retried == 0 || st.Retries == 0 || readRun(t, st.ResultDir).Retries != st.Retries {
		t.Errorf("retries not recorded: %d items with attempts > 1, run retries %d", retried, st.Retries)
	}
	// Exactly-once effects: no item paid for a second interaction, and the
	// usage in the results is what the simulator billed.
	if c.InteractionsCreated != 30 {
		t.Errorf("simulator created %d interactions for 30 items", c.InteractionsCreated)
	}
	if in != c.TokensIn || out != c.TokensOut {
		t.Errorf("results usage %d/%d, simulator billed %d/%d", in, out, c.TokensIn, c.TokensOut)
	}
	// Retry-After honoured fleet-wide: once a worker has received a 429 (or
	// a 503 with Retry-After), no worker sends a request until the pause is
	// over. Times are taken in the workers' HTTP transport; the margin
	// covers the moment between receiving the answer and publishing the
	// pause, when requests already past the gate may still leave.
	const margin = 150 * time.Millisecond
	reqs := e.sent.snapshot()
	checked := 0
	for _, r := range reqs {
		if r.RetryAfter == "" || (r.Status != 429 && r.Status != 503) {
			continue
		}
		secs, err := strconv.Atoi(r.RetryAfter)
		if err != nil {
			t.Fatalf("Retry-After %q", r.RetryAfter)
		}
		from, to := r.Answered.Add(margin), r.Answered.Add(time.Duration(secs)*time.Second-margin)
		checked++
		for _, o := range reqs {
			if o.Arrived.After(from) && o.Arrived.Before(to) {
				t.Errorf("%s %s sent %v after a %d with Retry-After %ss was received", o.Method, o.Path, o.Arrived.Sub(r.Answered), r.Status, r.RetryAfter)
			}
		}
	}
	if checked == 0 {
		t.Error("no answer with Retry-After to check")
	}
}

func TestTwoWorkersShareARunAndItsRateLimit(t *testing.T) {
	// Two asynq servers in this process, each with its own Redis connection
	// pools (asynq's and the run store's), stand for two worker machines.
	e := newEnv(t, simulator.Config{Latency: 10 * time.Millisecond})
	e.folder("Inbox", 24)
	var n1, n2 atomic.Int64
	e.startWorker(func(c *worker.Config) { c.OnItemDone = func(results.Item) { n1.Add(1) } })
	e.startWorker(func(c *worker.Config) { c.OnItemDone = func(results.Item) { n2.Add(1) } })
	// Both serving before the run starts: on a loaded machine the second
	// could start after the first had taken every item.
	insp := asynq.NewInspectorFromRedisClient(e.rdb())
	waitFor(t, 30*time.Second, "two asynq servers", func() bool {
		srvs, err := insp.Servers()
		return err == nil && len(srvs) == 2
	})
	p := e.pipeline(`
version: 1
name: shared
workspace: { project: proj_test }
defaults: { max_tokens: 40 }
limits: { concurrency: 16, requests_per_minute: 600 }
artifacts:
  docs: { folder: "Inbox" }
steps:
  - id: summarize
    for_each: docs
    prompt: "Summarize {{ .Artifact.Name }}."
`)
	run := e.start(p, "shared-1")
	st := e.wait(run, 2*time.Minute)
	if st.Status != runstore.StatusSucceeded {
		t.Fatalf("status %q (error %q)", st.Status, st.Error)
	}
	if n1.Load() == 0 || n2.Load() == 0 || n1.Load()+n2.Load() != 24 {
		t.Errorf("items per worker: %d and %d; want both > 0, 24 in all", n1.Load(), n2.Load())
	}
	c := e.sim.Counters()
	if c.InteractionsCreated != 24 {
		t.Errorf("%d interactions for 24 items", c.InteractionsCreated)
	}
	// 600 requests per minute is 10 per second; the shared limiter spaces
	// requests evenly, so any window of w seconds holds at most 10w+1.
	total := 0
	for _, n := range c.PerSecond {
		total += n
	}
	for w := 1; w <= 4; w++ {
		if got, limit := c.MaxInWindow(w), 10*w+1; got > limit {
			t.Errorf("%d requests within %d s, limit %d (per second: %v)", got, w, limit, c.PerSecond)
		}
	}
	if total < 70 {
		t.Errorf("only %d requests: the test did not load the limiter", total)
	}
}

// rpmFaultsPipeline is faultsPipeline limited to 1,200 requests a minute.
var rpmFaultsPipeline = strings.Replace(faultsPipeline, "max_attempts: 12 }", "max_attempts: 12, requests_per_minute: 1200 }", 1)

// everyFault is a server that loses create answers, lags after a 201 (404
// on the next reads) and answers 429s with Retry-After.
func everyFault(latency time.Duration, seed uint64) simulator.Config {
	return simulator.Config{Async: true, Latency: latency,
		Faults: simulator.Faults{LostCreate: 0.15, ReplicaLag: 0.15, LagDuration: 300 * time.Millisecond,
			TooMany429: 0.05, RetryAfter: time.Second, Seed: seed}}
}

// assertEveryFaultPaidOnce checks that each fault of everyFault was
// injected, that each of n items was created and billed once, and that
// the run kept to rpmFaultsPipeline's 1,200 a minute: any window of w
// seconds holds at most 20w+1 requests, 429s included.
func assertEveryFaultPaidOnce(t *testing.T, e *env, st *runstore.RunState, n int) {
	t.Helper()
	c := e.sim.Counters()
	if c.Faults["lost_create"] == 0 || c.Faults["replica_lag"] == 0 || c.Faults["429"] == 0 {
		t.Fatalf("faults injected %v: each kind is needed", c.Faults)
	}
	assertPaidOnce(t, e, st, n)
	for w := 1; w <= 3; w++ {
		if got, limit := c.MaxInWindow(w), 20*w+1; got > limit {
			t.Errorf("%d requests within %d s, limit %d (per second: %v)", got, w, limit, c.PerSecond)
		}
	}
}

// A pipeline with requests_per_minute, shared by two workers, against a
// server that loses create answers, lags after a 201 and answers 429s:
// every request waits for its reserved slot (and a 429's pause, which
// makes a reserved slot stale), no item is paid twice, and the fleet keeps
// to the limit.
func TestRateLimitedRunUnderFaultsPaysOnceAndKeepsTheLimit(t *testing.T) {
	const items = 40
	e := newEnv(t, everyFault(20*time.Millisecond, 7))
	e.folder("Inbox", items)
	e.startWorker(func(c *worker.Config) { c.Concurrency = 8 })
	e.startWorker(func(c *worker.Config) { c.Concurrency = 8 })
	st := e.wait(e.start(e.pipeline(rpmFaultsPipeline), "rpm-faults-1"), 3*time.Minute)
	assertEveryFaultPaidOnce(t, e, st, items)
}

// Every fault at once, and a worker killed mid-run: lost create answers,
// 404 after 201 (replica lag), 429s with Retry-After, a requests_per_minute
// limit, and the worker that took the first items cut off from Redis for
// good (a SIGKILL, as Redis sees it) while its interactions are in flight.
// A second worker rescues its items (orphan check) and finishes the run:
// each item is created and billed exactly once (simulator counters), and
// the limit holds in every window.
func TestEveryFaultAndAKilledWorkerPayOnce(t *testing.T) {
	const items = 24
	e := newEnv(t, everyFault(2*time.Second, 11))
	e.folder("Inbox", items)
	proxy, stopDead := e.startDoomedWorker(func(c *worker.Config) { c.Concurrency = 8 })
	run := e.start(e.pipeline(rpmFaultsPipeline), "all-faults-1")
	waitFor(t, time.Minute, "interactions in flight on the worker about to die", func() bool {
		return e.processing() >= 4
	})
	proxy.Cut()
	e.startWorker(func(c *worker.Config) {
		c.Concurrency = 8
		c.OrphanCheck = 100 * time.Millisecond
		c.OrphanGrace = 200 * time.Millisecond
	})
	// asynq's lease (30s) must expire before the rescue; the bound is generous.
	st := e.wait(run, 3*time.Minute)
	stopDead()
	assertEveryFaultPaidOnce(t, e, st, items)
}
