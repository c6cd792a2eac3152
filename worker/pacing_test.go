package worker_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/threadmill/threadmill/metrics"
	"github.com/threadmill/threadmill/results"
	"github.com/threadmill/threadmill/runstore"
	"github.com/threadmill/threadmill/worker"
	"github.com/threadmill/threadmill/workspace/simulator"
)

var _ worker.PacingObserver = (*metrics.Metrics)(nil)

// answer429 answers the first n requests whose path ends with suffix with
// 429 and the Retry-After that retryAfter returns, without passing them on,
// all at once when the n-th arrives (or after 10s): n answers of one
// overload. The rest go to base. first is closed with the first such answer.
type answer429 struct {
	base       http.RoundTripper
	suffix     string
	n          int64
	retryAfter func() string
	sent       atomic.Int64
	first      chan struct{}
	once       sync.Once
	all        chan struct{} // closed when the n-th arrives
	allOnce    sync.Once
}

func (a *answer429) RoundTrip(r *http.Request) (*http.Response, error) {
	if !strings.HasSuffix(r.URL.Path, a.suffix) {
		return a.base.RoundTrip(r)
	}
	k := a.sent.Add(1)
	if k > a.n {
		return a.base.RoundTrip(r)
	}
	if r.Body != nil {
		_ = r.Body.Close()
	}
	if k == a.n {
		a.allOnce.Do(func() { close(a.all) })
	}
	select {
	case <-a.all:
	case <-time.After(10 * time.Second):
	}
	defer a.once.Do(func() { close(a.first) })
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("Retry-After", a.retryAfter())
	body := `{"message":"too many requests: come back tomorrow"}`
	return &http.Response{
		StatusCode: http.StatusTooManyRequests, Status: "429 Too Many Requests",
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: h,
		Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body)), Request: r,
	}, nil
}

// countingHandler counts log records whose message contains substr, and
// passes every record to next.
type countingHandler struct {
	slog.Handler
	substr string
	n      *atomic.Int64
}

func (h countingHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h countingHandler) Handle(ctx context.Context, r slog.Record) error {
	if strings.Contains(r.Message, h.substr) {
		h.n.Add(1)
	}
	return h.Handler.Handle(ctx, r)
}

func (h countingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return countingHandler{h.Handler.WithAttrs(as), h.substr, h.n}
}

func (h countingHandler) WithGroup(g string) slog.Handler {
	return countingHandler{h.Handler.WithGroup(g), h.substr, h.n}
}

const pacingPipeline = `
version: 1
name: pacing
workspace: { project: proj_test }
defaults: { max_tokens: 40 }
limits: { concurrency: 16, max_attempts: 2 }
artifacts:
  docs: { folder: "Inbox" }
steps:
  - id: summarize
    for_each: docs
    prompt: "Summarize {{ .Artifact.Name }}."
`

