// Package reuse keeps the outputs of finished items so that a later run of
// the same pipeline can take them instead of sending the same request again
// (a step's `reuse: unchanged`). An output is found by its item's reuse key
// (pipelines.ReuseKey): a hash of everything that shaped it, so a changed
// prompt, parameter or artifact (its updated_at or state) misses.
//
// Outputs live next to the run state they come from: in Redis for
// distributed runs (Redis), under the results root for the embedded runner
// (Dir), so two embedded runs of one pipeline share them. Both expire after a
// retention (DefaultRetention) counted from the last run that saved them.
package reuse

import (
	"context"
	"time"

	"github.com/threadmill/threadmill/workspace"
)

// DefaultRetention is how long a saved output stays reusable after the last
// run that saved it.
const DefaultRetention = 30 * 24 * time.Hour

// Entry is one reusable output: what an item's result line needs, and the
// run that paid for it.
type Entry struct {
	// Key is the item's reuse key.
	Key string `json:"key"`
	// RunID is the run that sent the request and paid for the output.
	RunID string `json:"run_id"`
	// Step and ItemKey name the item in that run.
	Step    string `json:"step"`
	ItemKey string `json:"item_key"`
	// Output is the last turn's text; Outputs one text per turn.
	Output     string   `json:"output"`
	Outputs    []string `json:"outputs,omitempty"`
	StopReason string   `json:"stop_reason,omitempty"`
	Truncated  bool     `json:"truncated,omitempty"`
	// Usage is what the output cost when it was sent: the tokens a run
	// that reuses it saves.
	Usage workspace.Usage `json:"usage"`
	// FinishedAt is when the item finished in RunID.
	FinishedAt time.Time `json:"finished_at,omitzero"`
}

// Store finds and keeps reusable outputs, per pipeline. Implementations are
// safe for concurrent use.
type Store interface {
	// Lookup returns the entries of pipeline found for keys, by key; keys
	// without one (or expired) are absent from the map.
	Lookup(ctx context.Context, pipeline string, keys []string) (map[string]Entry, error)
	// Save keeps entries for pipeline, replacing those with the same keys
	// and restarting their retention.
	Save(ctx context.Context, pipeline string, entries []Entry) error
}
