package worker

import (
	"context"
	"errors"
	"iter"
	"net/http"
	"time"

	"github.com/threadmill/threadmill/workspace"
)

// defaultPause is how long the fleet holds back after a 429 that carries no
// Retry-After.
const defaultPause = time.Second

// call sends one API request of a run: it waits for the fleet-wide pause and
// the pipeline's shared requests-per-minute slot first, and when the answer
// asks to wait (429, or 503 with Retry-After) it pauses every worker for
// that long, not only this one.
func (w *Worker) call(ctx context.Context, rc *runCtx, fn func(context.Context) error) error {
	var waited time.Duration
	var err error
	if rpm := rc.spec.Pipeline.Limits.RequestsPerMinute; rpm > 0 {
		// The shared limiter checks the pause in the same script.
		waited, err = w.store.AcquireRequest(ctx, rc.spec.Pipeline.Name, rpm)
	} else {
		waited, err = w.waitPause(ctx)
	}
	w.cfg.Observer.RateLimitWaited(rc.spec.Pipeline.Name, LimiterRequests, waited)
	if err != nil {
		return err
	}
	err = fn(ctx)
	if err == nil {
		return nil
	}
	ae, ok := errors.AsType[*workspace.APIError](err)
	if !ok {
		return err
	}
	ra, has := workspace.RetryAfter(err)
	switch {
	case ae.StatusCode == http.StatusTooManyRequests:
		if !has || ra <= 0 {
			ra = defaultPause
		}
	case has && ra > 0 && ae.StatusCode == http.StatusServiceUnavailable:
	default:
		return err
	}
	w.pausedUntil.Store(max(w.pausedUntil.Load(), time.Now().Add(ra).UnixNano()))
	if perr := w.store.Pause(context.WithoutCancel(ctx), ra); perr != nil {
		rc.log.Warn("could not set the fleet-wide pause", "error", perr)
	} else {
		rc.log.Info("API asked to wait: every worker pauses", "status", ae.StatusCode, "retry_after", ra)
	}
	return err
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

// lister lists a run's artifacts page by page, each page an API request
// subject to the run's limits. It implements pipelines.ArtifactLister.
type lister struct {
	w  *Worker
	rc *runCtx
}

// Artifacts yields the project's artifacts matching q, page by page.
func (l lister) Artifacts(ctx context.Context, projectID string, q workspace.ArtifactQuery) iter.Seq2[workspace.Artifact, error] {
	return func(yield func(workspace.Artifact, error) bool) {
		if q.Page == 0 {
			q.Page = 1
		}
		for {
			var page *workspace.Page[workspace.Artifact]
			err := l.w.call(ctx, l.rc, func(ctx context.Context) (err error) {
				page, err = l.w.cfg.API.ListArtifacts(ctx, projectID, q)
				return err
			})
			if err != nil {
				yield(workspace.Artifact{}, err)
				return
			}
			for _, a := range page.Data {
				if !yield(a, nil) {
					return
				}
			}
			if !page.HasNextPage || len(page.Data) == 0 {
				return
			}
			q.Page++
		}
	}
}

// maxPollFailures is how many transient failures in a row polling an
// interaction tolerates before the attempt fails.
const maxPollFailures = 5

// wait follows a Processing interaction to its end: its SSE stream first,
// then GET for the authoritative state and usage. When the stream fails (cut
// midway, not offered), it polls GET with growing delays. Every request goes
// through call.
func (w *Worker) wait(ctx context.Context, rc *runCtx, id string) (*workspace.Interaction, error) {
	var stream *workspace.StreamResult
	serr := w.call(ctx, rc, func(ctx context.Context) (err error) {
		stream, err = w.cfg.API.StreamInteraction(ctx, id, nil)
		return err
	})
	if serr != nil {
		if ctx.Err() != nil {
			return nil, serr
		}
		if ae, ok := errors.AsType[*workspace.APIError](serr); ok &&
			(ae.StatusCode == http.StatusUnauthorized || ae.StatusCode == http.StatusForbidden || ae.StatusCode == http.StatusNotFound) {
			return nil, serr
		}
		rc.log.Debug("interaction stream failed; polling", "interaction", id, "error", serr)
		stream = nil
	}
	delay := min(w.cfg.PollInterval, 250*time.Millisecond)
	failures := 0
	for {
		var in *workspace.Interaction
		err := w.call(ctx, rc, func(ctx context.Context) (err error) {
			in, err = w.cfg.API.GetInteraction(ctx, id)
			return err
		})
		switch {
		case err == nil:
			failures = 0
			if in.Terminal() {
				fillFromStream(in, stream)
				return in, nil
			}
		case ctx.Err() != nil || isPermanent(err):
			return nil, err
		default:
			failures++
			if failures >= maxPollFailures {
				return nil, err
			}
		}
		if err := sleep(ctx, delay); err != nil {
			return nil, err
		}
		delay = min(delay*3/2, 5*time.Second)
	}
}

// fillFromStream completes what a terminal interaction's GET lacks (usage,
// stop reason) from a complete stream.
func fillFromStream(in *workspace.Interaction, s *workspace.StreamResult) {
	if s == nil || !s.Completed {
		return
	}
	if in.AssistantOutput == nil {
		in.AssistantOutput = &workspace.MessageOutput{ID: s.MessageID, Model: s.Model}
		if t := s.Text(); t != "" {
			in.AssistantOutput.Content = []workspace.ContentBlock{workspace.TextBlock(t)}
		}
	}
	if in.AssistantOutput.Usage == nil && s.Usage != nil {
		u := *s.Usage
		in.AssistantOutput.Usage = &u
	}
	if in.AssistantOutput.StopReason == "" {
		in.AssistantOutput.StopReason = s.StopReason
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