// A Retry-After of a day, in seconds or as an HTTP date, pauses the fleet
// for the cap, not for a day; the capped wait is logged once however many
// answers asked for it; the items waiting for it do not use up attempts.
func TestRetryAfterOfADayIsCapped(t *testing.T) {
	for _, tc := range []struct {
		name       string
		retryAfter func() string
	}{
		{"seconds", func() string { return "86400" }},
		{"http-date", func() string { return time.Now().Add(24 * time.Hour).UTC().Format(http.TimeFormat) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const items, rejected, maxWait = 8, 4, 2 * time.Second
			e := newEnv(t, simulator.Config{Latency: 10 * time.Millisecond})
			e.folder("Inbox", items)
			// The first four validations (of eight items sent at once) are
			// answered 429 with a Retry-After of a day.
			inj := &answer429{base: e.sent.base, suffix: "/chat/validate", n: rejected, retryAfter: tc.retryAfter, first: make(chan struct{}), all: make(chan struct{})}
			e.sent.base = inj
			var logged atomic.Int64
			m := metrics.New(metrics.Options{NoRuntimeCollectors: true})
			e.startWorker(func(c *worker.Config) {
				c.MaxRetryAfter = maxWait
				c.Logger = slog.New(countingHandler{c.Logger.Handler(), "longer than the cap", &logged})
				c.Observer = m
			})
			run := e.start(e.pipeline(pacingPipeline), "pacing-"+tc.name)
			select {
			case <-inj.first:
			case <-time.After(time.Minute):
				t.Fatal("no validation was sent")
			}
			// The pause is set right after the answer is received; wait for
			// it (a condition, not a sleep) and check it is capped.
			var p *runstore.PauseState
			deadline := time.Now().Add(10 * time.Second)
			for p == nil && time.Now().Before(deadline) {
				var err error
				if p, err = e.store.PauseInfo(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			if p == nil {
				t.Fatal("no fleet pause after a 429 with Retry-After")
			}
			if p.Left > maxWait || p.Granted != maxWait || p.Asked < 23*time.Hour || p.Status != 429 {
				t.Errorf("fleet pause %+v: want at most %v left, granted %v, asked about a day, status 429", p, maxWait, maxWait)
			}
			if d, err := e.store.Paused(context.Background()); err != nil || d > maxWait {
				t.Errorf("pause key lives %v (%v), cap %v", d, err, maxWait)
			}

			st := e.wait(run, time.Minute)
			if st.Status != runstore.StatusSucceeded || st.Succeeded != items {
				t.Fatalf("status %q, %d succeeded (error %q)", st.Status, st.Succeeded, st.Error)
			}
			if got := inj.sent.Load(); got < items+rejected {
				t.Errorf("%d validations sent, want at least %d", got, items+rejected)
			}
			// max_attempts is 2: a 429 that counted as an attempt would show.
			for _, it := range readItems(t, resultsFile(st.ResultDir)) {
				if it.State != results.StateSucceeded || it.Attempts != 1 {
					t.Errorf("item %s: %s after %d attempts (%s)", it.Key, it.State, it.Attempts, it.Error)
				}
			}
			if st.Retries != 0 {
				t.Errorf("run counts %d retries; waiting for the API is not one", st.Retries)
			}
			assertOneInteractionEach(t, e, items)
			if n := logged.Load(); n != 1 {
				t.Errorf("the capped wait was logged %d times, want once", n)
			}
			if n := gathered(t, m, "threadmill_api_retry_after_capped_total"); n != rejected {
				t.Errorf("capped Retry-After counter %v, want %d", n, rejected)
			}
		})
	}
}

// A server that limits requests per second, and a pipeline with no limit:
// the fleet adapts its rate to the server's, every item succeeds, no item
// uses an attempt on a 429, and few requests are answered 429.
func TestServerRateLimitLosesNoItem(t *testing.T) {
	const items, rps = 200, 40
	e := newEnv(t, simulator.Config{Latency: 20 * time.Millisecond, RateLimit: rps})
	e.folder("Inbox", items)
	e.startWorker()
	p := e.pipeline(pacingPipeline)
	start := time.Now()
	run := e.start(p, "ratelimited-1")
	st := e.wait(run, 3*time.Minute)
	elapsed := time.Since(start)
	if st.Status != runstore.StatusSucceeded || st.Succeeded != items {
		t.Fatalf("status %q, %d of %d succeeded (error %q)", st.Status, st.Succeeded, items, st.Error)
	}
	for _, it := range readItems(t, resultsFile(st.ResultDir)) {
		if it.Attempts != 1 {
			t.Errorf("item %s: %d attempts (%s)", it.Key, it.Attempts, it.Error)
		}
	}
	c := e.sim.Counters()
	total := 0
	for _, n := range c.PerSecond {
		total += n
	}
	share := float64(c.RateLimited) / float64(total)
	t.Logf("%d requests in %v (%.1f/s, server limit %d/s), %d answered 429 (%.1f%%)",
		total, elapsed.Round(time.Millisecond), float64(total-c.RateLimited)/elapsed.Seconds(), rps, c.RateLimited, 100*share)
	if share >= 0.10 {
		t.Errorf("%.1f%% of the requests were answered 429, want < 10%%", 100*share)
	}
	// A 429 to a create created nothing: no item paid twice.
	assertOneInteractionEach(t, e, items)
}

// gathered returns the value of an unlabelled counter or gauge of m.
func gathered(t *testing.T, m *metrics.Metrics, name string) float64 {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name || len(mf.GetMetric()) != 1 {
			continue
		}
		if c := mf.GetMetric()[0].GetCounter(); c != nil {
			return c.GetValue()
		}
		return mf.GetMetric()[0].GetGauge().GetValue()
	}
	t.Fatalf("no metric %s", name)
	return 0
}
