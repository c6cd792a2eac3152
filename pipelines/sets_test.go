package pipelines_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"strings"
	"testing"

	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/workspace"
)

// A listing that fails part-way through a set (a 503 from the server) is
// reported as that failure, whatever the sets after it: the writer is not
// handed the next set over the half-written one, so a writer that insists
// on a set at a time (as the run store's does) never hides a retryable
// error behind its own complaint.
func TestResolveToReportsAListingThatFailsMidSet(t *testing.T) {
	ws := newSimWorkspace(t, "")
	p := mustParse(t, `version: 1
name: r
workspace: {project: `+ws.sim.ProjectID()+`}
artifacts:
  a_tickets: { folder: Support/Tickets }
  b_policies: { folder: Policies }
steps:
  - {id: one, for_each: a_tickets, prompt: "{{ .Artifact.Name }}"}
  - {id: two, for_each: b_policies, prompt: "{{ .Artifact.Name }}"}
`, nil)
	unavailable := &workspace.APIError{StatusCode: 503, Message: "upstream unavailable"}
	l := failAfter{l: ws.client, after: 1, err: unavailable}
	w := &oneSetAtATime{}
	err := pipelines.ResolveTo(context.Background(), l, p, goldenRun, w)
	if !errors.Is(err, unavailable) || !workspace.IsRetryable(err) {
		t.Fatalf("error %v: want the listing's 503, retryable", err)
	}
	if strings.Contains(err.Error(), "before") || w.misuse != nil {
		t.Errorf("the writer was misused: %v", w.misuse)
	}
}

// failAfter lists through l, failing every listing after its first `after`
// artifacts.
type failAfter struct {
	l     pipelines.ArtifactLister
	after int
	err   error
}

func (f failAfter) Artifacts(ctx context.Context, projectID string, q workspace.ArtifactQuery) iter.Seq2[workspace.Artifact, error] {
	return func(yield func(workspace.Artifact, error) bool) {
		n := 0
		for a, err := range f.l.Artifacts(ctx, projectID, q) {
			if err == nil && q.ParentID != "" && n == f.after {
				yield(workspace.Artifact{}, f.err)
				return
			}
			n++
			if !yield(a, err) {
				return
			}
		}
	}
}

// oneSetAtATime is a SetWriter that refuses a set begun before the one
// before it ended, as runstore.SetsWriter does.
type oneSetAtATime struct {
	open   string
	misuse error
}

func (w *oneSetAtATime) Add(_ context.Context, name string, _ pipelines.ArtifactRef) error {
	if w.open != "" && w.open != name {
		w.misuse = fmt.Errorf("set %s begun before set %s ended", name, w.open)
		return w.misuse
	}
	w.open = name
	return nil
}

func (w *oneSetAtATime) End(_ context.Context, name string) (int, error) {
	w.open = ""
	return 1, nil
}

func (w *oneSetAtATime) AllArtifacts(context.Context, string) error { return nil }
