package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/threadmill/threadmill/workspace"
)

// defaultPreflightTimeout is the default of --preflight-timeout: how long a
// command retries a Workspace that does not answer before it gives up.
const defaultPreflightTimeout = 30 * time.Second

// preflightHelp documents the check; commands that run it append it to their
// long help.
const preflightHelp = `Preflight: before anything is written to Redis, the Workspace is asked who
the token belongs to (GET /api/v1/app/me) and, when a project is known, for
one artifact of it. Then a thread that does not exist is asked for, which
creates nothing, to check the route scheme (WORKSPACE_API_SCHEME) or, when it
is auto, to choose it: current or the project-scoped routes of servers up to
spec 2025-11. Connection errors, timeouts, 429 and 5xx answers are retried
for up to --preflight-timeout (default 30s; 0 skips the check, and auto then
means current); a refused token or org (401/403), an unknown project or a
server that does not serve the configured routes fails at once.`

// preflightFlags is the --preflight-timeout flag of run, enqueue and worker.
type preflightFlags struct {
	// Timeout bounds the retries of a Workspace that does not answer; 0
	// skips the preflight. Default defaultPreflightTimeout.
	Timeout time.Duration
}

func (p *preflightFlags) add(f *pflag.FlagSet) {
	f.DurationVar(&p.Timeout, "preflight-timeout", defaultPreflightTimeout,
		"how long to retry a Workspace that does not answer before giving up (0 skips the check)")
}

// validate checks the flag; the message names it.
func (p *preflightFlags) validate() error {
	if p.Timeout < 0 {
		return fmt.Errorf("--preflight-timeout must not be negative, got %s", p.Timeout)
	}
	return nil
}

// Preflight pacing: the first retry comes quickly (a server starting up),
// later ones back off; one attempt never takes longer than
// preflightCallTimeout, nor past the budget.
const (
	preflightFirstBackoff = 200 * time.Millisecond
	preflightMaxBackoff   = 5 * time.Second
	preflightCallTimeout  = 10 * time.Second
	preflightMinCall      = 100 * time.Millisecond
)

// preflightKind says what a failed preflight found.
type preflightKind int

const (
	// preflightUnreachable: no answer, or only transient ones (5xx, 429,
	// timeouts), until the budget ran out.
	preflightUnreachable preflightKind = iota
	// preflightRefused: 401 or 403 on /app/me: the token or org is wrong.
	preflightRefused
	// preflightProject: the project is unknown to this token (404, 403).
	preflightProject
	// preflightUnexpected: any other definite answer (400, a non-JSON page,
	// a 404 on /app/me: probably not a Workspace).
	preflightUnexpected
	// preflightRoutes: the server does not serve the routes of the
	// configured scheme, or the probe could not tell which it serves.
	preflightRoutes
)

// preflightError is a failed preflight. Its message is one line naming the
// Workspace URL and the cause.
type preflightError struct {
	Kind preflightKind
	// URL is the Workspace as the user configured it.
	URL string
	// Project is the project checked, for preflightProject.
	Project string
	// After is the time spent, Attempts the requests sent.
	After    time.Duration
	Attempts int
	// Cause is the last error of the workspace client.
	Cause error
}

func (e *preflightError) Error() string {
	cause := describeCause(e.Cause)
	var msg string
	switch e.Kind {
	case preflightUnreachable:
		msg = fmt.Sprintf("Workspace at %s unreachable after %s (%s): %s",
			e.URL, roundElapsed(e.After), plural(e.Attempts, "attempt"), cause)
	case preflightRefused:
		msg = fmt.Sprintf("Workspace at %s refused the token or org (check %s and %s): %s",
			e.URL, envToken, envOrg, cause)
	case preflightProject:
		msg = fmt.Sprintf("Workspace at %s has no project %s visible to this token (check workspace.project in the pipeline, or %s): %s",
			e.URL, e.Project, envProject, cause)
	case preflightRoutes:
		msg = fmt.Sprintf("Workspace at %s does not serve the thread and interaction routes threadmill would use: %s", e.URL, cause)
	default:
		msg = fmt.Sprintf("Workspace at %s answered unexpectedly (is it a Zylon Workspace?): %s", e.URL, cause)
	}
	return strings.Join(strings.Fields(msg), " ") // one line, whatever the server said
}

func (e *preflightError) Unwrap() error { return e.Cause }

// describeCause shortens a workspace client error for the preflight line:
// the transport cause alone ("dial tcp ...: connection refused"), or the
// endpoint and the server's answer.
func describeCause(err error) string {
	if re, ok := errors.AsType[*workspace.RequestError](err); ok && re.Err != nil {
		return re.Err.Error()
	}
	return strings.TrimPrefix(err.Error(), "workspace: ")
}

