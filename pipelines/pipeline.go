// Package pipelines is threadmill's pipeline file format: its types, strict
// loading with located errors, templates, artifact sets and planning.
package pipelines

import (
	"encoding/json"
	"time"

	"github.com/threadmill/threadmill/workspace"
)

// Pipeline is a decoded, checked pipeline file with its defaults applied.
// It round-trips through encoding/json, so a run can carry it in Redis and
// workers never need the YAML file.
type Pipeline struct {
	// Version is the format version; always 1 (FormatVersion). Required.
	Version int `yaml:"version" json:"version"`
	// Name names the pipeline, its results directory and its threads:
	// letters, digits, '.', '_' and '-'. Required.
	Name string `yaml:"name" json:"name"`
	// Description is free text; templates read it as .Pipeline.Description.
	Description string `yaml:"description,omitempty" json:"description,omitempty"`
	// Schedule, when set, runs the pipeline on a cron schedule.
	Schedule *Schedule `yaml:"schedule,omitempty" json:"schedule,omitempty"`
	// Workspace names the project; the connection comes from the environment.
	Workspace WorkspaceConfig `yaml:"workspace,omitempty" json:"workspace"`
	// Defaults apply to every step that does not set the field itself.
	Defaults Defaults `yaml:"defaults,omitempty" json:"defaults"`
	// Limits bound a run: concurrency, rates, budget, attempts, timeouts.
	Limits Limits `yaml:"limits,omitempty" json:"limits"`
	// Vars are strings templates read as .Vars.<name>.
	Vars map[string]string `yaml:"vars,omitempty" json:"vars,omitempty"`
	// Artifacts are the named artifact sets steps walk (for_each) or attach
	// (artifacts), resolved at the start of each run.
	Artifacts map[string]ArtifactSet `yaml:"artifacts,omitempty" json:"artifacts,omitempty"`
	// Steps run in file order; a step starts once every step in its needs
	// has finished. At least one is required.
	Steps []Step `yaml:"steps" json:"steps"`
	// Output configures the result files.
	Output Output `yaml:"output,omitempty" json:"output"`
	// Notify lists the webhooks called when a run finishes.
	Notify []Notify `yaml:"notify,omitempty" json:"notify,omitempty"`

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
	// Overlap is skip, queue or allow: what a fire time does while a run of
	// the pipeline is still pending, running or finalizing. skip: no run is
	// started for it (logged and counted); queue: its run is recorded and
	// starts once the earlier runs ended; allow: it starts at once. Default
	// skip.
	Overlap string `yaml:"overlap,omitempty" json:"overlap,omitempty"`
}

