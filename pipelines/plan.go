package pipelines

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"iter"
	"regexp"
	"slices"
	"strings"

	"github.com/threadmill/threadmill/workspace"
)

// Plan lists the work items of one step of a run: one item per artifact of
// the step's for_each set (in the set's order), or a single item for a step
// without for_each. Each item carries its rendered requests (the prompt, then
// each turn), its artifact ids and a token estimate.
//
// sets is what Resolve returned; prior holds the outputs of the steps in the
// step's needs (others are ignored). Plan is deterministic: the same
// pipeline, run, sets and prior give the same items, byte for byte.
//
// Item keys: "<step>" for a step that runs once, "<step>/<artifact id>" for
// a for_each item (the artifact id is replaced by "sha256-" and 16 hex digits
// of its hash when it has characters outside [A-Za-z0-9_.-]). Keys do not
// depend on the rendered text, so a resumed run recognises its finished items
// even though earlier outputs it reads may differ.
func Plan(p *Pipeline, stepID string, run RunInfo, sets map[string][]ArtifactRef, prior map[string]StepOutput) ([]Item, error) {
	ctx := context.Background() // sets in memory: nothing blocks
	sp, err := NewStepPlan(ctx, p, stepID, run, SetsOf(sets), prior)
	if err != nil {
		return nil, err
	}
	items := make([]Item, 0, sp.Len())
	for it, err := range sp.Items(ctx) {
		if err != nil {
			return nil, err
		}
		items = append(items, it)
	}
	return items, nil
}

// StepPlan is the plan of one step, rendered an item at a time as its
// for_each set is read: a step of a million items is planned and enqueued
// in flat memory. Items renders each time it is ranged over, the same items
// byte for byte.
type StepPlan struct {
	p            *Pipeline
	s            *Step
	run          RunInfo
	forEach      RefSet // nil: the step runs once
	fixed        []ArtifactRef
	allArtifacts bool
	base         map[string]any
	// refs maps the ids of the step's fixed artifacts to the resolved
	// artifacts, for reuse keys; nil unless the step has reuse: unchanged.
	refs map[string]ArtifactRef
}

// NewStepPlan checks what step stepID needs (its artifact sets and the
// outputs of the steps in its needs) and returns its plan; see Plan. It
// reads the step's fixed artifacts (its artifacts sets) whole; its for_each
// set is read as the items are rendered.
func NewStepPlan(ctx context.Context, p *Pipeline, stepID string, run RunInfo, sets Sets, prior map[string]StepOutput) (*StepPlan, error) {
	s, ok := p.StepByID(stepID)
	if !ok {
		return nil, fmt.Errorf("plan: pipeline %q has no step %q", p.Name, stepID)
	}
	for _, n := range s.Needs {
		if _, ok := prior[n]; !ok {
			return nil, fmt.Errorf("plan step %q: the outputs of step %q, which it needs, were not given", stepID, n)
		}
	}
	// The step's fixed context: every artifact of its `artifacts` sets.
	var fixed []ArtifactRef
	seen := map[string]bool{}
	allArtifacts := false
	for _, name := range s.Artifacts {
		set, ok := p.Artifacts[name]
		if !ok {
			return nil, fmt.Errorf("plan step %q: artifact set %q is not defined", stepID, name)
		}
		if set.UsesAllArtifacts() {
			allArtifacts = true
			continue
		}
		refs, ok := sets[name]
		if !ok || refs == nil {
			return nil, fmt.Errorf("plan step %q: artifact set %q was not resolved", stepID, name)
		}
		for r, err := range refs.From(ctx, 0) {
			if err != nil {
				return nil, fmt.Errorf("plan step %q: %w", stepID, err)
			}
			if !seen[r.ID] {
				seen[r.ID] = true
				fixed = append(fixed, r)
			}
		}
	}
	if allArtifacts {
		fixed = nil
	}

	var forEach RefSet
	if s.ForEach != "" {
		refs, ok := sets[s.ForEach]
		if !ok || refs == nil {
			return nil, fmt.Errorf("plan step %q: for_each set %q was not resolved", stepID, s.ForEach)
		}
		forEach = refs
	}
	sp := &StepPlan{
		p: p, s: s, run: run, forEach: forEach, fixed: fixed, allArtifacts: allArtifacts,
		base: templateData(p, run, nil, prior, s.Needs),
	}
	if s.Reuse == ReuseUnchanged {
		sp.refs = refsByID(fixed)
	}
	return sp, nil
}