// roundElapsed rounds a duration for a message: whole seconds from 10s up,
// tenths below.
func roundElapsed(d time.Duration) time.Duration {
	if d >= 10*time.Second {
		return d.Round(time.Second)
	}
	return d.Round(100 * time.Millisecond)
}

// preflight checks that the Workspace at displayURL answers and accepts the
// client's token and org (GET /app/me) and, when projectID is set, that the
// project is visible (a one-item artifact list, which creates nothing).
// Transient failures (connection refused or reset, timeouts, 429, 5xx) are
// retried with backoff, honouring Retry-After, until budget is spent; a
// definite answer fails at once. A zero budget skips the check. Errors are
// *preflightError, except the caller's own cancellation.
func preflight(ctx context.Context, c *workspace.Client, displayURL, projectID string, budget time.Duration, log *slog.Logger) error {
	if budget <= 0 {
		return nil
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	start := time.Now()
	deadline := start.Add(budget)
	attempts := 0
	check := func(kind preflightKind, call func(context.Context) error) error {
		backoff := preflightFirstBackoff
		for {
			remaining := time.Until(deadline)
			attempts++
			// Rounded: the timeout shows in the message when it is the cause.
			callTimeout := max(preflightMinCall, min(remaining, preflightCallTimeout).Round(preflightMinCall))
			err := call(workspace.WithCallTimeout(ctx, callTimeout))
			if err == nil {
				return nil
			}
			if ctx.Err() != nil {
				return fmt.Errorf("Workspace preflight interrupted: %w", context.Cause(ctx))
			}
			fail := &preflightError{Kind: kind, URL: displayURL, Project: projectID, Cause: err}
			if !workspace.IsRetryable(err) {
				if kind == preflightProject && !isStatus(err, http.StatusNotFound, http.StatusForbidden) {
					fail.Kind = preflightUnexpected
				}
				if kind == preflightRefused && !isStatus(err, http.StatusUnauthorized, http.StatusForbidden) {
					fail.Kind = preflightUnexpected
				}
				if kind == preflightRoutes && !errors.Is(err, workspace.ErrRouteMismatch) && !errors.Is(err, workspace.ErrRouteUndecided) {
					fail.Kind = preflightUnexpected
				}
				return fail
			}
			wait := backoff
			if ra, ok := workspace.RetryAfter(err); ok {
				wait = max(wait, ra)
			}
			wait = jitterWait(wait)
			remaining = time.Until(deadline)
			// A server that let the last call time out gets no last
			// attempt too short to tell anything: its timeout is the cause.
			if remaining <= 0 || (errors.Is(err, workspace.ErrTimeout) && remaining < time.Second) {
				fail.Kind, fail.After, fail.Attempts = preflightUnreachable, time.Since(start), attempts
				return fail
			}
			if attempts == 1 {
				log.Info("Workspace not answering yet; retrying", "workspace", displayURL,
					"budget", budget, "error", describeCause(err))
			} else {
				log.Debug("Workspace preflight retry", "workspace", displayURL, "attempt", attempts, "error", describeCause(err))
			}
			// The last attempt is made at the deadline, so that the
			// budget is spent as promised, not cut short by a long backoff.
			t := time.NewTimer(min(wait, remaining))
			select {
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("Workspace preflight interrupted: %w", context.Cause(ctx))
			case <-t.C:
			}
			backoff = min(2*backoff, preflightMaxBackoff)
		}
	}
	if err := check(preflightRefused, func(ctx context.Context) error {
		_, err := c.Me(ctx)
		return err
	}); err != nil {
		return err
	}
	if projectID != "" {
		if err := check(preflightProject, func(ctx context.Context) error {
			_, err := c.ListArtifacts(ctx, projectID, workspace.ArtifactQuery{PageParams: workspace.PageParams{Page: 1, PageSize: 1}})
			return err
		}); err != nil {
			return err
		}
	}
	before := c.RouteScheme()
	if err := check(preflightRoutes, func(ctx context.Context) error {
		_, err := c.CheckRoutes(ctx, projectID)
		return err
	}); err != nil {
		return err
	}
	if s := c.RouteScheme(); s != before {
		log.Info("Workspace serves the project-scoped routes of spec <= 2025-11; using them", "workspace", displayURL,
			"fix", "set "+envScheme+"=project to skip the detection")
	}
	return nil
}

// isStatus reports whether err is an API answer with one of the statuses.
func isStatus(err error, statuses ...int) bool {
	ae, ok := errors.AsType[*workspace.APIError](err)
	if !ok {
		return false
	}
	for _, s := range statuses {
		if ae.StatusCode == s {
			return true
		}
	}
	return false
}

// jitterWait spreads d by ±20%.
func jitterWait(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}
