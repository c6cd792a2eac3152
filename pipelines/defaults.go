package pipelines

import (
	"cmp"
	"time"

	"github.com/threadmill/threadmill/workspace"
)

// Format version, enum values and the defaults Load fills in.
const (
	// FormatVersion is the only pipeline format version this build reads.
	FormatVersion = 1

	ModeThread = "thread" // a thread interaction: artifacts, turns, SSE
	ModeChat   = "chat"   // a one-shot POST /app/chat: no artifacts

	PerItem = "item" // one thread per work item
	PerRun  = "run"  // one thread per step and run, shared by its items

	OnErrorContinue = "continue" // a failed item is recorded; the step and run go on
	OnErrorFail     = "fail"     // a failed item fails the run; later steps do not start

	CatchupNone   = "none"   // missed fire times are dropped
	CatchupLatest = "latest" // only the most recent missed fire time runs
	CatchupAll    = "all"    // every missed fire time runs, up to catchup_limit

	OverlapSkip  = "skip"  // a fire time while a run is active starts nothing (logged, counted)
	OverlapQueue = "queue" // a fire time while a run is active waits for the active runs to end
	OverlapAllow = "allow" // a fire time always starts its run at once

	// UpdatedWithinRunWindow is the `updated` value that keeps the artifacts
	// updated in [Run.WindowStart, Run.WindowEnd).
	UpdatedWithinRunWindow = "within_run_window"

	DefaultAgent        = workspace.AgentDefault
	DefaultMaxTokens    = 512
	DefaultConcurrency  = 8
	DefaultMaxAttempts  = 5
	DefaultItemTimeout  = 10 * time.Minute
	DefaultCatchupLimit = 10
	// DefaultOutputDir is the results root when output.dir, --results
	// and the worker's ResultsRoot are unset, relative to the working
	// directory. Not "results": that is the results package of this
	// repository, and a user cleaning up their results would delete its
	// sources. A name no source directory of this module has (a test
	// checks) that says which program wrote it.
	DefaultOutputDir = "threadmill-results"
	DefaultTimezone  = "UTC"
)

// applyDefaults fills every unset field that has a default, in one place, so
// a loaded Pipeline is complete: steps carry their effective agent, mode,
// max_tokens, temperature, system prompt and thread settings, and workers
// never consult Defaults themselves. The project falls back to the
// WORKSPACE_PROJECT environment variable when workspace.project is unset.
func (p *Pipeline) applyDefaults(lookupEnv func(string) (string, bool)) {
	if p.Workspace.Project == "" && lookupEnv != nil {
		if v, ok := lookupEnv("WORKSPACE_PROJECT"); ok {
			p.Workspace.Project = v
		}
	}
	if s := p.Schedule; s != nil {
		s.Timezone = cmp.Or(s.Timezone, DefaultTimezone)
		s.Catchup = cmp.Or(s.Catchup, CatchupLatest)
		s.CatchupLimit = cmp.Or(s.CatchupLimit, DefaultCatchupLimit)
		s.Overlap = cmp.Or(s.Overlap, OverlapSkip)
	}
	d := &p.Defaults
	d.Agent = cmp.Or(d.Agent, DefaultAgent)
	d.MaxTokens = cmp.Or(d.MaxTokens, DefaultMaxTokens)
	d.Mode = cmp.Or(d.Mode, ModeThread)
	if d.UseDefaultPrompt == nil {
		t := true
		d.UseDefaultPrompt = &t
	}
	l := &p.Limits
	l.Concurrency = cmp.Or(l.Concurrency, DefaultConcurrency)
	l.MaxAttempts = cmp.Or(l.MaxAttempts, DefaultMaxAttempts)
	l.ItemTimeout = cmp.Or(l.ItemTimeout, Duration(DefaultItemTimeout))
	for i := range p.Steps {
		s := &p.Steps[i]
		s.Agent = cmp.Or(s.Agent, d.Agent)
		s.Mode = cmp.Or(s.Mode, d.Mode)
		s.MaxTokens = cmp.Or(s.MaxTokens, d.MaxTokens)
		if s.Temperature == nil && d.Temperature != nil {
			t := *d.Temperature
			s.Temperature = &t
		}
		s.System = cmp.Or(s.System, d.System)
		s.OnError = cmp.Or(s.OnError, OnErrorContinue)
		s.applyRequestDefaults(d)
		if s.Mode == ModeThread {
			s.Thread.Visibility = cmp.Or(s.Thread.Visibility, workspace.VisibilityPrivate)
			s.Thread.Per = cmp.Or(s.Thread.Per, PerItem)
		}
	}
	p.Output.Dir = cmp.Or(p.Output.Dir, DefaultOutputDir)
	p.Output.Report = p.ReportStep()
}
