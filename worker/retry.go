package worker

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/hibiken/asynq"

	"github.com/threadmill/threadmill/workspace"
)

// PermanentError marks a failure that no retry can fix: the item is
// recorded as failed at once.
type PermanentError struct{ Err error }

// Error returns the cause's message.
func (e *PermanentError) Error() string { return e.Err.Error() }

// Unwrap returns the cause.
func (e *PermanentError) Unwrap() error { return e.Err }

func permanent(err error) error { return &PermanentError{Err: err} }

// isPermanent reports whether err means the item cannot succeed: the API
// answered 400, 401, 403, 404, 413 or 422 (validation included), an
// interaction ended with an invalid-request kind of error, or the worker
// said so.
func isPermanent(err error) bool {
	if _, ok := errors.AsType[*PermanentError](err); ok {
		return true
	}
	if errors.Is(err, asynq.SkipRetry) {
		return true
	}
	return workspace.IsPermanent(err)
}

// interactionError is an interaction (or chat) that ended in state Error.
type interactionError struct {
	id      string
	typ     string
	message string
}

func (e *interactionError) Error() string {
	msg := fmt.Sprintf("interaction %s ended in state Error", e.id)
	if e.typ != "" {
		msg += ": " + e.typ
	}
	if e.message != "" {
		msg += ": " + e.message
	}
	return msg
}

func newInteractionError(in *workspace.Interaction) error {
	e := &interactionError{id: in.ID}
	if in.AssistantOutput != nil && len(in.AssistantOutput.Errors) > 0 {
		e.typ, e.message = in.AssistantOutput.Errors[0].Type, in.AssistantOutput.Errors[0].Message
	}
	switch e.typ {
	case "invalid_request_error", "permission_error", "request_too_large", "authentication_error", "not_found_error":
		return permanent(e)
	}
	return e
}

// retryDelay is the asynq RetryDelayFunc. An attempt the API paced (a 429,
// a 503 with Retry-After, a request held back by the fleet-wide pause)
// waits what was asked, capped at MaxRetryAfter, plus up to a tenth more
// so that the items held back together do not all return at once. Another
// error carrying a Retry-After waits it, capped too; the rest back off
// exponentially with jitter: attempt n waits a uniform time in [d/2, d)
// with d = RetryBase·2ⁿ capped at RetryMax.
func (w *Worker) retryDelay(n int, err error, _ *asynq.Task) time.Duration {
	if d, ok := pacedWait(err); ok {
		d = min(d, w.cfg.MaxRetryAfter)
		return d + rand.N(d/10+1)
	}
	if ra, ok := workspace.RetryAfter(err); ok && ra > 0 {
		return min(ra, w.cfg.MaxRetryAfter)
	}
	return backoff(n, w.cfg.RetryBase, w.cfg.RetryMax)
}

func backoff(n int, base, maxDelay time.Duration) time.Duration {
	d := base
	for i := 0; i < n && d < maxDelay; i++ {
		d *= 2
	}
	d = min(d, maxDelay)
	return d/2 + rand.N(d/2+1)
}

// shuttingDown reports whether ctx was cancelled by the server stopping
// (not by the item's own deadline): the task goes back to the queue and
// nothing is recorded.
func shuttingDown(ctx context.Context) bool {
	return errors.Is(ctx.Err(), context.Canceled)
}

// lastAttempt reports whether asynq will not retry the task after this
// attempt.
func lastAttempt(ctx context.Context) bool {
	n, ok1 := asynq.GetRetryCount(ctx)
	m, ok2 := asynq.GetMaxRetry(ctx)
	return ok1 && ok2 && n >= m
}
