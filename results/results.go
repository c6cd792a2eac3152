// Package results writes a run's result directory:
//
//	results/<pipeline>/<run-id>/
//	  run.json       the run: pipeline, hash, window, status, counts, usage
//	  results.jsonl  one line per item, in the order items were added
//	  errors.jsonl   the failed items only (same line format)
//	  report.md      the report step's output and a usage table
//	results/<pipeline>/latest -> <run-id>
//
// A Writer streams items to temporary files inside a hidden directory next to
// the final one, so its memory does not grow with the number of items, and
// Commit moves the finished directory into place with one rename: a reader
// sees either the previous attempt's directory or the complete new one, never
// a half-written file.
//
// A Journal is the embedded runner's record of finished items, appended to as
// items finish so that an interrupted run can be resumed without sending
// finished items again.
package results

import (
	"encoding/json"
	"time"

	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/workspace"
)

// Item states.
const (
	StateSucceeded = "succeeded" // the item's turns all completed
	StateFailed    = "failed"    // the item failed for good (permanent error or attempts exhausted)
	StateSkipped   = "skipped"   // the item was never sent (token budget spent, run stopped)
	StateCanceled  = "canceled"  // the run was canceled before the item finished (threadmill cancel)
)

// Run statuses.
const (
	StatusSucceeded = "succeeded" // every item succeeded
	StatusFailed    = "failed"    // the run finished, some items failed or were skipped
	StatusStopped   = "stopped"   // the run stopped early (a step's on_error: fail)
	StatusCanceled  = "canceled"  // the run was canceled (threadmill cancel)
)

// Item is one line of results.jsonl (and of errors.jsonl when it failed): one
// work item of one step, what was sent, what came back and what it cost.
type Item struct {
	Step  string `json:"step"`
	Key   string `json:"key"`
	Index int    `json:"index"`
	// Artifact is the for_each artifact; nil for a step that runs once.
	Artifact     *pipelines.ArtifactRef `json:"artifact,omitempty"`
	ArtifactIDs  []string               `json:"artifact_ids"`
	AllArtifacts bool                   `json:"all_artifacts,omitempty"`
	// State is succeeded, failed or skipped.
	State string `json:"state"`
	// Output is the final turn's text; Outputs has one text per turn.
	Output  string          `json:"output"`
	Outputs []string        `json:"outputs,omitempty"`
	Usage   workspace.Usage `json:"usage"`
	// UsageEstimated is true when the server reported no usage for at least
	// one turn (a one-shot chat without usage) and Usage counts threadmill's
	// estimate for it: workspace.EstimateTokens of the prompt and answer.
	UsageEstimated bool `json:"usage_estimated,omitempty"`
	// EstimatedTokens is the plan's estimate of the item's tokens
	// (pipelines.Item.EstimatedTokens), which the budget reserved.
	EstimatedTokens int64 `json:"estimated_tokens,omitempty"`
	// Unsized is true when the estimate counted an artifact whose size the
	// API did not report.
	Unsized    bool   `json:"unsized,omitempty"`
	StopReason string `json:"stop_reason,omitempty"`
	// Truncated is true when the output stopped at max_tokens.
	Truncated bool `json:"truncated,omitempty"`
	// Attempts is the number of tries the item took (1 when it worked first time).
	Attempts       int      `json:"attempts"`
	LatencyMS      int64    `json:"latency_ms"`
	ThreadID       string   `json:"thread_id,omitempty"`
	InteractionIDs []string `json:"interaction_ids,omitempty"`
	Error          string   `json:"error,omitempty"`
	// JSON is the value of the last answer, valid for the step's
	// output_schema (absent without one, or when the item failed).
	JSON json.RawMessage `json:"json,omitempty"`
	// Repairs counts the repair turns sent because an answer did not match
	// output_schema; their answers are in Outputs, after the turns'.
	Repairs int `json:"repairs,omitempty"`
	// Citations and Sources are what the answers cited (when the step asks
	// for citations): the citations of the text blocks and the sources
	// (artifact ids, titles, pages) of the source blocks, every turn's.
	Citations []workspace.Citation `json:"citations,omitempty"`
	Sources   []workspace.Source   `json:"sources,omitempty"`
	// Requests are the rendered requests sent, one per turn. They never carry
	// a secret: the token travels in a header, never in a request body.
	Requests   []workspace.ChatRequest `json:"requests"`
	StartedAt  time.Time               `json:"started_at,omitzero"`
	FinishedAt time.Time               `json:"finished_at,omitzero"`
	// ReuseKey is the item's reuse key (a step with reuse: unchanged).
	ReuseKey string `json:"reuse_key,omitempty"`
	// ReusedFrom is the run whose output the item took instead of being
	// sent (reuse: unchanged); Usage is then zero, and ReusedUsage is
	// what that run paid for it: the tokens this run saved.
	ReusedFrom  string          `json:"reused_from,omitempty"`
	ReusedUsage workspace.Usage `json:"reused_usage,omitzero"`
}