// Len is the number of items of the step.
func (sp *StepPlan) Len() int {
	if sp.forEach == nil {
		return 1
	}
	return sp.forEach.Len()
}

// Step is the step planned.
func (sp *StepPlan) Step() *Step { return sp.s }

// Items renders the step's items in plan order. It stops at the first item
// that cannot be rendered, yielding its error (naming the step and the
// artifact), or at the first error reading the for_each set (a
// *SetReadError).
func (sp *StepPlan) Items(ctx context.Context) iter.Seq2[Item, error] { return sp.ItemsFrom(ctx, 0) }

// ItemsFrom is Items from plan index from on (none when from >= Len).
func (sp *StepPlan) ItemsFrom(ctx context.Context, from int) iter.Seq2[Item, error] {
	return func(yield func(Item, error) bool) {
		r := &renderer{}
		from = max(from, 0)
		item := func(i int, a *ArtifactRef) bool {
			it, err := planItem(r, sp.base, sp.p, sp.s, sp.run, a, sp.fixed, sp.allArtifacts)
			if err != nil {
				if a != nil {
					err = fmt.Errorf("plan step %q, artifact %s (%q): %w", sp.s.ID, a.ID, a.Name, err)
				} else {
					err = fmt.Errorf("plan step %q: %w", sp.s.ID, err)
				}
				yield(Item{}, err)
				return false
			}
			it.Index = i
			if sp.refs != nil && !it.AllArtifacts {
				it.ReuseKey = ReuseKey(sp.p.Workspace.Project, &it, sp.refs)
			}
			return yield(it, nil)
		}
		if sp.forEach == nil {
			if from == 0 {
				item(0, nil)
			}
			return
		}
		i := from
		for a, err := range sp.forEach.From(ctx, from) {
			if err != nil {
				yield(Item{}, fmt.Errorf("plan step %q: %w", sp.s.ID, err))
				return
			}
			if !item(i, &a) {
				return
			}
			i++
		}
	}
}

func planItem(r *renderer, base map[string]any, p *Pipeline, s *Step, run RunInfo, a *ArtifactRef, fixed []ArtifactRef, allArtifacts bool) (Item, error) {
	data := withArtifact(base, a)
	it := Item{
		Key:          ItemKey(s.ID, a),
		Step:         s.ID,
		AllArtifacts: allArtifacts,
		Mode:         s.Mode,
		Agent:        s.Agent,
	}
	if a != nil {
		ac := *a
		it.Artifact = &ac
	}
	ids := []string{}
	var context []ArtifactRef
	if a != nil {
		ids = append(ids, a.ID)
		context = append(context, *a)
	}
	for _, f := range fixed {
		if !slices.Contains(ids, f.ID) {
			ids = append(ids, f.ID)
			context = append(context, f)
		}
	}
	if s.Mode == ModeChat {
		ids = []string{}
		context = nil
		it.AllArtifacts = false
	}
	it.ArtifactIDs = ids

	var system string
	if s.System != "" {
		var err error
		if system, err = r.render(stepPath(p, s)+".system", s.System, data); err != nil {
			return Item{}, err
		}
	}
	texts := append([]string{s.Prompt}, s.Turns...)
	for j, t := range texts {
		name := stepPath(p, s) + ".prompt"
		if j > 0 {
			name = fmt.Sprintf("%s.turns[%d]", stepPath(p, s), j-1)
		}
		out, err := r.render(name, t, data)
		if err != nil {
			return Item{}, err
		}
		req := chatRequest(p, s, system, out)
		applyRequestSurface(&req, s, j == len(texts)-1)
		it.Requests = append(it.Requests, req)
	}
	if s.Mode == ModeThread {
		it.ThreadVisibility = s.Thread.Visibility
		it.ThreadPer = s.Thread.Per
		name := s.Thread.Name
		if name != "" {
			if s.ForEach != "" && s.Thread.Per == PerRun {
				data = base
			}
			var err error
			if name, err = r.render(stepPath(p, s)+".thread.name", name, data); err != nil {
				return Item{}, err
			}
		} else {
			name = DefaultThreadName(p.Name, s.ID, run.ID, a, s.Thread.Per)
		}
		it.ThreadName = strings.TrimSpace(name)
	}
	it.ContextTokens, it.Unsized = EstimateContextTokens(context, len(it.Requests))
	it.EstimatedTokens = EstimateItemTokens(it.Requests) + it.ContextTokens
	return it, nil
}

