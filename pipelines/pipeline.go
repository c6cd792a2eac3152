// Package pipelines is threadmill's pipeline file format: its types, strict
// loading with located errors, templates, artifact sets and planning.
package pipelines

import (
	"time"

	"github.com/threadmill/threadmill/workspace"
)

// Pipeline is a decoded, checked pipeline file with its defaults applied.
// It round-trips through encoding/json, so a run can carry it in Redis and
// workers never need the YAML file.
type Pipeline struct {
	Version     int                    `yaml:"version" json:"version"`
	Name        string                 `yaml:"name" json:"name"`
	Description string                 `yaml:"description,omitempty" json:"description,omitempty"`
	Schedule    *Schedule              `yaml:"schedule,omitempty" json:"schedule,omitempty"`
	Workspace   WorkspaceConfig        `yaml:"workspace,omitempty" json:"workspace"`
	Defaults    Defaults               `yaml:"defaults,omitempty" json:"defaults"`
	Limits      Limits                 `yaml:"limits,omitempty" json:"limits"`
	Vars        map[string]string      `yaml:"vars,omitempty" json:"vars,omitempty"`
	Artifacts   map[string]ArtifactSet `yaml:"artifacts,omitempty" json:"artifacts,omitempty"`
	Steps       []Step                 `yaml:"steps" json:"steps"`
	Output      Output                 `yaml:"output,omitempty" json:"output"`

	// File is the path the pipeline was loaded from (not part of the format).
	File string `yaml:"-" json:"file,omitempty"`
	// Hash is the hex SHA-256 of the file's bytes as read (before interpolation).
	Hash string `yaml:"-" json:"hash,omitempty"`
}

// Schedule runs the pipeline on a cron schedule.
type Schedule struct {
	// Cron is a 5-field cron expression or a descriptor (@daily, @weekly, ...).
	Cron string `yaml:"cron" json:"cron"`
	// Timezone is an IANA zone name; default UTC.
	Timezone string `yaml:"timezone,omitempty" json:"timezone,omitempty"`
	// Catchup is none, latest or all: what to do with fire times missed while no
	// scheduler ran. Default latest.
	Catchup string `yaml:"catchup,omitempty" json:"catchup,omitempty"`
	// CatchupLimit caps how many missed fire times "all" enqueues. Default 10.
	CatchupLimit int `yaml:"catchup_limit,omitempty" json:"catchup_limit,omitempty"`
}

// WorkspaceConfig names the Workspace project. Base URL, org and token come
// from the environment, never from the file.
type WorkspaceConfig struct {
	Project string `yaml:"project,omitempty" json:"project,omitempty"`
}

// Defaults apply to every step that does not set the field itself.
type Defaults struct {
	// Agent is the interaction agent preset; default "Default".
	Agent string `yaml:"agent,omitempty" json:"agent,omitempty"`
	// MaxTokens caps the output of each request; default 512.
	MaxTokens int `yaml:"max_tokens,omitempty" json:"max_tokens,omitempty"`
	// Temperature in [0, 2]; default unset (server default).
	Temperature *float64 `yaml:"temperature,omitempty" json:"temperature,omitempty"`
	// System is the system prompt text.
	System string `yaml:"system,omitempty" json:"system,omitempty"`
	// UseDefaultPrompt keeps Zylon's built-in system prompt; default true.
	UseDefaultPrompt *bool `yaml:"use_default_prompt,omitempty" json:"use_default_prompt,omitempty"`
	// Mode is thread or chat; default thread.
	Mode string `yaml:"mode,omitempty" json:"mode,omitempty"`
}

// Limits bound a run. Zero means "no limit" unless a default is stated.
type Limits struct {
	// Concurrency is the number of items of this pipeline in flight across all
	// workers; default 8.
	Concurrency int `yaml:"concurrency,omitempty" json:"concurrency,omitempty"`
	// RequestsPerMinute caps API requests (validate and interact) per minute.
	RequestsPerMinute int `yaml:"requests_per_minute,omitempty" json:"requests_per_minute,omitempty"`
	// TokensPerMinute caps estimated-then-settled tokens per minute.
	TokensPerMinute int `yaml:"tokens_per_minute,omitempty" json:"tokens_per_minute,omitempty"`
	// MaxTotalTokens is a hard budget for the run; items beyond it are skipped.
	MaxTotalTokens int64 `yaml:"max_total_tokens,omitempty" json:"max_total_tokens,omitempty"`
	// MaxAttempts is the number of tries per item; default 5.
	MaxAttempts int `yaml:"max_attempts,omitempty" json:"max_attempts,omitempty"`
	// ItemTimeout bounds one attempt of one item; default 10m.
	ItemTimeout Duration `yaml:"item_timeout,omitempty" json:"item_timeout,omitempty"`
}

// Duration is a time.Duration written as a Go duration string ("90s", "5m").
type Duration time.Duration