// StepUsage is one step's item counts by state and its token usage.
type StepUsage struct {
	Step  string          `json:"step"`
	Items map[string]int  `json:"items"`
	Usage workspace.Usage `json:"usage"`
	// Reused counts the step's items that took an earlier run's output.
	Reused int `json:"reused,omitempty"`
	// Estimate compares the plan's estimate to the usage of the step's
	// succeeded items; absent when none carries an estimate.
	Estimate *StepEstimate `json:"estimate,omitempty"`
}

// StepEstimate is a step's token estimate against its actual usage, over
// the items that succeeded, so that max_total_tokens can be calibrated:
// a Ratio well below 1 means the budget reserves more than items use.
type StepEstimate struct {
	// Items is the number of succeeded items with an estimate.
	Items int `json:"items"`
	// EstimatedTokens sums their Item.EstimatedTokens.
	EstimatedTokens int64 `json:"estimated_tokens"`
	// UsedTokens sums their usage, input and output.
	UsedTokens int64 `json:"used_tokens"`
	// Ratio is UsedTokens / EstimatedTokens, rounded to three decimals.
	Ratio float64 `json:"ratio"`
	// Unsized counts the items estimated with an artifact of unknown size
	// (pipelines.UnsizedArtifactTokens).
	Unsized int `json:"unsized,omitempty"`
}

// Run is run.json.
//
// Commit computes Total, Counts, Steps and Usage from the items added to the
// Writer, so the summary always agrees with results.jsonl; Steps given by the
// caller only fix the order of the steps (pipeline order). Retries is the
// caller's figure when non-zero, else the sum of Attempts-1 over the items.
// Status is derived from the counts when empty.
type Run struct {
	Pipeline     string     `json:"pipeline"`
	PipelineHash string     `json:"pipeline_hash,omitempty"`
	RunID        string     `json:"run_id"`
	Status       string     `json:"status"`
	FireTime     *time.Time `json:"fire_time,omitempty"`
	WindowStart  *time.Time `json:"window_start,omitempty"`
	WindowEnd    *time.Time `json:"window_end,omitempty"`
	StartedAt    time.Time  `json:"started_at"`
	FinishedAt   time.Time  `json:"finished_at"`
	// ReportStep is the step whose output is report.md.
	ReportStep string          `json:"report_step,omitempty"`
	Total      int             `json:"total"`
	Counts     map[string]int  `json:"counts"`
	Steps      []StepUsage     `json:"steps"`
	Usage      workspace.Usage `json:"usage"`
	Retries    int             `json:"retries"`
	// Reused counts the items that took an earlier run's output instead
	// of being sent (reuse: unchanged); TokensSaved is what those outputs
	// cost the runs that paid for them.
	Reused      int   `json:"reused"`
	TokensSaved int64 `json:"tokens_saved,omitempty"`
	// Files counts the files output.files wrote into the run directory.
	Files int `json:"files,omitempty"`
	// Published is the artifact output.publish uploaded report.md as.
	Published *Published `json:"published,omitempty"`
	// Attempts are the run's earlier attempts, oldest first, when it was
	// retried (threadmill retry): each one's status, times and counts as it
	// ended. The fields above describe the run as it is now.
	Attempts []Attempt `json:"attempts,omitempty"`
}

// Published is report.md as output.publish uploaded it into the Workspace.
type Published struct {
	// ArtifactID is the Document artifact's id.
	ArtifactID string `json:"artifact_id,omitempty"`
	// Name and Folder are where it is: its name and the folder path.
	Name   string `json:"name"`
	Folder string `json:"folder,omitempty"`
	// Action is created (a new artifact) or replaced (an artifact of that
	// name in that folder had its content replaced: a retry or a re-run).
	Action string `json:"action,omitempty"`
	// Error says why it could not be published; the run's files and
	// status do not depend on it.
	Error string `json:"error,omitempty"`
}

// Attempt is one finished attempt of a run that was retried afterwards.
type Attempt struct {
	// Attempt is 0 for the run's first attempt, n for its n-th retry.
	Attempt    int             `json:"attempt"`
	Status     string          `json:"status"`
	StartedAt  time.Time       `json:"started_at,omitzero"`
	FinishedAt time.Time       `json:"finished_at,omitzero"`
	Total      int             `json:"total"`
	Succeeded  int             `json:"succeeded"`
	Failed     int             `json:"failed"`
	Skipped    int             `json:"skipped"`
	Canceled   int             `json:"canceled,omitempty"`
	Usage      workspace.Usage `json:"usage"`
	StopReason string          `json:"stop_reason,omitempty"`
	ResultDir  string          `json:"result_dir,omitempty"`
}

// Duration returns FinishedAt - StartedAt, or zero when either is unset.
func (r *Run) Duration() time.Duration {
	if r.StartedAt.IsZero() || r.FinishedAt.IsZero() {
		return 0
	}
	return r.FinishedAt.Sub(r.StartedAt)
}
