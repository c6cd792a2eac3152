package pipelines

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/threadmill/threadmill/workspace"
)

// Values of Step.Reuse.
const (
	ReuseNever     = "never"     // every item is sent (the default)
	ReuseUnchanged = "unchanged" // an item whose inputs did not change reuses its last output
)

// Run outcomes a notify entry can ask for (Notify.On).
const (
	NotifySucceeded = "succeeded"
	NotifyFailed    = "failed"
	NotifyStopped   = "stopped"
	NotifyCanceled  = "canceled"
	// NotifyError: the run could not start or finish (its artifact sets
	// not resolved, its results not written); it has no result files.
	NotifyError = "error"
)

// NotifyOutcomes are the values of notify[].on, in order.
var NotifyOutcomes = []string{NotifySucceeded, NotifyFailed, NotifyStopped, NotifyCanceled, NotifyError}

// Publish uploads a run's report.md into the Workspace as a Document
// artifact.
type Publish struct {
	// Folder is a path of folder names ("Reports/Support"); missing folders
	// are created. Default: the project's top level.
	Folder string `yaml:"folder,omitempty" json:"folder,omitempty"`
	// Name is the artifact's name, a template over .Run, .Pipeline and
	// .Vars; default "<pipeline> <run id>.md".
	Name string `yaml:"name,omitempty" json:"name,omitempty"`
}

// Files writes one file per succeeded item of a step into the run directory.
type Files struct {
	// Step is the step whose items are written; default output.report.
	Step string `yaml:"step,omitempty" json:"step,omitempty"`
	// Name is the file's path inside the run directory, a template over
	// .Artifact, .Run, .Pipeline and .Vars ("summaries/{{ .Artifact.Name }}.md").
	// Required.
	Name string `yaml:"name" json:"name"`
}

// Notify is one webhook called when a run finishes.
type Notify struct {
	// Webhook is the URL POSTed to (http or https). Required.
	Webhook string `yaml:"webhook" json:"webhook"`
	// On lists the run outcomes that call it; default every outcome.
	On []string `yaml:"on,omitempty" json:"on,omitempty"`
	// SecretEnv names an environment variable of the worker holding the
	// key of an HMAC-SHA256 signature of the body; empty: unsigned.
	SecretEnv string `yaml:"secret_env,omitempty" json:"secret_env,omitempty"`
}

// Wants reports whether the webhook is called for a run that ended in status.
func (n Notify) Wants(status string) bool {
	if len(n.On) == 0 {
		return true
	}
	for _, o := range n.On {
		if o == status {
			return true
		}
	}
	return false
}

// ReuseKey is the hex SHA-256 of everything that shapes an item's output:
// the project, the step id, the mode and agent, every rendered request
// (system prompt, prompts, max_tokens, temperature, ...), all_artifacts, and
// each artifact sent, by id with its updated_at and state. refs maps artifact
// ids to the resolved artifacts, and the item's own artifact (it.Artifact)
// counts as resolved when refs lacks it; an id missing from both counts
// with no update time. Thread names are left out: they name the thread but do
// not shape the answer, and they often carry the run id.
func ReuseKey(project string, it *Item, refs map[string]ArtifactRef) string {
	type art struct {
		ID        string    `json:"id"`
		UpdatedAt time.Time `json:"updated_at"`
		State     string    `json:"state"`
	}
	arts := make([]art, 0, len(it.ArtifactIDs))
	for _, id := range it.ArtifactIDs {
		r, ok := refs[id]
		if it.Artifact != nil && it.Artifact.ID == id && !ok {
			r = *it.Artifact
		}
		arts = append(arts, art{ID: id, UpdatedAt: r.UpdatedAt.UTC(), State: r.State})
	}
	b, _ := json.Marshal(struct {
		V         int                     `json:"v"`
		Project   string                  `json:"project"`
		Step      string                  `json:"step"`
		Mode      string                  `json:"mode"`
		Agent     string                  `json:"agent"`
		All       bool                    `json:"all_artifacts"`
		Artifacts []art                   `json:"artifacts"`
		Requests  []workspace.ChatRequest `json:"requests"`
	}{1, project, it.Step, it.Mode, it.Agent, it.AllArtifacts, arts, it.Requests})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// refsByID maps the ids of artifacts to the artifacts.
func refsByID(refs []ArtifactRef) map[string]ArtifactRef {
	out := make(map[string]ArtifactRef, len(refs))
	for _, r := range refs {
		out[r.ID] = r
	}
	return out
}

// PublishName renders output.publish.name for a run: the template, or
// "<pipeline> <run id>.md" when it is empty. Surrounding space is trimmed.
func PublishName(p *Pipeline, run RunInfo) (string, error) {
	pub := p.Output.Publish
	if pub == nil || pub.Name == "" {
		return p.Name + " " + run.ID + ".md", nil
	}
	out, err := render("output.publish.name", pub.Name, templateData(p, run, nil, nil, nil))
	if err != nil {
		return "", err
	}
	out = strings.TrimSpace(out)
	if out == "" {
		return "", fmt.Errorf("output.publish.name: %q renders to an empty name", pub.Name)
	}
	return out, nil
}

// FileName renders output.files.name for one item (a nil artifact for a
// step that runs once) and cleans it into a relative slash path inside the
// run directory; a name that leaves it ("../x", "/etc/x") is an error.
func FileName(p *Pipeline, run RunInfo, a *ArtifactRef) (string, error) {
	f := p.Output.Files
	if f == nil {
		return "", fmt.Errorf("output.files is not set")
	}
	out, err := render("output.files.name", f.Name, templateData(p, run, a, nil, nil))
	if err != nil {
		return "", err
	}
	name := strings.TrimSpace(strings.ReplaceAll(out, "\\", "/"))
	clean := path.Clean(name)
	if name == "" || path.IsAbs(name) || clean == "." || clean == ".." || strings.HasPrefix(clean, "../") || strings.ContainsRune(clean, 0) {
		return "", fmt.Errorf("output.files.name: %q is not a relative path inside the run directory", out)
	}
	return clean, nil
}

// FilesStep is the step output.files writes: its step, else the report step.
func (p *Pipeline) FilesStep() string {
	if p.Output.Files != nil && p.Output.Files.Step != "" {
		return p.Output.Files.Step
	}
	return p.ReportStep()
}