// ArtifactSet selects artifacts. Exactly one of IDs, All, Folder, Name or Type
// is the base; Name, Type and Updated further filter a Folder or All base.
type ArtifactSet struct {
	IDs        []string `yaml:"ids,omitempty" json:"ids,omitempty"`
	All        bool     `yaml:"all,omitempty" json:"all,omitempty"`
	Folder     string   `yaml:"folder,omitempty" json:"folder,omitempty"`
	Name       string   `yaml:"name,omitempty" json:"name,omitempty"`
	Type       string   `yaml:"type,omitempty" json:"type,omitempty"`
	Updated    string   `yaml:"updated,omitempty" json:"updated,omitempty"`
	AllowEmpty bool     `yaml:"allow_empty,omitempty" json:"allow_empty,omitempty"`
}

// Step is one stage of a pipeline.
type Step struct {
	ID          string   `yaml:"id" json:"id"`
	ForEach     string   `yaml:"for_each,omitempty" json:"for_each,omitempty"`
	Artifacts   []string `yaml:"artifacts,omitempty" json:"artifacts,omitempty"`
	Needs       []string `yaml:"needs,omitempty" json:"needs,omitempty"`
	Mode        string   `yaml:"mode,omitempty" json:"mode,omitempty"`
	Thread      Thread   `yaml:"thread,omitempty" json:"thread"`
	Agent       string   `yaml:"agent,omitempty" json:"agent,omitempty"`
	Prompt      string   `yaml:"prompt" json:"prompt"`
	System      string   `yaml:"system,omitempty" json:"system,omitempty"`
	MaxTokens   int      `yaml:"max_tokens,omitempty" json:"max_tokens,omitempty"`
	Temperature *float64 `yaml:"temperature,omitempty" json:"temperature,omitempty"`
	Turns       []string `yaml:"turns,omitempty" json:"turns,omitempty"`
	OnError     string   `yaml:"on_error,omitempty" json:"on_error,omitempty"`
}

// Thread configures the threads a thread-mode step creates.
type Thread struct {
	// Name is a template; default "<pipeline> <step> <run id>".
	Name string `yaml:"name,omitempty" json:"name,omitempty"`
	// Visibility is Private (default) or Public.
	Visibility string `yaml:"visibility,omitempty" json:"visibility,omitempty"`
	// Per is item (a thread per item, default) or run (one thread per step run).
	Per string `yaml:"per,omitempty" json:"per,omitempty"`
	// DeleteAfter deletes the step's threads when the run finishes.
	DeleteAfter bool `yaml:"delete_after,omitempty" json:"delete_after,omitempty"`
}

// Output configures the result files.
type Output struct {
	// Dir is the results root; default "results".
	Dir string `yaml:"dir,omitempty" json:"dir,omitempty"`
	// Report is the id of the step whose output becomes report.md; default the
	// last step.
	Report string `yaml:"report,omitempty" json:"report,omitempty"`
}

// RunInfo is the run a plan is made for; templates see it as .Run.
type RunInfo struct {
	ID          string    `json:"id"`
	Time        time.Time `json:"time"`
	WindowStart time.Time `json:"window_start,omitzero"`
	WindowEnd   time.Time `json:"window_end,omitzero"`
}

// ArtifactRef is a resolved artifact; templates see it as .Artifact.
type ArtifactRef struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Type      string    `json:"type"`
	Folder    string    `json:"folder,omitempty"` // slash-separated path of folder names
	UpdatedAt time.Time `json:"updated_at,omitzero"`
}

// ItemOutput is one finished item of an earlier step, as templates see it in
// .Steps.<id>.Items.
type ItemOutput struct {
	Artifact *ArtifactRef    `json:"artifact,omitempty"`
	Output   string          `json:"output"`
	Usage    workspace.Usage `json:"usage"`
}

// StepOutput is an earlier step's results (.Steps.<id>): Items in plan order,
// and Output, the text of a single-item step.
type StepOutput struct {
	Items  []ItemOutput `json:"items"`
	Output string       `json:"output"`
}

// Item is one unit of work: one Asynq task, one thread (or chat) and its turns.
type Item struct {
	// Key is deterministic: the same pipeline, run, step and inputs always give
	// the same key, so a resumed run recognises its finished items.
	Key  string `json:"key"`
	Step string `json:"step"`
	// Index is the item's position in its step's plan.
	Index int `json:"index"`
	// Artifact is the for_each artifact, nil for a step that runs once.
	Artifact     *ArtifactRef `json:"artifact,omitempty"`
	ArtifactIDs  []string     `json:"artifact_ids"`
	AllArtifacts bool         `json:"all_artifacts,omitempty"`
	// Mode is thread or chat.
	Mode             string `json:"mode"`
	Agent            string `json:"agent,omitempty"`
	ThreadName       string `json:"thread_name,omitempty"`
	ThreadVisibility string `json:"thread_visibility,omitempty"`
	// ThreadPer is item or run.
	ThreadPer string `json:"thread_per,omitempty"`
	// Requests are the rendered turns: the prompt, then each follow-up.
	Requests []workspace.ChatRequest `json:"requests"`
	// EstimatedTokens is the heuristic input+output estimate of all turns.
	EstimatedTokens int64 `json:"estimated_tokens"`
}
