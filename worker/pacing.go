package worker

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/threadmill/threadmill/runstore"
	"github.com/threadmill/threadmill/workspace"
)

// The server paces, we adapt. Every request of a run passes beforeRequest
// and every answer afterResponse (see pacedTransport):
//
//   - An answer 429, or 503 with Retry-After, pauses the whole fleet for its
//     Retry-After, capped at Config.MaxRetryAfter (the header is rewritten to
//     the capped value, so the client's own waits and the item's retry delay
//     are capped too). The pause is logged once, by the worker that started
//     it.
//   - A 429 also cuts the fleet's adaptive request rate to the API server
//     (runstore.Adaptive: multiplicative decrease to 70%, at most once per
//     second, then CUBIC-like growth back and beyond). While that limiter
//     is engaged every request reserves a slot of the shared rate (one
//     Redis round trip); 30 s after the last cut it disengages and
//     requests cost no round trip for it again.
//   - An item whose request meets a pause longer than maxHold, or whose
//     request was answered 429, gives its worker slot back: the error goes
//     to asynq, which does not count it as a failure (isFailure) and tries
//     the item again after the (capped) wait (retryDelay).

// defaultPause is how long the fleet holds back after a 429 that carries no
// Retry-After.
const defaultPause = time.Second

// maxHold is the longest a request waits for the fleet-wide pause inside
// its item's handler; an item that would wait longer gives its worker slot
// back and is tried again when the pause is over.
const maxHold = time.Second

// handBackKey marks the context of an item's attempt, which may give its
// worker slot back instead of waiting for a long pause.
type handBackKey struct{}

// mayHandBack returns ctx marked so that a request sent with it returns a
// *PacedError instead of waiting for a pause longer than maxHold. Control
// tasks (run start, advance, finalize) wait instead.
func mayHandBack(ctx context.Context) context.Context {
	return context.WithValue(ctx, handBackKey{}, true)
}

func handsBack(ctx context.Context) bool {
	b, _ := ctx.Value(handBackKey{}).(bool)
	return b
}

// PacedError is the error of a request the worker did not send because the
// API asked the fleet to wait for longer than it holds a worker slot: the
// item is tried again after Wait, and the wait does not use up an attempt.
type PacedError struct {
	// Wait is the time left of the fleet-wide pause, or how long an item
	// that found no free in-flight slot waits before it asks again.
	Wait time.Duration
	// SlotBusy is set when every slot of the pipeline's limits.concurrency
	// was taken: the item gives its worker slot back meanwhile.
	SlotBusy bool
}

// Error says how long the fleet still waits.
func (e *PacedError) Error() string {
	if e.SlotBusy {
		return fmt.Sprintf("not started: every in-flight slot of the pipeline is taken; the item waits %s with its worker slot given back", e.Wait.Round(time.Millisecond))
	}
	return fmt.Sprintf("not sent: the API asked every worker to wait (%s left)", e.Wait.Round(time.Millisecond))
}

// pacedWait reports whether err is the server pacing us rather than a
// failure (a 429, a 503 with Retry-After, or a request held back by the
// fleet-wide pause) and how long it asked to wait, uncapped.
func pacedWait(err error) (time.Duration, bool) {
	if err == nil {
		return 0, false
	}
	if pe, ok := errors.AsType[*PacedError](err); ok {
		return pe.Wait, true
	}
	ae, ok := errors.AsType[*workspace.APIError](err)
	if !ok {
		return 0, false
	}
	ra, has := workspace.RetryAfter(err)
	switch {
	case ae.StatusCode == http.StatusTooManyRequests:
		if !has || ra <= 0 {
			ra = defaultPause
		}
		return ra, true
	case ae.StatusCode == http.StatusServiceUnavailable && has && ra > 0:
		return ra, true
	}
	return 0, false
}

// isFailure is the asynq IsFailure function: an attempt that only waited
// because the API asked (pacedWait) does not count against the task's
// retries.
func isFailure(err error) bool {
	_, paced := pacedWait(err)
	return !paced
}