// stepPath names a step's position for template error messages.
func stepPath(p *Pipeline, s *Step) string {
	for i := range p.Steps {
		if p.Steps[i].ID == s.ID {
			return fmt.Sprintf("steps[%d]", i)
		}
	}
	return "steps[?]"
}

func chatRequest(p *Pipeline, s *Step, system, prompt string) workspace.ChatRequest {
	req := workspace.ChatRequest{Messages: []workspace.Message{workspace.UserText(prompt)}}
	if system != "" || p.Defaults.UseDefaultPrompt != nil {
		req.System = &workspace.System{Text: system}
		if u := p.Defaults.UseDefaultPrompt; u != nil {
			v := *u
			req.System.UseDefaultPrompt = &v
		}
	}
	if s.MaxTokens > 0 {
		mt := s.MaxTokens
		req.MaxTokens = &mt
	}
	if s.Temperature != nil {
		t := *s.Temperature
		req.Temperature = &t
	}
	return req
}

// DefaultThreadName is the name of a step's thread when thread.name is unset:
// "<pipeline> · <step> · <run id>", followed by " · <artifact name>" for a
// for_each item that has a thread of its own.
func DefaultThreadName(pipeline, step, runID string, a *ArtifactRef, per string) string {
	name := fmt.Sprintf("%s · %s · %s", pipeline, step, runID)
	if a != nil && per != PerRun {
		name += " · " + a.Name
	}
	return name
}

var safeKeyRe = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)

// ItemKey is an item's deterministic key: the step id, then "/" and the
// for_each artifact's id (hashed when it is not made of safe characters).
func ItemKey(stepID string, a *ArtifactRef) string {
	if a == nil {
		return stepID
	}
	if safeKeyRe.MatchString(a.ID) {
		return stepID + "/" + a.ID
	}
	sum := sha256.Sum256([]byte(a.ID))
	return stepID + "/sha256-" + hex.EncodeToString(sum[:8])
}

// EstimateItemTokens estimates the tokens an item will use, input plus
// output, with workspace.EstimateTokens (one token per four bytes):
//
//   - turn i (0-based) sends the system text and every prompt up to and
//     including its own, and the answers of the i earlier turns, each
//     counted at its max_tokens (the thread carries them);
//   - each turn's output is counted at its max_tokens.
//
// The artifacts sent as context are counted apart, by
// EstimateContextTokens. Usage settles the real figure; the estimate is an
// upper bound for budgeting the text a pipeline sends.
func EstimateItemTokens(reqs []workspace.ChatRequest) int64 {
	var total, prompts, answers int64
	for _, r := range reqs {
		var text int64
		for _, m := range r.Messages {
			for _, c := range m.Content {
				text += workspace.EstimateTokens(c.Text)
			}
		}
		prompts += text
		var sys, out int64
		if r.System != nil {
			sys = workspace.EstimateTokens(r.System.Text)
		}
		if r.MaxTokens != nil {
			out = int64(*r.MaxTokens)
		}
		total += sys + prompts + answers + out
		answers += out
	}
	return total
}

// UnsizedArtifactTokens is what EstimateContextTokens counts for an
// artifact whose size the API does not report: about 8 KB of text.
const UnsizedArtifactTokens = 2000

// MaxContextTokens caps the context EstimateContextTokens counts for one
// turn: no model reads more of the documents in one turn than its context
// window, and 128,000 tokens is the largest window of the common models.
const MaxContextTokens = 128_000

// EstimateContextTokens estimates the tokens the artifacts of an item's
// context add to its turns: each artifact's size (ArtifactRef.Size, bytes)
// at one token per four bytes, rounded up, on every turn (each sends the
// artifact ids again), as if the server read the whole document, at most
// MaxContextTokens a turn. An
// artifact without a size counts UnsizedArtifactTokens and is listed in
// unsized. A real server retrieves passages rather than whole documents,
// so this is an upper bound for large documents; run.json compares it to
// the usage (results.StepEstimate) to calibrate max_total_tokens.
// all_artifacts items are not counted: the server chooses their context.
func EstimateContextTokens(context []ArtifactRef, turns int) (tokens int64, unsized []string) {
	var turn int64
	for _, a := range context {
		n := int64(UnsizedArtifactTokens)
		if a.Size > 0 {
			n = (a.Size + 3) / 4
		} else {
			unsized = append(unsized, a.ID)
		}
		turn += n
	}
	return min(turn, MaxContextTokens) * int64(turns), unsized
}
