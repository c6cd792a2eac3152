package worker

import (
	"context"
	"net/http"
	"time"

	"github.com/threadmill/threadmill/workspace"
)

// defaultPause is how long the fleet holds back after a 429 that carries no
// Retry-After.
const defaultPause = time.Second

// beforeRequest waits until a request of run rc may be sent: for the
// pipeline's shared requests-per-minute slot when it has a limit (the
// limiter's script also honours the fleet-wide pause), else for the
// fleet-wide pause alone.
func (w *Worker) beforeRequest(ctx context.Context, rc *runCtx) error {
	var waited time.Duration
	var err error
	if rpm := rc.spec.Pipeline.Limits.RequestsPerMinute; rpm > 0 {
		waited, err = w.store.AcquireRequest(ctx, rc.spec.Pipeline.Name, rpm)
	} else {
		waited, err = w.waitPause(ctx)
	}
	w.cfg.Observer.RateLimitWaited(rc.spec.Pipeline.Name, LimiterRequests, waited)
	return err
}

// afterResponse acts on the answer to a request of run rc: when it asks to
// wait (429, or 503 with Retry-After) every worker of the fleet pauses for
// that long, not only this one. err is the transport's error, resp nil with
// it.
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
	w.pausedUntil.Store(max(w.pausedUntil.Load(), time.Now().Add(ra).UnixNano()))
	if perr := w.store.Pause(context.WithoutCancel(ctx), ra); perr != nil {
		rc.log.Warn("could not set the fleet-wide pause", "error", perr)
	} else {
		rc.log.Info("API asked to wait: every worker pauses", "status", resp.StatusCode, "retry_after", ra)
	}
}

// pauseRefresh is how often a worker reads the fleet-wide pause from Redis.
// Requests without a requests-per-minute limit check the worker's copy, so
// another worker's pause reaches this one within pauseRefresh.
const pauseRefresh = 50 * time.Millisecond

// watchPause keeps the worker's copy of the fleet-wide pause fresh until ctx
// is done.
func (w *Worker) watchPause(ctx context.Context) {
	t := time.NewTicker(pauseRefresh)
	defer t.Stop()
	for {
		if d, err := w.store.Paused(ctx); err == nil && d > 0 {
			w.pausedUntil.Store(max(w.pausedUntil.Load(), time.Now().Add(d).UnixNano()))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// waitPause waits until the worker's copy of the fleet-wide pause is over
// and returns the time it waited.
func (w *Worker) waitPause(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	for {
		d := time.Until(time.Unix(0, w.pausedUntil.Load()))
		if d <= 0 {
			return time.Since(start), nil
		}
		if err := sleep(ctx, d); err != nil {
			return time.Since(start), err
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
