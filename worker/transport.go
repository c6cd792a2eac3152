package worker

import (
	"context"
	"net/http"

	"github.com/threadmill/threadmill/workspace"
)

// runKey carries the *runCtx of the task a request belongs to.
type runKey struct{}

// withRun returns ctx tagged with the run its API requests belong to: the
// worker's transport applies that run's limits to each of them, and the
// client puts the run's project in project-scoped routes
// (workspace.RoutesProjectScoped).
func withRun(ctx context.Context, rc *runCtx) context.Context {
	if rc != nil && rc.spec != nil && rc.spec.Pipeline.Workspace.Project != "" {
		ctx = workspace.ContextWithProject(ctx, rc.spec.Pipeline.Workspace.Project)
	}
	return context.WithValue(ctx, runKey{}, rc)
}

// runOf returns the run ctx was tagged with by withRun, or nil.
func runOf(ctx context.Context) *runCtx {
	rc, _ := ctx.Value(runKey{}).(*runCtx)
	return rc
}

// pacedTransport is the worker's middleware under the Workspace client:
// every request of a run, whichever client helper sends it (a page of a
// listing, a poll, a stream, a lookup), first waits for the fleet-wide pause
// and the pipeline's shared limits, and every answer that asks the fleet to
// slow down is acted on. Requests without a run pass straight through.
type pacedTransport struct {
	w    *Worker
	next http.RoundTripper
}

// RoundTrip paces req, sends it and reports its answer to the pacer.
func (t *pacedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	rc := runOf(req.Context())
	if rc == nil {
		return t.next.RoundTrip(req)
	}
	if err := t.w.beforeRequest(req.Context(), rc); err != nil {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, err
	}
	resp, err := t.next.RoundTrip(req)
	t.w.afterResponse(req.Context(), rc, resp, err)
	return resp, err
}

// pacedClient returns the client the worker sends every request with: api
// with the worker's pacing transport underneath.
func (w *Worker) pacedClient(api *workspace.Client) *workspace.Client {
	return api.WithTransport(func(next http.RoundTripper) http.RoundTripper {
		return &pacedTransport{w: w, next: next}
	})
}