// PacingObserver is implemented by observers (a *metrics.Metrics) that
// also want to know about the fleet's pacing. Optional: an Observer without
// these methods is simply not told.
type PacingObserver interface {
	// RetryAfterCapped is called when an answer asked for a longer wait
	// than Config.MaxRetryAfter.
	RetryAfterCapped(asked, capped time.Duration)
	// FleetPacing is called on every look at the shared state (about 20
	// times a second): the fleet-wide pause left and the adaptive request
	// rate (0 while the adaptive limiter is off).
	FleetPacing(pause time.Duration, rate float64)
}

// pacer is the worker's view of the fleet's shared pacing state.
type pacer struct {
	adaptive     *runstore.Adaptive
	engagedUntil atomic.Int64 // the adaptive limiter's end as last known, Unix ns
	epoch        atomic.Int64 // bumped when this worker learns of a new pause
	sent         atomic.Int64 // requests sent since the last tick
}

func (p *pacer) engaged() bool { return time.Now().UnixNano() < p.engagedUntil.Load() }

// noteEngaged records that the adaptive limiter stays on for d.
func (p *pacer) noteEngaged(d time.Duration) {
	if d <= 0 {
		p.engagedUntil.Store(0)
		return
	}
	p.engagedUntil.Store(time.Now().Add(d).UnixNano())
}

// notePause records a fleet-wide pause of d from now, bumping the epoch when
// it ends later than the one known.
func (w *Worker) notePause(d time.Duration) {
	until := time.Now().Add(d).UnixNano()
	for {
		old := w.pausedUntil.Load()
		if until <= old {
			return
		}
		if w.pausedUntil.CompareAndSwap(old, until) {
			w.pace.epoch.Add(1)
			return
		}
	}
}

// beforeRequest waits until a request of run rc may be sent: for the
// fleet-wide pause, then, when the pipeline has a requests-per-minute limit
// or the adaptive limiter is engaged, for a shared slot. In an item's
// attempt (mayHandBack), a pause longer than maxHold returns a *PacedError
// instead of waiting.
func (w *Worker) beforeRequest(ctx context.Context, rc *runCtx) error {
	start := time.Now()
	err := w.awaitSlot(ctx, rc)
	w.cfg.Observer.RateLimitWaited(rc.spec.Pipeline.Name, LimiterRequests, time.Since(start))
	if err == nil {
		w.pace.sent.Add(1)
	}
	return err
}

// awaitSlot is beforeRequest's wait.
func (w *Worker) awaitSlot(ctx context.Context, rc *runCtx) error {
	pl := rc.spec.Pipeline
	for {
		if d := time.Until(time.Unix(0, w.pausedUntil.Load())); d > 0 {
			if d > maxHold && handsBack(ctx) {
				return &PacedError{Wait: d}
			}
			if err := sleep(ctx, d); err != nil {
				return err
			}
			continue
		}
		if !w.pace.engaged() && pl.Limits.RequestsPerMinute <= 0 {
			return nil
		}
		// One script for the pipeline's requests_per_minute and the
		// adaptive rate: it also honours the fleet-wide pause.
		epoch := w.pace.epoch.Load()
		g, err := w.pace.adaptive.Gate(ctx, pl.Name, pl.Limits.RequestsPerMinute)
		if err != nil {
			return err
		}
		if !g.Engaged {
			w.pace.noteEngaged(0)
		}
		if !g.Granted {
			if g.Paused {
				// A pause this worker may not have heard of yet.
				w.notePause(g.Wait)
				continue
			}
			// A little jitter spreads the callers that ask again together.
			if err := sleep(ctx, g.Wait+time.Duration(rand.Int64N(int64(g.Wait/10)+1))); err != nil {
				return err
			}
			continue
		}
		if g.Wait > 0 {
			if err := sleep(ctx, g.Wait); err != nil {
				return err
			}
			if w.pace.epoch.Load() != epoch {
				// A pause began while this request waited for its slot: the
				// slot is stale, and all such requests leaving together
				// after the pause would be a burst. Ask again.
				continue
			}
		}
		return nil
	}
}

