package worker

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/results"
	"github.com/threadmill/threadmill/workspace"
)

// Published actions (results.Published.Action).
const (
	publishCreated  = "created"
	publishReplaced = "replaced"
)

// publish uploads the committed report.md of a run as a Document artifact
// (output.publish), into its folder path (creating the folders missing),
// and returns what it did; nil when the pipeline publishes nothing, the run
// was canceled or the report step produced no output. A document of the
// same name already in the folder (an earlier attempt of this run, a retry,
// a re-run of the same window) has its content replaced, so the artifact is
// never duplicated. A failure is logged and returned in Published.Error:
// the run's files and status do not depend on it.
func (w *Worker) publish(ctx context.Context, rc *runCtx, dir, status string) *results.Published {
	pub := rc.spec.Pipeline.Output.Publish
	if pub == nil || status == results.StatusCanceled {
		return nil
	}
	if !reportHasOutput(dir) {
		rc.log.Info("nothing published: the report step produced no output")
		return nil
	}
	out := &results.Published{Folder: pub.Folder}
	err := w.publishReport(withRun(ctx, rc), rc, dir, out)
	if err != nil {
		out.Error = err.Error()
		rc.log.Warn("could not publish the report into the Workspace", "name", out.Name, "folder", out.Folder, "error", err)
		return out
	}
	rc.log.Info("report published", "artifact", out.ArtifactID, "name", out.Name, "folder", out.Folder, "action", out.Action)
	return out
}

// reportHasOutput reports whether the report step of the run committed in
// dir has a succeeded item, from its run.json.
func reportHasOutput(dir string) bool {
	r, err := results.ReadRun(dir)
	if err != nil {
		return false
	}
	for _, s := range r.Steps {
		if s.Step == r.ReportStep {
			return s.Items[results.StateSucceeded] > 0
		}
	}
	return false
}

func (w *Worker) publishReport(ctx context.Context, rc *runCtx, dir string, out *results.Published) error {
	p := rc.spec.Pipeline
	name, err := pipelines.PublishName(p, rc.spec.Info)
	if err != nil {
		return err
	}
	out.Name = name
	data, err := os.ReadFile(filepath.Join(dir, results.ReportFile))
	if err != nil {
		return fmt.Errorf("read the report: %w", err)
	}
	project := p.Workspace.Project
	folderID, err := w.ensureFolder(ctx, project, out.Folder)
	if err != nil {
		return err
	}
	existing, err := w.findChild(ctx, project, folderID, workspace.ArtifactTypeDocument, name)
	if err != nil {
		return err
	}
	if existing != nil {
		a, err := w.api.ReplaceArtifactContent(ctx, project, existing.ID, data)
		if err != nil {
			return fmt.Errorf("replace the content of artifact %s: %w", existing.ID, err)
		}
		out.ArtifactID, out.Action = a.ID, publishReplaced
		return nil
	}
	a, err := w.api.UploadDocument(ctx, project, workspace.Document{Name: name, ParentID: folderID,
		FileName: fileNameFor(name), ContentType: "text/markdown; charset=utf-8", Data: data})
	if err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	out.ArtifactID, out.Action = a.ID, publishCreated
	return nil
}

// fileNameFor is the file name of a published report: its name, with .md
// unless it has an extension.
func fileNameFor(name string) string {
	if filepath.Ext(name) != "" {
		return name
	}
	return name + ".md"
}

// ensureFolder returns the id of the folder at a path of folder names,
// creating the folders missing; "" for the project's top level.
func (w *Worker) ensureFolder(ctx context.Context, project, folderPath string) (string, error) {
	parent := ""
	for part := range strings.SplitSeq(folderPath, "/") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		f, err := w.findChild(ctx, project, parent, workspace.ArtifactTypeFolder, part)
		if err != nil {
			return "", err
		}
		if f == nil {
			if f, err = w.api.CreateFolder(ctx, project, part, parent); err != nil {
				return "", fmt.Errorf("create folder %q: %w", part, err)
			}
		}
		parent = f.ID
	}
	return parent, nil
}

// findChild returns the artifact of a type named name directly in the
// folder parent (the top level when ""), nil when there is none.
func (w *Worker) findChild(ctx context.Context, project, parent, typ, name string) (*workspace.Artifact, error) {
	q := workspace.ArtifactQuery{ParentID: parent, Type: []string{typ}}
	for a, err := range w.api.Artifacts(ctx, project, q) {
		if err != nil {
			return nil, fmt.Errorf("look for %s %q: %w", strings.ToLower(typ), name, err)
		}
		if a.Name == name {
			return &a, nil
		}
	}
	return nil, nil
}

// writeItemFile writes a succeeded item's output as a file of the run
// directory (output.files). A name that cannot be rendered or used is
// logged and the file left out: the run's other files do not depend on it.
func (w *Worker) writeItemFile(rc *runCtx, wr *results.Writer, it results.Item) {
	name, err := pipelines.FileName(rc.spec.Pipeline, rc.spec.Info, it.Artifact)
	if err == nil {
		_, err = wr.AddFile(name, []byte(it.Output))
	}
	if err != nil {
		rc.log.Warn("output.files: item file not written", "item", it.Key, "error", err)
	}
}
