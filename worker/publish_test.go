package worker_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/threadmill/threadmill/internal/hostile"
	"github.com/threadmill/threadmill/runstore"
	"github.com/threadmill/threadmill/workspace"
	"github.com/threadmill/threadmill/workspace/simulator"
)

const publishPipeline = `
version: 1
name: brief
workspace: { project: proj_test }
defaults: { max_tokens: 120 }
artifacts:
  docs: { folder: "Inbox" }
steps:
  - id: summarize
    for_each: docs
    prompt: "Summarize {{ .Artifact.Name }} in one sentence."
  - id: brief
    needs: [summarize]
    prompt: |
      Brief from:
      {{ range .Steps.summarize.Items }}- {{ .Output }}
      {{ end }}
output:
  publish:
    folder: Reports/Weekly
    name: "Weekly Brief {{ .Run.Week }}"
`

// TestPublishUploadsTheReportOnceAndReplacesItOnRerun: the report is
// uploaded as a Document (through the simulator's strict multipart route)
// into folders created for it; a second run of the same week replaces its
// content instead of adding another; the artifact is listed and usable as
// context by a later pipeline.
func TestPublishUploadsTheReportOnceAndReplacesItOnRerun(t *testing.T) {
	e := newEnv(t, simulator.Config{})
	e.folder("Inbox", 3)
	e.startWorker()

	st := e.wait(e.start(e.pipeline(publishPipeline), "pub-1"), time.Minute)
	if st.Status != runstore.StatusSucceeded {
		t.Fatalf("status %q (%s)", st.Status, st.Error)
	}
	run := readRun(t, st.ResultDir)
	pub := run.Published
	if pub == nil || pub.Error != "" || pub.ArtifactID == "" || pub.Action != "created" || pub.Name != "Weekly Brief 2026-W28" || pub.Folder != "Reports/Weekly" {
		t.Fatalf("run.json published: %+v", pub)
	}
	c := e.sim.Counters()
	if c.ArtifactsCreated != 3 || c.Requests["POST /api/v1/app/project/{projectId}/artifact"][200] != 3 {
		t.Errorf("artifacts created: %d (requests %v); want 3: two folders and the document", c.ArtifactsCreated, c.Requests["POST /api/v1/app/project/{projectId}/artifact"])
	}
	a, ok := e.sim.ArtifactByPath("Reports/Weekly/Weekly Brief 2026-W28")
	if !ok || a.ID != pub.ArtifactID || a.Type != workspace.ArtifactTypeDocument || !a.Usable() || !strings.Contains(a.Content, "## Report (step `brief`)") {
		t.Fatalf("the published artifact: %+v (found %v)", a, ok)
	}

	// The same week again: the document is replaced, not duplicated.
	e.sim.ResetCounters()
	st = e.wait(e.start(e.pipeline(publishPipeline), "pub-2"), time.Minute)
	run = readRun(t, st.ResultDir)
	c = e.sim.Counters()
	if run.Published == nil || run.Published.ArtifactID != pub.ArtifactID || run.Published.Action != "replaced" || c.ArtifactsCreated != 0 ||
		c.Requests["PUT /api/v1/app/project/{projectId}/artifact/{artifactId}"][200] != 1 {
		t.Errorf("second run: published %+v, %d artifacts created, PUTs %v; want the same artifact replaced once", run.Published, c.ArtifactsCreated,
			c.Requests["PUT /api/v1/app/project/{projectId}/artifact/{artifactId}"])
	}
	if a, _ := e.sim.ArtifactByPath("Reports/Weekly/Weekly Brief 2026-W28"); !strings.Contains(a.Content, "pub-2") {
		t.Errorf("the published artifact was not replaced by run pub-2's report")
	}
	docs := 0
	for _, a := range e.sim.Artifacts() {
		if a.Type == workspace.ArtifactTypeDocument && strings.HasPrefix(a.Name, "Weekly Brief") {
			docs++
		}
	}
	if docs != 1 {
		t.Errorf("%d published documents, want 1", docs)
	}

	// The artifact serves as context.
	st = e.wait(e.start(e.pipeline(`
version: 1
name: reader
workspace: { project: proj_test }
artifacts:
  briefs: { folder: Reports/Weekly }
steps:
  - id: read
    for_each: briefs
    prompt: "What does {{ .Artifact.Name }} say?"
`), "reader-1"), time.Minute)
	items := readItems(t, resultsFile(st.ResultDir))
	if st.Status != runstore.StatusSucceeded || len(items) != 1 || items[0].ArtifactIDs[0] != pub.ArtifactID || items[0].Output == "" {
		t.Errorf("a pipeline over the published folder: status %s, items %+v", st.Status, items)
	}
}

// TestPublishFailureIsRecordedNotFatal: an upload the API refuses leaves
// the run succeeded, with its files, and the reason in run.json.
func TestPublishFailureIsRecordedNotFatal(t *testing.T) {
	e := newEnv(t, simulator.Config{})
	e.folder("Inbox", 2)
	refused := e.front.Add(&hostile.Rule{Method: http.MethodPost, Path: "/api/v1/app/project/*/artifact",
		Do: hostile.Respond(http.StatusRequestEntityTooLarge, `{"message":"too large"}`, "Content-Type", "application/json")})
	e.startWorker()
	st := e.wait(e.start(e.pipeline(publishPipeline), "pub-refused"), time.Minute)
	if st.Status != runstore.StatusSucceeded {
		t.Fatalf("status %q (%s): a refused upload must not fail the run", st.Status, st.Error)
	}
	pub := readRun(t, st.ResultDir).Published
	if pub == nil || pub.ArtifactID != "" || !strings.Contains(pub.Error, "413") || refused.Hits() != 1 {
		t.Errorf("run.json published %+v after %d refused creates; want the 413 recorded after one", pub, refused.Hits())
	}
	if c := e.sim.Counters(); c.ArtifactsCreated != 0 {
		t.Errorf("%d artifacts created", c.ArtifactsCreated)
	}
}