// WorkspaceConfig names the Workspace project. Base URL, org and token come
// from the environment, never from the file.
type WorkspaceConfig struct {
	// Project is the project id; default the WORKSPACE_PROJECT environment
	// variable (filled in by Load).
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
	// TopP is nucleus sampling, in (0, 1]; default unset (server default).
	TopP *float64 `yaml:"top_p,omitempty" json:"top_p,omitempty"`
	// Seed asks for reproducible sampling; default unset.
	Seed *int64 `yaml:"seed,omitempty" json:"seed,omitempty"`
	// Thinking turns deep reasoning on (thinking blocks are counted in
	// usage, kept out of outputs); default unset (off).
	Thinking *bool `yaml:"thinking,omitempty" json:"thinking,omitempty"`
	// Priority is the request's scheduling priority, 0 to 1000; default unset.
	Priority *int `yaml:"priority,omitempty" json:"priority,omitempty"`
	// Tools are built-in tools the model may use (BuiltinTools).
	Tools []string `yaml:"tools,omitempty" json:"tools,omitempty"`
	// ToolChoice is auto, none, or the name of one of Tools (that tool).
	ToolChoice string `yaml:"tool_choice,omitempty" json:"tool_choice,omitempty"`
	// Citations asks for citations and source blocks (system.citations),
	// kept per item in the results and listed in the report.
	Citations *bool `yaml:"citations,omitempty" json:"citations,omitempty"`
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

// ArtifactSet selects artifacts. At most one of IDs, All and Folder is the
// base; Name, Type and Updated filter an All or Folder base, or the whole
// project when there is no base. IDs take no filter.
//
// Only usable artifacts are selected (Published, ingest Done or
// NotApplicable); folders are walked, never selected.
type ArtifactSet struct {
	// IDs lists artifacts by id; a folder's id stands for its artifacts.
	IDs []string `yaml:"ids,omitempty" json:"ids,omitempty"`
	// All selects every artifact of the project. A bare `all: true` used
	// only as context is sent as all_artifacts: true.
	All bool `yaml:"all,omitempty" json:"all,omitempty"`
	// Folder selects a folder's artifacts at every depth, by folder id or by
	// a path of folder names ("Support/Tickets").
	Folder string `yaml:"folder,omitempty" json:"folder,omitempty"`
	// Name keeps the artifacts whose name matches a glob (path.Match syntax).
	Name string `yaml:"name,omitempty" json:"name,omitempty"`
	// Type keeps the artifacts of one type (Document, InlineText, ...).
	Type string `yaml:"type,omitempty" json:"type,omitempty"`
	// Updated keeps the artifacts updated within_run_window, since a date
	// or RFC 3339 time, or within a duration (168h) before the run time.
	Updated string `yaml:"updated,omitempty" json:"updated,omitempty"`
	// AllowEmpty makes an empty set acceptable; otherwise it is an error.
	AllowEmpty bool `yaml:"allow_empty,omitempty" json:"allow_empty,omitempty"`
}

// Step is one stage of a pipeline.
// After Load, the fields with defaults hold their effective values.
type Step struct {
	// ID is unique in the pipeline (letters, digits, '_'); templates read
	// the step's outputs as .Steps.<id>. Required.
	ID string `yaml:"id" json:"id"`
	// ForEach names an artifact set: one item per artifact, which templates
	// read as .Artifact. Without it the step runs once.
	ForEach string `yaml:"for_each,omitempty" json:"for_each,omitempty"`
	// Artifacts names sets every item uses as context (thread mode only).
	Artifacts []string `yaml:"artifacts,omitempty" json:"artifacts,omitempty"`
	// Needs names earlier steps this step waits for and reads.
	Needs []string `yaml:"needs,omitempty" json:"needs,omitempty"`
	// Mode is thread (default) or chat; chat takes no artifacts and no turns.
	Mode string `yaml:"mode,omitempty" json:"mode,omitempty"`
	// Thread configures the step's threads (thread mode).
	Thread Thread `yaml:"thread,omitempty" json:"thread"`
	// Agent is the agent preset: Default (default) or ProjectDeepResearch.
	Agent string `yaml:"agent,omitempty" json:"agent,omitempty"`
	// Prompt is the first message of each item, a template. Required.
	Prompt string `yaml:"prompt" json:"prompt"`
	// System is the system prompt, a template; default defaults.system.
	System string `yaml:"system,omitempty" json:"system,omitempty"`
	// MaxTokens caps each answer; default defaults.max_tokens.
	MaxTokens int `yaml:"max_tokens,omitempty" json:"max_tokens,omitempty"`
	// Temperature in [0, 2]; default defaults.temperature.
	Temperature *float64 `yaml:"temperature,omitempty" json:"temperature,omitempty"`
	// Turns are follow-up prompts (templates) sent in the same thread after
	// Prompt, in order; the item's output is the last answer.
	Turns []string `yaml:"turns,omitempty" json:"turns,omitempty"`
	// OnError is continue (default: a failed item is recorded and the run
	// goes on) or fail (a failed item fails the run).
	OnError string `yaml:"on_error,omitempty" json:"on_error,omitempty"`
	// TopP is nucleus sampling, in (0, 1]; default defaults.top_p.
	TopP *float64 `yaml:"top_p,omitempty" json:"top_p,omitempty"`
	// Seed asks for reproducible sampling;
	// default defaults.seed.
	Seed *int64 `yaml:"seed,omitempty" json:"seed,omitempty"`
	// Thinking turns deep reasoning on (thinking blocks are counted in
	// usage, kept out of outputs); default unset (off).
	Thinking *bool `yaml:"thinking,omitempty" json:"thinking,omitempty"`
	// Priority is the request's scheduling priority, 0 to 1000; default unset.
	Priority *int `yaml:"priority,omitempty" json:"priority,omitempty"`
	// Tools are built-in tools the model may use (BuiltinTools).
	Tools []string `yaml:"tools,omitempty" json:"tools,omitempty"`
	// ToolChoice is auto, none, or the name of one of Tools (that tool).
	ToolChoice string `yaml:"tool_choice,omitempty" json:"tool_choice,omitempty"`
	// Citations asks for citations and source blocks (system.citations),
	// kept per item in the results and listed in the report.
	Citations *bool `yaml:"citations,omitempty" json:"citations,omitempty"`
	// OutputSchema, when set, is the JSON Schema (an object schema) the
	// item's last answer must match: sent as response_format, checked,
	// repaired, and read by later steps as .JSON.
	OutputSchema *OutputSchema `yaml:"output_schema,omitempty" json:"output_schema,omitempty"`
	// MaxRepairs is how many repair turns an answer that does not match
	// OutputSchema gets before the item fails; default 1 (0: none).
	MaxRepairs *int `yaml:"max_repairs,omitempty" json:"max_repairs,omitempty"`
	// Reuse is never (default: every item is sent) or unchanged: an item
	// whose request and artifacts are those of an item a run finished
	// earlier takes that output instead of being sent (see ReuseKey).
	Reuse string `yaml:"reuse,omitempty" json:"reuse,omitempty"`
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
	// Dir is the results root; default DefaultOutputDir ("threadmill-results").
	Dir string `yaml:"dir,omitempty" json:"dir,omitempty"`
	// Report is the id of the step whose output becomes report.md; default the
	// last step.
	Report string `yaml:"report,omitempty" json:"report,omitempty"`
	// Publish uploads report.md into the Workspace as a Document artifact.
	Publish *Publish `yaml:"publish,omitempty" json:"publish,omitempty"`
	// Files writes one file per succeeded item of a step into the run
	// directory.
	Files *Files `yaml:"files,omitempty" json:"files,omitempty"`
	// CSV names a CSV file of every item written into the run directory
	// ("items.csv"); empty: none.
	CSV string `yaml:"csv,omitempty" json:"csv,omitempty"`
}

// RunInfo is the run a plan is made for; templates see it as .Run.
type RunInfo struct {
	// ID names the run; it is part of default thread names and result paths.
	ID string `json:"id"`
	// Time is the run's (scheduled or manual) time.
	Time time.Time `json:"time"`
	// WindowStart and WindowEnd bound the run's window, [previous fire
	// time, fire time) for a scheduled run; zero for a manual run without
	// one. `updated: within_run_window` selects by it.
	WindowStart time.Time `json:"window_start,omitzero"`
	WindowEnd   time.Time `json:"window_end,omitzero"`
	// NoReuse sends every item, also those of steps with reuse: unchanged
	// (threadmill run --no-reuse); their outputs are still kept for later
	// runs. Templates do not see it.
	NoReuse bool `json:"no_reuse,omitempty"`
}

// ArtifactRef is a resolved artifact; templates see it as .Artifact.
type ArtifactRef struct {
	// ID is the artifact's id, sent in artifact_ids.
	ID string `json:"id"`
	// Name is the artifact's name ("TCK-1041-login-loop.md").
	Name string `json:"name"`
	// Type is the artifact type (Document, InlineText, ...).
	Type string `json:"type"`
	// Folder is the slash-separated path of the folder names above it; ""
	// at the project's top level.
	Folder string `json:"folder,omitempty"`
	// UpdatedAt is when the artifact last changed (its creation time when
	// the API gives no update time).
	UpdatedAt time.Time `json:"updated_at,omitzero"`
	// Size is the size in bytes of the artifact's content as the API
	// reports it (workspace.Artifact.Size); 0 when it reports none, and
	// then plans count UnsizedArtifactTokens for it.
	Size int64 `json:"size,omitempty"`
	// State is the artifact's state and ingest status when the set was
	// resolved ("Published/Done"); "" when unknown.
	State string `json:"state,omitempty"`
}

// ItemOutput is one finished item of an earlier step, as templates see it in
// .Steps.<id>.Items.
type ItemOutput struct {
	// Artifact is the item's for_each artifact, nil for a step that runs once.
	Artifact *ArtifactRef `json:"artifact,omitempty"`
	// Output is the text of the item's last answer.
	Output string `json:"output"`
	// Usage is the tokens the item used, all turns together.
	Usage workspace.Usage `json:"usage"`
	// JSON is the answer's value, valid for the step's output_schema;
	// absent for a step without one.
	JSON json.RawMessage `json:"json,omitempty"`
}

// StepOutput is an earlier step's results (.Steps.<id>): Items in plan order,
// and Output, the text of a single-item step.
type StepOutput struct {
	// Items are the step's finished items, in plan order.
	Items []ItemOutput `json:"items"`
	// Output is the output of a step that runs once (no for_each).
	Output string `json:"output"`
}

// Item is one unit of work: one Asynq task, one thread (or chat) and its turns.
type Item struct {
	// Key is deterministic: the same pipeline, run, step and inputs always give
	// the same key, so a resumed run recognises its finished items.
	Key string `json:"key"`
	// Step is the id of the item's step.
	Step string `json:"step"`
	// Index is the item's position in its step's plan.
	Index int `json:"index"`
	// Artifact is the for_each artifact, nil for a step that runs once.
	Artifact *ArtifactRef `json:"artifact,omitempty"`
	// ArtifactIDs are sent as the interaction's artifact_ids: the for_each
	// artifact, then those of the step's artifacts sets (empty in chat mode).
	ArtifactIDs []string `json:"artifact_ids"`
	// AllArtifacts is sent as all_artifacts: a step's artifacts include a
	// bare `all: true` set.
	AllArtifacts bool `json:"all_artifacts,omitempty"`
	// Mode is thread or chat.
	Mode string `json:"mode"`
	// Agent is the interaction's agent preset.
	Agent string `json:"agent,omitempty"`
	// ThreadName is the rendered thread name (thread mode).
	ThreadName string `json:"thread_name,omitempty"`
	// ThreadVisibility is Private or Public (thread mode).
	ThreadVisibility string `json:"thread_visibility,omitempty"`
	// ThreadPer is item or run.
	ThreadPer string `json:"thread_per,omitempty"`
	// Requests are the rendered turns: the prompt, then each follow-up.
	Requests []workspace.ChatRequest `json:"requests"`
	// EstimatedTokens is the heuristic input+output estimate of all turns,
	// ContextTokens included.
	EstimatedTokens int64 `json:"estimated_tokens"`
	// ContextTokens is the part of EstimatedTokens that counts the
	// artifacts sent as context (EstimateContextTokens).
	ContextTokens int64 `json:"context_tokens,omitempty"`
	// Unsized lists the ids of the item's artifacts whose size the API did
	// not report: each was counted at UnsizedArtifactTokens.
	Unsized []string `json:"unsized,omitempty"`
	// ReuseKey identifies what shaped the item's output (see ReuseKey);
	// set only in a step with reuse: unchanged.
	ReuseKey string `json:"reuse_key,omitempty"`
}
