package pipelines

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// D returns the duration as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats the duration as Go does ("10m0s").
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON writes the duration as a string ("10m0s").
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads a duration string ("90s") or a number of nanoseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n int64
		if err2 := json.Unmarshal(b, &n); err2 != nil {
			return fmt.Errorf("duration: want a string such as \"90s\" or nanoseconds, got %s", b)
		}
		*d = Duration(n)
		return nil
	}
	v, err := parseDuration(s)
	if err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as a string ("10m0s").
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// MarshalText writes the duration as a string, for encoders that use it.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// StepByID returns the step with the given id.
func (p *Pipeline) StepByID(id string) (*Step, bool) {
	for i := range p.Steps {
		if p.Steps[i].ID == id {
			return &p.Steps[i], true
		}
	}
	return nil, false
}

// Location returns the schedule's time zone, or UTC when the pipeline has no
// schedule or no timezone (or, for a pipeline that bypassed Load, a zone that
// does not load).
func (p *Pipeline) Location() *time.Location {
	if p.Schedule == nil || p.Schedule.Timezone == "" {
		return time.UTC
	}
	loc, err := time.LoadLocation(p.Schedule.Timezone)
	if err != nil {
		return time.UTC
	}
	return loc
}

// Ready returns, in file order, the ids of the steps that are not done and
// whose needs are all done: the steps a run may start now. A step without
// needs is ready at once, so independent steps run side by side; a step
// starts only when every step it needs has finished. done maps step ids to
// true when the step has finished (successfully or, with on_error: continue,
// with failed items).
func (p *Pipeline) Ready(done map[string]bool) []string {
	var out []string
	for _, s := range p.Steps {
		if done[s.ID] {
			continue
		}
		if !slices.ContainsFunc(s.Needs, func(n string) bool { return !done[n] }) {
			out = append(out, s.ID)
		}
	}
	return out
}

// Dependents returns, in file order, the ids of the steps that need stepID.
func (p *Pipeline) Dependents(stepID string) []string {
	var out []string
	for _, s := range p.Steps {
		if slices.Contains(s.Needs, stepID) {
			out = append(out, s.ID)
		}
	}
	return out
}

// ReportStep returns the step whose output becomes report.md: output.report,
// or the last step.
func (p *Pipeline) ReportStep() string {
	if p.Output.Report != "" || len(p.Steps) == 0 {
		return p.Output.Report
	}
	return p.Steps[len(p.Steps)-1].ID
}

// UsesAllArtifacts reports whether the set is a bare `all: true` with no
// filter: it is sent as all_artifacts: true instead of a list of ids, unless
// a for_each walks it.
func (s ArtifactSet) UsesAllArtifacts() bool {
	return s.All && s.Name == "" && s.Type == "" && s.Updated == ""
}

// Describe summarises the set's selectors for messages and listings:
// `folder "Support/Tickets", name "TCK-*", updated within_run_window`.
func (s ArtifactSet) Describe() string {
	var parts []string
	switch {
	case len(s.IDs) == 1:
		parts = append(parts, "1 id")
	case len(s.IDs) > 1:
		parts = append(parts, fmt.Sprintf("%d ids", len(s.IDs)))
	case s.All:
		parts = append(parts, "all artifacts")
	case s.Folder != "":
		parts = append(parts, fmt.Sprintf("folder %q", s.Folder))
	}
	if s.Name != "" {
		parts = append(parts, fmt.Sprintf("name %q", s.Name))
	}
	if s.Type != "" {
		parts = append(parts, "type "+s.Type)
	}
	if s.Updated != "" {
		parts = append(parts, "updated "+s.Updated)
	}
	if s.AllowEmpty {
		parts = append(parts, "allow_empty")
	}
	return strings.Join(parts, ", ")
}
