package worker

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/threadmill/threadmill/workspace"
)

// Observer is told what the worker does, for metrics. *metrics.Metrics
// implements it. Methods are called from handler goroutines and must be safe
// for concurrent use; they must not block.
type Observer interface {
	// ItemStarted is called when an attempt of an item of pipeline begins;
	// done is called when the attempt ends.
	ItemStarted(pipeline string) (done func())
	// ItemFinished is called once per item, when its final state is first
	// recorded, with the time since its first attempt began.
	ItemFinished(pipeline, step, state string, d time.Duration)
	// ItemRetried is called when an attempt failed and asynq will try the
	// item again; reason is one of the Retry* constants.
	ItemRetried(pipeline, step, reason string)
	// TokensUsed is called once per item with the usage the API billed.
	TokensUsed(pipeline, step string, in, out int64)
	// RateLimitWaited is called with the time a request or an item waited
	// on limiter: LimiterRequests (the requests-per-minute limit and the
	// fleet-wide pause after a 429), LimiterTokens or LimiterConcurrency.
	RateLimitWaited(pipeline, limiter string, d time.Duration)
	// RunFinished is called when this worker finalized a run.
	RunFinished(pipeline, status string)
}

// Limiters named in Observer.RateLimitWaited.
const (
	LimiterRequests    = "requests"
	LimiterTokens      = "tokens"
	LimiterConcurrency = "concurrency"
)

// Reasons named in Observer.ItemRetried.
const (
	RetryRateLimited = "rate_limited"
	RetryServerError = "server_error"
	RetryTimeout     = "timeout"
	RetryNetwork     = "network"
	RetryOther       = "other"
)

// retryReason classifies the error of an attempt that will be retried.
func retryReason(err error) string {
	if ae, ok := errors.AsType[*workspace.APIError](err); ok {
		switch {
		case ae.StatusCode == http.StatusTooManyRequests:
			return RetryRateLimited
		case ae.StatusCode >= 500:
			return RetryServerError
		}
		return RetryOther
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return RetryTimeout
	}
	if _, ok := errors.AsType[net.Error](err); ok {
		return RetryNetwork
	}
	return RetryOther
}

// nopObserver observes nothing.
type nopObserver struct{}

func (nopObserver) ItemStarted(string) func()                          { return func() {} }
func (nopObserver) ItemFinished(string, string, string, time.Duration) {}
func (nopObserver) ItemRetried(string, string, string)                 {}
func (nopObserver) TokensUsed(string, string, int64, int64)            {}
func (nopObserver) RateLimitWaited(string, string, time.Duration)      {}
func (nopObserver) RunFinished(string, string)                         {}