// afterResponse acts on the answer to a request of run rc: when it asks to
// wait (429, or 503 with Retry-After) every worker of the fleet pauses for
// that long (at most Config.MaxRetryAfter), not only this one, and the
// fleet's adaptive request rate is cut. err is the transport's error, resp
// nil with it.
func (w *Worker) afterResponse(ctx context.Context, rc *runCtx, resp *http.Response, err error) {
	if err != nil || resp == nil {
		return
	}
	ra, has := workspace.ParseRetryAfter(resp.Header, time.Now())
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		if !has || ra <= 0 {
			ra = defaultPause
		}
	case resp.StatusCode == http.StatusServiceUnavailable && has && ra > 0:
	default:
		return
	}
	asked, capped := ra, ra > w.cfg.MaxRetryAfter
	if capped {
		ra = w.cfg.MaxRetryAfter
		// Everything downstream (the client's waits between polls, the
		// item's retry delay) reads the capped value.
		resp.Header.Set("Retry-After", strconv.FormatInt(int64(math.Ceil(ra.Seconds())), 10))
		if o, ok := w.cfg.Observer.(PacingObserver); ok {
			o.RetryAfterCapped(asked, ra)
		}
	}
	w.notePause(ra)
	bg := context.WithoutCancel(ctx)
	started, perr := w.store.PauseFor(bg, runstore.PauseRequest{Wait: ra, Asked: asked, Status: resp.StatusCode})
	switch {
	case perr != nil:
		rc.log.Warn("could not set the fleet-wide pause", "error", perr)
	case started && capped:
		rc.log.Warn("API asked to wait longer than the cap: every worker pauses for the cap",
			"status", resp.StatusCode, "retry_after", asked, "capped_to", ra, "until", time.Now().Add(ra).Format(time.TimeOnly))
	case started:
		rc.log.Info("API asked to wait: every worker pauses", "status", resp.StatusCode, "retry_after", ra)
	}
	if resp.StatusCode != http.StatusTooManyRequests {
		// A 503 says the server is unwell, not that we send too fast.
		return
	}
	cut, cerr := w.pace.adaptive.Cut(bg, w.pace.sent.Load())
	switch {
	case cerr != nil:
		rc.log.Warn("could not lower the fleet's adaptive request rate", "error", cerr)
	case cut.Cut:
		w.pace.noteEngaged(w.pace.adaptive.Params().Quiet)
		if cut.Engaged {
			rc.log.Info("API is rate limiting: the fleet's requests now adapt to it", "status", resp.StatusCode, "requests_per_second", round1(cut.Rate))
		} else {
			rc.log.Debug("API is rate limiting: fleet request rate lowered", "status", resp.StatusCode, "requests_per_second", round1(cut.Rate))
		}
	}
}

func round1(f float64) float64 { return math.Round(f*10) / 10 }

// pauseRefresh is how often a worker reads the shared pacing state from
// Redis. Requests check the worker's copy, so another worker's pause or cut
// reaches this one within pauseRefresh.
const pauseRefresh = 50 * time.Millisecond

// watchPause keeps the worker's copy of the fleet-wide pause and of the
// adaptive limiter's state fresh until ctx is done, and adds the worker's
// requests to the fleet's count (the first cut starts from it).
func (w *Worker) watchPause(ctx context.Context) {
	t := time.NewTicker(pauseRefresh)
	defer t.Stop()
	obs, _ := w.cfg.Observer.(PacingObserver)
	for {
		n := w.pace.sent.Swap(0)
		if st, err := w.pace.adaptive.Tick(ctx, n); err == nil {
			if st.Pause > 0 {
				w.notePause(st.Pause)
			}
			w.pace.noteEngaged(st.Engaged)
			if obs != nil {
				obs.FleetPacing(st.Pause, st.Rate)
			}
		} else {
			w.pace.sent.Add(n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}
